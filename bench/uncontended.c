/*
 * Scenario "uncontended": acquire+release, one process, one key, no other
 * process involved. Writes uncontended.csv.
 */
#include "bench.h"

#include <errno.h>
#include <math.h>
#include <string.h>

struct s1ctx {
    const struct peer_ops *ops;
    struct pinst *pi;
    int use_try;
};

static int op_acq_rel(void *c)
{
    struct s1ctx *x = c;
    int r = x->use_try ? x->ops->try_acquire(x->pi) : x->ops->acquire(x->pi);
    if (r != 0)
        return r == 1 ? -EBUSY : r;
    return x->ops->release(x->pi);
}

void scenario_uncontended(void)
{
    printf("\n## `uncontended`: acquire+release, one process, one key\n\n");
    printf("Time of one acquire plus one release, no other process involved. "
           "Median and p99 over %d batches; each batch value is the mean ns/op of "
           "N back-to-back operations (N sized to ~%.0f ms per batch, after %.0f ms warm-up).\n\n",
           g_cfg.batches, g_cfg.batch_ms, g_cfg.warm_ms);
    printf("| peer | call | median | p99 | vs shmlease | N/batch |\n");
    printf("|---|---|---:|---:|---:|---:|\n");
    FILE *csv = csv_open("uncontended.csv", "peer,call,median_ns,p99_ns,min_ns,max_ns,batches,ops_per_batch");

    struct { int id; int use_try; const char *label; const char *call; } rows[] = {
        { PEER_CAS,      1, "cas-word",   "CAS 0->1, store 0" },
        { PEER_RMUTEX,   0, "robust-mutex", "pthread_mutex_lock/unlock (robust, pshared)" },
        { PEER_SHMLEASE, 1, "shmlease",   "shmlease_acquire(wait_ms=0) + shmlease_release" },
        { PEER_SHMLEASE, 0, "shmlease-wait", "shmlease_acquire(wait_ms=-1) + shmlease_release" },
        { PEER_OFD,      0, "ofd-lock",   "fcntl F_OFD_SETLKW / F_UNLCK" },
        { PEER_FLOCK,    0, "flock",      "flock LOCK_EX / LOCK_UN" },
        { PEER_SEM,      0, "posix-sem",  "sem_wait / sem_post" },
        { PEER_REDIS,    0, "redis",      "SET NX PX + EVALSHA compare-and-delete" },
    };
    enum { NROWS = sizeof rows / sizeof rows[0] };
    struct batch_res res[NROWS];
    char errs[NROWS][64];
    double shm_med = NAN;
    for (size_t i = 0; i < NROWS; i++) {
        int id = rows[i].id;
        errs[i][0] = 0;
        memset(&res[i], 0, sizeof res[i]);
        if (!peer_available(id)) {
            snprintf(errs[i], sizeof errs[i], "skipped");
            continue;
        }
        progress("[uncontended] %s", rows[i].label);
        const struct peer_ops *ops = peer(id);
        struct pinst pi;
        pinst_init(&pi, id);
        int r = ops->attach(&pi);
        if (r == 0) {
            struct s1ctx x = { ops, &pi, rows[i].use_try };
            measure_batches(op_acq_rel, &x, &res[i]);
            r = res[i].err;
            ops->detach(&pi);
        }
        if (r != 0) {
            snprintf(errs[i], sizeof errs[i], "ERROR: %s", peer_errname(r));
            g_failed = 1;
            continue;
        }
        if (strcmp(rows[i].label, "shmlease") == 0)
            shm_med = res[i].s.median;
        if (strcmp(rows[i].label, "shmlease-wait") != 0)
            g_res.uncontended_med[id] = res[i].s.median;
    }
    for (size_t i = 0; i < NROWS; i++) {
        struct batch_res *br = &res[i];
        if (errs[i][0]) {
            printf("| %s | %s | %s | | | |\n", rows[i].label, rows[i].call, errs[i]);
            continue;
        }
        printf("| %s | %s | %s | %s | %s | %ld |\n", rows[i].label, rows[i].call,
               T(br->s.median), T(br->s.p99), X(br->s.median / shm_med), br->ops_per_batch);
        if (csv)
            fprintf(csv, "%s,\"%s\",%.2f,%.2f,%.2f,%.2f,%d,%ld\n", rows[i].label, rows[i].call,
                    br->s.median, br->s.p99, br->s.min, br->s.max, br->batches, br->ops_per_batch);
    }
    if (csv)
        fclose(csv);
    printf("\n'vs shmlease' = the peer's median / shmlease's median (wait_ms=0 row); "
           "the CAS word is the floor no lock can beat.\n");
}
