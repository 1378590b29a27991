import CMPI
import Foundation

/// Collective operations the trainer needs, over one flat buffer at a time.
public protocol Communicator: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// In-place elementwise sum across ranks.
    func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws
    /// In-place elementwise sum across ranks, in double precision (losses and statistics).
    func allReduceSum(doubles buffer: UnsafeMutablePointer<Double>, count: Int) throws
    /// Every rank contributes size × `count` floats; rank r receives in `output` the sum over ranks
    /// of block r (`count` floats): MPI_Reduce_scatter_block.
    func reduceScatterSum(_ input: UnsafePointer<Float>, count: Int, into output: UnsafeMutablePointer<Float>) throws
    /// Every rank contributes `count` floats; `output` receives size × count, rank-ordered.
    func allGather(_ input: UnsafePointer<Float>, count: Int, into output: UnsafeMutablePointer<Float>) throws
    /// Byte-level all-gather: every rank contributes `bytes`; output receives size × bytes.
    func allGatherBytes(_ input: UnsafeRawPointer, bytes: Int, into output: UnsafeMutableRawPointer) throws
    /// Rank r contributes counts[r] floats; output receives them concatenated in rank order.
    func allGatherV(_ input: UnsafePointer<Float>, counts: [Int], into output: UnsafeMutablePointer<Float>) throws
    func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) throws
    func barrier() throws
    /// Time spent in and bytes sent by collectives since the start (or the last reset).
    var traffic: CommunicationStats { get }
    func resetTraffic()
    /// What the run is doing ("step 12"), named when a collective times out.
    func setActivity(_ text: String)
}

/// What the collectives cost: wall time inside MPI, bytes this rank contributed, call count.
public struct CommunicationStats: Sendable {
    public var seconds = 0.0
    public var bytes = 0
    public var calls = 0
    public init() {}
}

public extension Communicator {
    var isRoot: Bool { rank == 0 }

    /// The contiguous share of `count` items this rank owns (sizes differ by at most one).
    func shard(of count: Int) -> Range<Int> { (rank * count / size)..<((rank + 1) * count / size) }

    /// Data-parallel rows: each rank computes `width` floats per item of its shard, and every rank
    /// receives all `count` rows in item order. Used wherever ranks split an embedding job.
    func gatherRows(count: Int, width: Int, _ computeShard: (Range<Int>) throws -> [Float]) throws -> [Float] {
        let mine = shard(of: count)
        var local = mine.isEmpty ? [] : try computeShard(mine)
        precondition(local.count == mine.count * width, "gatherRows: a shard returned \(local.count) floats, expected \(mine.count * width)")
        if size == 1 { return local }
        let counts = (0..<size).map { r in ((r + 1) * count / size - r * count / size) * width }
        var all = [Float](repeating: 0, count: count * width)
        if local.isEmpty { local = [0] }  // a valid send pointer; this rank's count is 0
        try local.withUnsafeBufferPointer { try allGatherV($0.baseAddress!, counts: counts, into: &all) }
        return all
    }
}

/// The world of one process: every collective is the identity.
public final class SingleProcessCommunicator: Communicator {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {}
    public func allReduceSum(doubles buffer: UnsafeMutablePointer<Double>, count: Int) throws {}
    public func reduceScatterSum(_ input: UnsafePointer<Float>, count: Int, into output: UnsafeMutablePointer<Float>) throws {
        output.update(from: input, count: count)
    }
    public func allGather(_ input: UnsafePointer<Float>, count: Int, into output: UnsafeMutablePointer<Float>) throws {
        output.update(from: input, count: count)
    }
    public func allGatherBytes(_ input: UnsafeRawPointer, bytes: Int, into output: UnsafeMutableRawPointer) throws {
        output.copyMemory(from: input, byteCount: bytes)
    }
    public func allGatherV(_ input: UnsafePointer<Float>, counts: [Int], into output: UnsafeMutablePointer<Float>) throws {
        output.update(from: input, count: counts[0])
    }
    public func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) throws {}
    public func barrier() throws {}
    public var traffic: CommunicationStats { CommunicationStats() }
    public func resetTraffic() {}
    public func setActivity(_ text: String) {}
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
        watchdog = CollectiveWatchdog(timeout: Self.defaultCollectiveTimeout, rank: rank)
    }

    /// Seconds one collective may wait before this rank ends the job (0: forever).
    public static let defaultCollectiveTimeout = 300.0
    private let watchdog: CollectiveWatchdog
    public func setCollectiveTimeout(_ seconds: Double) { watchdog.setTimeout(seconds) }
    public func setActivity(_ text: String) { watchdog.setActivity(text) }

    public private(set) var traffic = CommunicationStats()
    public func resetTraffic() { traffic = CommunicationStats() }

    /// Runs one MPI call, timing it and checking its return code.
    private func call(_ name: String, bytes: Int, _ body: () -> Int32) throws {
        let t0 = DispatchTime.now().uptimeNanoseconds
        watchdog.begin(name)
        let rc = body()
        watchdog.end()
        traffic.seconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        traffic.bytes += bytes
        traffic.calls += 1
        if rc != MPI_SUCCESS { throw MPIError(call: name, rank: rank, code: rc) }
    }

    public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
        try call("MPI_Allreduce", bytes: count * 4) {
            MPI_Allreduce(cmpi_in_place(), buffer, Int32(count), cmpi_float(), cmpi_sum(), cmpi_comm_world())
        }
    }

    public func allReduceSum(doubles buffer: UnsafeMutablePointer<Double>, count: Int) throws {
        try call("MPI_Allreduce", bytes: count * 8) {
            MPI_Allreduce(cmpi_in_place(), buffer, Int32(count), cmpi_double(), cmpi_sum(), cmpi_comm_world())
        }
    }

    public func reduceScatterSum(_ input: UnsafePointer<Float>, count: Int, into output: UnsafeMutablePointer<Float>) throws {
        try call("MPI_Reduce_scatter_block", bytes: count * size * 4) {
            MPI_Reduce_scatter_block(input, output, Int32(count), cmpi_float(), cmpi_sum(), cmpi_comm_world())
        }
    }

    public func allGather(_ input: UnsafePointer<Float>, count: Int, into output: UnsafeMutablePointer<Float>) throws {
        try call("MPI_Allgather", bytes: count * 4) {
            MPI_Allgather(input, Int32(count), cmpi_float(), output, Int32(count), cmpi_float(), cmpi_comm_world())
        }
    }

    public func allGatherBytes(_ input: UnsafeRawPointer, bytes: Int, into output: UnsafeMutableRawPointer) throws {
        try call("MPI_Allgather", bytes: bytes) {
            MPI_Allgather(input, Int32(bytes), cmpi_byte(), output, Int32(bytes), cmpi_byte(), cmpi_comm_world())
        }
    }

    public func allGatherV(_ input: UnsafePointer<Float>, counts: [Int], into output: UnsafeMutablePointer<Float>) throws {
        var c32 = counts.map { Int32($0) }
        var displacements = [Int32](repeating: 0, count: counts.count)
        for r in 1..<max(counts.count, 1) { displacements[r] = displacements[r - 1] + c32[r - 1] }
        try call("MPI_Allgatherv", bytes: counts[rank] * 4) {
            MPI_Allgatherv(input, c32[rank], cmpi_float(), output, &c32, &displacements, cmpi_float(), cmpi_comm_world())
        }
    }

    public func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) throws {
        try call("MPI_Bcast", bytes: rank == root ? bytes : 0) {
            MPI_Bcast(buffer, Int32(bytes), cmpi_byte(), Int32(root), cmpi_comm_world())
        }
    }

    public func barrier() throws { try call("MPI_Barrier", bytes: 0) { MPI_Barrier(cmpi_comm_world()) } }

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
