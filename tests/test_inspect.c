/* Inspection (inspect, foreach), statistics, error strings. */
#include "testutil.h"

#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include <fcntl.h>
#include <sys/stat.h>

#define T0 1000000u

static const unsigned char META[] = { 'a', 0, 'b', 0x01, 0xff, 0x7f, 0, 0, '\n', 0x80 };

static void test_inspect_shows_every_field_of_a_held_lease(void **state)
{
    (void)state;
    const char *name = tu_name("fields");
    shmlease_table *t = tu_open(name, NULL);
    tu_chan c;
    tu_chan_init(&c);
    pid_t h = tu_fork();
    if (h == 0) {
        tu_chan_child(&c);
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, NULL, &u), 0);
        shmlease_acquire_opts o = tu_aopts(5000, 0);
        o.metadata = META;
        o.metadata_len = sizeof META;
        shmlease_lease l;
        TU_CK_RC(shmlease_acquire(u, "the/key with spaces", &o, &l), 0);
        tu_up(&c, (int64_t)l.fencing_token);
        tu_up(&c, (int64_t)l.expires_at_ms);
        for (;;)
            pause();
    }
    tu_chan_parent(&c, h);
    uint64_t tok = (uint64_t)tu_up_recv(&c, 10000);
    uint64_t exp = (uint64_t)tu_up_recv(&c, 10000);
    shmlease_info i;
    memset(&i, 0x5a, sizeof i);
    TU_RC(shmlease_inspect(t, "the/key with spaces", &i), 0);
    assert_string_equal(i.key, "the/key with spaces");
    TU_EQU(i.fencing_token, tok);
    TU_EQ(i.holder_pid, h);
    TU_EQ(i.holder_alive, 1);
    TU_RANGE(i.remaining_ms, 4000, 5000);
    TU_EQU(i.expires_at_ms, exp);
    TU_EQ(i.waiters, 0);
    TU_EQ(i.in_grace, 0);
    TU_EQ(i.holder_other_pidns, 0);
    TU_EQU(i.metadata_len, sizeof META);
    assert_memory_equal(i.metadata, META, sizeof META);

    /* a waiter is counted while it waits */
    tu_chan wc;
    tu_chan_init(&wc);
    pid_t w = tu_fork();
    if (w == 0) {
        tu_chan_child(&wc);
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, NULL, &u), 0);
        shmlease_lease l;
        tu_up(&wc, 1);
        tu_acquire(u, "the/key with spaces", 5000, SHMLEASE_WAIT_FOREVER, &l);
        _exit(0);
    }
    tu_chan_parent(&wc, w);
    TU_EQ(tu_up_recv(&wc, 10000), 1);
    if (!TU_WAIT_FOR(shmlease_inspect(t, "the/key with spaces", &i) == 0 && i.waiters == 1,
                     5000))
        fail_msg("inspect shows %u waiters while one process waits", i.waiters);
    tu_kill(w);

    /* dead holder */
    tu_kill(h);
    TU_RC(shmlease_inspect(t, "the/key with spaces", &i), 0);
    TU_EQ(i.holder_pid, h);
    TU_EQ(i.holder_alive, 0);

    /* free keys */
    TU_RC(shmlease_inspect(t, "never", &i), -ENOENT);
    TU_RC(shmlease_inspect(t, "the/key with space", &i), -ENOENT); /* a prefix */
}

static void test_inspect_remaining_and_metadata_on_the_test_clock(void **state)
{
    (void)state;
    const char *name = tu_name("remaining");
    tu_clock *clk = tu_clock_new(T0);
    shmlease_options o = tu_opts_clock(clk, 0);
    shmlease_table *t = tu_open(name, &o);
    unsigned char meta[SHMLEASE_METADATA_MAX];
    for (size_t k = 0; k < sizeof meta; k++)
        meta[k] = (unsigned char)(255 - k);
    shmlease_acquire_opts ao = tu_aopts(1000, 0);
    ao.metadata = meta;
    ao.metadata_len = sizeof meta;
    shmlease_lease l;
    TU_RC(shmlease_acquire(t, "k", &ao, &l), 0);
    shmlease_info i;
    TU_RC(shmlease_inspect(t, "k", &i), 0);
    TU_EQ(i.remaining_ms, 1000);
    TU_EQU(i.metadata_len, sizeof meta);
    assert_memory_equal(i.metadata, meta, sizeof meta);
    tu_clock_advance(clk, 400);
    TU_RC(shmlease_inspect(t, "k", &i), 0);
    TU_EQ(i.remaining_ms, 600);
    TU_RC(shmlease_renew(t, &l, 1000), 0);
    TU_RC(shmlease_inspect(t, "k", &i), 0);
    TU_EQ(i.remaining_ms, 1000);
    assert_memory_equal(i.metadata, meta, sizeof meta); /* renew keeps the metadata */
    /* a new holder's metadata replaces the old one, shorter */
    TU_RC(shmlease_release(t, &l), 0);
    ao.metadata = "xy";
    ao.metadata_len = 2;
    TU_RC(shmlease_acquire(t, "k", &ao, &l), 0);
    memset(&i, 0x77, sizeof i);
    TU_RC(shmlease_inspect(t, "k", &i), 0);
    TU_EQU(i.metadata_len, 2);
    assert_memory_equal(i.metadata, "xy", 2);
    /* past the deadline: not held (free, or shown as expired) */
    tu_clock_advance(clk, 1001);
    int rc = shmlease_inspect(t, "k", &i);
    assert_true(rc == -ENOENT || (rc == 0 && i.remaining_ms <= 0));
}

struct visit {
    char keys[16][SHMLEASE_KEY_MAX + 1];
    int n;
    int stop_at;
    int ret;
};

static int visit_cb(const shmlease_info *i, void *arg)
{
    struct visit *v = arg;
    if (v->n < 16)
        snprintf(v->keys[v->n], sizeof v->keys[v->n], "%s", i->key);
    v->n++;
    if (v->stop_at && v->n == v->stop_at)
        return v->ret;
    return 0;
}

static int visited(const struct visit *v, const char *key)
{
    int n = 0;
    for (int k = 0; k < v->n && k < 16; k++)
        n += strcmp(v->keys[k], key) == 0;
    return n;
}

static void test_foreach_visits_each_held_lease_once(void **state)
{
    (void)state;
    const char *name = tu_name("foreach");
    tu_clock *clk = tu_clock_new(T0);
    shmlease_options o = tu_opts_clock(clk, 32);
    shmlease_table *t = tu_open(name, &o);
    struct visit v;
    memset(&v, 0, sizeof v);
    TU_RC(shmlease_foreach(t, visit_cb, &v), 0); /* empty table */
    TU_EQ(v.n, 0);

    shmlease_lease l;
    TU_RC(tu_acquire(t, "held-1", 60000, 0, &l), 0);
    TU_RC(tu_acquire(t, "held-2", 60000, 0, &l), 0);
    TU_RC(tu_acquire(t, "released", 60000, 0, &l), 0);
    TU_RC(shmlease_release(t, &l), 0);
    TU_RC(tu_acquire(t, "expired", 100, 0, &l), 0);
    TU_RC(tu_acquire(t, "grace", 60000, 0, &l), 0);
    TU_RC(shmlease_release_after(t, &l, 5000), 0);
    TU_RC(tu_acquire(t, "broken", 60000, 0, &l), 0);
    TU_RC(shmlease_break(t, "broken"), 0);
    /* and one held by another process */
    tu_chan c;
    tu_chan_init(&c);
    pid_t p = tu_fork();
    if (p == 0) {
        tu_chan_child(&c);
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, &o, &u), 0);
        shmlease_lease x;
        TU_CK_RC(tu_acquire(u, "held-by-child", 60000, 0, &x), 0);
        tu_up(&c, 1);
        for (;;)
            pause();
    }
    tu_chan_parent(&c, p);
    TU_EQ(tu_up_recv(&c, 10000), 1);
    tu_clock_advance(clk, 101);

    memset(&v, 0, sizeof v);
    TU_RC(shmlease_foreach(t, visit_cb, &v), 0);
    TU_EQ(v.n, 4);
    TU_EQ(visited(&v, "held-1"), 1);
    TU_EQ(visited(&v, "held-2"), 1);
    TU_EQ(visited(&v, "grace"), 1);
    TU_EQ(visited(&v, "held-by-child"), 1);
    TU_EQ(visited(&v, "expired"), 0);
    TU_EQ(visited(&v, "released"), 0);
    TU_EQ(visited(&v, "broken"), 0);

    /* a non-zero return stops the walk and is returned */
    memset(&v, 0, sizeof v);
    v.stop_at = 2;
    v.ret = 7;
    TU_RC(shmlease_foreach(t, visit_cb, &v), 7);
    TU_EQ(v.n, 2);
    memset(&v, 0, sizeof v);
    v.stop_at = 1;
    v.ret = -5;
    TU_RC(shmlease_foreach(t, visit_cb, &v), -5);
    TU_EQ(v.n, 1);
    memset(&v, 0, sizeof v);
    v.stop_at = 4; /* stopping at the last one still returns the value */
    v.ret = 1;
    TU_RC(shmlease_foreach(t, visit_cb, &v), 1);
    TU_EQ(v.n, 4);
}

struct fields_check {
    pid_t me;
    int bad;
};

static int fields_cb(const shmlease_info *i, void *arg)
{
    struct fields_check *f = arg;
    if (i->holder_pid != f->me || i->holder_alive != 1 || i->remaining_ms <= 0 ||
        i->fencing_token == 0 || i->metadata_len != strlen(i->key) ||
        memcmp(i->metadata, i->key, i->metadata_len) != 0)
        f->bad++;
    return 0;
}

static void test_foreach_fills_the_same_fields_as_inspect(void **state)
{
    (void)state;
    const char *name = tu_name("foreachfields");
    shmlease_table *t = tu_open_cap(name, 64);
    char key[32];
    for (int k = 0; k < 40; k++) {
        snprintf(key, sizeof key, "key-number-%d", k);
        shmlease_acquire_opts o = tu_aopts(60000, 0);
        o.metadata = key;
        o.metadata_len = strlen(key);
        shmlease_lease l;
        TU_RC(shmlease_acquire(t, key, &o, &l), 0);
    }
    struct fields_check f = { getpid(), 0 };
    TU_RC(shmlease_foreach(t, fields_cb, &f), 0);
    TU_EQ(f.bad, 0);
}

/* ---- stats --------------------------------------------------------------------- */

static void test_stats_counters_move_as_promised(void **state)
{
    (void)state;
    const char *name = tu_name("stats");
    tu_clock *clk = tu_clock_new(T0);
    shmlease_options o = tu_opts_clock(clk, 32);
    shmlease_table *t = tu_open(name, &o);
    shmlease_table *t2 = tu_open(name, &o);
    shmlease_stats s = tu_stats(t);
    TU_EQU(s.acquisitions, 0);
    TU_EQU(s.fencing_counter, 0);
    TU_EQ(s.capacity, 32);
    TU_EQ(s.held, 0);
    assert_true(s.format_version != 0);
    assert_true(s.table_epoch != 0);
    TU_EQU(s.created_at_ms, T0);
    char p[512];
    struct stat st;
    tu_shm_path(p, sizeof p, name);
    assert_int_equal(stat(p, &st), 0);
    TU_EQU(s.segment_bytes, (uint64_t)st.st_size);

    shmlease_lease a, b, x;
    TU_RC(tu_acquire(t, "a", 1000, 0, &a), 0);
    s = tu_stats(t);
    TU_EQU(s.acquisitions, 1);
    TU_EQU(s.fencing_counter, a.fencing_token);
    TU_EQ(s.held, 1);

    TU_RC(tu_acquire(t2, "a", 1000, 0, &x), -EBUSY);
    s = tu_stats(t);
    TU_EQU(s.busy, 1);
    TU_EQU(s.contended, 1);
    TU_EQU(s.acquisitions, 1);

    TU_RC(shmlease_renew(t, &a, 1000), 0);
    TU_EQU(tu_stats(t).renewals, 1);
    TU_RC(shmlease_release(t, &a), 0);
    TU_EQ(tu_stats(t).held, 0);
    TU_RC(shmlease_release(t, &a), -ESTALE);
    TU_EQU(tu_stats(t).lost, 1);
    TU_RC(shmlease_renew(t, &a, 10), -ESTALE);
    TU_EQU(tu_stats(t).lost, 2);
    TU_RC(shmlease_check(t, &a), -ESTALE);
    TU_EQU(tu_stats(t).lost, 3);

    /* expiration */
    TU_RC(tu_acquire(t, "b", 100, 0, &b), 0);
    tu_clock_advance(clk, 101);
    TU_RC(tu_acquire(t2, "b", 1000, 0, &x), 0);
    s = tu_stats(t);
    TU_EQU(s.expirations, 1);
    TU_EQU(s.acquisitions, 3);
    TU_EQU(s.reclaimed_dead, 0);

    /* break */
    TU_RC(shmlease_break(t, "b"), 0);
    TU_EQU(tu_stats(t).broken, 1);
    TU_RC(shmlease_break(t, "b"), -ENOENT);
    TU_EQU(tu_stats(t).broken, 1);

    /* a grace period counts as held */
    TU_RC(tu_acquire(t, "g", 1000, 0, &x), 0);
    TU_RC(shmlease_release_after(t, &x, 500), 0);
    s = tu_stats(t);
    TU_EQ(s.held, 1);
    tu_clock_advance(clk, 501);
    TU_EQ(tu_stats(t).held, 0);

    /* reclaimed from a dead holder */
    tu_chan c;
    tu_chan_init(&c);
    pid_t h = tu_fork();
    if (h == 0) {
        tu_chan_child(&c);
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, &o, &u), 0);
        shmlease_lease l;
        TU_CK_RC(tu_acquire(u, "d", 60000, 0, &l), 0);
        tu_up(&c, 1);
        for (;;)
            pause();
    }
    tu_chan_parent(&c, h);
    TU_EQ(tu_up_recv(&c, 10000), 1);
    tu_kill(h);
    shmlease_stats before = tu_stats(t);
    TU_RC(tu_acquire(t, "d", 1000, 0, &x), 0);
    s = tu_stats(t);
    TU_EQU(s.reclaimed_dead, before.reclaimed_dead + 1);
    TU_EQU(s.expirations, before.expirations);
    TU_EQU(s.acquisitions, before.acquisitions + 1);
    TU_EQU(s.fencing_counter, x.fencing_token);

    /* stats from both handles agree; reading them changes nothing */
    shmlease_stats s1 = tu_stats(t), s2 = tu_stats(t2);
    assert_memory_equal(&s1, &s2, sizeof s1);
    TU_RC(shmlease_stats_get(NULL, &s1), -EINVAL);
    TU_RC(shmlease_stats_get(t, NULL), -EINVAL);
}

static void test_stats_waits_and_timeouts(void **state)
{
    (void)state;
    const char *name = tu_name("statswait");
    shmlease_table *t = tu_open(name, NULL);
    shmlease_table *t2 = tu_open(name, NULL);
    shmlease_lease l, x;
    TU_RC(tu_acquire(t, "k", 60000, 0, &l), 0);
    shmlease_stats s0 = tu_stats(t);
    TU_RC(tu_acquire(t2, "k", 60000, 100, &x), -ETIMEDOUT);
    shmlease_stats s1 = tu_stats(t);
    TU_EQU(s1.timeouts, s0.timeouts + 1);
    TU_EQU(s1.waits, s0.waits + 1);
    TU_EQU(s1.contended, s0.contended + 1);
    TU_EQU(s1.busy, s0.busy);
    /* a wait that succeeds */
    tu_chan c;
    tu_chan_init(&c);
    pid_t p = tu_fork();
    if (p == 0) {
        tu_chan_child(&c);
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, NULL, &u), 0);
        shmlease_lease y;
        tu_up(&c, 1);
        TU_CK_RC(tu_acquire(u, "k", 60000, 10000, &y), 0);
        tu_up(&c, 2);
        _exit(0);
    }
    tu_chan_parent(&c, p);
    TU_EQ(tu_up_recv(&c, 10000), 1);
    shmlease_info i;
    assert_true(TU_WAIT_FOR(shmlease_inspect(t, "k", &i) == 0 && i.waiters == 1, 5000));
    TU_RC(shmlease_release(t, &l), 0);
    TU_EQ(tu_up_recv(&c, 10000), 2);
    tu_expect_exit0(p);
    shmlease_stats s2 = tu_stats(t);
    TU_EQU(s2.waits, s1.waits + 1);
    TU_EQU(s2.timeouts, s1.timeouts);
    TU_EQU(s2.acquisitions, s1.acquisitions + 1);
    TU_EQU(s2.contended, s1.contended + 1);
}

static void test_stats_attached_counts_live_handles(void **state)
{
    (void)state;
    const char *name = tu_name("attached");
    shmlease_table *a = tu_open(name, NULL);
    shmlease_lease l;
    TU_RC(tu_acquire(a, "x", 60000, 0, &l), 0);
    TU_EQ(tu_stats(a).attached, 1);
    shmlease_table *b = tu_open(name, NULL);
    TU_RC(tu_acquire(b, "y", 60000, 0, &l), 0);
    TU_EQ(tu_stats(a).attached, 2);
    tu_close(b);
    TU_EQ(tu_stats(a).attached, 1);
}

static void test_stats_epoch_differs_between_tables(void **state)
{
    (void)state;
    const char *n1 = tu_name("epoch1");
    const char *n2 = tu_name("epoch2");
    shmlease_table *a = tu_open(n1, NULL);
    shmlease_table *b = tu_open(n2, NULL);
    assert_true(tu_stats(a).table_epoch != tu_stats(b).table_epoch);
}

/* ---- error strings --------------------------------------------------------------- */

static void test_strerror_and_errname_name_every_code(void **state)
{
    (void)state;
    const int lib_codes[] = { EINVAL, ENOENT, EEXIST, EACCES, EPROTO, ENOSPC, ENOMEM, EMFILE,
                              ENFILE, ENAMETOOLONG, EBUSY, ETIMEDOUT, EPERM, EUSERS, ESTALE };
    const char *names[] = { "EINVAL", "ENOENT", "EEXIST", "EACCES", "EPROTO",
                            "ENOSPC", "ENOMEM", "EMFILE", "ENFILE", "ENAMETOOLONG",
                            "EBUSY", "ETIMEDOUT", "EPERM", "EUSERS", "ESTALE" };
    const size_t n = sizeof lib_codes / sizeof lib_codes[0];
    const char *s0 = shmlease_strerror(0);
    assert_non_null(s0);
    assert_true(s0[0] != 0);
    assert_non_null(shmlease_errname(0));
    for (size_t k = 0; k < n; k++) {
        const char *s = shmlease_strerror(-lib_codes[k]);
        assert_non_null(s);
        assert_true(s[0] != 0);
        assert_string_equal(s, shmlease_strerror(-lib_codes[k])); /* stable */
        assert_true(strcmp(s, s0) != 0);
        for (size_t j = 0; j < k; j++)
            if (strcmp(s, shmlease_strerror(-lib_codes[j])) == 0)
                fail_msg("%s and %s have the same message \"%s\"", names[k], names[j], s);
        assert_string_equal(shmlease_errname(-lib_codes[k]), names[k]);
        /* positive codes are named too */
        const char *sp = shmlease_strerror(lib_codes[k]);
        assert_non_null(sp);
        assert_true(sp[0] != 0);
        assert_non_null(shmlease_errname(lib_codes[k]));
    }
    const int unknown[] = { -99999, -4096, 99999, INT32_MIN, INT32_MAX, -1000 };
    for (size_t k = 0; k < sizeof unknown / sizeof unknown[0]; k++) {
        const char *s = shmlease_strerror(unknown[k]);
        assert_non_null(s);
        assert_true(s[0] != 0);
        assert_string_equal(s, shmlease_strerror(unknown[k]));
        const char *e = shmlease_errname(unknown[k]);
        assert_non_null(e);
    }
    assert_string_equal(shmlease_errname(-99999), "E?");
    assert_string_equal(shmlease_errname(INT32_MIN), "E?");
}

/* A child that opens NAME and waits forever for KEY with THREADS threads. */
static void *waiter_thread(void *arg)
{
    shmlease_table *u = arg;
    shmlease_lease y;
    (void)tu_acquire(u, "k", 60000, SHMLEASE_WAIT_FOREVER, &y);
    return NULL;
}

static pid_t spawn_waiting(const char *name, int threads)
{
    pid_t p = tu_fork();
    if (p == 0) {
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, NULL, &u), 0);
        pthread_t th[4];
        for (int i = 0; i < threads; i++)
            TU_CK(pthread_create(&th[i], NULL, waiter_thread, u) == 0);
        for (;;)
            pause();
    }
    return p;
}

static int has_waiter(const shmlease_waiter *w, long n, pid_t pid, uint32_t threads)
{
    for (long i = 0; i < n; i++)
        if (w[i].pid == pid && w[i].threads == threads && !w[i].other_pidns &&
            w[i].start_time != 0 && w[i].handle != 0)
            return 1;
    return 0;
}

static void test_waiters_lists_the_processes_asleep_on_a_key(void **state)
{
    (void)state;
    const char *name = tu_name("waiters");
    shmlease_table *t = tu_open(name, NULL);
    shmlease_waiter w[4];
    TU_EQ(shmlease_waiters(t, "k", w, 4), 0);           /* not in the table */
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k", 60000, 0, &l), 0);
    TU_EQ(shmlease_waiters(t, "k", w, 4), 0);           /* held, nobody waits */
    pid_t a = spawn_waiting(name, 1);
    pid_t b = spawn_waiting(name, 2);
    long n = 0;
    assert_true(TU_WAIT_FOR((n = shmlease_waiters(t, "k", w, 4)) == 2 &&
                            has_waiter(w, n, a, 1) && has_waiter(w, n, b, 2), 10000));
    shmlease_info i;
    TU_RC(shmlease_inspect(t, "k", &i), 0);
    TU_EQ(i.waiters, 3);                                /* the same records */
    /* no room: the count, and as many as fit */
    memset(w, 0, sizeof w);
    TU_EQ(shmlease_waiters(t, "k", w, 1), 2);
    assert_true(w[0].pid == a || w[0].pid == b);
    TU_EQ(w[1].pid, 0);
    TU_EQ(shmlease_waiters(t, "k", NULL, 0), 2);
    /* a waiter killed in its sleep is not listed */
    tu_kill(a);
    n = shmlease_waiters(t, "k", w, 4);
    TU_EQ(n, 1);
    assert_true(has_waiter(w, n, b, 2));
    TU_EQ(shmlease_waiters(t, "other", w, 4), 0);
    TU_EQ(shmlease_waiters(NULL, "k", w, 4), -EINVAL);
    TU_EQ(shmlease_waiters(t, "k", NULL, 4), -EINVAL);
    TU_EQ(shmlease_waiters(t, "", w, 4), -EINVAL);
    char longkey[SHMLEASE_KEY_MAX + 2];
    memset(longkey, 'x', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = 0;
    TU_EQ(shmlease_waiters(t, longkey, w, 4), -ENAMETOOLONG);
    tu_kill(b);
    TU_EQ(shmlease_waiters(t, "k", w, 4), 0);
    TU_RC(shmlease_release(t, &l), 0);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(test_inspect_shows_every_field_of_a_held_lease),
        TU_TEST(test_inspect_remaining_and_metadata_on_the_test_clock),
        TU_TEST(test_foreach_visits_each_held_lease_once),
        TU_TEST(test_foreach_fills_the_same_fields_as_inspect),
        TU_TEST(test_stats_counters_move_as_promised),
        TU_TEST(test_stats_waits_and_timeouts),
        TU_TEST(test_stats_attached_counts_live_handles),
        TU_TEST(test_stats_epoch_differs_between_tables),
        TU_TEST(test_strerror_and_errname_name_every_code),
        TU_TEST(test_waiters_lists_the_processes_asleep_on_a_key),
    };
    return TU_RUN(tests);
}
