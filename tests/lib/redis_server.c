/* The tests' own redis-server (redis_server.h). */
#include "redis_server.h"
#include "testutil.h"

#include <hiredis.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int tu_redis_available(void)
{
    return access("/usr/bin/redis-server", X_OK) == 0 || system("command -v redis-server >/dev/null 2>&1") == 0;
}

static redisContext *connect_to(const struct tu_redis *r)
{
    struct timeval tv = { 2, 0 };
    redisContext *c = r->port ? redisConnectWithTimeout("127.0.0.1", r->port, tv)
                              : redisConnectUnixWithTimeout(r->sock, tv);
    if (c && c->err) {
        redisFree(c);
        return NULL;
    }
    if (c)
        redisSetTimeout(c, tv);
    return c;
}

static void spawn(struct tu_redis *r)
{
    char *argv[64];
    int n = 0;
    char portbuf[16], logf[200];
    snprintf(portbuf, sizeof portbuf, "%d", r->port);
    snprintf(logf, sizeof logf, "%s/redis.log", r->dir);
    argv[n++] = "redis-server";
    argv[n++] = "--port", argv[n++] = portbuf;
    argv[n++] = "--bind", argv[n++] = "127.0.0.1";
    argv[n++] = "--unixsocket", argv[n++] = r->sock;
    argv[n++] = "--unixsocketperm", argv[n++] = "700";
    argv[n++] = "--dir", argv[n++] = r->dir;
    argv[n++] = "--logfile", argv[n++] = logf;
    argv[n++] = "--save", argv[n++] = "";
    argv[n++] = "--enable-debug-command", argv[n++] = "local";
    char conf[sizeof r->conf];
    snprintf(conf, sizeof conf, "%s", r->conf);
    for (char *save = NULL, *w = strtok_r(conf, " ", &save); w && n < 62; w = strtok_r(NULL, " ", &save))
        argv[n++] = w;
    argv[n] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) {
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execvp("redis-server", argv);
        _exit(127);
    }
    r->pid = pid;
    uint64_t deadline = tu_mono_ms() + 20000;
    for (;;) {
        redisContext *c = connect_to(r);
        redisReply *rep = c ? redisCommand(c, "PING") : NULL;
        int ok = rep && (rep->type == REDIS_REPLY_STATUS ||
                         (rep->type == REDIS_REPLY_ERROR && !strncmp(rep->str, "NOAUTH", 6)));
        if (rep)
            freeReplyObject(rep);
        if (c)
            redisFree(c);
        if (ok)
            return;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid)
            fail_msg("redis-server exited (%s): see %s", tu_status_str(st), logf);
        if (tu_mono_ms() > deadline)
            fail_msg("redis-server did not answer PING in 20 s");
        tu_sleep_ms(20);
    }
}

void tu_redis_start(struct tu_redis *r, const char *extra, int port)
{
    memset(r, 0, sizeof *r);
    snprintf(r->dir, sizeof r->dir, "/tmp/shmlease-redis-XXXXXX");
    assert_non_null(mkdtemp(r->dir));
    snprintf(r->sock, sizeof r->sock, "%s/redis.sock", r->dir);
    snprintf(r->conf, sizeof r->conf, "%s", extra ? extra : "");
    r->port = port;
    if (port)
        snprintf(r->url, sizeof r->url, "redis://127.0.0.1:%d", port);
    else
        snprintf(r->url, sizeof r->url, "unix://%s", r->sock);
    spawn(r);
}

void tu_redis_kill(struct tu_redis *r, int sig)
{
    if (r->pid <= 0)
        return;
    kill(r->pid, sig);
    int st;
    while (waitpid(r->pid, &st, 0) < 0 && errno == EINTR) {
    }
    r->pid = 0;
}

void tu_redis_restart(struct tu_redis *r)
{
    spawn(r);
}

void tu_redis_stop(struct tu_redis *r)
{
    tu_redis_kill(r, SIGKILL);
    if (r->dir[0]) {
        char cmd[160];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", r->dir);
        if (system(cmd) != 0) {
        }
        r->dir[0] = 0;
    }
}

long long tu_redis_cmd(const struct tu_redis *r, const char *cmd, int noreply)
{
    redisContext *c = connect_to(r);
    if (!c)
        return -1;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", cmd);
    const char *argv[16];
    int n = 0;
    for (char *save = NULL, *w = strtok_r(buf, " ", &save); w && n < 16; w = strtok_r(NULL, " ", &save))
        argv[n++] = w;
    long long v = -1;
    if (noreply) {
        redisAppendCommandArgv(c, n, argv, NULL);
        int done = 0;
        redisBufferWrite(c, &done);
        tu_sleep_ms(50);                 /* let the server read it before we hang up */
        v = 0;
    } else {
        redisReply *rep = redisCommandArgv(c, n, argv, NULL);
        if (rep && rep->type == REDIS_REPLY_INTEGER)
            v = rep->integer;
        else if (rep && rep->type == REDIS_REPLY_STATUS)
            v = rep->str[0];
        if (rep)
            freeReplyObject(rep);
    }
    redisFree(c);
    return v;
}
