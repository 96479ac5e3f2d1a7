/*
 * Redis backend: connections to the server (docs/redis-backend.md,
 * "Connections and failures"). A pool per table handle: a call takes an idle
 * connection (or makes one), runs one command and gives it back. Every
 * network step has a time bound; a call that loses its connection connects
 * again, for up to the URL's retry_ms, and runs the command again only when
 * that is safe (the command is idempotent, or was refused unrun). A Cluster
 * node's MOVED/ASK answer moves the pool to the node named (all of a
 * table's keys live in one slot).
 */
#ifndef SHMLEASE_RCONN_H
#define SHMLEASE_RCONN_H

#include "rurl.h"

#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

struct redisContext;
struct redisReply;

struct rconn {
    struct redisContext *c;
    uint32_t timeout_ms;          /* the socket's timeout now */
    struct rconn *next;
};

struct rpool {
    struct rurl url;
    pthread_mutex_t mu;           /* the fields below */
    struct rconn *idle;
    unsigned nidle;
    char     node_host[RURL_HOST_MAX + 1];  /* after MOVED: the node to use, else "" */
    int      node_port;
};

/* The most commands one call sends (EVALSHA sha nkeys keys... args...). */
#define RCMD_ARGS_MAX 20

struct rcmd {
    int         argc;
    const char *argv[RCMD_ARGS_MAX];
    size_t      len[RCMD_ARGS_MAX];
};

/* Call flags. */
#define RCALL_IDEMPOTENT 1u   /* may be sent again after a lost answer */

void shmlease__rpool_init(struct rpool *p, const struct rurl *u);
void shmlease__rpool_destroy(struct rpool *p);
/* In a fork child: forget the parent's connections without a word on them. */
void shmlease__rpool_forget(struct rpool *p);

/* Takes a connection (an idle one, or a new one made before DEADLINE_MS on
 * the monotonic clock). 0, or -ECONNREFUSED, -EACCES (AUTH refused),
 * -EINVAL (SELECT refused: no such db), -ENOMEM. */
int  shmlease__rconn_get(struct rpool *p, struct rconn **out, uint64_t deadline_ms);
/* Gives C back; BROKEN: it is closed instead. */
void shmlease__rconn_put(struct rpool *p, struct rconn *c, int broken);

/* Appends a string / a number to CMD. */
void shmlease__rcmd_add(struct rcmd *cmd, const void *s, size_t n);
void shmlease__rcmd_addu(struct rcmd *cmd, char *buf, size_t bufsz, uint64_t v);

/*
 * Runs CMD (script SCRIPT: CMD holds its keys and args, after "EVALSHA sha
 * nkeys"; or SCRIPT < 0: CMD is the whole command) and returns its answer in
 * *OUT (freeReplyObject by the caller). Connects and sends again as the
 * flags allow until DEADLINE_MS (0: now + the URL's retry_ms). The answer
 * may be an error reply only when it is one the caller should see (none of
 * the retried or mapped ones below). Returns 0, or
 *   -ECONNREFUSED  no connection could be made in time
 *   -ECONNRESET    the connection broke during the call: the command may or
 *                  may not have run (and could not be sent again safely)
 *   -ETIME         no answer within the URL's timeout_ms (the same: may have run)
 *   -EACCES        refused by the server's access control (NOAUTH, NOPERM...)
 *   -ENOSPC        the server is out of memory (OOM)
 *   -EPROTO        an answer we do not understand, or a script error
 */
int  shmlease__rcall(struct rpool *p, int script, struct rcmd *cmd, unsigned flags,
                     uint64_t deadline_ms, struct redisReply **out);

/* SIGPIPE blocked around network I/O in the calling thread (a server gone
 * away must not kill the caller); restore takes back one the I/O raised. */
struct rpipe_guard {
    sigset_t old;
    int pending_before;
};
void shmlease__rpipe_block(struct rpipe_guard *g);
void shmlease__rpipe_restore(struct rpipe_guard *g);

/* Milliseconds on the monotonic clock. */
uint64_t shmlease__rnow_ms(void);

#endif
