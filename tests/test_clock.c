/* Time: the table's clock (system monotonic ms by default, or the injected
 * one) is what deadlines are measured on; huge TTLs are clamped, never wrap. */
#include "testutil.h"

#include <time.h>

#define T0 1000000u

static void test_default_clock_is_the_monotonic_clock_in_ms(void **state)
{
    (void)state;
    const char *name = tu_name("mono");
    shmlease_table *t = tu_open(name, NULL);
    uint64_t a = tu_mono_ms();
    uint64_t now = shmlease_now_ms(t);
    uint64_t b = tu_mono_ms();
    TU_RANGE(now, a - 2, b + 2);
    uint64_t prev = now;
    for (int i = 0; i < 10000; i++) {
        uint64_t x = shmlease_now_ms(t);
        if (x < prev)
            fail_msg("the clock went backwards: %llu after %llu", (unsigned long long)x,
                     (unsigned long long)prev);
        prev = x;
    }
    tu_sleep_ms(200);
    TU_RANGE(shmlease_now_ms(t) - now, 195, 600);
}

static void test_injected_clock_is_the_tables_clock(void **state)
{
    (void)state;
    const char *name = tu_name("injected");
    tu_clock *clk = tu_clock_new(T0);
    shmlease_options o = tu_opts_clock(clk, 0);
    shmlease_table *t = tu_open(name, &o);
    TU_EQU(shmlease_now_ms(t), T0);
    tu_clock_advance(clk, 12345);
    TU_EQU(shmlease_now_ms(t), T0 + 12345);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k", 777, 0, &l), 0);
    TU_EQU(l.expires_at_ms, T0 + 12345 + 777);
    /* another process, same clock */
    pid_t p = tu_fork();
    if (p == 0) {
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, &o, &u), 0);
        TU_CK(shmlease_now_ms(u) == T0 + 12345);
        shmlease_info i;
        TU_CK_RC(shmlease_inspect(u, "k", &i), 0);
        TU_CK(i.remaining_ms == 777);
        TU_CK(i.expires_at_ms == T0 + 12345 + 777);
        _exit(0);
    }
    tu_expect_exit0(p);
}

static void test_expiry_follows_the_injected_clock_not_real_time(void **state)
{
    (void)state;
    const char *name = tu_name("notreal");
    tu_clock *clk = tu_clock_new(T0);
    shmlease_options o = tu_opts_clock(clk, 0);
    shmlease_table *t = tu_open(name, &o);
    shmlease_table *other = tu_open(name, &o);
    shmlease_lease l, x;
    TU_RC(tu_acquire(t, "k", 50, 0, &l), 0);
    tu_sleep_ms(300); /* real time passes, the table's clock does not */
    TU_RC(tu_acquire(other, "k", 50, 0, &x), -EBUSY);
    TU_RC(shmlease_check(t, &l), 0);
    tu_clock_advance(clk, 51);
    TU_RC(tu_acquire(other, "k", 50, 0, &x), 0);
}

static void test_huge_ttl_is_clamped_never_wraps(void **state)
{
    (void)state;
    const char *name = tu_name("hugettl");
    tu_clock *clk = tu_clock_new(T0);
    shmlease_options o = tu_opts_clock(clk, 0);
    shmlease_table *t = tu_open(name, &o);
    shmlease_table *other = tu_open(name, &o);
    const uint64_t ttls[] = { UINT64_MAX, UINT64_MAX - T0, (uint64_t)1 << 63, (uint64_t)1 << 40,
                              (uint64_t)1 << 41, 34ull * 366 * 24 * 3600 * 1000 };
    const uint64_t year_ms = 365ull * 24 * 3600 * 1000;
    for (size_t k = 0; k < sizeof ttls / sizeof ttls[0]; k++) {
        shmlease_lease l, x;
        TU_RC(tu_acquire(t, "k", ttls[k], 0, &l), 0);
        uint64_t now = shmlease_now_ms(t);
        if (!(l.expires_at_ms > now + 30 * year_ms))
            fail_msg("ttl %llu: expires_at_ms %llu, now %llu: wrapped or clamped too short",
                     (unsigned long long)ttls[k], (unsigned long long)l.expires_at_ms,
                     (unsigned long long)now);
        if (l.expires_at_ms - now > ttls[k])
            fail_msg("ttl %llu: deadline beyond the TTL", (unsigned long long)ttls[k]);
        TU_RC(tu_acquire(other, "k", 1000, 0, &x), -EBUSY);
        shmlease_info i;
        TU_RC(shmlease_inspect(t, "k", &i), 0);
        assert_true(i.remaining_ms > 0);
        TU_RC(shmlease_renew(t, &l, ttls[k]), 0);
        TU_RC(tu_acquire(other, "k", 1000, 0, &x), -EBUSY);
        TU_RC(shmlease_release(t, &l), 0);
    }
    /* ten years later, a lease with a huge TTL is still held */
    shmlease_lease h, y;
    TU_RC(tu_acquire(t, "h", UINT64_MAX, 0, &h), 0);
    tu_clock_advance(clk, 10 * year_ms);
    TU_RC(shmlease_check(t, &h), 0);
    TU_RC(tu_acquire(other, "h", 1000, 0, &y), -EBUSY);
    TU_RC(shmlease_release(t, &h), 0);
    /* a grace period can be huge too */
    shmlease_lease l, x;
    TU_RC(tu_acquire(t, "g", 1000, 0, &l), 0);
    TU_RC(shmlease_release_after(t, &l, UINT64_MAX), 0);
    TU_RC(tu_acquire(other, "g", 1000, 0, &x), -EBUSY);
}

static void test_ttl_of_one_ms_works(void **state)
{
    (void)state;
    const char *name = tu_name("onems");
    tu_clock *clk = tu_clock_new(T0);
    shmlease_options o = tu_opts_clock(clk, 0);
    shmlease_table *t = tu_open(name, &o);
    shmlease_table *other = tu_open(name, &o);
    shmlease_lease l, x;
    TU_RC(tu_acquire(t, "k", 1, 0, &l), 0);
    TU_EQU(l.expires_at_ms, T0 + 1);
    TU_RC(tu_acquire(other, "k", 1, 0, &x), -EBUSY);
    tu_clock_advance(clk, 2);
    TU_RC(tu_acquire(other, "k", 1, 0, &x), 0);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(test_default_clock_is_the_monotonic_clock_in_ms),
        TU_TEST(test_injected_clock_is_the_tables_clock),
        TU_TEST(test_expiry_follows_the_injected_clock_not_real_time),
        TU_TEST(test_huge_ttl_is_clamped_never_wraps),
        TU_TEST(test_ttl_of_one_ms_works),
    };
    return TU_RUN(tests);
}
