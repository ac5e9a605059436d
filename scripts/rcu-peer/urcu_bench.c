// The liburcu peer of the RCU benchmarks: urcu-memb (liburcu's default flavour, membarrier-based),
// with its inline read side (_LGPL_SOURCE). Prints one "name value unit" line per figure.
#define _LGPL_SOURCE
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <urcu/urcu-memb.h>

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static atomic_int stop_reader;
static atomic_int reader_ready;

static void *busy_reader(void *arg) {
    (void)arg;
    urcu_memb_register_thread();
    atomic_store(&reader_ready, 1);
    while (!atomic_load_explicit(&stop_reader, memory_order_relaxed)) {
        urcu_memb_read_lock();
        urcu_memb_read_unlock();
    }
    urcu_memb_unregister_thread();
    return NULL;
}

static atomic_long callbacks_run;
static void count_callback(struct rcu_head *head) {
    free(head);
    atomic_fetch_add_explicit(&callbacks_run, 1, memory_order_relaxed);
}

static double synchronize_latency(int iterations) {
    uint64_t start = now_ns();
    for (int i = 0; i < iterations; i++) urcu_memb_synchronize_rcu();
    return (double)(now_ns() - start) / iterations;
}

int main(void) {
    urcu_memb_register_thread();

    const long reads = 200000000;
    uint64_t start = now_ns();
    for (long i = 0; i < reads; i++) {
        urcu_memb_read_lock();
        urcu_memb_read_unlock();
    }
    printf("urcu-memb read_lock+unlock %.2f ns\n", (double)(now_ns() - start) / reads);

    urcu_memb_unregister_thread();
    printf("urcu-memb synchronize_rcu (0 busy readers) %.0f ns\n", synchronize_latency(2000));

    pthread_t reader;
    pthread_create(&reader, NULL, busy_reader, NULL);
    while (!atomic_load(&reader_ready)) {}
    printf("urcu-memb synchronize_rcu (1 busy reader) %.0f ns\n", synchronize_latency(2000));
    atomic_store(&stop_reader, 1);
    pthread_join(reader, NULL);

    urcu_memb_register_thread();
    const long calls = 2000000;
    start = now_ns();
    for (long i = 0; i < calls; i++) urcu_memb_call_rcu(malloc(sizeof(struct rcu_head)), count_callback);
    uint64_t queued = now_ns();
    urcu_memb_barrier();
    uint64_t done = now_ns();
    printf("urcu-memb call_rcu queue rate %.2f M/s\n", calls / ((double)(queued - start) / 1e3));
    printf("urcu-memb call_rcu end-to-end rate %.2f M/s\n", calls / ((double)(done - start) / 1e3));

    const int barriers = 200;
    start = now_ns();
    for (int i = 0; i < barriers; i++) {
        urcu_memb_call_rcu(malloc(sizeof(struct rcu_head)), count_callback);
        urcu_memb_barrier();
    }
    printf("urcu-memb rcu_barrier (1 callback queued) %.0f ns\n", (double)(now_ns() - start) / barriers);
    urcu_memb_unregister_thread();
    return 0;
}
