/* Time: the table's clock in milliseconds, monotonic, system-wide. */
#include "internal.h"

#include <time.h>

uint64_t shmlease__sys_clock_ms(void *ctx)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The coarse clock (a vDSO read of the last tick, ~5 ns) lags the precise
 * one by at most its resolution. shmlease__time() returns both bounds so that
 * callers decide "expired?" exactly while paying for a precise read only when
 * a deadline falls inside the bracket. An injected clock is exact. */
static uint64_t g_coarse_res_ms = UINT64_MAX;

static uint64_t coarse_res_ms(void)
{
    uint64_t r = __atomic_load_n(&g_coarse_res_ms, __ATOMIC_RELAXED);
    if (likely(r != UINT64_MAX))
        return r;
    struct timespec ts;
    if (clock_getres(CLOCK_MONOTONIC_COARSE, &ts) != 0 || ts.tv_sec > 0)
        r = 0;                                   /* unusable: always precise */
    else
        r = ((uint64_t)ts.tv_nsec + 999999u) / 1000000u + 1;
    __atomic_store_n(&g_coarse_res_ms, r, __ATOMIC_RELAXED);
    return r;
}

void shmlease__time(const shmlease_table *t, struct tbracket *b)
{
    if (t->clock_ms) {
        b->lo = b->hi = shmlease__now_rel(t);
        b->exact = 1;
        return;
    }
    uint64_t res = coarse_res_ms();
    if (res == 0) {
        b->lo = b->hi = shmlease__now_rel(t);
        b->exact = 1;
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    b->lo = now > t->created_at ? now - t->created_at : 0;
    b->hi = b->lo + res;
    b->exact = 0;
}

/* The precise time as a bracket of width 0: for new deadlines, which the
 * contract defines as now + ttl. */
void shmlease__time_exact(const shmlease_table *t, struct tbracket *b)
{
    b->lo = b->hi = shmlease__now_rel(t);
    b->exact = 1;
}

/* Is DEADLINE passed? Exact: reads the precise clock only inside the bracket. */
int shmlease__passed(const shmlease_table *t, struct tbracket *b, uint64_t deadline)
{
    if (deadline <= b->lo)
        return 1;
    if (deadline > b->hi)
        return 0;
    b->lo = b->hi = shmlease__now_rel(t);
    b->exact = 1;
    return deadline <= b->lo;
}

/* Milliseconds since the table was created, on the handle's clock. A clock
 * behind the creator's (another injected clock) reads as the creation instant. */
uint64_t shmlease__now_rel(const shmlease_table *t)
{
    uint64_t now = t->clock_ms ? t->clock_ms(t->clock_ctx) : shmlease__sys_clock_ms(NULL);
    return now > t->created_at ? now - t->created_at : 0;
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
