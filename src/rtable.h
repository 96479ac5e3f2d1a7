/*
 * Redis backend: the state of one table handle (struct rtable, hung on
 * shmlease_table.remote): its connection pool, its owner identity, the
 * names of its keys on the server, and the leases it holds.
 *
 * The leases held. A lease value is a copy the caller keeps; what this
 * handle knows of the lease (its key, its deadline on our clock, whether it
 * was lost) is in a map by fencing token, so that every copy of one lease
 * agrees (a keepalive's renewal moves the deadline of all of them) and a
 * lease lost once stays lost. An entry leaves the map when its lease ends
 * (release, a loss seen) or when its deadline has passed (lost for ever
 * anyway), so the map holds only leases that may still be held.
 */
#ifndef SHMLEASE_RTABLE_H
#define SHMLEASE_RTABLE_H

#include "rconn.h"
#include "shmlease.h"

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#define RT_PREFIX_MAX (SHMLEASE_NAME_MAX + 16)
#define RT_KEYNAME_MAX (RT_PREFIX_MAX + SHMLEASE_KEY_MAX + 4)
#define RT_OWN_MAX 96
#define RT_MAP_BUCKETS 256u
#define RT_FORMAT "1"          /* the layout of a table's keys (rscripts.c) */
#define RT_TTL_MAX (UINT64_C(1) << 40)   /* about 34 years, as the local tables */
#define RT_LEASE_MAGIC UINT64_C(0x52454449534c5345)   /* a Redis lease value */

struct rlease {
    uint64_t tok;
    uint64_t exp;              /* deadline on our monotonic clock, ms */
    struct rlease *next;
    size_t   klen;
    char     key[SHMLEASE_KEY_MAX + 1];
};

struct rtable {
    struct rpool pool;
    int      readonly;
    int      closing;          /* shmlease_close: each release tried once */
    int      server_down;      /* ... and none after one could not be sent */
    pid_t    pid;              /* the process the pool and the leases belong to */
    uint64_t nonce;            /* random, per handle and per fork child */
    char     own[RT_OWN_MAX];  /* owner identity written with our leases */
    size_t   ownlen;
    char     host[65];
    char     prefix[RT_PREFIX_MAX];   /* "shmlease:{NAME}:" */
    size_t   plen;
    uint64_t reqseq;           /* request ids (atomic) */
    pthread_mutex_t mu;        /* the map */
    struct rlease *map[RT_MAP_BUCKETS];
    unsigned nleases;
    struct rtable *next_all;   /* every Redis handle, for fork */
};

/* Sets up RT for table NAME on the server U names; undone by teardown. */
int  shmlease__rt_setup(struct rtable *rt, const struct rurl *u, const char *name);
void shmlease__rt_teardown(struct rtable *rt);

/* The handle's state, made ready for this process (after a fork, the child
 * starts with no connection and no lease). */
struct rtable *shmlease__rt(shmlease_table *t);

/* "shmlease:{T}:SUFFIX" into BUF; its length. */
size_t shmlease__rt_name(const struct rtable *rt, char *buf, const char *suffix, size_t slen);
/* The four keys and the channel of KEY, added to CMD as a lease script wants
 * them (KEYS = lease hash, meta, live, grace; ARGV[1] key, ARGV[2] channel).
 * NAMES gives the room: five buffers of RT_KEYNAME_MAX. */
void shmlease__rt_lease_cmd(const struct rtable *rt, struct rcmd *cmd, const char *key, size_t klen,
                            char names[5][RT_KEYNAME_MAX]);
/* A fresh request id, as text into BUF (24 bytes); its length. */
size_t shmlease__rt_reqid(struct rtable *rt, char *buf);

/* The map: add a lease just acquired; find one (0, or -ESTALE: not held
 * by this handle, lost, or past its deadline, removed then); set its
 * deadline; forget it. */
int  shmlease__rt_add(struct rtable *rt, uint64_t tok, uint64_t exp, const char *key, size_t klen);
int  shmlease__rt_find(struct rtable *rt, uint64_t tok, char *key, size_t *klen, uint64_t *exp);
/* set_exp: 0, or -ESTALE when the lease's current deadline has passed
 * (it was lost before this renewal's answer came: lost for ever). */
int  shmlease__rt_set_exp(struct rtable *rt, uint64_t tok, uint64_t exp);

/* Our deadline for a lease granted or renewed for TTL by a request sent at
 * SENT (our clock, whole ms): SENT + TTL, less RT_CLOCK_MARGIN_MS. The
 * server counts whole ms of its own clock from a moment after SENT; the two
 * roundings differ by less than 1 ms, so our deadline is never after its. */
uint64_t shmlease__rt_deadline(uint64_t sent, uint64_t ttl);
#define RT_CLOCK_MARGIN_MS 2u
void shmlease__rt_forget(struct rtable *rt, uint64_t tok);

/* Fills lease value L for token TOK, deadline EXP. */
void shmlease__rt_lease_value(const struct rtable *rt, shmlease_lease *l, uint64_t tok, uint64_t exp);
/* The token of lease value L of this handle, or 0 (not one of ours). */
uint64_t shmlease__rt_lease_tok(const struct rtable *rt, const shmlease_lease *l);

/* Is the owner OWN (as our leases record it) alive? 1 yes, 0 dead (a
 * process of this host and PID namespace, gone or its PID reused), -1
 * cannot tell (another host or namespace). PID and START receive what OWN
 * records (either may be NULL). */
int  shmlease__rt_owner_alive(const struct rtable *rt, const char *own, int32_t *pid, uint64_t *start);

/* Checks KEY as the local calls do: 0, -EINVAL, -ENAMETOOLONG. */
int  shmlease__rt_check_key(const char *key, size_t *klen);

/* The first element of a script's array answer (an integer), or -1000
 * when the answer is not one. */
long long shmlease__rt_head(const void *reply);

/* Parses a decimal string reply element; 0 when it is not one. */
uint64_t shmlease__rt_u64(const void *reply_element);

#endif
