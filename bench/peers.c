/*
 * The peers' registry and what they share: the table of peers (one file each:
 * peer_cas_word.c, peer_robust_mutex.c, peer_shmlease.c, peer_flock.c,
 * peer_ofd_lock.c, peer_posix_sem.c, peer_redis.c), the per-process instance,
 * and the setup the parent does once. Each peer keeps its lock where a user
 * would: the CAS word and the robust mutex in a shared mapping (the floor),
 * flock and OFD locks on a file of their own in the bench's temporary folder,
 * a POSIX named semaphore, a shmlease table, and Redis.
 */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct bench_env g_env;

static const struct peer_ops *const g_ops[PEER__COUNT] = {
    [PEER_CAS]      = &peer_cas_word_ops,
    [PEER_RMUTEX]   = &peer_robust_mutex_ops,
    [PEER_SHMLEASE] = &peer_shmlease_ops,
    [PEER_SHMLEASE_FAIR] = &peer_shmlease_fair_ops,
    [PEER_FLOCK]    = &peer_flock_ops,
    [PEER_OFD]      = &peer_ofd_lock_ops,
    [PEER_SEM]      = &peer_posix_sem_ops,
    [PEER_REDIS]    = &peer_redis_ops,
    [PEER_SHMLEASE_REDIS] = &peer_shmlease_redis_ops,
};

const struct peer_ops *peer(int id)
{
    return g_ops[id];
}

int peer_available(int id)
{
    return (id != PEER_REDIS && id != PEER_SHMLEASE_REDIS) || g_env.have_redis;
}

void pinst_init(struct pinst *pi, int id)
{
    memset(pi, 0, sizeof *pi);
    pi->id = id;
    pi->fd = -1;
    pi->key = BENCH_KEY;
    pi->ttl_ms = LONG_TTL_MS;
}

const char *peer_errname(int rc)
{
    return shmlease_errname(rc);
}

/* ---- the file locks' open and close (flock, ofd-lock) ------------------------ */

int peer_file_attach(struct pinst *pi, const char *path)
{
    pi->fd = open(path, O_RDWR | O_CLOEXEC);   /* our own open file description */
    return pi->fd < 0 ? -errno : 0;
}

void peer_file_detach(struct pinst *pi)
{
    if (pi->fd >= 0)
        close(pi->fd);
    pi->fd = -1;
}

/* ---- setup, in the parent, once --------------------------------------------- */

static int make_file(char *out, size_t outsz, const char *leaf)
{
    snprintf(out, outsz, "%s/%s", g_env.tmpdir, leaf);
    int fd = open(out, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    close(fd);
    cleanup_add_file(out);
    return 0;
}

int peers_setup(void)
{
    int r;
    g_env.sh = shared_alloc(sizeof *g_env.sh);
    if (!g_env.sh)
        return -ENOMEM;

    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    r = pthread_mutex_init(&g_env.sh->rmutex, &a);
    pthread_mutexattr_destroy(&a);
    if (r)
        return -r;

    snprintf(g_env.tmpdir, sizeof g_env.tmpdir, "/tmp/shmlease-bench.%d.XXXXXX", (int)getpid());
    if (!mkdtemp(g_env.tmpdir))
        return -errno;
    cleanup_add_dir(g_env.tmpdir);
    if ((r = make_file(g_env.flock_path, sizeof g_env.flock_path, "flock.lock")) < 0 ||
        (r = make_file(g_env.ofd_path, sizeof g_env.ofd_path, "ofd.lock")) < 0)
        return r;

    snprintf(g_env.sem_name, sizeof g_env.sem_name, "/shmlease-bench-%d", (int)getpid());
    sem_t *s = sem_open(g_env.sem_name, O_CREAT | O_EXCL, 0600, 1);
    if (s == SEM_FAILED)
        return -errno;
    cleanup_add_sem(g_env.sem_name);
    sem_close(s);

    snprintf(g_env.table_name, sizeof g_env.table_name, "bench-%d", (int)getpid());
    shmlease_table *t;
    shmlease_options o = { .capacity = 64, .flags = SHMLEASE_OPEN_EXCL };
    r = shmlease_open(g_env.table_name, &o, &t);
    if (r < 0)
        return r;
    cleanup_add_shm(g_env.table_name);
    shmlease_close(t);
    return 0;
}
