/* Waiting: waiters sleep, and wake promptly on release, expiry, grace end;
 * timeouts are honoured. Real monotonic clock; bounds are wide. */
#include "testutil.h"

#include <time.h>
#include <sys/resource.h>

static uint32_t waiters_of(shmlease_table *t, const char *key)
{
    shmlease_info i;
    if (shmlease_inspect(t, key, &i) != 0)
        return 0;
    return i.waiters;
}

/* A child that opens NAME and waits for KEY (wait_ms), then reports
 * (rc, time of return in us, token), holds it HOLD_MS and releases it. */
static pid_t spawn_waiter(tu_chan *c, const char *name, const char *key, int64_t wait_ms,
                          unsigned hold_ms)
{
    tu_chan_init(c);
    pid_t p = tu_fork();
    if (p == 0) {
        tu_chan_child(c);
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, NULL, &u), 0);
        shmlease_lease l;
        tu_up(c, 0); /* about to wait */
        int rc = tu_acquire(u, key, 60000, wait_ms, &l);
        uint64_t now = tu_mono_us();
        tu_up(c, rc);
        tu_up(c, (int64_t)now);
        tu_up(c, rc == 0 ? (int64_t)l.fencing_token : 0);
        if (rc == 0) {
            tu_sleep_ms(hold_ms);
            TU_CK_RC(shmlease_release(u, &l), 0);
        }
        shmlease_close(u);
        _exit(0);
    }
    tu_chan_parent(c, p);
    TU_EQ(tu_up_recv(c, 10000), 0);
    return p;
}

static void test_waiter_is_woken_on_release(void **state)
{
    (void)state;
    const char *name = tu_name("wakerelease");
    shmlease_table *t = tu_open(name, NULL);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k", 60000, 0, &l), 0);
    tu_chan c;
    pid_t p = spawn_waiter(&c, name, "k", SHMLEASE_WAIT_FOREVER, 0);
    assert_true(TU_WAIT_FOR(waiters_of(t, "k") == 1, 5000));
    tu_sleep_ms(50); /* let it fall asleep */
    uint64_t t_rel = tu_mono_us();
    TU_RC(shmlease_release(t, &l), 0);
    TU_RC(tu_up_recv(&c, 5000), 0);
    int64_t t_acq = tu_up_recv(&c, 1000);
    TU_GT(tu_up_recv(&c, 1000), l.fencing_token);
    TU_RANGE((t_acq - (int64_t)t_rel) / 1000, 0, 500);
    tu_expect_exit0(p);
}

static void test_waiter_is_woken_on_expiry(void **state)
{
    (void)state;
    const char *name = tu_name("wakeexpiry");
    shmlease_table *t = tu_open(name, NULL);
    shmlease_lease l;
    uint64_t t_acq0 = tu_mono_us();
    TU_RC(tu_acquire(t, "k", 200, 0, &l), 0);
    tu_chan c;
    pid_t p = spawn_waiter(&c, name, "k", SHMLEASE_WAIT_FOREVER, 0);
    TU_RC(tu_up_recv(&c, 5000), 0);
    int64_t t_acq = tu_up_recv(&c, 1000);
    TU_GT(tu_up_recv(&c, 1000), l.fencing_token);
    /* the holder is alive: only the TTL can have freed the key */
    TU_RANGE((t_acq - (int64_t)t_acq0) / 1000, 150, 1000);
    tu_expect_exit0(p);
    TU_RC(shmlease_release(t, &l), -ESTALE);
}

static void test_wait_times_out_after_wait_ms(void **state)
{
    (void)state;
    const char *name = tu_name("timeout");
    shmlease_table *holder = tu_open(name, NULL);
    shmlease_table *t = tu_open(name, NULL);
    shmlease_lease l, x;
    TU_RC(tu_acquire(holder, "k", 60000, 0, &l), 0);
    const int64_t waits[] = { 1, 50, 300, 700 };
    for (int k = 0; k < 4; k++) {
        shmlease_stats s0 = tu_stats(t);
        uint64_t t0 = tu_mono_us();
        TU_RC(tu_acquire(t, "k", 60000, waits[k], &x), -ETIMEDOUT);
        int64_t took = (int64_t)(tu_mono_us() - t0) / 1000;
        if (took < waits[k] - 10 || took > waits[k] + 500)
            fail_msg("wait_ms %lld timed out after %lld ms", (long long)waits[k],
                     (long long)took);
        shmlease_stats s1 = tu_stats(t);
        TU_EQU(s1.timeouts, s0.timeouts + 1);
        TU_EQU(s1.contended, s0.contended + 1);
        TU_EQU(s1.busy, s0.busy);
        TU_EQU(s1.acquisitions, s0.acquisitions);
        if (waits[k] >= 50)
            TU_EQU(s1.waits, s0.waits + 1);
    }
    TU_RC(shmlease_check(holder, &l), 0);
}

static void test_wait_timeout_in_another_process(void **state)
{
    (void)state;
    const char *name = tu_name("timeoutproc");
    shmlease_table *t = tu_open(name, NULL);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k", 60000, 0, &l), 0);
    tu_chan c;
    uint64_t t0 = tu_mono_us();
    pid_t p = spawn_waiter(&c, name, "k", 400, 0);
    TU_RC(tu_up_recv(&c, 5000), -ETIMEDOUT);
    int64_t t1 = tu_up_recv(&c, 1000);
    TU_RANGE((t1 - (int64_t)t0) / 1000, 390, 1200);
    tu_expect_exit0(p);
}

static void test_wait_forever_waits_until_released(void **state)
{
    (void)state;
    const char *name = tu_name("forever");
    shmlease_table *t = tu_open(name, NULL);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k", 60000, 0, &l), 0);
    tu_chan c;
    pid_t p = spawn_waiter(&c, name, "k", SHMLEASE_WAIT_FOREVER, 0);
    int64_t v;
    /* 1.5 s later it is still waiting, neither timed out nor failed */
    TU_RC(tu_up_try(&c, &v, 1500), -ETIMEDOUT);
    TU_EQ(waiters_of(t, "k"), 1);
    TU_RC(shmlease_renew(t, &l, 60000), 0);
    TU_RC(shmlease_release(t, &l), 0);
    TU_RC(tu_up_recv(&c, 5000), 0);
    tu_expect_exit0(p);
}

/* A huge wait_ms is a long wait, not an overflow into an immediate timeout. */
static void test_huge_wait_ms_waits(void **state)
{
    (void)state;
    const char *name = tu_name("hugewait");
    shmlease_table *t = tu_open(name, NULL);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k", 60000, 0, &l), 0);
    const int64_t waits[] = { INT64_MAX, INT64_MAX / 2, (int64_t)1 << 40 };
    for (int k = 0; k < 3; k++) {
        tu_chan c;
        pid_t p = spawn_waiter(&c, name, "k", waits[k], 0);
        int64_t v;
        TU_RC(tu_up_try(&c, &v, 300), -ETIMEDOUT); /* still waiting */
        TU_RC(shmlease_release(t, &l), 0);
        TU_RC(tu_up_recv(&c, 5000), 0);
        tu_expect_exit0(p);
        TU_RC(tu_acquire(t, "k", 60000, 0, &l), 0);
    }
}

static void test_bounded_wait_succeeds_when_released_in_time(void **state)
{
    (void)state;
    const char *name = tu_name("bounded");
    shmlease_table *t = tu_open(name, NULL);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k", 60000, 0, &l), 0);
    tu_chan c;
    pid_t p = spawn_waiter(&c, name, "k", 5000, 0);
    assert_true(TU_WAIT_FOR(waiters_of(t, "k") == 1, 5000));
    tu_sleep_ms(200);
    uint64_t t_rel = tu_mono_us();
    TU_RC(shmlease_release(t, &l), 0);
    TU_RC(tu_up_recv(&c, 5000), 0);
    int64_t t_acq = tu_up_recv(&c, 1000);
    TU_RANGE((t_acq - (int64_t)t_rel) / 1000, 0, 500);
    tu_expect_exit0(p);
}

static double cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static void test_waiter_sleeps_instead_of_polling(void **state)
{
    (void)state;
    const char *name = tu_name("sleeps");
    shmlease_table *holder = tu_open(name, NULL);
    shmlease_table *t = tu_open(name, NULL);
    shmlease_lease l, x;
    TU_RC(tu_acquire(holder, "k", 60000, 0, &l), 0);
    double c0 = cpu_ms();
    TU_RC(tu_acquire(t, "k", 60000, 1000, &x), -ETIMEDOUT);
    double used = cpu_ms() - c0;
    if (used > 100.0)
        fail_msg("a 1 s wait used %.1f ms of CPU: busy polling?", used);
}

/* Sleeping, not polling: while a live holder keeps the key, a waiter wakes up
 * rarely (holder-death checks at a sane period), not every few milliseconds. */
static void test_waiter_wakes_rarely_while_the_holder_lives(void **state)
{
    (void)state;
    const char *name = tu_name("wakeups");
    shmlease_table *t = tu_open(name, NULL);
    tu_chan c;
    tu_chan_init(&c);
    pid_t h = tu_fork();
    if (h == 0) {
        tu_chan_child(&c);
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, NULL, &u), 0);
        shmlease_lease l;
        TU_CK_RC(tu_acquire(u, "k", 60000, 0, &l), 0);
        tu_up(&c, 1);
        for (;;)
            pause();
    }
    tu_chan_parent(&c, h);
    TU_EQ(tu_up_recv(&c, 10000), 1);
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    double c0 = cpu_ms();
    shmlease_lease x;
    TU_RC(tu_acquire(t, "k", 60000, 1000, &x), -ETIMEDOUT);
    double used = cpu_ms() - c0;
    getrusage(RUSAGE_SELF, &r1);
    long wakeups = (r1.ru_nvcsw - r0.ru_nvcsw) + (r1.ru_nivcsw - r0.ru_nivcsw);
    print_message("note: a 1 s wait on a live holder: %ld context switches, %.1f ms CPU\n",
                  wakeups, used);
    if (wakeups > 100)
        fail_msg("a waiter woke up %ld times in 1 s while the holder lived (%.1f ms CPU): "
                 "that is polling, not sleeping", wakeups, used);
}

static void test_waiter_is_woken_at_grace_end(void **state)
{
    (void)state;
    const char *name = tu_name("graceend");
    shmlease_table *t = tu_open(name, NULL);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k", 60000, 0, &l), 0);
    tu_chan c;
    pid_t p = spawn_waiter(&c, name, "k", SHMLEASE_WAIT_FOREVER, 0);
    assert_true(TU_WAIT_FOR(waiters_of(t, "k") == 1, 5000));
    uint64_t t_rel = tu_mono_us();
    TU_RC(shmlease_release_after(t, &l, 300), 0);
    TU_RC(tu_up_recv(&c, 5000), 0);
    int64_t t_acq = tu_up_recv(&c, 1000);
    TU_RANGE((t_acq - (int64_t)t_rel) / 1000, 250, 1300);
    tu_expect_exit0(p);
}

static void test_several_waiters_each_get_the_key_in_turn(void **state)
{
    (void)state;
    enum { N = 4 };
    const char *name = tu_name("manywaiters");
    shmlease_table *t = tu_open(name, NULL);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k", 60000, 0, &l), 0);
    tu_chan c[N];
    pid_t p[N];
    for (int i = 0; i < N; i++)
        p[i] = spawn_waiter(&c[i], name, "k", SHMLEASE_WAIT_FOREVER, 30);
    assert_true(TU_WAIT_FOR(waiters_of(t, "k") == N, 5000));
    TU_RC(shmlease_release(t, &l), 0);
    uint64_t tokens[N];
    for (int i = 0; i < N; i++) {
        TU_RC(tu_up_recv(&c[i], 10000), 0);
        tu_up_recv(&c[i], 1000);
        tokens[i] = (uint64_t)tu_up_recv(&c[i], 1000);
        TU_GT(tokens[i], l.fencing_token);
        for (int j = 0; j < i; j++)
            assert_true(tokens[i] != tokens[j]);
    }
    for (int i = 0; i < N; i++)
        tu_expect_exit0(p[i]);
    shmlease_info info;
    TU_RC(shmlease_inspect(t, "k", &info), -ENOENT);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(test_waiter_is_woken_on_release),
        TU_TEST(test_waiter_is_woken_on_expiry),
        TU_TEST(test_wait_times_out_after_wait_ms),
        TU_TEST(test_wait_timeout_in_another_process),
        TU_TEST(test_wait_forever_waits_until_released),
        TU_TEST(test_huge_wait_ms_waits),
        TU_TEST(test_bounded_wait_succeeds_when_released_in_time),
        TU_TEST(test_waiter_sleeps_instead_of_polling),
        TU_TEST(test_waiter_wakes_rarely_while_the_holder_lives),
        TU_TEST(test_waiter_is_woken_at_grace_end),
        TU_TEST(test_several_waiters_each_get_the_key_in_turn),
    };
    return TU_RUN(tests);
}
