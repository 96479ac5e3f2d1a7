/*
 * Kill at every step, and stop at some.
 *
 * For each fault point (src/fault_points.def) a child arms it with KILL and performs
 * the operation that reaches it; the parent checks that the child really died
 * there (SIGKILL, not a normal exit) and then that the table is consistent
 * and usable: structure (index, free list, live count), keys left behind
 * acquirable at once, exclusion with another process, capacity exact
 * (fill -> next new key -ENOSPC -> release one -> it fits), no
 * -ENOTRECOVERABLE, and stats.recoveries raised where a mutex was inherited.
 *
 * STOP variants: a process stopped inside the index mutex (or the registry
 * mutex) must not block lease operations on existing keys (lock-free) nor
 * inspection; what it does block is reported.
 */
#include "internal.h"
#include "testutil.h"

#include <sys/stat.h>

#define CAP 8

enum op {
    OP_OPEN,            /* open (create or attach) */
    OP_ACQ_EXISTING,    /* acquire "k-existing" (already in the table, free) */
    OP_ACQ_NEW,         /* acquire a key not in the table */
    OP_RENEW,           /* acquire "k-existing", renew it */
    OP_RELEASE,         /* acquire "k-existing", release it */
};

static const char *op_name(enum op op)
{
    static const char *n[] = {"open", "acquire existing key", "acquire new key", "renew", "release"};
    return n[op];
}

/* Child: arms POINT with ACTION, then does OP on table NAME. Exits 0 if the
 * point was never reached (the parent treats that as a failure for KILL). */
static const char *new_key = "k-new";

static pid_t spawn_op(const char *name, const char *point, int action, enum op op, uint32_t cap)
{
    pid_t pid = tu_fork_alarm(60);
    if (pid)
        return pid;
    shmlease_options o = {.capacity = cap};
    shmlease_table *t = NULL;
    if (op == OP_OPEN)
        shmlease__fault_arm(point, action, 1);
    TU_CK_RC(shmlease_open(name, &o, &t), 0);
    shmlease_lease l;
    switch (op) {
    case OP_OPEN:
        break;
    case OP_ACQ_EXISTING:
        shmlease__fault_arm(point, action, 1);
        TU_CK_RC(tu_acquire(t, "k-existing", 60000, 0, &l), 0);
        break;
    case OP_ACQ_NEW:
        shmlease__fault_arm(point, action, 1);
        TU_CK_RC(tu_acquire(t, new_key, 60000, 0, &l), 0);
        break;
    case OP_RENEW:
        TU_CK_RC(tu_acquire(t, "k-existing", 60000, 0, &l), 0);
        shmlease__fault_arm(point, action, 1);
        TU_CK_RC(shmlease_renew(t, &l, 60000), 0);
        break;
    case OP_RELEASE:
        TU_CK_RC(tu_acquire(t, "k-existing", 60000, 0, &l), 0);
        shmlease__fault_arm(point, action, 1);
        TU_CK_RC(shmlease_release(t, &l), 0);
        break;
    }
    _exit(0);
}

static void expect_killed(pid_t pid, const char *point, enum op op)
{
    int st = tu_wait(pid, 30000);
    TU_TRUE(st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
             "child armed at %s (%s): %s: the fault point was not reached or the child failed",
             point, op_name(op), tu_status_str(st));
}

static uint64_t recoveries(const char *name)
{
    shmlease_options o = {.flags = SHMLEASE_OPEN_READONLY};
    shmlease_table *t;
    TU_RC(shmlease_open(name, &o, &t), 0);
    shmlease_stats st;
    TU_RC(shmlease_stats_get(t, &st), 0);
    shmlease_close(t);
    return st.recoveries;
}

/* A table of CAP entries holding "k-existing" (free) and "k-held-dead",
 * held by a process that was killed normally. */
static void prepare(const char *name, uint32_t cap)
{
    shmlease_table *t = tu_open_cap(name, cap);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k-existing", 1000, 0, &l), 0);
    TU_RC(shmlease_release(t, &l), 0);
    pid_t pid = tu_fork_alarm(30);
    if (pid == 0) {
        shmlease_table *ct;
        shmlease_options o = {0};
        TU_CK_RC(shmlease_open(name, &o, &ct), 0);
        TU_CK_RC(tu_acquire(ct, "k-held-dead", 600000, 0, &l), 0);
        raise(SIGKILL);
    }
    int st = tu_wait(pid, 20000);
    TU_TRUE(WIFSIGNALED(st), "prepare child: %s", tu_status_str(st));
    tu_forget(t);
    shmlease_close(t);
}

static const char *const common_keys[] = {"k-existing", "k-held-dead", NULL};
static const char *const all_keys[] = {"k-existing", "k-held-dead", "k-new", NULL};

static void kill_at(const char *point, enum op op, int inherits_mutex)
{
    const char *name = tu_name("kill");
    prepare(name, CAP);
    uint64_t r0 = recoveries(name);
    pid_t pid = spawn_op(name, point, SHMLEASE_FAULT_KILL, op, CAP);
    expect_killed(pid, point, op);
    tu_check_usable(name, op == OP_ACQ_NEW ? all_keys : common_keys, CAP);
    uint64_t r1 = recoveries(name);
    if (inherits_mutex)
        TU_TRUE(r1 > r0, "%s: the dead process held a mutex but recoveries stayed %llu", point,
                 (unsigned long long)r0);
    tu_note("faults %s (%s): killed, table usable, recoveries %llu -> %llu", point, op_name(op),
             (unsigned long long)r0, (unsigned long long)r1);
}

/* ---- init.* --------------------------------------------------------------------------- */

static void kill_init(const char *point)
{
    const char *name = tu_name("init");
    pid_t pid = spawn_op(name, point, SHMLEASE_FAULT_KILL, OP_OPEN, CAP);
    expect_killed(pid, point, OP_OPEN);
    char path[256];
    tu_shm_path(path, sizeof path, name);
    struct stat st;
    TU_TRUE(stat(path, &st) == 0, "%s: the half-made segment vanished", point);
    /* A read-only opener never repairs: it refuses a half-made segment. */
    shmlease_options ro = {.flags = SHMLEASE_OPEN_READONLY};
    shmlease_table *t;
    TU_RC(shmlease_open(name, &ro, &t), -EPROTO);
    /* The next read-write opener (re)initialises it. */
    t = tu_open_cap(name, CAP);
    tu_forget(t);
    shmlease_close(t);
    tu_check_usable(name, NULL, CAP);
    tu_note("faults %s: creator killed (file left with %lld bytes), next opener repaired it", point,
             (long long)st.st_size);
}

/* create.before_mode: a creator killed once it made a file (hit 1: the lock
 * file; hit 2: the segment), with its group set and before its mode. The
 * file is left its creator's alone (0600 whatever the mode asked); the next
 * opener replaces a stale lock file that does not fit the table it makes,
 * and rebuilds a half-made segment (whose mode stays the narrower one). */
static void kill_create(unsigned hit)
{
    const char *name = tu_name("create");
    pid_t pid = tu_fork_alarm(60);
    if (pid == 0) {
        shmlease_options o = {.capacity = CAP, .mode = 0660};
        shmlease_table *t = NULL;
        shmlease__fault_arm("create.before_mode", SHMLEASE_FAULT_KILL, hit);
        shmlease_open(name, &o, &t);
        _exit(0);
    }
    expect_killed(pid, "create.before_mode", OP_OPEN);
    char seg[256], lk[256];
    tu_shm_path(seg, sizeof seg, name);
    snprintf(lk, sizeof lk, "/dev/shm/shmlease-lk.%s", name);
    struct stat st;
    TU_TRUE(stat(hit == 1 ? lk : seg, &st) == 0, "create.before_mode hit %u: the file vanished", hit);
    TU_TRUE((st.st_mode & 0777) == 0600, "create.before_mode hit %u: mode %03o, expected 0600 (its creator's alone)",
             hit, (unsigned)(st.st_mode & 0777));
    TU_TRUE(hit == 1 ? access(seg, F_OK) != 0 : st.st_size == 0, "create.before_mode hit %u: what was left", hit);
    shmlease_options o = {.capacity = CAP, .mode = 0660};
    shmlease_table *t = tu_open(name, &o);
    tu_forget(t);
    shmlease_close(t);
    tu_check_usable(name, NULL, CAP);
    struct stat ls, ss;
    TU_TRUE(stat(lk, &ls) == 0 && stat(seg, &ss) == 0, "create.before_mode hit %u: files after repair", hit);
    TU_EQ(ls.st_mode & 0777, hit == 1 ? 0660 : 0600);   /* narrowed to the segment's */
    TU_EQ(ss.st_mode & 0777, hit == 1 ? 0660 : 0600);
    tu_note("faults create.before_mode (%s): killed with the file 0600, next opener made a usable table "
            "(segment %03o, lock file %03o)", hit == 1 ? "lock file" : "segment", (unsigned)(ss.st_mode & 0777),
            (unsigned)(ls.st_mode & 0777));
}

static void t_create_lock_file_before_mode(void **s) { (void)s; kill_create(1); }
static void t_create_segment_before_mode(void **s) { (void)s; kill_create(2); }

static void t_init_after_lock(void **s) { (void)s; kill_init("init.after_lock"); }
static void t_init_after_fallocate(void **s) { (void)s; kill_init("init.after_fallocate"); }
static void t_init_after_mutexes(void **s) { (void)s; kill_init("init.after_mutexes"); }

/* ---- registry.* ------------------------------------------------------------------------- */

static void t_registry_locked(void **s) { (void)s; kill_at("registry.locked", OP_OPEN, 1); }
static void t_registry_after_claim(void **s) { (void)s; kill_at("registry.after_claim", OP_OPEN, 1); }

/* The sweep runs only when a registry slot is reused, i.e. once every slot
 * has been used: a child opens and closes the table SHM_REG_SLOTS times first. */
static void t_registry_after_sweep(void **s)
{
    (void)s;
    const char *name = tu_name("sweep");
    prepare(name, CAP);
    /* Only a slot whose user died attached is swept when reused (a closed
     * slot was freed by its closer): every slot but one is taken by handles
     * of ours, then a holder dies with a lease in that one, so the next
     * registrant must reuse (and sweep) it. */
    int nkept = 0;
    shmlease_table **kept = tu_fill_registry(name, 1, &nkept);
    pid_t pid = tu_fork_alarm(30);
    if (pid == 0) {
        shmlease_options o = {0};
        shmlease_table *t;
        shmlease_lease l;
        TU_CK_RC(shmlease_open(name, &o, &t), 0);
        TU_CK_RC(tu_acquire(t, "k-swept", 600000, 0, &l), 0);
        raise(SIGKILL);
    }
    tu_wait(pid, 20000);
    uint64_t r0 = recoveries(name);
    pid = spawn_op(name, "registry.after_sweep", SHMLEASE_FAULT_KILL, OP_OPEN, CAP);
    expect_killed(pid, "registry.after_sweep", OP_OPEN);
    tu_unfill_registry(kept, nkept);
    static const char *const keys[] = {"k-existing", "k-held-dead", "k-swept", NULL};
    tu_check_usable(name, keys, CAP);
    TU_TRUE(recoveries(name) > r0, "registry mutex inherited but not recovered");
    tu_note("faults registry.after_sweep: killed after sweeping a reused slot, table usable");
}

/* ---- acquire, renew, release ------------------------------------------------------------- */

static void t_acquire_after_cas_existing(void **s) { (void)s; kill_at("acquire.after_cas", OP_ACQ_EXISTING, 0); }
static void t_acquire_after_cas_new(void **s) { (void)s; kill_at("acquire.after_cas", OP_ACQ_NEW, 0); }
static void t_acquire_after_token(void **s) { (void)s; kill_at("acquire.after_token", OP_ACQ_EXISTING, 0); }
static void t_renew_before_cas(void **s) { (void)s; kill_at("renew.before_cas", OP_RENEW, 0); }
static void t_release_before_cas(void **s) { (void)s; kill_at("release.before_cas", OP_RELEASE, 0); }

/* A claimer killed between its CAS and its token: the key shows a dead holder,
 * the next acquirer takes it at once with a token above every token drawn. */
static void t_acquire_after_token_fencing(void **s)
{
    (void)s;
    const char *name = tu_name("tok");
    prepare(name, CAP);
    pid_t pid = spawn_op(name, "acquire.after_token", SHMLEASE_FAULT_KILL, OP_ACQ_EXISTING, CAP);
    expect_killed(pid, "acquire.after_token", OP_ACQ_EXISTING);
    shmlease_table *t = tu_open_cap(name, CAP);
    shmlease_stats st;
    TU_RC(shmlease_stats_get(t, &st), 0);
    shmlease_info info;
    TU_RC(shmlease_inspect(t, "k-existing", &info), 0);
    TU_TRUE(info.holder_alive == 0, "dead claimer shown alive=%d", info.holder_alive);
    TU_TRUE(info.fencing_token == 0, "an unpublished claim shows token %llu", (unsigned long long)info.fencing_token);
    shmlease_lease l;
    uint64_t t0 = tu_mono_ns();
    TU_RC(tu_acquire(t, "k-existing", 1000, 0, &l), 0);
    TU_TRUE(l.fencing_token > st.fencing_counter, "token %llu not above the dead claimer's %llu",
             (unsigned long long)l.fencing_token, (unsigned long long)st.fencing_counter);
    tu_note("faults acquire.after_token: dead claimer's key taken in %.3f ms, token %llu > %llu",
             (double)(tu_mono_ns() - t0) / 1e6, (unsigned long long)l.fencing_token,
             (unsigned long long)st.fencing_counter);
    TU_RC(shmlease_release(t, &l), 0);
}

/* ---- index / insert ------------------------------------------------------------------------ */

static void t_index_locked(void **s) { (void)s; kill_at("index.locked", OP_ACQ_NEW, 1); }
static void t_insert_after_pop(void **s) { (void)s; kill_at("insert.after_pop", OP_ACQ_NEW, 1); }
static void t_insert_after_key(void **s) { (void)s; kill_at("insert.after_key", OP_ACQ_NEW, 1); }
static void t_insert_after_state(void **s) { (void)s; kill_at("insert.after_state", OP_ACQ_NEW, 1); }
static void t_insert_after_bucket(void **s) { (void)s; kill_at("insert.after_bucket", OP_ACQ_NEW, 1); }

/* ---- retire.*: a full table, so that inserting forces a retirement ------------------------------ */

static void kill_retire(const char *point)
{
    const char *name = tu_name("retire");
    prepare(name, CAP);
    shmlease_table *t = tu_open_cap(name, CAP);
    shmlease_lease l;
    char k[32];
    /* Fill: CAP live keys, all free (retirable). An insert into a full table
     * retires every retirable entry, so add keys until the table is full. */
    shmlease_stats st;
    for (unsigned i = 0; i < 4 * CAP; i++) {
        TU_RC(shmlease_stats_get(t, &st), 0);
        if (st.live_keys == CAP)
            break;
        snprintf(k, sizeof k, "fill-%u", i);
        TU_RC(tu_acquire(t, k, 60000, 0, &l), 0);
        TU_RC(shmlease_release(t, &l), 0);
    }
    TU_RC(shmlease_stats_get(t, &st), 0);
    TU_TRUE(st.live_keys == CAP && t->hdr->free_head == 0, "table not full: live %u free_head %u",
             st.live_keys, t->hdr->free_head);
    uint64_t r0 = st.recoveries;
    pid_t pid = spawn_op(name, point, SHMLEASE_FAULT_KILL, OP_ACQ_NEW, CAP);
    expect_killed(pid, point, OP_ACQ_NEW);
    tu_forget(t);
    shmlease_close(t);
    tu_check_usable(name, all_keys, CAP);
    TU_TRUE(recoveries(name) > r0, "%s: index mutex inherited but not recovered", point);
    tu_note("faults %s: killed while retiring from a full table, table usable", point);
}

static void t_retire_after_cas(void **s) { (void)s; kill_retire("retire.after_cas"); }
static void t_retire_after_unlink(void **s) { (void)s; kill_retire("retire.after_unlink"); }

/* ---- recover.during: a second death inside the recovery ----------------------------------------- */

static void t_recover_during_index(void **s)
{
    (void)s;
    const char *name = tu_name("recidx");
    prepare(name, CAP);
    uint64_t r0 = recoveries(name);
    pid_t pid = spawn_op(name, "index.locked", SHMLEASE_FAULT_KILL, OP_ACQ_NEW, CAP);
    expect_killed(pid, "index.locked", OP_ACQ_NEW);
    /* The recoverer dies during the repair: the mutex stays inconsistent. */
    pid = spawn_op(name, "recover.during", SHMLEASE_FAULT_KILL, OP_ACQ_NEW, CAP);
    expect_killed(pid, "recover.during", OP_ACQ_NEW);
    TU_TRUE(recoveries(name) == r0, "a recovery was counted although the recoverer died");
    /* And once more, to be sure a twice-inherited mutex is still recoverable. */
    pid = spawn_op(name, "recover.during", SHMLEASE_FAULT_KILL, OP_ACQ_NEW, CAP);
    expect_killed(pid, "recover.during", OP_ACQ_NEW);
    tu_check_usable(name, all_keys, CAP);
    TU_TRUE(recoveries(name) > r0, "index mutex never recovered");
    tu_note("faults recover.during (index): two recoverers killed in the repair, third recovered");
}

static void t_recover_during_registry(void **s)
{
    (void)s;
    const char *name = tu_name("recreg");
    prepare(name, CAP);
    uint64_t r0 = recoveries(name);
    pid_t pid = spawn_op(name, "registry.locked", SHMLEASE_FAULT_KILL, OP_OPEN, CAP);
    expect_killed(pid, "registry.locked", OP_OPEN);
    pid = spawn_op(name, "recover.during", SHMLEASE_FAULT_KILL, OP_OPEN, CAP);
    expect_killed(pid, "recover.during", OP_OPEN);
    tu_check_usable(name, common_keys, CAP);
    TU_TRUE(recoveries(name) > r0, "registry mutex never recovered");
    tu_note("faults recover.during (registry): recoverer killed in the repair, next one recovered");
}

/* Ten deaths in a row inside the index mutex, each recovered (docs/failure-modes.md
 * F2, F3). */
static void t_repeated_deaths(void **s)
{
    (void)s;
    const char *name = tu_name("repeat");
    prepare(name, CAP);
    static const char *const pts[] = {"index.locked", "insert.after_pop", "insert.after_key",
                                      "insert.after_state", "insert.after_bucket"};
    uint64_t r0 = recoveries(name);
    static const char *const keys[] = {"k-existing", "k-held-dead", "n0", "n1", "n2", "n3", "n4",
                                       "n5", "n6", "n7", "n8", "n9", NULL};
    for (int i = 0; i < 10; i++) {
        new_key = keys[2 + i];
        pid_t pid = spawn_op(name, pts[i % 5], SHMLEASE_FAULT_KILL, OP_ACQ_NEW, CAP);
        expect_killed(pid, pts[i % 5], OP_ACQ_NEW);
    }
    new_key = "k-new";
    /* More keys than capacity went through: the check retires as needed. */
    tu_check_usable(name, keys, CAP);
    uint64_t r1 = recoveries(name);
    TU_TRUE(r1 >= r0 + 10, "10 inherited mutexes, %llu recoveries", (unsigned long long)(r1 - r0));
    tu_note("faults repeated: 10 consecutive deaths inside the index mutex, %llu recoveries, usable",
             (unsigned long long)(r1 - r0));
}

/* ---- STOP variants ------------------------------------------------------------------------------ */

/* Child: open NAME, acquire/release each of KEYS (existing) with wait 0, then a
 * new key with wait 0 if NEWKEY; reports elapsed ms through its exit code?
 * No: through the pipe. */
static pid_t spawn_existing_ops(const char *name, int *rfd)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = tu_fork_alarm(30);
    if (pid == 0) {
        close(p[0]);
        shmlease_options o = {.flags = SHMLEASE_OPEN_NOCREATE};
        shmlease_table *t;
        TU_CK_RC(shmlease_open(name, &o, &t), 0);
        uint64_t t0 = tu_mono_ns();
        for (int i = 0; i < 100; i++) {
            shmlease_lease l;
            TU_CK_RC(tu_acquire(t, "k-existing", 1000, 0, &l), 0);
            TU_CK_RC(shmlease_renew(t, &l, 2000), 0);
            TU_CK_RC(shmlease_release(t, &l), 0);
            TU_CK_RC(tu_acquire(t, "k-held-dead", 1000, 0, &l), 0);  /* reclaimed from the dead */
            TU_CK_RC(shmlease_release(t, &l), 0);
        }
        int64_t us = (int64_t)((tu_mono_ns() - t0) / 1000);
        TU_CK(write(p[1], &us, sizeof us) == (ssize_t)sizeof us);
        shmlease_close(t);
        _exit(0);
    }
    close(p[1]);
    *rfd = p[0];
    return pid;
}

static int count_cb(const shmlease_info *i, void *arg)
{
    (void)i;
    (*(int *)arg)++;
    return 0;
}

/* Inspection must neither block nor fail while a mutex is held by a stopped process. */
static void check_inspection_prompt(shmlease_table *t)
{
    uint64_t t0 = tu_mono_ns();
    shmlease_info info;
    int rc = shmlease_inspect(t, "k-existing", &info);
    TU_TRUE(rc == 0 || rc == -ENOENT, "inspect: %s", shmlease_errname(rc));
    int n = 0;
    TU_RC(shmlease_foreach(t, count_cb, &n), 0);
    shmlease_stats st;
    TU_RC(shmlease_stats_get(t, &st), 0);
    uint64_t ms = (tu_mono_ns() - t0) / 1000000u;
    TU_TRUE(ms < 500, "inspection took %llu ms while a mutex holder is stopped", (unsigned long long)ms);
}

static void t_stop_index_locked(void **s)
{
    (void)s;
    const char *name = tu_name("stopidx");
    prepare(name, CAP);
    shmlease_table *t = tu_open_cap(name, CAP);
    pid_t stopped = spawn_op(name, "index.locked", SHMLEASE_FAULT_STOP, OP_ACQ_NEW, CAP);
    TU_TRUE(tu_wait_stopped(stopped, 10000), "child did not stop at index.locked");

    /* Existing keys: lock-free, from this process and another one. */
    shmlease_lease l;
    uint64_t t0 = tu_mono_ns();
    TU_RC(tu_acquire(t, "k-existing", 1000, 0, &l), 0);
    TU_RC(shmlease_release(t, &l), 0);
    TU_TRUE((tu_mono_ns() - t0) / 1000000u < 500, "existing key took too long");
    int rfd;
    pid_t other = spawn_existing_ops(name, &rfd);
    int64_t us = -1;
    ssize_t r = read(rfd, &us, sizeof us);
    close(rfd);
    tu_expect_exit0_within(other, 20000);
    TU_TRUE(r == (ssize_t)sizeof us, "other process did not finish its operations on existing keys");
    check_inspection_prompt(t);
    TU_TRUE(tu_proc_state(stopped) == 'T' || tu_proc_state(stopped) == 't', "stopped child resumed");

    /* A new key needs the index mutex: a waiter blocks until the stopped
     * holder runs again; wait_ms does not bound that wait (reported). */
    pid_t newkey = tu_fork_alarm(30);
    if (newkey == 0) {
        shmlease_options o = {.flags = SHMLEASE_OPEN_NOCREATE};
        shmlease_table *ct;
        TU_CK_RC(shmlease_open(name, &o, &ct), 0);
        shmlease_lease cl;
        TU_CK_RC(tu_acquire(ct, "k-brand-new", 1000, 0, &cl), 0);
        _exit(0);
    }
    int st = tu_wait(newkey, 300);
    int blocked = (st == -1);
    tu_note("faults STOP index.locked: 200 acquire/renew/release of existing keys by another process in %lld us; "
             "inspect/foreach/stats prompt; try-acquire (wait_ms 0) of a NEW key %s while the holder is stopped",
             (long long)us, blocked ? "BLOCKS (>300 ms)" : "returned");
    kill(stopped, SIGCONT);
    tu_expect_exit0_within(stopped, 20000);
    tu_forget(t);
    shmlease_close(t);
    tu_check_usable(name, all_keys, CAP);
}

static void t_stop_registry_locked(void **s)
{
    (void)s;
    const char *name = tu_name("stopreg");
    prepare(name, CAP);
    shmlease_table *t = tu_open_cap(name, CAP);
    pid_t stopped = spawn_op(name, "registry.locked", SHMLEASE_FAULT_STOP, OP_OPEN, CAP);
    TU_TRUE(tu_wait_stopped(stopped, 10000), "child did not stop at registry.locked");
    shmlease_lease l;
    /* Attached handles work for existing and new keys. */
    TU_RC(tu_acquire(t, "k-existing", 1000, 0, &l), 0);
    TU_RC(shmlease_release(t, &l), 0);
    TU_RC(tu_acquire(t, "k-new-while-reg-stopped", 1000, 0, &l), 0);
    TU_RC(shmlease_release(t, &l), 0);
    check_inspection_prompt(t);
    /* Read-only attach takes no lock. */
    shmlease_options ro = {.flags = SHMLEASE_OPEN_READONLY};
    shmlease_table *rt;
    uint64_t t0 = tu_mono_ns();
    TU_RC(shmlease_open(name, &ro, &rt), 0);
    check_inspection_prompt(rt);
    shmlease_close(rt);
    TU_TRUE((tu_mono_ns() - t0) / 1000000u < 500, "read-only open blocked");
    /* A new read-write opener must register: it waits for the stopped one. */
    pid_t opener = tu_fork_alarm(30);
    if (opener == 0) {
        shmlease_options o = {.flags = SHMLEASE_OPEN_NOCREATE};
        shmlease_table *ct;
        TU_CK_RC(shmlease_open(name, &o, &ct), 0);
        _exit(0);
    }
    int st = tu_wait(opener, 300);
    tu_note("faults STOP registry.locked: attached handles keep acquiring (existing and new keys), "
             "read-only open and inspection prompt; a new read-write open %s while the holder is stopped",
             st == -1 ? "BLOCKS (>300 ms)" : "returned");
    kill(stopped, SIGCONT);
    tu_expect_exit0_within(stopped, 20000);
    tu_forget(t);
    shmlease_close(t);
    tu_check_usable(name, common_keys, CAP);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        TU_SLOW_TEST(t_create_lock_file_before_mode),
        TU_SLOW_TEST(t_create_segment_before_mode),
        TU_SLOW_TEST(t_init_after_lock),
        TU_SLOW_TEST(t_init_after_fallocate),
        TU_SLOW_TEST(t_init_after_mutexes),
        TU_SLOW_TEST(t_registry_locked),
        TU_SLOW_TEST(t_registry_after_sweep),
        TU_SLOW_TEST(t_registry_after_claim),
        TU_SLOW_TEST(t_acquire_after_cas_existing),
        TU_SLOW_TEST(t_acquire_after_cas_new),
        TU_SLOW_TEST(t_acquire_after_token),
        TU_SLOW_TEST(t_acquire_after_token_fencing),
        TU_SLOW_TEST(t_renew_before_cas),
        TU_SLOW_TEST(t_release_before_cas),
        TU_SLOW_TEST(t_index_locked),
        TU_SLOW_TEST(t_insert_after_pop),
        TU_SLOW_TEST(t_insert_after_key),
        TU_SLOW_TEST(t_insert_after_state),
        TU_SLOW_TEST(t_insert_after_bucket),
        TU_SLOW_TEST(t_retire_after_cas),
        TU_SLOW_TEST(t_retire_after_unlink),
        TU_SLOW_TEST(t_recover_during_index),
        TU_SLOW_TEST(t_recover_during_registry),
        TU_SLOW_TEST(t_repeated_deaths),
        TU_SLOW_TEST(t_stop_index_locked),
        TU_SLOW_TEST(t_stop_registry_locked),
    };
    return TU_RUN(tests);
}
