// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "KernelSync",
    products: [
        .library(name: "KernelSync", targets: ["KernelSync"]),
        .library(name: "IOMMUModel", targets: ["IOMMUModel"]),
        .executable(name: "ksync-demo", targets: ["ksync-demo"]),
        .executable(name: "ksync-stress", targets: ["ksync-stress"]),
        .executable(name: "ksync-bench", targets: ["ksync-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
    ],
    targets: [
        .target(name: "CKernelSync"),
        .target(
            name: "KernelSync",
            dependencies: ["CKernelSync"]
        ),
        .target(
            name: "IOMMUModel",
            dependencies: ["KernelSync"]
        ),
        .executableTarget(
            name: "ksync-demo",
            dependencies: ["KernelSync"]
        ),
        .executableTarget(
            name: "ksync-stress",
            dependencies: [
                "KernelSync",
                "IOMMUModel",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "ksync-bench",
            dependencies: [
                "IOMMUModel",
                "KernelSync",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ]
        ),
        .testTarget(
            name: "KernelSyncTests",
            dependencies: ["KernelSync"]
        ),
        .testTarget(
            name: "IOMMUModelTests",
            dependencies: ["IOMMUModel", "KernelSync"]
        ),
        .testTarget(
            name: "KsyncBenchTests",
            dependencies: ["ksync-bench"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
