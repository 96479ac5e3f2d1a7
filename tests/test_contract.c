/*
 * The contract both backends share, run against the local segment and
 * against a real redis-server (ctest contract.local and contract.redis: the
 * second sets SHMLEASE_TEST_BACKEND=redis, and this program then starts a
 * server of its own on a Unix socket). Holders and waiters are separate
 * processes that each open the table, as the users' are.
 */
#include "testutil.h"
#include "redis_server.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *g_url;          /* NULL: the local segment */
static struct tu_redis g_srv;

static shmlease_options ct_opts(void)
{
    shmlease_options o;
    memset(&o, 0, sizeof o);
    o.backend = g_url;
    return o;
}

static shmlease_table *ct_open(const char *name)
{
    shmlease_options o = ct_opts();
    return tu_open(name, &o);
}

static shmlease_table *ct_open_child(const char *name)
{
    shmlease_options o = ct_opts();
    shmlease_table *t = NULL;
    TU_CK_RC(shmlease_open(name, &o, &t), 0);
    return t;
}

/* Commands to a holder child. */
enum { H_EXIT = 0, H_RELEASE, H_RENEW, H_CHECK };

/* A child that opens NAME, acquires KEY for TTL_MS (metadata "holder"),
 * sends its token, then obeys commands: release / renew / check (each
 * answered with its result) until H_EXIT, which exits without releasing. */
static pid_t spawn_holder(tu_chan *c, const char *name, const char *key, uint64_t ttl_ms)
{
    tu_chan_init(c);
    pid_t p = tu_fork();
    if (p == 0) {
        tu_chan_child(c);
        shmlease_table *t = ct_open_child(name);
        shmlease_acquire_opts o = tu_aopts(ttl_ms, 10000);
        o.metadata = "holder";
        o.metadata_len = 6;
        shmlease_lease l;
        TU_CK_RC(shmlease_acquire(t, key, &o, &l), 0);
        tu_up(c, (int64_t)l.fencing_token);
        for (;;) {
            int64_t cmd = tu_down_recv(c);
            if (cmd == H_EXIT)
                _exit(0);
            int rc = cmd == H_RELEASE ? shmlease_release(t, &l)
                     : cmd == H_RENEW ? shmlease_renew(t, &l, ttl_ms) : shmlease_check(t, &l);
            tu_up(c, rc);
        }
    }
    tu_chan_parent(c, p);
    return p;
}

static int64_t holder_do(tu_chan *c, int64_t cmd)
{
    tu_down(c, cmd);
    return tu_up_recv(c, 30000);
}

static void holder_end(tu_chan *c, pid_t p)
{
    tu_down(c, H_EXIT);
    tu_expect_exit0(p);
}

/* ------------------------------------------------------------------------ */

static void test_try_busy_then_free_after_release(void **state)
{
    (void)state;
    const char *name = tu_name("busy");
    shmlease_table *t = ct_open(name);
    tu_chan c;
    pid_t p = spawn_holder(&c, name, "k", 60000);
    uint64_t tok = (uint64_t)tu_up_recv(&c, 30000);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k", 1000, 0, &l), -EBUSY);
    shmlease_info i = tu_inspect_ok(t, "k");
    TU_EQ(i.holder_pid, p);
    TU_EQU(i.fencing_token, tok);
    TU_EQ(i.metadata_len, 6);
    TU_TRUE(memcmp(i.metadata, "holder", 6) == 0, "metadata round trip");
    TU_RANGE(i.remaining_ms, 1, 60000);
    TU_EQ(i.holder_alive, 1);
    TU_RC(holder_do(&c, H_RELEASE), 0);
    TU_RC(tu_acquire(t, "k", 1000, 0, &l), 0);
    TU_GT(l.fencing_token, tok);
    TU_RC(shmlease_release(t, &l), 0);
    holder_end(&c, p);
}

static void *release_later(void *arg)
{
    tu_sleep_ms(300);
    tu_down(arg, H_RELEASE);
    return NULL;
}

/* A wait ends with the release, long before the holder's TTL. */
static void wait_woken_by_release(int64_t wait_ms)
{
    const char *name = tu_name("wake");
    shmlease_table *t = ct_open(name);
    tu_chan c;
    pid_t p = spawn_holder(&c, name, "k", 120000);
    (void)tu_up_recv(&c, 30000);
    pthread_t th;
    pthread_create(&th, NULL, release_later, &c);   /* while we wait */
    shmlease_lease l;
    uint64_t t0 = tu_mono_ms();
    TU_RC(tu_acquire(t, "k", 1000, wait_ms, &l), 0);
    pthread_join(th, NULL);
    TU_TRUE(tu_mono_ms() - t0 < 60000, "woken by the release, not by the TTL (%llu ms)",
            (unsigned long long)(tu_mono_ms() - t0));
    TU_RC(tu_up_recv(&c, 30000), 0);
    TU_RC(shmlease_release(t, &l), 0);
    holder_end(&c, p);
}

static void test_timed_wait_is_woken_by_release(void **state)
{
    (void)state;
    wait_woken_by_release(90000);
}

static void test_wait_forever_is_woken_by_release(void **state)
{
    (void)state;
    wait_woken_by_release(SHMLEASE_WAIT_FOREVER);
}

static void test_wait_times_out(void **state)
{
    (void)state;
    const char *name = tu_name("tmo");
    shmlease_table *t = ct_open(name);
    tu_chan c;
    pid_t p = spawn_holder(&c, name, "k", 60000);
    (void)tu_up_recv(&c, 30000);
    shmlease_lease l;
    uint64_t t0 = tu_mono_ms();
    TU_RC(tu_acquire(t, "k", 1000, 200, &l), -ETIMEDOUT);
    TU_TRUE(tu_mono_ms() - t0 >= 200, "waited its time");
    holder_end(&c, p);
}

/* An expired lease frees the key; its holder's calls are -ESTALE for ever,
 * even after the key is taken and freed again. */
static void test_expiry_frees_and_lost_is_lost_for_ever(void **state)
{
    (void)state;
    const char *name = tu_name("exp");
    shmlease_table *t = ct_open(name);
    tu_chan c;
    pid_t p = spawn_holder(&c, name, "k", 300);
    uint64_t tok = (uint64_t)tu_up_recv(&c, 30000);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k", 1000, 30000, &l), 0);   /* the holder lives on: its TTL ran out */
    TU_GT(l.fencing_token, tok);
    TU_RC(holder_do(&c, H_RENEW), -ESTALE);
    TU_RC(shmlease_release(t, &l), 0);                /* free again */
    TU_RC(holder_do(&c, H_CHECK), -ESTALE);
    TU_RC(holder_do(&c, H_RENEW), -ESTALE);
    TU_RC(holder_do(&c, H_RELEASE), -ESTALE);
    holder_end(&c, p);
}

static void test_renew_extends_and_release_needs_the_owner(void **state)
{
    (void)state;
    const char *name = tu_name("own");
    shmlease_table *a = ct_open(name), *b = ct_open(name);
    shmlease_lease l, other;
    TU_RC(tu_acquire(a, "k", 400, 0, &l), 0);
    uint64_t first = l.expires_at_ms;
    TU_RC(shmlease_renew(a, &l, 60000), 0);
    TU_TRUE(l.expires_at_ms > first, "renew moved the deadline");
    tu_sleep_ms(600);                                  /* past the first TTL */
    TU_RC(shmlease_check(a, &l), 0);
    TU_RC(shmlease_release(b, &l), -ESTALE);           /* another handle's value */
    TU_RC(tu_acquire(b, "k", 1000, 0, &other), -EBUSY);
    TU_RC(shmlease_release(a, &l), 0);
    TU_RC(shmlease_release(a, &l), -ESTALE);           /* spent */
}

static void test_grace_keeps_the_key_then_frees_it(void **state)
{
    (void)state;
    const char *name = tu_name("grace");
    shmlease_table *t = ct_open(name), *u = ct_open(name);
    shmlease_lease l, m;
    TU_RC(tu_acquire(t, "k", 60000, 0, &l), 0);
    TU_RC(shmlease_release_after(t, &l, 800), 0);
    TU_RC(tu_acquire(u, "k", 1000, 0, &m), -EBUSY);
    shmlease_info i = tu_inspect_ok(u, "k");
    TU_EQ(i.in_grace, 1);
    TU_EQ(i.holder_pid, 0);
    TU_RC(shmlease_renew(t, &l, 1000), -ESTALE);
    TU_RC(tu_acquire(u, "k", 1000, 30000, &m), 0);     /* at the grace's end */
    TU_GT(m.fencing_token, l.fencing_token);
}

static void test_break_ends_the_holder(void **state)
{
    (void)state;
    const char *name = tu_name("brk");
    shmlease_table *t = ct_open(name);
    tu_chan c;
    pid_t p = spawn_holder(&c, name, "k", 60000);
    uint64_t tok = (uint64_t)tu_up_recv(&c, 30000);
    TU_RC(shmlease_break(t, "k"), 0);
    TU_RC(shmlease_break(t, "k"), -ENOENT);
    TU_RC(holder_do(&c, H_RENEW), -ESTALE);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k", 1000, 0, &l), 0);
    TU_GT(l.fencing_token, tok);
    TU_RC(shmlease_release(t, &l), 0);
    holder_end(&c, p);
}

static void test_tokens_increase_across_keys_and_processes(void **state)
{
    (void)state;
    const char *name = tu_name("tok");
    shmlease_table *t = ct_open(name);
    uint64_t last = 0;
    for (int i = 0; i < 6; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i % 3);
        tu_chan c;
        pid_t p = spawn_holder(&c, name, key, 60000);
        uint64_t tok = (uint64_t)tu_up_recv(&c, 30000);
        TU_GT(tok, last);
        TU_RC(holder_do(&c, H_RELEASE), 0);
        holder_end(&c, p);
        shmlease_lease l;
        TU_RC(tu_acquire(t, key, 1000, 0, &l), 0);
        TU_GT(l.fencing_token, tok);
        last = l.fencing_token;
        TU_RC(shmlease_release(t, &l), 0);
    }
}

static int count_cb(const shmlease_info *i, void *arg)
{
    int *n = arg;
    if (!strcmp(i->key, "a") || !strcmp(i->key, "b"))
        n[0]++;
    if (!strcmp(i->key, "g") && i->in_grace)
        n[1]++;
    return 0;
}

static void test_foreach_and_stats(void **state)
{
    (void)state;
    const char *name = tu_name("each");
    shmlease_table *t = ct_open(name);
    shmlease_stats s0 = tu_stats(t);
    shmlease_lease a, b, g;
    TU_RC(tu_acquire(t, "a", 60000, 0, &a), 0);
    TU_RC(tu_acquire(t, "b", 60000, 0, &b), 0);
    TU_RC(tu_acquire(t, "g", 60000, 0, &g), 0);
    TU_RC(shmlease_release_after(t, &g, 60000), 0);
    int n[2] = { 0, 0 };
    TU_RC(shmlease_foreach(t, count_cb, n), 0);
    TU_EQ(n[0], 2);
    TU_EQ(n[1], 1);
    shmlease_stats s1 = tu_stats(t);
    TU_EQU(s1.acquisitions - s0.acquisitions, 3);
    TU_EQU(s1.held, 3);
    TU_TRUE(s1.fencing_counter >= b.fencing_token, "the counter is the last token");
    shmlease_lease x;
    TU_RC(tu_acquire(t, "a", 1000, 0, &x), -EBUSY);
    TU_EQU(tu_stats(t).busy - s1.busy, 1);
    TU_RC(shmlease_renew(t, &a, 60000), 0);
    TU_EQU(tu_stats(t).renewals - s1.renewals, 1);
}

/* A fork child holds none of its parent's leases. */
static void test_fork_child_holds_none(void **state)
{
    (void)state;
    const char *name = tu_name("fork");
    shmlease_table *t = ct_open(name);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k", 60000, 0, &l), 0);
    pid_t p = tu_fork();
    if (p == 0) {
        shmlease_lease m;
        TU_CK_RC(shmlease_renew(t, &l, 1000), -ESTALE);
        TU_CK_RC(shmlease_release(t, &l), -ESTALE);
        TU_CK_RC(tu_acquire(t, "k", 1000, 0, &m), -EBUSY);
        TU_CK_RC(tu_acquire(t, "other", 1000, 0, &m), 0);
        TU_CK_RC(shmlease_release(t, &m), 0);
        _exit(0);
    }
    tu_expect_exit0(p);
    TU_RC(shmlease_check(t, &l), 0);
    TU_RC(shmlease_release(t, &l), 0);
}

/* A holder of this host that dies frees its key at once. */
static void test_dead_holder_is_reclaimed_at_once(void **state)
{
    (void)state;
    const char *name = tu_name("dead");
    shmlease_table *t = ct_open(name);
    tu_chan c;
    pid_t p = spawn_holder(&c, name, "k", 600000);
    uint64_t tok = (uint64_t)tu_up_recv(&c, 30000);
    tu_kill(p);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k", 1000, 0, &l), 0);
    TU_GT(l.fencing_token, tok);
    TU_EQU(tu_stats(t).reclaimed_dead >= 1, 1);
}

static int break_own_key(shmlease_table *t, shmlease_lease *l, void *arg)
{
    (void)t, (void)l;
    return shmlease_break(arg, "k") == 0 ? 7 : -1;
}

static void test_with_lease_reports_a_loss(void **state)
{
    (void)state;
    const char *name = tu_name("with");
    shmlease_table *t = ct_open(name), *op = ct_open(name);
    shmlease_acquire_opts o = tu_aopts(60000, 0);
    int r = 0;
    TU_RC(shmlease_with_lease(t, "k", &o, break_own_key, op, &r), -ESTALE);
    TU_EQ(r, 7);
    shmlease_info i;
    TU_RC(shmlease_inspect(t, "k", &i), -ENOENT);
}

static void *cancel_later(void *arg)
{
    tu_sleep_ms(200);
    shmlease_cancel(arg);
    return NULL;
}

static void test_cancel_ends_a_wait_for_ever(void **state)
{
    (void)state;
    const char *name = tu_name("cancel");
    shmlease_table *t = ct_open(name);
    tu_chan c;
    pid_t p = spawn_holder(&c, name, "k", 60000);
    (void)tu_up_recv(&c, 30000);
    shmlease_cancel_token *tok;
    TU_RC(shmlease_cancel_create(&tok), 0);
    pthread_t th;
    pthread_create(&th, NULL, cancel_later, tok);
    shmlease_acquire_opts o = tu_aopts(1000, SHMLEASE_WAIT_FOREVER);
    o.cancel = tok;
    shmlease_lease l;
    TU_RC(shmlease_acquire(t, "k", &o, &l), -ECANCELED);
    pthread_join(th, NULL);
    shmlease_cancel_destroy(tok);
    holder_end(&c, p);
}

static void test_keepalive_keeps_a_short_lease(void **state)
{
    (void)state;
    const char *name = tu_name("ka");
    shmlease_table *t = ct_open(name);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k", 600, 0, &l), 0);
    shmlease_keepalive_opts ko;
    memset(&ko, 0, sizeof ko);
    ko.ttl_ms = 600;
    ko.interval_ms = 150;
    shmlease_keepalive *k;
    TU_RC(shmlease_keepalive_start(t, &l, &ko, &k), 0);
    tu_sleep_ms(2000);
    TU_RC(shmlease_check(t, &l), 0);
    TU_RC(shmlease_keepalive_status(k, NULL), 0);
    TU_RC(shmlease_release(t, &l), 0);
    shmlease_keepalive_stop(k);
}

static void test_bad_input_changes_nothing(void **state)
{
    (void)state;
    const char *name = tu_name("bad");
    shmlease_table *t = ct_open(name);
    shmlease_stats s0 = tu_stats(t);
    shmlease_lease l;
    char longkey[SHMLEASE_KEY_MAX + 2];
    memset(longkey, 'x', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = 0;
    TU_RC(tu_acquire(t, "k", 0, 0, &l), -EINVAL);
    TU_RC(tu_acquire(t, "", 1000, 0, &l), -EINVAL);
    TU_RC(tu_acquire(t, longkey, 1000, 0, &l), -ENAMETOOLONG);
    shmlease_acquire_opts o = tu_aopts(1000, 0);
    o.metadata = longkey;
    o.metadata_len = SHMLEASE_METADATA_MAX + 1;
    TU_RC(shmlease_acquire(t, "k", &o, &l), -EINVAL);
    o = tu_aopts(1000, -2);
    TU_RC(shmlease_acquire(t, "k", &o, &l), -EINVAL);
    TU_RC(shmlease_break(t, longkey), -ENAMETOOLONG);
    TU_EQU(tu_stats(t).acquisitions, s0.acquisitions);
    shmlease_info i;
    TU_RC(shmlease_inspect(t, "k", &i), -ENOENT);
}

static void test_async_acquire(void **state)
{
    (void)state;
    const char *name = tu_name("async");
    shmlease_table *t = ct_open(name);
    tu_chan c;
    pid_t p = spawn_holder(&c, name, "k", 60000);
    (void)tu_up_recv(&c, 30000);
    shmlease_acquire_opts o = tu_aopts(1000, 60000);
    shmlease_async *a;
    TU_RC(shmlease_acquire_async(t, "k", &o, &a), 0);
    shmlease_lease l;
    TU_RC(shmlease_async_result(a, &l), -EINPROGRESS);
    TU_RC(holder_do(&c, H_RELEASE), 0);
    struct pollfd pf = { .fd = shmlease_async_fd(a), .events = POLLIN };
    TU_EQ(poll(&pf, 1, 60000), 1);
    TU_RC(shmlease_async_result(a, &l), 0);
    TU_RC(shmlease_release(t, &l), 0);
    shmlease_async_free(a);
    holder_end(&c, p);
}

int main(int argc, char **argv)
{
    const char *b = getenv("SHMLEASE_TEST_BACKEND");
    if (b && !strcmp(b, "redis")) {
        if (!tu_redis_available()) {
            printf("SKIP: redis-server is not installed (apt-get install redis-server)\n");
            return 77;
        }
        tu_redis_start(&g_srv, NULL, 0);
        g_url = g_srv.url;
        printf("backend: %s\n", g_url);
    }
    const struct CMUnitTest tests[] = {
        TU_TEST(test_try_busy_then_free_after_release),
        TU_TEST(test_timed_wait_is_woken_by_release),
        TU_TEST(test_wait_forever_is_woken_by_release),
        TU_TEST(test_wait_times_out),
        TU_TEST(test_expiry_frees_and_lost_is_lost_for_ever),
        TU_TEST(test_renew_extends_and_release_needs_the_owner),
        TU_TEST(test_grace_keeps_the_key_then_frees_it),
        TU_TEST(test_break_ends_the_holder),
        TU_TEST(test_tokens_increase_across_keys_and_processes),
        TU_TEST(test_foreach_and_stats),
        TU_TEST(test_fork_child_holds_none),
        TU_TEST(test_dead_holder_is_reclaimed_at_once),
        TU_TEST(test_with_lease_reports_a_loss),
        TU_TEST(test_cancel_ends_a_wait_for_ever),
        TU_TEST(test_keepalive_keeps_a_short_lease),
        TU_TEST(test_bad_input_changes_nothing),
        TU_TEST(test_async_acquire),
    };
    int rc = TU_RUN(tests);
    if (g_url)
        tu_redis_stop(&g_srv);
    return rc;
}
