import Glibc

/// A pthread key whose destructor runs, with the thread's value, when a thread that set one exits: how
/// per-thread state (the validator's thread state, an RCU reader record, a callback list) is given back.
struct ThreadExitKey: @unchecked Sendable {
    let key: pthread_key_t

    /// Makes the key; `destructor` runs at the exit of every thread whose value is not nil.
    init(destructor: @escaping @convention(c) (UnsafeMutableRawPointer?) -> Void) {
        var key = pthread_key_t()
        let rc = pthread_key_create(&key, destructor)
        precondition(rc == 0, "pthread_key_create failed: \(rc)")
        self.key = key
    }

    /// The calling thread's value.
    var value: UnsafeMutableRawPointer? { pthread_getspecific(key) }

    /// Sets the calling thread's value.
    func set(_ value: UnsafeRawPointer?) {
        let rc = pthread_setspecific(key, value)
        precondition(rc == 0, "pthread_setspecific failed: \(rc)")
    }
}
