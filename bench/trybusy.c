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

struct trybusy_ctx { const struct peer_ops *ops; struct pinst *pi; };

static int op_try_busy(void *c)
{
    struct trybusy_ctx *x = c;
    int r = x->ops->try_acquire(x->pi);
    if (r == 1)
        return 0;
    if (r == 0) {                  /* took a lock another process holds */
        x->ops->release(x->pi);
        return -EDEADLK;
    }
    return r;
}

struct row { int id; const char *call; };

static const struct row g_rows[] = {
    { PEER_CAS,      "CAS fails" },
    { PEER_RMUTEX,   "pthread_mutex_trylock -> EBUSY" },
    { PEER_SHMLEASE, "shmlease_acquire(wait_ms=0) -> -EBUSY" },
    { PEER_OFD,      "F_OFD_SETLK -> EAGAIN" },
    { PEER_FLOCK,    "flock LOCK_NB -> EWOULDBLOCK" },
    { PEER_SEM,      "sem_trywait -> EAGAIN" },
    { PEER_REDIS,    "SET NX -> nil" },
};
enum { NROWS = sizeof g_rows / sizeof g_rows[0] };

/* With the holder started: times the refused tries into *res. NULL, or what
 * went wrong (in ebuf when it needs one). */
static const char *measure_refused(int id, struct batch_res *res, char *ebuf, size_t ebufsz)
{
    if (wait_u32_ge(&g_env.sh->ready, 1, 10000) < 0)
        return "holder did not start";
    if (g_env.sh->ready != 1) {
        snprintf(ebuf, ebufsz, "holder: %s", peer_errname(g_env.sh->errors[0]));
        return ebuf;
    }
    const struct peer_ops *ops = peer(id);
    struct pinst pi;
    pinst_init(&pi, id);
    int r = ops->attach(&pi);
    if (r == 0) {
        struct trybusy_ctx x = { ops, &pi };
        measure_batches(op_try_busy, &x, res);
        r = res->err;
        ops->detach(&pi);
    }
    if (r == -EDEADLK)
        return "ACQUIRED A LOCK HELD BY ANOTHER PROCESS";
    if (r != 0) {
        snprintf(ebuf, ebufsz, "%s", peer_errname(r));
        return ebuf;
    }
    return NULL;
}

/* One row: a holder process takes the lock, this one times refused tries,
 * the holder releases. Fills err ("skipped", "ERROR: ...") when it could not. */
static void measure_row(int id, struct batch_res *res, char *err, size_t errsz)
{
    err[0] = 0;
    memset(res, 0, sizeof *res);
    if (!peer_available(id)) {
        snprintf(err, errsz, "skipped");
        return;
    }
    progress("[trybusy] %s", peer(id)->name);
    reset_ctl();
    g_env.sh->cas_word = 0;
    int idarg = id;
    pid_t h = spawn(holder_child, &idarg);
    char ebuf[64];
    const char *e = h < 0 ? "fork failed" : measure_refused(id, res, ebuf, sizeof ebuf);
    __atomic_store_n(&g_env.sh->stop, 1, __ATOMIC_RELEASE);
    if (h > 0 && wait_child(h, 10000, NULL) < 0) {
        kill_child(h);
        if (!e)
            e = "holder hung in release";
    }
    if (e) {
        snprintf(err, errsz, "ERROR: %s", e);
        g_failed = 1;
    }
}

static void print_row(FILE *csv, const struct row *row, const struct batch_res *br, const char *err,
                      double shm_med)
{
    const char *name = peer(row->id)->name;
    if (err[0]) {
        printf("| %s | %s | %s | | |\n", name, row->call, err);
        return;
    }
    printf("| %s | %s | %s | %s | %s |\n", name, row->call, T(br->s.median), T(br->s.p99),
           X(br->s.median / shm_med));
    csv_batch_row(csv, name, row->call, br);
}

void scenario_trybusy(void)
{
    printf("\n## `trybusy`: try-acquire on a key held by another process\n\n");
    printf("Another process holds the lock; this one tries once and is refused. "
           "Median and p99 over %d batches (batch mean ns per refused try).\n\n", g_cfg.batches);
    printf("| peer | call | median | p99 | vs shmlease |\n|---|---|---:|---:|---:|\n");
    FILE *csv = csv_open("trybusy.csv", BATCH_CSV_HEADER);
    struct batch_res res[NROWS];
    char errs[NROWS][96];
    double shm_med = NAN;
    for (size_t i = 0; i < NROWS; i++) {
        measure_row(g_rows[i].id, &res[i], errs[i], sizeof errs[i]);
        if (!errs[i][0])
            g_res.trybusy_med[g_rows[i].id] = res[i].s.median;
        if (!errs[i][0] && g_rows[i].id == PEER_SHMLEASE)
            shm_med = res[i].s.median;
    }
    for (size_t i = 0; i < NROWS; i++)
        print_row(csv, &g_rows[i], &res[i], errs[i], shm_med);
    if (csv)
        fclose(csv);
}
