/*
 * Scenario "uncontended": acquire+release, one process, one key, no other
 * process involved. Writes uncontended.csv.
 */
#include "bench.h"

#include <errno.h>
#include <math.h>
#include <string.h>

struct row { int id; int use_try; const char *label; const char *call; };

static const struct row g_rows[] = {
    { PEER_CAS,      1, "cas-word",   "CAS 0->1, store 0" },
    { PEER_RMUTEX,   0, "robust-mutex", "pthread_mutex_lock/unlock (robust, pshared)" },
    { PEER_SHMLEASE, 1, "shmlease",   "shmlease_acquire(wait_ms=0) + shmlease_release" },
    { PEER_SHMLEASE, 0, "shmlease-wait", "shmlease_acquire(wait_ms=-1) + shmlease_release" },
    { PEER_OFD,      0, "ofd-lock",   "fcntl F_OFD_SETLKW / F_UNLCK" },
    { PEER_FLOCK,    0, "flock",      "flock LOCK_EX / LOCK_UN" },
    { PEER_SEM,      0, "posix-sem",  "sem_wait / sem_post" },
    { PEER_REDIS,    0, "redis",      "SET NX PX + EVALSHA compare-and-delete" },
};
enum { NROWS = sizeof g_rows / sizeof g_rows[0] };

struct uncontended_ctx {
    const struct peer_ops *ops;
    struct pinst *pi;
    int use_try;
};

static int op_acq_rel(void *c)
{
    struct uncontended_ctx *x = c;
    int r = x->use_try ? x->ops->try_acquire(x->pi) : x->ops->acquire(x->pi);
    if (r != 0)
        return r == 1 ? -EBUSY : r;
    return x->ops->release(x->pi);
}

/* Times one row into *res; fills err ("skipped", "ERROR: ...") when it could not. */
static void measure_row(const struct row *row, struct batch_res *res, char *err, size_t errsz)
{
    int id = row->id;
    err[0] = 0;
    memset(res, 0, sizeof *res);
    if (!peer_available(id)) {
        snprintf(err, errsz, "skipped");
        return;
    }
    progress("[uncontended] %s", row->label);
    const struct peer_ops *ops = peer(id);
    struct pinst pi;
    pinst_init(&pi, id);
    int r = ops->attach(&pi);
    if (r == 0) {
        struct uncontended_ctx x = { ops, &pi, row->use_try };
        measure_batches(op_acq_rel, &x, res);
        r = res->err;
        ops->detach(&pi);
    }
    if (r != 0) {
        snprintf(err, errsz, "ERROR: %s", peer_errname(r));
        g_failed = 1;
    }
}

static void print_row(FILE *csv, const struct row *row, const struct batch_res *br, const char *err,
                      double shm_med)
{
    if (err[0]) {
        printf("| %s | %s | %s | | | |\n", row->label, row->call, err);
        return;
    }
    printf("| %s | %s | %s | %s | %s | %ld |\n", row->label, row->call,
           T(br->s.median), T(br->s.p99), X(br->s.median / shm_med), br->ops_per_batch);
    csv_batch_row(csv, row->label, row->call, br);
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
    FILE *csv = csv_open("uncontended.csv", BATCH_CSV_HEADER);

    struct batch_res res[NROWS];
    char errs[NROWS][64];
    double shm_med = NAN;
    for (size_t i = 0; i < NROWS; i++) {
        measure_row(&g_rows[i], &res[i], errs[i], sizeof errs[i]);
        if (errs[i][0])
            continue;
        if (strcmp(g_rows[i].label, "shmlease") == 0)
            shm_med = res[i].s.median;
        if (strcmp(g_rows[i].label, "shmlease-wait") != 0)
            g_res.uncontended_med[g_rows[i].id] = res[i].s.median;
    }
    for (size_t i = 0; i < NROWS; i++)
        print_row(csv, &g_rows[i], &res[i], errs[i], shm_med);
    if (csv)
        fclose(csv);
    printf("\n'vs shmlease' = the peer's median / shmlease's median (wait_ms=0 row); "
           "the CAS word is the floor no lock can beat.\n");
    breakdown_print(shm_med);
}
