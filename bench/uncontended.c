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
    { PEER_SHMLEASE_REDIS, 1, "shmlease-redis",
      "shmlease_acquire(wait_ms=0) + shmlease_release, backend unix://.../redis.sock" },
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

static int op_ping(void *c)
{
    return redis_ping(c);
}

/* The Redis rows in round trips: each median over one PING's (a round
 * trip on the same socket, measured the same way). */
static void print_round_trips(const struct batch_res *res, const char (*errs)[64])
{
    if (!peer_available(PEER_REDIS))
        return;
    progress("[uncontended] PING");
    struct pinst pi;
    pinst_init(&pi, PEER_REDIS);
    struct batch_res ping;
    memset(&ping, 0, sizeof ping);
    int r = peer(PEER_REDIS)->attach(&pi);
    if (r == 0) {
        measure_batches(op_ping, &pi, &ping);
        r = ping.err;
        peer(PEER_REDIS)->detach(&pi);
    }
    if (r != 0) {
        printf("\nPING round trip: ERROR: %s\n", peer_errname(r));
        g_failed = 1;
        return;
    }
    g_res.redis_ping_med = ping.s.median;
    printf("\nRound trips (one PING and its answer on the same Unix socket, the unit): "
           "PING median %s, p99 %s.\n\n", T(ping.s.median), T(ping.s.p99));
    printf("| peer | acquire+release median | round trips per acquire+release |\n");
    printf("|---|---:|---:|\n");
    double shm_redis = NAN, redis = NAN;
    for (size_t i = 0; i < NROWS; i++) {
        if (g_rows[i].id != PEER_SHMLEASE_REDIS && g_rows[i].id != PEER_REDIS)
            continue;
        if (errs[i][0]) {
            printf("| %s | %s | |\n", g_rows[i].label, errs[i]);
            continue;
        }
        printf("| %s | %s | %.2f |\n", g_rows[i].label, T(res[i].s.median),
               res[i].s.median / ping.s.median);
        if (g_rows[i].id == PEER_SHMLEASE_REDIS)
            shm_redis = res[i].s.median;
        else
            redis = res[i].s.median;
    }
    if (!isnan(shm_redis) && !isnan(redis))
        printf("\nshmlease-redis over the SET NX PX lock: %s per acquire+release = %.2f round "
               "trips per call (acquire and release are a call each; target <= 1).\n",
               T(shm_redis - redis), (shm_redis - redis) / ping.s.median / 2.0);
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
    print_round_trips(res, (const char (*)[64])errs);
    breakdown_print(shm_med);
}
