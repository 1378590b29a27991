import Foundation

// The tokenizer files of a converted E5S1 model: tokenizer.json (Unigram over the stored pieces
// and scores, normalised by a precompiled charsmap built from the engine's normalisation map),
// tokenizer_config.json and special_tokens_map.json.

extension E5S1 {
    static func addedToken(_ id: Int, _ content: String, lstrip: Bool = false) -> OrderedJSON {
        .object([("id", .int(id)), ("content", .string(content)), ("single_word", .bool(false)),
                 ("lstrip", .bool(lstrip)), ("rstrip", .bool(false)), ("normalized", .bool(false)),
                 ("special", .bool(true))])
    }

    /// XLM-R's tokenizer.json: Precompiled(charsmap from the engine's map) + collapse of space
    /// runs, Metaspace, Unigram with the pieces and scores as stored, `<s> $A </s>`.
    static func tokenizer(_ file: File) throws -> OrderedJSON {
        let v = file.vocabulary
        let specials = specialIDs(v)
        let metaspace: [(String, OrderedJSON)] = [
            ("type", .string("Metaspace")), ("replacement", .string("\u{2581}")),
            ("prepend_scheme", .string("always")), ("split", .bool(true)),
        ]
        let charsmap = Data(try precompiledCharsmap(file.normalization)).base64EncodedString()
        let normalizer: OrderedJSON = .object([
            ("type", .string("Sequence")),
            ("normalizers", .array([
                .object([("type", .string("Precompiled")), ("precompiled_charsmap", .string(charsmap))]),
                .object([("type", .string("Replace")), ("pattern", .object([("Regex", .string(" {2,}"))])),
                         ("content", .string(" "))]),
            ])),
        ])
        func special(_ s: String) -> OrderedJSON { .object([("SpecialToken", .object([("id", .string(s)), ("type_id", .int(0))]))]) }
        func sequence(_ s: String) -> OrderedJSON { .object([("Sequence", .object([("id", .string(s)), ("type_id", .int(0))]))]) }
        let bos = v.pieces[v.bos], eos = v.pieces[v.eos]
        let post: OrderedJSON = .object([
            ("type", .string("TemplateProcessing")),
            ("single", .array([special(bos), sequence("A"), special(eos)])),
            ("pair", .array([special(bos), sequence("A"), special(eos), special(eos), sequence("B"), special(eos)])),
            ("special_tokens", .object([
                (bos, .object([("id", .string(bos)), ("ids", .array([.int(v.bos)])), ("tokens", .array([.string(bos)]))])),
                (eos, .object([("id", .string(eos)), ("ids", .array([.int(v.eos)])), ("tokens", .array([.string(eos)]))])),
            ])),
        ])
        var vocab = [OrderedJSON]()
        vocab.reserveCapacity(v.count)
        for i in 0..<v.count { vocab.append(.array([.string(v.pieces[i]), .double(Double(v.scores[i]))])) }
        return .object([
            ("version", .string("1.0")),
            ("truncation", .null),
            ("padding", .null),
            ("added_tokens", .array(specials.map { addedToken($0.id, v.pieces[$0.id], lstrip: $0.isMask) })),
            ("normalizer", normalizer),
            ("pre_tokenizer", .object(metaspace)),
            ("post_processor", post),
            ("decoder", .object(metaspace)),
            ("model", .object([("type", .string("Unigram")), ("unk_id", .int(v.unk)), ("vocab", .array(vocab)),
                               ("byte_fallback", .bool(false))])),
        ])
    }

    /// The added (special) tokens: bos, pad, eos, unk and, when the last piece is `<mask>`, it.
    static func specialIDs(_ v: Vocabulary) -> [(id: Int, isMask: Bool)] {
        var ids = [v.bos, v.pad, v.eos, v.unk].map { (id: $0, isMask: false) }
        if v.pieces.last == "<mask>" { ids.append((id: v.count - 1, isMask: true)) }
        var seen = Set<Int>()
        return ids.filter { seen.insert($0.id).inserted }.sorted { $0.id < $1.id }
    }

    static func tokenizerConfig(_ v: Vocabulary, maxLength: Int) -> OrderedJSON {
        var decoder = [(String, OrderedJSON)]()
        for s in specialIDs(v) {
            decoder.append(("\(s.id)", .object([("content", .string(v.pieces[s.id])), ("lstrip", .bool(s.isMask)),
                                               ("normalized", .bool(false)), ("rstrip", .bool(false)),
                                               ("single_word", .bool(false)), ("special", .bool(true))])))
        }
        var fields: [(String, OrderedJSON)] = [
            ("added_tokens_decoder", .object(decoder)),
            ("bos_token", .string(v.pieces[v.bos])),
            ("clean_up_tokenization_spaces", .bool(true)),
            ("cls_token", .string(v.pieces[v.bos])),
            ("eos_token", .string(v.pieces[v.eos])),
        ]
        if v.pieces.last == "<mask>" { fields.append(("mask_token", .string("<mask>"))) }
        fields += [
            ("model_max_length", .int(maxLength)),
            ("pad_token", .string(v.pieces[v.pad])),
            ("padding_side", .string("right")),
            ("sep_token", .string(v.pieces[v.eos])),
            ("tokenizer_class", .string("XLMRobertaTokenizer")),
            ("unk_token", .string(v.pieces[v.unk])),
        ]
        return .object(fields)
    }

    static func specialTokensMap() -> OrderedJSON {
        .object([
            ("bos_token", .string("<s>")), ("cls_token", .string("<s>")), ("eos_token", .string("</s>")),
            ("mask_token", .object([("content", .string("<mask>")), ("lstrip", .bool(true)), ("normalized", .bool(false)),
                                    ("rstrip", .bool(false)), ("single_word", .bool(false))])),
            ("pad_token", .string("<pad>")), ("sep_token", .string("</s>")), ("unk_token", .string("<unk>")),
        ])
    }

    // MARK: - Precompiled charsmap

    /// Encodes the per-code-point normalisation map as a SentencePiece precompiled charsmap
    /// (what tokenizer.json's `Precompiled` normaliser holds): u32 trie byte size, a darts-clone
    /// double array over the UTF-8 bytes of each source code point, then the NUL-terminated
    /// replacement strings the trie's values point at. U+0000 cannot be a darts key and is
    /// skipped (the engine never sees it either: it reads C strings).
    public static func precompiledCharsmap(_ rules: [NormalizationRule]) throws -> [UInt8] {
        // Replacement strings, deduplicated.
        var blob = [UInt8](), stringOffset = [[UInt8]: Int]()
        // Byte trie: children by label, optional value.
        var children: [[UInt8: Int]] = [[:]], values: [Int?] = [nil]
        for rule in rules where rule.source.value != 0 {
            var replacement = [UInt8]()
            for s in rule.replacement { replacement += Array(String(Character(s)).utf8) }
            let value: Int
            if let known = stringOffset[replacement] { value = known }
            else {
                value = blob.count
                stringOffset[replacement] = value
                blob += replacement
                blob.append(0)
            }
            var node = 0
            for byte in Array(String(Character(rule.source)).utf8) {
                if let next = children[node][byte] { node = next; continue }
                children.append([:])
                values.append(nil)
                children[node][byte] = children.count - 1
                node = children.count - 1
            }
            values[node] = value
        }
        guard blob.count < 1 << 31 else { throw FormatError(file: "precompiled charsmap", "replacement strings exceed 2 GiB") }

        // Double array: a node at position p with base b (offset p ^ b) has its child labelled
        // c at b ^ c and its value unit at b. Bases are unique, so a lookup through the wrong
        // parent always meets a different label.
        var units = [UInt32](repeating: 0, count: 256)
        var used = [Bool](repeating: false, count: 256)
        var usedBases = Set<Int>()
        used[0] = true
        var firstFree = 1
        var queue = [(node: 0, position: 0)]
        var head = 0
        func grow(to position: Int) {
            while units.count <= position {
                units += [UInt32](repeating: 0, count: 256)
                used += [Bool](repeating: false, count: 256)
            }
        }
        while head < queue.count {
            let (node, position) = queue[head]
            head += 1
            let labels = (values[node] != nil ? [UInt8(0)] : []) + children[node].keys.sorted()
            if labels.isEmpty { continue }
            var q = firstFree, base = 0
            while true {
                grow(to: q | 0xFF)
                if !used[q] {
                    let b = q ^ Int(labels[0])
                    if !usedBases.contains(b), labels.allSatisfy({ !used[b ^ Int($0)] }), (position ^ b) < 1 << 21 {
                        base = b
                        break
                    }
                }
                q += 1
            }
            guard units.count < 1 << 21 else { throw FormatError(file: "precompiled charsmap", "double array exceeds 2^21 units") }
            usedBases.insert(base)
            for l in labels { used[base ^ Int(l)] = true }
            units[position] |= UInt32(position ^ base) << 10 | (values[node] != nil ? 1 << 8 : 0)
            if let value = values[node] { units[base] = 0x8000_0000 | UInt32(value) }
            for (label, child) in children[node].sorted(by: { $0.key < $1.key }) {
                units[base ^ Int(label)] = UInt32(label)
                queue.append((child, base ^ Int(label)))
            }
            while firstFree < used.count && used[firstFree] { firstFree += 1 }
        }

        var out = [UInt8]()
        out.reserveCapacity(4 + 4 * units.count + blob.count)
        func append(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        append(UInt32(4 * units.count))
        for u in units { append(u) }
        out += blob
        return out
    }
}
