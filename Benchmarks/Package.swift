// swift-tools-version: 6.1
// Benchmarks for KernelSync, kept in their own package so the library does not depend on
// package-benchmark. Run them with scripts/bench.sh from the repository root.
import Foundation
import PackageDescription

// A path dependency's identity is its folder's name, which differs between clones; derive it.
let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
let rootIdentity = root.lastPathComponent

func suite(_ name: String, peers: [Target.Dependency] = []) -> Target {
    .executableTarget(
        name: name,
        dependencies: [
            .product(name: "Benchmark", package: "benchmark"),
            .product(name: "KernelSync", package: rootIdentity),
        ] + peers,
        path: "Benchmarks/\(name)",
        plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
    )
}

let package = Package(
    name: "KernelSyncBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: root.path),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        suite("MutexBenchmarks"),
        suite("WorkqueueBenchmarks"),
        suite("RCUBenchmarks", peers: ["URCUPeer"]),
        suite("RemovePathBenchmarks", peers: [.product(name: "IOMMUModel", package: rootIdentity)]),
        // liburcu (urcu-memb) in C: the peer the RCU suite runs side by side with KernelSync's RCU.
        .target(
            name: "URCUPeer",
            linkerSettings: [.linkedLibrary("urcu-memb"), .linkedLibrary("urcu-common"), .linkedLibrary("pthread")]
        ),
    ]
)
