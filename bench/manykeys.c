/*
 * Scenario "manykeys": acquire+release on a working set of keys while another
 * handle fills the table with held leases to 1, 1 000, 100 000 and 1 048 576
 * live keys. Leaves its full table open for the memory scenario (g_big).
 * Writes manykeys.csv.
 */
#include "bench.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

struct big_table g_big;

struct manykeys_ctx {
    shmlease_table *t;
    char (*keys)[24];
    uint32_t *seq;
    uint32_t seqmask;
    uint32_t pos;
    shmlease_lease l;
};

static int op_many(void *c)
{
    struct manykeys_ctx *x = c;
    const char *key = x->keys[x->seq[x->pos++ & x->seqmask]];
    shmlease_acquire_opts o = { .ttl_ms = LONG_TTL_MS, .wait_ms = 0 };
    int r = shmlease_acquire(x->t, key, &o, &x->l);
    if (r != 0)
        return r == -EBUSY ? -EDEADLK : r;
    return shmlease_release(x->t, &x->l);
}

#define WS_KEYS 1024u

static uint64_t est_segment(uint32_t cap)
{
    uint64_t nb = 1;
    while (nb < 2ull * cap)
        nb <<= 1;
    return 4096 + 4096ull * 64 + nb * 8 + (uint64_t)cap * 320;
}

/* The levels to fill to (the last capped by --quick, then dropped while
 * /dev/shm lacks room for the table, saying so): their count; *cap the
 * table's capacity. */
static int choose_levels(uint32_t levels[4], uint32_t *cap)
{
    int nlev = g_cfg.quick ? 3 : 4;
    if (g_cfg.big_keys < levels[nlev - 1])
        levels[nlev - 1] = g_cfg.big_keys;
    *cap = levels[nlev - 1] + 4096;
    if (*cap > SHMLEASE_CAPACITY_MAX)
        *cap = SHMLEASE_CAPACITY_MAX;
    struct statvfs sv;
    uint64_t need = est_segment(*cap), avail = 0;
    if (statvfs("/dev/shm", &sv) == 0)
        avail = (uint64_t)sv.f_bavail * sv.f_frsize;
    while (nlev > 1 && avail < need + (need >> 3) + (64u << 20)) {
        printf("%u live keys: skipped (the table needs ~%llu MB of /dev/shm, %llu MB free)\n\n",
               levels[nlev - 1], (unsigned long long)(need >> 20), (unsigned long long)(avail >> 20));
        if (levels[nlev - 1] >= (1u << 20))
            g_res.manykeys_big_skipped = 1;
        nlev--;
        *cap = levels[nlev - 1] + 4096;
        need = est_segment(*cap);
    }
    return nlev;
}

/* The run's state: the measuring and the filling handle on one table, the
 * working set and the random order it is drawn in. */
struct manykeys {
    shmlease_table *meas, *fill;
    char (*keys)[24];
    uint32_t *seq, seqn;
    uint32_t filled;              /* fill-0 .. fill-(filled-1) are held */
    double base;                  /* median at the first level */
};

static int make_working_set(struct manykeys *m)
{
    m->keys = calloc(WS_KEYS, sizeof *m->keys);
    m->seqn = 1u << 16;
    m->seq = calloc(m->seqn, sizeof *m->seq);
    if (!m->keys || !m->seq)
        return -1;
    for (uint32_t i = 0; i < WS_KEYS; i++)
        snprintf(m->keys[i], sizeof m->keys[i], "ws-%u", i);
    uint64_t xs = 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
    for (uint32_t i = 0; i < m->seqn; i++) {
        xs ^= xs << 13; xs ^= xs >> 7; xs ^= xs << 17;
        m->seq[i] = (uint32_t)(xs % WS_KEYS);
    }
    return 0;
}

/* Fills to target held leases: 0 or the failing acquire's result; *fill_ns
 * the mean time per new lease. */
static int fill_to(struct manykeys *m, uint32_t target, double *fill_ns)
{
    int r = 0;
    uint64_t ta = now_ns();
    uint32_t from = m->filled;
    shmlease_acquire_opts ao = { .ttl_ms = LONG_TTL_MS, .wait_ms = 0 };
    for (; m->filled < target; m->filled++) {
        char k[32];
        shmlease_lease l;
        snprintf(k, sizeof k, "fill-%u", m->filled);
        if ((r = shmlease_acquire(m->fill, k, &ao, &l)) != 0)
            break;
    }
    *fill_ns = m->filled > from ? (double)(now_ns() - ta) / (double)(m->filled - from) : NAN;
    return r;
}

/* Level li: fill to target, time the working set, print the row. 0 to go on;
 * 1 to stop (a measurement failed); negative: filling failed. */
static int run_level(struct manykeys *m, int li, uint32_t target, FILE *csv)
{
    progress("[manykeys] filling to %u", target);
    double fill_ns;
    int r = fill_to(m, target, &fill_ns);
    if (r != 0) {
        printf("| %u | ERROR filling at %u: %s | | | |\n", target, m->filled, peer_errname(r));
        g_failed = 1;
        return r;
    }
    shmlease_stats st;
    if (shmlease_stats_get(m->meas, &st) == 0 && st.held < target) {
        printf("| %u | ERROR: stats say %u held | | | |\n", target, st.held);
        g_failed = 1;
    }
    progress("[manykeys] measuring at %u", target);
    struct manykeys_ctx x = { m->meas, m->keys, m->seq, m->seqn - 1, 0, { 0 } };
    struct batch_res br;
    measure_batches(op_many, &x, &br);
    if (br.err) {
        printf("| %u | ERROR: %s | | | |\n", target,
               br.err == -EDEADLK ? "a working-set key was busy" : peer_errname(br.err));
        g_failed = 1;
        return 1;
    }
    if (li == 0)
        m->base = br.s.median;
    g_res.manykeys_level[g_res.manykeys_n] = target;
    g_res.manykeys_med[g_res.manykeys_n++] = br.s.median;
    printf("| %u | %s | %s | %s | %s |\n", target, T(br.s.median), T(br.s.p99), X(br.s.median / m->base),
           T(fill_ns));
    if (csv)
        fprintf(csv, "%u,%.2f,%.2f,%.2f,%.2f,%d,%ld,%.1f\n", target, br.s.median, br.s.p99, br.s.min,
                br.s.max, br.batches, br.ops_per_batch, fill_ns);
    return 0;
}

void scenario_manykeys(void)
{
    printf("\n## `manykeys`: cost as the table fills\n\n");
    uint32_t levels[4] = { 1, 1000, 100000, 1u << 20 }, cap;
    int nlev = choose_levels(levels, &cap);
    printf("One table of capacity %u. Another handle fills it with held leases (TTL 10 min) "
           "to each level in turn; at each level, acquire(wait_ms=0)+release on keys drawn at random "
           "from a fixed working set of %u other keys (new at first, existing later). "
           "Median and p99 over %d batches (batch mean ns/op).\n\n", cap, WS_KEYS, g_cfg.batches);
    printf("| live leases | median | p99 | vs 1 key | fill time (ns/lease) |\n|---:|---:|---:|---:|---:|\n");

    char name[96];
    snprintf(name, sizeof name, "bench-%d-many", (int)getpid());
    shmlease_options o = { .capacity = cap, .flags = SHMLEASE_OPEN_EXCL };
    struct manykeys m = { .base = NAN };
    int r = shmlease_open(name, &o, &m.meas);
    if (r == 0)
        cleanup_add_shm(name);
    if (r == 0)
        r = shmlease_open(name, NULL, &m.fill);
    FILE *csv = csv_open("manykeys.csv", "live_leases,median_ns,p99_ns,min_ns,max_ns,batches,ops_per_batch,fill_ns_per_lease");
    if (r != 0) {
        printf("| ERROR: shmlease_open(capacity %u): %s | | | | |\n", cap, peer_errname(r));
        g_failed = 1;
    } else if (make_working_set(&m) != 0) {
        printf("| ERROR: out of memory | | | | |\n");
        g_failed = 1;
    } else {
        for (int li = 0, rc = 0; li < nlev && rc == 0; li++)
            if ((rc = run_level(&m, li, levels[li], csv)) < 0)
                r = rc;           /* filling failed: the table goes */
    }
    free(m.keys);
    free(m.seq);
    if (csv)
        fclose(csv);
    if (r != 0 && m.meas) {
        shmlease_unlink(name);
        shmlease_close(m.meas);
        shmlease_close(m.fill);
        m.meas = m.fill = NULL;
    }
    g_big.meas = m.meas;       /* the memory scenario walks it, then closes it */
    g_big.fill = m.fill;
    snprintf(g_big.name, sizeof g_big.name, "%s", name);
}
