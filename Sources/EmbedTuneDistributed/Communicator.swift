import CMPI
import Foundation

/// Collective operations the trainer needs, over one flat buffer at a time.
public protocol Communicator: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// In-place elementwise sum across ranks.
    func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws
    /// Every rank contributes `count` floats; `output` receives size × count, rank-ordered.
    func allGather(_ input: UnsafePointer<Float>, count: Int, into output: UnsafeMutablePointer<Float>) throws
    /// Byte-level all-gather: every rank contributes `bytes`; output receives size × bytes.
    func allGatherBytes(_ input: UnsafeRawPointer, bytes: Int, into output: UnsafeMutableRawPointer) throws
    func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) throws
    func barrier() throws
}

public extension Communicator {
    var isRoot: Bool { rank == 0 }
}

/// The world of one process: every collective is the identity.
public final class SingleProcessCommunicator: Communicator {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {}
    public func allGather(_ input: UnsafePointer<Float>, count: Int, into output: UnsafeMutablePointer<Float>) throws {
        output.update(from: input, count: count)
    }
    public func allGatherBytes(_ input: UnsafeRawPointer, bytes: Int, into output: UnsafeMutableRawPointer) throws {
        output.copyMemory(from: input, byteCount: bytes)
    }
    public func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) throws {}
    public func barrier() throws {}
}

public struct MPIError: Error, CustomStringConvertible {
    public let call: String
    public let rank: Int
    public let code: Int32
    public var description: String {
        var buffer = [CChar](repeating: 0, count: Int(MPI_MAX_ERROR_STRING) + 1)
        var length: Int32 = 0
        MPI_Error_string(code, &buffer, &length)
        return "\(call) failed on rank \(rank): \(String(cString: buffer)) (code \(code))"
    }
}

/// MPI_COMM_WORLD. Errors are returned (not fatal) so each call is reported with its name and
/// rank; the caller aborts the job.
public final class MPICommunicator: Communicator {
    public let rank: Int
    public let size: Int

    /// True when launched by mpirun/srun (so `MPI_Init` is worth calling).
    public static var launchedByMPI: Bool {
        let env = ProcessInfo.processInfo.environment
        return env["OMPI_COMM_WORLD_SIZE"] != nil || env["PMI_SIZE"] != nil || env["PMIX_RANK"] != nil
    }

    public init() throws {
        var initialized: Int32 = 0
        MPI_Initialized(&initialized)
        if initialized == 0 {
            let rc = MPI_Init(nil, nil)
            guard rc == MPI_SUCCESS else { throw MPIError(call: "MPI_Init", rank: -1, code: rc) }
        }
        MPI_Comm_set_errhandler(cmpi_comm_world(), cmpi_errors_return())
        var r: Int32 = 0, s: Int32 = 0
        MPI_Comm_rank(cmpi_comm_world(), &r)
        MPI_Comm_size(cmpi_comm_world(), &s)
        rank = Int(r)
        size = Int(s)
    }

    private func check(_ rc: Int32, _ call: String) throws {
        if rc != MPI_SUCCESS { throw MPIError(call: call, rank: rank, code: rc) }
    }

    public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
        try check(MPI_Allreduce(cmpi_in_place(), buffer, Int32(count), cmpi_float(), cmpi_sum(), cmpi_comm_world()),
                  "MPI_Allreduce")
    }

    public func allGather(_ input: UnsafePointer<Float>, count: Int, into output: UnsafeMutablePointer<Float>) throws {
        try check(MPI_Allgather(input, Int32(count), cmpi_float(), output, Int32(count), cmpi_float(), cmpi_comm_world()),
                  "MPI_Allgather")
    }

    public func allGatherBytes(_ input: UnsafeRawPointer, bytes: Int, into output: UnsafeMutableRawPointer) throws {
        try check(MPI_Allgather(input, Int32(bytes), cmpi_byte(), output, Int32(bytes), cmpi_byte(), cmpi_comm_world()),
                  "MPI_Allgather")
    }

    public func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) throws {
        try check(MPI_Bcast(buffer, Int32(bytes), cmpi_byte(), Int32(root), cmpi_comm_world()), "MPI_Bcast")
    }

    public func barrier() throws { try check(MPI_Barrier(cmpi_comm_world()), "MPI_Barrier") }

    public func finalize() { MPI_Finalize() }

    /// Ends every rank of the job (a failing rank calls this so no peer hangs).
    public func abort(code: Int32) -> Never {
        MPI_Abort(cmpi_comm_world(), code)
        exit(code)
    }

    public static var libraryVersion: String {
        var buffer = [CChar](repeating: 0, count: Int(MPI_MAX_LIBRARY_VERSION_STRING) + 1)
        var length: Int32 = 0
        MPI_Get_library_version(&buffer, &length)
        return String(cString: buffer).split(separator: ",").first.map(String.init) ?? ""
    }
}

/// The communicator for this process: MPI under mpirun/srun, a single process otherwise.
public func makeCommunicator() throws -> Communicator {
    MPICommunicator.launchedByMPI ? try MPICommunicator() : SingleProcessCommunicator()
}
