import EmbedTuneKernels
import Foundation
import Testing

@Suite("Kernels")
struct KernelTests {
    @Test("sgemm on the selected OpenBLAS core matches a naive reference, plain and transposed")
    func gemmMatchesReference() {
        var rng = SeededGenerator(seed: 7)
        for (m, n, k) in [(37, 53, 71), (128, 96, 64), (1, 129, 33)] {
            let a = (0..<(m * k)).map { _ in Float.random(in: -1...1, using: &rng) }
            let b = (0..<(k * n)).map { _ in Float.random(in: -1...1, using: &rng) }
            var bt = [Float](repeating: 0, count: k * n)
            for p in 0..<k { for j in 0..<n { bt[j * k + p] = b[p * n + j] } }
            var want = [Float](repeating: 0, count: m * n), got = want, gotT = want
            referenceGEMM(m: m, n: n, k: k, a: a, b: b, c: &want)
            sgemm(m: m, n: n, k: k, a: a, lda: k, b: b, ldb: n, c: &got, ldc: n)
            sgemm(transB: true, m: m, n: n, k: k, a: a, lda: k, b: bt, ldb: k, c: &gotT, ldc: n)
            #expect(maxAbsDifference(got, want) < 1e-4, "core \(BLASRuntime.coreName)")
            #expect(maxAbsDifference(gotT, want) < 1e-4, "core \(BLASRuntime.coreName)")
        }
    }

    @Test("the CLI re-executes onto a BLAS core that matches the CPU and verifies it")
    func cliSelectsCoreAndVerifies() throws {
        let info = try runCLI(["info", "--json"])
        #expect(info.status == 0, "\(info.stderr)")
        let json = try JSONSerialization.jsonObject(with: Data(info.stdout.utf8)) as! [String: String]
        let core = json["blas_core"] ?? ""
        let cpu = BLASRuntime.cpuInfo()
        if let chosen = ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] {
            // A core the environment names is the user's choice and is kept, whatever the CPU.
            #expect(core.lowercased() == chosen.lowercased(), "loaded \(core) although OPENBLAS_CORETYPE=\(chosen)")
        } else {
            #expect(BLASRuntime.simdClass(ofCore: core) >= cpu.simdClass, "loaded \(core) on a \(cpu.simdClass) CPU")
        }
        let verify = try runCLI(["bench", "gemm", "--verify", "--m", "64", "--n", "64", "--k", "64", "--repeats", "1", "--threads", "1"])
        #expect(verify.status == 0, "\(verify.stderr)")
        #expect(verify.stdout.contains("gemm verify: core \(core)"))
    }

    @Test("a Prescott kernel on an AVX-512 CPU is replaced, a user's OPENBLAS_CORETYPE never is")
    func coreSelectionPolicy() {
        let intel = BLASRuntime.CPUInfo(vendor: "GenuineIntel",
                                        flags: ["avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_bf16"])
        #expect(BLASRuntime.coreToForce(loaded: "Prescott", cpu: intel, environment: [:]) == "Cooperlake")
        #expect(BLASRuntime.coreToForce(loaded: "SkylakeX", cpu: intel, environment: [:]) == nil)
        #expect(BLASRuntime.coreToForce(loaded: "Prescott", cpu: intel, environment: ["OPENBLAS_CORETYPE": "Haswell"]) == nil)
        #expect(BLASRuntime.coreToForce(loaded: "Prescott", cpu: intel, environment: [BLASRuntime.reexecMarker: "1"]) == nil)
        let amd = BLASRuntime.CPUInfo(vendor: "AuthenticAMD", flags: ["avx", "avx2", "fma"])
        #expect(BLASRuntime.coreToForce(loaded: "Zen", cpu: amd, environment: [:]) == nil)
        #expect(BLASRuntime.coreToForce(loaded: "Prescott", cpu: amd, environment: [:]) == "Zen")
    }

    @Test("RMSNorm, SwiGLU and L2 normalisation compute their definitions")
    func elementwise() {
        let x: [Float] = [1, -2, 3, 0.5]
        let w: [Float] = [1, 2, 0.5, -1]
        var out = [Float](repeating: 0, count: 4)
        rmsnormForward(out: &out, inp: x, weight: w, n: 1, c: 4, eps: 1e-6)
        let rms = (x.map { $0 * $0 }.reduce(0, +) / 4 + 1e-6).squareRoot()
        #expect(maxAbsDifference(out, zip(x, w).map { $0 / rms * $1 }) < 1e-6)
        var v: [Float] = [3, 4]
        l2NormalizeRows(&v, n: 1, c: 2)
        #expect(maxAbsDifference(v, [0.6, 0.8]) < 1e-7)
        var s = [Float](repeating: 0, count: 2)
        swigluForward(out: &s, gate: [1, -1], up: [2, 3], count: 2)
        #expect(maxAbsDifference(s, [2 / (1 + expf(-1)), 3 * -1 / (1 + expf(1))]) < 1e-6)
    }
}

/// A small deterministic generator (SplitMix64) so tests do not depend on the system RNG.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
