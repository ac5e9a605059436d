import CKernelSync
import Glibc

/// A `pthread_mutex_t` at a fixed heap address, with every return code surfaced to the caller.
///
/// This is the one place in KernelSync that touches `pthread_mutex_*`. It is not a public type: the
/// public ``KernelMutex`` wraps it with the validator, and the library's own internal locks (the
/// validator's graph lock, work queue and RCU state) use it directly, where validating would recurse.
///
/// The memory is allocated once and never moves, so the address glibc sees stays valid for the
/// lifetime of the value's owner, who must call ``destroy()`` exactly once.
@usableFromInline
struct PthreadMutex {
    @usableFromInline
    let handle: UnsafeMutablePointer<pthread_mutex_t>

    /// Creates a default (`PTHREAD_MUTEX_NORMAL`) mutex: glibc's fastest path. Misuse checks are the
    /// caller's, through ``ownerThreadID`` (an error-checking mutex costs about 1.4× as much per pair).
    ///
    /// The type is set explicitly, which tells glibc to keep lock elision off for this mutex
    /// (`PTHREAD_MUTEX_NO_ELISION_NP`; its fast path is unchanged): with elision on
    /// (`GLIBC_TUNABLES=glibc.elision.enable=1` on a CPU with TSX), a default mutex taken in a
    /// transaction records no owner, and every owner check would fail.
    ///
    /// With `adaptive`, a `PTHREAD_MUTEX_ADAPTIVE_NP` mutex: a thread that finds it locked spins a
    /// little before it sleeps, as the kernel's mutex spins while the owner runs (optimistic
    /// spinning). For locks held for a few instructions and taken by several threads at a high rate,
    /// where a futex sleep and wake-up costs far more than the wait.
    init(adaptive: Bool = false) {
        handle = .allocate(capacity: 1)
        var attributes = pthread_mutexattr_t()
        pthread_mutexattr_init(&attributes)
        // glibc elides only the normal type, and only when its type was never set.
        pthread_mutexattr_settype(&attributes, Int32(adaptive ? PTHREAD_MUTEX_ADAPTIVE_NP : PTHREAD_MUTEX_NORMAL))
        let rc = pthread_mutex_init(handle, &attributes)
        pthread_mutexattr_destroy(&attributes)
        precondition(rc == 0, "pthread_mutex_init failed: \(rc)")
    }

    /// Destroys and frees the mutex. Context: the mutex must be unlocked and no thread may use it again.
    func destroy() {
        let rc = pthread_mutex_destroy(handle)
        precondition(rc == 0, "pthread_mutex_destroy of a locked or busy mutex: \(rc)")
        handle.deallocate()
    }

    /// Locks; returns 0 or the error code.
    @inlinable @inline(__always)
    func lock() -> Int32 { pthread_mutex_lock(handle) }

    /// Unlocks; returns 0 or the error code. Context: the caller holds the mutex.
    @inlinable @inline(__always)
    func unlock() -> Int32 { pthread_mutex_unlock(handle) }

    /// How many times ``lockSpinning()`` looks at a held mutex before it sleeps: under a microsecond on
    /// the development machine (a `pause` takes 26 ns there), less than a futex sleep and wake-up
    /// costs, more than the critical sections it is meant for (the group mutex's p99 hold is about
    /// 300 ns). 16 and 64 measured alike.
    static let spinLimit = 32

    /// Locks, first spinning for a while when the mutex is held, as the kernel's mutex spins while its
    /// owner runs (optimistic spinning, `mutex_optimistic_spin()`), then sleeping in glibc; returns 0 or
    /// the error code. A holder of a short critical section on another core lets go sooner than a
    /// futex sleep and wake-up would take (each a system call, and an IPI for the wake-up).
    ///
    /// Context: the caller has found the mutex held (a trylock failed) and does not hold it itself.
    @inline(never)
    func lockSpinning() -> Int32 {
        for _ in 0..<PthreadMutex.spinLimit {
            ks_cpu_relax()
            // The owner word as a hint (glibc clears it before it releases the lock word), so that the
            // spin reads a shared line instead of writing it with a failing trylock each time.
            if ks_mutex_owner(handle) == 0 && pthread_mutex_trylock(handle) == 0 { return 0 }
        }
        return pthread_mutex_lock(handle)
    }

    /// Tries to lock without waiting; returns 0 when acquired, EBUSY when held (by anyone, the caller
    /// included).
    @inlinable @inline(__always)
    func tryLock() -> Int32 { pthread_mutex_trylock(handle) }

    /// The kernel thread id glibc records as owner, or 0 when the mutex is free.
    ///
    /// glibc stores the owner's tid in `__data.__owner` for every mutex type it does not elide (see
    /// ``init(adaptive:)``). From another thread this is
    /// a snapshot, good for reports; "is it me" is exact, since only the owner writes its own id.
    @inlinable @inline(__always)
    var ownerThreadID: Int32 { ks_mutex_owner(handle) }

    /// Internal-lock convenience: locks, runs `body`, unlocks. Traps on a pthread error, which for the
    /// library's own locks can only be a KernelSync bug.
    @inlinable
    func withLock<R>(_ body: () throws -> R) rethrows -> R {
        lockOrTrap()
        defer { unlockOrTrap() }
        return try body()
    }

    /// ``withLock(_:)``'s lock, for a hot path where a closure would capture, and so copy, a value the
    /// caller means to move under the lock.
    @inlinable @inline(__always)
    func lockOrTrap() {
        let rc = pthread_mutex_lock(handle)
        precondition(rc == 0, "KernelSync internal lock: pthread_mutex_lock returned \(rc)")
    }

    /// ``withLock(_:)``'s unlock. Context: the caller holds the mutex.
    @inlinable @inline(__always)
    func unlockOrTrap() {
        let rc = pthread_mutex_unlock(handle)
        precondition(rc == 0, "KernelSync internal lock: pthread_mutex_unlock returned \(rc)")
    }
}

/// A `pthread_cond_t` at a fixed address, for the library's internal waits (work queue, RCU).
struct PthreadCondition {
    let handle: UnsafeMutablePointer<pthread_cond_t>

    init() {
        handle = .allocate(capacity: 1)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        let rc = pthread_cond_init(handle, &attributes)
        precondition(rc == 0, "pthread_cond_init failed: \(rc)")
        pthread_condattr_destroy(&attributes)
    }

    func destroy() {
        pthread_cond_destroy(handle)
        handle.deallocate()
    }

    /// Waits on the condition. Context: `mutex` held by the caller; held again on return.
    func wait(_ mutex: PthreadMutex) {
        let rc = pthread_cond_wait(handle, mutex.handle)
        precondition(rc == 0, "pthread_cond_wait failed: \(rc)")
    }

    /// Waits until signalled or until the monotonic clock reaches `deadline` (nanoseconds).
    /// Returns false on timeout. Context: `mutex` held by the caller; held again on return.
    @discardableResult
    func wait(_ mutex: PthreadMutex, untilMonotonicNanoseconds deadline: UInt64) -> Bool {
        var spec = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        let rc = pthread_cond_timedwait(handle, mutex.handle, &spec)
        precondition(rc == 0 || rc == ETIMEDOUT, "pthread_cond_timedwait failed: \(rc)")
        return rc == 0
    }

    func signal() { pthread_cond_signal(handle) }
    func broadcast() { pthread_cond_broadcast(handle) }
}

/// The monotonic clock in nanoseconds (CLOCK_MONOTONIC).
@usableFromInline
func monotonicNanoseconds() -> UInt64 {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return UInt64(spec.tv_sec) &* 1_000_000_000 &+ UInt64(spec.tv_nsec)
}

/// Writes a whole message to standard error in one write(2), so reports from two threads never interleave
/// line by line.
func writeToStandardError(_ message: String) {
    var text = message
    text.withUTF8 { bytes in
        var offset = 0
        while offset < bytes.count {
            let written = write(2, bytes.baseAddress! + offset, bytes.count - offset)
            if written <= 0 { return }
            offset += written
        }
    }
}
