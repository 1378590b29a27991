import ArgumentParser
import EmbedTuneRetrieval
import EmbedTuneTraining
import Foundation

// One command-line language for every subcommand: snake_case names as ms-swift and the HF Trainer
// spell them, each with its kebab-case twin, and boolean options that take `--flag`,
// `--flag true` or `--flag false`.

extension NameSpecification {
    /// Each name in snake_case and, where it has an underscore, in kebab-case too; names after the
    /// first are other spellings accepted too.
    static func spelled(_ names: String...) -> NameSpecification {
        NameSpecification(names.flatMap(CommandLineWords.spellings).map { Element.customLong($0) })
    }
}

extension ArgumentHelp {
    /// Help of a boolean option: its value shows as `<true|false>`, which also marks it as one
    /// that may stand alone (`CommandLineSpelling.prepared`).
    static func boolean(_ abstract: String) -> ArgumentHelp { ArgumentHelp(abstract, valueName: booleanValueName) }

    static let booleanValueName = "true|false"
}

extension EmbeddingPrecision: ExpressibleByArgument {}
extension QuantizedSearch.Rescoring: ExpressibleByArgument {}

enum CommandLineSpelling {
    /// The arguments with an explicit `true` after each bare boolean option of the command they
    /// address (and yes/no/1/0 read as true/false), so ArgumentParser sees `--flag true`.
    /// The command's options come from ArgumentParser's own description of the command tree.
    static func prepared(_ arguments: [String]) -> [String] {
        guard let tree = try? JSONDecoder().decode(ToolDescription.self, from: Data(EmbedTuneCommand._dumpHelp().utf8)) else {
            return arguments
        }
        var command = tree.command, start = 0
        while start < arguments.count, let sub = command.subcommands?.first(where: { $0.commandName == arguments[start] }) {
            command = sub
            start += 1
        }
        var booleans = Set<String>(), valued = Set<String>()
        for argument in command.arguments ?? [] where argument.kind == "option" {
            let names = (argument.names ?? []).filter { $0.kind == "long" }.map(\.name)
            if argument.valueName == ArgumentHelp.booleanValueName { booleans.formUnion(names) } else { valued.formUnion(names) }
        }
        return Array(arguments[..<start]) + CommandLineWords.withBooleanValues(Array(arguments[start...]), booleans: booleans, valued: valued)
    }

    /// The part of `--experimental-dump-help`'s JSON read here.
    struct ToolDescription: Decodable {
        struct Command: Decodable {
            let commandName: String
            let subcommands: [Command]?
            let arguments: [Argument]?
        }
        struct Argument: Decodable {
            struct Name: Decodable { let kind: String; let name: String }
            let kind: String
            let names: [Name]?
            let valueName: String?
        }
        let command: Command
    }
}
