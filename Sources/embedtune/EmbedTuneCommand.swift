import ArgumentParser
import Foundation

struct EmbedTuneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "embedtune",
        abstract: "Adapt text-embedding models to a domain with LoRA, on CPUs, over MPI.",
        subcommands: [EmbedCommand.self, TrainCommand.self, MineCommand.self, EvalCommand.self, RerankCommand.self, DataCommand.self, TokenizeCommand.self, InfoCommand.self, ConvertCommand.self, MergeCommand.self, RouteCommand.self, BenchCommand.self, ReportCommand.self])
}

/// Runs a command body, turning any error into one line on stderr and exit status 1 (argument
/// errors keep ArgumentParser's usage output and status 64).
func runReportingErrors(_ body: () throws -> Void) throws {
    do { try body() }
    catch let error as CleanExit { throw error }
    catch let error as ExitCode { throw error }
    catch let error as ValidationError { throw error }
    catch {
        FileHandle.standardError.write(Data("embedtune: error: \(error)\n".utf8))
        throw ExitCode.failure
    }
}
