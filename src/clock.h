/*
 * Time. Two clocks: the system's monotonic clock in milliseconds (every
 * bound on a wait, every structural-lock timeout), and the table's clock,
 * which is the same monotonic clock unless a test injects its own, counted
 * from the table's creation (every lease deadline). Wall-clock time is never
 * used for a decision (docs/failure-modes.md F11).
 */
#ifndef SHMLEASE_CLOCK_H
#define SHMLEASE_CLOCK_H

#include "table.h"

#include <stdint.h>
#include <time.h>
#if defined(__x86_64__)
#include <x86intrin.h>
#endif

/* CLOCK_MONOTONIC in ms (CTX unused: the signature of an injected clock). */
uint64_t shmlease__sys_clock_ms(void *ctx);
/* The table's clock, in ms since its creation (never negative). */
uint64_t shmlease__now_rel(const shmlease_table *t);
/* The table's clock read cheaply: the system's coarse monotonic clock (a few
 * ns instead of tens), which never runs ahead of the precise one and lags it
 * by about one tick (more on a stalled virtual machine, without bound). So a
 * deadline it reached has passed, and a deadline computed from it is never
 * later than asked; what it cannot prove is that a deadline has NOT passed.
 * An injected clock is read as it is. */
uint64_t shmlease__cheap_rel(const shmlease_table *t);
/* Process-wide facts about the clocks, read once (clock.c). */
struct shmlease__clockinfo {
    unsigned coarse_lag;       /* 0 not read yet, else the lag below + 1 */
    int      tsc;              /* hint clock is the TSC: 0 not known, 1 no, 2 yes */
    uint64_t hint_per_ms;      /* 0 not calibrated, UINT64_MAX unusable */
};
extern struct shmlease__clockinfo shmlease__clk;
unsigned shmlease__coarse_lag_slow(void);
uint64_t shmlease__hint_now_slow(void);
uint64_t shmlease__hint_per_ms_slow(void);

/* How far the cheap clock lags the precise one in ordinary operation, in
 * ms: two ticks of the coarse clock (2 to 20 ms; the lag was measured at 3
 * to 7 ms with a 4 ms tick on a virtual machine), or 0 when the table's
 * clock is not read coarsely (an injected clock, no usable coarse clock).
 * An acquire's deadline is at most this much shorter than asked. */
static inline unsigned shmlease__cheap_lag_ms(const shmlease_table *t)
{
    if (t->clock_ms)
        return 0;
    unsigned v = __atomic_load_n(&shmlease__clk.coarse_lag, __ATOMIC_RELAXED);
    return __builtin_expect(v != 0, 1) ? v - 1 : shmlease__coarse_lag_slow();
}

/* The hint clock: a cheap, machine-wide count (the CPU's invariant time
 * stamp counter / 1024 on x86-64, else the monotonic clock in ns / 1024) for
 * hints that only decide how often the kernel is asked something, never an
 * answer: it is not the table's clock and no deadline is on it. */
static inline uint64_t shmlease__hint_now(void)
{
#if defined(__x86_64__)
    if (__builtin_expect(__atomic_load_n(&shmlease__clk.tsc, __ATOMIC_RELAXED) == 2, 1))
        return __rdtsc() >> 10;
#endif
    return shmlease__hint_now_slow();
}

/* Hint-clock units per ms (calibrated once per process, ~20 us); 0 if the
 * hint clock cannot be used (then no hint is trusted). */
static inline uint64_t shmlease__hint_per_ms(void)
{
    uint64_t v = __atomic_load_n(&shmlease__clk.hint_per_ms, __ATOMIC_RELAXED);
    if (__builtin_expect(v != 0 && v != UINT64_MAX, 1))
        return v;
    return v == UINT64_MAX ? 0 : shmlease__hint_per_ms_slow();
}

void     shmlease__ms_to_timespec(uint64_t ms, struct timespec *ts);
/* Sleeps MS ms (less if a signal interrupts: callers loop on a deadline). */
void     shmlease__sleep_ms(unsigned ms);
static inline uint64_t shmlease__mono_ms(void) { return shmlease__sys_clock_ms(NULL); }

#endif
