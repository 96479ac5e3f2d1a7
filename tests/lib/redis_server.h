/*
 * A redis-server of the tests' own: started on a Unix socket (or a loopback
 * port) in a temporary directory, killed with the test program
 * (PDEATHSIG) and at tu_redis_stop. Tests that need one skip when the
 * redis-server program is not installed.
 */
#ifndef TU_REDIS_SERVER_H
#define TU_REDIS_SERVER_H

#include <sys/types.h>

struct tu_redis {
    pid_t pid;
    int   port;                 /* 0: Unix socket only */
    char  dir[96];
    char  sock[160];
    char  url[256];             /* unix:///... or redis://127.0.0.1:port */
    char  conf[512];            /* extra "--name value" arguments, space-separated */
};

/* Is redis-server installed? */
int  tu_redis_available(void);
/* Starts a server (EXTRA: more arguments, e.g. "--appendonly yes", may be
 * NULL) in a new temporary directory; fails the test if it does not answer
 * PING within 20 s. PORT 0: a Unix socket. */
void tu_redis_start(struct tu_redis *r, const char *extra, int port);
/* Kills it with SIG (SIGKILL, SIGTERM) and reaps it; its directory stays
 * for a restart. */
void tu_redis_kill(struct tu_redis *r, int sig);
/* Starts it again with the same arguments, socket and directory. */
void tu_redis_restart(struct tu_redis *r);
/* Kills it (if running) and removes its directory. */
void tu_redis_stop(struct tu_redis *r);
/* Sends one command (words separated by spaces) and returns its integer or
 * status answer's first character / -1 on error. With NOREPLY the answer is
 * not awaited (DEBUG SLEEP). */
long long tu_redis_cmd(const struct tu_redis *r, const char *cmd, int noreply);

#endif
