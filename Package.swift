// swift-tools-version:6.0
import PackageDescription

// Targets depend one way: C libraries → kernels → formats/tokenizers → models → training →
// distributed → CLI. Numeric targets are compiled with -Ounchecked in release builds: the hot
// loops index raw pointers whose bounds are checked once, at the layer boundary.
let fast: [SwiftSetting] = [
    .unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release)),
    .swiftLanguageMode(.v5),
]
let plain: [SwiftSetting] = [.swiftLanguageMode(.v5)]

let package = Package(
    name: "EmbedTune",
    products: [
        .executable(name: "embedtune", targets: ["embedtune"]),
        .library(name: "EmbedTune", targets: ["EmbedTuneModels", "EmbedTuneDistributed", "EmbedTuneTraining", "EmbedTuneData", "EmbedTuneReport"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev"])]),
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),

        // Our AVX2/FMA kernels (GEMMs for linear layers and LoRA, GELU, SwiGLU); their functions carry
        // target attributes and are chosen at run time, the rest stays baseline x86-64.
        .target(name: "CEmbedTuneAVX2", cSettings: [.unsafeFlags(["-O3"], .when(configuration: .release))]),
        .target(name: "EmbedTuneKernels", dependencies: ["CBLAS", "CEmbedTuneAVX2"], swiftSettings: fast),
        .target(name: "EmbedTuneFormats", dependencies: ["EmbedTuneKernels", "CZstd", "CSQLite"], swiftSettings: fast),
        .target(name: "EmbedTuneTokenizers", dependencies: ["EmbedTuneFormats"], swiftSettings: fast),
        .target(
            name: "EmbedTuneModels",
            dependencies: ["EmbedTuneKernels", "EmbedTuneFormats", "EmbedTuneTokenizers"],
            swiftSettings: fast),
        .target(name: "EmbedTuneDistributed", dependencies: ["CMPI"], swiftSettings: plain),
        .target(
            name: "EmbedTuneTraining",
            dependencies: ["EmbedTuneModels", "EmbedTuneDistributed", "EmbedTuneFormats", "CZstd"],
            swiftSettings: fast),
        .target(
            name: "EmbedTuneData",
            dependencies: ["EmbedTuneTraining", "EmbedTuneTokenizers", "EmbedTuneModels", "EmbedTuneKernels", "EmbedTuneFormats", "CSQLite"],
            swiftSettings: plain),
        // Run reports and charts (HTML, SVG): rendering only, over JSONValue.
        .target(name: "EmbedTuneReport", dependencies: ["EmbedTuneFormats"], swiftSettings: plain),
        .executableTarget(
            name: "embedtune",
            dependencies: [
                "EmbedTuneModels", "EmbedTuneDistributed", "EmbedTuneTraining", "EmbedTuneData", "EmbedTuneReport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: plain),
        .testTarget(
            name: "EmbedTuneTests",
            dependencies: ["EmbedTuneModels", "EmbedTuneDistributed", "EmbedTuneTraining", "EmbedTuneData", "EmbedTuneReport"],
            swiftSettings: plain),
    ]
)
