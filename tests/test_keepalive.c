/* Keepalive: the library renews a lease in the background, and says when it
 * is lost anyway (fd readable, callback once, status) - broken by another
 * process, its holder stopped past the TTL, its table removed - and never
 * when the holder ends it (release, release_after, close, stop). Real
 * processes; every wait is for a condition, with wide bounds. */
#include "testutil.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* What a callback saw: counts and the last why, shared with children. */
struct seen {
    _Atomic int calls;
    _Atomic int why;
    _Atomic uint64_t token;
};

static void on_lost(shmlease_table *t, const shmlease_lease *l, int why, void *arg)
{
    (void)t;
    struct seen *s = arg;
    atomic_store(&s->why, why);
    atomic_store(&s->token, l->fencing_token);
    atomic_fetch_add(&s->calls, 1);
}

static shmlease_keepalive_opts kopts(uint64_t ttl_ms, uint64_t interval_ms, struct seen *s)
{
    shmlease_keepalive_opts o;
    memset(&o, 0, sizeof o);
    o.ttl_ms = ttl_ms;
    o.interval_ms = interval_ms;
    o.on_lost = s ? on_lost : NULL;
    o.arg = s;
    return o;
}

/* 1 if FD is readable within MS (poll), else 0. */
static int readable(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n;
    do
        n = poll(&p, 1, ms);
    while (n < 0 && errno == EINTR);
    return n == 1 && (p.revents & POLLIN);
}

static uint64_t renewals_of(shmlease_keepalive *k)
{
    shmlease_keepalive_stats s;
    if (shmlease_keepalive_stats_get(k, &s) != 0)
        return 0;
    return s.renewals;
}

/* ---- a long job keeps its lease -------------------------------------------- */

struct busy_probe {
    _Atomic int stop;
    _Atomic uint64_t tries, not_busy;
};

/* A job ten TTLs long: the lease stays ours throughout (checked by us, and
 * by another process whose tries all get -EBUSY and see our token). */
static void test_keepalive_keeps_a_lease_through_a_job_ten_ttls_long(void **state)
{
    (void)state;
    const char *name = tu_name("kajob");
    shmlease_table *t = tu_open(name, NULL);
    const uint64_t ttl = 1200;
    shmlease_lease l;
    TU_RC(tu_acquire(t, "job", ttl, 0, &l), 0);
    struct seen *s = tu_shared(sizeof *s);
    struct busy_probe *bp = tu_shared(sizeof *bp);
    shmlease_keepalive_opts o = kopts(ttl, 0, s);
    shmlease_keepalive *k;
    TU_RC(shmlease_keepalive_start(t, &l, &o, &k), 0);
    shmlease_keepalive_stats st;
    TU_RC(shmlease_keepalive_stats_get(k, &st), 0);
    TU_EQU(st.interval_ms, ttl / 3);
    TU_EQU(st.fencing_token, l.fencing_token);

    tu_chan ch;
    tu_chan_init(&ch);
    pid_t c = tu_fork();
    if (c == 0) {
        tu_chan_child(&ch);
        shmlease_table *ct;
        TU_CK_RC(shmlease_open(name, NULL, &ct), 0);
        while (!atomic_load(&bp->stop)) {
            shmlease_lease x;
            int rc = tu_acquire(ct, "job", 1000, 0, &x);
            atomic_fetch_add(&bp->tries, 1);
            if (rc != -EBUSY)
                atomic_fetch_add(&bp->not_busy, 1);
            shmlease_info i;
            if (shmlease_inspect(ct, "job", &i) != 0 || i.fencing_token != l.fencing_token)
                atomic_fetch_add(&bp->not_busy, 1);
            tu_sleep_ms(5);
        }
        shmlease_close(ct);
        _exit(0);
    }
    uint64_t start = tu_mono_ms(), checks = 0;
    while (tu_mono_ms() < start + 10 * ttl) {
        TU_RC(shmlease_check(t, &l), 0);        /* our (older) copy stays valid */
        TU_RC(shmlease_keepalive_status(k, NULL), 0);
        checks++;
        tu_sleep_ms(10);
    }
    /* Another process has tried all along; wait until it did at least once
     * more after the job (it may have been slow to start on a loaded box). */
    uint64_t tries = atomic_load(&bp->tries);
    TU_TRUE(TU_WAIT_FOR(atomic_load(&bp->tries) > tries + 1, 30000), "the prober stalled");
    atomic_store(&bp->stop, 1);
    tu_expect_exit0(c);
    TU_EQU(atomic_load(&bp->not_busy), 0);
    TU_GT(atomic_load(&bp->tries), 1);
    shmlease_lease cur;
    TU_RC(shmlease_keepalive_status(k, &cur), 0);
    TU_EQU(cur.fencing_token, l.fencing_token);
    TU_TRUE(cur.expires_at_ms > l.expires_at_ms, "the keepalive's copy has the latest deadline");
    TU_TRUE(!readable(shmlease_keepalive_fd(k), 0), "no lost signal while held");
    TU_EQ(atomic_load(&s->calls), 0);
    /* The lease outlived ten TTLs, so it was renewed at least once per TTL. */
    uint64_t renewals = renewals_of(k);
    TU_GT(renewals, 10);
    uint64_t elapsed = tu_mono_ms() - start;
    tu_note("keepalive renewals: %llu in a %llu ms job (TTL %llu ms, interval %llu ms, "
            "expected about %llu); other process's tries all -EBUSY: %llu",
            (unsigned long long)renewals, (unsigned long long)elapsed, (unsigned long long)ttl,
            (unsigned long long)(ttl / 3), (unsigned long long)(1 + elapsed / (ttl / 3)),
            (unsigned long long)atomic_load(&bp->tries));
    TU_RC(shmlease_keepalive_stop(k), 0);
    /* Stop leaves the lease held: the caller's copy releases it. */
    TU_RC(shmlease_release(t, &l), 0);
}

/* ---- lost signals ----------------------------------------------------------- */

static void test_keepalive_signals_a_lease_broken_by_another_process(void **state)
{
    (void)state;
    const char *name = tu_name("kabreak");
    shmlease_table *t = tu_open(name, NULL);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k", 3000, 0, &l), 0);
    struct seen *s = tu_shared(sizeof *s);
    shmlease_keepalive_opts o = kopts(3000, 50, s);
    shmlease_keepalive *k;
    TU_RC(shmlease_keepalive_start(t, &l, &o, &k), 0);
    int fd = shmlease_keepalive_fd(k);
    TU_TRUE(!readable(fd, 0), "not lost yet");
    pid_t c = tu_fork();
    if (c == 0) {
        shmlease_table *ct;
        TU_CK_RC(shmlease_open(name, NULL, &ct), 0);
        TU_CK_RC(shmlease_break(ct, "k"), 0);
        shmlease_close(ct);
        _exit(0);
    }
    tu_expect_exit0(c);
    TU_TRUE(readable(fd, 30000), "the fd became readable after the break");
    TU_TRUE(TU_WAIT_FOR(atomic_load(&s->calls) == 1, 30000), "the callback ran");
    TU_EQ(atomic_load(&s->why), -ESTALE);
    TU_EQU(atomic_load(&s->token), l.fencing_token);
    TU_RC(shmlease_keepalive_status(k, NULL), -ESTALE);
    TU_RC(shmlease_check(t, &l), -ESTALE);
    TU_RC(shmlease_release(t, &l), -ESTALE);
    uint64_t v = 0;
    TU_EQ(read(fd, &v, sizeof v), (long long)sizeof v);   /* eventfd: count 1 */
    TU_EQU(v, 1);
    TU_RC(shmlease_keepalive_stop(k), -ESTALE);
    TU_EQ(atomic_load(&s->calls), 1);
}

/* The holder process is stopped past its TTL; another process takes the
 * key; after SIGCONT the holder's keepalive reports the loss (the child
 * tells us over a pipe that its fd became readable) and never takes the
 * key back. */
static void test_keepalive_signals_a_lease_lost_while_the_holder_was_stopped(void **state)
{
    (void)state;
    const char *name = tu_name("kastop");
    shmlease_table *t = tu_open(name, NULL);
    const uint64_t ttl = 1000;
    struct seen *s = tu_shared(sizeof *s);
    tu_chan ch;
    tu_chan_init(&ch);
    pid_t c = tu_fork();
    if (c == 0) {
        tu_chan_child(&ch);
        shmlease_table *ct;
        TU_CK_RC(shmlease_open(name, NULL, &ct), 0);
        shmlease_lease l;
        TU_CK_RC(tu_acquire(ct, "k", ttl, 0, &l), 0);
        shmlease_keepalive_opts o = kopts(ttl, 0, s);
        shmlease_keepalive *k;
        TU_CK_RC(shmlease_keepalive_start(ct, &l, &o, &k), 0);
        tu_up(&ch, (int64_t)l.fencing_token);
        /* An event loop: sleeps until the fd says "lost". */
        struct pollfd p = {.fd = shmlease_keepalive_fd(k), .events = POLLIN};
        int n;
        do
            n = poll(&p, 1, -1);
        while (n < 0 && errno == EINTR);
        TU_CK(n == 1 && (p.revents & POLLIN));
        TU_CK(TU_WAIT_FOR(atomic_load(&s->calls) == 1, 30000));
        TU_CK_RC(shmlease_keepalive_status(k, NULL), -ESTALE);
        TU_CK_RC(shmlease_check(ct, &l), -ESTALE);
        tu_up(&ch, atomic_load(&s->why));
        TU_CK_RC(shmlease_keepalive_stop(k), -ESTALE);
        shmlease_close(ct);
        _exit(0);
    }
    tu_chan_parent(&ch, c);
    uint64_t ctok = (uint64_t)tu_up_recv(&ch, 30000);
    /* The keepalive renews: the key stays the child's over several TTLs. */
    uint64_t exp0 = tu_inspect_ok(t, "k").expires_at_ms;
    TU_TRUE(TU_WAIT_FOR(tu_inspect_ok(t, "k").expires_at_ms > exp0, 30000), "the child's keepalive renews");
    TU_EQU(tu_inspect_ok(t, "k").fencing_token, ctok);
    kill(c, SIGSTOP);
    TU_TRUE(tu_wait_stopped(c, 30000), "the holder stopped");
    shmlease_lease mine;
    /* The stopped holder is alive: only its TTL ends the lease. */
    TU_RC(tu_acquire(t, "k", 60000, 60000, &mine), 0);
    TU_GT(mine.fencing_token, ctok);
    TU_EQ(atomic_load(&s->calls), 0);           /* a stopped process says nothing */
    kill(c, SIGCONT);
    int64_t why = tu_up_recv(&ch, 60000);
    TU_EQ(why, -ESTALE);
    tu_expect_exit0(c);
    TU_EQ(atomic_load(&s->calls), 1);
    /* Ours throughout: the old holder's keepalive never took it back. */
    TU_RC(shmlease_check(t, &mine), 0);
    TU_EQU(tu_inspect_ok(t, "k").fencing_token, mine.fencing_token);
    TU_RC(shmlease_release(t, &mine), 0);
}

static void test_keepalive_signals_a_removed_table(void **state)
{
    (void)state;
    const char *name = tu_name("kaunlink");
    shmlease_table *t = tu_open(name, NULL);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k", 5000, 0, &l), 0);
    struct seen *s = tu_shared(sizeof *s);
    shmlease_keepalive_opts o = kopts(5000, 30, s);
    shmlease_keepalive *k;
    TU_RC(shmlease_keepalive_start(t, &l, &o, &k), 0);
    pid_t c = tu_fork();
    if (c == 0) {
        TU_CK_RC(shmlease_unlink(name), 0);
        _exit(0);
    }
    tu_expect_exit0(c);
    TU_TRUE(readable(shmlease_keepalive_fd(k), 30000), "lost signal after unlink");
    TU_TRUE(TU_WAIT_FOR(atomic_load(&s->calls) == 1, 30000), "the callback ran");
    TU_EQ(atomic_load(&s->why), -EIDRM);
    TU_RC(shmlease_keepalive_status(k, NULL), -EIDRM);
    TU_RC(shmlease_keepalive_stop(k), -EIDRM);
    /* Renewals stopped; the value itself stays valid in the old segment
     * until its deadline: release it there. */
    TU_RC(shmlease_release(t, &l), 0);
}

/* ---- ends without a signal ----------------------------------------------------- */

/* Release (of the caller's copy, or of the keepalive's current one),
 * release_after and stop end the keepalive, never with a lost signal, even
 * with a renewal due every millisecond (racing the release). */
static void test_keepalive_release_ends_it_without_a_lost_signal(void **state)
{
    (void)state;
    const char *name = tu_name("karel");
    shmlease_table *t = tu_open(name, NULL);
    struct seen *s = tu_shared(sizeof *s);
    uint64_t seed = 7, renewed = 0;
    for (int i = 0; i < 300; i++) {
        shmlease_lease l;
        TU_RC(tu_acquire(t, "k", 5000, 0, &l), 0);
        shmlease_keepalive_opts o = kopts(5000, 1, s);
        shmlease_keepalive *k;
        TU_RC(shmlease_keepalive_start(t, &l, &o, &k), 0);
        tu_sleep_us((unsigned)(tu_rand(&seed) % 3000));
        renewed += renewals_of(k) > 1;
        int how = i % 3;
        if (how == 0) {
            TU_RC(shmlease_release(t, &l), 0);
        } else if (how == 1) {
            shmlease_lease cur;
            TU_RC(shmlease_keepalive_status(k, &cur), 0);
            TU_RC(shmlease_release_after(t, &cur, 1), 0);
            TU_RC(shmlease_release(t, &l), -ESTALE);    /* spent by the copy's release */
        } else {
            TU_RC(shmlease_release_after(t, &l, 1), 0);
        }
        TU_RC(shmlease_keepalive_status(k, NULL), -ECANCELED);
        TU_TRUE(!readable(shmlease_keepalive_fd(k), 0), "no lost signal (round %d)", i);
        TU_RC(shmlease_keepalive_stop(k), -ECANCELED);
        TU_EQ(atomic_load(&s->calls), 0);
        if (how)
            TU_TRUE(TU_WAIT_FOR(shmlease_inspect(t, "k", &(shmlease_info){0}) == -ENOENT, 10000),
                    "grace over");
    }
    TU_GT(renewed, 0);                            /* the races did happen */
    /* stop, then the caller's copy still holds the lease */
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k", 5000, 0, &l), 0);
    shmlease_keepalive_opts o = kopts(5000, 1, s);
    shmlease_keepalive *k;
    TU_RC(shmlease_keepalive_start(t, &l, &o, &k), 0);
    TU_TRUE(TU_WAIT_FOR(renewals_of(k) > 3, 30000), "renewing");
    TU_RC(shmlease_keepalive_stop(k), 0);
    TU_RC(shmlease_check(t, &l), 0);
    TU_RC(shmlease_release(t, &l), 0);
    TU_EQ(atomic_load(&s->calls), 0);
}

static void test_keepalive_close_ends_it_without_a_lost_signal(void **state)
{
    (void)state;
    const char *name = tu_name("kaclose");
    shmlease_table *t = tu_open(name, NULL);
    struct seen *s = tu_shared(sizeof *s);
    for (int i = 0; i < 100; i++) {
        shmlease_table *t2;
        TU_RC(shmlease_open(name, NULL, &t2), 0);
        shmlease_lease a, b;
        TU_RC(tu_acquire(t2, "a", 5000, 0, &a), 0);
        TU_RC(tu_acquire(t2, "b", 5000, 0, &b), 0);
        shmlease_keepalive_opts o = kopts(5000, 1, s);
        shmlease_keepalive *ka, *kb;
        TU_RC(shmlease_keepalive_start(t2, &a, &o, &ka), 0);
        TU_RC(shmlease_keepalive_start(t2, &b, &o, &kb), 0);
        tu_sleep_us((unsigned)(i * 37 % 2000));
        shmlease_close(t2);
        TU_RC(shmlease_keepalive_status(ka, NULL), -ECANCELED);
        TU_RC(shmlease_keepalive_status(kb, NULL), -ECANCELED);
        TU_TRUE(!readable(shmlease_keepalive_fd(ka), 0), "no lost signal (round %d)", i);
        TU_TRUE(!readable(shmlease_keepalive_fd(kb), 0), "no lost signal (round %d)", i);
        /* close released them: free to another handle at once */
        shmlease_lease x;
        TU_RC(tu_acquire(t, "a", 5000, 0, &x), 0);
        TU_RC(shmlease_release(t, &x), 0);
        TU_RC(tu_acquire(t, "b", 5000, 0, &x), 0);
        TU_RC(shmlease_release(t, &x), 0);
        TU_RC(shmlease_keepalive_stop(ka), -ECANCELED);
        TU_RC(shmlease_keepalive_stop(kb), -ECANCELED);
    }
    TU_EQ(atomic_load(&s->calls), 0);
}

/* ---- event loops ----------------------------------------------------------------- */

/* One poll() loop over three keepalives: breaking one key wakes the loop
 * with exactly that descriptor readable; the others keep their leases. */
static void test_keepalive_fd_drives_a_poll_loop(void **state)
{
    (void)state;
    const char *name = tu_name("kapoll");
    shmlease_table *t = tu_open(name, NULL);
    const char *keys[3] = {"x", "y", "z"};
    shmlease_lease l[3];
    shmlease_keepalive *k[3];
    struct pollfd p[3];
    for (int i = 0; i < 3; i++) {
        TU_RC(tu_acquire(t, keys[i], 2000, 0, &l[i]), 0);
        shmlease_keepalive_opts o = kopts(2000, 40, NULL);     /* the fd alone */
        TU_RC(shmlease_keepalive_start(t, &l[i], &o, &k[i]), 0);
        p[i] = (struct pollfd){.fd = shmlease_keepalive_fd(k[i]), .events = POLLIN};
    }
    pid_t c = tu_fork();
    if (c == 0) {
        shmlease_table *ct;
        TU_CK_RC(shmlease_open(name, NULL, &ct), 0);
        TU_CK_RC(shmlease_break(ct, "y"), 0);
        shmlease_close(ct);
        _exit(0);
    }
    uint64_t until = tu_mono_ms() + 30000;
    int n = 0;
    while (n == 0 && tu_mono_ms() < until) {
        n = poll(p, 3, 1000);
        TU_TRUE(n >= 0 || errno == EINTR, "poll: %s", strerror(errno));
    }
    tu_expect_exit0(c);
    TU_EQ(n, 1);
    TU_TRUE(!(p[0].revents & POLLIN) && (p[1].revents & POLLIN) && !(p[2].revents & POLLIN),
            "only y's fd is readable (%x %x %x)", p[0].revents, p[1].revents, p[2].revents);
    TU_RC(shmlease_keepalive_status(k[1], NULL), -ESTALE);
    for (int i = 0; i < 3; i += 2) {
        TU_RC(shmlease_keepalive_status(k[i], NULL), 0);
        TU_RC(shmlease_check(t, &l[i]), 0);
        TU_RC(shmlease_keepalive_stop(k[i]), 0);
        TU_RC(shmlease_release(t, &l[i]), 0);
    }
    TU_RC(shmlease_keepalive_stop(k[1]), -ESTALE);
}

/* ---- the callback's rights ---------------------------------------------------------- */

struct self_stop {
    shmlease_keepalive *k;
    _Atomic int stop_rc;
    _Atomic int done;
};

static void stop_myself(shmlease_table *t, const shmlease_lease *l, int why, void *arg)
{
    (void)t;
    (void)l;
    (void)why;
    struct self_stop *ss = arg;
    atomic_store(&ss->stop_rc, shmlease_keepalive_stop(ss->k));
    atomic_store(&ss->done, 1);
}

static void test_keepalive_callback_may_stop_its_own_keepalive(void **state)
{
    (void)state;
    const char *name = tu_name("kaself");
    shmlease_table *t = tu_open(name, NULL);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k", 3000, 0, &l), 0);
    struct self_stop *ss = tu_shared(sizeof *ss);
    atomic_store(&ss->stop_rc, 1);
    shmlease_keepalive_opts o = kopts(3000, 20, NULL);
    o.on_lost = stop_myself;
    o.arg = ss;
    TU_RC(shmlease_keepalive_start(t, &l, &o, &ss->k), 0);
    TU_RC(shmlease_break(t, "k"), 0);
    TU_TRUE(TU_WAIT_FOR(atomic_load(&ss->done), 30000), "the callback ran");
    TU_EQ(atomic_load(&ss->stop_rc), -ESTALE);
    /* The thread goes on serving others. */
    shmlease_lease m;
    TU_RC(tu_acquire(t, "m", 3000, 0, &m), 0);
    shmlease_keepalive *k;
    o = kopts(3000, 100, NULL);
    TU_RC(shmlease_keepalive_start(t, &m, &o, &k), 0);
    TU_TRUE(TU_WAIT_FOR(renewals_of(k) > 4, 30000), "renewing after a callback's stop");
    TU_RC(shmlease_keepalive_stop(k), 0);
    TU_RC(shmlease_release(t, &m), 0);
}

/* ---- bad input, fork ---------------------------------------------------------------- */

static void test_keepalive_start_refuses_bad_input_and_changes_nothing(void **state)
{
    (void)state;
    const char *name = tu_name("kabad");
    shmlease_table *t = tu_open(name, NULL);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k", 60000, 0, &l), 0);
    uint64_t exp = tu_inspect_ok(t, "k").expires_at_ms;
    shmlease_keepalive *k = (shmlease_keepalive *)&l;   /* overwritten with NULL */
    shmlease_keepalive_opts o = kopts(60000, 0, NULL);
    TU_RC(shmlease_keepalive_start(NULL, &l, &o, &k), -EINVAL);
    TU_RC(shmlease_keepalive_start(t, NULL, &o, &k), -EINVAL);
    TU_RC(shmlease_keepalive_start(t, &l, NULL, &k), -EINVAL);
    TU_RC(shmlease_keepalive_start(t, &l, &o, NULL), -EINVAL);
    o.ttl_ms = 0;
    TU_RC(shmlease_keepalive_start(t, &l, &o, &k), -EINVAL);
    TU_TRUE(k == NULL, "out cleared on error");
    o = kopts(60000, 60000, NULL);
    TU_RC(shmlease_keepalive_start(t, &l, &o, &k), -EINVAL);
    o = kopts(60000, 0, NULL);
    o.reserved_0[3] = 1;
    TU_RC(shmlease_keepalive_start(t, &l, &o, &k), -EINVAL);
    TU_EQU(tu_inspect_ok(t, "k").expires_at_ms, exp);   /* nothing renewed */
    /* A foreign lease value, a read-only handle */
    shmlease_lease junk;
    memset(&junk, 0x5a, sizeof junk);
    o = kopts(60000, 0, NULL);
    TU_RC(shmlease_keepalive_start(t, &junk, &o, &k), -EINVAL);
    shmlease_options ro = {0};
    ro.flags = SHMLEASE_OPEN_READONLY;
    shmlease_table *rt = tu_open(name, &ro);
    TU_RC(shmlease_keepalive_start(rt, &l, &o, &k), -EPERM);
    TU_EQU(tu_inspect_ok(t, "k").expires_at_ms, exp);
    /* One keepalive per lease */
    TU_RC(shmlease_keepalive_start(t, &l, &o, &k), 0);
    shmlease_keepalive *k2 = NULL;
    shmlease_lease copy = l;
    TU_RC(shmlease_keepalive_start(t, &copy, &o, &k2), -EEXIST);
    TU_TRUE(k2 == NULL, "no second keepalive");
    TU_RC(shmlease_keepalive_stop(k), 0);
    /* A lost lease */
    TU_RC(shmlease_break(t, "k"), 0);
    TU_RC(shmlease_keepalive_start(t, &l, &o, &k), -ESTALE);
    /* NULLs elsewhere */
    TU_RC(shmlease_keepalive_fd(NULL), -EINVAL);
    TU_RC(shmlease_keepalive_status(NULL, NULL), -EINVAL);
    TU_RC(shmlease_keepalive_stop(NULL), -EINVAL);
    shmlease_keepalive_stats st;
    TU_RC(shmlease_keepalive_stats_get(NULL, &st), -EINVAL);
    TU_EQ(strcmp(shmlease_errname(-EIDRM), "EIDRM"), 0);
}

/* A child has no keepalive of its parent: its copies report -ESTALE, stop
 * frees only the child's copy, and the parent's keeps its lease. */
static void test_keepalive_fork_child_has_none_of_its_parents(void **state)
{
    (void)state;
    const char *name = tu_name("kafork");
    shmlease_table *t = tu_open(name, NULL);
    const uint64_t ttl = 3000;
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k", ttl, 0, &l), 0);
    struct seen *s = tu_shared(sizeof *s);
    shmlease_keepalive_opts o = kopts(ttl, 100, s);
    shmlease_keepalive *k;
    TU_RC(shmlease_keepalive_start(t, &l, &o, &k), 0);
    pid_t c = tu_fork();
    if (c == 0) {
        TU_CK_RC(shmlease_keepalive_status(k, NULL), -ESTALE);
        TU_CK(!readable(shmlease_keepalive_fd(k), 0));
        shmlease_lease x;
        TU_CK_RC(tu_acquire(t, "k", ttl, 0, &x), -EBUSY);
        TU_CK_RC(shmlease_keepalive_stop(k), -ESTALE);
        TU_CK_RC(shmlease_keepalive_start(t, &l, &o, &k), -ESTALE);
        /* a keepalive of its own works */
        TU_CK_RC(tu_acquire(t, "c", ttl, 0, &x), 0);
        shmlease_keepalive *ck;
        TU_CK_RC(shmlease_keepalive_start(t, &x, &o, &ck), 0);
        TU_CK(TU_WAIT_FOR(renewals_of(ck) > 4, 30000));
        TU_CK_RC(shmlease_keepalive_stop(ck), 0);
        TU_CK_RC(shmlease_release(t, &x), 0);
        _exit(0);
    }
    tu_expect_exit0(c);
    uint64_t r = renewals_of(k);
    TU_TRUE(TU_WAIT_FOR(renewals_of(k) > r + 3, 30000), "the parent's keepalive goes on");
    TU_RC(shmlease_keepalive_status(k, NULL), 0);
    TU_TRUE(!readable(shmlease_keepalive_fd(k), 0), "no lost signal");
    TU_EQ(atomic_load(&s->calls), 0);
    TU_RC(shmlease_keepalive_stop(k), 0);
    TU_RC(shmlease_release(t, &l), 0);
}

/* Shared holders each keep their own lease; one's release ends only its
 * keepalive. */
static void test_keepalive_keeps_shared_leases(void **state)
{
    (void)state;
    const char *name = tu_name("kashared");
    shmlease_table *t = tu_open(name, NULL);
    shmlease_acquire_opts ao = tu_aopts(3000, 0);
    ao.mode = SHMLEASE_SHARED;
    shmlease_lease a, b;
    TU_RC(shmlease_acquire(t, "s", &ao, &a), 0);
    TU_RC(shmlease_acquire(t, "s", &ao, &b), 0);
    struct seen *s = tu_shared(sizeof *s);
    shmlease_keepalive_opts o = kopts(3000, 100, s);
    shmlease_keepalive *ka, *kb;
    TU_RC(shmlease_keepalive_start(t, &a, &o, &ka), 0);
    TU_RC(shmlease_keepalive_start(t, &b, &o, &kb), 0);
    TU_TRUE(TU_WAIT_FOR(renewals_of(ka) > 9 && renewals_of(kb) > 9, 60000), "both renewed");
    TU_RC(shmlease_check(t, &a), 0);
    TU_RC(shmlease_release(t, &a), 0);
    TU_RC(shmlease_keepalive_status(ka, NULL), -ECANCELED);
    uint64_t r = renewals_of(kb);
    TU_TRUE(TU_WAIT_FOR(renewals_of(kb) > r + 3, 30000), "b goes on");
    TU_RC(shmlease_check(t, &b), 0);
    shmlease_lease x;
    ao.mode = SHMLEASE_EXCLUSIVE;
    TU_RC(shmlease_acquire(t, "s", &ao, &x), -EBUSY);
    TU_RC(shmlease_keepalive_stop(ka), -ECANCELED);
    TU_RC(shmlease_keepalive_stop(kb), 0);
    TU_RC(shmlease_release(t, &b), 0);
    TU_EQ(atomic_load(&s->calls), 0);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(test_keepalive_keeps_a_lease_through_a_job_ten_ttls_long),
        TU_TEST(test_keepalive_signals_a_lease_broken_by_another_process),
        TU_TEST(test_keepalive_signals_a_lease_lost_while_the_holder_was_stopped),
        TU_TEST(test_keepalive_signals_a_removed_table),
        TU_TEST(test_keepalive_release_ends_it_without_a_lost_signal),
        TU_TEST(test_keepalive_close_ends_it_without_a_lost_signal),
        TU_TEST(test_keepalive_fd_drives_a_poll_loop),
        TU_TEST(test_keepalive_callback_may_stop_its_own_keepalive),
        TU_TEST(test_keepalive_start_refuses_bad_input_and_changes_nothing),
        TU_TEST(test_keepalive_fork_child_has_none_of_its_parents),
        TU_TEST(test_keepalive_keeps_shared_leases),
    };
    return TU_RUN(tests);
}
