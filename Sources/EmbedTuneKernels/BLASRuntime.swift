import CBLAS
import Foundation

/// OpenBLAS kernel and thread selection.
///
/// Debian's OpenBLAS 0.3.21 picks its kernel ("core") once, when the library loads, from
/// CPUID. CPUs newer than the library are unknown to it and fall back to the SSE3 "Prescott"
/// kernel, 4-5× slower than what the hardware can do. The override, OPENBLAS_CORETYPE, is read
/// at load time too, so a `setenv` inside `main` is too late. `selectCoreOrReexec` therefore
/// re-executes the program once with the override set when the loaded kernel is weaker than the
/// CPU's instruction set. A user's own OPENBLAS_CORETYPE is always respected.
public enum BLASRuntime {
    /// Instruction-set classes, ordered by width.
    public enum SIMDClass: Int, Comparable, CustomStringConvertible {
        case sse = 0, avx = 1, avx2 = 2, avx512 = 3
        public static func < (a: SIMDClass, b: SIMDClass) -> Bool { a.rawValue < b.rawValue }
        public var description: String { ["SSE", "AVX", "AVX2", "AVX-512"][rawValue] }
    }

    public static let reexecMarker = "EMBEDTUNE_BLAS_REEXEC"

    /// The kernel OpenBLAS loaded, e.g. "Zen", "SkylakeX", "Prescott".
    public static var coreName: String { String(cString: openblas_get_corename()) }
    public static var config: String { String(cString: openblas_get_config()) }
    /// Compute threads of this process (the `ComputeTeam`). OpenBLAS itself always runs one
    /// thread per call: the team splits the GEMMs, so no BLAS thread spins while element-wise
    /// kernels run.
    public static var threads: Int { ComputeTeam.current.size }
    public static func setThreads(_ n: Int) {
        openblas_set_num_threads(1)
        ComputeTeam.shared.resize(n)
    }

    /// OpenBLAS set to one thread, once, before the first product: the team splits products
    /// itself, and a split is exact only on single-threaded calls (`GEMMKernel.splitInvariantRows`).
    /// (A program that never calls `setThreads`, such as the tests, would otherwise run OpenBLAS's
    /// own threads inside each of the team's.)
    private static let oneThreadPerCall: Void = openblas_set_num_threads(1)
    @inline(__always)
    static func useOneThreadPerCall() { _ = oneThreadPerCall }

    /// The widest SIMD class of an OpenBLAS core name (names from OpenBLAS's dynamic.c).
    public static func simdClass(ofCore name: String) -> SIMDClass {
        switch name.lowercased() {
        case "skylakex", "cooperlake", "sapphirerapids": return .avx512
        case "haswell", "zen", "excavator", "steamroller": return .avx2
        case "sandybridge", "bulldozer", "piledriver": return .avx
        default: return .sse
        }
    }

    public struct CPUInfo {
        public var vendor: String
        public var flags: Set<String>
        public init(vendor: String, flags: Set<String>) {
            self.vendor = vendor
            self.flags = flags
        }
        public var simdClass: SIMDClass {
            if flags.isSuperset(of: ["avx512f", "avx512bw", "avx512vl", "avx512dq"]) { return .avx512 }
            if flags.isSuperset(of: ["avx2", "fma"]) { return .avx2 }
            if flags.contains("avx") { return .avx }
            return .sse
        }
        /// The OpenBLAS core that matches this CPU best.
        public var bestCore: String {
            switch simdClass {
            case .avx512: return flags.contains("avx512_bf16") ? "Cooperlake" : "SkylakeX"
            case .avx2: return vendor.contains("AMD") ? "Zen" : "Haswell"
            case .avx: return "Sandybridge"
            case .sse: return "Prescott"
            }
        }
    }

    public static func cpuInfo(from text: String? = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) -> CPUInfo {
        var vendor = "unknown", flags = Set<String>()
        for line in (text ?? "").split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2 else { continue }
            let key = parts[0].trimmingCharacters(in: .whitespaces)
            if key == "vendor_id", vendor == "unknown" { vendor = parts[1].trimmingCharacters(in: .whitespaces) }
            if key == "flags", flags.isEmpty { flags = Set(parts[1].split(separator: " ").map(String.init)) }
            if vendor != "unknown", !flags.isEmpty { break }
        }
        return CPUInfo(vendor: vendor, flags: flags)
    }

    /// The core to force, or nil when the loaded one already matches the CPU (or the user chose).
    public static func coreToForce(loaded: String, cpu: CPUInfo, environment: [String: String]) -> String? {
        if environment["OPENBLAS_CORETYPE"] != nil || environment[reexecMarker] != nil { return nil }
        if environment["EMBEDTUNE_BLAS_AUTO"] == "0" { return nil }
        return simdClass(ofCore: loaded) < cpu.simdClass ? cpu.bestCore : nil
    }

    /// Call first thing in `main`, before MPI_Init and before any thread starts. Returns only
    /// when no re-exec is needed (or it failed, in which case we run on the loaded kernel).
    public static func selectCoreOrReexec() {
        let env = ProcessInfo.processInfo.environment
        guard let core = coreToForce(loaded: coreName, cpu: cpuInfo(), environment: env) else { return }
        setenv("OPENBLAS_CORETYPE", core, 1)
        setenv(reexecMarker, "1", 1)
        fflush(nil)
        let args = CommandLine.arguments.map { strdup($0) } + [nil]
        execv("/proc/self/exe", args)
        // execv only returns on failure: carry on with the slow kernel rather than die.
        unsetenv("OPENBLAS_CORETYPE")
    }

    /// Threads per process: an explicit count or OPENBLAS_NUM_THREADS / OMP_NUM_THREADS wins;
    /// under mpirun the cores are shared by the ranks on this node (OMPI_COMM_WORLD_LOCAL_SIZE),
    /// so each gets cores ÷ ranks.
    public static func configureThreads(explicit: Int? = nil) {
        let env = ProcessInfo.processInfo.environment
        if let explicit { setThreads(explicit); return }
        if let n = Int(env["OPENBLAS_NUM_THREADS"] ?? env["OMP_NUM_THREADS"] ?? "") { setThreads(n); return }
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let local = Int(env["OMPI_COMM_WORLD_LOCAL_SIZE"] ?? env["SLURM_NTASKS_PER_NODE"] ?? "1") ?? 1
        setThreads(max(1, cores / max(1, local)))
    }
}
