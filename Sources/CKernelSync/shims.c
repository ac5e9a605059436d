#define _GNU_SOURCE
#include "CKernelSync.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

__thread void *ks_thread_state __attribute__((tls_model("initial-exec"))) = 0;
__thread int32_t ks_cached_tid __attribute__((tls_model("initial-exec"))) = 0;
__thread void *ks_rcu_reader __attribute__((tls_model("initial-exec"))) = 0;
__thread void *ks_callback_list __attribute__((tls_model("initial-exec"))) = 0;
__thread int ks_mutexes_held __attribute__((tls_model("initial-exec"))) = 0;
__thread int ks_returned_deferred __attribute__((tls_model("initial-exec"))) = 0;
int ks_fast_path_flags = 0;
unsigned long ks_rcu_gp_ctr = 1; /* RCUCounter.count: phase 0 */
struct ks_rcu_gp_seq_line ks_rcu_gp_seq = { 0 };

/// -1: not read from the environment yet (Lockdep.initialFlags does that on first use).
int ks_lockdep_flags = -1;

static uint64_t chain_cache_storage[KS_CHAIN_CACHE_SLOTS];
uint64_t *const ks_chain_cache_slots = chain_cache_storage;

int32_t ks_gettid_slow(void) {
    ks_cached_tid = (int32_t)syscall(SYS_gettid);
    return ks_cached_tid;
}

int ks_membarrier_register_private_expedited(void) {
    long rc = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0);
    return rc == 0 ? 0 : -errno;
}

int ks_membarrier_private_expedited(void) {
    long rc = syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
    return rc == 0 ? 0 : -errno;
}

void ks_set_thread_name(const char *name) {
    char truncated[16];
    strncpy(truncated, name, sizeof truncated - 1);
    truncated[sizeof truncated - 1] = 0;
    pthread_setname_np(pthread_self(), truncated);
}

int ks_get_thread_name(char *buffer, int size) {
    return pthread_getname_np(pthread_self(), buffer, (size_t)size);
}
