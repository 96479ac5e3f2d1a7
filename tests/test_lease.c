/* Leases: acquire / renew / release / release_after / with / check / break,
 * argument checking, TTL expiry on the injected test clock. */
#include "testutil.h"

#include <time.h>

#define T0 1000000u /* test clock start */

/* The key is not held: inspect says -ENOENT, or shows an expired lease. */
static void assert_not_held(shmlease_table *t, const char *key)
{
    shmlease_info i;
    int rc = shmlease_inspect(t, key, &i);
    if (rc == 0 && i.remaining_ms > 0)
        fail_msg("key %s is still held (holder %d, remaining %lld ms)", key, i.holder_pid,
                 (long long)i.remaining_ms);
    assert_true(rc == 0 || rc == -ENOENT);
}

static void test_acquire_renew_release_basics(void **state)
{
    (void)state;
    const char *name = tu_name("basics");
    shmlease_table *t = tu_open(name, NULL);
    shmlease_lease l;
    uint64_t before = shmlease_now_ms(t);
    TU_RC(tu_acquire(t, "job", 5000, 0, &l), 0);
    uint64_t after = shmlease_now_ms(t);
    TU_GT(l.fencing_token, 0);
    /* (exactness of now + ttl: test_deadline_is_now_plus_ttl) */
    TU_RANGE(l.expires_at_ms, before + 5000 - 20, after + 5000);
    shmlease_info i = tu_inspect_ok(t, "job");
    assert_string_equal(i.key, "job");
    TU_EQU(i.fencing_token, l.fencing_token);
    TU_EQ(i.holder_pid, getpid());
    TU_EQ(i.holder_alive, 1);
    TU_EQ(i.in_grace, 0);
    TU_EQU(i.expires_at_ms, l.expires_at_ms);
    TU_RANGE(i.remaining_ms, 4000, 5000);
    TU_RC(shmlease_check(t, &l), 0);

    uint64_t r0 = shmlease_now_ms(t);
    TU_RC(shmlease_renew(t, &l, 20000), 0);
    TU_RANGE(l.expires_at_ms, r0 + 20000 - 20, shmlease_now_ms(t) + 20000);
    TU_EQU(tu_inspect_ok(t, "job").expires_at_ms, l.expires_at_ms);
    TU_EQU(tu_inspect_ok(t, "job").fencing_token, l.fencing_token); /* renew keeps the token */

    TU_RC(shmlease_release(t, &l), 0);
    shmlease_info gone;
    TU_RC(shmlease_inspect(t, "job", &gone), -ENOENT);
    shmlease_lease copy = l;
    TU_RC(shmlease_release(t, &copy), -ESTALE);
    copy = l;
    TU_RC(shmlease_renew(t, &copy, 1000), -ESTALE);
    copy = l;
    TU_RC(shmlease_release_after(t, &copy, 1000), -ESTALE);
    TU_RC(shmlease_check(t, &l), -ESTALE);
    TU_RC(shmlease_inspect(t, "job", &gone), -ENOENT); /* the stale calls changed nothing */

    /* released at once: anyone can take it, with a greater token */
    shmlease_lease l2;
    TU_RC(tu_acquire(t, "job", 5000, 0, &l2), 0);
    TU_GT(l2.fencing_token, l.fencing_token);
    /* the old value does not touch the new lease */
    copy = l;
    TU_RC(shmlease_release(t, &copy), -ESTALE);
    TU_EQU(tu_inspect_ok(t, "job").fencing_token, l2.fencing_token);
    TU_RC(shmlease_release(t, &l2), 0);
}

/* Two ticks of the coarse clock, in ms rounded up: what the header allows an
 * acquire's deadline to fall short of now + ttl_ms (1 ms when there is no
 * usable coarse clock). */
static uint64_t coarse_allowance_ms(void)
{
    struct timespec r;
    if (clock_getres(CLOCK_MONOTONIC_COARSE, &r) != 0 || r.tv_sec != 0)
        return 1;
    uint64_t tick = ((uint64_t)r.tv_nsec + 999999) / 1000000;
    return tick == 0 || tick > 10 ? 1 : 2 * tick;
}

/* "renew sets the deadline to now + ttl_ms", now on the table's clock, which
 * shmlease_now_ms() reads; an acquire's deadline is at most two coarse ticks
 * shorter than that (its deadline comes from the cheaper coarse clock), and
 * never later than now + ttl_ms as of its return. */
static void test_deadline_is_now_plus_ttl_on_the_default_clock(void **state)
{
    (void)state;
    const char *name = tu_name("deadline");
    shmlease_table *t = tu_open(name, NULL);
    int short_acq = 0, short_renew = 0, long_acq = 0;
    uint64_t worst = 0, allow = coarse_allowance_ms();
    for (int i = 0; i < 200; i++) {
        shmlease_lease l;
        uint64_t before = shmlease_now_ms(t);
        TU_RC(tu_acquire(t, "k", 1000, 0, &l), 0);
        if (l.expires_at_ms > shmlease_now_ms(t) + 1000)
            long_acq++;
        if (l.expires_at_ms + allow < before + 1000) {
            short_acq++;
            if (before + 1000 - l.expires_at_ms > worst)
                worst = before + 1000 - l.expires_at_ms;
        }
        before = shmlease_now_ms(t);
        TU_RC(shmlease_renew(t, &l, 1000), 0);
        if (l.expires_at_ms < before + 1000) {
            short_renew++;
            if (before + 1000 - l.expires_at_ms > worst)
                worst = before + 1000 - l.expires_at_ms;
        }
        TU_RC(shmlease_release(t, &l), 0);
        if (i % 20 == 0)
            tu_sleep_ms(1);
    }
    /* Short TTLs: S is at most ttl - 1, so the lease is never over when
     * returned, and never shorter than ttl - S. */
    int over = 0;
    for (uint64_t ttl = 1; ttl <= 16; ttl++) {
        for (int i = 0; i < 30; i++) {
            shmlease_lease l;
            uint64_t before = shmlease_now_ms(t);
            TU_RC(tu_acquire(t, "short", ttl, 0, &l), 0);
            uint64_t s = allow < ttl ? allow : ttl - 1;
            if (l.expires_at_ms < before + 1 || l.expires_at_ms + s < before + ttl)
                over++;
            if (l.expires_at_ms > shmlease_now_ms(t) + ttl)
                long_acq++;
            shmlease_release(t, &l);   /* -ESTALE once the short lease ran out */
        }
    }
    if (over)
        fail_msg("%d acquires with ttl 1..16 ms returned a lease over at return or shorter than "
                 "ttl - min(S, ttl - 1)", over);
    if (short_acq || short_renew || long_acq)
        fail_msg("deadline earlier than shmlease_now_ms() before the call + ttl (less %llu ms for "
                 "an acquire): %d of 200 acquires, %d of 200 renews, by up to %llu ms; later than "
                 "now + ttl after the call: %d acquires", (unsigned long long)allow, short_acq,
                 short_renew, (unsigned long long)worst, long_acq);
}

static void test_acquire_held_key_try_is_ebusy(void **state)
{
    (void)state;
    const char *name = tu_name("busy");
    shmlease_table *t = tu_open(name, NULL);
    tu_chan c;
    tu_chan_init(&c);
    pid_t p = tu_fork();
    if (p == 0) {
        tu_chan_child(&c);
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, NULL, &u), 0);
        shmlease_lease l;
        TU_CK_RC(tu_acquire(u, "k", 60000, 0, &l), 0);
        tu_up(&c, (int64_t)l.fencing_token);
        tu_down_recv(&c);
        TU_CK_RC(shmlease_check(u, &l), 0); /* the parent's attempts did not disturb it */
        TU_CK_RC(shmlease_release(u, &l), 0);
        _exit(0);
    }
    tu_chan_parent(&c, p);
    int64_t tok = tu_up_recv(&c, 10000);
    shmlease_stats s0 = tu_stats(t);
    shmlease_lease l;
    memset(&l, 0xA5, sizeof l);
    for (int i = 0; i < 5; i++)
        TU_RC(tu_acquire(t, "k", 60000, 0, &l), -EBUSY);
    shmlease_stats s1 = tu_stats(t);
    TU_EQU(s1.busy, s0.busy + 5);
    TU_EQU(s1.contended, s0.contended + 5);
    TU_EQU(s1.acquisitions, s0.acquisitions);
    TU_EQU(tu_inspect_ok(t, "k").fencing_token, (uint64_t)tok);
    TU_EQ(tu_inspect_ok(t, "k").holder_pid, p);
    tu_down(&c, 0);
    tu_expect_exit0(p);
    TU_RC(tu_acquire(t, "k", 60000, 0, &l), 0);
}

static void test_acquire_is_not_reentrant(void **state)
{
    (void)state;
    const char *name = tu_name("reentrant");
    shmlease_table *t = tu_open(name, NULL);
    shmlease_lease l, again;
    TU_RC(tu_acquire(t, "k", 60000, 0, &l), 0);
    TU_RC(tu_acquire(t, "k", 60000, 0, &again), -EBUSY);
    uint64_t t0 = tu_mono_ms();
    TU_RC(tu_acquire(t, "k", 60000, 150, &again), -ETIMEDOUT); /* waits like anyone */
    TU_RANGE(tu_mono_ms() - t0, 140, 1000);
    /* the original lease is intact */
    TU_RC(shmlease_check(t, &l), 0);
    TU_EQU(tu_inspect_ok(t, "k").fencing_token, l.fencing_token);
    TU_RC(shmlease_release(t, &l), 0);
}

static void test_acquire_bad_keys_are_rejected(void **state)
{
    (void)state;
    const char *name = tu_name("badkeys");
    shmlease_table *t = tu_open(name, NULL);
    shmlease_stats s0 = tu_stats(t);
    shmlease_lease l;
    char k128[129], k127[128];
    memset(k128, 'k', 128);
    k128[128] = 0;
    memset(k127, 'k', 127);
    k127[127] = 0;
    TU_RC(tu_acquire(t, NULL, 1000, 0, &l), -EINVAL);
    TU_RC(tu_acquire(t, "", 1000, 0, &l), -EINVAL);
    TU_RC(tu_acquire(t, k128, 1000, 0, &l), -ENAMETOOLONG);
    shmlease_info i;
    TU_RC(shmlease_inspect(t, NULL, &i), -EINVAL);
    TU_RC(shmlease_inspect(t, "", &i), -EINVAL);
    TU_RC(shmlease_inspect(t, k128, &i), -ENAMETOOLONG);
    TU_RC(shmlease_break(t, NULL), -EINVAL);
    TU_RC(shmlease_break(t, ""), -EINVAL);
    TU_RC(shmlease_break(t, k128), -ENAMETOOLONG);
    shmlease_stats s1 = tu_stats(t);
    assert_memory_equal(&s0, &s1, sizeof s0);
    k128[127] = 0; /* the 127-byte prefix is not present */
    TU_RC(shmlease_inspect(t, k128, &i), -ENOENT);

    /* 127 bytes is fine, and keys are binary-exact */
    TU_RC(tu_acquire(t, k127, 1000, 0, &l), 0);
    i = tu_inspect_ok(t, k127);
    assert_string_equal(i.key, k127);
    TU_EQ(strlen(i.key), 127);
    shmlease_lease l2;
    TU_RC(tu_acquire(t, "K", 1000, 0, &l2), 0);         /* case matters */
    TU_RC(tu_acquire(t, "k ", 1000, 0, &l2), 0);        /* so does whitespace */
    TU_RC(tu_acquire(t, "\xff\x01/..", 1000, 0, &l2), 0); /* any bytes */
    TU_RC(shmlease_inspect(t, "k", &i), -ENOENT);
}

static void test_acquire_bad_options_are_einval_and_change_nothing(void **state)
{
    (void)state;
    const char *name = tu_name("badopts");
    shmlease_table *t = tu_open(name, NULL);
    shmlease_lease held;
    TU_RC(tu_acquire(t, "held", 60000, 0, &held), 0);
    shmlease_stats s0 = tu_stats(t);
    shmlease_lease l;
    unsigned char meta[SHMLEASE_METADATA_MAX + 1];
    memset(meta, 'm', sizeof meta);
    shmlease_acquire_opts o;

    o = tu_aopts(0, 0);
    TU_RC(shmlease_acquire(t, "k", &o, &l), -EINVAL);
    TU_RC(shmlease_acquire(t, "held", &o, &l), -EINVAL);
    o = tu_aopts(1000, -2);
    TU_RC(shmlease_acquire(t, "k", &o, &l), -EINVAL);
    o = tu_aopts(1000, INT64_MIN);
    TU_RC(shmlease_acquire(t, "k", &o, &l), -EINVAL);
    o = tu_aopts(1000, 0);
    o.metadata = meta;
    o.metadata_len = SHMLEASE_METADATA_MAX + 1;
    TU_RC(shmlease_acquire(t, "k", &o, &l), -EINVAL);
    o.metadata_len = SIZE_MAX;
    TU_RC(shmlease_acquire(t, "k", &o, &l), -EINVAL);
    o.metadata = NULL;
    o.metadata_len = 1;
    TU_RC(shmlease_acquire(t, "k", &o, &l), -EINVAL);
    TU_RC(shmlease_renew(t, &held, 0), -EINVAL);

    shmlease_stats s1 = tu_stats(t);
    assert_memory_equal(&s0, &s1, sizeof s0);
    shmlease_info i;
    TU_RC(shmlease_inspect(t, "k", &i), -ENOENT);
    TU_RC(shmlease_check(t, &held), 0);
    TU_EQU(tu_inspect_ok(t, "held").expires_at_ms, held.expires_at_ms);

    /* the limits themselves are fine */
    o = tu_aopts(1000, 0);
    o.metadata = meta;
    o.metadata_len = SHMLEASE_METADATA_MAX;
    TU_RC(shmlease_acquire(t, "k", &o, &l), 0);
    TU_EQU(tu_inspect_ok(t, "k").metadata_len, SHMLEASE_METADATA_MAX);
    o.metadata = NULL;
    o.metadata_len = 0;
    TU_RC(shmlease_acquire(t, "k2", &o, &l), 0);
    TU_EQU(tu_inspect_ok(t, "k2").metadata_len, 0);
}

/* ---- expiry, on the shared test clock ------------------------------------------ */

static void test_expired_lease_is_taken_by_another_and_old_calls_are_stale(void **state)
{
    (void)state;
    const char *name = tu_name("expiry");
    tu_clock *clk = tu_clock_new(T0);
    shmlease_options o = tu_opts_clock(clk, 0);
    shmlease_table *t = tu_open(name, &o);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k", 1000, 0, &l), 0);
    TU_EQU(l.expires_at_ms, T0 + 1000);

    tu_chan c;
    tu_chan_init(&c);
    pid_t p = tu_fork();
    if (p == 0) {
        tu_chan_child(&c);
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, &o, &u), 0);
        shmlease_lease x;
        TU_CK_RC(tu_acquire(u, "k", 1000, 0, &x), -EBUSY); /* valid until its deadline */
        tu_up(&c, 1);
        tu_down_recv(&c); /* the parent advanced the clock past the deadline */
        TU_CK_RC(tu_acquire(u, "k", 60000, 0, &x), 0);
        TU_CK(x.fencing_token > l.fencing_token);
        tu_up(&c, (int64_t)x.fencing_token);
        tu_down_recv(&c);
        TU_CK_RC(shmlease_check(u, &x), 0); /* untouched by the old holder's calls */
        TU_CK_RC(shmlease_renew(u, &x, 60000), 0);
        TU_CK_RC(shmlease_release(u, &x), 0);
        _exit(0);
    }
    tu_chan_parent(&c, p);
    TU_EQ(tu_up_recv(&c, 10000), 1);
    tu_clock_advance(clk, 999);
    TU_RC(shmlease_check(t, &l), 0); /* 1 ms before the deadline */
    tu_clock_advance(clk, 2);        /* 1 ms past it */
    shmlease_stats s0 = tu_stats(t);
    tu_down(&c, 0);
    int64_t tok = tu_up_recv(&c, 10000);
    shmlease_stats s1 = tu_stats(t);
    TU_EQU(s1.expirations, s0.expirations + 1);

    shmlease_lease copy = l;
    TU_RC(shmlease_renew(t, &copy, 60000), -ESTALE);
    copy = l;
    TU_RC(shmlease_release(t, &copy), -ESTALE);
    copy = l;
    TU_RC(shmlease_release_after(t, &copy, 60000), -ESTALE);
    TU_RC(shmlease_check(t, &l), -ESTALE);
    shmlease_info i = tu_inspect_ok(t, "k");
    TU_EQU(i.fencing_token, (uint64_t)tok);
    TU_EQ(i.holder_pid, p);
    TU_EQU(i.expires_at_ms, tu_clock_now(clk) + 60000);
    /* renew, release, check (and maybe release_after) counted as lost */
    TU_RANGE(tu_stats(t).lost, s1.lost + 3, s1.lost + 4);
    tu_down(&c, 0);
    tu_expect_exit0(p);
}

static void test_renew_extends_the_deadline(void **state)
{
    (void)state;
    const char *name = tu_name("renew");
    tu_clock *clk = tu_clock_new(T0);
    shmlease_options o = tu_opts_clock(clk, 0);
    shmlease_table *t = tu_open(name, &o);
    shmlease_table *other = tu_open(name, &o);
    shmlease_lease l, x;
    TU_RC(tu_acquire(t, "k", 1000, 0, &l), 0);
    TU_EQU(l.expires_at_ms, T0 + 1000);
    tu_clock_advance(clk, 500);
    shmlease_stats s0 = tu_stats(t);
    TU_RC(shmlease_renew(t, &l, 2000), 0);
    TU_EQU(tu_stats(t).renewals, s0.renewals + 1);
    TU_EQU(l.expires_at_ms, T0 + 500 + 2000);
    TU_EQU(tu_inspect_ok(t, "k").expires_at_ms, T0 + 2500);
    tu_clock_advance(clk, 1000); /* T0+1500: past the old deadline */
    TU_RC(tu_acquire(other, "k", 1000, 0, &x), -EBUSY);
    TU_RC(shmlease_check(t, &l), 0);
    TU_EQ(tu_inspect_ok(t, "k").remaining_ms, 1000);
    /* renew may also shorten */
    TU_RC(shmlease_renew(t, &l, 100), 0);
    TU_EQU(l.expires_at_ms, T0 + 1600);
    tu_clock_advance(clk, 99);
    TU_RC(tu_acquire(other, "k", 1000, 0, &x), -EBUSY);
    tu_clock_advance(clk, 2); /* T0+1601 */
    TU_RC(tu_acquire(other, "k", 1000, 0, &x), 0);
    TU_GT(x.fencing_token, l.fencing_token);
    TU_RC(shmlease_renew(t, &l, 1000), -ESTALE);
}

static void test_renew_after_expiry_is_stale_even_if_nobody_took_it(void **state)
{
    (void)state;
    const char *name = tu_name("renewstale");
    tu_clock *clk = tu_clock_new(T0);
    shmlease_options o = tu_opts_clock(clk, 0);
    shmlease_table *t = tu_open(name, &o);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k", 100, 0, &l), 0);
    tu_clock_advance(clk, 101);
    shmlease_stats s0 = tu_stats(t);
    shmlease_lease copy = l;
    TU_RC(shmlease_renew(t, &copy, 100000), -ESTALE);
    copy = l;
    TU_RC(shmlease_release(t, &copy), -ESTALE);
    TU_RC(shmlease_check(t, &l), -ESTALE);
    TU_EQU(tu_stats(t).lost, s0.lost + 3);
    TU_EQU(tu_stats(t).renewals, s0.renewals);
    assert_not_held(t, "k");
    /* the stale renew did not resurrect it: another owner takes it at once */
    shmlease_table *other = tu_open(name, &o);
    shmlease_lease x;
    TU_RC(tu_acquire(other, "k", 100, 0, &x), 0);
    TU_GT(x.fencing_token, l.fencing_token);
}

/* ---- release_after (grace) ---------------------------------------------------- */

static void test_release_after_keeps_key_held_by_nobody_until_grace_ends(void **state)
{
    (void)state;
    const char *name = tu_name("grace");
    tu_clock *clk = tu_clock_new(T0);
    shmlease_options o = tu_opts_clock(clk, 0);
    shmlease_table *t = tu_open(name, &o);
    shmlease_lease l, x;
    TU_RC(tu_acquire(t, "job", 60000, 0, &l), 0);
    TU_RC(shmlease_release_after(t, &l, 1000), 0);
    TU_EQ(tu_stats(t).held, 1);
    shmlease_info i = tu_inspect_ok(t, "job");
    TU_EQ(i.holder_pid, 0);
    TU_EQ(i.in_grace, 1);
    TU_EQU(i.fencing_token, l.fencing_token);
    TU_EQU(i.expires_at_ms, T0 + 1000);
    TU_EQ(i.remaining_ms, 1000);
    /* the caller's claim has ended */
    shmlease_lease copy = l;
    TU_RC(shmlease_renew(t, &copy, 60000), -ESTALE);
    copy = l;
    TU_RC(shmlease_release(t, &copy), -ESTALE);
    TU_RC(shmlease_check(t, &l), -ESTALE);

    /* nobody may take it during the grace, not even the releaser */
    TU_RC(tu_acquire(t, "job", 60000, 0, &x), -EBUSY);
    pid_t p = tu_fork();
    if (p == 0) {
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, &o, &u), 0);
        shmlease_lease y;
        TU_CK_RC(tu_acquire(u, "job", 60000, 0, &y), -EBUSY);
        _exit(0);
    }
    tu_expect_exit0(p);
    tu_clock_advance(clk, 999);
    TU_RC(tu_acquire(t, "job", 60000, 0, &x), -EBUSY);
    TU_EQ(tu_inspect_ok(t, "job").in_grace, 1);
    tu_clock_advance(clk, 2);
    TU_RC(tu_acquire(t, "job", 60000, 0, &x), 0);
    TU_GT(x.fencing_token, l.fencing_token);
    i = tu_inspect_ok(t, "job");
    TU_EQ(i.in_grace, 0);
    TU_EQ(i.holder_pid, getpid());
}

static void test_release_after_zero_grace_frees_at_once(void **state)
{
    (void)state;
    const char *name = tu_name("grace0");
    tu_clock *clk = tu_clock_new(T0);
    shmlease_options o = tu_opts_clock(clk, 0);
    shmlease_table *t = tu_open(name, &o);
    shmlease_lease l, x;
    TU_RC(tu_acquire(t, "job", 60000, 0, &l), 0);
    TU_RC(shmlease_release_after(t, &l, 0), 0);
    tu_clock_advance(clk, 1);
    TU_RC(tu_acquire(t, "job", 60000, 0, &x), 0);
    TU_GT(x.fencing_token, l.fencing_token);
}

static void test_break_during_grace_ends_it(void **state)
{
    (void)state;
    const char *name = tu_name("gracebreak");
    tu_clock *clk = tu_clock_new(T0);
    shmlease_options o = tu_opts_clock(clk, 0);
    shmlease_table *t = tu_open(name, &o);
    shmlease_lease l, x;
    TU_RC(tu_acquire(t, "job", 60000, 0, &l), 0);
    TU_RC(shmlease_release_after(t, &l, 60000), 0);
    TU_RC(shmlease_break(t, "job"), 0);
    TU_RC(tu_acquire(t, "job", 60000, 0, &x), 0);
    TU_GT(x.fencing_token, l.fencing_token);
}

/* ---- with ---------------------------------------------------------------------- */

struct with_ctx {
    shmlease_table *t;
    const char *key;
    int calls;
    int ret;
    int held_inside;
    uint64_t token_inside;
};

static int with_fn(const shmlease_lease *l, void *arg)
{
    struct with_ctx *w = arg;
    w->calls++;
    shmlease_info i;
    if (shmlease_inspect(w->t, w->key, &i) == 0 && i.holder_pid == getpid() &&
        i.fencing_token == l->fencing_token && shmlease_check(w->t, l) == 0)
        w->held_inside = 1;
    w->token_inside = l->fencing_token;
    return w->ret;
}

static void test_with_returns_fn_result_and_holds_during_fn(void **state)
{
    (void)state;
    const char *name = tu_name("with");
    shmlease_table *t = tu_open(name, NULL);
    shmlease_acquire_opts o = tu_aopts(60000, 0);
    struct with_ctx w = { t, "k", 0, 42, 0, 0 };
    TU_RC(shmlease_with(t, "k", &o, with_fn, &w), 42);
    TU_EQ(w.calls, 1);
    TU_EQ(w.held_inside, 1);
    shmlease_info i;
    TU_RC(shmlease_inspect(t, "k", &i), -ENOENT); /* released after */

    /* fn failing still releases */
    struct with_ctx w2 = { t, "k", 0, -7, 0, 0 };
    TU_RC(shmlease_with(t, "k", &o, with_fn, &w2), -7);
    TU_EQ(w2.held_inside, 1);
    TU_GT(w2.token_inside, w.token_inside);
    TU_RC(shmlease_inspect(t, "k", &i), -ENOENT);
    struct with_ctx w3 = { t, "k", 0, -EBUSY, 0, 0 }; /* even one that looks like ours */
    TU_RC(shmlease_with(t, "k", &o, with_fn, &w3), -EBUSY);
    TU_EQ(w3.calls, 1);
    TU_RC(shmlease_inspect(t, "k", &i), -ENOENT);
}

static void test_with_returns_acquire_error_without_calling_fn(void **state)
{
    (void)state;
    const char *name = tu_name("withfail");
    shmlease_table *t = tu_open(name, NULL);
    shmlease_table *other = tu_open(name, NULL);
    shmlease_lease held;
    TU_RC(tu_acquire(other, "k", 60000, 0, &held), 0);
    shmlease_acquire_opts o = tu_aopts(60000, 0);
    struct with_ctx w = { t, "k", 0, 42, 0, 0 };
    TU_RC(shmlease_with(t, "k", &o, with_fn, &w), -EBUSY);
    o.wait_ms = 100;
    TU_RC(shmlease_with(t, "k", &o, with_fn, &w), -ETIMEDOUT);
    o = tu_aopts(0, 0);
    TU_RC(shmlease_with(t, "x", &o, with_fn, &w), -EINVAL);
    o = tu_aopts(1000, 0);
    TU_RC(shmlease_with(t, "", &o, with_fn, &w), -EINVAL);
    TU_EQ(w.calls, 0);
    TU_RC(shmlease_check(other, &held), 0);
}

/* ---- with_lease: fn may renew or end the lease; a lost lease is reported ---- */

struct wl_ctx {
    const char *name;       /* table, for the breaking child */
    const char *key;
    int action;             /* WL_* below */
    int calls;
    int renewed;            /* fn's renew returned 0 */
    int end_rc;             /* fn's own release, when it ends the lease */
    uint64_t token;
};
enum { WL_RENEW, WL_BROKEN, WL_GRACE, WL_BROKEN_THEN_RELEASE, WL_EXPIRE, WL_RETURN_EBUSY };

/* Another process breaks NAME's KEY, as an operator would. */
static void break_from_another_process(const char *name, const char *key)
{
    pid_t p = tu_fork();
    if (p == 0) {
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, NULL, &u), 0);
        TU_CK_RC(shmlease_break(u, key), 0);
        _exit(0);
    }
    tu_expect_exit0(p);
}

static int wl_fn(shmlease_table *t, shmlease_lease *l, void *arg)
{
    struct wl_ctx *w = arg;
    w->calls++;
    w->token = l->fencing_token;
    switch (w->action) {
    case WL_RENEW:
        w->renewed = shmlease_renew(t, l, 120000) == 0;
        return 7;
    case WL_BROKEN:
        break_from_another_process(w->name, w->key);
        return 7;
    case WL_GRACE:
        w->end_rc = shmlease_release_after(t, l, 60000);
        return 7;
    case WL_BROKEN_THEN_RELEASE:
        break_from_another_process(w->name, w->key);
        w->end_rc = shmlease_release(t, l);
        return 7;
    case WL_EXPIRE:
        tu_sleep_ms(200);                  /* past the 20 ms TTL */
        return 7;
    default:
        return -EBUSY;                     /* a result that looks like an error */
    }
}

static void test_with_lease_reports_fn_result_and_a_lost_lease_apart(void **state)
{
    (void)state;
    const char *name = tu_name("withlease");
    shmlease_table *t = tu_open(name, NULL);
    shmlease_acquire_opts o = tu_aopts(60000, 0);
    shmlease_info i;
    int r = 0;

    /* fn renews: the lease is ours to the end, released after */
    struct wl_ctx w = { name, "k", WL_RENEW, 0, 0, 0, 0 };
    TU_RC(shmlease_with_lease(t, "k", &o, wl_fn, &w, &r), 0);
    TU_EQ(r, 7);
    TU_EQ(w.calls, 1);
    TU_EQ(w.renewed, 1);
    TU_RC(shmlease_inspect(t, "k", &i), -ENOENT);

    /* fn's result may look like an error code: it is not confused with one */
    w = (struct wl_ctx){ name, "k", WL_RETURN_EBUSY, 0, 0, 0, 0 };
    r = 0;
    TU_RC(shmlease_with_lease(t, "k", &o, wl_fn, &w, &r), 0);
    TU_EQ(r, -EBUSY);
    TU_RC(shmlease_inspect(t, "k", &i), -ENOENT);

    /* broken by an operator while fn ran: -ESTALE, fn's result still given */
    w = (struct wl_ctx){ name, "k", WL_BROKEN, 0, 0, 0, 0 };
    r = 0;
    TU_RC(shmlease_with_lease(t, "k", &o, wl_fn, &w, &r), -ESTALE);
    TU_EQ(r, 7);
    shmlease_lease next;
    TU_RC(tu_acquire(t, "k", 60000, 0, &next), 0);   /* the key was free */
    TU_GT(next.fencing_token, w.token);
    TU_RC(shmlease_release(t, &next), 0);

    /* expired while fn ran */
    shmlease_acquire_opts shortl = tu_aopts(20, 0);
    w = (struct wl_ctx){ name, "k", WL_EXPIRE, 0, 0, 0, 0 };
    TU_RC(shmlease_with_lease(t, "k", &shortl, wl_fn, &w, NULL), -ESTALE);
    TU_EQ(w.calls, 1);

    /* fn ends the lease itself with a grace period: kept, not released again */
    w = (struct wl_ctx){ name, "k", WL_GRACE, 0, 0, 0, 0 };
    TU_RC(shmlease_with_lease(t, "k", &o, wl_fn, &w, &r), 0);
    TU_RC(w.end_rc, 0);
    TU_RC(shmlease_inspect(t, "k", &i), 0);
    TU_EQ(i.holder_pid, 0);                          /* in grace, held by nobody */
    TU_GT(i.remaining_ms, 50000);
    TU_RC(shmlease_break(t, "k"), 0);

    /* fn's own release finds the lease lost: so does with_lease */
    w = (struct wl_ctx){ name, "k", WL_BROKEN_THEN_RELEASE, 0, 0, 0, 0 };
    TU_RC(shmlease_with_lease(t, "k", &o, wl_fn, &w, &r), -ESTALE);
    TU_RC(w.end_rc, -ESTALE);
}

static void test_with_lease_returns_acquire_error_without_calling_fn(void **state)
{
    (void)state;
    const char *name = tu_name("withleasefail");
    shmlease_table *t = tu_open(name, NULL);
    shmlease_table *other = tu_open(name, NULL);
    shmlease_lease held;
    TU_RC(tu_acquire(other, "k", 60000, 0, &held), 0);
    shmlease_acquire_opts o = tu_aopts(60000, 0);
    struct wl_ctx w = { name, "k", WL_RENEW, 0, 0, 0, 0 };
    int r = 12345;
    TU_RC(shmlease_with_lease(t, "k", &o, wl_fn, &w, &r), -EBUSY);
    o.wait_ms = 100;
    TU_RC(shmlease_with_lease(t, "k", &o, wl_fn, &w, &r), -ETIMEDOUT);
    TU_RC(shmlease_with_lease(t, "", &o, wl_fn, &w, &r), -EINVAL);
    TU_RC(shmlease_with_lease(t, "k2", &o, NULL, &w, &r), -EINVAL);
    TU_RC(shmlease_with_lease(NULL, "k2", &o, wl_fn, &w, &r), -EINVAL);
    TU_EQ(w.calls, 0);
    TU_EQ(r, 12345);                                 /* not written */
    TU_RC(shmlease_check(other, &held), 0);
    TU_RC(shmlease_inspect(t, "k2", &(shmlease_info){0}), -ENOENT);
}

/* ---- break ---------------------------------------------------------------------- */

static void test_break_ends_the_lease_and_next_token_is_greater(void **state)
{
    (void)state;
    const char *name = tu_name("break");
    shmlease_table *t = tu_open(name, NULL);
    tu_chan c;
    tu_chan_init(&c);
    pid_t p = tu_fork();
    if (p == 0) {
        tu_chan_child(&c);
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, NULL, &u), 0);
        shmlease_lease l;
        TU_CK_RC(tu_acquire(u, "k", 60000, 0, &l), 0);
        tu_up(&c, (int64_t)l.fencing_token);
        tu_down_recv(&c); /* broken by the operator */
        TU_CK_RC(shmlease_check(u, &l), -ESTALE);
        shmlease_lease copy = l;
        TU_CK_RC(shmlease_renew(u, &copy, 60000), -ESTALE);
        copy = l;
        TU_CK_RC(shmlease_release(u, &copy), -ESTALE);
        tu_up(&c, 2);
        _exit(0);
    }
    tu_chan_parent(&c, p);
    uint64_t tok = (uint64_t)tu_up_recv(&c, 10000);
    shmlease_stats s0 = tu_stats(t);
    TU_RC(shmlease_break(t, "k"), 0);
    TU_EQU(tu_stats(t).broken, s0.broken + 1);
    shmlease_info i;
    TU_RC(shmlease_inspect(t, "k", &i), -ENOENT);
    tu_down(&c, 0);
    TU_EQ(tu_up_recv(&c, 10000), 2);
    tu_expect_exit0(p);
    shmlease_lease x;
    TU_RC(tu_acquire(t, "k", 60000, 0, &x), 0);
    TU_GT(x.fencing_token, tok);
    TU_RC(shmlease_break(t, "never-held"), -ENOENT);
    TU_RC(shmlease_release(t, &x), 0);
    TU_RC(shmlease_break(t, "k"), -ENOENT); /* released: free */
}

static void test_break_wakes_a_waiter(void **state)
{
    (void)state;
    const char *name = tu_name("breakwake");
    shmlease_table *t = tu_open(name, NULL);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k", 60000, 0, &l), 0);
    tu_chan c;
    tu_chan_init(&c);
    pid_t p = tu_fork();
    if (p == 0) {
        tu_chan_child(&c);
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, NULL, &u), 0);
        shmlease_lease x;
        tu_up(&c, 1);
        TU_CK_RC(tu_acquire(u, "k", 60000, SHMLEASE_WAIT_FOREVER, &x), 0);
        tu_up(&c, (int64_t)tu_mono_ms());
        _exit(0);
    }
    tu_chan_parent(&c, p);
    TU_EQ(tu_up_recv(&c, 10000), 1);
    shmlease_info i;
    assert_true(TU_WAIT_FOR(shmlease_inspect(t, "k", &i) == 0 && i.waiters == 1, 5000));
    uint64_t t_break = tu_mono_ms();
    TU_RC(shmlease_break(t, "k"), 0);
    int64_t woke = tu_up_recv(&c, 5000);
    TU_RANGE(woke - (int64_t)t_break, 0, 500);
    tu_expect_exit0(p);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(test_acquire_renew_release_basics),
        TU_TEST(test_deadline_is_now_plus_ttl_on_the_default_clock),
        TU_TEST(test_acquire_held_key_try_is_ebusy),
        TU_TEST(test_acquire_is_not_reentrant),
        TU_TEST(test_acquire_bad_keys_are_rejected),
        TU_TEST(test_acquire_bad_options_are_einval_and_change_nothing),
        TU_TEST(test_expired_lease_is_taken_by_another_and_old_calls_are_stale),
        TU_TEST(test_renew_extends_the_deadline),
        TU_TEST(test_renew_after_expiry_is_stale_even_if_nobody_took_it),
        TU_TEST(test_release_after_keeps_key_held_by_nobody_until_grace_ends),
        TU_TEST(test_release_after_zero_grace_frees_at_once),
        TU_TEST(test_break_during_grace_ends_it),
        TU_TEST(test_with_returns_fn_result_and_holds_during_fn),
        TU_TEST(test_with_returns_acquire_error_without_calling_fn),
        TU_TEST(test_with_lease_reports_fn_result_and_a_lost_lease_apart),
        TU_TEST(test_with_lease_returns_acquire_error_without_calling_fn),
        TU_TEST(test_break_ends_the_lease_and_next_token_is_greater),
        TU_TEST(test_break_wakes_a_waiter),
    };
    return TU_RUN(tests);
}
