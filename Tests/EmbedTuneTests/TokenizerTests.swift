import EmbedTuneKernels
import EmbedTuneModels
import EmbedTuneTokenizers
import Foundation
import Testing

@Suite("Byte-level BPE tokenizer")
struct TokenizerTests {
    @Test("ids equal Hugging Face's on the fixture tokenizer for every reference string")
    func fixtureTokenizerParity() throws {
        let tokenizer = try Tokenizer.load(tokenizerJSON: Paths.fixtures.appendingPathComponent("qwen-bpe/tokenizer.json"))
        let (checked, failures) = try tokenizerMismatches(tokenizer, reference: Paths.reference.appendingPathComponent("qwen_bpe_ids.jsonl"))
        #expect(checked >= 200)
        #expect(failures.isEmpty, "\(failures.count) of \(checked) differ, e.g. \(failures.prefix(3))")
    }

    @Test("ids equal Hugging Face's with the real Qwen vocabulary from qwen.tiktoken")
    func realQwenParity() throws {
        let tokenizer = try Tokenizer.loadTiktoken(Paths.qwenTiktoken)
        #expect(tokenizer.encode("Hello, world!", addSpecialTokens: false) == [9707, 11, 1879, 0])
        #expect(tokenizer.encode("Hello, world!") == [9707, 11, 1879, 0, 151643])
        #expect(tokenizer.id(of: "<|endoftext|>") == 151643)
        let (checked, failures) = try tokenizerMismatches(tokenizer, reference: Paths.reference.appendingPathComponent("qwen_real_ids.jsonl"))
        #expect(checked >= 200)
        #expect(failures.isEmpty, "\(failures.count) of \(checked) differ, e.g. \(failures.prefix(3))")
    }

    @Test("decode inverts encode, special tokens included or skipped")
    func decodeRoundTrip() throws {
        let tokenizer = try Tokenizer.load(tokenizerJSON: Paths.fixtures.appendingPathComponent("qwen-bpe/tokenizer.json"))
        for text in ["稻田养鱼 rice-fish 🐟 co-culture\n\n  x", "e\u{301}", "<|im_start|>user\nhi<|im_end|>"] {
            let ids = tokenizer.encode(text)
            let nfc = text.precomposedStringWithCanonicalMapping
            #expect(tokenizer.decode(ids) == nfc + "<|endoftext|>")
            #expect(tokenizer.decode(ids, skipSpecialTokens: true) == nfc.replacingOccurrences(of: "<|im_start|>", with: "")
                .replacingOccurrences(of: "<|im_end|>", with: ""))
        }
    }

    @Test("truncation keeps the first tokens and still appends <|endoftext|>; padding goes left")
    func truncationAndPadding() throws {
        let tokenizer = try Tokenizer.load(tokenizerJSON: Paths.fixtures.appendingPathComponent("qwen-bpe/tokenizer.json"))
        let full = tokenizer.encode("the quick brown fox jumps over the lazy dog again and again", addSpecialTokens: false)
        let eos = tokenizer.id(of: "<|endoftext|>")!
        let cut = tokenizer.encode("the quick brown fox jumps over the lazy dog again and again", maxLength: 5)
        #expect(cut == Array(full.prefix(4)) + [eos])
        #expect(tokenizer.paddingSide == .left)
        let (ids, mask) = tokenizer.pad([[1, 2, 3], [4]])
        #expect(ids == [[1, 2, 3], [tokenizer.padID, tokenizer.padID, 4]])
        #expect(mask == [[1, 1, 1], [0, 0, 1]])
    }

    @Test("a malformed tokenizer.json is an error naming the file and the field")
    func malformed() throws {
        let dir = try Paths.temporaryDirectory()
        let cases: [(String, String)] = [
            (#"{"model": {"type": "BPE", "vocab": {}, "merges": []}, "normalizer": {"type": "Frobnicate"}}"#,
             "normalizer.type: unsupported normalizer type \"Frobnicate\""),
            (#"{"model": {"type": "BPE", "vocab": {}, "merges": []}, "pre_tokenizer": {"type": "Nope"}}"#,
             "pre_tokenizer.type: unsupported pre-tokenizer type \"Nope\""),
            (#"{"normalizer": null}"#, "model: missing"),
            (#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "ByteLevel"}}"#,
             "has no token"),
            (#"{"model": "#, "invalid JSON"),
        ]
        for (i, (json, expected)) in cases.enumerated() {
            let url = dir.appendingPathComponent("t\(i).json")
            try json.write(to: url, atomically: true, encoding: .utf8)
            do {
                _ = try Tokenizer.load(tokenizerJSON: url)
                Issue.record("accepted \(json)")
            } catch {
                #expect("\(error)".contains(expected), "\(error)")
                #expect("\(error)".hasPrefix(url.path))
            }
        }
    }

    @Test("the tokenize command writes one {ids} line per input, with or without special tokens")
    func tokenizeCLI() throws {
        let dir = try Paths.temporaryDirectory()
        let input = dir.appendingPathComponent("in.jsonl")
        try "{\"text\": \"Hello, world!\"}\n{\"text\": \"你好\"}\n".write(to: input, atomically: true, encoding: .utf8)
        let r = try runCLI(["tokenize", "--tokenizer", Paths.qwenTiktoken.path, "--input", input.path])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.split(separator: "\n").first == #"{"ids": [9707, 11, 1879, 0, 151643]}"#)
        let bare = try runCLI(["tokenize", "--tokenizer", Paths.qwenTiktoken.path, "--input", input.path, "--add_special_tokens", "false"])
        #expect(bare.stdout.split(separator: "\n").first == #"{"ids": [9707, 11, 1879, 0]}"#)
        try "{\"text\": 3}\n".write(to: input, atomically: true, encoding: .utf8)
        let bad = try runCLI(["tokenize", "--tokenizer", Paths.qwenTiktoken.path, "--input", input.path])
        #expect(bad.status == 1)
        #expect(bad.stderr.contains("in.jsonl:1: text: is not a string"), "\(bad.stderr)")
    }
}

@Suite("WordPiece")
struct WordPieceTests {
    /// BERT's greedy longest-match-first as HF writes it: every end from the word's end down.
    static func reference(_ wp: WordPiece, _ piece: [Unicode.Scalar]) -> [Int32] {
        if piece.count > wp.maxInputCharsPerWord { return [wp.unkID] }
        var out = [Int32](), start = 0
        while start < piece.count {
            var end = piece.count, found: Int32?
            while start < end {
                let candidate = (start > 0 ? wp.prefix : "") + String(String.UnicodeScalarView(piece[start..<end]))
                if let id = wp.vocab[candidate] { found = id; break }
                end -= 1
            }
            guard let id = found else { return [wp.unkID] }
            out.append(id)
            start = end
        }
        return out
    }

    @Test("the search bounded by the longest token gives HF's pieces; a 20,000-character word with a huge max_input_chars_per_word is encoded (fuzz: tokenizer-json timeout)")
    func longWords() throws {
        let tokens = ["[UNK]", "a", "ab", "abc", "##a", "##b", "##ab", "##bca", "##c", "中", "##文", "##中文"]
        let vocab = Dictionary(uniqueKeysWithValues: tokens.enumerated().map { ($1, Int32($0)) })
        let wp = try WordPiece(vocab: vocab, unkToken: "[UNK]", maxInputCharsPerWord: 1_000_000, file: "test")
        var rng = SplitMix64(seed: 9)
        let alphabet = Array("abc中文".unicodeScalars)
        for length in [1, 2, 3, 7, 50, 300] {
            for _ in 0..<20 {
                let word = (0..<length).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] }
                #expect(wp.encode(word) == Self.reference(wp, word), "\(String(String.UnicodeScalarView(word)))")
            }
        }
        let long = Array(String(repeating: "ab", count: 10_000).unicodeScalars)
        let ids = wp.encode(long)
        #expect(ids.count == 10_000 && ids.first == vocab["ab"] && ids.last == vocab["##ab"])
    }
}
