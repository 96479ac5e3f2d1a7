/*
 * Threads of one process (label tsan: tests/reliability/analyze runs this
 * program under ThreadSanitizer).
 *
 * 8 worker threads (4 share one handle, 4 have their own) contend for 16 keys
 * with waits, renewals, grace periods; an inspector thread runs inspect /
 * foreach / stats without pause; a churn thread opens, uses and closes
 * handles all the time (registration, sweep, close). The same ledger rules
 * as the kill storm: an atomic exchange into the key's owner slot after each
 * acquire must find it empty (nobody dies here, TTLs are long), the clearing
 * CAS before release must find ourselves, tokens per key strictly increase.
 */
#include "internal.h"
#include "testutil.h"

#include <pthread.h>

#define WORKERS 8
#define KEYS    16
#define CAP     24

static const char *g_name;
static _Atomic int g_stop;
static _Atomic uint64_t owner[KEYS], last_token[KEYS];
static _Atomic uint64_t n_acq, n_viol, n_err, n_inspect, n_churn, n_timeout;
static char g_msg[256];
static _Atomic int g_msg_lock;

static void note_bad(_Atomic uint64_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note_bad(_Atomic uint64_t *c, const char *fmt, ...)
{
    atomic_fetch_add(c, 1);
    int z = 0;
    if (atomic_compare_exchange_strong(&g_msg_lock, &z, 1)) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(g_msg, sizeof g_msg, fmt, ap);
        va_end(ap);
    }
}

struct warg {
    shmlease_table *t;
    int id;
};

static void *worker(void *p)
{
    struct warg *a = p;
    uint64_t seed = (uint64_t)(a->id + 1) * 0x9e3779b97f4a7c15ull;
    char key[16];
    const uint64_t me = (uint64_t)a->id + 1;
    while (!atomic_load(&g_stop)) {
        uint64_t r = tu_rand(&seed);
        unsigned k = (unsigned)(r % KEYS);
        snprintf(key, sizeof key, "thr-%u", k);
        shmlease_lease l;
        int rc = tu_acquire(a->t, key, 60000, (r >> 8) & 1 ? 1000 : 0, &l);
        if (rc == -EBUSY || rc == -ETIMEDOUT) {
            if (rc == -ETIMEDOUT)
                atomic_fetch_add(&n_timeout, 1);
            continue;
        }
        if (rc) {
            note_bad(&n_err, "acquire %s: %s", key, shmlease_errname(rc));
            continue;
        }
        atomic_fetch_add(&n_acq, 1);
        uint64_t old = atomic_exchange(&owner[k], me);
        if (old)
            note_bad(&n_viol, "%s: acquired by %llu while %llu owns it", key, (unsigned long long)me,
                     (unsigned long long)old);
        uint64_t prev = atomic_exchange(&last_token[k], l.fencing_token);
        if (prev >= l.fencing_token)
            note_bad(&n_viol, "%s: token %llu after %llu", key, (unsigned long long)l.fencing_token,
                     (unsigned long long)prev);
        if (((r >> 12) & 3) == 0 && (rc = shmlease_renew(a->t, &l, 60000)) != 0)
            note_bad(&n_err, "renew: %s", shmlease_errname(rc));
        if ((rc = shmlease_check(a->t, &l)) != 0)
            note_bad(&n_err, "check: %s", shmlease_errname(rc));
        if ((r >> 16) & 1)
            tu_sleep_us((unsigned)((r >> 20) % 200));
        uint64_t expect = me;
        if (!atomic_compare_exchange_strong(&owner[k], &expect, 0))
            note_bad(&n_viol, "%s: slot of %llu taken by %llu", key, (unsigned long long)me,
                     (unsigned long long)expect);
        rc = ((r >> 30) & 15) == 0 ? shmlease_release_after(a->t, &l, 1) : shmlease_release(a->t, &l);
        if (rc)
            note_bad(&n_err, "release: %s", shmlease_errname(rc));
    }
    return NULL;
}

static int cb(const shmlease_info *i, void *arg)
{
    if (strncmp(i->key, "thr-", 4) != 0 && strncmp(i->key, "churn-", 6) != 0)
        note_bad(&n_viol, "foreach: key '%s'", i->key);
    /* foreach reads the clock before it reads each entry: a lease claimed in
     * between shows a few ms more than its TTL (more under TSan). */
    if (i->remaining_ms > 61000 || i->remaining_ms < -1000)
        note_bad(&n_viol, "foreach: %s remaining %lld ms (ttl 60000, grace 1)", i->key, (long long)i->remaining_ms);
    (*(int *)arg)++;
    return 0;
}

static void *inspector(void *p)
{
    shmlease_table *t = p;
    char key[16];
    unsigned k = 0;
    while (!atomic_load(&g_stop)) {
        snprintf(key, sizeof key, "thr-%u", k++ % KEYS);
        shmlease_info info;
        int rc = shmlease_inspect(t, key, &info);
        if (rc != 0 && rc != -ENOENT)
            note_bad(&n_err, "inspect: %s", shmlease_errname(rc));
        if (rc == 0 && strcmp(info.key, key) != 0)
            note_bad(&n_viol, "inspect %s returned key %s", key, info.key);
        int n = 0;
        if (shmlease_foreach(t, cb, &n) != 0 || n < 0 || n > CAP)
            note_bad(&n_viol, "foreach visited %d leases", n);
        shmlease_stats st;
        if (shmlease_stats_get(t, &st) != 0 || st.held > CAP || st.live_keys > CAP)
            note_bad(&n_viol, "stats: held %u live %u", st.held, st.live_keys);
        atomic_fetch_add(&n_inspect, 1);
    }
    return NULL;
}

static void *churn(void *p)
{
    (void)p;
    unsigned n = 0;
    char key[32];
    while (!atomic_load(&g_stop)) {
        shmlease_options o = {.flags = SHMLEASE_OPEN_NOCREATE};
        shmlease_table *t;
        int rc = shmlease_open(g_name, &o, &t);
        if (rc) {
            note_bad(&n_err, "churn open: %s", shmlease_errname(rc));
            continue;
        }
        snprintf(key, sizeof key, "churn-%u", n++ % 4);
        shmlease_lease l;
        rc = tu_acquire(t, key, 60000, 0, &l);
        if (rc && rc != -ENOSPC)
            note_bad(&n_err, "churn acquire: %s", shmlease_errname(rc));
        shmlease_close(t);              /* releases it */
        atomic_fetch_add(&n_churn, 1);
    }
    return NULL;
}

static void t_threads(void **s)
{
    (void)s;
    const char *e = getenv("SHMLEASE_THREADS_SECONDS");
    unsigned secs = e && *e ? (unsigned)atoi(e) : 3;
    g_name = tu_name("thr");
    shmlease_table *shared = tu_open_cap(g_name, CAP);
    shmlease_table *own[WORKERS];
    pthread_t th[WORKERS + 2];
    struct warg args[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        own[i] = i < 4 ? shared : tu_open_cap(g_name, CAP);
        args[i] = (struct warg){own[i], i};
        assert_int_equal(pthread_create(&th[i], NULL, worker, &args[i]), 0);
    }
    assert_int_equal(pthread_create(&th[WORKERS], NULL, inspector, shared), 0);
    assert_int_equal(pthread_create(&th[WORKERS + 1], NULL, churn, NULL), 0);
    tu_sleep_ms(secs * 1000);
    atomic_store(&g_stop, 1);
    for (int i = 0; i < WORKERS + 2; i++)
        pthread_join(th[i], NULL);
    tu_note("threads: %d workers (4 on one handle), inspector, handle churn, %u s: %llu acquisitions, "
             "%llu inspection rounds, %llu handles opened and closed, %llu timeouts; violations %llu, errors %llu",
             WORKERS, secs, (unsigned long long)n_acq, (unsigned long long)n_inspect,
             (unsigned long long)n_churn, (unsigned long long)n_timeout, (unsigned long long)n_viol,
             (unsigned long long)n_err);
    TU_TRUE(n_viol == 0 && n_err == 0, "%llu violations, %llu errors; first: %s", (unsigned long long)n_viol,
             (unsigned long long)n_err, g_msg);
    TU_TRUE(n_acq > 100 && n_churn > 10 && n_inspect > 10, "too little progress");
    char why[256];
    TU_TRUE(tu_check_structure(shared, why, sizeof why) == 0, "%s", why);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {TU_SLOW_TEST(t_threads)};
    return TU_RUN(tests);
}
