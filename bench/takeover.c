/*
 * Scenario "takeover": the holder is SIGKILLed while a waiter blocks; the time
 * from kill() to the waiter's ownership. Writes takeover.csv and
 * takeover_samples.csv.
 */
#include "bench.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int crash_holder(void *arg)
{
    int id = *(int *)arg;
    struct shared *sh = g_env.sh;
    const struct peer_ops *ops = peer(id);
    struct pinst pi;
    pinst_init(&pi, id);
    if (id == PEER_REDIS)
        pi.ttl_ms = (uint64_t)g_redis_ttl_ms;
    int r = ops->attach(&pi);
    if (r == 0)
        r = ops->acquire(&pi);
    if (r != 0) {
        sh->errors[0] = r;
        __atomic_store_n(&sh->ready, 2, __ATOMIC_RELEASE);
        return 1;
    }
    if (id == PEER_SHMLEASE)
        sh->last_token = pi.lease.fencing_token;
    __atomic_store_n(&sh->ready, 1, __ATOMIC_RELEASE);
    for (;;)
        pause();               /* until SIGKILL */
}

struct waiter_arg { int id; int i; };

static int crash_waiter(void *arg)
{
    struct waiter_arg *a = arg;
    struct shared *sh = g_env.sh;
    const struct peer_ops *ops = peer(a->id);
    struct pinst pi;
    pinst_init(&pi, a->id);
    if (a->id == PEER_REDIS)
        pi.ttl_ms = (uint64_t)g_redis_ttl_ms;
    int r = ops->attach(&pi);
    if (r != 0) {
        sh->errors[1] = r;
        return 1;
    }
    __atomic_store_n(&sh->waiting, 1, __ATOMIC_RELEASE);
    r = ops->acquire(&pi);
    uint64_t t = now_ns();
    if (r != 0) {
        sh->errors[1] = r;
        return 1;
    }
    uint64_t mark = __atomic_load_n(&sh->t_mark, __ATOMIC_ACQUIRE);
    sh->samples[a->i] = mark ? (double)(t - mark) : NAN;   /* NAN: owned before the kill */
    if (a->id == PEER_RMUTEX && pi.owner_dead != 1)
        sh->errors[1] = -EPROTO;          /* took it without EOWNERDEAD */
    if (a->id == PEER_SHMLEASE && pi.lease.fencing_token <= sh->last_token)
        sh->errors[1] = -EPROTO;          /* token not above the dead holder's */
    ops->release(&pi);
    ops->detach(&pi);
    return 0;
}

/* The kills of one peer: the samples in v[0..got), and how many kills saw no
 * takeover within 10 s (fails) or the waiter own the lock before the kill
 * (early). */
struct kills {
    double v[MAX_SAMPLES];
    int    got, fails, early;
    uint64_t xs;                  /* xorshift state of the random pauses */
};

/* Starts a holder, then a waiter blocked behind it: NULL and both pids, or
 * an error string (the children already killed). */
static const char *start_pair(int id, int i, pid_t *h, pid_t *w, char *ebuf, size_t ebufsz)
{
    struct shared *sh = g_env.sh;
    int idarg = id;
    *w = -1;
    if ((*h = spawn(crash_holder, &idarg)) < 0)
        return "fork failed";
    if (wait_u32_ge(&sh->ready, 1, 10000) < 0 || sh->ready != 1) {
        snprintf(ebuf, ebufsz, "holder failed (%s)", peer_errname(sh->errors[0]));
        kill_child(*h);
        return ebuf;
    }
    struct waiter_arg a = { id, i };
    if ((*w = spawn(crash_waiter, &a)) < 0) {
        kill_child(*h);
        return "fork failed";
    }
    if (wait_u32_ge(&sh->waiting, 1, 10000) < 0) {
        kill_child(*h);
        kill_child(*w);
        return "waiter did not start";
    }
    return NULL;
}

/* Kill i of one peer: NULL (the outcome counted in *k), or what went wrong. */
static const char *one_kill(int id, const char *name, int i, struct kills *k, FILE *raw,
                            char *ebuf, size_t ebufsz)
{
    struct shared *sh = g_env.sh;
    reset_ctl();
    sh->samples[i] = NAN;
    pid_t h, w;
    const char *err = start_pair(id, i, &h, &w, ebuf, ebufsz);
    if (err)
        return err;
    wait_blocked(w, 2000);
    /* a random point in time, not always right after the waiter fell
     * asleep: a lock that polls would otherwise always be measured
     * at the worst phase of its polling period */
    k->xs ^= k->xs << 13; k->xs ^= k->xs >> 7; k->xs ^= k->xs << 17;
    sleep_us((long)(k->xs % 3001));
    __atomic_store_n(&sh->t_mark, now_ns(), __ATOMIC_RELEASE);
    kill(h, SIGKILL);
    int st = 0;
    if (wait_child(w, 10000, &st) < 0) {
        kill_child(w);
        k->fails++;
    } else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || sh->errors[1]) {
        snprintf(ebuf, ebufsz, "waiter failed (%s)",
                 sh->errors[1] ? peer_errname(sh->errors[1]) : "crashed");
        err = ebuf;
    } else if (isnan(sh->samples[i])) {
        k->early++;
    } else {
        k->v[k->got++] = sh->samples[i];
        if (raw)
            fprintf(raw, "%s,%d,%.0f\n", name, i, sh->samples[i]);
    }
    kill_child(h);
    if (k->fails >= 3)
        err = "HANG: the waiter did not get the lock within 10 s of the holder's death (3 times)";
    return err;
}

struct row { int id; const char *note; };

/* n kills of one peer, and its table row. */
static void takeover_peer(const struct row *row, int n, FILE *csv, FILE *raw)
{
    int id = row->id;
    const char *name = peer(id)->name;
    struct kills k = { .xs = 0x2545f4914f6cdd1dull ^ ((uint64_t)getpid() << 16) ^ (uint64_t)id };
    const char *err = NULL;
    char ebuf[128];
    for (int i = 0; i < n && !err; i++) {
        if (i % 10 == 0)
            progress("[takeover] %s, kill %d/%d", name, i + 1, n);
        err = one_kill(id, name, i, &k, raw, ebuf, sizeof ebuf);
    }
    if (err) {
        printf("| %s | ERROR: %s | | | %d | |\n", name, err, k.got);
        g_failed = 1;
        g_res.takeover_med[id] = g_res.takeover_p99[id] = NAN;
        return;
    }
    struct summary s;
    summarize(k.v, k.got, &s);
    g_res.takeover_med[id] = s.median;
    g_res.takeover_p99[id] = s.p99;
    char extra[96] = "";
    if (k.fails || k.early)
        snprintf(extra, sizeof extra, " (%d no takeover in 10 s, %d owned before the kill)", k.fails, k.early);
    printf("| %s | %s | %s | %s | %d%s | %s |\n", name, T(s.median), T(s.p99), T(s.max), k.got,
           extra, row->note);
    if (csv)
        fprintf(csv, "%s,%.0f,%.0f,%.0f,%.0f,%d,\"%s\"\n", name, s.median, s.p99, s.min, s.max, k.got,
                row->note);
    if (k.fails)
        g_failed = 1;
}

void scenario_takeover(void)
{
    int n = g_cfg.takeover_samples > MAX_SAMPLES ? MAX_SAMPLES : g_cfg.takeover_samples;
    printf("\n## `takeover`: crash takeover\n\n");
    printf("A holder process owns the lock; a waiter in another process blocks on it; the "
           "holder is SIGKILLed. Time from right before kill() to the moment the waiter owns "
           "the lock. Once the waiter is seen asleep, the kill comes after a random 0-3 ms pause, "
           "so that it falls at a random point of any polling period. Median and p99 over "
           "per-sample values (%d kills per peer).\n\n", n);
    printf("| peer | median | p99 | max | samples | how the waiter learns |\n|---|---:|---:|---:|---:|---|\n");
    FILE *csv = csv_open("takeover.csv", "peer,median_ns,p99_ns,min_ns,max_ns,samples,note");
    FILE *raw = csv_open("takeover_samples.csv", "peer,sample,ns");
    struct row rows[] = {
        { PEER_RMUTEX,   "EOWNERDEAD (kernel robust list)" },
        { PEER_SHMLEASE, "holder's liveness (kernel-held registry byte lock); its 10 min TTL plays no part" },
        { PEER_OFD,      "kernel drops the lock with the last fd" },
        { PEER_FLOCK,    "kernel drops the lock with the last fd" },
        { PEER_REDIS,    "TTL-bound" },
    };
    char redis_note[96];
    snprintf(redis_note, sizeof redis_note, "TTL-bound: PX %d ms expires; waiter polls SET NX every %d µs",
             g_redis_ttl_ms, redis_poll_us());
    rows[4].note = redis_note;
    for (size_t k = 0; k < sizeof rows / sizeof rows[0]; k++) {
        if (!peer_available(rows[k].id)) {
            printf("| %s | skipped | | | | %s |\n", peer(rows[k].id)->name, g_env.redis_why);
            continue;
        }
        takeover_peer(&rows[k], n, csv, raw);
    }
    if (csv)
        fclose(csv);
    if (raw)
        fclose(raw);
    printf("\nposix-sem is not in this table: a SIGKILLed holder never posts, its waiter "
           "blocks forever. cas-word likewise.\n");
}
