import ArgumentParser
import EmbedTuneDistributed
import Foundation

struct EmbedTuneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "embedtune",
        abstract: "Adapt text-embedding models to a domain with LoRA, on CPUs, over MPI.",
        subcommands: [EmbedCommand.self, TrainCommand.self, MineCommand.self, EvalCommand.self, RerankCommand.self, DataCommand.self, TokenizeCommand.self, InfoCommand.self, ConvertCommand.self, MergeCommand.self, RouteCommand.self, BenchCommand.self, ReportCommand.self, IndexCommand.self, SearchCommand.self, ServeCommand.self, LibraryCommand.self, T2LCommand.self, DnDCommand.self])
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

/// Runs a command body on every rank of the MPI world (one process without mpirun): an error is
/// one line on stderr naming the rank, and under MPI aborts the world, so no rank is left waiting
/// in a collective.
func runOnEveryRank(_ body: (Communicator) throws -> Void) throws {
    let communicator: Communicator
    do { communicator = try makeCommunicator() } catch {
        FileHandle.standardError.write(Data("embedtune: error: \(error)\n".utf8))
        throw ExitCode.failure
    }
    do {
        try body(communicator)
        if let mpi = communicator as? MPICommunicator { mpi.finalize() }
    } catch {
        FileHandle.standardError.write(Data("embedtune: error: \(communicator.size > 1 ? "rank \(communicator.rank): " : "")\(error)\n".utf8))
        if let mpi = communicator as? MPICommunicator { mpi.abort(code: 1) }
        throw ExitCode.failure
    }
}
