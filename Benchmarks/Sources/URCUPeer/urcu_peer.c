#define _LGPL_SOURCE
#define _GNU_SOURCE
#include "URCUPeer.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <urcu/urcu-memb.h>

void urcu_peer_register(void) { urcu_memb_register_thread(); }
void urcu_peer_unregister(void) { urcu_memb_unregister_thread(); }

void urcu_peer_read_sections(long count) {
    for (long i = 0; i < count; i++) {
        urcu_memb_read_lock();
        urcu_memb_read_unlock();
    }
}

void urcu_peer_synchronize(void) { urcu_memb_synchronize_rcu(); }

static void free_head(struct rcu_head *head) { free(head); }

void urcu_peer_call(void) { urcu_memb_call_rcu(malloc(sizeof(struct rcu_head)), free_head); }

void urcu_peer_barrier(void) { urcu_memb_barrier(); }

static atomic_int stop_reader;
static atomic_int reader_ready;
static pthread_t reader;

static void *busy_reader(void *unused) {
    (void)unused;
    urcu_memb_register_thread();
    atomic_store(&reader_ready, 1);
    while (!atomic_load_explicit(&stop_reader, memory_order_relaxed)) {
        urcu_memb_read_lock();
        urcu_memb_read_unlock();
    }
    urcu_memb_unregister_thread();
    return NULL;
}

void urcu_peer_start_busy_reader(void) {
    atomic_store(&stop_reader, 0);
    atomic_store(&reader_ready, 0);
    pthread_create(&reader, NULL, busy_reader, NULL);
    while (!atomic_load(&reader_ready)) {}
}

void urcu_peer_stop_busy_reader(void) {
    atomic_store(&stop_reader, 1);
    pthread_join(reader, NULL);
}
