/* Time: the table's clock in milliseconds, monotonic, system-wide. */
#include "clock.h"
#include "compiler.h"

#include <time.h>

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
 * Always the precise clock. The coarse one (CLOCK_MONOTONIC_COARSE, a few ns
 * cheaper) was measured lagging the precise one by tens of ms on a loaded
 * virtual machine, far beyond its stated resolution, so no bound on its
 * error holds: a lease checked with it could look valid after its deadline. */
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

void shmlease__sleep_ms(unsigned ms)
{
    struct timespec ts;
    shmlease__ms_to_timespec(ms, &ts);
    nanosleep(&ts, NULL);
}
