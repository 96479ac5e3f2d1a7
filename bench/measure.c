/*
 * How the scenarios time and coordinate: batches of back-to-back operations
 * (uncontended, trybusy, manykeys) and the reset of the shared control words
 * between multi-process runs.
 */
#include "bench.h"

#include <math.h>
#include <string.h>

struct results g_res;
int g_nprocs[NPROCS] = { 2, 4, 8, 32, 64, 128 };
int g_nprocs_n = NPROCS;

void results_init(void)
{
    for (int i = 0; i < PEER__COUNT; i++) {
        g_res.uncontended_med[i] = g_res.takeover_med[i] = g_res.takeover_p99[i] = NAN;
        g_res.trybusy_med[i] = NAN;
        for (int j = 0; j < NPROCS; j++)
            g_res.contended_rate[i][j] = g_res.contended_chg[i][j] = NAN;
    }
    g_res.attach_med = g_res.attach_flock_med = NAN;
    g_res.slot_bytes_big = NAN;
}

#define MAX_BATCHES 1000

/* Warm up for g_cfg.warm_ms (also sizes the batches to ~g_cfg.batch_ms each), then
 * time g_cfg.batches batches of N back-to-back operations. */
void measure_batches(op_fn op, void *ctx, struct batch_res *br)
{
    static double v[MAX_BATCHES];
    memset(br, 0, sizeof *br);
    uint64_t t0 = now_ns(), warm = (uint64_t)(g_cfg.warm_ms * 1e6), t_half = 0, t_end;
    long n = 0, n_half = 0;
    int r;
    do {
        for (int i = 0; i < 8; i++)
            if ((r = op(ctx)) != 0) { br->err = r; return; }
        n += 8;
        t_end = now_ns();
        if (!t_half && t_end - t0 >= warm / 2) {
            t_half = t_end;     /* size batches on the second half only: the */
            n_half = n;         /* first may pay one-time costs (new keys)    */
        }
    } while (t_end - t0 < warm);
    double est = n > n_half && t_half ? (double)(t_end - t_half) / (double)(n - n_half)
                                      : (double)(t_end - t0) / (double)n;
    long per = (long)(g_cfg.batch_ms * 1e6 / (est > 0.1 ? est : 0.1));
    if (per < 8) per = 8;
    if (per > (1L << 24)) per = 1L << 24;
    int nb = g_cfg.batches > MAX_BATCHES ? MAX_BATCHES : g_cfg.batches;
    for (int b = 0; b < nb; b++) {
        uint64_t ta = now_ns();
        for (long i = 0; i < per; i++)
            if ((r = op(ctx)) != 0) { br->err = r; return; }
        v[b] = (double)(now_ns() - ta) / (double)per;
    }
    summarize(v, nb, &br->s);
    br->ops_per_batch = per;
    br->batches = nb;
}

void reset_ctl(void)
{
    struct shared *sh = g_env.sh;
    sh->ready = sh->go = sh->stop = sh->phase = sh->waiting = sh->done = 0;
    sh->inside = sh->violations = 0;
    sh->counter = sh->owner_changes = 0;
    sh->last_owner = 0;
    sh->t_mark = 0;
    sh->last_token = 0;
    sh->token_violations = 0;
    memset(sh->counts, 0, sizeof sh->counts);
    memset(sh->errors, 0, sizeof sh->errors);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}
