/* atomic: the few atomic operations the daemons use on counters and states
 * shared between threads, named once so that the memory order of each is
 * read at the call site rather than repeated as a builtin's argument.
 *
 * Relaxed: counters and flags whose value alone matters (statistics, a
 * connection count read by a balancer). Acquire/release: a flag that
 * publishes other data written before it (AT_STORE_REL then AT_LOAD_ACQ).
 * AT_CAS is a strong compare-and-swap, acquire-release on success and
 * acquire on failure; on failure *expected receives the current value. */
#ifndef COMMON_ATOMIC_H
#define COMMON_ATOMIC_H

#define AT_LOAD(p)         __atomic_load_n((p), __ATOMIC_RELAXED)
#define AT_LOAD_ACQ(p)     __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define AT_STORE(p, v)     __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define AT_STORE_REL(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
/* Both return the new value. */
#define AT_ADD(p, v)        __atomic_add_fetch((p), (v), __ATOMIC_RELAXED)
#define AT_ADD_ACQREL(p, v) __atomic_add_fetch((p), (v), __ATOMIC_ACQ_REL)
/* Returns the previous value. */
#define AT_XCHG(p, v) __atomic_exchange_n((p), (v), __ATOMIC_ACQ_REL)
/* 1 if *p held *expected and now holds desired; else 0, *expected = *p. */
#define AT_CAS(p, expected, desired)                                                               \
    __atomic_compare_exchange_n((p), (expected), (desired), 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)
#define AT_CAS_RELAXED(p, expected, desired)                                                       \
    __atomic_compare_exchange_n((p), (expected), (desired), 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)

#endif
