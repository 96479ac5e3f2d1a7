/*
 * Scenario "trybusy": try-acquire on a key another process holds; the time of
 * the refused attempt. Writes trybusy.csv.
 */
#include "bench.h"

#include <errno.h>
#include <math.h>
#include <string.h>

static int holder_child(void *arg)
{
    int id = *(int *)arg;
    struct shared *sh = g_env.sh;
    const struct peer_ops *ops = peer(id);
    struct pinst pi;
    pinst_init(&pi, id);
    int r = ops->attach(&pi);
    if (r == 0)
        r = ops->acquire(&pi);
    if (r != 0) {
        sh->errors[0] = r;
        __atomic_store_n(&sh->ready, 2, __ATOMIC_RELEASE);
        return 1;
    }
    __atomic_store_n(&sh->ready, 1, __ATOMIC_RELEASE);
    wait_u32_ge(&sh->stop, 1, 600000);
    ops->release(&pi);
    ops->detach(&pi);
    return 0;
}

struct s2ctx { const struct peer_ops *ops; struct pinst *pi; };

static int op_try_busy(void *c)
{
    struct s2ctx *x = c;
    int r = x->ops->try_acquire(x->pi);
    if (r == 1)
        return 0;
    if (r == 0) {                  /* took a lock another process holds */
        x->ops->release(x->pi);
        return -EDEADLK;
    }
    return r;
}

void scenario_trybusy(void)
{
    printf("\n## `trybusy`: try-acquire on a key held by another process\n\n");
    printf("Another process holds the lock; this one tries once and is refused. "
           "Median and p99 over %d batches (batch mean ns per refused try).\n\n", g_cfg.batches);
    printf("| peer | call | median | p99 | vs shmlease |\n|---|---|---:|---:|---:|\n");
    FILE *csv = csv_open("trybusy.csv", "peer,call,median_ns,p99_ns,min_ns,max_ns,batches,ops_per_batch");
    struct { int id; const char *call; } rows[] = {
        { PEER_CAS,      "CAS fails" },
        { PEER_RMUTEX,   "pthread_mutex_trylock -> EBUSY" },
        { PEER_SHMLEASE, "shmlease_acquire(wait_ms=0) -> -EBUSY" },
        { PEER_OFD,      "F_OFD_SETLK -> EAGAIN" },
        { PEER_FLOCK,    "flock LOCK_NB -> EWOULDBLOCK" },
        { PEER_SEM,      "sem_trywait -> EAGAIN" },
        { PEER_REDIS,    "SET NX -> nil" },
    };
    enum { NROWS = sizeof rows / sizeof rows[0] };
    struct batch_res res[NROWS];
    char errs[NROWS][96];
    double shm_med = NAN;
    for (size_t i = 0; i < NROWS; i++) {
        int id = rows[i].id;
        const char *name = peer(id)->name;
        errs[i][0] = 0;
        memset(&res[i], 0, sizeof res[i]);
        if (!peer_available(id)) {
            snprintf(errs[i], sizeof errs[i], "skipped");
            continue;
        }
        progress("[trybusy] %s", name);
        reset_ctl();
        g_env.sh->cas_word = 0;
        int idarg = id;
        pid_t h = spawn(holder_child, &idarg);
        const char *err = NULL;
        char ebuf[64];
        if (h < 0) {
            err = "fork failed";
        } else if (wait_u32_ge(&g_env.sh->ready, 1, 10000) < 0) {
            err = "holder did not start";
        } else if (g_env.sh->ready != 1) {
            snprintf(ebuf, sizeof ebuf, "holder: %s", peer_errname(g_env.sh->errors[0]));
            err = ebuf;
        } else {
            const struct peer_ops *ops = peer(id);
            struct pinst pi;
            pinst_init(&pi, id);
            int r = ops->attach(&pi);
            if (r == 0) {
                struct s2ctx x = { ops, &pi };
                measure_batches(op_try_busy, &x, &res[i]);
                r = res[i].err;
                ops->detach(&pi);
            }
            if (r == -EDEADLK) {
                err = "ACQUIRED A LOCK HELD BY ANOTHER PROCESS";
            } else if (r != 0) {
                snprintf(ebuf, sizeof ebuf, "%s", peer_errname(r));
                err = ebuf;
            }
        }
        __atomic_store_n(&g_env.sh->stop, 1, __ATOMIC_RELEASE);
        if (h > 0 && wait_child(h, 10000, NULL) < 0) {
            kill_child(h);
            if (!err)
                err = "holder hung in release";
        }
        if (err) {
            snprintf(errs[i], sizeof errs[i], "ERROR: %s", err);
            g_failed = 1;
            continue;
        }
        if (id == PEER_SHMLEASE)
            shm_med = res[i].s.median;
    }
    for (size_t i = 0; i < NROWS; i++) {
        const char *name = peer(rows[i].id)->name;
        struct batch_res *br = &res[i];
        if (errs[i][0]) {
            printf("| %s | %s | %s | | |\n", name, rows[i].call, errs[i]);
            continue;
        }
        printf("| %s | %s | %s | %s | %s |\n", name, rows[i].call, T(br->s.median), T(br->s.p99),
               X(br->s.median / shm_med));
        if (csv)
            fprintf(csv, "%s,\"%s\",%.2f,%.2f,%.2f,%.2f,%d,%ld\n", name, rows[i].call, br->s.median,
                    br->s.p99, br->s.min, br->s.max, br->batches, br->ops_per_batch);
    }
    if (csv)
        fclose(csv);
}
