/* Time: the table's clock in milliseconds, monotonic, system-wide. */
#include "clock.h"
#include "compiler.h"

#include <time.h>
#if defined(__x86_64__)
#include <cpuid.h>
#include <x86intrin.h>
#endif

#define COARSE_TICK_MAX_MS 10u   /* a coarser clock is not used (HZ below 100) */

uint64_t shmlease__sys_clock_ms(void *ctx)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Milliseconds since the table was created, on the handle's clock. A clock
 * behind the creator's (another injected clock) reads as the creation instant.
 *
 * The precise clock: what proves that a deadline has not passed. The coarse
 * one (shmlease__cheap_rel) was measured lagging it by tens of ms on a loaded
 * virtual machine, far beyond its stated resolution, so no bound on its error
 * holds: a lease checked with it could look valid after its deadline. */
uint64_t shmlease__now_rel(const shmlease_table *t)
{
    uint64_t now = t->clock_ms ? t->clock_ms(t->clock_ctx) : shmlease__sys_clock_ms(NULL);
    return now > t->created_at ? now - t->created_at : 0;
}

struct shmlease__clockinfo shmlease__clk;

/* Two ticks of the coarse clock in ms (its resolution rounded up); 0 if it
 * is unusable. Read once per process: the tick is fixed at boot. */
unsigned shmlease__coarse_lag_slow(void)
{
    struct timespec res, now;
    unsigned ms = 0;
    if (clock_getres(CLOCK_MONOTONIC_COARSE, &res) == 0 && res.tv_sec == 0 &&
        clock_gettime(CLOCK_MONOTONIC_COARSE, &now) == 0) {
        ms = (unsigned)((res.tv_nsec + 999999) / 1000000);
        if (ms == 0)
            ms = 1;
        if (ms > COARSE_TICK_MAX_MS)
            ms = 0;
    }
    __atomic_store_n(&shmlease__clk.coarse_lag, 2 * ms + 1, __ATOMIC_RELAXED);
    return 2 * ms;
}

uint64_t shmlease__cheap_rel(const shmlease_table *t)
{
    if (!shmlease__cheap_lag_ms(t))       /* an injected clock, or no coarse one */
        return shmlease__now_rel(t);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    return now > t->created_at ? now - t->created_at : 0;
}

/* ---- the hint clock ---------------------------------------------------- */

#define HINT_CALIBRATE_NS 20000u     /* calibration: 20 us of both clocks */

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* 1: the time stamp counter ticks at a constant rate in every power state
 * (CPUID 0x80000007, EDX bit 8), so it measures time; the kernel keeps it
 * in step across CPUs. Else the hint clock is the monotonic clock. */
static int use_tsc(void)
{
#if defined(__x86_64__)
    int r = __atomic_load_n(&shmlease__clk.tsc, __ATOMIC_RELAXED);
    if (likely(r))
        return r == 2;
    unsigned a, b, c, d;
    r = __get_cpuid(0x80000007u, &a, &b, &c, &d) && ((d >> 8) & 1u) ? 2 : 1;
    __atomic_store_n(&shmlease__clk.tsc, r, __ATOMIC_RELAXED);
    return r == 2;
#else
    return 0;
#endif
}

uint64_t shmlease__hint_now_slow(void)
{
#if defined(__x86_64__)
    if (use_tsc())
        return __rdtsc() >> 10;
#endif
    return mono_ns() >> 10;
}

/* Hint units per ms. The counter's rate is measured against the monotonic
 * clock over HINT_CALIBRATE_NS, once per process (threads that race here
 * each measure; any of their results will do). */
uint64_t shmlease__hint_per_ms_slow(void)
{
    uint64_t v = 1000000u >> 10;
#if defined(__x86_64__)
    if (use_tsc()) {
        uint64_t n0 = mono_ns(), c0 = __rdtsc(), n1, c1;
        do {
            n1 = mono_ns();
            c1 = __rdtsc();
        } while (n1 - n0 < HINT_CALIBRATE_NS);
        v = c1 > c0 ? ((c1 - c0) * 1000000u / (n1 - n0)) >> 10 : 0;
    }
#endif
    /* A counter that did not move: no hints, and no second calibration. */
    __atomic_store_n(&shmlease__clk.hint_per_ms, v ? v : UINT64_MAX, __ATOMIC_RELAXED);
    return v;
}

void shmlease__ms_to_timespec(uint64_t ms, struct timespec *ts)
{
    ts->tv_sec = (time_t)(ms / 1000u);
    ts->tv_nsec = (long)(ms % 1000u) * 1000000L;
}

SHM_API uint64_t shmlease_now_ms(shmlease_table *t)
{
    if (!t)
        return 0;
    return t->clock_ms ? t->clock_ms(t->clock_ctx) : shmlease__sys_clock_ms(NULL);
}

void shmlease__sleep_ms(unsigned ms)
{
    struct timespec ts;
    shmlease__ms_to_timespec(ms, &ts);
    nanosleep(&ts, NULL);
}
