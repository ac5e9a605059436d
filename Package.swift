// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "KernelSync",
    products: [
        .library(name: "KernelSync", targets: ["KernelSync"]),
        .library(name: "IOMMUModel", targets: ["IOMMUModel"]),
        .executable(name: "ksync-demo", targets: ["ksync-demo"]),
        .executable(name: "ksync-stress", targets: ["ksync-stress"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
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
        .testTarget(
            name: "KernelSyncTests",
            dependencies: ["KernelSync"]
        ),
        .testTarget(
            name: "IOMMUModelTests",
            dependencies: ["IOMMUModel", "KernelSync"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
