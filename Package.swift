// swift-tools-version:6.0
import PackageDescription

// Targets depend one way, each only on targets listed before it:
//   Kernels → Formats → Tokenizers → Models → Data → Retrieval → Search → Training → Serving → embedtune (CLI)
// with Distributed (the MPI communicator) a leaf that Retrieval, Training and the CLI use, and
// Report (HTML and SVG rendering over Formats' JSON) a leaf that only the CLI uses; the fuzz
// harness (EmbedTuneFuzz) sits on top beside the CLI.
// Only the kernels are compiled with -Ounchecked: their hot loops index raw pointers whose
// bounds are checked once, at the layer boundary. Every target that parses files keeps its checks.
let kernels: [SwiftSetting] = [
    .unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release)),
    .swiftLanguageMode(.v5),
]
let checked: [SwiftSetting] = [.swiftLanguageMode(.v5)]

let package = Package(
    name: "EmbedTune",
    products: [
        .executable(name: "embedtune", targets: ["embedtune"]),
        .executable(name: "embedtune-fuzz", targets: ["EmbedTuneFuzz"]),
        .library(name: "EmbedTune", targets: ["EmbedTuneModels", "EmbedTuneDistributed", "EmbedTuneData", "EmbedTuneRetrieval", "EmbedTuneTraining", "EmbedTuneSearch", "EmbedTuneServing", "EmbedTuneReport"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // Property-based tests (generators, seeds, shrinking) for the tokenizers; tests only.
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
        // The HTTP server (`embedtune serve`) and its /metrics.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.0"),
    ],
    targets: [
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev"])]),
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),

        // Our AVX2/FMA kernels (GEMMs for linear layers and LoRA, GELU, SwiGLU); their functions carry
        // target attributes and are chosen at run time, the rest stays baseline x86-64.
        .target(name: "CEmbedTuneAVX2", cSettings: [.unsafeFlags(["-O3"], .when(configuration: .release))]),
        .target(name: "EmbedTuneKernels", dependencies: ["CBLAS", "CEmbedTuneAVX2"], swiftSettings: kernels),
        .target(name: "EmbedTuneFormats", dependencies: ["EmbedTuneKernels", "CZstd"], swiftSettings: checked),
        .target(name: "EmbedTuneTokenizers", dependencies: ["EmbedTuneFormats"], swiftSettings: checked),
        .target(
            name: "EmbedTuneModels",
            dependencies: ["EmbedTuneKernels", "EmbedTuneFormats", "EmbedTuneTokenizers"],
            swiftSettings: checked),
        .target(
            name: "EmbedTuneData",
            dependencies: ["EmbedTuneModels", "EmbedTuneTokenizers", "EmbedTuneFormats", "EmbedTuneKernels", "CSQLite"],
            swiftSettings: checked),
        .target(name: "EmbedTuneDistributed", dependencies: ["CMPI"], swiftSettings: checked),
        .target(
            name: "EmbedTuneRetrieval",
            dependencies: ["EmbedTuneData", "EmbedTuneModels", "EmbedTuneDistributed", "EmbedTuneFormats", "EmbedTuneKernels"],
            swiftSettings: checked),
        .target(
            name: "EmbedTuneTraining",
            dependencies: [
                "EmbedTuneRetrieval", "EmbedTuneData", "EmbedTuneModels", "EmbedTuneDistributed", "EmbedTuneTokenizers",
                "EmbedTuneFormats", "EmbedTuneKernels", "CZstd",
            ],
            swiftSettings: checked),
        // Adapters generated for new domains: Text-to-LoRA's hypernetwork (and its training).
        .target(
            name: "EmbedTuneGeneration",
            dependencies: ["EmbedTuneTraining", "EmbedTuneModels", "EmbedTuneDistributed", "EmbedTuneFormats", "EmbedTuneKernels"],
            swiftSettings: checked),
        // FAISS behind a C face: Debian's libfaiss-dev is a static libfaiss.a (built with GCC's
        // OpenMP, calling BLAS/LAPACK, which OpenBLAS provides) without FAISS's own C API.
        .target(
            name: "CFaiss", cxxSettings: [.headerSearchPath("openmp")],
            linkerSettings: [.linkedLibrary("faiss"), .linkedLibrary("gomp"), .linkedLibrary("openblas")]),
        // Vector indexes over a corpus (FAISS) and their search, with quantised rows and rescoring.
        .target(
            name: "EmbedTuneSearch",
            dependencies: ["CFaiss", "EmbedTuneRetrieval", "EmbedTuneFormats", "EmbedTuneKernels"],
            swiftSettings: checked),
        // Serving: dynamic batching, caches, TEI / OpenAI routes (ServerRoutes, no HTTP) and the
        // Hummingbird server with Prometheus metrics (EmbeddingServer).
        .target(
            name: "EmbedTuneServing",
            dependencies: [
                "EmbedTuneSearch", "EmbedTuneRetrieval", "EmbedTuneModels", "EmbedTuneFormats", "EmbedTuneKernels",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: checked),
        // Run reports and charts (HTML, SVG): rendering only, over JSONValue.
        .target(name: "EmbedTuneReport", dependencies: ["EmbedTuneFormats"], swiftSettings: checked),
        .executableTarget(
            name: "embedtune",
            dependencies: [
                "EmbedTuneModels", "EmbedTuneDistributed", "EmbedTuneData", "EmbedTuneRetrieval", "EmbedTuneTraining", "EmbedTuneReport",
                "EmbedTuneSearch", "EmbedTuneServing", "EmbedTuneGeneration", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: checked),
        // The libFuzzer harness over every reader of outside files (a replay tool in normal builds;
        // `make fuzz` builds it with -DFUZZING and -sanitize=fuzzer,address).
        .executableTarget(
            name: "EmbedTuneFuzz",
            dependencies: ["EmbedTuneModels", "EmbedTuneDistributed", "EmbedTuneData", "EmbedTuneTraining", "EmbedTuneSearch"],
            swiftSettings: checked),
        .testTarget(
            name: "EmbedTuneTests",
            dependencies: [
                "EmbedTuneModels", "EmbedTuneDistributed", "EmbedTuneData", "EmbedTuneRetrieval", "EmbedTuneTraining", "EmbedTuneReport",
                "EmbedTuneSearch", "EmbedTuneServing", "EmbedTuneGeneration", .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            swiftSettings: checked),
    ],
    cxxLanguageStandard: .cxx17
)
