/*
 * Scenario "wakeup": the time from the holder's release to the moment a
 * waiter blocked in another process owns the lock. Writes wakeup.csv and
 * wakeup_samples.csv.
 */
#include "bench.h"

#include <math.h>
#include <string.h>
#include <sys/wait.h>

struct wake_arg { int id; int n; };

static int wake_child(void *arg)
{
    struct wake_arg *a = arg;
    struct shared *sh = g_env.sh;
    const struct peer_ops *ops = peer(a->id);
    struct pinst pi;
    pinst_init(&pi, a->id);
    int r = ops->attach(&pi);
    if (r != 0) {
        sh->errors[0] = r;
        return 1;
    }
    __atomic_store_n(&sh->ready, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < a->n; i++) {
        if (wait_u32_ge(&sh->phase, (uint32_t)i + 1, 60000) < 0)
            return 2;
        __atomic_store_n(&sh->waiting, (uint32_t)i + 1, __ATOMIC_RELEASE);
        r = ops->acquire(&pi);
        uint64_t t = now_ns();
        if (r != 0) {
            sh->errors[0] = r;
            return 1;
        }
        uint64_t mark = __atomic_load_n(&sh->t_mark, __ATOMIC_ACQUIRE);
        sh->samples[i] = mark ? (double)(t - mark) : NAN;
        __atomic_store_n(&sh->t_mark, 0, __ATOMIC_RELEASE);
        r = ops->release(&pi);
        __atomic_store_n(&sh->done, (uint32_t)i + 1, __ATOMIC_RELEASE);
        if (r != 0) {
            sh->errors[0] = r;
            return 1;
        }
    }
    ops->detach(&pi);
    return 0;
}

/* n releases to the waiter w, each once it is seen waiting: NULL, or what
 * went wrong (in ebuf when it needs one). */
static const char *release_n(const struct peer_ops *ops, struct pinst *pi, pid_t w, int n,
                             int *not_blocked, char *ebuf, size_t ebufsz)
{
    struct shared *sh = g_env.sh;
    int r;
    for (int i = 0; i < n; i++) {
        if ((r = ops->acquire(pi)) != 0) {
            snprintf(ebuf, ebufsz, "acquire: %s", peer_errname(r));
            return ebuf;
        }
        __atomic_store_n(&sh->phase, (uint32_t)i + 1, __ATOMIC_RELEASE);
        if (wait_u32_ge(&sh->waiting, (uint32_t)i + 1, 10000) < 0) {
            ops->release(pi);
            return "waiter lost";
        }
        if (wait_blocked(w, 2000) < 0)
            (*not_blocked)++;
        __atomic_store_n(&sh->t_mark, now_ns(), __ATOMIC_RELEASE);
        if ((r = ops->release(pi)) != 0) {
            snprintf(ebuf, ebufsz, "release: %s", peer_errname(r));
            return ebuf;
        }
        if (wait_u32_ge(&sh->done, (uint32_t)i + 1, 20000) < 0)
            return sh->errors[0] ? "waiter failed" : "HANG: waiter not woken within 20 s";
    }
    return NULL;
}

/* One peer: this process holds and releases, a waiter child wakes n times
 * (its samples land in g_env.sh->samples). NULL, or what went wrong. */
static const char *wake_peer(int id, int n, int *not_blocked, char *ebuf, size_t ebufsz)
{
    const struct peer_ops *ops = peer(id);
    struct shared *sh = g_env.sh;
    struct wake_arg a = { id, n };
    struct pinst pi;
    pinst_init(&pi, id);
    const char *err = NULL;
    int r = ops->attach(&pi);
    pid_t w = -1;
    if (r != 0) {
        snprintf(ebuf, ebufsz, "attach: %s", peer_errname(r));
        err = ebuf;
    } else if ((w = spawn(wake_child, &a)) < 0) {
        err = "fork failed";
    } else if (wait_u32_ge(&sh->ready, 1, 10000) < 0) {
        err = "waiter did not start";
    } else {
        err = release_n(ops, &pi, w, n, not_blocked, ebuf, ebufsz);
    }
    if (w > 0) {
        int st = 0;
        if (wait_child(w, err ? 1000 : 10000, &st) < 0)
            kill_child(w);
        else if (!err && (!WIFEXITED(st) || WEXITSTATUS(st) != 0))
            err = "waiter failed";
    }
    if (pi.fd >= 0 || pi.table || pi.sem || pi.redis)
        ops->detach(&pi);
    return err;
}

static void report_peer(FILE *csv, FILE *raw, const char *name, int n, int not_blocked)
{
    const struct shared *sh = g_env.sh;
    double v[MAX_SAMPLES];
    int m = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(sh->samples[i])) {
            v[m++] = sh->samples[i];
            if (raw)
                fprintf(raw, "%s,%d,%.0f\n", name, i, sh->samples[i]);
        }
    struct summary s;
    summarize(v, m, &s);
    printf("| %s | %s | %s | %s | %d%s |\n", name, T(s.median), T(s.p99), T(s.max), m,
           not_blocked ? " (some not seen blocked)" : "");
    if (csv)
        fprintf(csv, "%s,%.0f,%.0f,%.0f,%.0f,%d,%d\n", name, s.median, s.p99, s.min, s.max, m,
                not_blocked);
}

void scenario_wakeup(void)
{
    int n = g_cfg.wake_samples > MAX_SAMPLES ? MAX_SAMPLES : g_cfg.wake_samples;
    printf("\n## `wakeup`: wake-up latency\n\n");
    printf("The holder writes CLOCK_MONOTONIC to shared memory right before it releases; a "
           "waiter in another process, blocked in its acquire (checked: it sleeps in the "
           "kernel per /proc/PID/stat), reads the clock right after its acquire returns. "
           "Median and p99 over %d per-sample values.\n\n", n);
    printf("| peer | median | p99 | max | samples |\n|---|---:|---:|---:|---:|\n");
    FILE *csv = csv_open("wakeup.csv", "peer,median_ns,p99_ns,min_ns,max_ns,samples,not_blocked");
    FILE *raw = csv_open("wakeup_samples.csv", "peer,sample,ns");
    const int ids[] = { PEER_RMUTEX, PEER_SHMLEASE, PEER_OFD, PEER_FLOCK, PEER_SEM };
    for (size_t k = 0; k < sizeof ids / sizeof ids[0]; k++) {
        const char *name = peer(ids[k])->name;
        progress("[wakeup] %s", name);
        reset_ctl();
        struct shared *sh = g_env.sh;
        char ebuf[96];
        int not_blocked = 0;
        const char *err = wake_peer(ids[k], n, &not_blocked, ebuf, sizeof ebuf);
        if (err) {
            printf("| %s | ERROR: %s%s%s%s | | | |\n", name, err,
                   sh->errors[0] ? " (" : "", sh->errors[0] ? peer_errname(sh->errors[0]) : "",
                   sh->errors[0] ? ")" : "");
            g_failed = 1;
            continue;
        }
        report_peer(csv, raw, name, n, not_blocked);
    }
    if (csv)
        fclose(csv);
    if (raw)
        fclose(raw);
}
