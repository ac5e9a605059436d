// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "KernelSync",
    products: [
        .library(name: "KernelSync", targets: ["KernelSync"]),
        .executable(name: "ksync-demo", targets: ["ksync-demo"]),
    ],
    targets: [
        .target(name: "CKernelSync"),
        .target(
            name: "KernelSync",
            dependencies: ["CKernelSync"]
        ),
        .executableTarget(
            name: "ksync-demo",
            dependencies: ["KernelSync"]
        ),
        .testTarget(
            name: "KernelSyncTests",
            dependencies: ["KernelSync"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
