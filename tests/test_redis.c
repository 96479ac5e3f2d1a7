/*
 * What only the Redis backend has: its URL, its errors, and what happens
 * when the server dies, restarts, stalls (DEBUG SLEEP) or is a Cluster;
 * and holders on "another host" (another PID namespace: no proof of death
 * reaches us, so only the TTL frees their keys). Each test starts the
 * redis-server it needs (tests/lib/redis_server.h).
 */
#include "testutil.h"
#include "redis_server.h"

#include <hiredis.h>

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static shmlease_table *open_url(const char *name, const char *url)
{
    shmlease_options o;
    memset(&o, 0, sizeof o);
    o.backend = url;
    return tu_open(name, &o);
}

static int try_open(const char *name, const char *url, uint32_t flags)
{
    shmlease_options o;
    memset(&o, 0, sizeof o);
    o.backend = url;
    o.flags = flags;
    shmlease_table *t = NULL;
    int rc = shmlease_open(name, &o, &t);
    shmlease_close(t);
    return rc;
}

static void need_redis(void)
{
    if (!tu_redis_available())
        TU_SKIP("redis-server is not installed (apt-get install redis-server)");
}

static void test_urls_and_open_flags(void **state)
{
    (void)state;
    need_redis();
    struct tu_redis r;
    tu_redis_start(&r, "--requirepass s3cr%t", 0);
    const char *name = tu_name("url");
    static const char *const bad[] = {
        "redis://", "redis://:6379", "redis://h:0", "redis://h:99999", "redis://h/x",
        "redis://h?db=1&nope=2", "redis://h?timeout_ms=0", "unix://", "unix:///",
        "redis://user@h", "nonsense",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        TU_TRUE(try_open(name, bad[i], 0) == -EINVAL, "%s: -EINVAL", bad[i]);
    TU_RC(try_open(name, "rediss://h", 0), -EPROTONOSUPPORT);
    TU_RC(try_open(name, "http://h", 0), -EPROTONOSUPPORT);
    char url[400];
    snprintf(url, sizeof url, "%s?retry_ms=300", r.url);
    TU_RC(try_open(name, url, 0), -EACCES);                   /* no password */
    snprintf(url, sizeof url, "redis://:wrong@127.0.0.1:%d?retry_ms=300", 1);
    TU_RC(try_open(name, url, 0), -ECONNREFUSED);             /* nobody there */
    snprintf(url, sizeof url, "unix://%s?db=3&retry_ms=300", r.sock);
    TU_RC(try_open(name, url, 0), -EACCES);
    /* the password, %-escaped in the URL (a unix URL has no userinfo: TCP) */
    tu_redis_stop(&r);
    tu_redis_start(&r, "--requirepass s3cr%t", 6390 + (getpid() % 500));
    snprintf(url, sizeof url, "redis://:s3cr%%25t@127.0.0.1:%d/2", r.port);
    TU_RC(try_open(name, url, SHMLEASE_OPEN_NOCREATE), -ENOENT);
    TU_RC(try_open(name, url, 0), 0);
    TU_RC(try_open(name, url, SHMLEASE_OPEN_EXCL), -EEXIST);
    TU_RC(try_open(name, url, SHMLEASE_OPEN_NOCREATE), 0);
    shmlease_table *t = open_url(name, url);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k", 60000, 0, &l), 0);
    TU_RC(shmlease_unlink_backend(name, url), 0);
    TU_RC(shmlease_unlink_backend(name, url), -ENOENT);
    tu_redis_stop(&r);
}

static void test_what_this_backend_does_not_offer(void **state)
{
    (void)state;
    need_redis();
    struct tu_redis r;
    tu_redis_start(&r, NULL, 0);
    const char *name = tu_name("nosup");
    shmlease_table *t = open_url(name, r.url);
    shmlease_lease l;
    shmlease_acquire_opts o = tu_aopts(1000, 0);
    o.mode = SHMLEASE_SHARED;
    TU_RC(shmlease_acquire(t, "k", &o, &l), -EOPNOTSUPP);
    o = tu_aopts(1000, 0);
    o.flags = SHMLEASE_ACQUIRE_FAIR;
    TU_RC(shmlease_acquire(t, "k", &o, &l), -EOPNOTSUPP);
    TU_RC(tu_acquire(t, "k", 1000, 0, &l), 0);
    TU_RC(shmlease_upgrade(t, &l, 1000, 0), -EOPNOTSUPP);
    shmlease_waiter w[2];
    TU_RC(shmlease_waiters(t, "k", w, 2), -EOPNOTSUPP);
    tu_clock *c = tu_clock_new(1000);
    shmlease_options co = tu_opts_clock(c, 0);
    co.backend = r.url;
    shmlease_table *u = NULL;
    TU_RC(shmlease_open(name, &co, &u), -EINVAL);
    tu_redis_stop(&r);
}

/* The server dies under a holder: the holder's calls report the connection
 * while its deadline lasts, then -ESTALE; a server that comes back empty
 * keeps the loss, and its next tokens are still greater. */
static void test_server_killed_holder_learns_it_lost(void **state)
{
    (void)state;
    need_redis();
    struct tu_redis r;
    tu_redis_start(&r, NULL, 0);
    char url[400];
    snprintf(url, sizeof url, "%s?retry_ms=200&timeout_ms=500&connect_timeout_ms=200", r.url);
    const char *name = tu_name("kill");
    shmlease_table *t = open_url(name, url);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k", 3000, 0, &l), 0);
    uint64_t tok = l.fencing_token;
    tu_redis_kill(&r, SIGKILL);
    int rc = shmlease_renew(t, &l, 3000);
    TU_TRUE(rc == -ECONNREFUSED || rc == -ECONNRESET || rc == -ESTALE,
            "renew with the server down: %s", shmlease_errname(rc));
    TU_TRUE(TU_WAIT_FOR(shmlease_check(t, &l) == -ESTALE, 10000), "lost by its deadline");
    TU_TRUE(tu_mono_ms() + 50 >= l.expires_at_ms, "not before its deadline");
    tu_redis_restart(&r);
    TU_RC(shmlease_renew(t, &l, 3000), -ESTALE);              /* lost for ever */
    shmlease_lease m;
    TU_RC(tu_acquire(t, "k", 3000, 0, &m), 0);                /* a fresh server */
    TU_GT(m.fencing_token, tok);
    tu_redis_stop(&r);
}

/* With persistence (appendfsync always), a restart keeps the lease. */
static void test_restart_with_persistence_keeps_the_lease(void **state)
{
    (void)state;
    need_redis();
    struct tu_redis r;
    tu_redis_start(&r, "--appendonly yes --appendfsync always", 0);
    const char *name = tu_name("aof");
    shmlease_table *t = open_url(name, r.url);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k", 60000, 0, &l), 0);
    tu_redis_kill(&r, SIGKILL);
    tu_redis_restart(&r);
    TU_RC(shmlease_renew(t, &l, 60000), 0);
    shmlease_table *u = open_url(name, r.url);
    shmlease_lease m;
    TU_RC(tu_acquire(u, "k", 1000, 0, &m), -EBUSY);
    TU_RC(shmlease_release(t, &l), 0);
    TU_RC(tu_acquire(u, "k", 1000, 0, &m), 0);
    TU_GT(m.fencing_token, l.fencing_token);
    tu_redis_stop(&r);
}

/* A stalled server (DEBUG SLEEP): calls time out with -ETIME, a renew that
 * cannot be confirmed before the deadline is -ESTALE, and all is well after. */
static void test_stalled_server(void **state)
{
    (void)state;
    need_redis();
    struct tu_redis r;
    tu_redis_start(&r, NULL, 0);
    char url[400];
    snprintf(url, sizeof url, "%s?timeout_ms=300&retry_ms=300", r.url);
    const char *name = tu_name("stall");
    shmlease_table *t = open_url(name, url);
    shmlease_lease l, m;
    TU_RC(tu_acquire(t, "k", 1000, 0, &l), 0);
    TU_RC(tu_acquire(t, "j", 60000, 0, &m), 0);
    TU_EQ(tu_redis_cmd(&r, "DEBUG SLEEP 2", 1), 0);
    shmlease_info i;
    TU_RC(shmlease_inspect(t, "j", &i), -ETIME);
    int rc = shmlease_renew(t, &l, 1000);                     /* unconfirmed: an error, or lost */
    TU_TRUE(rc == -ETIME || rc == -ECONNREFUSED || rc == -ESTALE, "renew: %s", shmlease_errname(rc));
    TU_TRUE(TU_WAIT_FOR(shmlease_check(t, &m) == 0, 10000), "the server answers again");
    TU_RC(shmlease_check(t, &l), -ESTALE);                    /* its deadline passed meanwhile */
    TU_RC(shmlease_renew(t, &l, 1000), -ESTALE);
    TU_RC(shmlease_release(t, &m), 0);
    tu_redis_stop(&r);
}

/* "Another host": a holder in another PID namespace dies, and nothing can
 * prove it to us; its key is free at its TTL, not before. */
static void test_another_hosts_dead_holder_waits_for_its_ttl(void **state)
{
    (void)state;
    need_redis();
    struct tu_redis r;
    tu_redis_start(&r, NULL, 0);
    const char *name = tu_name("host");
    shmlease_table *t = open_url(name, r.url);
    tu_chan c;
    tu_chan_init(&c);
    volatile pid_t *gpid = tu_shared(sizeof *gpid);
    pid_t p = tu_fork();
    if (p == 0) {
        tu_chan_child(&c);
        if (unshare(CLONE_NEWPID) != 0) {
            tu_up(&c, -1);
            _exit(0);
        }
        pid_t g = fork();                   /* pid 1 of the new namespace */
        if (g == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            shmlease_options o;
            memset(&o, 0, sizeof o);
            o.backend = r.url;
            shmlease_table *u = NULL;
            TU_CK_RC(shmlease_open(name, &o, &u), 0);
            shmlease_lease l;
            TU_CK_RC(tu_acquire(u, "k", 1500, 0, &l), 0);
            tu_up(&c, 1);
            for (;;)
                pause();
        }
        *gpid = g;                          /* its PID in our namespace */
        int st;
        waitpid(g, &st, 0);
        _exit(0);
    }
    tu_chan_parent(&c, p);
    int64_t v = tu_up_recv(&c, 30000);
    if (v < 0) {
        tu_redis_stop(&r);
        TU_SKIP("unshare(CLONE_NEWPID) refused: not root");
    }
    TU_TRUE(TU_WAIT_FOR(*gpid > 0, 30000), "the holder's PID");
    pid_t g = *gpid;
    shmlease_info i = tu_inspect_ok(t, "k");
    TU_EQ(i.holder_alive, -1);
    TU_EQ(i.holder_other_pidns, 1);
    uint64_t held_until = tu_mono_ms() + (uint64_t)i.remaining_ms;
    kill(g, SIGKILL);                       /* its namespace's pid 1: all of it dies */
    tu_expect_exit0(p);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k", 1000, 0, &l), -EBUSY);
    TU_RC(tu_acquire(t, "k", 1000, 30000, &l), 0);
    TU_TRUE(tu_mono_ms() + 20 >= held_until, "freed by its TTL, not before");
    tu_redis_stop(&r);
}

/* One table on a three-node Redis Cluster: the handles follow MOVED to the
 * node of the table's slot, whichever node their URL names. */
static void test_cluster_of_three(void **state)
{
    (void)state;
    need_redis();
    if (system("command -v redis-cli >/dev/null 2>&1") != 0)
        TU_SKIP("redis-cli is not installed");
    struct tu_redis n[3];
    int base = 17000 + (getpid() % 1000) * 3;
    char create[512] = "redis-cli --cluster create --cluster-replicas 0 --cluster-yes";
    for (int i = 0; i < 3; i++) {
        tu_redis_start(&n[i], "--cluster-enabled yes --cluster-node-timeout 5000", base + i);
        size_t len = strlen(create);
        snprintf(create + len, sizeof create - len, " 127.0.0.1:%d", base + i);
    }
    strncat(create, " >/dev/null 2>&1", sizeof create - strlen(create) - 1);
    TU_RC(system(create), 0);
    const char *name = tu_name("cluster");
    shmlease_table *t[3] = { NULL, NULL, NULL };
    for (int i = 0; i < 3; i++) {
        shmlease_options o;
        memset(&o, 0, sizeof o);
        o.backend = n[i].url;
        /* the cluster says ok a little after the slots are assigned */
        TU_TRUE(TU_WAIT_FOR(shmlease_open(name, &o, &t[i]) == 0, 20000), "open via node %d", i);
    }
    shmlease_lease l, m;
    TU_RC(tu_acquire(t[0], "k", 60000, 0, &l), 0);
    TU_RC(tu_acquire(t[1], "k", 1000, 0, &m), -EBUSY);
    TU_RC(tu_acquire(t[2], "k", 1000, 0, &m), -EBUSY);
    TU_RC(shmlease_release(t[0], &l), 0);
    TU_RC(tu_acquire(t[2], "k", 1000, 0, &m), 0);
    TU_GT(m.fencing_token, l.fencing_token);
    TU_RC(shmlease_release(t[2], &m), 0);
    for (int i = 0; i < 3; i++) {
        shmlease_close(t[i]);
        tu_redis_stop(&n[i]);
    }
}

/* A fork child of a process with only Redis handles holds its own lease:
 * others see it alive, and cannot take its key (its owner carries its own
 * start time, not its parent's). */
static void test_fork_child_of_a_redis_only_process_is_alive(void **state)
{
    (void)state;
    need_redis();
    struct tu_redis r;
    tu_redis_start(&r, NULL, 0);
    const char *name = tu_name("forkown");
    shmlease_table *t = open_url(name, r.url);
    tu_sleep_ms(1100);                  /* a child's start time differs from ours */
    tu_chan c;
    tu_chan_init(&c);
    pid_t p = tu_fork();
    if (p == 0) {
        tu_chan_child(&c);
        shmlease_lease l;
        TU_CK_RC(tu_acquire(t, "k", 60000, 0, &l), 0);
        tu_up(&c, 1);
        (void)tu_down_recv(&c);
        TU_CK_RC(shmlease_check(t, &l), 0);
        TU_CK_RC(shmlease_release(t, &l), 0);
        _exit(0);
    }
    tu_chan_parent(&c, p);
    TU_EQ(tu_up_recv(&c, 30000), 1);
    shmlease_table *u = open_url(name, r.url);
    shmlease_info i = tu_inspect_ok(u, "k");
    TU_EQ(i.holder_pid, p);
    TU_EQ(i.holder_alive, 1);
    shmlease_lease m;
    TU_RC(tu_acquire(u, "k", 1000, 0, &m), -EBUSY);
    tu_down(&c, 1);
    tu_expect_exit0(p);
    tu_redis_stop(&r);
}

/* A server gone away does not kill the caller with SIGPIPE. */
static void test_no_sigpipe_when_the_server_goes_away(void **state)
{
    (void)state;
    need_redis();
    struct tu_redis r;
    tu_redis_start(&r, NULL, 0);
    char url[400];
    snprintf(url, sizeof url, "%s?retry_ms=200&connect_timeout_ms=200", r.url);
    const char *name = tu_name("pipe");
    tu_chan c;
    tu_chan_init(&c);
    pid_t p = tu_fork();
    if (p == 0) {
        tu_chan_child(&c);
        signal(SIGPIPE, SIG_DFL);
        shmlease_options o;
        memset(&o, 0, sizeof o);
        o.backend = url;
        shmlease_table *t = NULL;
        TU_CK_RC(shmlease_open(name, &o, &t), 0);
        shmlease_lease l;
        TU_CK_RC(tu_acquire(t, "k", 60000, 0, &l), 0);
        tu_up(&c, 1);
        (void)tu_down_recv(&c);          /* the server is gone */
        for (int i = 0; i < 3; i++)
            TU_CK(shmlease_check(t, &l) != 0);
        shmlease_close(t);
        _exit(0);
    }
    tu_chan_parent(&c, p);
    TU_EQ(tu_up_recv(&c, 30000), 1);
    tu_redis_kill(&r, SIGKILL);
    tu_down(&c, 1);
    tu_expect_exit0(p);
    tu_redis_stop(&r);
}

/* Our deadline is never after the server's: read both on the wall clock. */
static void test_local_deadline_is_not_after_the_servers(void **state)
{
    (void)state;
    need_redis();
    struct tu_redis r;
    tu_redis_start(&r, NULL, 0);
    const char *name = tu_name("skew");
    shmlease_table *t = open_url(name, r.url);
    struct timeval tv = { 2, 0 };
    redisContext *rc = redisConnectUnixWithTimeout(r.sock, tv);
    assert_true(rc && !rc->err);
    char hash[300];
    snprintf(hash, sizeof hash, "shmlease:{%s}:k:k", name);
    int late = 0;
    for (int i = 0; i < 400; i++) {
        shmlease_lease l;
        TU_RC(tu_acquire(t, "k", 5000, 0, &l), 0);
        struct timespec w, m;
        clock_gettime(CLOCK_REALTIME, &w);
        clock_gettime(CLOCK_MONOTONIC, &m);
        double off = (w.tv_sec - m.tv_sec) * 1e3 + (w.tv_nsec - m.tv_nsec) / 1e6;
        redisReply *rep = redisCommand(rc, "HGET %s exp", hash);
        assert_true(rep && rep->type == REDIS_REPLY_STRING);
        double server = strtod(rep->str, NULL);
        freeReplyObject(rep);
        /* expires_at_ms counts whole ms: the moment it passes is at most
         * expires_at_ms + 1 on the monotonic clock */
        if ((double)l.expires_at_ms + 1.0 + off > server + 1e-6)
            late++;
        TU_RC(shmlease_release(t, &l), 0);
    }
    redisFree(rc);
    TU_EQ(late, 0);
    tu_redis_stop(&r);
}

/* A stalled server: a try and close() keep to their bounds. */
static void test_stalled_server_bounds_try_and_close(void **state)
{
    (void)state;
    need_redis();
    struct tu_redis r;
    tu_redis_start(&r, NULL, 0);
    char url[400];
    snprintf(url, sizeof url, "%s?timeout_ms=300&retry_ms=300&connect_timeout_ms=300", r.url);
    const char *name = tu_name("bound");
    shmlease_table *t = open_url(name, url);
    tu_forget(t);
    shmlease_lease l;
    for (int i = 0; i < 5; i++) {
        char key[8];
        snprintf(key, sizeof key, "k%d", i);
        TU_RC(tu_acquire(t, key, 60000, 0, &l), 0);
    }
    TU_EQ(tu_redis_cmd(&r, "DEBUG SLEEP 6", 1), 0);
    uint64_t t0 = tu_mono_ms();
    int rc = tu_acquire(t, "k0", 1000, 0, &l);
    TU_TRUE(rc == -ETIME || rc == -ECONNREFUSED, "try: %s", shmlease_errname(rc));
    uint64_t t1 = tu_mono_ms();
    shmlease_close(t);
    uint64_t t2 = tu_mono_ms();
    TU_TRUE(t1 - t0 < 3000 && t2 - t1 < 3000, "try %llu ms, close %llu ms: both before the server wakes",
            (unsigned long long)(t1 - t0), (unsigned long long)(t2 - t1));
    tu_redis_stop(&r);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(test_urls_and_open_flags),
        TU_TEST(test_what_this_backend_does_not_offer),
        TU_TEST(test_server_killed_holder_learns_it_lost),
        TU_TEST(test_restart_with_persistence_keeps_the_lease),
        TU_TEST(test_stalled_server),
        TU_TEST(test_another_hosts_dead_holder_waits_for_its_ttl),
        TU_TEST(test_cluster_of_three),
        TU_TEST(test_fork_child_of_a_redis_only_process_is_alive),
        TU_TEST(test_no_sigpipe_when_the_server_goes_away),
        TU_TEST(test_local_deadline_is_not_after_the_servers),
        TU_TEST(test_stalled_server_bounds_try_and_close),
    };
    return TU_RUN(tests);
}
