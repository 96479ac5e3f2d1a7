/*
 * Peer "shmlease": shmlease_acquire / shmlease_release on the bench's table
 * (created by peers_setup), each process with its own handle.
 */
#include "bench.h"

#include <errno.h>
#include <stdio.h>

static int shm_attach(struct pinst *pi)
{
    return shmlease_open(g_env.table_name, NULL, &pi->table);
}
static void shm_detach(struct pinst *pi)
{
    shmlease_close(pi->table);
    pi->table = NULL;
}
static int shm_try(struct pinst *pi)
{
    shmlease_acquire_opts o = { .ttl_ms = pi->ttl_ms, .wait_ms = 0 };
    int r = shmlease_acquire(pi->table, pi->key, &o, &pi->lease);
    return r == -EBUSY ? 1 : r;
}
static int shm_acquire(struct pinst *pi)
{
    shmlease_acquire_opts o = { .ttl_ms = pi->ttl_ms, .wait_ms = SHMLEASE_WAIT_FOREVER };
    return shmlease_acquire(pi->table, pi->key, &o, &pi->lease);
}
static int shm_release(struct pinst *pi) { return shmlease_release(pi->table, &pi->lease); }

const struct peer_ops peer_shmlease_ops = {
    "shmlease", shm_attach, shm_try, shm_acquire, shm_release, shm_detach
};

/* Peer "shmlease-fair": the same with SHMLEASE_ACQUIRE_FAIR (waiters served
 * in arrival order); tries are the default's. */
static int shm_acquire_fair(struct pinst *pi)
{
    shmlease_acquire_opts o = { .ttl_ms = pi->ttl_ms, .wait_ms = SHMLEASE_WAIT_FOREVER,
                                .flags = SHMLEASE_ACQUIRE_FAIR };
    return shmlease_acquire(pi->table, pi->key, &o, &pi->lease);
}

const struct peer_ops peer_shmlease_fair_ops = {
    "shmlease-fair", shm_attach, shm_try, shm_acquire_fair, shm_release, shm_detach
};

/* Peer "shmlease-redis": the same calls, on a table of the same name kept
 * by the bench's redis-server (shmlease_options.backend = its socket's
 * URL): what the library adds to a hand-written SET NX PX lock (peer
 * "redis") on the same server and socket. */
static int shm_attach_redis(struct pinst *pi)
{
    char url[sizeof g_env.redis_sock + 16];
    snprintf(url, sizeof url, "unix://%s", g_env.redis_sock);
    shmlease_options o = { .backend = url };
    return shmlease_open(g_env.table_name, &o, &pi->table);
}

const struct peer_ops peer_shmlease_redis_ops = {
    "shmlease-redis", shm_attach_redis, shm_try, shm_acquire, shm_release, shm_detach
};
