/*
 * The peers. Each keeps its lock where a user would: the CAS word and the
 * robust mutex in a shared mapping (the floor), flock and OFD locks on a file
 * of their own in the bench's temporary folder, a POSIX named semaphore,
 * a shmlease table, and Redis (redis.c).
 */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

struct bench_env g_env;

/* ---- CAS word: the floor -------------------------------------------------- */

static int cas_attach(struct pinst *pi) { (void)pi; return 0; }
static void cas_detach(struct pinst *pi) { (void)pi; }

static int cas_try(struct pinst *pi)
{
    (void)pi;
    uint32_t z = 0;
    return __atomic_compare_exchange_n(&g_env.sh->cas_word, &z, 1, 0,
                                       __ATOMIC_ACQUIRE, __ATOMIC_RELAXED) ? 0 : 1;
}

static int cas_acquire(struct pinst *pi)
{
    (void)pi;
    uint32_t *w = &g_env.sh->cas_word;
    for (unsigned spins = 0;; spins++) {
        uint32_t z = 0;
        if (__atomic_load_n(w, __ATOMIC_RELAXED) == 0 &&
            __atomic_compare_exchange_n(w, &z, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
            return 0;
        if ((spins & 15) == 15)
            sched_yield();     /* 2 cores, up to 8 spinners: let the holder run */
        else
            cpu_relax();
    }
}

static int cas_release(struct pinst *pi)
{
    (void)pi;
    __atomic_store_n(&g_env.sh->cas_word, 0, __ATOMIC_RELEASE);
    return 0;
}

/* ---- robust process-shared mutex ------------------------------------------ */

static int rm_attach(struct pinst *pi) { (void)pi; return 0; }
static void rm_detach(struct pinst *pi) { (void)pi; }

static int rm_result(struct pinst *pi, int r)
{
    if (r == EOWNERDEAD) {          /* the holder died: ours now, repair */
        pi->owner_dead++;
        pthread_mutex_consistent(&g_env.sh->rmutex);
        return 0;
    }
    if (r == EBUSY)
        return 1;
    return r ? -r : 0;
}
static int rm_try(struct pinst *pi)     { return rm_result(pi, pthread_mutex_trylock(&g_env.sh->rmutex)); }
static int rm_acquire(struct pinst *pi)
{
    int r = rm_result(pi, pthread_mutex_lock(&g_env.sh->rmutex));
    return r == 1 ? -EBUSY : r;
}
static int rm_release(struct pinst *pi)
{
    (void)pi;
    int r = pthread_mutex_unlock(&g_env.sh->rmutex);
    return r ? -r : 0;
}

/* ---- flock(2) ------------------------------------------------------------- */

static int file_attach(struct pinst *pi, const char *path)
{
    pi->fd = open(path, O_RDWR | O_CLOEXEC);   /* our own open file description */
    return pi->fd < 0 ? -errno : 0;
}
static void file_detach(struct pinst *pi)
{
    if (pi->fd >= 0)
        close(pi->fd);
    pi->fd = -1;
}

static int fl_attach(struct pinst *pi) { return file_attach(pi, g_env.flock_path); }
static int fl_try(struct pinst *pi)
{
    if (flock(pi->fd, LOCK_EX | LOCK_NB) == 0)
        return 0;
    return errno == EWOULDBLOCK ? 1 : -errno;
}
static int fl_acquire(struct pinst *pi)
{
    while (flock(pi->fd, LOCK_EX) != 0)
        if (errno != EINTR)
            return -errno;
    return 0;
}
static int fl_release(struct pinst *pi) { return flock(pi->fd, LOCK_UN) ? -errno : 0; }

/* ---- open-file-description locks (F_OFD_SETLKW) ---------------------------- */

static int ofd_attach(struct pinst *pi) { return file_attach(pi, g_env.ofd_path); }
static int ofd_set(struct pinst *pi, int cmd, short type)
{
    struct flock fl;
    memset(&fl, 0, sizeof fl);       /* l_pid must be 0 for OFD locks */
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = 0;
    fl.l_len = 1;
    return fcntl(pi->fd, cmd, &fl);
}
static int ofd_try(struct pinst *pi)
{
    if (ofd_set(pi, F_OFD_SETLK, F_WRLCK) == 0)
        return 0;
    return (errno == EAGAIN || errno == EACCES) ? 1 : -errno;
}
static int ofd_acquire(struct pinst *pi)
{
    while (ofd_set(pi, F_OFD_SETLKW, F_WRLCK) != 0)
        if (errno != EINTR)
            return -errno;
    return 0;
}
static int ofd_release(struct pinst *pi) { return ofd_set(pi, F_OFD_SETLK, F_UNLCK) ? -errno : 0; }

/* ---- POSIX named semaphore ------------------------------------------------- */

static int sem_attach_(struct pinst *pi)
{
    pi->sem = sem_open(g_env.sem_name, 0);
    return pi->sem == SEM_FAILED ? (pi->sem = NULL, -errno) : 0;
}
static void sem_detach_(struct pinst *pi)
{
    if (pi->sem)
        sem_close(pi->sem);
    pi->sem = NULL;
}
static int sem_try(struct pinst *pi)
{
    if (sem_trywait(pi->sem) == 0)
        return 0;
    return errno == EAGAIN ? 1 : -errno;
}
static int sem_acquire(struct pinst *pi)
{
    while (sem_wait(pi->sem) != 0)
        if (errno != EINTR)
            return -errno;
    return 0;
}
static int sem_release(struct pinst *pi) { return sem_post(pi->sem) ? -errno : 0; }

/* ---- shmlease --------------------------------------------------------------- */

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

/* ---- table -------------------------------------------------------------- */

static const struct peer_ops g_ops[PEER__COUNT] = {
    [PEER_CAS]      = { "cas-word",     cas_attach,  cas_try, cas_acquire, cas_release, cas_detach },
    [PEER_RMUTEX]   = { "robust-mutex", rm_attach,   rm_try,  rm_acquire,  rm_release,  rm_detach },
    [PEER_SHMLEASE] = { "shmlease",     shm_attach,  shm_try, shm_acquire, shm_release, shm_detach },
    [PEER_FLOCK]    = { "flock",        fl_attach,   fl_try,  fl_acquire,  fl_release,  file_detach },
    [PEER_OFD]      = { "ofd-lock",     ofd_attach,  ofd_try, ofd_acquire, ofd_release, file_detach },
    [PEER_SEM]      = { "posix-sem",    sem_attach_, sem_try, sem_acquire, sem_release, sem_detach_ },
};

const struct peer_ops *peer(int id)
{
    return id == PEER_REDIS ? &redis_ops : &g_ops[id];
}

int peer_available(int id)
{
    return id != PEER_REDIS || g_env.have_redis;
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
