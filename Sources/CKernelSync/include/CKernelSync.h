// CKernelSync: the few things Swift cannot say itself on Linux.
//
// - gettid() and membarrier(2) go through syscall(2), which is variadic and so not callable from Swift.
// - A per-thread pointer with the initial-exec TLS model: one %fs-relative load, no __tls_get_addr call,
//   so the validator and the RCU read side can find their per-thread state on the hot path.
// - A compiler-only barrier (asm volatile with a "memory" clobber), which Swift has no spelling for.
#ifndef CKERNELSYNC_H
#define CKERNELSYNC_H

#include <pthread.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// The calling thread's kernel thread id, cached; 0 until ks_gettid() fills it.
extern __thread int32_t ks_cached_tid __attribute__((tls_model("initial-exec")));

/// gettid(2) through syscall(2); fills the per-thread cache.
int32_t ks_gettid_slow(void);

/// The kernel thread id of the calling thread (gettid(2)): one TLS load after the first call.
static inline int32_t ks_gettid(void) {
    int32_t tid = ks_cached_tid;
    return tid != 0 ? tid : ks_gettid_slow();
}

/// The tid glibc records as the owner of `mutex` (`__data.__owner`; 0 when unlocked), read with a
/// relaxed atomic load because other threads write it. glibc sets it after taking the lock and clears
/// it before releasing, for every mutex type, so a thread that reads its own tid here holds the mutex.
static inline int32_t ks_mutex_owner(pthread_mutex_t *mutex) {
    return __atomic_load_n(&mutex->__data.__owner, __ATOMIC_RELAXED);
}

/// glibc's flag in `__data.__kind` that keeps lock elision off for a mutex (`PTHREAD_MUTEX_NO_ELISION_NP`,
/// internal to glibc, stable since 2.18). `pthread_mutexattr_settype(PTHREAD_MUTEX_NORMAL)` sets it.
#define KS_MUTEX_NO_ELISION 512

/// The mutex's `__data.__kind` word (type and flags), for tests of how KernelSync creates its mutexes.
static inline int32_t ks_mutex_kind(pthread_mutex_t *mutex) {
    return __atomic_load_n(&mutex->__data.__kind, __ATOMIC_RELAXED);
}

/// Names the calling thread (pthread_setname_np; Linux keeps the first 15 bytes).
void ks_set_thread_name(const char *name);

/// Copies the calling thread's name into `buffer` (pthread_getname_np). Returns 0 or an error number.
int ks_get_thread_name(char *buffer, int size);

/// The calling thread's KernelSync state (an opaque Swift object), or NULL before first use.
extern __thread void *ks_thread_state __attribute__((tls_model("initial-exec")));

static inline void *ks_thread_state_get(void) { return ks_thread_state; }
static inline void ks_thread_state_set(void *state) { ks_thread_state = state; }

/// The validator's mode and statistics flags (see Lockdep.flags in Swift): a plain C global so that the
/// lock fast path reads it with one load, with no lazy-initialisation check.
extern int ks_lockdep_flags;

/// Ordering: relaxed; the flags order nothing (set them before starting threads).
static inline int ks_lockdep_flags_load(void) { return __atomic_load_n(&ks_lockdep_flags, __ATOMIC_RELAXED); }
static inline void ks_lockdep_flags_store(int flags) { __atomic_store_n(&ks_lockdep_flags, flags, __ATOMIC_RELAXED); }

/// The validator's chain cache: 65,536 zero-initialised 64-bit slots in static storage.
enum { KS_CHAIN_CACHE_SLOTS = 1 << 16 };
extern uint64_t *const ks_chain_cache_slots;

/// Ordering: acquire; pairs with the release in ks_cas_release_u64.
static inline uint64_t ks_load_acquire_u64(const uint64_t *slot) { return __atomic_load_n(slot, __ATOMIC_ACQUIRE); }

/// Compare-and-swap `expected` → `desired`; returns the value found (== expected on success).
/// Ordering: release on success, pairs with ks_load_acquire_u64; relaxed on failure.
static inline uint64_t ks_cas_release_u64(uint64_t *slot, uint64_t expected, uint64_t desired) {
    __atomic_compare_exchange_n(slot, &expected, desired, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED);
    return expected;
}

/// How many KernelMutexes the calling thread holds, in every validator mode. The RCU reclaimer hands a
/// thread back its callbacks to run only while it holds none, so that the deinits of retired objects
/// never run inside a caller's critical section (the kernel runs them from softirq, not in the task
/// that queued them). Ordering: none; the owning thread's own counter.
extern __thread int ks_mutexes_held __attribute__((tls_model("initial-exec")));

static inline void ks_mutexes_held_add(int delta) { ks_mutexes_held += delta; }
static inline int ks_mutexes_held_get(void) { return ks_mutexes_held; }

/// Set when the calling thread found callbacks handed back to it while it held a KernelMutex: its
/// last unlock runs them, as the kernel runs pending softirqs when a CPU leaves the section that held
/// them off. Ordering: none; the owning thread's own flag.
extern __thread int ks_returned_deferred __attribute__((tls_model("initial-exec")));

static inline int ks_returned_deferred_get(void) { return ks_returned_deferred; }
static inline void ks_returned_deferred_set(int value) { ks_returned_deferred = value; }

/// The calling thread's RCU reader record (an opaque, retained Swift object), or NULL while the thread is
/// not registered with RCU (before first use, while offline, after exit). Separate from ks_thread_state so
/// the RCU read side costs one %fs-relative load and never touches the validator's state.
extern __thread void *ks_rcu_reader __attribute__((tls_model("initial-exec")));

static inline void *ks_rcu_reader_get(void) { return ks_rcu_reader; }
static inline void ks_rcu_reader_set(void *reader) { ks_rcu_reader = reader; }

/// The calling thread's RCU callback list (an unretained ThreadCallbacks), or NULL before its first
/// call_rcu. A pthread key holds the reference and hands the list over at thread exit.
extern __thread void *ks_callback_list __attribute__((tls_model("initial-exec")));

static inline void *ks_callback_list_get(void) { return ks_callback_list; }
static inline void ks_callback_list_set(void *list) { ks_callback_list = list; }

/// Flags that inlined fast paths in other modules (the RCU read side) test with one load, without the
/// lazy-initialisation check a Swift global costs. Bit KS_FLAG_LOCKDEP: the lock validator is validating
/// (kept by Lockdep's mode setters). Bit KS_FLAG_RCU_FENCES: RCU readers issue full fences (set once by
/// the grace-period engine, before any reader registers).
/// Ordering: relaxed; mode switches, set before the threads they concern run.
extern int ks_fast_path_flags;
#define KS_FLAG_LOCKDEP 1
#define KS_FLAG_RCU_FENCES 2

static inline int ks_fast_path_flags_get(void) { return __atomic_load_n(&ks_fast_path_flags, __ATOMIC_RELAXED); }
static inline void ks_fast_path_flags_set(int flag, int on) {
    if (on) __atomic_fetch_or(&ks_fast_path_flags, flag, __ATOMIC_RELAXED);
    else __atomic_fetch_and(&ks_fast_path_flags, ~flag, __ATOMIC_RELAXED);
}

/// RCU's global grace-period counter (liburcu rcu_gp.ctr): stored only by a grace-period leader, loaded
/// by readers at their outermost lock. Ordering: relaxed on both sides; see GracePeriodEngine.
extern unsigned long ks_rcu_gp_ctr;

static inline unsigned long ks_rcu_gp_ctr_load(void) { return __atomic_load_n(&ks_rcu_gp_ctr, __ATOMIC_RELAXED); }
static inline void ks_rcu_gp_ctr_store(unsigned long value) { __atomic_store_n(&ks_rcu_gp_ctr, value, __ATOMIC_RELAXED); }

/// RCU's grace-period sequence (GracePeriodEngine's): twice the completed grace periods, plus one while
/// one runs. Stored only by a grace-period leader; loaded by every snapshot and poll, which the remove
/// path makes under its update lock, without the lazy-initialisation check of a Swift global.
/// On a cache line of its own: each grace period stores it twice, and beside ks_fast_path_flags (which
/// every read section loads) it cost readers two misses a grace period (found in review).
/// Ordering: as each function says; see GracePeriodEngine.
struct ks_rcu_gp_seq_line { uint64_t value; char padding[56]; } __attribute__((aligned(64)));
extern struct ks_rcu_gp_seq_line ks_rcu_gp_seq;

static inline uint64_t ks_rcu_gp_seq_load_relaxed(void) { return __atomic_load_n(&ks_rcu_gp_seq.value, __ATOMIC_RELAXED); }
static inline uint64_t ks_rcu_gp_seq_load_acquire(void) { return __atomic_load_n(&ks_rcu_gp_seq.value, __ATOMIC_ACQUIRE); }
static inline void ks_rcu_gp_seq_store_relaxed(uint64_t value) { __atomic_store_n(&ks_rcu_gp_seq.value, value, __ATOMIC_RELAXED); }
static inline void ks_rcu_gp_seq_store_release(uint64_t value) { __atomic_store_n(&ks_rcu_gp_seq.value, value, __ATOMIC_RELEASE); }

/// Compiler barrier: stops the compiler from moving memory accesses across it; emits no instruction.
/// Ordering: pairs with a membarrier(2) in the grace-period code, which makes it a full barrier.
static inline void ks_compiler_barrier(void) { __asm__ __volatile__("" ::: "memory"); }

/// The kernel's `cpu_relax()`: a spin-wait hint (x86 `pause`, arm64 `yield`) that eases the pipeline and
/// the sibling hyperthread while a thread spins on a lock word.
static inline void ks_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#else
    ks_compiler_barrier();
#endif
}

/// membarrier(2) with MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED. Returns 0 on success, -errno on failure.
int ks_membarrier_register_private_expedited(void);

/// membarrier(2) with MEMBARRIER_CMD_PRIVATE_EXPEDITED: a full barrier on every running thread of this
/// process. Returns 0 on success, -errno on failure.
int ks_membarrier_private_expedited(void);

#ifdef __cplusplus
}
#endif

#endif
