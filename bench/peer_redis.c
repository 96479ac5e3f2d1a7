/*
 * Peer "redis": the usual single-instance Redis lock.
 *   acquire  SET key token NX PX ttl         (OK: ours; nil: held)
 *   release  EVALSHA <compare-and-delete> 1 key token
 * against a real redis-server that this bench starts on a Unix socket in its
 * temporary folder (no TCP port, no persistence) and kills at the end, on
 * error and on a signal (cleanup_set_server); the server also dies with the
 * bench (PR_SET_PDEATHSIG) should the bench itself be SIGKILLed.
 */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int g_redis_ttl_ms = 100;
int redis_poll_us(void) { return 1000; }

#ifdef BENCH_HAVE_HIREDIS
#include <hiredis.h>

static pid_t g_server;
static char g_log[224];

static const char RELEASE_LUA[] =
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "return redis.call('del', KEYS[1]) else return 0 end";

static redisContext *connect_unix(void)
{
    struct timeval tv = { 2, 0 };
    redisContext *c = redisConnectUnixWithTimeout(g_env.redis_sock, tv);
    if (c && c->err) {
        redisFree(c);
        return NULL;
    }
    return c;
}

static int find_in_path(const char *bin)
{
    if (strchr(bin, '/'))
        return access(bin, X_OK) == 0;
    const char *path = getenv("PATH");
    if (!path)
        path = "/usr/local/bin:/usr/bin:/bin";
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *save = NULL, *d = strtok_r(buf, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        char full[4352];
        snprintf(full, sizeof full, "%s/%s", *d ? d : ".", bin);
        if (access(full, X_OK) == 0)
            return 1;
    }
    return 0;
}

/* The forked child: becomes redis-server, on a Unix socket in the bench's
 * temporary folder, without persistence; its output goes to g_log. */
static void exec_server(const char *server_bin, pid_t bench)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != bench)
        _exit(127);
    signal(SIGINT, SIG_IGN);      /* the bench stops it (Ctrl-C reaches the group) */
    int fd = open(g_log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
    }
    int nul = open("/dev/null", O_RDONLY);
    if (nul >= 0)
        dup2(nul, 0);
    execlp(server_bin, server_bin,
           "--port", "0",
           "--unixsocket", g_env.redis_sock,
           "--unixsocketperm", "700",
           "--save", "",
           "--appendonly", "no",
           "--dir", g_env.tmpdir,
           "--daemonize", "no",
           "--databases", "1",
           (char *)NULL);
    _exit(127);
}

/* Waits (5 s at most) for the server to answer PING: a connection, or NULL
 * with g_env.redis_why filled when it exited. */
static redisContext *wait_ping(pid_t pid)
{
    uint64_t deadline = now_ns() + 5000000000ull;
    while (now_ns() < deadline) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            g_server = 0;
            cleanup_set_server(0);
            snprintf(g_env.redis_why, sizeof g_env.redis_why,
                     "redis-server exited at start (status %d)", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
            return NULL;
        }
        redisContext *c = connect_unix();
        if (c) {
            redisReply *r = redisCommand(c, "PING");
            int ok = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
            if (r)
                freeReplyObject(r);
            if (ok)
                return c;
            redisFree(c);
        }
        sleep_us(10000);
    }
    return NULL;
}

/* Loads the release script (g_env.redis_sha) and reads the server's version. */
static void load_script(redisContext *c)
{
    redisReply *r = redisCommand(c, "SCRIPT LOAD %s", RELEASE_LUA);
    if (r && r->type == REDIS_REPLY_STRING)
        snprintf(g_env.redis_sha, sizeof g_env.redis_sha, "%s", r->str);
    if (r)
        freeReplyObject(r);
    r = redisCommand(c, "INFO server");
    if (r && r->type == REDIS_REPLY_STRING) {
        const char *v = strstr(r->str, "redis_version:");
        if (v) {
            v += strlen("redis_version:");
            size_t n = strcspn(v, "\r\n");
            snprintf(g_env.redis_version, sizeof g_env.redis_version, "%.*s", (int)n, v);
        }
    }
    if (r)
        freeReplyObject(r);
}

void redis_start(const char *server_bin)
{
    if (!server_bin)
        server_bin = "redis-server";
    if (!find_in_path(server_bin)) {
        snprintf(g_env.redis_why, sizeof g_env.redis_why, "redis-server not found");
        return;
    }
    snprintf(g_env.redis_sock, sizeof g_env.redis_sock, "%s/redis.sock", g_env.tmpdir);
    snprintf(g_log, sizeof g_log, "%s/redis.log", g_env.tmpdir);
    cleanup_add_file(g_env.redis_sock);
    cleanup_add_file(g_log);

    fflush(stdout);
    fflush(stderr);
    pid_t self = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(g_env.redis_why, sizeof g_env.redis_why, "fork: %s", strerror(errno));
        return;
    }
    if (pid == 0)
        exec_server(server_bin, self);
    g_server = pid;
    cleanup_set_server(pid);

    redisContext *c = wait_ping(pid);
    if (!c) {
        if (g_env.redis_why[0])     /* it exited: wait_ping said why */
            return;
        redis_stop();
        snprintf(g_env.redis_why, sizeof g_env.redis_why, "redis-server did not answer within 5 s");
        return;
    }
    load_script(c);
    redisFree(c);
    if (!g_env.redis_sha[0]) {
        redis_stop();
        snprintf(g_env.redis_why, sizeof g_env.redis_why, "SCRIPT LOAD failed");
        return;
    }
    g_env.have_redis = 1;
}

void redis_stop(void)
{
    if (g_server <= 0 || in_child())
        return;
    kill(g_server, SIGTERM);
    uint64_t deadline = now_ns() + 2000000000ull;
    int st;
    while (waitpid(g_server, &st, WNOHANG) == 0) {
        if (now_ns() > deadline) {
            kill(g_server, SIGKILL);
            waitpid(g_server, &st, 0);
            break;
        }
        sleep_us(5000);
    }
    g_server = 0;
    cleanup_set_server(0);
    g_env.have_redis = 0;
}

/* ---- the peer --------------------------------------------------------------- */

static int rd_attach(struct pinst *pi)
{
    pi->redis = connect_unix();
    return pi->redis ? 0 : -ECONNREFUSED;
}
static void rd_detach(struct pinst *pi)
{
    if (pi->redis)
        redisFree(pi->redis);
    pi->redis = NULL;
}

static int rd_try(struct pinst *pi)
{
    snprintf(pi->token, sizeof pi->token, "%d-%llu", (int)getpid(),
             (unsigned long long)++pi->tok_seq);
    redisReply *r = redisCommand(pi->redis, "SET %s %s NX PX %llu", pi->key, pi->token,
                                 (unsigned long long)pi->ttl_ms);
    if (!r)
        return -EIO;
    int rc = -EPROTO;
    if (r->type == REDIS_REPLY_STATUS && strcmp(r->str, "OK") == 0)
        rc = 0;
    else if (r->type == REDIS_REPLY_NIL)
        rc = 1;
    freeReplyObject(r);
    return rc;
}

static int rd_acquire(struct pinst *pi)
{
    for (;;) {                         /* Redis has no blocking lock: poll */
        int r = rd_try(pi);
        if (r <= 0)
            return r;
        sleep_us(redis_poll_us());
    }
}

static int rd_release(struct pinst *pi)
{
    redisReply *r = redisCommand(pi->redis, "EVALSHA %s 1 %s %s", g_env.redis_sha, pi->key, pi->token);
    if (!r)
        return -EIO;
    int rc = (r->type == REDIS_REPLY_INTEGER && r->integer == 1) ? 0 : -ESTALE;
    freeReplyObject(r);
    return rc;
}

const struct peer_ops peer_redis_ops = { "redis", rd_attach, rd_try, rd_acquire, rd_release, rd_detach };

int redis_ping(struct pinst *pi)
{
    redisReply *r = redisCommand(pi->redis, "PING");
    if (!r)
        return -EIO;
    int rc = r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0 ? 0 : -EPROTO;
    freeReplyObject(r);
    return rc;
}

#else /* no hiredis */

void redis_start(const char *server_bin)
{
    (void)server_bin;
    snprintf(g_env.redis_why, sizeof g_env.redis_why, "built without hiredis");
}
void redis_stop(void) {}
static int rd_none(struct pinst *pi) { (void)pi; return -ENOSYS; }
static void rd_none_v(struct pinst *pi) { (void)pi; }
const struct peer_ops peer_redis_ops = { "redis", rd_none, rd_none, rd_none, rd_none, rd_none_v };
int redis_ping(struct pinst *pi) { (void)pi; return -ENOSYS; }

#endif
