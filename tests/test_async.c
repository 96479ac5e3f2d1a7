/* Async acquire: requests driven from poll() loops while other processes
 * hold and release the key, cancels, leases nobody fetched, many requests
 * at once, tries, bad input, fork. Real processes, real futex sleeps; every
 * wait is for a condition, with wide bounds. */
#include "testutil.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>

static shmlease_acquire_opts aopts(uint32_t mode, uint64_t ttl_ms, int64_t wait_ms)
{
    shmlease_acquire_opts o;
    memset(&o, 0, sizeof o);
    o.ttl_ms = ttl_ms;
    o.wait_ms = wait_ms;
    o.mode = mode;
    return o;
}

static uint32_t waiters_of(shmlease_table *t, const char *key)
{
    shmlease_info i;
    return shmlease_inspect(t, key, &i) == 0 ? i.waiters : 0;
}

/* 1 when FD is readable within MS (poll, as an event loop would). */
static int readable_within(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n;
    while ((n = poll(&p, 1, ms)) < 0 && errno == EINTR)
        ;
    return n == 1 && (p.revents & POLLIN);
}

/* A child that opens NAME, acquires KEY (MODE, a long TTL, a try), sends
 * the result and its token up (read here: *token), then waits for a word: 1 releases (and
 * sends the release's result up), anything else exits holding. */
static pid_t spawn_holder_tok(tu_chan *c, const char *name, const char *key, uint32_t mode,
                             uint64_t *token)
{
    tu_chan_init(c);
    pid_t p = tu_fork();
    if (p == 0) {
        tu_chan_child(c);
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, NULL, &u), 0);
        shmlease_acquire_opts o = aopts(mode, 60000, 0);
        shmlease_lease l;
        int rc = shmlease_acquire(u, key, &o, &l);
        tu_up(c, rc);
        tu_up(c, rc == 0 ? (int64_t)l.fencing_token : 0);
        if (tu_down_recv(c) == 1 && rc == 0)
            tu_up(c, shmlease_release(u, &l));
        _exit(0);
    }
    tu_chan_parent(c, p);
    TU_RC(tu_up_recv(c, 10000), 0);
    *token = (uint64_t)tu_up_recv(c, 10000);
    return p;
}

static pid_t spawn_holder(tu_chan *c, const char *name, const char *key, uint32_t mode)
{
    uint64_t token;
    return spawn_holder_tok(c, name, key, mode, &token);
}

/* A child that tries KEY once and reports the result (0: it took it). */
static int other_process_try(const char *name, const char *key)
{
    tu_chan c;
    tu_chan_init(&c);
    pid_t p = tu_fork();
    if (p == 0) {
        tu_chan_child(&c);
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, NULL, &u), 0);
        shmlease_lease l;
        shmlease_acquire_opts o = aopts(SHMLEASE_EXCLUSIVE, 60000, 0);
        tu_up(&c, shmlease_acquire(u, key, &o, &l));
        _exit(0);
    }
    tu_chan_parent(&c, p);
    int rc = (int)tu_up_recv(&c, 10000);
    tu_expect_exit0(p);
    tu_chan_close(&c);
    return rc;
}

/* An async acquire of a key another process holds, driven from a poll()
 * loop: the fd is not readable (result -EINPROGRESS) while the holder
 * holds, becomes readable when it releases, and the result is the lease,
 * with a greater token. */
static void test_async_poll_loop_gets_the_key_when_the_holder_releases(void **state)
{
    (void)state;
    const char *name = tu_name("apoll");
    shmlease_table *t = tu_open(name, NULL);
    tu_chan c;
    uint64_t holder_token;
    pid_t holder = spawn_holder_tok(&c, name, "k", SHMLEASE_EXCLUSIVE, &holder_token);

    shmlease_acquire_opts o = aopts(SHMLEASE_EXCLUSIVE, 60000, SHMLEASE_WAIT_FOREVER);
    shmlease_async *a = NULL;
    TU_RC(shmlease_acquire_async(t, "k", &o, &a), 0);
    int fd = shmlease_async_fd(a);
    assert_true(fd >= 0);
    TU_EQ(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
    TU_EQ(fcntl(fd, F_GETFL) & O_NONBLOCK, O_NONBLOCK);
    assert_true(TU_WAIT_FOR(waiters_of(t, "k") == 1, 10000));   /* asleep in a worker */
    TU_EQ(readable_within(fd, 0), 0);
    shmlease_lease l;
    TU_RC(shmlease_async_result(a, &l), -EINPROGRESS);

    tu_down(&c, 1);                                    /* the holder releases */
    TU_RC(tu_up_recv(&c, 10000), 0);
    int loops = 0, rc = -EINPROGRESS;
    while (rc == -EINPROGRESS && loops++ < 100) {      /* an event loop's turns */
        struct pollfd p = {.fd = fd, .events = POLLIN};
        TU_EQ(poll(&p, 1, 60000), 1);
        rc = shmlease_async_result(a, &l);
    }
    TU_RC(rc, 0);
    TU_GT(l.fencing_token, holder_token);
    TU_EQ(tu_inspect_ok(t, "k").holder_pid, getpid());
    TU_RC(shmlease_check(t, &l), 0);
    shmlease_lease again;
    TU_RC(shmlease_async_result(a, &again), 0);        /* the same answer */
    TU_EQU(again.fencing_token, l.fencing_token);
    TU_RC(shmlease_async_cancel(a), -EALREADY);        /* fetched: stays ours */
    shmlease_async_free(a);
    TU_RC(shmlease_check(t, &l), 0);                   /* free kept it too */
    TU_EQ(other_process_try(name, "k"), -EBUSY);
    TU_RC(shmlease_release(t, &l), 0);
    TU_EQ(other_process_try(name, "k"), 0);
    tu_expect_exit0(holder);
}

/* Cancel of a pending request: it stops waiting at once, the fd becomes
 * readable, the result is -ECANCELED, nothing is held and the holder
 * keeps the key. */
static void test_async_cancel_of_a_pending_request_holds_nothing(void **state)
{
    (void)state;
    const char *name = tu_name("acancel");
    shmlease_table *t = tu_open(name, NULL);
    tu_chan c;
    pid_t holder = spawn_holder(&c, name, "k", SHMLEASE_EXCLUSIVE);
    shmlease_acquire_opts o = aopts(SHMLEASE_EXCLUSIVE, 60000, SHMLEASE_WAIT_FOREVER);
    shmlease_async *a = NULL;
    TU_RC(shmlease_acquire_async(t, "k", &o, &a), 0);
    assert_true(TU_WAIT_FOR(waiters_of(t, "k") == 1, 10000));
    TU_RC(shmlease_async_cancel(a), 0);
    assert_true(readable_within(shmlease_async_fd(a), 60000));
    shmlease_lease l;
    TU_RC(shmlease_async_result(a, &l), -ECANCELED);
    TU_RC(shmlease_async_cancel(a), -EALREADY);
    TU_EQ(waiters_of(t, "k"), 0);
    TU_EQ(tu_inspect_ok(t, "k").holder_pid, holder);
    tu_down(&c, 1);                                    /* released: free again, */
    TU_RC(tu_up_recv(&c, 10000), 0);
    TU_RC(shmlease_async_result(a, &l), -ECANCELED);   /* and the request took nothing */
    TU_RC(shmlease_inspect(t, "k", &(shmlease_info){0}), -ENOENT);
    shmlease_async_free(a);
    tu_expect_exit0(holder);
}

/* A request that succeeded but whose lease nobody fetched: freeing it
 * releases the lease (another process takes the key at once), and so does
 * a cancel (the result becomes -ECANCELED). */
static void test_async_unfetched_lease_is_released_by_free_and_cancel(void **state)
{
    (void)state;
    const char *name = tu_name("aunf");
    shmlease_table *t = tu_open(name, NULL);
    shmlease_acquire_opts o = aopts(SHMLEASE_EXCLUSIVE, 60000, 30000);
    shmlease_async *a = NULL;
    TU_RC(shmlease_acquire_async(t, "k", &o, &a), 0);
    assert_true(readable_within(shmlease_async_fd(a), 60000));
    TU_EQ(tu_inspect_ok(t, "k").holder_pid, getpid());
    TU_EQ(other_process_try(name, "k"), -EBUSY);
    shmlease_async_free(a);                            /* never fetched */
    TU_EQ(other_process_try(name, "k"), 0);            /* free for a try at once */

    TU_RC(shmlease_acquire_async(t, "k2", &o, &a), 0);
    assert_true(readable_within(shmlease_async_fd(a), 60000));
    TU_EQ(tu_inspect_ok(t, "k2").holder_pid, getpid());
    TU_RC(shmlease_async_cancel(a), 0);                /* done, not fetched */
    shmlease_lease l;
    TU_RC(shmlease_async_result(a, &l), -ECANCELED);
    TU_RC(shmlease_inspect(t, "k2", &(shmlease_info){0}), -ENOENT);
    TU_EQ(other_process_try(name, "k2"), 0);
    shmlease_async_free(a);
}

/* Many requests at once, in one poll() loop: 24 wait for one key that
 * another process holds, 24 ask for free keys. The free keys' requests
 * complete while the key is held; after the holder releases, the 24
 * waiters get the key one at a time (each released by the loop before the
 * next can have it), with increasing tokens. */
#define MANY 24
static void test_async_many_requests_in_one_poll_loop(void **state)
{
    (void)state;
    const char *name = tu_name("amany");
    shmlease_table *t = tu_open(name, NULL);
    tu_chan c;
    uint64_t last;
    pid_t holder = spawn_holder_tok(&c, name, "k", SHMLEASE_EXCLUSIVE, &last);
    shmlease_async *a[2 * MANY];
    for (int i = 0; i < MANY; i++) {
        shmlease_acquire_opts o = aopts(SHMLEASE_EXCLUSIVE, 60000, SHMLEASE_WAIT_FOREVER);
        TU_RC(shmlease_acquire_async(t, "k", &o, &a[i]), 0);
        char key[32];
        snprintf(key, sizeof key, "free-%d", i);
        TU_RC(shmlease_acquire_async(t, key, &o, &a[MANY + i]), 0);
    }
    for (int i = MANY; i < 2 * MANY; i++) {            /* the free keys: all done */
        assert_true(readable_within(shmlease_async_fd(a[i]), 60000));
        shmlease_lease l;
        TU_RC(shmlease_async_result(a[i], &l), 0);
        TU_RC(shmlease_release(t, &l), 0);
        shmlease_async_free(a[i]);
    }
    assert_true(TU_WAIT_FOR(waiters_of(t, "k") >= MANY || waiters_of(t, "k") == 16, 20000));
    for (int i = 0; i < MANY; i++)
        TU_EQ(readable_within(shmlease_async_fd(a[i]), 0), 0);
    tu_down(&c, 1);
    TU_RC(tu_up_recv(&c, 10000), 0);
    int done[MANY] = {0}, ndone = 0;
    while (ndone < MANY) {
        struct pollfd p[MANY];
        int idx[MANY], n = 0;
        for (int i = 0; i < MANY; i++)
            if (!done[i]) {
                p[n] = (struct pollfd){.fd = shmlease_async_fd(a[i]), .events = POLLIN};
                idx[n++] = i;
            }
        int r = poll(p, (nfds_t)n, 60000);
        TU_TRUE(r >= 1, "no request done within 60 s (%d of %d done)", ndone, MANY);
        TU_EQ(r, 1);            /* one holder at a time: never two done at once */
        for (int j = 0; j < n; j++) {
            if (!(p[j].revents & POLLIN))
                continue;
            shmlease_lease l;
            TU_RC(shmlease_async_result(a[idx[j]], &l), 0);
            TU_GT(l.fencing_token, last);
            last = l.fencing_token;
            TU_EQ(tu_inspect_ok(t, "k").holder_pid, getpid());
            TU_RC(shmlease_release(t, &l), 0);
            done[idx[j]] = 1;
            ndone++;
        }
    }
    for (int i = 0; i < MANY; i++)
        shmlease_async_free(a[i]);
    tu_expect_exit0(holder);
}

/* A try (wait_ms 0) is done when the call returns: fd readable at once,
 * 0 for a free key, -EBUSY for a held one. */
static void test_async_try_is_done_at_once(void **state)
{
    (void)state;
    const char *name = tu_name("atry");
    shmlease_table *t = tu_open(name, NULL);
    tu_chan c;
    pid_t holder = spawn_holder(&c, name, "held", SHMLEASE_EXCLUSIVE);
    shmlease_acquire_opts o = aopts(SHMLEASE_EXCLUSIVE, 60000, 0);
    shmlease_async *a = NULL, *b = NULL;
    TU_RC(shmlease_acquire_async(t, "free", &o, &a), 0);
    TU_RC(shmlease_acquire_async(t, "held", &o, &b), 0);
    TU_EQ(readable_within(shmlease_async_fd(a), 0), 1);
    TU_EQ(readable_within(shmlease_async_fd(b), 0), 1);
    shmlease_lease l;
    TU_RC(shmlease_async_result(a, &l), 0);
    TU_RC(shmlease_async_result(b, &l), -EBUSY);
    TU_RC(shmlease_async_result(a, &l), 0);
    TU_RC(shmlease_release(t, &l), 0);
    shmlease_async_free(a);
    shmlease_async_free(b);
    tu_kill(holder);
}

/* A wait that runs out ends with -ETIMEDOUT, and the fd says so. */
static void test_async_wait_that_runs_out_is_timed_out(void **state)
{
    (void)state;
    const char *name = tu_name("ato");
    shmlease_table *t = tu_open(name, NULL);
    tu_chan c;
    pid_t holder = spawn_holder(&c, name, "k", SHMLEASE_EXCLUSIVE);
    shmlease_acquire_opts o = aopts(SHMLEASE_EXCLUSIVE, 60000, 200);
    shmlease_async *a = NULL;
    TU_RC(shmlease_acquire_async(t, "k", &o, &a), 0);
    assert_true(readable_within(shmlease_async_fd(a), 60000));
    shmlease_lease l;
    TU_RC(shmlease_async_result(a, &l), -ETIMEDOUT);
    TU_EQ(tu_inspect_ok(t, "k").holder_pid, holder);
    shmlease_async_free(a);
    tu_kill(holder);
}

/* Options pass through: a SHARED request joins another process's shared
 * holder at once; an EXCLUSIVE one waits until the shared holders are
 * gone. */
static void test_async_takes_the_modes_of_acquire(void **state)
{
    (void)state;
    const char *name = tu_name("amode");
    shmlease_table *t = tu_open(name, NULL);
    tu_chan c;
    pid_t holder = spawn_holder(&c, name, "k", SHMLEASE_SHARED);
    shmlease_acquire_opts o = aopts(SHMLEASE_SHARED, 60000, 30000);
    shmlease_async *sh = NULL, *ex = NULL;
    TU_RC(shmlease_acquire_async(t, "k", &o, &sh), 0);
    assert_true(readable_within(shmlease_async_fd(sh), 60000));
    shmlease_lease l, le;
    TU_RC(shmlease_async_result(sh, &l), 0);
    shmlease_acquire_opts oe = aopts(SHMLEASE_EXCLUSIVE, 60000, SHMLEASE_WAIT_FOREVER);
    TU_RC(shmlease_acquire_async(t, "k", &oe, &ex), 0);
    TU_RC(shmlease_release(t, &l), 0);
    TU_EQ(readable_within(shmlease_async_fd(ex), 0), 0);   /* the child still holds */
    TU_RC(shmlease_async_result(ex, &le), -EINPROGRESS);
    tu_down(&c, 1);                                         /* the last shared holder goes */
    TU_RC(tu_up_recv(&c, 10000), 0);
    assert_true(readable_within(shmlease_async_fd(ex), 60000));
    TU_RC(shmlease_async_result(ex, &le), 0);
    TU_GT(le.fencing_token, l.fencing_token);
    TU_EQ(tu_inspect_ok(t, "k").holder_pid, getpid());
    TU_RC(shmlease_release(t, &le), 0);
    shmlease_async_free(sh);
    shmlease_async_free(ex);
    tu_expect_exit0(holder);
}

/* The key and the metadata are copied at the start: the caller's buffers
 * may change or go at once. */
static void test_async_copies_key_and_metadata_at_the_start(void **state)
{
    (void)state;
    const char *name = tu_name("acopy");
    shmlease_table *t = tu_open(name, NULL);
    tu_chan c;
    pid_t holder = spawn_holder(&c, name, "k", SHMLEASE_EXCLUSIVE);
    char *key = strdup("k"), *meta = strdup("who=async");
    shmlease_acquire_opts o = aopts(SHMLEASE_EXCLUSIVE, 60000, SHMLEASE_WAIT_FOREVER);
    o.metadata = meta;
    o.metadata_len = strlen(meta);
    shmlease_async *a = NULL;
    TU_RC(shmlease_acquire_async(t, key, &o, &a), 0);
    memset(meta, 'X', strlen(meta));
    strcpy(key, "z");
    free(key);
    free(meta);
    assert_true(TU_WAIT_FOR(waiters_of(t, "k") == 1, 10000));
    tu_down(&c, 1);
    TU_RC(tu_up_recv(&c, 10000), 0);
    assert_true(readable_within(shmlease_async_fd(a), 60000));
    shmlease_lease l;
    TU_RC(shmlease_async_result(a, &l), 0);
    shmlease_info i = tu_inspect_ok(t, "k");
    TU_EQ(i.holder_pid, getpid());
    TU_EQ(i.metadata_len, strlen("who=async"));
    assert_memory_equal(i.metadata, "who=async", i.metadata_len);
    TU_RC(shmlease_inspect(t, "z", &i), -ENOENT);
    TU_RC(shmlease_release(t, &l), 0);
    shmlease_async_free(a);
    tu_expect_exit0(holder);
}

/* The caller's own cancel token (opts.cancel) ends a pending request too;
 * one fired already refuses the start. */
static void test_async_callers_cancel_token_ends_the_request(void **state)
{
    (void)state;
    const char *name = tu_name("autok");
    shmlease_table *t = tu_open(name, NULL);
    tu_chan c;
    pid_t holder = spawn_holder(&c, name, "k", SHMLEASE_EXCLUSIVE);
    shmlease_cancel_token *tok;
    TU_RC(shmlease_cancel_create(&tok), 0);
    shmlease_acquire_opts o = aopts(SHMLEASE_EXCLUSIVE, 60000, SHMLEASE_WAIT_FOREVER);
    o.cancel = tok;
    shmlease_async *a = NULL, *b = NULL;
    TU_RC(shmlease_acquire_async(t, "k", &o, &a), 0);
    TU_RC(shmlease_acquire_async(t, "k", &o, &b), 0);
    assert_true(TU_WAIT_FOR(waiters_of(t, "k") == 2, 10000));
    TU_RC(shmlease_cancel(tok), 0);
    shmlease_lease l;
    assert_true(readable_within(shmlease_async_fd(a), 60000));
    assert_true(readable_within(shmlease_async_fd(b), 60000));
    TU_RC(shmlease_async_result(a, &l), -ECANCELED);
    TU_RC(shmlease_async_result(b, &l), -ECANCELED);
    shmlease_async_free(a);
    shmlease_async_free(b);
    shmlease_async *x = (shmlease_async *)&x;
    TU_RC(shmlease_acquire_async(t, "k", &o, &x), -ECANCELED);   /* fired: no start */
    assert_ptr_equal(x, (shmlease_async *)&x);
    TU_RC(shmlease_cancel_reset(tok), 0);
    TU_RC(shmlease_acquire_async(t, "k", &o, &a), 0);
    assert_true(TU_WAIT_FOR(waiters_of(t, "k") == 1, 10000));
    shmlease_async_free(a);                            /* pending: cancelled, joined */
    TU_EQ(waiters_of(t, "k"), 0);
    shmlease_cancel_destroy(tok);
    tu_kill(holder);
}

/* Bad input is refused by the call itself, and starts nothing. */
static void test_async_bad_input_is_refused_at_once(void **state)
{
    (void)state;
    const char *name = tu_name("abad");
    shmlease_table *t = tu_open(name, NULL);
    shmlease_acquire_opts o = aopts(SHMLEASE_EXCLUSIVE, 1000, 1000);
    shmlease_async *a = NULL;
    char longkey[SHMLEASE_KEY_MAX + 2];
    memset(longkey, 'a', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = 0;
    TU_RC(shmlease_acquire_async(NULL, "k", &o, &a), -EINVAL);
    TU_RC(shmlease_acquire_async(t, NULL, &o, &a), -EINVAL);
    TU_RC(shmlease_acquire_async(t, "", &o, &a), -EINVAL);
    TU_RC(shmlease_acquire_async(t, "k", NULL, &a), -EINVAL);
    TU_RC(shmlease_acquire_async(t, "k", &o, NULL), -EINVAL);
    TU_RC(shmlease_acquire_async(t, longkey, &o, &a), -ENAMETOOLONG);
    shmlease_acquire_opts b = o;
    b.ttl_ms = 0;
    TU_RC(shmlease_acquire_async(t, "k", &b, &a), -EINVAL);
    b = o;
    b.wait_ms = -2;
    TU_RC(shmlease_acquire_async(t, "k", &b, &a), -EINVAL);
    b = o;
    b.metadata_len = SHMLEASE_METADATA_MAX + 1;
    b.metadata = longkey;
    TU_RC(shmlease_acquire_async(t, "k", &b, &a), -EINVAL);
    b = o;
    b.metadata_len = 3;
    TU_RC(shmlease_acquire_async(t, "k", &b, &a), -EINVAL);
    b = o;
    b.reserved_1[0] = 1;
    TU_RC(shmlease_acquire_async(t, "k", &b, &a), -EINVAL);
    b = o;
    b.mode = 7;
    TU_RC(shmlease_acquire_async(t, "k", &b, &a), -EINVAL);
    b = o;
    b.limit = 2;                                      /* with EXCLUSIVE */
    TU_RC(shmlease_acquire_async(t, "k", &b, &a), -EINVAL);
    assert_null(a);
    TU_RC(shmlease_inspect(t, "k", &(shmlease_info){0}), -ENOENT);
    /* An unknown flag is the acquire's to refuse: the request's result. */
    b = o;
    b.flags = 1u << 30;
    TU_RC(shmlease_acquire_async(t, "k", &b, &a), 0);
    assert_true(readable_within(shmlease_async_fd(a), 60000));
    shmlease_lease l;
    TU_RC(shmlease_async_result(a, &l), -EINVAL);
    shmlease_async_free(a);
    TU_RC(shmlease_async_fd(NULL), -EINVAL);
    TU_RC(shmlease_async_result(NULL, &l), -EINVAL);
    TU_RC(shmlease_async_cancel(NULL), -EINVAL);
    shmlease_async_free(NULL);
    /* A read-only handle: the result says -EPERM. */
    shmlease_options ro = {.flags = SHMLEASE_OPEN_READONLY};
    shmlease_table *r = tu_open(name, &ro);
    TU_RC(shmlease_acquire_async(r, "k", &o, &a), 0);
    assert_true(readable_within(shmlease_async_fd(a), 60000));
    TU_RC(shmlease_async_result(a, NULL), -EINVAL);
    TU_RC(shmlease_async_result(a, &l), -EPERM);
    shmlease_async_free(a);
}

/* SHMLEASE_ASYNC_MAX requests may wait at once; one more is -EAGAIN (a try
 * starts no thread and is still served). Freed, they make room again. */
static void test_async_requests_beyond_the_bound_are_eagain(void **state)
{
    (void)state;
    const char *name = tu_name("amax");
    shmlease_table *t = tu_open(name, NULL);
    shmlease_lease held;
    TU_RC(tu_acquire(t, "k", 60000, 0, &held), 0);
    static shmlease_async *a[SHMLEASE_ASYNC_MAX];
    shmlease_acquire_opts o = aopts(SHMLEASE_EXCLUSIVE, 60000, SHMLEASE_WAIT_FOREVER);
    for (int i = 0; i < SHMLEASE_ASYNC_MAX; i++)
        TU_RC(shmlease_acquire_async(t, "k", &o, &a[i]), 0);
    shmlease_async *x = NULL;
    TU_RC(shmlease_acquire_async(t, "k", &o, &x), -EAGAIN);
    shmlease_acquire_opts try = aopts(SHMLEASE_EXCLUSIVE, 60000, 0);
    TU_RC(shmlease_acquire_async(t, "other", &try, &x), 0);
    shmlease_lease l;
    TU_RC(shmlease_async_result(x, &l), 0);
    TU_RC(shmlease_release(t, &l), 0);
    shmlease_async_free(x);
    for (int i = 0; i < SHMLEASE_ASYNC_MAX; i++)
        shmlease_async_free(a[i]);
    TU_RC(shmlease_acquire_async(t, "k", &o, &x), 0);   /* room again */
    TU_RC(shmlease_release(t, &held), 0);
    assert_true(readable_within(shmlease_async_fd(x), 60000));
    TU_RC(shmlease_async_result(x, &l), 0);
    shmlease_async_free(x);
    TU_RC(shmlease_release(t, &l), 0);
}

/* A fork child does not own its parent's requests: -ECHILD from fd,
 * result and cancel, and free only drops its copy; it may start requests of
 * its own. The parent's request is untouched. */
static void test_async_requests_belong_to_the_process_that_started_them(void **state)
{
    (void)state;
    const char *name = tu_name("afork");
    shmlease_table *t = tu_open(name, NULL);
    tu_chan c;
    pid_t holder = spawn_holder(&c, name, "k", SHMLEASE_EXCLUSIVE);
    shmlease_acquire_opts o = aopts(SHMLEASE_EXCLUSIVE, 60000, SHMLEASE_WAIT_FOREVER);
    shmlease_async *a = NULL;
    TU_RC(shmlease_acquire_async(t, "k", &o, &a), 0);
    assert_true(TU_WAIT_FOR(waiters_of(t, "k") == 1, 10000));
    pid_t p = tu_fork();
    if (p == 0) {
        shmlease_lease l;
        TU_CK_RC(shmlease_async_fd(a), -ECHILD);
        TU_CK_RC(shmlease_async_result(a, &l), -ECHILD);
        TU_CK_RC(shmlease_async_cancel(a), -ECHILD);
        shmlease_async_free(a);
        shmlease_async *mine = NULL;
        /* A request of the child's own, with a thread of its own, except
         * under ThreadSanitizer: its registry still lists the parent's
         * threads in a fork child and refuses a new thread that reuses
         * one's stack ("dup thread"); there the child's request is a try. */
#if defined(__SANITIZE_THREAD__)
        shmlease_acquire_opts w = aopts(SHMLEASE_EXCLUSIVE, 60000, 0);
#else
        shmlease_acquire_opts w = aopts(SHMLEASE_EXCLUSIVE, 60000, 30000);
#endif
        TU_CK_RC(shmlease_acquire_async(t, "child", &w, &mine), 0);
        struct pollfd pf = {.fd = shmlease_async_fd(mine), .events = POLLIN};
        TU_CK(poll(&pf, 1, 60000) == 1);
        TU_CK_RC(shmlease_async_result(mine, &l), 0);
        TU_CK_RC(shmlease_release(t, &l), 0);
        shmlease_async_free(mine);
        _exit(0);
    }
    tu_expect_exit0(p);
    shmlease_lease l;
    TU_RC(shmlease_async_result(a, &l), -EINPROGRESS);
    TU_EQ(waiters_of(t, "k"), 1);
    tu_down(&c, 1);
    TU_RC(tu_up_recv(&c, 10000), 0);
    assert_true(readable_within(shmlease_async_fd(a), 60000));
    TU_RC(shmlease_async_result(a, &l), 0);
    TU_RC(shmlease_release(t, &l), 0);
    shmlease_async_free(a);
    tu_expect_exit0(holder);
}

/* A cancel from another thread races the completion of a request for a
 * free key: whichever comes first, a cancel before the lease is fetched
 * wins, the result is -ECANCELED and nothing is held. */
struct race_arg {
    shmlease_async *a;
    int rc;
};

static void *cancel_thread(void *p)
{
    struct race_arg *r = p;
    r->rc = shmlease_async_cancel(r->a);
    return NULL;
}

static void test_async_cancel_racing_completion_leaves_nothing_held(void **state)
{
    (void)state;
    const char *name = tu_name("arace");
    shmlease_table *t = tu_open(name, NULL);
    for (int round = 0; round < 200; round++) {
        shmlease_acquire_opts o = aopts(SHMLEASE_EXCLUSIVE, 60000, 30000);
        shmlease_async *a = NULL;
        TU_RC(shmlease_acquire_async(t, "k", &o, &a), 0);
        struct race_arg r = {.a = a};
        pthread_t th;
        TU_EQ(pthread_create(&th, NULL, cancel_thread, &r), 0);
        TU_EQ(pthread_join(th, NULL), 0);
        assert_true(readable_within(shmlease_async_fd(a), 60000));
        shmlease_lease l;
        int rc = shmlease_async_result(a, &l);
        TU_RC(r.rc, 0);
        TU_RC(rc, -ECANCELED);
        TU_RC(shmlease_inspect(t, "k", &(shmlease_info){0}), -ENOENT);
        shmlease_async_free(a);
    }
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(test_async_poll_loop_gets_the_key_when_the_holder_releases),
        TU_TEST(test_async_cancel_of_a_pending_request_holds_nothing),
        TU_TEST(test_async_unfetched_lease_is_released_by_free_and_cancel),
        TU_TEST(test_async_many_requests_in_one_poll_loop),
        TU_TEST(test_async_try_is_done_at_once),
        TU_TEST(test_async_wait_that_runs_out_is_timed_out),
        TU_TEST(test_async_takes_the_modes_of_acquire),
        TU_TEST(test_async_copies_key_and_metadata_at_the_start),
        TU_TEST(test_async_callers_cancel_token_ends_the_request),
        TU_TEST(test_async_bad_input_is_refused_at_once),
        TU_TEST(test_async_requests_beyond_the_bound_are_eagain),
        TU_TEST(test_async_requests_belong_to_the_process_that_started_them),
        TU_TEST(test_async_cancel_racing_completion_leaves_nothing_held),
    };
    return TU_RUN(tests);
}
