/*
 * A process SIGKILLed inside a robust-mutex critical section (fault points of
 * the index and the registry): afterwards the table is whole. Other processes
 * acquire new and existing keys, lookups find every held key, capacity
 * accounting is exact (fill to capacity, one more is -ENOSPC), no lease of a
 * live process was lost, and stats.recoveries counted the repair.
 *
 * Each point is its own test; CMake registers one ctest entry per point.
 */
#include "testutil.h"
#include "internal.h"

enum { CAP = 8 };

struct crash_shared {
    char cur_key[64]; /* the key the victim was working on when it died */
};

/* Opens NAME, acquires KEY and pauses, reporting its pid; killed by the caller. */
static void make_dead_holder(const char *name, const char *key)
{
    tu_chan c;
    tu_chan_init(&c);
    pid_t d = tu_fork();
    if (d == 0) {
        tu_chan_child(&c);
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, NULL, &u), 0);
        shmlease_lease l;
        TU_CK_RC(tu_acquire(u, key, 60000, 0, &l), 0);
        tu_up(&c, 1);
        for (;;)
            pause();
    }
    tu_chan_parent(&c, d);
    TU_EQ(tu_up_recv(&c, 10000), 1);
    tu_kill(d);
}

/* The victim: arms POINT, then opens the table and churns through keys (taking
 * over the dead holder's key first, then 4*CAP distinct keys in a table of
 * CAP, which forces inserts and retirements). Dies at POINT. */
static pid_t spawn_victim(const char *name, const char *point, int action, unsigned hit,
                          struct crash_shared *sh, const char *first_key)
{
    snprintf(sh->cur_key, sizeof sh->cur_key, "%s", first_key);
    pid_t v = tu_fork();
    if (v == 0) {
        tu_fault_arm(point, action, hit);
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, NULL, &u), 0);
        shmlease_lease l;
        TU_CK_RC(tu_acquire(u, first_key, 60000, 0, &l), 0);
        TU_CK_RC(shmlease_release(u, &l), 0);
        for (int i = 0; i < 4 * CAP; i++) {
            snprintf(sh->cur_key, sizeof sh->cur_key, "c-%d", i);
            TU_CK_RC(tu_acquire(u, sh->cur_key, 60000, 0, &l), 0);
            TU_CK_RC(shmlease_release(u, &l), 0);
        }
        shmlease_close(u);
        _exit(0);
    }
    return v;
}

static void expect_killed_at(pid_t v, const char *point)
{
    int st = tu_wait(v, 20000);
    if (st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0)
        fail_msg("fault point %s was never reached by the victim's workload", point);
    if (!(st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL))
        fail_msg("the victim did not die at fault point %s (status %#x): see its message",
                 point, st);
}

static int count_cb(const shmlease_info *i, void *arg)
{
    (void)i;
    (*(int *)arg)++;
    return 0;
}

static void expect_held_by_me(shmlease_table *t, const char *key, uint64_t token)
{
    shmlease_info i;
    int rc = shmlease_inspect(t, key, &i);
    if (rc != 0)
        fail_msg("lookup of held key %s returned %d (%s)", key, rc, shmlease_errname(rc));
    TU_EQ(i.holder_pid, getpid());
    if (token)
        TU_EQU(i.fencing_token, token);
}

/* After the crash(es): DEAD_KEYS are the keys the victims were working on. */
static void verify_table_whole(const char *name, shmlease_table *t, const shmlease_lease *held,
                               const char *const *dead_keys, int ndead,
                               const shmlease_stats *before, const char *point)
{
    /* First, from another process and under a watchdog: the victims' keys
     * and a new key can be taken at all (no deadlock, no livelock). */
    _Atomic int *progress = tu_shared(sizeof *progress);
    pid_t probe = tu_fork();
    if (probe == 0) {
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, NULL, &u), 0);
        for (int k = 0; k <= ndead; k++) {
            atomic_store(progress, k);
            shmlease_lease l;
            TU_CK_RC(tu_acquire(u, k < ndead ? dead_keys[k] : "probe-new", 60000, 0, &l), 0);
            TU_CK_RC(shmlease_release(u, &l), 0);
        }
        shmlease_close(u);
        _exit(0);
    }
    int pst = tu_wait(probe, 10000);
    if (pst == -1) {
        int k = atomic_load(progress);
        fail_msg("after a crash at %s, acquire of %s by another process did not return "
                 "within 10 s (deadlock or livelock)", point,
                 k < ndead ? dead_keys[k] : "a new key");
    }
    if (!WIFEXITED(pst) || WEXITSTATUS(pst) != 0)
        fail_msg("after a crash at %s, another process could not take the victim's keys "
                 "(status %#x, see its message)", point, pst);
    /* The probe's insert ran any pending recovery: no bucket change may look
     * under way any more (readers would fall back to scans for ever). */
    if (__atomic_load_n(&t->hdr->index_seq, __ATOMIC_ACQUIRE) & 1)
        fail_msg("after a crash at %s and its recovery, index_seq is still odd (%u)", point,
                 t->hdr->index_seq);

    /* no lease of a live process was lost, and it is still found */
    TU_RC(shmlease_check(t, held), 0);
    expect_held_by_me(t, "p-held", held->fencing_token);

    /* the victims' keys are free, or reclaimable from a dead holder, at once */
    char keys[CAP + 4][64];
    uint64_t toks[CAP + 4];
    int n = 0;
    snprintf(keys[n], 64, "p-held");
    toks[n++] = held->fencing_token;
    for (int k = 0; k < ndead; k++) {
        int dup = 0;
        for (int j = 0; j < n; j++)
            dup |= strcmp(keys[j], dead_keys[k]) == 0;
        if (dup)
            continue;
        shmlease_lease l;
        int rc = tu_acquire(t, dead_keys[k], 60000, 0, &l);
        if (rc != 0)
            fail_msg("after a crash at %s, the victim's key %s: acquire returned %d (%s)",
                     point, dead_keys[k], rc, shmlease_errname(rc));
        TU_GT(l.fencing_token, held->fencing_token);
        snprintf(keys[n], 64, "%s", dead_keys[k]);
        toks[n++] = l.fencing_token;
    }

    /* fill the table to capacity exactly */
    for (int j = 0; n < CAP; j++) {
        shmlease_lease l;
        snprintf(keys[n], 64, "f-%d", j);
        int rc = tu_acquire(t, keys[n], 60000, 0, &l);
        if (rc != 0)
            fail_msg("after a crash at %s, live key %d of %d (%s): acquire returned %d (%s): "
                     "capacity lost", point, n + 1, CAP, keys[n], rc, shmlease_errname(rc));
        toks[n++] = l.fencing_token;
    }
    shmlease_lease extra;
    int rc = tu_acquire(t, "one-too-many", 60000, 0, &extra);
    if (rc != -ENOSPC)
        fail_msg("after a crash at %s, key %d in a table of %d: acquire returned %d (%s), "
                 "expected -ENOSPC", point, CAP + 1, CAP, rc, shmlease_errname(rc));
    for (int j = 0; j < n; j++)
        expect_held_by_me(t, keys[j], toks[j]);
    int visits = 0;
    TU_RC(shmlease_foreach(t, count_cb, &visits), 0);
    TU_EQ(visits, CAP);
    shmlease_stats s = tu_stats(t);
    TU_EQ(s.held, CAP);
    TU_EQ(s.capacity, CAP);

    /* another process: existing and new keys, lookups, capacity */
    shmlease_info info;
    TU_RC(shmlease_inspect(t, keys[n - 1], &info), 0);
    /* free two entries: the last two filler keys */
    TU_RC(shmlease_break(t, keys[n - 1]), 0);
    TU_RC(shmlease_break(t, keys[n - 2]), 0);
    const char *existing = keys[n - 1];
    const char *still_held = keys[1];
    pid_t e = tu_fork();
    if (e == 0) {
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, NULL, &u), 0);
        shmlease_lease l;
        TU_CK_RC(tu_acquire(u, "p-held", 60000, 0, &l), -EBUSY);
        TU_CK_RC(tu_acquire(u, still_held, 60000, 0, &l), -EBUSY);
        shmlease_info i;
        TU_CK_RC(shmlease_inspect(u, still_held, &i), 0);
        TU_CK(i.holder_pid == getppid());
        TU_CK_RC(tu_acquire(u, existing, 60000, 0, &l), 0);
        shmlease_lease l2;
        TU_CK_RC(tu_acquire(u, "e-new", 60000, 0, &l2), 0);
        shmlease_lease l3;
        TU_CK_RC(tu_acquire(u, "e-new2", 60000, 0, &l3), -ENOSPC);
        TU_CK_RC(shmlease_release(u, &l), 0);
        TU_CK_RC(shmlease_release(u, &l2), 0);
        TU_CK_RC(tu_acquire(u, "e-new2", 60000, 0, &l3), 0);
        TU_CK_RC(shmlease_release(u, &l3), 0);
        shmlease_close(u);
        _exit(0);
    }
    tu_expect_exit0(e);
    TU_RC(shmlease_check(t, held), 0);

    s = tu_stats(t);
    if (!(s.recoveries > before->recoveries))
        fail_msg("after a crash at %s, stats.recoveries is %llu, was %llu: the repair was not "
                 "counted (or not done)", point, (unsigned long long)s.recoveries,
                 (unsigned long long)before->recoveries);
}

static void crash_at(const char *point, unsigned hit)
{
    TU_REQUIRE_FAULT_POINTS();
    const char *name = tu_name("crash");
    shmlease_table *t = tu_open_cap(name, CAP);
    shmlease_lease held;
    TU_RC(tu_acquire(t, "p-held", 60000, 0, &held), 0);
    /* Only a slot whose user died attached is swept when reused (a closed
     * slot was freed by its closer): for that point, every other slot is
     * taken by handles of ours, so the victim's registration must reuse the
     * dead holder's. */
    int sweep = strcmp(point, "registry.after_sweep") == 0, nkept = 0;
    shmlease_table **kept = sweep ? tu_fill_registry(name, 1, &nkept) : NULL;
    /* a dead process's registry slot with a lease, for the victim to sweep */
    make_dead_holder(name, "d-held");
    shmlease_stats before = tu_stats(t);
    struct crash_shared *sh = tu_shared(sizeof *sh);
    pid_t v = spawn_victim(name, point, SHMLEASE_FAULT_KILL, hit, sh, "d-held");
    expect_killed_at(v, point);
    if (kept)
        tu_unfill_registry(kept, nkept);
    const char *dead[] = { "d-held", sh->cur_key };
    verify_table_whole(name, t, &held, dead, 2, &before, point);
}

#define CRASH_TEST(fn, point)                                                      \
    static void fn(void **state)                                                   \
    {                                                                              \
        (void)state;                                                               \
        crash_at(point, 1);                                                        \
    }

CRASH_TEST(test_crash_at_insert_after_pop_is_recovered, "insert.after_pop")
CRASH_TEST(test_crash_at_insert_after_key_is_recovered, "insert.after_key")
CRASH_TEST(test_crash_at_insert_after_state_is_recovered, "insert.after_state")
CRASH_TEST(test_crash_at_insert_after_bucket_is_recovered, "insert.after_bucket")
CRASH_TEST(test_crash_at_insert_mid_index_is_recovered, "insert.mid_index")
CRASH_TEST(test_crash_at_retire_after_cas_is_recovered, "retire.after_cas")
CRASH_TEST(test_crash_at_retire_after_unlink_is_recovered, "retire.after_unlink")
CRASH_TEST(test_crash_at_registry_locked_is_recovered, "registry.locked")
CRASH_TEST(test_crash_at_registry_after_sweep_is_recovered, "registry.after_sweep")
CRASH_TEST(test_crash_at_registry_after_claim_is_recovered, "registry.after_claim")
CRASH_TEST(test_crash_at_index_locked_is_recovered, "index.locked")

/* Later hits: a crash in the middle of a busy table, not on the first insert. */
static void test_crash_at_insert_after_bucket_third_hit_is_recovered(void **state)
{
    (void)state;
    crash_at("insert.after_bucket", 3);
}

static void test_crash_at_retire_after_unlink_third_hit_is_recovered(void **state)
{
    (void)state;
    crash_at("retire.after_unlink", 3);
}

/* A second crash during the recovery of the first: the next one recovers both. */
static void test_crash_during_recovery_is_recovered(void **state)
{
    (void)state;
    TU_REQUIRE_FAULT_POINTS();
    const char *name = tu_name("crashrecover");
    shmlease_table *t = tu_open_cap(name, CAP);
    shmlease_lease held;
    TU_RC(tu_acquire(t, "p-held", 60000, 0, &held), 0);
    make_dead_holder(name, "d-held");
    shmlease_stats before = tu_stats(t);
    struct crash_shared *sh1 = tu_shared(sizeof *sh1);
    struct crash_shared *sh2 = tu_shared(sizeof *sh2);
    pid_t v1 = spawn_victim(name, "insert.after_bucket", SHMLEASE_FAULT_KILL, 1, sh1, "d-held");
    expect_killed_at(v1, "insert.after_bucket");
    pid_t v2 = spawn_victim(name, "recover.during", SHMLEASE_FAULT_KILL, 1, sh2, "d-held");
    expect_killed_at(v2, "recover.during");
    const char *dead[] = { "d-held", sh1->cur_key, sh2->cur_key };
    verify_table_whole(name, t, &held, dead, 3, &before, "insert.after_bucket+recover.during");
}

/* A process stopped (not killed) inside the index critical section: others
 * wait for it rather than "recovering" a live owner's half-done change. */
static void test_stopped_in_index_critical_section_is_waited_for(void **state)
{
    (void)state;
    TU_REQUIRE_FAULT_POINTS();
    const char *name = tu_name("stopcs");
    shmlease_table *t = tu_open_cap(name, CAP);
    shmlease_lease held;
    TU_RC(tu_acquire(t, "p-held", 60000, 0, &held), 0);
    struct crash_shared *sh = tu_shared(sizeof *sh);
    snprintf(sh->cur_key, sizeof sh->cur_key, "v-key");
    pid_t v = tu_fork();
    if (v == 0) {
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, NULL, &u), 0);
        tu_fault_arm("insert.after_state", SHMLEASE_FAULT_STOP, 1);
        shmlease_lease l;
        TU_CK_RC(tu_acquire(u, "v-key", 60000, 0, &l), 0);
        tu_fault_arm(NULL, 0, 0);
        TU_CK_RC(shmlease_check(u, &l), 0);
        TU_CK_RC(shmlease_release(u, &l), 0);
        shmlease_close(u);
        _exit(0);
    }
    if (!tu_wait_stopped(v, 5000))
        fail_msg("fault point insert.after_state never stopped the process");
    /* An insert by someone else cannot go ahead while the owner of the index
     * lock is stopped: a try gives up (-EBUSY, after the library's 100 ms
     * bound, not forever), a wait-forever acquire waits and then succeeds. */
    tu_chan c;
    tu_chan_init(&c);
    pid_t w = tu_fork();
    if (w == 0) {
        tu_chan_child(&c);
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, NULL, &u), 0);
        shmlease_lease l;
        tu_up(&c, 1);
        uint64_t t0 = tu_mono_ms();
        TU_CK_RC(tu_acquire(u, "w-key", 60000, 0, &l), -EBUSY);
        tu_up(&c, (int64_t)(tu_mono_ms() - t0));
        TU_CK_RC(tu_acquire(u, "w-key", 60000, SHMLEASE_WAIT_FOREVER, &l), 0);
        tu_up(&c, -1);
        TU_CK_RC(shmlease_release(u, &l), 0);
        _exit(0);
    }
    tu_chan_parent(&c, w);
    TU_EQ(tu_up_recv(&c, 10000), 1);
    int64_t tried_ms = tu_up_recv(&c, 10000);
    TU_RANGE(tried_ms, 50, 2000);
    int64_t x;
    TU_EQ(tu_up_try(&c, &x, 300), -ETIMEDOUT);   /* still waiting while v is stopped */
    kill(v, SIGCONT);
    tu_expect_exit0(v);
    TU_EQ(tu_up_recv(&c, 10000), -1);
    tu_expect_exit0(w);
    TU_RC(shmlease_check(t, &held), 0);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "v-key", 60000, 0, &l), 0);
    TU_RC(tu_acquire(t, "w-key", 60000, 0, &l), 0);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(test_crash_at_insert_after_pop_is_recovered),
        TU_TEST(test_crash_at_insert_after_key_is_recovered),
        TU_TEST(test_crash_at_insert_after_state_is_recovered),
        TU_TEST(test_crash_at_insert_after_bucket_is_recovered),
        TU_TEST(test_crash_at_insert_mid_index_is_recovered),
        TU_TEST(test_crash_at_retire_after_cas_is_recovered),
        TU_TEST(test_crash_at_retire_after_unlink_is_recovered),
        TU_TEST(test_crash_at_registry_locked_is_recovered),
        TU_TEST(test_crash_at_registry_after_sweep_is_recovered),
        TU_TEST(test_crash_at_registry_after_claim_is_recovered),
        TU_TEST(test_crash_at_index_locked_is_recovered),
        TU_TEST(test_crash_at_insert_after_bucket_third_hit_is_recovered),
        TU_TEST(test_crash_at_retire_after_unlink_third_hit_is_recovered),
        TU_TEST(test_crash_during_recovery_is_recovered),
        TU_TEST(test_stopped_in_index_critical_section_is_waited_for),
    };
    return TU_RUN(tests);
}
