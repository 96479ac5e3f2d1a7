/*
 * Exclusion under load (Concurrency Kit style): many processes / threads take
 * a few keys, and inside the critical section assert that nobody else is
 * there (an owner word), that tokens per key only grow, and increment a plain
 * (non-atomic) counter whose final value must equal the number of entries.
 */
#include "testutil.h"

#include <pthread.h>
#include <sched.h>

enum { NKEYS = 3, MAXDEAD = 128 };

struct arena {
    _Atomic int owner[NKEYS];
    volatile uint64_t counter[NKEYS]; /* deliberately not atomic */
    _Atomic uint64_t last_token[NKEYS];
    _Atomic uint64_t entries;
    _Atomic int violations;
    _Atomic int token_regressions;
    _Atomic int errors;
    _Atomic int stop;
    _Atomic int dead[MAXDEAD]; /* ids killed on purpose by the parent */
    _Atomic int ndead;
    char msg[256];
};

static int is_dead(struct arena *a, int id)
{
    int n = atomic_load(&a->ndead);
    for (int i = 0; i < n && i < MAXDEAD; i++)
        if (atomic_load(&a->dead[i]) == id)
            return 1;
    return 0;
}

static void note(struct arena *a, const char *fmt, long long x, long long y)
{
    if (a->msg[0] == 0)
        snprintf(a->msg, sizeof a->msg, fmt, x, y);
}

/* The critical section: ID is a pid or a thread number, never 0. */
static void critical_section(struct arena *a, int k, int id, uint64_t token, int spin)
{
    int prev = atomic_exchange(&a->owner[k], id);
    if (prev != 0 && !is_dead(a, prev)) {
        atomic_fetch_add(&a->violations, 1);
        note(a, "entered while %lld was inside (key %lld)", prev, k);
    }
    uint64_t last = atomic_load(&a->last_token[k]);
    if (token <= last) {
        atomic_fetch_add(&a->token_regressions, 1);
        note(a, "token %lld after %lld", (long long)token, (long long)last);
    }
    atomic_store(&a->last_token[k], token);
    uint64_t c = a->counter[k];
    for (volatile int i = 0; i < spin; i++) {
    }
    if ((token & 15) == 0)
        sched_yield(); /* sometimes give others the chance to barge in */
    a->counter[k] = c + 1;
    atomic_fetch_add(&a->entries, 1);
    if (atomic_load(&a->owner[k]) != id) {
        atomic_fetch_add(&a->violations, 1);
        note(a, "owner changed under %lld (key %lld)", id, k);
    }
    atomic_store(&a->owner[k], 0);
}

static void check_arena(struct arena *a, uint64_t expected_entries)
{
    if (a->violations || a->token_regressions || a->errors)
        fail_msg("%d exclusion violations, %d token regressions, %d errors; first: %s",
                 (int)a->violations, (int)a->token_regressions, (int)a->errors, a->msg);
    if (expected_entries) {
        uint64_t sum = 0;
        for (int k = 0; k < NKEYS; k++)
            sum += a->counter[k];
        TU_EQU(a->entries, expected_entries);
        if (sum != expected_entries)
            fail_msg("plain counters sum to %llu after %llu critical sections: lost updates",
                     (unsigned long long)sum, (unsigned long long)expected_entries);
    }
}

/* mode 0: wait forever; 1: try in a loop; 2: short timed waits */
static void worker_loop(struct arena *a, shmlease_table *u, int id, int iters, int mode,
                        unsigned seed)
{
    uint64_t x = seed * 2654435761u + 1;
    for (int i = 0; iters < 0 || i < iters; i++) {
        if (iters < 0 && atomic_load(&a->stop))
            return;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int k = (int)(x % NKEYS);
        char key[16];
        snprintf(key, sizeof key, "key%d", k);
        shmlease_lease l;
        int rc;
        for (;;) {
            int64_t w = mode == 0 ? SHMLEASE_WAIT_FOREVER : mode == 1 ? 0 : 5;
            rc = tu_acquire(u, key, 10000, w, &l);
            if (rc == 0)
                break;
            if (!((mode == 1 && rc == -EBUSY) || (mode == 2 && rc == -ETIMEDOUT))) {
                atomic_fetch_add(&a->errors, 1);
                note(a, "acquire returned %lld in mode %lld", rc, mode);
                return;
            }
            if (mode == 1)
                sched_yield();
        }
        critical_section(a, k, id, l.fencing_token, (int)(x % 200));
        rc = shmlease_release(u, &l);
        if (rc != 0) {
            atomic_fetch_add(&a->errors, 1);
            note(a, "release returned %lld (id %lld)", rc, id);
            return;
        }
    }
}

static void run_processes(const char *tag, int nproc, int iters, const int *modes)
{
    const char *name = tu_name(tag);
    tu_open(name, NULL);
    struct arena *a = tu_shared(sizeof *a);
    pid_t p[16];
    for (int i = 0; i < nproc; i++) {
        p[i] = tu_fork();
        if (p[i] == 0) {
            shmlease_table *u = NULL;
            TU_CK_RC(shmlease_open(name, NULL, &u), 0);
            worker_loop(a, u, getpid(), iters, modes[i], (unsigned)i + 1);
            shmlease_close(u);
            _exit(0);
        }
    }
    for (int i = 0; i < nproc; i++)
        tu_expect_exit0(p[i]);
    check_arena(a, (uint64_t)nproc * (uint64_t)iters);
}

static void test_exclusion_across_processes_waiting_forever(void **state)
{
    (void)state;
    const int modes[6] = { 0, 0, 0, 0, 0, 0 };
    run_processes("xproc", 6, 1500, modes);
}

static void test_exclusion_across_processes_with_try_and_timed_waits(void **state)
{
    (void)state;
    const int modes[4] = { 0, 1, 2, 1 };
    run_processes("xmixed", 4, 1000, modes);
}

struct thread_arg {
    struct arena *a;
    shmlease_table *t;
    int id;
    int iters;
};

static void *thread_main(void *p)
{
    struct thread_arg *ta = p;
    worker_loop(ta->a, ta->t, ta->id, ta->iters, ta->id % 2 ? 0 : 2, (unsigned)ta->id * 7);
    return NULL;
}

static void test_exclusion_across_threads_sharing_one_handle(void **state)
{
    (void)state;
    enum { NT = 4, ITERS = 2000 };
    const char *name = tu_name("xthreads");
    shmlease_table *t = tu_open(name, NULL);
    struct arena *a = tu_shared(sizeof *a);
    pthread_t th[NT];
    struct thread_arg args[NT];
    for (int i = 0; i < NT; i++) {
        args[i] = (struct thread_arg){ a, t, i + 1, ITERS };
        assert_int_equal(pthread_create(&th[i], NULL, thread_main, &args[i]), 0);
    }
    for (int i = 0; i < NT; i++)
        pthread_join(th[i], NULL);
    check_arena(a, (uint64_t)NT * ITERS);
    TU_EQ(tu_stats(t).held, 0);
}

static void test_exclusion_across_processes_and_threads(void **state)
{
    (void)state;
    enum { NP = 2, NT = 2, ITERS = 1000 };
    const char *name = tu_name("xboth");
    tu_open(name, NULL);
    struct arena *a = tu_shared(sizeof *a);
    pid_t p[NP];
    for (int i = 0; i < NP; i++) {
        p[i] = tu_fork();
        if (p[i] == 0) {
            shmlease_table *u = NULL;
            TU_CK_RC(shmlease_open(name, NULL, &u), 0);
            pthread_t th[NT];
            struct thread_arg args[NT];
            for (int j = 0; j < NT; j++) {
                args[j] = (struct thread_arg){ a, u, (i + 1) * 100 + j + 1, ITERS };
                TU_CK(pthread_create(&th[j], NULL, thread_main, &args[j]) == 0);
            }
            for (int j = 0; j < NT; j++)
                pthread_join(th[j], NULL);
            shmlease_close(u);
            _exit(0);
        }
    }
    for (int i = 0; i < NP; i++)
        tu_expect_exit0(p[i]);
    check_arena(a, (uint64_t)NP * NT * ITERS);
}

/* Workers are SIGKILLed at random moments (inside the library's critical
 * sections too) and replaced; exclusion holds, tokens only grow, and the
 * others keep making progress without waiting for TTLs. */
static void test_exclusion_survives_random_holder_kills(void **state)
{
    (void)state;
    enum { NW = 4, ROUNDS = 20 };
    const char *name = tu_name("xkills");
    shmlease_table *t = tu_open(name, NULL);
    struct arena *a = tu_shared(sizeof *a);
    pid_t w[NW];
    unsigned seed = 1;
    for (int i = 0; i < NW; i++) {
        w[i] = tu_fork();
        if (w[i] == 0) {
            shmlease_table *u = NULL;
            TU_CK_RC(shmlease_open(name, NULL, &u), 0);
            worker_loop(a, u, getpid(), -1, 0, seed + (unsigned)i);
            _exit(0);
        }
    }
    uint64_t x = 88172645463325252ull;
    for (int r = 0; r < ROUNDS; r++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        tu_sleep_ms(20 + (unsigned)(x % 80));
        int victim = (int)(x % NW);
        int n = atomic_load(&a->ndead);
        atomic_store(&a->dead[n], w[victim]);
        atomic_store(&a->ndead, n + 1);
        tu_kill(w[victim]);
        uint64_t before = atomic_load(&a->entries);
        w[victim] = tu_fork();
        if (w[victim] == 0) {
            shmlease_table *u = NULL;
            TU_CK_RC(shmlease_open(name, NULL, &u), 0);
            worker_loop(a, u, getpid(), -1, 0, seed + 100 + (unsigned)r);
            _exit(0);
        }
        /* progress resumes well before the 10 s TTL of the victim's lease */
        if (!TU_WAIT_FOR(atomic_load(&a->entries) > before + 20, 3000))
            fail_msg("round %d: no progress within 3 s after killing a worker "
                     "(%llu entries; first problem: %s)", r,
                     (unsigned long long)atomic_load(&a->entries), a->msg);
    }
    atomic_store(&a->stop, 1);
    for (int i = 0; i < NW; i++)
        tu_expect_exit0(w[i]);
    check_arena(a, 0);
    /* the table is still whole: every key can be taken */
    for (int k = 0; k < NKEYS; k++) {
        char key[16];
        snprintf(key, sizeof key, "key%d", k);
        shmlease_lease l;
        TU_RC(tu_acquire(t, key, 1000, 0, &l), 0);
        TU_GT(l.fencing_token, atomic_load(&a->last_token[k]));
    }
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(test_exclusion_across_processes_waiting_forever),
        TU_TEST(test_exclusion_across_processes_with_try_and_timed_waits),
        TU_TEST(test_exclusion_across_threads_sharing_one_handle),
        TU_TEST(test_exclusion_across_processes_and_threads),
        TU_TEST(test_exclusion_survives_random_holder_kills),
    };
    return TU_RUN(tests);
}
