/* Waiting: waiters sleep, and wake promptly on release, expiry, grace end;
 * timeouts are honoured. Real monotonic clock; bounds are wide. */
#include "testutil.h"
#include "internal.h"

#include <dirent.h>
#include <stdlib.h>
#include <errno.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/wait.h>

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

/* ---- the death watcher: one thread per process, fork, many holders ------- */

/* A child that opens NAME, takes KEY and pauses until killed; -1 if it
 * could not (usable in the test's children: no cmocka call). */
static pid_t spawn_pausing_holder(const char *name, const char *key)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    pid_t h = tu_fork();
    if (h == 0) {
        close(fds[0]);
        shmlease_table *u = NULL;
        shmlease_lease l;
        char ok = shmlease_open(name, NULL, &u) == 0 && tu_acquire(u, key, 600000, 0, &l) == 0;
        TU_CK(write(fds[1], &ok, 1) == 1);
        for (;;)
            pause();
    }
    close(fds[1]);
    char ok = 0;
    if (h < 0 || read(fds[0], &ok, 1) != 1 || !ok) {
        if (h > 0)
            kill(h, SIGKILL);
        h = -1;
    }
    close(fds[0]);
    return h;
}

/* The threads of the waiting process, as the killer saw them while it waited. */
struct seen_threads {
    int n;
    long tid[16];
};

static void record_threads(pid_t pid, struct seen_threads *st)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    st->n = 0;
    for (struct dirent *de; d && (de = readdir(d)) != NULL;)
        if (de->d_name[0] != '.' && st->n < 16)
            st->tid[st->n++] = strtol(de->d_name, NULL, 10);
    if (d)
        closedir(d);
}

/* A child that SIGKILLs PID once one waiter sleeps on KEY (inspection),
 * noting the waiter's threads in SEEN (shared memory, or NULL) first. */
static pid_t spawn_killer(const char *name, const char *key, pid_t pid, struct seen_threads *seen)
{
    pid_t waiter = getpid();
    pid_t k = tu_fork();
    if (k == 0) {
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, NULL, &u), 0);
        for (int i = 0; i < 100000 && waiters_of(u, key) < 1; i++)
            tu_sleep_us(200);
        tu_sleep_ms(5);                 /* asleep in the kernel by now, most likely */
        if (seen)
            record_threads(waiter, seen);
        kill(pid, SIGKILL);
        _exit(0);
    }
    return k;
}

static int reap(pid_t p)
{
    int st = 0;
    while (waitpid(p, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    tu_untrack(p);
    return st;
}

/* Threads of this process (entries of /proc/self/task), -1 unknown. */
static int threads_of_self(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    int n = 0;
    for (struct dirent *de; (de = readdir(d)) != NULL;)
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

/* Waits behind a holder that is SIGKILLed while we sleep: the key must be
 * ours, taken over from the dead holder (not by a timeout: the wait is long).
 * 0, or the line that failed (callable in the test's children). */
static int take_over_seen(shmlease_table *t, const char *name, const char *key,
                          struct seen_threads *seen)
{
    pid_t h = spawn_pausing_holder(name, key);
    if (h < 0)
        return __LINE__;
    pid_t k = spawn_killer(name, key, h, seen);
    shmlease_stats s0, s1;
    shmlease_lease l;
    int rc = shmlease_stats_get(t, &s0) == 0 ? tu_acquire(t, key, 60000, 30000, &l) : -1;
    int bad = rc != 0 ? __LINE__ : 0;
    if (!bad && (shmlease_stats_get(t, &s1) != 0 || s1.reclaimed_dead != s0.reclaimed_dead + 1))
        bad = __LINE__;
    if (rc == 0 && shmlease_release(t, &l) != 0)
        bad = __LINE__;
    int sk = reap(k);
    kill(h, SIGKILL);
    int sh = reap(h);
    if (!bad && (!WIFEXITED(sk) || WEXITSTATUS(sk) != 0 || !WIFSIGNALED(sh)))
        bad = __LINE__;
    return bad;
}

static int take_over_from_a_killed_holder(shmlease_table *t, const char *name, const char *key)
{
    return take_over_seen(t, name, key, NULL);
}

/* Waits behind many holders, one after the other, and behind many hand-offs:
 * the process gains one thread (its death watcher) and no more, and it is
 * the same thread during every wait (a thread per wait would have a new id). */
static void test_waits_make_one_watcher_thread_not_one_per_wait(void **state)
{
    (void)state;
    const char *name = tu_name("onethread");
    shmlease_table *t = tu_open(name, NULL);
    int before = threads_of_self();
    assert_true(before > 0);
    struct seen_threads *seen = tu_shared(sizeof *seen);
    TU_EQ(take_over_seen(t, name, "k", seen), 0);
    struct seen_threads first = *seen;
    int after_one = threads_of_self();
    TU_RANGE(after_one, before, before + 1);  /* + 1 unless an earlier test made it */
    TU_EQ(first.n, after_one);                /* the watcher ran during the wait */
    for (int i = 0; i < 5; i++) {
        TU_EQ(take_over_seen(t, name, "k", seen), 0);
        TU_EQ(seen->n, first.n);
        for (int j = 0; j < first.n; j++)
            TU_EQ(seen->tid[j], first.tid[j]);
    }
    pid_t h = spawn_pausing_holder(name, "held");
    assert_true(h > 0);
    for (int i = 0; i < 20; i++) {
        shmlease_lease l;
        TU_RC(tu_acquire(t, "held", 60000, 3, &l), -ETIMEDOUT);
    }
    TU_EQ(threads_of_self(), after_one);
    tu_kill(h);
    /* Every handle closed, a new one opened: waiting still works. */
    tu_close(t);
    t = tu_open(name, NULL);
    TU_EQ(take_over_from_a_killed_holder(t, name, "k"), 0);
    TU_EQ(threads_of_self(), after_one);
}

/* The parent's death watcher runs when it forks; the child has none of it
 * (no thread, the parent's epoll set) and must make its own: it takes over
 * from a killed holder, and so does the parent afterwards. Twice, so that
 * the child of a child that waited is covered too. */
static void test_fork_child_of_a_waiting_process_watches_on_its_own(void **state)
{
    (void)state;
    const char *name = tu_name("forkwatch");
    shmlease_table *t = tu_open(name, NULL);
    TU_EQ(take_over_from_a_killed_holder(t, name, "k"), 0);   /* the parent's watcher runs */
    pid_t c = tu_fork();
    if (c == 0) {
        TU_CK_RC(take_over_from_a_killed_holder(t, name, "c1"), 0);
        pid_t g = tu_fork();
        if (g == 0) {
            TU_CK_RC(take_over_from_a_killed_holder(t, name, "c2"), 0);
            _exit(0);
        }
        int st = reap(g);
        TU_CK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        TU_CK_RC(take_over_from_a_killed_holder(t, name, "c3"), 0);
        _exit(0);
    }
    tu_expect_exit0(c);
    TU_EQ(take_over_from_a_killed_holder(t, name, "k"), 0);
}

/* More holder processes than the watcher may keep descriptors for (a low
 * descriptor limit makes its budget small): each wait still takes over from
 * its killed holder, old records making room for new ones. */
static void test_more_holders_than_the_watcher_keeps(void **state)
{
    (void)state;
    const char *name = tu_name("manyholders");
    pid_t c = tu_fork();
    if (c == 0) {
        struct rlimit rl = {.rlim_cur = 64, .rlim_max = 64};   /* budget: 8 */
        TU_CK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
        shmlease_table *t = NULL;
        TU_CK_RC(shmlease_open(name, NULL, &t), 0);
        pid_t live[10];
        for (int i = 0; i < 10; i++) {           /* records kept by live holders */
            char key[16];
            snprintf(key, sizeof key, "live%d", i);
            live[i] = spawn_pausing_holder(name, key);
            TU_CK(live[i] > 0);
            shmlease_lease l;
            TU_CK_RC(tu_acquire(t, key, 60000, 2, &l), -ETIMEDOUT);
        }
        for (int i = 0; i < 12; i++)
            TU_CK_RC(take_over_from_a_killed_holder(t, name, "k"), 0);
        for (int i = 0; i < 10; i++) {
            kill(live[i], SIGKILL);
            reap(live[i]);
        }
        shmlease_close(t);
        _exit(0);
    }
    tu_expect_exit0(c);
}

/* A stopped holder is alive: its waiter times out, and the death watcher,
 * which sees no process end, never lets it take the key. */
static void test_stopped_holder_is_waited_for_not_taken(void **state)
{
    (void)state;
    const char *name = tu_name("stopped");
    shmlease_table *t = tu_open(name, NULL);
    pid_t h = spawn_pausing_holder(name, "k");
    assert_true(h > 0);
    TU_EQ(kill(h, SIGSTOP), 0);
    TU_EQ(tu_wait_stopped(h, 5000), 1);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k", 60000, 200, &l), -ETIMEDOUT);
    TU_EQ(kill(h, SIGCONT), 0);
    tu_kill(h);
    TU_RC(tu_acquire(t, "k", 60000, 30000, &l), 0);
    TU_RC(shmlease_release(t, &l), 0);
}

/* The holder puts its key in a grace period and dies at once: the waiter's
 * death watcher fires while the key is in grace, held by nobody. The waiter
 * must sleep until the grace ends, not spin on the stale death notice. */
static void test_waiter_sleeps_through_a_grace_whose_releaser_died(void **state)
{
    (void)state;
    const char *name = tu_name("gracedied");
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
        for (int i = 0; i < 100000 && waiters_of(u, "k") < 1; i++)
            tu_sleep_us(200);
        tu_sleep_ms(20);                /* the waiter sleeps, watching us */
        TU_CK_RC(shmlease_release_after(u, &l, 1000), 0);
        raise(SIGKILL);
    }
    tu_chan_parent(&c, h);
    TU_EQ(tu_up_recv(&c, 10000), 1);
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    double c0 = cpu_ms();
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k", 60000, 20000, &l), 0);
    double used = cpu_ms() - c0;
    getrusage(RUSAGE_SELF, &r1);
    long preempted = r1.ru_nivcsw - r0.ru_nivcsw;
    tu_expect_signal(h, SIGKILL);
    TU_RC(shmlease_release(t, &l), 0);
    print_message("note: a 1 s grace whose releaser died: %.1f ms CPU, preempted %ld times\n", used,
                  preempted);
    /* A spinning waiter burns the CPU on an idle machine, and is preempted
     * again and again on a busy one; a sleeping one does neither. */
    if (used > 300.0 || preempted > 100)
        fail_msg("waiting out a 1 s grace whose releaser died used %.1f ms of CPU and was "
                 "preempted %ld times: spinning?", used, preempted);
}

/* ---- one wake-up in flight per key (the "waking" bit) ------------------- */

/* The waiter word of KEY's entry in T. */
static uint64_t waiter_word(shmlease_table *t, const char *key)
{
    struct keybuf kb;
    TU_RC(shmlease__key_prepare(t, key, &kb), 0);
    uint32_t seq;
    long ei = shmlease__lookup(t, &kb, &seq);
    assert_true(ei >= 0);
    return __atomic_load_n(&t->entries[ei].waitgen, __ATOMIC_SEQ_CST);
}

/* A release that finds a sleeper counted sets "waking" and wakes one; while
 * it is set, releases skip FUTEX_WAKE. A sleeper killed while counted cannot
 * clear it: the next waiter that counts itself in does, so its own hand-off
 * is woken by the release (not found by a 50 ms timeout), and it gets the
 * key. */
static void test_a_killed_sleeper_leaves_no_wake_up_in_flight(void **state)
{
    (void)state;
    const char *name = tu_name("waking");
    shmlease_table *t = tu_open(name, NULL);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k", 60000, 0, &l), 0);
    tu_chan ca, cb;
    pid_t a = spawn_waiter(&ca, name, "k", SHMLEASE_WAIT_FOREVER, 0);
    assert_true(TU_WAIT_FOR(waiters_of(t, "k") == 1, 5000));
    assert_true(TU_WAIT_FOR(wg_count(waiter_word(t, "k")) == 1, 5000));
    tu_kill(a);                           /* counted, asleep, gone */
    uint64_t w = waiter_word(t, "k");
    TU_EQ(wg_count(w), 1);                /* a dead sleeper's count stays */
    assert_false(wg_waking(w));
    TU_RC(shmlease_release(t, &l), 0);    /* wakes nobody: "waking" stays set */
    assert_true(wg_waking(waiter_word(t, "k")));
    TU_RC(tu_acquire(t, "k", 60000, 0, &l), 0);
    TU_RC(shmlease_release(t, &l), 0);    /* skipped: still set */
    assert_true(wg_waking(waiter_word(t, "k")));
    TU_RC(tu_acquire(t, "k", 60000, 0, &l), 0);
    pid_t b = spawn_waiter(&cb, name, "k", SHMLEASE_WAIT_FOREVER, 0);
    assert_true(TU_WAIT_FOR(waiters_of(t, "k") == 1, 5000));
    w = waiter_word(t, "k");
    TU_EQ(wg_count(w), 2);
    assert_false(wg_waking(w));           /* B's count-in cleared it */
    TU_RC(shmlease_release(t, &l), 0);
    TU_RC(tu_up_recv(&cb, 10000), 0);     /* B got the key */
    tu_up_recv(&cb, 1000);
    TU_GT((uint64_t)tu_up_recv(&cb, 1000), l.fencing_token);
    tu_expect_exit0(b);
    w = waiter_word(t, "k");
    TU_EQ(wg_count(w), 1);                /* only the dead one's count is left, */
    assert_true(wg_waking(w));            /* which B's own release found */
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
        TU_TEST(test_waits_make_one_watcher_thread_not_one_per_wait),
        TU_TEST(test_fork_child_of_a_waiting_process_watches_on_its_own),
        TU_TEST(test_more_holders_than_the_watcher_keeps),
        TU_TEST(test_stopped_holder_is_waited_for_not_taken),
        TU_TEST(test_waiter_sleeps_through_a_grace_whose_releaser_died),
        TU_TEST(test_a_killed_sleeper_leaves_no_wake_up_in_flight),
    };
    return TU_RUN(tests);
}
