import CKernelSync
import Glibc

/// A joinable pthread running a closure: the userspace stand-in for a kernel thread.
///
/// Kernel analogue: `kthread_run()` to start, `kthread_stop()`-style join to end.
///
/// ```swift
/// let worker = KernelThread(name: "reader/0") { readLoop() }
/// worker.join()
/// ```
///
/// The thread is named with `pthread_setname_np` (Linux keeps the first 15 bytes), and the validator uses
/// the full name in its reports. A thread that returns while holding a lock is reported by the validator.
///
/// - Warning: Call ``join()`` exactly once; a thread that is never joined leaks its stack until the
///   process exits.
public final class KernelThread: @unchecked Sendable {
    // Not mutated after init; join() is documented as called once, from one thread.
    private let thread: pthread_t
    /// The name given at creation.
    public let name: String

    /// Starts a thread named `name` that runs `body`.
    public init(name: String, _ body: @escaping @Sendable () -> Void) {
        self.name = name
        let start = ThreadStart(name: name, body: body)
        let context = Unmanaged.passRetained(start).toOpaque()
        var handle = pthread_t()
        let rc = pthread_create(&handle, nil, { raw in
            let start = Unmanaged<ThreadStart>.fromOpaque(raw!).takeRetainedValue()
            start.run()
            return nil
        }, context)
        precondition(rc == 0, "pthread_create failed for thread \(name): \(rc)")
        thread = handle
    }

    /// Waits for the thread to return. Context: may block; must not be called from the thread itself.
    public func join() {
        let rc = pthread_join(thread, nil)
        precondition(rc == 0, "pthread_join failed for thread \(name): \(rc)")
    }

    /// The kernel thread id of the calling thread (`gettid(2)`).
    @inlinable public static var currentID: Int32 { ks_gettid() }

    /// Runs `count` threads named "`name`/i" that each run `body(i)`, and waits for all of them.
    public static func runAll(count: Int, name: String, _ body: @escaping @Sendable (Int) -> Void) {
        let threads = (0..<count).map { index in KernelThread(name: "\(name)/\(index)") { body(index) } }
        for thread in threads { thread.join() }
    }
}

/// The context handed through `pthread_create`: Swift 6 cannot pass a capturing closure as a C function
/// pointer, so the closure travels in this box.
private final class ThreadStart {
    let name: String
    let body: @Sendable () -> Void

    init(name: String, body: @escaping @Sendable () -> Void) {
        self.name = name
        self.body = body
    }

    func run() {
        ks_set_thread_name(name)
        ThreadState.setCurrentName(name)
        body()
    }
}
