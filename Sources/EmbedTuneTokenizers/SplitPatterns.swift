import Foundation

/// The split regexes that byte-level BPE tokenizers use, as hand-written scanners.
///
/// Hugging Face tokenizers run these patterns through Oniguruma; we scan Unicode scalars with
/// the same alternation order and backtracking outcome, which is exact and ~10× faster than a
/// general regex engine. Patterns we do not recognise fall back to NSRegularExpression.
public enum SplitPattern: Sendable, Equatable {
    /// Qwen2/Qwen3 (cl100k-style): contractions, letters with one optional non-letter
    /// prefix, single digits, punctuation runs, newline runs, whitespace.
    case qwen(marksAreLetters: Bool)
    /// GPT-2: contractions, ` ?letters`, ` ?digits`, ` ?other`, whitespace.
    case gpt2
    case regex(NSRegularExpression)

    public static let qwenSource =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    public static let qwen35Source =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    public static let gpt2Source = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#

    public static func from(source: String) throws -> SplitPattern {
        switch source {
        case qwenSource: return .qwen(marksAreLetters: false)
        case qwen35Source: return .qwen(marksAreLetters: true)
        case gpt2Source: return .gpt2
        default: return .regex(try NSRegularExpression(pattern: source))
        }
    }

    /// The matched ranges (scalar offsets) in order; characters between matches are not
    /// included (the caller decides what to do with gaps).
    public func matches(_ s: [Unicode.Scalar]) -> [Range<Int>] {
        switch self {
        case .qwen(let marks): return Self.scan(s) { Self.qwenMatch($0, at: $1, marks: marks) }
        case .gpt2: return Self.scan(s) { Self.gpt2Match($0, at: $1) }
        case .regex(let re):
            let string = String(String.UnicodeScalarView(s))
            let ns = string as NSString
            // Convert UTF-16 offsets back to scalar offsets.
            var utf16ToScalar = [Int](repeating: 0, count: ns.length + 1)
            var u = 0
            for (i, sc) in s.enumerated() { for _ in 0..<UTF16.width(sc) { utf16ToScalar[u] = i; u += 1 } }
            utf16ToScalar[u] = s.count
            return re.matches(in: string, range: NSRange(location: 0, length: ns.length))
                .filter { $0.range.length > 0 }
                .map { utf16ToScalar[$0.range.location]..<utf16ToScalar[$0.range.location + $0.range.length] }
        }
    }

    private static func scan(_ s: [Unicode.Scalar], _ match: ([Unicode.Scalar], Int) -> Int) -> [Range<Int>] {
        var out = [Range<Int>](), i = 0
        while i < s.count {
            let end = match(s, i)
            if end > i { out.append(i..<end); i = end } else { i += 1 }
        }
        return out
    }

    // MARK: character classes (Unicode general categories, as Oniguruma's \p{…} and \s)

    @inline(__always) static func isLetter(_ c: Unicode.Scalar) -> Bool {
        if c.value < 0x80 { return (c.value | 0x20) >= 0x61 && (c.value | 0x20) <= 0x7a }
        switch c.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
        default: return false
        }
    }

    @inline(__always) static func isMark(_ c: Unicode.Scalar) -> Bool {
        if c.value < 0x300 { return false }
        switch c.properties.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark: return true
        default: return false
        }
    }

    @inline(__always) static func isNumber(_ c: Unicode.Scalar) -> Bool {
        if c.value < 0x80 { return c.value >= 0x30 && c.value <= 0x39 }
        switch c.properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }

    @inline(__always) static func isSpace(_ c: Unicode.Scalar) -> Bool {
        if c.value < 0x80 { return c.value == 0x20 || (c.value >= 0x09 && c.value <= 0x0d) }
        return c.properties.isWhitespace
    }

    @inline(__always) static func isNewline(_ c: Unicode.Scalar) -> Bool { c.value == 0x0a || c.value == 0x0d }

    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)` (caseInsensitive) or its case-sensitive GPT-2 form.
    /// Case folding as Oniguruma does it: ſ (U+017F) folds to s.
    static func contraction(_ s: [Unicode.Scalar], at i: Int, caseInsensitive: Bool) -> Int? {
        guard s[i] == "'", i + 1 < s.count else { return nil }
        func lower(_ c: Unicode.Scalar) -> UInt32 {
            guard caseInsensitive else { return c.value }
            if c.value == 0x17f { return 0x73 }
            return (c.value >= 0x41 && c.value <= 0x5a) ? c.value | 0x20 : c.value
        }
        let a = lower(s[i + 1])
        if a == 0x73 || a == 0x74 || a == 0x6d || a == 0x64 { return i + 2 }  // s t m d
        if i + 2 < s.count {
            let b = lower(s[i + 2])
            if (a == 0x72 && b == 0x65) || (a == 0x76 && b == 0x65) || (a == 0x6c && b == 0x6c) { return i + 3 }  // re ve ll
        }
        return nil
    }

    static func qwenMatch(_ s: [Unicode.Scalar], at i: Int, marks: Bool) -> Int {
        let n = s.count, c = s[i]
        @inline(__always) func letter(_ c: Unicode.Scalar) -> Bool { isLetter(c) || (marks && isMark(c)) }
        @inline(__always) func other(_ c: Unicode.Scalar) -> Bool { !isSpace(c) && !letter(c) && !isNumber(c) }
        if let end = contraction(s, at: i, caseInsensitive: true) { return end }
        // [^\r\n\p{L}\p{N}]?\p{L}+
        var start = -1
        if letter(c) { start = i }
        else if !isNewline(c) && !isNumber(c) && i + 1 < n && letter(s[i + 1]) { start = i + 1 }
        if start >= 0 {
            var j = start
            while j < n && letter(s[j]) { j += 1 }
            return j
        }
        // \p{N}
        if isNumber(c) { return i + 1 }
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
        var j = c == " " ? i + 1 : i
        if j < n && other(s[j]) {
            while j < n && other(s[j]) { j += 1 }
            while j < n && isNewline(s[j]) { j += 1 }
            return j
        }
        return whitespaceMatch(s, at: i, newlineRuns: true)
    }

    static func gpt2Match(_ s: [Unicode.Scalar], at i: Int) -> Int {
        let n = s.count
        if let end = contraction(s, at: i, caseInsensitive: false) { return end }
        let j0 = s[i] == " " ? i + 1 : i
        if j0 < n {
            // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`
            let classes: [(Unicode.Scalar) -> Bool] = [isLetter, isNumber, { !isSpace($0) && !isLetter($0) && !isNumber($0) }]
            for inClass in classes where inClass(s[j0]) {
                var j = j0
                while j < n && inClass(s[j]) { j += 1 }
                return j
            }
        }
        return whitespaceMatch(s, at: i, newlineRuns: false)
    }

    /// `\s*[\r\n]+` (when newlineRuns), then `\s+(?!\S)`, then `\s+`.
    static func whitespaceMatch(_ s: [Unicode.Scalar], at i: Int, newlineRuns: Bool) -> Int {
        let n = s.count
        guard isSpace(s[i]) else { return i }
        var k = i
        while k < n && isSpace(s[k]) { k += 1 }
        if newlineRuns {
            // Greedy \s* backtracks to the last newline of the run; [\r\n]+ takes just it.
            var m = k - 1
            while m >= i && !isNewline(s[m]) { m -= 1 }
            if m >= i { return m + 1 }
        }
        if k == n { return k }          // \s+(?!\S) at the end of the text
        if k - 1 > i { return k - 1 }   // leave the last space to prefix the next word
        return k                        // \s+
    }
}
