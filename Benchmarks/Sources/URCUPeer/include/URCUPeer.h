// The liburcu peer of the RCU benchmarks: urcu-memb (liburcu's default flavour, membarrier-based)
// with its inline read side (_LGPL_SOURCE), wrapped so that the Swift benchmarks drive both sides in one
// process with one harness. Needs Debian's liburcu-dev (scripts/bench.sh installs it).
#ifndef URCU_PEER_H
#define URCU_PEER_H

/// rcu_register_thread / rcu_unregister_thread for the calling thread.
void urcu_peer_register(void);
void urcu_peer_unregister(void);

/// `count` empty read sections (rcu_read_lock + rcu_read_unlock, inlined).
void urcu_peer_read_sections(long count);

/// synchronize_rcu().
void urcu_peer_synchronize(void);

/// call_rcu() of a malloc'd head whose callback frees it.
void urcu_peer_call(void);

/// rcu_barrier().
void urcu_peer_barrier(void);

/// Starts / stops one thread that enters and leaves read sections without pause.
void urcu_peer_start_busy_reader(void);
void urcu_peer_stop_busy_reader(void);

#endif
