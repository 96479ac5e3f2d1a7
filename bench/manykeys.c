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

struct s4ctx {
    shmlease_table *t;
    char (*keys)[24];
    uint32_t *seq;
    uint32_t seqmask;
    uint32_t pos;
    shmlease_lease l;
};

static int op_many(void *c)
{
    struct s4ctx *x = c;
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

void scenario_manykeys(void)
{
    printf("\n## `manykeys`: cost as the table fills\n\n");
    uint32_t levels[4] = { 1, 1000, 100000, 1u << 20 };
    int nlev = g_cfg.quick ? 3 : 4;
    if (g_cfg.big_keys < levels[nlev - 1])
        levels[nlev - 1] = g_cfg.big_keys;
    uint32_t cap = levels[nlev - 1] + 4096;
    if (cap > SHMLEASE_CAPACITY_MAX)
        cap = SHMLEASE_CAPACITY_MAX;

    struct statvfs sv;
    uint64_t need = est_segment(cap), avail = 0;
    if (statvfs("/dev/shm", &sv) == 0)
        avail = (uint64_t)sv.f_bavail * sv.f_frsize;
    while (nlev > 1 && avail < need + (need >> 3) + (64u << 20)) {
        printf("%u live keys: skipped (the table needs ~%llu MB of /dev/shm, %llu MB free)\n\n",
               levels[nlev - 1], (unsigned long long)(need >> 20), (unsigned long long)(avail >> 20));
        if (levels[nlev - 1] >= (1u << 20))
            g_res.manykeys_big_skipped = 1;
        nlev--;
        cap = levels[nlev - 1] + 4096;
        need = est_segment(cap);
    }
    printf("One table of capacity %u. Another handle fills it with held leases (TTL 10 min) "
           "to each level in turn; at each level, acquire(wait_ms=0)+release on keys drawn at random "
           "from a fixed working set of %u other keys (new at first, existing later). "
           "Median and p99 over %d batches (batch mean ns/op).\n\n", cap, WS_KEYS, g_cfg.batches);
    printf("| live leases | median | p99 | vs 1 key | fill time (ns/lease) |\n|---:|---:|---:|---:|---:|\n");

    char name[96];
    snprintf(name, sizeof name, "bench-%d-many", (int)getpid());
    shmlease_options o = { .capacity = cap, .flags = SHMLEASE_OPEN_EXCL };
    shmlease_table *meas = NULL, *fill = NULL;
    int r = shmlease_open(name, &o, &meas);
    if (r == 0)
        cleanup_add_shm(name);
    if (r == 0)
        r = shmlease_open(name, NULL, &fill);
    FILE *csv = csv_open("manykeys.csv", "live_leases,median_ns,p99_ns,min_ns,max_ns,batches,ops_per_batch,fill_ns_per_lease");
    if (r != 0) {
        printf("| ERROR: shmlease_open(capacity %u): %s | | | | |\n", cap, peer_errname(r));
        g_failed = 1;
        goto out;
    }

    char (*keys)[24] = calloc(WS_KEYS, sizeof *keys);
    uint32_t seqn = 1u << 16, *seq = calloc(seqn, sizeof *seq);
    if (!keys || !seq) {
        printf("| ERROR: out of memory | | | | |\n");
        g_failed = 1;
        free(keys);
        free(seq);
        goto out;
    }
    for (uint32_t i = 0; i < WS_KEYS; i++)
        snprintf(keys[i], sizeof keys[i], "ws-%u", i);
    uint64_t xs = 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
    for (uint32_t i = 0; i < seqn; i++) {
        xs ^= xs << 13; xs ^= xs >> 7; xs ^= xs << 17;
        seq[i] = (uint32_t)(xs % WS_KEYS);
    }

    uint32_t filled = 0;
    double base = NAN;
    for (int li = 0; li < nlev; li++) {
        uint32_t target = levels[li];
        progress("[manykeys] filling to %u", target);
        uint64_t ta = now_ns();
        uint32_t from = filled;
        shmlease_acquire_opts ao = { .ttl_ms = LONG_TTL_MS, .wait_ms = 0 };
        for (; filled < target; filled++) {
            char k[32];
            shmlease_lease l;
            snprintf(k, sizeof k, "fill-%u", filled);
            if ((r = shmlease_acquire(fill, k, &ao, &l)) != 0)
                break;
        }
        double fill_ns = filled > from ? (double)(now_ns() - ta) / (double)(filled - from) : NAN;
        if (r != 0) {
            printf("| %u | ERROR filling at %u: %s | | | |\n", target, filled, peer_errname(r));
            g_failed = 1;
            break;
        }
        shmlease_stats st;
        if (shmlease_stats_get(meas, &st) == 0 && st.held < target) {
            printf("| %u | ERROR: stats say %u held | | | |\n", target, st.held);
            g_failed = 1;
        }
        progress("[manykeys] measuring at %u", target);
        struct s4ctx x = { meas, keys, seq, seqn - 1, 0, { 0 } };
        struct batch_res br;
        measure_batches(op_many, &x, &br);
        if (br.err) {
            printf("| %u | ERROR: %s | | | |\n", target,
                   br.err == -EDEADLK ? "a working-set key was busy" : peer_errname(br.err));
            g_failed = 1;
            break;
        }
        if (li == 0)
            base = br.s.median;
        g_res.manykeys_level[g_res.manykeys_n] = target;
        g_res.manykeys_med[g_res.manykeys_n++] = br.s.median;
        printf("| %u | %s | %s | %s | %s |\n", target, T(br.s.median), T(br.s.p99), X(br.s.median / base),
               T(fill_ns));
        if (csv)
            fprintf(csv, "%u,%.2f,%.2f,%.2f,%.2f,%d,%ld,%.1f\n", target, br.s.median, br.s.p99, br.s.min,
                    br.s.max, br.batches, br.ops_per_batch, fill_ns);
    }
    free(keys);
    free(seq);
out:
    if (csv)
        fclose(csv);
    if (r != 0 && meas) {
        shmlease_unlink(name);
        shmlease_close(meas);
        shmlease_close(fill);
        meas = fill = NULL;
    }
    g_big.meas = meas;         /* the memory scenario walks it, then closes it */
    g_big.fill = fill;
    snprintf(g_big.name, sizeof g_big.name, "%s", name);
}
