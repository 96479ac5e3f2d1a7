/* Lease modes and waits that end early: cancel tokens, shared and counted
 * leases, writer preference and upgrades. Real processes (fork, kill, stop)
 * and real futex sleeps; bounds are wide. */
#include "testutil.h"
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

static uint32_t waiters_of(shmlease_table *t, const char *key)
{
    shmlease_info i;
    if (shmlease_inspect(t, key, &i) != 0)
        return 0;
    return i.waiters;
}

static shmlease_acquire_opts mopts(uint32_t mode, uint32_t limit, uint64_t ttl_ms, int64_t wait_ms)
{
    shmlease_acquire_opts o;
    memset(&o, 0, sizeof o);
    o.ttl_ms = ttl_ms;
    o.wait_ms = wait_ms;
    o.mode = mode;
    o.limit = limit;
    return o;
}

/* A child that opens NAME and acquires KEY (MODE, LIMIT, TTL_MS, WAIT_MS),
 * sends the result and the token up, then waits for a word from the parent:
 * 1 releases (and sends the release's result up), 0 exits holding. A parent
 * reads the result with tu_up_recv (a waiting child answers late). */
static pid_t spawn_holder(tu_chan *c, const char *name, const char *key, uint32_t mode,
                          uint32_t limit, uint64_t ttl_ms, int64_t wait_ms)
{
    tu_chan_init(c);
    pid_t p = tu_fork();
    if (p == 0) {
        tu_chan_child(c);
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, NULL, &u), 0);
        shmlease_acquire_opts o = mopts(mode, limit, ttl_ms, wait_ms);
        shmlease_lease l;
        int rc = shmlease_acquire(u, key, &o, &l);
        tu_up(c, rc);
        tu_up(c, rc == 0 ? (int64_t)l.fencing_token : 0);
        for (;;) {
            int64_t cmd = tu_down_recv(c);
            if (cmd == 1 && rc == 0)
                tu_up(c, shmlease_release(u, &l));
            else
                break;
        }
        _exit(0);
    }
    tu_chan_parent(c, p);
    return p;
}

static pid_t holder_ok(tu_chan *c, const char *name, const char *key, uint32_t mode, uint32_t limit)
{
    pid_t p = spawn_holder(c, name, key, mode, limit, 60000, 0);
    TU_RC(tu_up_recv(c, 10000), 0);
    tu_up_recv(c, 1000);
    return p;
}

/* ---- cancel tokens -------------------------------------------------------- */

struct forever_arg {
    shmlease_table *t;
    shmlease_cancel_token *c;
    const char *key;
    int rc;
    shmlease_lease l;
};

static void *acquire_forever(void *p)
{
    struct forever_arg *a = p;
    shmlease_acquire_opts o;
    memset(&o, 0, sizeof o);
    o.ttl_ms = 60000;
    o.wait_ms = SHMLEASE_WAIT_FOREVER;
    o.cancel = a->c;
    a->rc = shmlease_acquire(a->t, a->key, &o, &a->l);
    return NULL;
}

/* A WAIT_FOREVER acquire asleep on a key another process holds ends with
 * -ECANCELED when another thread fires its token, holding nothing; while
 * fired, the token refuses at once; reset, it serves again. */
static void test_cancel_ends_a_wait_forever_from_another_thread(void **state)
{
    (void)state;
    const char *name = tu_name("cancel");
    shmlease_table *t = tu_open(name, NULL);
    tu_chan c;
    pid_t holder = holder_ok(&c, name, "k", SHMLEASE_EXCLUSIVE, 0);
    struct forever_arg a = {.t = t, .key = "k", .rc = 1};
    TU_RC(shmlease_cancel_create(&a.c), 0);
    pthread_t th;
    TU_EQ(pthread_create(&th, NULL, acquire_forever, &a), 0);
    assert_true(TU_WAIT_FOR(waiters_of(t, "k") == 1, 10000));   /* asleep in the futex */
    TU_RC(shmlease_cancel(a.c), 0);
    TU_EQ(pthread_join(th, NULL), 0);
    TU_RC(a.rc, -ECANCELED);
    TU_EQ(waiters_of(t, "k"), 0);
    shmlease_info info;
    TU_RC(shmlease_inspect(t, "k", &info), 0);
    TU_EQ(info.holder_pid, holder);          /* the holder kept it */

    shmlease_acquire_opts o;
    memset(&o, 0, sizeof o);
    o.ttl_ms = 1000;
    o.cancel = a.c;
    shmlease_lease l;
    TU_RC(shmlease_acquire(t, "free", &o, &l), -ECANCELED);   /* fired: no try */
    TU_RC(shmlease_inspect(t, "free", &info), -ENOENT);
    TU_RC(shmlease_cancel_reset(a.c), 0);
    TU_RC(shmlease_acquire(t, "free", &o, &l), 0);
    TU_RC(shmlease_release(t, &l), 0);
    TU_RC(shmlease_acquire(t, "k", &o, &l), -EBUSY);         /* a try, as before */

    tu_kill(holder);
    shmlease_cancel_destroy(a.c);
    shmlease_cancel_destroy(NULL);
    TU_RC(shmlease_cancel(NULL), -EINVAL);
    TU_RC(shmlease_cancel_reset(NULL), -EINVAL);
    TU_RC(shmlease_cancel_create(NULL), -EINVAL);
}

/* One token ends every acquire waiting with it, in several threads. */
static void test_one_token_cancels_every_waiting_thread(void **state)
{
    (void)state;
    const char *name = tu_name("cancelall");
    shmlease_table *t = tu_open(name, NULL);
    shmlease_lease held;
    TU_RC(tu_acquire(t, "k", 60000, 0, &held), 0);
    shmlease_cancel_token *tok;
    TU_RC(shmlease_cancel_create(&tok), 0);
    struct forever_arg a[3];
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        a[i] = (struct forever_arg){.t = t, .c = tok, .key = "k", .rc = 1};
        TU_EQ(pthread_create(&th[i], NULL, acquire_forever, &a[i]), 0);
    }
    assert_true(TU_WAIT_FOR(waiters_of(t, "k") == 3, 10000));
    TU_RC(shmlease_cancel(tok), 0);
    for (int i = 0; i < 3; i++) {
        TU_EQ(pthread_join(th[i], NULL), 0);
        TU_RC(a[i].rc, -ECANCELED);
    }
    TU_RC(shmlease_check(t, &held), 0);
    TU_RC(shmlease_release(t, &held), 0);
    shmlease_cancel_destroy(tok);
}


/* ---- shared and counted leases ---------------------------------------------- */

static int acq(shmlease_table *t, const char *key, uint32_t mode, uint32_t limit, int64_t wait_ms,
               shmlease_lease *l)
{
    shmlease_acquire_opts o = mopts(mode, limit, 60000, wait_ms);
    return shmlease_acquire(t, key, &o, l);
}

/* Shared holders in three processes coexist, each with its own token; an
 * exclusive try is refused while any of them holds; an exclusive waiter gets
 * the key when the last one leaves, with a token greater than theirs. */
static void test_shared_holders_coexist_and_exclude_exclusive(void **state)
{
    (void)state;
    const char *name = tu_name("shared");
    shmlease_table *t = tu_open(name, NULL);
    tu_chan c[3];
    pid_t p[3];
    int64_t tok[3];
    for (int i = 0; i < 3; i++) {
        p[i] = spawn_holder(&c[i], name, "k", SHMLEASE_SHARED, 0, 60000, 0);
        TU_RC(tu_up_recv(&c[i], 10000), 0);
        tok[i] = tu_up_recv(&c[i], 1000);
        for (int j = 0; j < i; j++)
            assert_true(tok[i] != tok[j]);
    }
    shmlease_lease l;
    TU_RC(acq(t, "k", SHMLEASE_EXCLUSIVE, 0, 0, &l), -EBUSY);
    shmlease_info info;
    TU_RC(shmlease_inspect(t, "k", &info), 0);
    TU_EQ(info.mode, SHMLEASE_SHARED);
    TU_EQ(info.holders, 3);
    tu_chan w;
    pid_t wp = spawn_holder(&w, name, "k", SHMLEASE_EXCLUSIVE, 0, 60000, SHMLEASE_WAIT_FOREVER);
    int64_t v;
    for (int i = 0; i < 3; i++) {
        TU_RC(tu_up_try(&w, &v, 300), -ETIMEDOUT);          /* still waiting */
        tu_down(&c[i], 1);
        TU_RC(tu_up_recv(&c[i], 10000), 0);                 /* released in time */
    }
    TU_RC(tu_up_recv(&w, 10000), 0);
    int64_t wt = tu_up_recv(&w, 1000);
    for (int i = 0; i < 3; i++)
        TU_GT(wt, tok[i]);
    TU_RC(acq(t, "k", SHMLEASE_SHARED, 0, 0, &l), -EBUSY);   /* exclusive now */
    TU_RC(shmlease_inspect(t, "k", &info), 0);
    TU_EQ(info.mode, SHMLEASE_EXCLUSIVE);
    TU_EQ(info.holder_pid, wp);
    for (int i = 0; i < 3; i++) {
        tu_down(&c[i], 0);
        tu_expect_exit0(p[i]);
    }
    tu_down(&w, 1);
    TU_RC(tu_up_recv(&w, 10000), 0);
    tu_down(&w, 0);
    tu_expect_exit0(wp);
    TU_RC(acq(t, "k", SHMLEASE_SHARED, 0, 0, &l), 0);
    TU_RC(shmlease_release(t, &l), 0);
}

/* Writer preference: once an exclusive acquirer waits, a new shared try is
 * refused and a new shared waiter waits behind it, though only shared
 * holders hold the key. */
static void test_waiting_exclusive_acquirer_holds_back_new_shared_ones(void **state)
{
    (void)state;
    const char *name = tu_name("wpref");
    shmlease_table *t = tu_open(name, NULL);
    shmlease_lease r;
    TU_RC(acq(t, "k", SHMLEASE_SHARED, 0, 0, &r), 0);
    tu_chan w, r2;
    pid_t wp = spawn_holder(&w, name, "k", SHMLEASE_EXCLUSIVE, 0, 60000, SHMLEASE_WAIT_FOREVER);
    shmlease_info info;
    /* The writer reserved the key: the key shows it held exclusively, and
     * the writer as a waiter (asleep on the shared holder's slot). */
    assert_true(TU_WAIT_FOR(shmlease_inspect(t, "k", &info) == 0 && info.mode == SHMLEASE_EXCLUSIVE, 10000));
    assert_true(TU_WAIT_FOR(waiters_of(t, "k") == 1, 10000));
    shmlease_waiter wl[2];
    TU_EQ(shmlease_waiters(t, "k", wl, 2), 1);
    TU_EQ(wl[0].pid, wp);
    shmlease_lease l;
    TU_RC(acq(t, "k", SHMLEASE_SHARED, 0, 0, &l), -EBUSY);
    pid_t rp = spawn_holder(&r2, name, "k", SHMLEASE_SHARED, 0, 60000, SHMLEASE_WAIT_FOREVER);
    int64_t v;
    TU_RC(tu_up_try(&r2, &v, 500), -ETIMEDOUT);
    TU_RC(shmlease_release(t, &r), 0);
    TU_RC(tu_up_recv(&w, 10000), 0);                 /* the writer first, */
    int64_t wt = tu_up_recv(&w, 1000);
    TU_RC(tu_up_try(&r2, &v, 300), -ETIMEDOUT);      /* the reader still behind it */
    tu_down(&w, 1);
    TU_RC(tu_up_recv(&w, 10000), 0);
    TU_RC(tu_up_recv(&r2, 10000), 0);
    TU_GT(tu_up_recv(&r2, 1000), wt);
    tu_down(&w, 0);
    tu_down(&r2, 0);
    tu_expect_exit0(wp);
    tu_expect_exit0(rp);
}

/* Counted: at most LIMIT holders; the next waits for a place and gets the
 * one that is released; another limit is -EDOM while the key is held. */
static void test_counted_lease_admits_at_most_its_limit(void **state)
{
    (void)state;
    const char *name = tu_name("counted");
    shmlease_table *t = tu_open(name, NULL);
    tu_chan c[2];
    pid_t p[2];
    for (int i = 0; i < 2; i++)
        p[i] = holder_ok(&c[i], name, "sem", SHMLEASE_SHARED, 2);
    shmlease_lease l;
    TU_RC(acq(t, "sem", SHMLEASE_SHARED, 2, 0, &l), -EBUSY);
    TU_RC(acq(t, "sem", SHMLEASE_SHARED, 3, 0, &l), -EDOM);
    TU_RC(acq(t, "sem", SHMLEASE_SHARED, 0, 0, &l), -EDOM);
    tu_chan w;
    pid_t wp = spawn_holder(&w, name, "sem", SHMLEASE_SHARED, 2, 60000, SHMLEASE_WAIT_FOREVER);
    int64_t v;
    TU_RC(tu_up_try(&w, &v, 500), -ETIMEDOUT);
    tu_down(&c[1], 1);
    TU_RC(tu_up_recv(&c[1], 10000), 0);
    TU_RC(tu_up_recv(&w, 10000), 0);                  /* woken by the release */
    tu_up_recv(&w, 1000);
    shmlease_info info;
    TU_RC(shmlease_inspect(t, "sem", &info), 0);
    TU_EQ(info.holders, 2);
    TU_EQ(info.limit, 2);
    TU_RC(acq(t, "sem", SHMLEASE_SHARED, 2, 0, &l), -EBUSY);
    tu_down(&c[0], 0);
    tu_expect_exit0(p[0]);                             /* exits holding: dead */
    TU_RC(acq(t, "sem", SHMLEASE_SHARED, 2, 0, &l), 0);   /* its place is free at once */
    TU_RC(shmlease_release(t, &l), 0);
    tu_down(&c[1], 0);
    tu_expect_exit0(p[1]);
    tu_down(&w, 1);
    TU_RC(tu_up_recv(&w, 10000), 0);
    tu_down(&w, 0);
    tu_expect_exit0(wp);
    /* Nobody holds it: another limit is fine now. */
    TU_RC(acq(t, "sem", SHMLEASE_SHARED, 5, 0, &l), 0);
    TU_RC(shmlease_release(t, &l), 0);
}

/* A shared holder killed while an exclusive acquirer waits for it: the
 * waiter gets the key at once (its death is watched), not at the TTL. */
static void test_exclusive_waiter_gets_the_key_when_a_shared_holder_dies(void **state)
{
    (void)state;
    const char *name = tu_name("sharedkill");
    shmlease_table *t = tu_open(name, NULL);
    tu_chan c;
    pid_t p = holder_ok(&c, name, "k", SHMLEASE_SHARED, 0);
    (void)t;
    tu_chan w;
    pid_t wp = spawn_holder(&w, name, "k", SHMLEASE_EXCLUSIVE, 0, 60000, 20000);
    int64_t v;
    TU_RC(tu_up_try(&w, &v, 300), -ETIMEDOUT);
    tu_kill(p);
    TU_RC(tu_up_recv(&w, 10000), 0);
    tu_up_recv(&w, 1000);
    tu_down(&w, 0);
    tu_expect_exit0(wp);
}

/* A shared holder stopped past its TTL loses its lease: an exclusive
 * acquirer gets the key at the deadline, and the stopped one, resumed,
 * finds its lease lost. */
static void test_stopped_shared_holder_loses_its_lease_at_the_deadline(void **state)
{
    (void)state;
    const char *name = tu_name("sharedstop");
    shmlease_table *t = tu_open(name, NULL);
    tu_chan c;
    pid_t p = spawn_holder(&c, name, "k", SHMLEASE_SHARED, 0, 300, 0);
    TU_RC(tu_up_recv(&c, 10000), 0);
    tu_up_recv(&c, 1000);
    kill(p, SIGSTOP);
    assert_true(tu_wait_stopped(p, 10000));
    shmlease_lease l;
    TU_RC(acq(t, "k", SHMLEASE_EXCLUSIVE, 0, 20000, &l), 0);
    kill(p, SIGCONT);
    tu_down(&c, 1);
    TU_RC(tu_up_recv(&c, 10000), -ESTALE);
    TU_RC(shmlease_check(t, &l), 0);
    TU_RC(shmlease_release(t, &l), 0);
    tu_down(&c, 0);
    tu_expect_exit0(p);
}

/* An operator's break ends every shared holder of a key: their leases are
 * lost for good, and an exclusive acquirer gets the key. */
static void test_break_ends_every_shared_holder(void **state)
{
    (void)state;
    const char *name = tu_name("sharedbreak");
    shmlease_table *t = tu_open(name, NULL);
    shmlease_table *op = tu_open(name, NULL);
    shmlease_lease a, b, x;
    TU_RC(acq(t, "k", SHMLEASE_SHARED, 0, 0, &a), 0);
    TU_RC(acq(t, "k", SHMLEASE_SHARED, 0, 0, &b), 0);
    TU_RC(shmlease_break(op, "k"), 0);
    TU_RC(shmlease_check(t, &a), -ESTALE);
    TU_RC(shmlease_renew(t, &b, 60000), -ESTALE);
    TU_RC(acq(op, "k", SHMLEASE_EXCLUSIVE, 0, 0, &x), 0);
    TU_GT(x.fencing_token, b.fencing_token);
    TU_RC(shmlease_release(t, &a), -ESTALE);
    TU_RC(shmlease_release(op, &x), 0);
    TU_RC(shmlease_break(op, "k"), -ENOENT);
    tu_close(op);
}

/* An exclusive acquirer stopped after it found no shared holder, and before
 * it drew its token, for longer than its TTL: a shared acquirer comes in
 * meanwhile (the reservation has lapsed), and the exclusive one, resumed,
 * must not go on as if it held the key: it waits for the shared holder. */
static void test_lapsed_exclusive_reservation_is_not_revived(void **state)
{
    (void)state;
    if (!SHMLEASE_HAVE_FAULT_POINTS)
        skip();
    const char *name = tu_name("revive");
    shmlease_table *t = tu_open(name, NULL);
    tu_chan s1c;
    pid_t s1 = holder_ok(&s1c, name, "k", SHMLEASE_SHARED, 0);
    tu_chan xc;
    tu_chan_init(&xc);
    pid_t x = tu_fork();
    if (x == 0) {
        tu_chan_child(&xc);
        tu_fault_arm("drain.after_scan", SHMLEASE_FAULT_STOP, 1);
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, NULL, &u), 0);
        shmlease_acquire_opts o = mopts(SHMLEASE_EXCLUSIVE, 0, 300, SHMLEASE_WAIT_FOREVER);
        shmlease_lease l;
        int rc = shmlease_acquire(u, "k", &o, &l);
        tu_up(&xc, rc);
        tu_up(&xc, rc == 0 ? (int64_t)l.fencing_token : 0);
        tu_down_recv(&xc);
        _exit(0);
    }
    tu_chan_parent(&xc, x);
    shmlease_info info;
    assert_true(TU_WAIT_FOR(shmlease_inspect(t, "k", &info) == 0 && info.mode == SHMLEASE_EXCLUSIVE, 10000));
    tu_down(&s1c, 1);                                /* the shared holder leaves */
    TU_RC(tu_up_recv(&s1c, 10000), 0);
    assert_true(tu_wait_stopped(x, 10000));          /* stopped past its scan */
    tu_sleep_ms(400);                                /* its reservation lapses */
    shmlease_lease r;
    TU_RC(acq(t, "k", SHMLEASE_SHARED, 0, 0, &r), 0);
    kill(x, SIGCONT);
    int64_t v;
    TU_RC(tu_up_try(&xc, &v, 1000), -ETIMEDOUT);     /* waits for us, holds nothing */
    TU_RC(shmlease_check(t, &r), 0);
    TU_RC(shmlease_release(t, &r), 0);
    TU_RC(tu_up_recv(&xc, 10000), 0);
    TU_GT(tu_up_recv(&xc, 1000), r.fencing_token);
    tu_down(&xc, 0);
    tu_expect_exit0(x);
    tu_down(&s1c, 0);
    tu_expect_exit0(s1);
}

/* ---- upgrade ---------------------------------------------------------------- */

struct upgrade_arg {
    shmlease_table *t;
    shmlease_lease *l;
    int64_t wait_ms;
    int rc;
};

static void *upgrade_thread(void *p)
{
    struct upgrade_arg *u = p;
    __atomic_store_n(&u->rc, shmlease_upgrade(u->t, u->l, 60000, u->wait_ms), __ATOMIC_RELEASE);
    return NULL;
}

/* An upgrade waits for the other shared holders to leave, and no other
 * exclusive acquirer comes in between: a second upgrader is refused at
 * once (-EDEADLK) instead of deadlocking, an exclusive try is refused, and
 * the upgraded lease is exclusive with a greater token. */
static void test_upgrade_is_atomic_and_a_second_upgrader_gets_edeadlk(void **state)
{
    (void)state;
    const char *name = tu_name("upgrade");
    shmlease_table *t = tu_open(name, NULL);
    shmlease_table *t2 = tu_open(name, NULL);
    shmlease_lease a, b, x;
    TU_RC(acq(t, "k", SHMLEASE_SHARED, 0, 0, &a), 0);
    TU_RC(acq(t2, "k", SHMLEASE_SHARED, 0, 0, &b), 0);
    uint64_t old_token = a.fencing_token;
    struct upgrade_arg u = {.t = t, .l = &a, .wait_ms = SHMLEASE_WAIT_FOREVER, .rc = 1};
    pthread_t th;
    TU_EQ(pthread_create(&th, NULL, upgrade_thread, &u), 0);
    shmlease_info info;
    assert_true(TU_WAIT_FOR(shmlease_inspect(t2, "k", &info) == 0 && info.mode == SHMLEASE_EXCLUSIVE, 10000));
    shmlease_lease b_copy = b;
    TU_RC(shmlease_upgrade(t2, &b, 60000, SHMLEASE_WAIT_FOREVER), -EDEADLK);
    TU_EQ(memcmp(&b, &b_copy, sizeof b), 0);         /* unchanged, */
    TU_RC(shmlease_check(t2, &b), 0);                /* and still held */
    TU_RC(acq(t2, "k", SHMLEASE_EXCLUSIVE, 0, 0, &x), -EBUSY);
    TU_RC(acq(t2, "k", SHMLEASE_SHARED, 0, 0, &x), -EBUSY);
    TU_EQ(__atomic_load_n(&u.rc, __ATOMIC_ACQUIRE), 1);   /* still waiting for b */
    TU_RC(shmlease_release(t2, &b), 0);
    TU_EQ(pthread_join(th, NULL), 0);
    TU_RC(u.rc, 0);
    TU_GT(a.fencing_token, old_token);
    TU_RC(shmlease_check(t, &a), 0);
    TU_RC(shmlease_inspect(t2, "k", &info), 0);
    TU_EQ(info.mode, SHMLEASE_EXCLUSIVE);
    TU_EQ(info.holders, 1);
    TU_RC(acq(t2, "k", SHMLEASE_SHARED, 0, 0, &x), -EBUSY);
    TU_RC(shmlease_release(t, &a), 0);
    TU_RC(acq(t2, "k", SHMLEASE_SHARED, 0, 0, &x), 0);
    TU_RC(shmlease_release(t2, &x), 0);
    tu_close(t2);
}

/* An upgrade that times out leaves the shared lease held and unchanged in
 * effect, and lets the key go back to shared use; an exclusive lease cannot
 * be upgraded. */
static void test_upgrade_that_times_out_keeps_the_shared_lease(void **state)
{
    (void)state;
    const char *name = tu_name("upgradeto");
    shmlease_table *t = tu_open(name, NULL);
    tu_chan c;
    pid_t p = holder_ok(&c, name, "k", SHMLEASE_SHARED, 0);
    shmlease_lease a, x;
    TU_RC(acq(t, "k", SHMLEASE_SHARED, 0, 0, &a), 0);
    TU_RC(shmlease_upgrade(t, &a, 60000, 0), -EBUSY);
    uint64_t before = a.expires_at_ms;
    /* A short upgrade TTL never shortens the shared lease ... */
    TU_RC(shmlease_upgrade(t, &a, 100, 200), -ETIMEDOUT);
    TU_EQ(a.expires_at_ms, before);
    tu_sleep_ms(300);
    TU_RC(shmlease_check(t, &a), 0);
    TU_RC(acq(t, "k", SHMLEASE_EXCLUSIVE, 0, 0, &x), -EBUSY);
    /* ... and a long one keeps it, and says so in the value. */
    TU_RC(acq(t, "k", SHMLEASE_SHARED, 0, 0, &x), 0);
    TU_RC(shmlease_renew(t, &x, 120000), 0);
    TU_RC(shmlease_upgrade(t, &a, 120000, 200), -ETIMEDOUT);
    TU_GT(a.expires_at_ms, before);
    shmlease_info info;
    TU_RC(shmlease_inspect(t, "k", &info), 0);
    TU_RC(shmlease_release(t, &x), 0);
    TU_RC(shmlease_check(t, &a), 0);
    TU_RC(acq(t, "k", SHMLEASE_SHARED, 0, 0, &x), 0);   /* the gate was given back */
    TU_RC(shmlease_release(t, &x), 0);
    TU_RC(shmlease_upgrade(t, &a, 0, 0), -EINVAL);
    TU_RC(shmlease_release(t, &a), 0);
    TU_RC(shmlease_upgrade(t, &a, 60000, 0), -ESTALE);  /* released */
    tu_down(&c, 0);
    tu_expect_exit0(p);
    TU_RC(acq(t, "k", SHMLEASE_EXCLUSIVE, 0, 0, &x), 0);
    TU_RC(shmlease_upgrade(t, &x, 60000, 0), -EINVAL);  /* not a shared lease */
    TU_RC(shmlease_release(t, &x), 0);
}

/* A full table reuses free entries, but never the gate of a key whose
 * shared holders hold it: the gate is what tells exclusive acquirers to
 * wait for them. Once they leave, its entry serves other keys. */
static void test_full_table_keeps_the_gate_of_a_shared_key(void **state)
{
    (void)state;
    const char *name = tu_name("sharedfull");
    shmlease_table *t = tu_open_cap(name, 4);
    tu_chan c;
    pid_t p = holder_ok(&c, name, "a", SHMLEASE_SHARED, 0);   /* gate + slot: 2 entries */
    shmlease_lease k1, k2, k3, x;
    TU_RC(acq(t, "k1", SHMLEASE_EXCLUSIVE, 0, 0, &k1), 0);
    TU_RC(acq(t, "k2", SHMLEASE_EXCLUSIVE, 0, 0, &k2), 0);
    TU_RC(acq(t, "k3", SHMLEASE_EXCLUSIVE, 0, 0, &k3), -ENOSPC);  /* the free gate stays */
    TU_RC(shmlease_release(t, &k1), 0);
    TU_RC(acq(t, "k3", SHMLEASE_EXCLUSIVE, 0, 0, &k3), 0);        /* k1's entry */
    TU_RC(acq(t, "a", SHMLEASE_EXCLUSIVE, 0, 0, &x), -EBUSY);     /* still excluded */
    shmlease_info info;
    TU_RC(shmlease_inspect(t, "a", &info), 0);
    TU_EQ(info.holder_pid, p);
    char why[200];
    TU_RC(tu_check_structure(t, why, sizeof why), 0);
    tu_down(&c, 1);
    TU_RC(tu_up_recv(&c, 10000), 0);
    tu_down(&c, 0);
    tu_expect_exit0(p);
    TU_RC(shmlease_release(t, &k2), 0);
    TU_RC(acq(t, "k4", SHMLEASE_EXCLUSIVE, 0, 0, &k1), 0);
    TU_RC(acq(t, "k5", SHMLEASE_EXCLUSIVE, 0, 0, &k2), 0);
    TU_RC(acq(t, "k6", SHMLEASE_EXCLUSIVE, 0, 0, &x), 0);         /* gate and slot reused */
    TU_RC(tu_check_structure(t, why, sizeof why), 0);
}

/* ---- fair queues ------------------------------------------------------------ */

/* Where children record the order in which they got a key. */
struct order {
    int n;
    int who[32];
    int64_t start_us[32], end_us[32];
};

static uint32_t queued_on(shmlease_table *t, const char *key)
{
    shmlease_info i;
    return shmlease_inspect(t, key, &i) == 0 ? i.queued : 0;
}

/* Child ID: a FAIR acquire of KEY in MODE (waiting WAIT_MS); on success
 * records its turn in ORD, holds HOLD_MS, releases. Exit status 0 after a
 * success, 1 after -ETIMEDOUT, 2 otherwise. */
static pid_t spawn_fair(const char *name, const char *key, uint32_t mode, int64_t wait_ms, int id,
                        struct order *ord, unsigned hold_ms)
{
    pid_t p = tu_fork();
    if (p == 0) {
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, NULL, &u), 0);
        shmlease_acquire_opts o = mopts(mode, 0, 60000, wait_ms);
        o.flags = SHMLEASE_ACQUIRE_FAIR;
        shmlease_lease l;
        int rc = shmlease_acquire(u, key, &o, &l);
        if (rc == 0) {
            int turn = __atomic_fetch_add(&ord->n, 1, __ATOMIC_SEQ_CST);
            ord->who[turn] = id;
            ord->start_us[turn] = (int64_t)tu_mono_us();
            tu_sleep_ms(hold_ms);
            ord->end_us[turn] = (int64_t)tu_mono_us();
            TU_CK_RC(shmlease_release(u, &l), 0);
        }
        _exit(rc == 0 ? 0 : rc == -ETIMEDOUT ? 1 : 2);
    }
    return p;
}

/* Exclusive FAIR waiters get the key in the order they queued, every time,
 * though each release could let any of them barge in. */
static void test_fair_waiters_are_served_in_arrival_order(void **state)
{
    (void)state;
    const char *name = tu_name("fifo");
    shmlease_table *t = tu_open(name, NULL);
    struct order *ord = tu_shared(sizeof *ord);
    shmlease_lease l;
    TU_RC(acq(t, "k", SHMLEASE_EXCLUSIVE, 0, 0, &l), 0);
    enum { N = 8 };
    pid_t p[N];
    for (int i = 0; i < N; i++) {
        p[i] = spawn_fair(name, "k", SHMLEASE_EXCLUSIVE, SHMLEASE_WAIT_FOREVER, i, ord, 5);
        assert_true(TU_WAIT_FOR(queued_on(t, "k") == (uint32_t)i + 1, 10000));
    }
    /* Each is asleep: the head on the key, the others on the place before
     * theirs; all are the key's waiters. */
    assert_true(TU_WAIT_FOR(waiters_of(t, "k") == N, 10000));
    shmlease_waiter wl[N];
    TU_EQ(shmlease_waiters(t, "k", wl, N), N);
    TU_EQ(tu_stats(t).held, 1);                  /* places are waiters, not leases */
    TU_RC(shmlease_release(t, &l), 0);
    for (int i = 0; i < N; i++)
        tu_expect_exit0(p[i]);
    TU_EQ(ord->n, N);
    for (int i = 0; i < N; i++)
        TU_EQ(ord->who[i], i);
}

/* Across modes: shared, shared, exclusive, shared. The first two hold
 * together, the exclusive one waits for both, and the last shared one
 * waits behind the exclusive one though it could share with the first two. */
static void test_fair_order_holds_across_shared_and_exclusive(void **state)
{
    (void)state;
    const char *name = tu_name("fifomodes");
    shmlease_table *t = tu_open(name, NULL);
    struct order *ord = tu_shared(sizeof *ord);
    shmlease_lease l;
    TU_RC(acq(t, "k", SHMLEASE_EXCLUSIVE, 0, 0, &l), 0);
    const uint32_t modes[4] = {SHMLEASE_SHARED, SHMLEASE_SHARED, SHMLEASE_EXCLUSIVE, SHMLEASE_SHARED};
    pid_t p[4];
    for (int i = 0; i < 4; i++) {
        p[i] = spawn_fair(name, "k", modes[i], SHMLEASE_WAIT_FOREVER, i, ord, 300);
        assert_true(TU_WAIT_FOR(queued_on(t, "k") == (uint32_t)i + 1, 10000));
    }
    TU_RC(shmlease_release(t, &l), 0);
    for (int i = 0; i < 4; i++)
        tu_expect_exit0(p[i]);
    TU_EQ(ord->n, 4);
    /* The two shared ones first (in either order: they hold together), then
     * the exclusive one, then the last shared one. */
    TU_EQ(ord->who[0] + ord->who[1], 1);
    TU_EQ(ord->who[2], 2);
    TU_EQ(ord->who[3], 3);
    /* They did hold together: the second began before the first ended. */
    TU_GT(ord->end_us[0], ord->start_us[1]);
    TU_GT(ord->start_us[2], ord->end_us[0]);          /* the exclusive one after both */
    TU_GT(ord->start_us[2], ord->end_us[1]);
}

/* A queued waiter that dies, and one that times out, cost nobody a turn:
 * the waiter behind them gets the key at the next release. */
static void test_fair_waiter_that_dies_or_times_out_loses_no_one_a_place(void **state)
{
    (void)state;
    const char *name = tu_name("fifolost");
    shmlease_table *t = tu_open(name, NULL);
    struct order *ord = tu_shared(sizeof *ord);
    shmlease_lease l;
    TU_RC(acq(t, "k", SHMLEASE_EXCLUSIVE, 0, 0, &l), 0);
    pid_t a = spawn_fair(name, "k", SHMLEASE_EXCLUSIVE, SHMLEASE_WAIT_FOREVER, 0, ord, 5);
    assert_true(TU_WAIT_FOR(queued_on(t, "k") == 1, 10000));
    pid_t b = spawn_fair(name, "k", SHMLEASE_EXCLUSIVE, SHMLEASE_WAIT_FOREVER, 1, ord, 5);
    assert_true(TU_WAIT_FOR(queued_on(t, "k") == 2, 10000));
    pid_t c = spawn_fair(name, "k", SHMLEASE_EXCLUSIVE, 800, 2, ord, 5);
    assert_true(TU_WAIT_FOR(queued_on(t, "k") == 3, 10000));
    pid_t d = spawn_fair(name, "k", SHMLEASE_EXCLUSIVE, SHMLEASE_WAIT_FOREVER, 3, ord, 5);
    assert_true(TU_WAIT_FOR(queued_on(t, "k") == 4, 10000));
    tu_kill(b);                                     /* dies in the queue */
    assert_true(TU_WAIT_FOR(queued_on(t, "k") == 3, 10000));
    int st;
    TU_EQ(waitpid(c, &st, 0), c);                   /* times out in the queue */
    TU_EQ(WEXITSTATUS(st), 1);
    tu_untrack(c);
    TU_EQ(queued_on(t, "k"), 2);
    TU_RC(shmlease_release(t, &l), 0);
    tu_expect_exit0(a);
    tu_expect_exit0(d);
    TU_EQ(ord->n, 2);
    TU_EQ(ord->who[0], 0);
    TU_EQ(ord->who[1], 3);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(test_cancel_ends_a_wait_forever_from_another_thread),
        TU_TEST(test_one_token_cancels_every_waiting_thread),
        TU_TEST(test_shared_holders_coexist_and_exclude_exclusive),
        TU_TEST(test_waiting_exclusive_acquirer_holds_back_new_shared_ones),
        TU_TEST(test_counted_lease_admits_at_most_its_limit),
        TU_TEST(test_exclusive_waiter_gets_the_key_when_a_shared_holder_dies),
        TU_TEST(test_stopped_shared_holder_loses_its_lease_at_the_deadline),
        TU_TEST(test_break_ends_every_shared_holder),
        TU_TEST(test_lapsed_exclusive_reservation_is_not_revived),
        TU_TEST(test_upgrade_is_atomic_and_a_second_upgrader_gets_edeadlk),
        TU_TEST(test_upgrade_that_times_out_keeps_the_shared_lease),
        TU_TEST(test_full_table_keeps_the_gate_of_a_shared_key),
        TU_TEST(test_fair_waiters_are_served_in_arrival_order),
        TU_TEST(test_fair_order_holds_across_shared_and_exclusive),
        TU_TEST(test_fair_waiter_that_dies_or_times_out_loses_no_one_a_place),
    };
    return TU_RUN(tests);
}
