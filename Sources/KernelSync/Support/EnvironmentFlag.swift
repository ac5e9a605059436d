import Glibc

/// Whether the environment variable `name` is set to "1": how the `KSYNC_…` switches read at start are
/// spelled (`KSYNC_RCU_DEBUG=1`, `KSYNC_RCU_NOCBS=1`, …).
func environmentFlag(_ name: String) -> Bool {
    getenv(name).map { String(cString: $0) == "1" } ?? false
}
