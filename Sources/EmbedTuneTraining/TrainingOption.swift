import EmbedTuneFormats
import Foundation

/// One training setting: its TOML key (also its command-line flag, `--key` or `--kebab-key`),
/// help, type and check, bound to a `TrainingOptions` property. The table is
/// `TrainingOption.sections`; configs, flags, checkpoints and `--help` all go through it.
public struct TrainingOption: @unchecked Sendable {
    public let key: String
    public let help: String
    /// The value's type as help and errors name it ("integer", "true|false", …).
    public let typeName: String
    public let isBoolean: Bool
    /// A TOML table the key may also sit under (`[infonce]` then `use_batch = true`).
    public let table: String?
    /// Other spellings of the key, accepted too.
    public let aliases: [String]
    let assignJSON: (inout TrainingOptions, JSONValue) -> Bool
    let assignArgument: (inout TrainingOptions, String) -> Bool
    /// The value in `options`; `.null` for an unset optional.
    public let value: (TrainingOptions) -> JSONValue
    /// What is wrong with the value in `options`, if anything (" must be positive (got 0)").
    let problem: (TrainingOptions) -> String?

    static func option<V: TrainingOptionValue>(_ key: String, _ path: WritableKeyPath<TrainingOptions, V>, _ help: String,
                                               table: String? = nil, aliases: [String] = [],
                                               check: @escaping (V) -> String? = { _ in nil }) -> TrainingOption {
        TrainingOption(
            key: key, help: help, typeName: V.typeName, isBoolean: V.self == Bool.self, table: table, aliases: aliases,
            assignJSON: { options, json in
                guard let v = V(json: json) else { return false }
                options[keyPath: path] = v
                return true
            },
            assignArgument: { options, word in
                guard let v = V(argument: word) else { return false }
                options[keyPath: path] = v
                return true
            },
            value: { $0[keyPath: path].json },
            problem: { check($0[keyPath: path]).map { "must be \($0)" } })
    }

    public static let all = sections.flatMap(\.options)
    static let byName: [String: TrainingOption] = Dictionary(
        uniqueKeysWithValues: all.flatMap { option in ([option.key] + option.aliases).map { ($0, option) } })
    static let tables = Set(all.compactMap(\.table))

    /// The option a flag names, in either spelling (`lora_r`, `lora-r`).
    public static func named(flag: String) -> TrainingOption? { byName[flag.replacingOccurrences(of: "-", with: "_")] }

    /// Every boolean flag in both spellings.
    public static var booleanFlags: Set<String> {
        Set(all.filter(\.isBoolean).flatMap { ([$0.key] + $0.aliases).flatMap(CommandLineWords.spellings) })
    }

    /// The value in `options` as a command-line word (lists comma-separated); nil when unset or empty.
    public func argumentText(_ options: TrainingOptions) -> String? {
        switch value(options) {
        case .null, .string(""), .array([]): return nil
        case .string(let s): return s
        case .array(let items): return items.map { $0.string ?? $0.tomlText }.joined(separator: ",")
        case let other: return other.tomlText
        }
    }

    // Checks: each returns the end of "must be …", or nil when the value is fine.
    static func positive<V: Comparable & ExpressibleByIntegerLiteral>(_ v: V) -> String? { v > 0 ? nil : "positive (got \(v))" }
    static func atLeast<V: Comparable & ExpressibleByIntegerLiteral>(_ low: V) -> (V) -> String? {
        { $0 >= low ? nil : "at least \(low) (got \($0))" }
    }
    static func fraction<V: BinaryFloatingPoint>(_ v: V) -> String? { v >= 0 && v < 1 ? nil : "in [0, 1) (got \(v))" }
    /// Matryoshka dimensions: each positive, none twice (the model's width is checked when it is loaded).
    static func matryoshkaDimensions(_ dims: [Int]) -> String? {
        let list = dims.map(String.init).joined(separator: ",")
        if dims.contains(where: { $0 <= 0 }) { return "positive integers (got \(list))" }
        if Set(dims).count != dims.count { return "distinct (got \(list))" }
        return nil
    }
    static func oneOf(_ names: [String]) -> (String) -> String? {
        { names.contains($0) ? nil : "one of \(names.joined(separator: ", ")) (got \($0))" }
    }
}

extension TrainingOptions: Codable {
    /// Sets the options a config names: top-level keys, and the keys of tables such as `[infonce]`.
    /// An unknown key or a value of the wrong type is an error naming `file` and the key.
    public mutating func apply(config: JSONValue, file: String) throws {
        guard let entries = config.object else { throw FormatError(file: file, "is not a table of options") }
        for (key, value) in entries.sorted(by: { $0.key < $1.key }) {
            if let inner = value.object, TrainingOption.tables.contains(key) {
                for (innerKey, innerValue) in inner.sorted(by: { $0.key < $1.key }) {
                    guard let option = TrainingOption.byName[innerKey], option.table == key else {
                        throw FormatError(file: file, item: "\(key).\(innerKey)", "unknown option")
                    }
                    try assign(option, innerValue, file: file, item: "\(key).\(innerKey)")
                }
            } else {
                guard let option = TrainingOption.byName[key] else { throw FormatError(file: file, item: key, "unknown option") }
                try assign(option, value, file: file, item: key)
            }
        }
    }

    private mutating func assign(_ option: TrainingOption, _ value: JSONValue, file: String, item: String) throws {
        guard option.assignJSON(&self, value) else {
            throw FormatError(file: file, item: item, "expected \(option.typeName), got \(value.tomlText)")
        }
    }

    /// Sets the options given as command-line words: `--key value`, `--key=value`, kebab-case
    /// spellings, and a bare boolean flag meaning true. Errors name the flag.
    public mutating func apply(arguments: [String]) throws {
        let valued = Set(TrainingOption.all.filter { !$0.isBoolean }.flatMap { ([$0.key] + $0.aliases).flatMap(CommandLineWords.spellings) })
        let words = CommandLineWords.withBooleanValues(arguments, booleans: TrainingOption.booleanFlags, valued: valued)
        var i = 0
        while i < words.count {
            let word = words[i]
            guard word.hasPrefix("--"), word.count > 2 else {
                throw FormatError(file: word, "unexpected argument (training options are --key value)")
            }
            var name = String(word.dropFirst(2)), text: String?
            if let eq = name.firstIndex(of: "=") {
                text = String(name[name.index(after: eq)...])
                name = String(name[..<eq])
            }
            guard let option = TrainingOption.named(flag: name) else {
                throw FormatError(file: "--\(name)", "unknown option (embedtune train --help lists them)")
            }
            if text == nil {
                guard i + 1 < words.count else { throw FormatError(file: "--\(name)", "needs a value (\(option.typeName))") }
                i += 1
                text = words[i]
            }
            guard option.assignArgument(&self, text!) else {
                throw FormatError(file: "--\(name)", "expected \(option.typeName), got \"\(text!)\"")
            }
            i += 1
        }
    }

    public init(from decoder: Decoder) throws {
        self.init()
        try apply(config: JSONValue(from: decoder), file: "options")
    }

    public func encode(to encoder: Encoder) throws { try json.encode(to: encoder) }

    /// Every set option by key; options of a table (`infonce`) inside it.
    public var json: JSONValue {
        var root = [String: JSONValue]()
        for option in TrainingOption.all {
            let value = option.value(self)
            if value == .null { continue }
            if let table = option.table {
                var inner = root[table]?.object ?? [:]
                inner[option.key] = value
                root[table] = .object(inner)
            } else {
                root[option.key] = value
            }
        }
        return .object(root)
    }

    /// The options as a TOML config that `--config` reads back: one `key = value` line per set
    /// option, under a comment per section.
    public var tomlText: String {
        TrainingOption.sections.map { section in
            "# \(section.title)\n" + section.options.compactMap { option in
                let value = option.value(self)
                return value == .null ? nil : "\(option.key) = \(value.tomlText)\n"
            }.joined()
        }.joined(separator: "\n")
    }
}

/// Command-line words of boolean options: `--flag`, `--flag true` and `--flag false` all work.
public enum CommandLineWords {
    /// `name` and its kebab-case twin (`max_length`, `max-length`).
    public static func spellings(_ name: String) -> [String] {
        let kebab = name.replacingOccurrences(of: "_", with: "-")
        return kebab == name ? [name] : [name, kebab]
    }

    /// `words` with an explicit value after every boolean flag: a bare `--flag` (at the end, or
    /// before a word that is not a boolean) gets `true`; a following yes/no/1/0/True… becomes
    /// `true`/`false`. The word after an option in `valued` is its value and stays as it is;
    /// nothing after `--` changes. Names in `booleans` and `valued` are without the dashes.
    public static func withBooleanValues(_ words: [String], booleans: Set<String>, valued: Set<String>) -> [String] {
        var out = [String](), i = 0
        while i < words.count {
            let word = words[i]
            i += 1
            out.append(word)
            if word == "--" { out += words[i...]; break }
            guard word.hasPrefix("--") else { continue }
            let name = word.dropFirst(2)
            if let eq = name.firstIndex(of: "="), booleans.contains(String(name[..<eq])) {
                if let b = Bool(argument: String(name[name.index(after: eq)...])) { out[out.count - 1] = "--\(name[..<eq])=\(b)" }
            } else if booleans.contains(String(name)) {
                if i < words.count, let b = Bool(argument: words[i]) {
                    out.append("\(b)")
                    i += 1
                } else {
                    out.append("true")
                }
            } else if valued.contains(String(name)), i < words.count {
                out.append(words[i])
                i += 1
            }
        }
        return out
    }
}

/// A value a training option can hold.
protocol TrainingOptionValue: Equatable {
    static var typeName: String { get }
    /// From a config value; nil when it has another type.
    init?(json: JSONValue)
    /// From a command-line word; nil when it does not read as this type.
    init?(argument: String)
    var json: JSONValue { get }
}

extension TrainingOptionValue where Self: FixedWidthInteger {
    static var typeName: String { isSigned ? "integer" : "integer ≥ 0" }
    /// Also a decimal string: how `json` writes a value beyond Int (a seed above Int.max).
    init?(json: JSONValue) {
        guard let i = json.int.flatMap(Self.init(exactly:)) ?? json.string.flatMap({ Self($0) }) else { return nil }
        self = i
    }
    init?(argument: String) { self.init(argument, radix: 10) }
    var json: JSONValue { Int(exactly: self).map(JSONValue.int) ?? .string(String(self)) }
}

extension TrainingOptionValue where Self: BinaryFloatingPoint & LosslessStringConvertible {
    static var typeName: String { "number" }
    init?(json: JSONValue) { guard let d = json.double else { return nil }; self.init(d) }
    init?(argument: String) { self.init(argument) }
    /// The shortest decimal that reads back as this value (1e-4, not 9.99999974e-05 for a Float).
    var json: JSONValue { .double(Double("\(self)") ?? Double(self)) }
}

extension Int: TrainingOptionValue {}
extension UInt64: TrainingOptionValue {}
extension Double: TrainingOptionValue {}
extension Float: TrainingOptionValue {}

extension Bool: TrainingOptionValue {
    static var typeName: String { "true|false" }
    init?(json: JSONValue) { guard let b = json.bool else { return nil }; self = b }
    /// The spellings the HF Trainer accepts: true/false, yes/no, t/f, y/n, 1/0, any case.
    init?(argument: String) {
        switch argument.lowercased() {
        case "true", "t", "yes", "y", "1": self = true
        case "false", "f", "no", "n", "0": self = false
        default: return nil
        }
    }
    var json: JSONValue { .bool(self) }
}

extension String: TrainingOptionValue {
    static var typeName: String { "string" }
    init?(json: JSONValue) { guard let s = json.string else { return nil }; self = s }
    init?(argument: String) { self = argument }
    var json: JSONValue { .string(self) }
}

/// A value a list option can hold (`target_modules`, `matryoshka_dims`, `matryoshka_weights`).
protocol TrainingOptionListItem: TrainingOptionValue {
    /// The items as help and errors name them ("strings", "integers").
    static var pluralName: String { get }
}

extension String: TrainingOptionListItem { static var pluralName: String { "strings" } }
extension Int: TrainingOptionListItem { static var pluralName: String { "integers" } }
extension Float: TrainingOptionListItem { static var pluralName: String { "numbers" } }

extension Array: TrainingOptionValue where Element: TrainingOptionListItem {
    static var typeName: String { "list of \(Element.pluralName)" }
    init?(json: JSONValue) {
        guard let items = json.array?.map(Element.init(json:)), !items.contains(nil) else { return nil }
        self = items.map { $0! }
    }
    /// Comma-separated, each item trimmed.
    init?(argument: String) {
        let items = argument.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            .map(Element.init(argument:))
        guard !items.contains(nil) else { return nil }
        self = items.map { $0! }
    }
    var json: JSONValue { .array(map(\.json)) }
}

extension Optional: TrainingOptionValue where Wrapped: TrainingOptionValue {
    static var typeName: String { Wrapped.typeName }
    init?(json: JSONValue) { guard let w = Wrapped(json: json) else { return nil }; self = w }
    init?(argument: String) { guard let w = Wrapped(argument: argument) else { return nil }; self = w }
    var json: JSONValue { self?.json ?? .null }
}
