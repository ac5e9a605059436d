// The C peer of ksync-bench: DESIGN.md's benchmark workload with a pthread mutex per group and liburcu
// (urcu-memb, inline read side), in the shape of each remove-path variant:
//   freeUnderMutex      cancel the work, call_rcu, all under group->mutex
//   deferredCancel      after the unlock: cancel the work, call_rcu
//   deferredDisable     after the unlock: synchronize_rcu, disable the work, free
//   deferredDisableRCU  after the unlock: disable the work, call_rcu
// The work item is a state word as in the kernel's work_struct: an idle item's cancel clears its pending
// bit (try_grab_pending), its disable sets a disabled bit; nothing is ever queued in this workload.
//
// Usage: remove_peer VARIANT THREADS GROUPS CYCLES READERS
// Prints one line of JSON: {"cycles":N,"seconds":S,"reader_passes":P,"reader_devices_seen":D}.
// Built by scripts/bench-remove-path.sh: gcc -O2 -pthread remove_peer.c -lurcu-memb -lurcu-common.
#define _LGPL_SOURCE
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <urcu/urcu-memb.h>
#include <urcu/rculist.h>

enum variant { FREE_UNDER_MUTEX, DEFERRED_CANCEL, DEFERRED_DISABLE, DEFERRED_DISABLE_RCU };

enum { WORK_PENDING = 1, WORK_DISABLED = 2 };

struct domain { int id; };

/// struct iommu_group: the mutex serialises the list's updates and the fields below it.
struct group {
    pthread_mutex_t mutex;
    struct cds_list_head devices;
    int owner_cnt;
    struct domain *domain;
    struct domain *default_domain;
    /// The kref: one reference per bound device.
    atomic_long refs;
} __attribute__((aligned(64)));

struct device {
    char name[32];
    /// dev->iommu_group. Guarded by: the group's mutex.
    struct group *group;
};

/// struct group_device.
struct group_device {
    struct cds_list_head list;
    struct device *dev;
    char *name;
    struct domain *attached_domain;
    atomic_int work_state;
    struct rcu_head rcu;
};

static enum variant variant;
static struct group *groups;
static long group_count;
static atomic_int stop_readers;
static atomic_long reader_passes, reader_seen;

static void die(const char *message) {
    fprintf(stderr, "remove_peer: %s\n", message);
    exit(2);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void free_gdev_rcu(struct rcu_head *head) {
    struct group_device *gdev = caa_container_of(head, struct group_device, rcu);
    free(gdev->name);
    free(gdev);
}

/// __iommu_group_free_device in the variant's shape.
static void free_gdev(struct group_device *gdev) {
    switch (variant) {
    case FREE_UNDER_MUTEX:
    case DEFERRED_CANCEL:
        atomic_fetch_and(&gdev->work_state, ~WORK_PENDING);
        urcu_memb_call_rcu(&gdev->rcu, free_gdev_rcu);
        break;
    case DEFERRED_DISABLE:
        urcu_memb_synchronize_rcu();
        atomic_fetch_or(&gdev->work_state, WORK_DISABLED);
        free(gdev->name);
        free(gdev);
        break;
    case DEFERRED_DISABLE_RCU:
        atomic_fetch_or(&gdev->work_state, WORK_DISABLED);
        urcu_memb_call_rcu(&gdev->rcu, free_gdev_rcu);
        break;
    }
}

/// iommu_group_add_device: the probe step.
static void add_device(struct device *dev, struct group *group) {
    struct group_device *gdev = calloc(1, sizeof(*gdev));
    if (!gdev || !(gdev->name = strdup(dev->name))) die("out of memory");
    gdev->dev = dev;
    atomic_store_explicit(&gdev->work_state, 0, memory_order_relaxed);
    atomic_fetch_add_explicit(&group->refs, 1, memory_order_relaxed);
    pthread_mutex_lock(&group->mutex);
    dev->group = group;
    cds_list_add_tail_rcu(&gdev->list, &group->devices);
    gdev->attached_domain = group->domain;
    pthread_mutex_unlock(&group->mutex);
}

/// __iommu_group_remove_device as changed by the seed.
static void remove_device(struct device *dev, struct group *group) {
    struct group_device *gdev, *found = NULL;
    pthread_mutex_lock(&group->mutex);
    cds_list_for_each_entry(gdev, &group->devices, list) {
        if (gdev->dev == dev) { found = gdev; break; }
    }
    if (!found) die("device not on its group's list");
    cds_list_del_rcu(&found->list);
    if (cds_list_empty(&group->devices) && (group->owner_cnt != 0 || group->domain != group->default_domain))
        die("empty group still owned or not in its default domain");
    dev->group = NULL;
    if (variant == FREE_UNDER_MUTEX) free_gdev(found);
    pthread_mutex_unlock(&group->mutex);
    if (variant != FREE_UNDER_MUTEX) free_gdev(found);
    atomic_fetch_sub_explicit(&group->refs, 1, memory_order_acq_rel);
}

struct writer_args { long thread; long cycles; };

static void *writer(void *raw) {
    struct writer_args *args = raw;
    struct device dev = { .group = NULL };
    snprintf(dev.name, sizeof(dev.name), "bench%ld", args->thread);
    urcu_memb_register_thread();
    for (long cycle = 0; cycle < args->cycles; cycle++) {
        struct group *group = &groups[(args->thread + cycle) % group_count];
        add_device(&dev, group);
        remove_device(&dev, group);
    }
    urcu_memb_unregister_thread();
    return NULL;
}

/// The report path's lookup: walk a group's list under RCU and read each name.
static void *reader(void *unused) {
    (void)unused;
    long passes = 0, seen = 0;
    urcu_memb_register_thread();
    while (!atomic_load_explicit(&stop_readers, memory_order_relaxed)) {
        struct group *group = &groups[passes % group_count];
        struct group_device *gdev;
        urcu_memb_read_lock();
        cds_list_for_each_entry_rcu(gdev, &group->devices, list) {
            if (gdev->name[0] != '\0') seen++;
        }
        urcu_memb_read_unlock();
        passes++;
    }
    urcu_memb_unregister_thread();
    atomic_fetch_add(&reader_passes, passes);
    atomic_fetch_add(&reader_seen, seen);
    return NULL;
}

int main(int argc, char **argv) {
    static const char *names[] = { "freeUnderMutex", "deferredCancel", "deferredDisable", "deferredDisableRCU" };
    if (argc != 6) die("usage: remove_peer VARIANT THREADS GROUPS CYCLES READERS");
    int known = 0;
    for (int i = 0; i < 4; i++) {
        if (strcmp(argv[1], names[i]) == 0) { variant = (enum variant)i; known = 1; }
    }
    long threads = atol(argv[2]), readers = atol(argv[5]), cycles = atol(argv[4]);
    group_count = atol(argv[3]);
    if (!known || threads < 1 || group_count < 1 || cycles < 0 || readers < 0) die("bad arguments");

    static struct domain default_domain = { 1 };
    groups = aligned_alloc(64, sizeof(struct group) * (size_t)group_count);
    if (!groups) die("out of memory");
    for (long i = 0; i < group_count; i++) {
        pthread_mutex_init(&groups[i].mutex, NULL);
        CDS_INIT_LIST_HEAD(&groups[i].devices);
        groups[i].owner_cnt = 0;
        groups[i].domain = groups[i].default_domain = &default_domain;
        atomic_init(&groups[i].refs, 1);
    }

    pthread_t *reader_threads = calloc((size_t)readers + 1, sizeof(pthread_t));
    pthread_t *writer_threads = calloc((size_t)threads, sizeof(pthread_t));
    struct writer_args *args = calloc((size_t)threads, sizeof(struct writer_args));
    if (!reader_threads || !writer_threads || !args) die("out of memory");
    for (long i = 0; i < readers; i++) pthread_create(&reader_threads[i], NULL, reader, NULL);

    double start = now();
    for (long t = 0; t < threads; t++) {
        args[t].thread = t;
        args[t].cycles = cycles / threads + (t < cycles % threads ? 1 : 0);
        pthread_create(&writer_threads[t], NULL, writer, &args[t]);
    }
    for (long t = 0; t < threads; t++) pthread_join(writer_threads[t], NULL);
    double seconds = now() - start;
    atomic_store(&stop_readers, 1);
    for (long i = 0; i < readers; i++) pthread_join(reader_threads[i], NULL);
    urcu_memb_barrier();

    printf("{\"cycles\":%ld,\"seconds\":%.9f,\"reader_passes\":%ld,\"reader_devices_seen\":%ld}\n",
           cycles, seconds, atomic_load(&reader_passes), atomic_load(&reader_seen));
    return 0;
}
