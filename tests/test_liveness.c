/* Liveness: dead holders' leases are free at once; live holders (also paused
 * ones, also in other PID namespaces, also with a reused PID around) keep
 * theirs until the deadline; a paused holder's late calls are -ESTALE. */
#include "testutil.h"
#include "internal.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#define T0 1000000u

/* A child that opens NAME (with O), acquires KEYS with ttl, reports its pid
 * and each token, then sleeps until killed. */
static pid_t spawn_holder(tu_chan *c, const char *name, const shmlease_options *o,
                          const char *const *keys, int nkeys, uint64_t ttl, uint64_t *tokens)
{
    tu_chan_init(c);
    pid_t p = tu_fork();
    if (p == 0) {
        tu_chan_child(c);
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, o, &u), 0);
        tu_up(c, getpid());
        for (int i = 0; i < nkeys; i++) {
            shmlease_lease l;
            TU_CK_RC(tu_acquire(u, keys[i], ttl, 0, &l), 0);
            tu_up(c, (int64_t)l.fencing_token);
        }
        for (;;)
            pause();
    }
    tu_chan_parent(c, p);
    TU_EQ(tu_up_recv(c, 10000), p);
    for (int i = 0; i < nkeys; i++)
        tokens[i] = (uint64_t)tu_up_recv(c, 10000);
    return p;
}

static void test_dead_holder_lease_is_free_at_once(void **state)
{
    (void)state;
    const char *name = tu_name("dead");
    shmlease_table *t = tu_open(name, NULL);
    const char *keys[] = { "a", "b", "c" };
    uint64_t tok[3];
    tu_chan c;
    pid_t h = spawn_holder(&c, name, NULL, keys, 3, 60000, tok);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "a", 60000, 0, &l), -EBUSY);
    shmlease_info i = tu_inspect_ok(t, "a");
    TU_EQ(i.holder_pid, h);
    TU_EQ(i.holder_alive, 1);

    tu_kill(h);
    i = tu_inspect_ok(t, "a");
    TU_EQ(i.holder_pid, h);
    TU_EQ(i.holder_alive, 0);

    shmlease_stats s0 = tu_stats(t);
    uint64_t t0 = tu_mono_ms();
    for (int k = 0; k < 3; k++) {
        TU_RC(tu_acquire(t, keys[k], 60000, 0, &l), 0); /* try-acquire, no waiting */
        TU_GT(l.fencing_token, tok[2]);
    }
    TU_RANGE(tu_mono_ms() - t0, 0, 1000); /* nowhere near the 60 s TTL */
    shmlease_stats s1 = tu_stats(t);
    TU_EQU(s1.reclaimed_dead, s0.reclaimed_dead + 3);
    TU_EQU(s1.acquisitions, s0.acquisitions + 3);
    TU_EQU(s1.expirations, s0.expirations);
    i = tu_inspect_ok(t, "b");
    TU_EQ(i.holder_pid, getpid());
    TU_EQ(i.holder_alive, 1);
}

/* Tries share the kernel's "alive" answer about a holder for VERDICT_MS
 * (src/liveness.c, "Verdicts"). These look inside: the verdict lives in the
 * holder's registry slot. */
static struct shm_reg *holder_reg(shmlease_table *t, const char *key)
{
    shmlease_info i = tu_inspect_ok(t, key);
    TU_GT(i.holder_handle, 0);
    return &t->reg[i.holder_handle];
}

static void test_try_on_a_live_holder_shares_the_kernels_answer(void **state)
{
    (void)state;
    const char *name = tu_name("verdict");
    shmlease_table *t = tu_open(name, NULL);
    const char *keys[] = { "a" };
    uint64_t tok[1];
    tu_chan c;
    pid_t h = spawn_holder(&c, name, NULL, keys, 1, 60000, tok);
    struct shm_reg *r = holder_reg(t, "a");
    __atomic_store_n(&r->alive_seen, 0, __ATOMIC_RELAXED);
    shmlease_lease l;
    uint64_t before = shmlease__hint_now();
    TU_RC(tu_acquire(t, "a", 60000, 0, &l), -EBUSY);
    uint64_t v = __atomic_load_n(&r->alive_seen, __ATOMIC_RELAXED);
    TU_EQU(v >> VERDICT_GEN_SHIFT, __atomic_load_n(&r->gen, __ATOMIC_RELAXED) & 0xffff);
    /* stamped with the hint clock during the try (48 bits of it): not
     * before it began, and not after now */
    uint64_t mask = VERDICT_STAMP_MASK, after = shmlease__hint_now();
    assert_true(((v - before) & mask) <= ((after - before) & mask));
    tu_kill(h);
}

/* A fresh verdict is believed: a try right after the holder's death may
 * still be -EBUSY (this is what saves the system call). Each round forges a
 * fresh verdict for one key and tries it at once; a thread preempted for
 * VERDICT_MS in between sees it stale and takes the key, so only "some
 * round was -EBUSY" is asserted: with verdicts ignored, none would be. */
static void test_try_believes_a_fresh_verdict_about_the_holder(void **state)
{
    (void)state;
    const char *name = tu_name("verdict");
    shmlease_table *t = tu_open(name, NULL);
    enum { N = 32 };
    char kn[N][8];
    const char *keys[N];
    uint64_t tok[N];
    for (int k = 0; k < N; k++) {
        snprintf(kn[k], sizeof kn[k], "k%d", k);
        keys[k] = kn[k];
    }
    tu_chan c;
    pid_t h = spawn_holder(&c, name, NULL, keys, N, 60000, tok);
    struct shm_reg *r = holder_reg(t, "k0");
    uint64_t gen = __atomic_load_n(&r->gen, __ATOMIC_RELAXED);
    kill(h, SIGKILL);
    while (waitpid(h, NULL, 0) < 0 && errno == EINTR) {
    }
    tu_untrack(h);
    int busy = 0;
    for (int k = 0; k < N; k++) {
        shmlease_lease l;
        uint64_t forged = shmlease__verdict_make(gen, shmlease__hint_now());
        __atomic_store_n(&r->alive_seen, forged, __ATOMIC_RELAXED);
        int rc = tu_acquire(t, keys[k], 60000, 0, &l);
        if (rc == -EBUSY)
            busy++;
        else
            TU_RC(rc, 0);
    }
    TU_GT(busy, 0);
    /* Once VERDICT_MS has passed, the verdict is stale: the kernel is asked. */
    tu_death_settle();
    for (int k = 0; k < N; k++) {
        shmlease_lease l;
        int rc = tu_acquire(t, keys[k], 60000, 0, &l);
        if (rc != -EBUSY || tu_inspect_ok(t, keys[k]).holder_pid != getpid())
            TU_RC(rc, 0);
    }
    TU_EQ(tu_inspect_ok(t, "k0").holder_pid, getpid());
}

/* A verdict about an earlier registration of the slot, or a waiter, is
 * never believed: the kernel decides at once. */
static void test_verdict_of_another_registration_or_for_a_waiter_is_not_believed(void **state)
{
    (void)state;
    const char *name = tu_name("verdict");
    shmlease_table *t = tu_open(name, NULL);
    const char *keys[] = { "a", "b" };
    uint64_t tok[2];
    tu_chan c;
    pid_t h = spawn_holder(&c, name, NULL, keys, 2, 60000, tok);
    struct shm_reg *r = holder_reg(t, "a");
    uint64_t gen = __atomic_load_n(&r->gen, __ATOMIC_RELAXED);
    kill(h, SIGKILL);
    while (waitpid(h, NULL, 0) < 0 && errno == EINTR) {
    }
    tu_untrack(h);
    shmlease_lease l;
    uint64_t other = shmlease__verdict_make(gen - 1, shmlease__hint_now());
    __atomic_store_n(&r->alive_seen, other, __ATOMIC_RELAXED);
    TU_RC(tu_acquire(t, "a", 60000, 0, &l), 0);
    TU_GT(l.fencing_token, tok[1]);
    /* A waiting acquire asks the kernel however fresh the verdict. */
    uint64_t fresh = shmlease__verdict_make(gen, shmlease__hint_now());
    __atomic_store_n(&r->alive_seen, fresh, __ATOMIC_RELAXED);
    TU_RC(tu_acquire(t, "b", 60000, 10000, &l), 0);
    TU_GT(l.fencing_token, tok[1]);
}

static void test_blocked_waiter_takes_over_within_1s_of_holder_death(void **state)
{
    (void)state;
    const char *name = tu_name("deathwake");
    shmlease_table *t = tu_open(name, NULL);
    const char *keys[] = { "k" };
    uint64_t tok;
    tu_chan hc;
    pid_t h = spawn_holder(&hc, name, NULL, keys, 1, 60000, &tok);

    tu_chan wc;
    tu_chan_init(&wc);
    pid_t w = tu_fork();
    if (w == 0) {
        tu_chan_child(&wc);
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, NULL, &u), 0);
        shmlease_lease l;
        tu_up(&wc, 1);
        TU_CK_RC(tu_acquire(u, "k", 60000, SHMLEASE_WAIT_FOREVER, &l), 0);
        tu_up(&wc, (int64_t)tu_mono_us());
        tu_up(&wc, (int64_t)l.fencing_token);
        _exit(0);
    }
    tu_chan_parent(&wc, w);
    TU_EQ(tu_up_recv(&wc, 10000), 1);
    shmlease_info i;
    assert_true(TU_WAIT_FOR(shmlease_inspect(t, "k", &i) == 0 && i.waiters == 1, 5000));
    tu_sleep_ms(100); /* asleep in the kernel by now */
    uint64_t t_kill = tu_mono_us();
    tu_kill(h);
    int64_t t_acq = tu_up_recv(&wc, 5000);
    TU_GT(tu_up_recv(&wc, 1000), tok);
    TU_RANGE((t_acq - (int64_t)t_kill) / 1000, 0, 1000);
    tu_expect_exit0(w);
}

static void test_zombie_holder_counts_as_dead(void **state)
{
    (void)state;
    const char *name = tu_name("zombie");
    shmlease_table *t = tu_open(name, NULL);
    const char *keys[] = { "k" };
    uint64_t tok;
    tu_chan c;
    pid_t h = spawn_holder(&c, name, NULL, keys, 1, 60000, &tok);
    kill(h, SIGKILL);
    assert_true(tu_wait_zombie(h, 5000)); /* exited, not reaped: kill(pid, 0) still works */
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k", 60000, 0, &l), 0);
    TU_GT(l.fencing_token, tok);
    tu_kill(h);
}

static int write_ns_last_pid(long v)
{
    int fd = open("/proc/sys/kernel/ns_last_pid", O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char b[32];
    int n = snprintf(b, sizeof b, "%ld", v);
    int ok = write(fd, b, (size_t)n) == n;
    close(fd);
    return ok ? 0 : -1;
}

/* PID reuse: the dead holder's PID now belongs to a live, unrelated process. */
static void test_dead_holder_with_reused_pid_is_still_dead(void **state)
{
    (void)state;
    const char *name = tu_name("pidreuse");
    shmlease_table *t = tu_open(name, NULL);
    const char *keys[] = { "k" };
    uint64_t tok;
    tu_chan c;
    pid_t h = spawn_holder(&c, name, NULL, keys, 1, 60000, &tok);
    tu_kill(h);

    pid_t r = -1;
    for (int attempt = 0; attempt < 50 && r < 0; attempt++) {
        if (write_ns_last_pid((long)h - 1) != 0) {
            print_message("[  SKIPPED ] cannot write /proc/sys/kernel/ns_last_pid: %s\n",
                          strerror(errno));
            skip();
        }
        tu_chan rc;
        tu_chan_init(&rc);
        pid_t q = tu_fork();
        if (q == 0) {
            tu_chan_child(&rc);
            tu_up(&rc, getpid());
            for (;;)
                pause();
        }
        tu_chan_parent(&rc, q);
        tu_up_recv(&rc, 5000);
        if (q == h)
            r = q;
        else
            tu_kill(q); /* someone else took the PID first: again */
    }
    if (r < 0) {
        print_message("[  SKIPPED ] could not get PID %ld reused in 50 attempts\n", (long)h);
        skip();
    }
    /* a live process with the holder's PID exists; the holder is still dead */
    assert_int_equal(kill(h, 0), 0);
    shmlease_info i = tu_inspect_ok(t, "k");
    TU_EQ(i.holder_pid, h);
    TU_EQ(i.holder_alive, 0);
    shmlease_stats s0 = tu_stats(t);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k", 60000, 0, &l), 0);
    TU_GT(l.fencing_token, tok);
    TU_EQU(tu_stats(t).reclaimed_dead, s0.reclaimed_dead + 1);
}

/* A holder in another PID namespace, whose PID there does not exist here: its
 * liveness cannot be judged by PID, so it must never be declared dead. */
static void test_holder_in_another_pid_namespace_is_not_declared_dead(void **state)
{
    (void)state;
    const char *name = tu_name("pidns");
    shmlease_table *t = tu_open(name, NULL);
    /* a PID free here, for the holder to have inside its namespace */
    long x = 0;
    for (long cand = 32000; cand > 20000; cand -= 7) {
        if (kill((pid_t)cand, 0) < 0 && errno == ESRCH) {
            x = cand;
            break;
        }
    }
    assert_true(x > 0);
    tu_chan c;
    tu_chan_init(&c);
    pid_t m = tu_fork();
    if (m == 0) {
        tu_chan_child(&c);
        if (unshare(CLONE_NEWPID) != 0) {
            tu_up(&c, -1);
            _exit(0);
        }
        pid_t g = fork();
        if (g == 0) {
            /* init of the new namespace */
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            int have_x = write_ns_last_pid(x - 1) == 0;
            pid_t g2 = fork();
            if (g2 == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                char self[32] = { 0 };
                TU_CK(readlink("/proc/self", self, sizeof self - 1) > 0);
                tu_up(&c, atol(self)); /* our PID in the test's namespace */
                tu_up(&c, getpid());   /* our PID in the new namespace */
                tu_up(&c, have_x);
                shmlease_table *u = NULL;
                TU_CK_RC(shmlease_open(name, NULL, &u), 0);
                shmlease_lease l;
                TU_CK_RC(tu_acquire(u, "k", 60000, 0, &l), 0);
                tu_up(&c, (int64_t)l.fencing_token);
                for (;;)
                    pause();
            }
            for (;;)
                pause();
        }
        tu_up(&c, g);
        for (;;)
            pause();
    }
    tu_chan_parent(&c, m);
    int64_t g = tu_up_recv(&c, 10000);
    if (g < 0) {
        print_message("[  SKIPPED ] unshare(CLONE_NEWPID) not permitted\n");
        skip();
    }
    tu_track((pid_t)g);
    int64_t g2_here = tu_up_recv(&c, 10000);
    tu_track((pid_t)g2_here);
    int64_t g2_there = tu_up_recv(&c, 10000);
    int64_t have_x = tu_up_recv(&c, 10000);
    uint64_t tok = (uint64_t)tu_up_recv(&c, 10000);
    if (!have_x || g2_there != x)
        print_message("note: holder's PID in its namespace is %lld (wanted %ld)\n",
                      (long long)g2_there, x);
    /* it is alive; whatever PID it wrote, the key is not free */
    for (int k = 0; k < 10; k++) {
        shmlease_lease l;
        TU_RC(tu_acquire(t, "k", 60000, 0, &l), -EBUSY);
        shmlease_info i = tu_inspect_ok(t, "k");
        TU_EQU(i.fencing_token, tok);
        if (i.holder_alive == 0)
            fail_msg("a live holder in another PID namespace (pid %d there) is shown dead",
                     i.holder_pid);
        tu_sleep_ms(30);
    }
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k", 60000, 100, &l), -ETIMEDOUT);
}

/* The holder dies while several processes wait: one takes over at once, the
 * others get the key in turn; and the waiters' death-watching does not make
 * the dead holder look alive to anyone (its other key is free at once). */
static void test_dead_holder_with_several_waiters_each_get_it(void **state)
{
    (void)state;
    enum { NW = 3 };
    const char *name = tu_name("deathmany");
    shmlease_table *t = tu_open(name, NULL);
    const char *keys[] = { "k", "other" };
    uint64_t tok[2];
    tu_chan hc;
    pid_t h = spawn_holder(&hc, name, NULL, keys, 2, 60000, tok);
    tu_chan wc[NW];
    pid_t w[NW];
    for (int i = 0; i < NW; i++) {
        tu_chan_init(&wc[i]);
        w[i] = tu_fork();
        if (w[i] == 0) {
            tu_chan_child(&wc[i]);
            shmlease_table *u = NULL;
            TU_CK_RC(shmlease_open(name, NULL, &u), 0);
            shmlease_lease l;
            tu_up(&wc[i], 1);
            TU_CK_RC(tu_acquire(u, "k", 60000, SHMLEASE_WAIT_FOREVER, &l), 0);
            tu_up(&wc[i], (int64_t)tu_mono_us());
            tu_sleep_ms(20);
            TU_CK_RC(shmlease_release(u, &l), 0);
            _exit(0);
        }
        tu_chan_parent(&wc[i], w[i]);
        TU_EQ(tu_up_recv(&wc[i], 10000), 1);
    }
    shmlease_info i;
    assert_true(TU_WAIT_FOR(shmlease_inspect(t, "k", &i) == 0 && i.waiters == NW, 5000));
    tu_sleep_ms(100);
    uint64_t t_kill = tu_mono_us();
    tu_kill(h);
    /* the dead holder's other key: free at once, whatever the waiters do */
    shmlease_lease l;
    TU_RC(tu_acquire(t, "other", 60000, 0, &l), 0);
    TU_GT(l.fencing_token, tok[1]);
    int64_t first = INT64_MAX;
    for (int k = 0; k < NW; k++) {
        int64_t at = tu_up_recv(&wc[k], 5000);
        if (at < first)
            first = at;
    }
    TU_RANGE((first - (int64_t)t_kill) / 1000, 0, 1000);
    for (int k = 0; k < NW; k++)
        tu_expect_exit0(w[k]);
    TU_RC(shmlease_inspect(t, "k", &i), -ENOENT);
}

/* While processes wait on a dead holder's key (and watch the holder), that
 * holder is dead for everyone at once: its other key is free to a try-acquire
 * right after the death, round after round. */
static void test_dead_holder_is_dead_at_once_while_waiters_watch_it(void **state)
{
    (void)state;
    enum { NW = 4, ROUNDS = 15 };
    const char *name = tu_name("deathwatchers");
    shmlease_table *t = tu_open(name, NULL);
    int busy_rounds = 0;
    for (int r = 0; r < ROUNDS; r++) {
        const char *keys[] = { "k", "other" };
        uint64_t tok[2];
        tu_chan hc;
        pid_t h = spawn_holder(&hc, name, NULL, keys, 2, 60000, tok);
        pid_t w[NW];
        for (int i = 0; i < NW; i++) {
            w[i] = tu_fork();
            if (w[i] == 0) {
                shmlease_table *u = NULL;
                TU_CK_RC(shmlease_open(name, NULL, &u), 0);
                shmlease_lease l;
                TU_CK_RC(tu_acquire(u, "k", 60000, SHMLEASE_WAIT_FOREVER, &l), 0);
                TU_CK_RC(shmlease_release(u, &l), 0);
                _exit(0);
            }
        }
        shmlease_info i;
        assert_true(TU_WAIT_FOR(shmlease_inspect(t, "k", &i) == 0 && i.waiters == NW, 5000));
        tu_sleep_ms(30); /* long enough for the waiters to watch the holder */
        tu_kill(h);
        shmlease_lease l;
        int rc = tu_acquire(t, "other", 60000, 0, &l);
        if (rc == -EBUSY)
            busy_rounds++;
        else
            TU_RC(rc, 0);
        for (int k = 0; k < NW; k++)
            tu_expect_exit0(w[k]);
        if (rc != 0)
            TU_RC(tu_acquire(t, "other", 60000, 1000, &l), 0);
        TU_RC(shmlease_release(t, &l), 0);
    }
    if (busy_rounds)
        fail_msg("in %d of %d rounds, a try-acquire of a dead holder's key right after its "
                 "death got -EBUSY while other processes watched that holder", busy_rounds,
                 ROUNDS);
}

/* A grace period is held by nobody: neither the releaser's death nor its
 * close ends it early. */
static void test_grace_outlives_the_releasers_close_and_death(void **state)
{
    (void)state;
    const char *name = tu_name("gracedeath");
    tu_clock *clk = tu_clock_new(T0);
    shmlease_options o = tu_opts_clock(clk, 0);
    shmlease_table *t = tu_open(name, &o);
    tu_chan c;
    tu_chan_init(&c);
    pid_t h = tu_fork();
    if (h == 0) {
        tu_chan_child(&c);
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, &o, &u), 0);
        shmlease_lease l;
        TU_CK_RC(tu_acquire(u, "closed", 60000, 0, &l), 0);
        TU_CK_RC(shmlease_release_after(u, &l, 5000), 0);
        shmlease_close(u);
        TU_CK_RC(shmlease_open(name, &o, &u), 0);
        TU_CK_RC(tu_acquire(u, "killed", 60000, 0, &l), 0);
        TU_CK_RC(shmlease_release_after(u, &l, 5000), 0);
        tu_up(&c, 1);
        for (;;)
            pause();
    }
    tu_chan_parent(&c, h);
    TU_EQ(tu_up_recv(&c, 10000), 1);
    tu_kill(h);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "closed", 60000, 0, &l), -EBUSY);
    TU_RC(tu_acquire(t, "killed", 60000, 0, &l), -EBUSY);
    shmlease_info i = tu_inspect_ok(t, "killed");
    TU_EQ(i.in_grace, 1);
    TU_EQ(i.holder_pid, 0);
    tu_clock_advance(clk, 5001);
    TU_RC(tu_acquire(t, "closed", 60000, 0, &l), 0);
    TU_RC(tu_acquire(t, "killed", 60000, 0, &l), 0);
}

/* A waiter killed while it waits is no longer counted as waiting. */
static void test_killed_waiter_is_not_counted_as_waiting(void **state)
{
    (void)state;
    const char *name = tu_name("deadwaiter");
    shmlease_table *t = tu_open(name, NULL);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k", 60000, 0, &l), 0);
    tu_chan c;
    tu_chan_init(&c);
    pid_t w = tu_fork();
    if (w == 0) {
        tu_chan_child(&c);
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, NULL, &u), 0);
        shmlease_lease x;
        tu_up(&c, 1);
        tu_acquire(u, "k", 60000, SHMLEASE_WAIT_FOREVER, &x);
        _exit(0);
    }
    tu_chan_parent(&c, w);
    TU_EQ(tu_up_recv(&c, 10000), 1);
    shmlease_info i;
    assert_true(TU_WAIT_FOR(shmlease_inspect(t, "k", &i) == 0 && i.waiters == 1, 5000));
    tu_kill(w);
    /* give it time, and a renewal, to notice */
    tu_sleep_ms(200);
    TU_RC(shmlease_renew(t, &l, 60000), 0);
    if (!TU_WAIT_FOR(shmlease_inspect(t, "k", &i) == 0 && i.waiters == 0, 1000))
        fail_msg("inspect shows %u waiter(s) on a key nobody waits for (the waiter was killed)",
                 i.waiters);
}

/* ---- paused holders ------------------------------------------------------------ */

static void test_stopped_holder_keeps_lease_until_deadline_then_is_stale(void **state)
{
    (void)state;
    const char *name = tu_name("stopped");
    tu_clock *clk = tu_clock_new(T0);
    shmlease_options o = tu_opts_clock(clk, 0);
    shmlease_table *t = tu_open(name, &o);
    tu_chan c;
    tu_chan_init(&c);
    pid_t h = tu_fork();
    if (h == 0) {
        tu_chan_child(&c);
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, &o, &u), 0);
        shmlease_lease l;
        TU_CK_RC(tu_acquire(u, "k", 1000, 0, &l), 0);
        tu_up(&c, (int64_t)l.fencing_token);
        raise(SIGSTOP);
        /* resumed, long after its deadline: it believes it owns the key */
        shmlease_lease copy = l;
        tu_up(&c, shmlease_check(u, &copy));
        tu_up(&c, shmlease_renew(u, &copy, 60000));
        copy = l;
        tu_up(&c, shmlease_release(u, &copy));
        _exit(0);
    }
    tu_chan_parent(&c, h);
    uint64_t tok = (uint64_t)tu_up_recv(&c, 10000);
    assert_true(tu_wait_stopped(h, 5000));
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k", 60000, 0, &l), -EBUSY); /* paused is not dead */
    TU_EQ(tu_inspect_ok(t, "k").holder_alive, 1);
    tu_clock_advance(clk, 999);
    TU_RC(tu_acquire(t, "k", 60000, 0, &l), -EBUSY);
    tu_clock_advance(clk, 2);
    shmlease_stats s0 = tu_stats(t);
    TU_RC(tu_acquire(t, "k", 60000, 0, &l), 0);
    TU_GT(l.fencing_token, tok);
    shmlease_stats s1 = tu_stats(t);
    TU_EQU(s1.expirations, s0.expirations + 1);
    TU_EQU(s1.reclaimed_dead, s0.reclaimed_dead);

    kill(h, SIGCONT);
    TU_RC(tu_up_recv(&c, 5000), -ESTALE);
    TU_RC(tu_up_recv(&c, 5000), -ESTALE);
    TU_RC(tu_up_recv(&c, 5000), -ESTALE);
    tu_expect_exit0(h);
    TU_RC(shmlease_check(t, &l), 0);
    shmlease_info i = tu_inspect_ok(t, "k");
    TU_EQ(i.holder_pid, getpid());
    TU_EQU(i.fencing_token, l.fencing_token);
    TU_EQU(i.expires_at_ms, l.expires_at_ms);
}

static void test_sigstopped_holder_loses_lease_at_ttl_on_real_clock(void **state)
{
    (void)state;
    const char *name = tu_name("stoppedreal");
    shmlease_table *t = tu_open(name, NULL);
    const char *keys[] = { "k" };
    uint64_t tok;
    tu_chan c;
    uint64_t t0 = tu_mono_ms();
    pid_t h = spawn_holder(&c, name, NULL, keys, 1, 400, &tok);
    kill(h, SIGSTOP);
    assert_true(tu_wait_stopped(h, 5000));
    shmlease_lease l;
    if (tu_mono_ms() - t0 < 300)
        TU_RC(tu_acquire(t, "k", 60000, 0, &l), -EBUSY);
    TU_RC(tu_acquire(t, "k", 60000, 3000, &l), 0);
    TU_RANGE(tu_mono_ms() - t0, 350, 1500);
    TU_GT(l.fencing_token, tok);
    kill(h, SIGCONT);
    tu_kill(h);
}

/* A claimer paused between claiming the state word and publishing the rest
 * (docs/failure-modes.md F5): not robbed while alive and unexpired; robbed after its TTL;
 * its own late calls then are -ESTALE and never disturb the new owner. */
static void claimer_paused_at(const char *point)
{
    TU_REQUIRE_FAULT_POINTS();
    const char *name = tu_name("pausedclaim");
    tu_clock *clk = tu_clock_new(T0);
    shmlease_options o = tu_opts_clock(clk, 0);
    shmlease_table *t = tu_open(name, &o);
    shmlease_lease warm;
    TU_RC(tu_acquire(t, "k", 1000, 0, &warm), 0); /* the key's entry exists already */
    TU_RC(shmlease_release(t, &warm), 0);
    tu_chan c;
    tu_chan_init(&c);
    pid_t h = tu_fork();
    if (h == 0) {
        tu_chan_child(&c);
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, &o, &u), 0);
        shmlease_lease l;
        tu_fault_arm(point, SHMLEASE_FAULT_STOP, 1);
        int rc = tu_acquire(u, "k", 1000, 0, &l);
        tu_fault_arm(NULL, 0, 0);
        tu_up(&c, rc);
        tu_up(&c, rc == 0 ? (int64_t)l.fencing_token : 0);
        if (rc == 0) {
            shmlease_lease copy = l;
            tu_up(&c, shmlease_renew(u, &copy, 60000));
            copy = l;
            tu_up(&c, shmlease_release(u, &copy));
        }
        _exit(0);
    }
    tu_chan_parent(&c, h);
    if (!tu_wait_stopped(h, 5000))
        fail_msg("fault point %s never stopped the claimer", point);
    shmlease_lease l;
    for (int k = 0; k < 3; k++)
        TU_RC(tu_acquire(t, "k", 60000, 0, &l), -EBUSY);
    tu_clock_advance(clk, 999);
    TU_RC(tu_acquire(t, "k", 60000, 0, &l), -EBUSY);
    tu_clock_advance(clk, 1002); /* past any deadline the claim can have */
    uint64_t counter_before = tu_stats(t).fencing_counter;
    TU_RC(tu_acquire(t, "k", 60000, 0, &l), 0);
    TU_GT(l.fencing_token, counter_before);
    kill(h, SIGCONT);
    int64_t rc = tu_up_recv(&c, 5000);
    int64_t ctok = tu_up_recv(&c, 5000);
    if (rc == 0) {
        assert_true((uint64_t)ctok != l.fencing_token);
        TU_RC(tu_up_recv(&c, 5000), -ESTALE);
        TU_RC(tu_up_recv(&c, 5000), -ESTALE);
    } else {
        assert_true(rc == -EBUSY || rc == -ETIMEDOUT);
    }
    tu_expect_exit0(h);
    TU_RC(shmlease_check(t, &l), 0);
    shmlease_info i = tu_inspect_ok(t, "k");
    TU_EQ(i.holder_pid, getpid());
    TU_EQU(i.fencing_token, l.fencing_token);
    TU_EQU(i.expires_at_ms, l.expires_at_ms);
    TU_RC(shmlease_renew(t, &l, 1000), 0);
    TU_RC(shmlease_release(t, &l), 0);
}

static void test_claimer_paused_after_cas_is_not_robbed_early_and_is_stale_late(void **state)
{
    (void)state;
    claimer_paused_at("acquire.after_cas");
}

static void test_claimer_paused_after_token_is_not_robbed_early_and_is_stale_late(void **state)
{
    (void)state;
    claimer_paused_at("acquire.after_token");
}

/* A process killed at a step of acquire/renew/release: whatever it claimed is
 * free at once for the next acquirer. */
static void killed_at(const char *point, int op)
{
    TU_REQUIRE_FAULT_POINTS();
    const char *name = tu_name("killedat");
    shmlease_table *t = tu_open(name, NULL);
    shmlease_lease mine;
    TU_RC(tu_acquire(t, "mine", 60000, 0, &mine), 0);
    pid_t h = tu_fork();
    if (h == 0) {
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, NULL, &u), 0);
        shmlease_lease l;
        if (op == 0)
            tu_fault_arm(point, SHMLEASE_FAULT_KILL, 1);
        TU_CK_RC(tu_acquire(u, "k", 60000, 0, &l), 0);
        tu_fault_arm(point, SHMLEASE_FAULT_KILL, 1);
        if (op == 1)
            shmlease_renew(u, &l, 60000);
        else
            shmlease_release(u, &l);
        _exit(0);
    }
    int st = tu_wait(h, 20000);
    if (!(st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL))
        fail_msg("fault point %s was never reached", point);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k", 60000, 0, &l), 0);
    TU_GT(l.fencing_token, mine.fencing_token);
    TU_RC(shmlease_check(t, &mine), 0);
    TU_RC(shmlease_release(t, &l), 0);
    TU_RC(tu_acquire(t, "k", 60000, 0, &l), 0);
}

static void test_claimer_killed_after_cas_leaves_key_free(void **state)
{
    (void)state;
    killed_at("acquire.after_cas", 0);
}

static void test_claimer_killed_after_token_leaves_key_free(void **state)
{
    (void)state;
    killed_at("acquire.after_token", 0);
}

static void test_holder_killed_before_renew_cas_leaves_key_free(void **state)
{
    (void)state;
    killed_at("renew.before_cas", 1);
}

static void test_holder_killed_before_release_cas_leaves_key_free(void **state)
{
    (void)state;
    killed_at("release.before_cas", 2);
}

/* A renew/release slowed down right before its CAS while the lease expires and
 * is taken: the late CAS must fail (-ESTALE), not clobber the new owner. */
static void late_cas(const char *point, int op)
{
    TU_REQUIRE_FAULT_POINTS();
    const char *name = tu_name("latecas");
    tu_clock *clk = tu_clock_new(T0);
    shmlease_options o = tu_opts_clock(clk, 0);
    shmlease_table *t = tu_open(name, &o);
    tu_chan c;
    tu_chan_init(&c);
    pid_t h = tu_fork();
    if (h == 0) {
        tu_chan_child(&c);
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, &o, &u), 0);
        shmlease_lease l;
        TU_CK_RC(tu_acquire(u, "k", 1000, 0, &l), 0);
        tu_up(&c, (int64_t)l.fencing_token);
        tu_fault_arm(point, SHMLEASE_FAULT_STOP, 1);
        int rc = op == 1 ? shmlease_renew(u, &l, 60000) : shmlease_release(u, &l);
        tu_up(&c, rc);
        _exit(0);
    }
    tu_chan_parent(&c, h);
    uint64_t tok = (uint64_t)tu_up_recv(&c, 10000);
    if (!tu_wait_stopped(h, 5000))
        fail_msg("fault point %s never stopped the holder", point);
    tu_clock_advance(clk, 1001);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k", 60000, 0, &l), 0);
    TU_GT(l.fencing_token, tok);
    kill(h, SIGCONT);
    TU_RC(tu_up_recv(&c, 5000), -ESTALE);
    tu_expect_exit0(h);
    TU_RC(shmlease_check(t, &l), 0);
    shmlease_info i = tu_inspect_ok(t, "k");
    TU_EQ(i.holder_pid, getpid());
    TU_EQU(i.fencing_token, l.fencing_token);
    TU_EQU(i.expires_at_ms, l.expires_at_ms);
}

static void test_renew_paused_before_cas_past_deadline_is_stale(void **state)
{
    (void)state;
    late_cas("renew.before_cas", 1);
}

static void test_release_paused_before_cas_past_deadline_is_stale(void **state)
{
    (void)state;
    late_cas("release.before_cas", 2);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(test_dead_holder_lease_is_free_at_once),
        TU_TEST(test_try_on_a_live_holder_shares_the_kernels_answer),
        TU_TEST(test_try_believes_a_fresh_verdict_about_the_holder),
        TU_TEST(test_verdict_of_another_registration_or_for_a_waiter_is_not_believed),
        TU_TEST(test_blocked_waiter_takes_over_within_1s_of_holder_death),
        TU_TEST(test_zombie_holder_counts_as_dead),
        TU_TEST(test_dead_holder_with_reused_pid_is_still_dead),
        TU_TEST(test_holder_in_another_pid_namespace_is_not_declared_dead),
        TU_TEST(test_dead_holder_with_several_waiters_each_get_it),
        TU_TEST(test_dead_holder_is_dead_at_once_while_waiters_watch_it),
        TU_TEST(test_grace_outlives_the_releasers_close_and_death),
        TU_TEST(test_killed_waiter_is_not_counted_as_waiting),
        TU_TEST(test_stopped_holder_keeps_lease_until_deadline_then_is_stale),
        TU_TEST(test_sigstopped_holder_loses_lease_at_ttl_on_real_clock),
        TU_TEST(test_claimer_paused_after_cas_is_not_robbed_early_and_is_stale_late),
        TU_TEST(test_claimer_paused_after_token_is_not_robbed_early_and_is_stale_late),
        TU_TEST(test_claimer_killed_after_cas_leaves_key_free),
        TU_TEST(test_claimer_killed_after_token_leaves_key_free),
        TU_TEST(test_holder_killed_before_renew_cas_leaves_key_free),
        TU_TEST(test_holder_killed_before_release_cas_leaves_key_free),
        TU_TEST(test_renew_paused_before_cas_past_deadline_is_stale),
        TU_TEST(test_release_paused_before_cas_past_deadline_is_stale),
    };
    return TU_RUN(tests);
}
