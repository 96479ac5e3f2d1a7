/*
 * The one helper library of the shmlease test programs (tests/test_*.c) and
 * the reliability programs (tests/reliability/rel_*.c). Every name starts
 * with tu_ / TU_.
 *
 * Rules every test follows (see tests/README.md):
 *   - a table name unique to the test (tu_name), unlinked in the teardown;
 *   - children made with tu_fork() / tu_fork_alarm(): they die with the test
 *     process (PR_SET_PDEATHSIG), carry their own alarm, never return into
 *     cmocka (they end with _exit) and report failures with TU_CK()/TU_CK_RC()
 *     as exit status 99 plus a message on stderr;
 *   - the teardown SIGKILLs and reaps every child still registered, closes
 *     the handles and channels, unmaps the shared areas;
 *   - child->parent results and barriers go through tu_chan pipes or a
 *     MAP_SHARED area made before fork (tu_shared); sleeps only let time pass;
 *   - TU_SKIP(fmt, ...) says why and skips (privileges, kernel features);
 *     tu_note() prints a "RESULT ..." line for tests/reliability/RESULTS.md.
 *
 * Helpers that read the segment layout of src/internal.h (table structure
 * checks, segment images) are in layout.c; the rest is in testutil.c.
 */
#ifndef SHMLEASE_TESTUTIL_H
#define SHMLEASE_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <signal.h>
#include <unistd.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <stdatomic.h>
#include <cmocka.h>

#include "shmlease.h"
#include "fault.h"

/* ---- running ------------------------------------------------------------ */
int tu_setup(void **state);        /* alarm(100): a wedged test kills the program */
int tu_setup_slow(void **state);   /* alarm(280), for the reliability programs */
int tu_teardown(void **state);
#define TU_TEST(f) cmocka_unit_test_setup_teardown(f, tu_setup, tu_teardown)
#define TU_SLOW_TEST(f) cmocka_unit_test_setup_teardown(f, tu_setup_slow, tu_teardown)
/* argv[1], if given: run only the tests matching this glob; argv[2]: skip those
 * matching this one. The program becomes a child subreaper (orphaned
 * grandchildren come back to it), ignores SIGPIPE, line-buffers stdout. */
int tu_main(int argc, char **argv, const char *group, const struct CMUnitTest *tests, size_t n);
#define TU_RUN(tests) \
    tu_main(argc, argv, __FILE__, tests, sizeof(tests) / sizeof((tests)[0]))

/* A figure for tests/reliability/RESULTS.md: printed as "RESULT text" and
 * appended to $SHMLEASE_RESULTS_FILE when set. */
void tu_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints why, records a "SKIP" note, and skips the calling test. */
#define TU_SKIP(...)                                                               \
    do {                                                                           \
        char tu_why_[512];                                                         \
        snprintf(tu_why_, sizeof tu_why_, __VA_ARGS__);                            \
        print_message("[  SKIPPED ] %s: %s\n", __func__, tu_why_);                 \
        tu_note("SKIP %s: %s", __func__, tu_why_);                                 \
        skip();                                                                    \
    } while (0)

/* Skips the calling test, loudly, when fault points are not compiled in. */
#define TU_REQUIRE_FAULT_POINTS()                                                  \
    do {                                                                           \
        if (!SHMLEASE_HAVE_FAULT_POINTS) {                                         \
            print_message("[  SKIPPED ] %s: fault points not compiled in; "        \
                          "configure with -DSHMLEASE_FAULT_POINTS=ON\n", __func__); \
            skip();                                                                \
        }                                                                          \
    } while (0)

/* Arms a fault point in the calling process (a child): no-op without them.
 * A name not in src/fault_points.def aborts the process. */
void tu_fault_arm(const char *point, int action, unsigned hit);

/* ---- assertions with readable return codes (parent side, cmocka) ----------- */
#define TU_RC(expr, want)                                                          \
    do {                                                                           \
        long long rc_ = (long long)(expr);                                         \
        long long want_ = (long long)(want);                                       \
        if (rc_ != want_)                                                          \
            fail_msg("%s:%d: %s returned %lld (%s), expected %lld (%s)", __FILE__,  \
                     __LINE__, #expr, rc_, shmlease_errname((int)rc_), want_,      \
                     shmlease_errname((int)want_));                                \
    } while (0)

/* COND, or the test fails with a printf-style explanation. */
#define TU_TRUE(cond, ...)                                                         \
    do {                                                                           \
        if (!(cond)) {                                                             \
            char tu_m_[600];                                                       \
            if (snprintf(tu_m_, sizeof tu_m_, __VA_ARGS__) < 0) /* may cut */      \
                tu_m_[0] = 0;                                                      \
            fail_msg("%s:%d: %s: %s", __FILE__, __LINE__, #cond, tu_m_);           \
        }                                                                          \
    } while (0)

#define TU_EQ(a, b)                                                                \
    do {                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                        \
        if (a_ != b_)                                                              \
            fail_msg("%s:%d: %s == %lld, expected %s == %lld", __FILE__, __LINE__,  \
                     #a, a_, #b, b_);                                              \
    } while (0)

#define TU_EQU(a, b)                                                               \
    do {                                                                           \
        unsigned long long a_ = (unsigned long long)(a),                           \
                           b_ = (unsigned long long)(b);                           \
        if (a_ != b_)                                                              \
            fail_msg("%s:%d: %s == %llu, expected %s == %llu", __FILE__, __LINE__,  \
                     #a, a_, #b, b_);                                              \
    } while (0)

#define TU_RANGE(x, lo, hi)                                                        \
    do {                                                                           \
        long long x_ = (long long)(x), lo_ = (long long)(lo), hi_ = (long long)(hi); \
        if (x_ < lo_ || x_ > hi_)                                                  \
            fail_msg("%s:%d: %s == %lld, expected within [%lld, %lld]", __FILE__,   \
                     __LINE__, #x, x_, lo_, hi_);                                  \
    } while (0)

#define TU_GT(a, b)                                                                \
    do {                                                                           \
        unsigned long long a_ = (unsigned long long)(a),                           \
                           b_ = (unsigned long long)(b);                           \
        if (!(a_ > b_))                                                            \
            fail_msg("%s:%d: expected %s (%llu) > %s (%llu)", __FILE__, __LINE__,   \
                     #a, a_, #b, b_);                                              \
    } while (0)

/* ---- assertions in children (never return into cmocka) --------------------- */
_Noreturn void tu_child_fail(const char *file, int line, const char *what, long long got,
                             long long want, int with_values);
#define TU_CK(cond)                                                                \
    do {                                                                           \
        if (!(cond))                                                               \
            tu_child_fail(__FILE__, __LINE__, #cond, 0, 0, 0);                     \
    } while (0)
#define TU_CK_RC(expr, want)                                                       \
    do {                                                                           \
        long long ck_rc_ = (long long)(expr);                                      \
        if (ck_rc_ != (long long)(want))                                           \
            tu_child_fail(__FILE__, __LINE__, #expr, ck_rc_, (long long)(want), 1); \
    } while (0)

/* ---- names, handles ------------------------------------------------------ */
/* A unique table name for this test ("t<pid>-<tag>-<n>"), unlinked at teardown. */
const char *tu_name(const char *tag);
/* Registers NAME (any string) for shmlease_unlink at teardown. */
void tu_unlink_later(const char *name);
/* "/dev/shm/shmlease.NAME" into buf. */
void tu_shm_path(char *buf, size_t len, const char *name);
int tu_shm_exists(const char *name);

/* shmlease_open that must succeed; the handle is closed at teardown unless
 * closed with tu_close (or given up with tu_forget) first. */
shmlease_table *tu_open(const char *name, const shmlease_options *o);
shmlease_table *tu_open_cap(const char *name, uint32_t capacity);
void tu_close(shmlease_table *t);
/* The teardown leaves T alone (the test closes it, or must never touch it). */
void tu_forget(shmlease_table *t);
/* Occupies every free registry slot of table NAME with handles of this
 * process but LEAVE (0 or 1), so that the next registration can only take
 * the slot left (or a slot whose user died meanwhile). Raises RLIMIT_NOFILE
 * as needed; skips the test when the hard limit is too low. Returns the
 * handles (*N of them), to give back with tu_unfill_registry. */
shmlease_table **tu_fill_registry(const char *name, int leave, int *n);
void tu_unfill_registry(shmlease_table **h, int n);

/* ---- leases --------------------------------------------------------------- */
shmlease_acquire_opts tu_aopts(uint64_t ttl_ms, int64_t wait_ms);
/* shmlease_acquire with ttl/wait and no metadata. */
int tu_acquire(shmlease_table *t, const char *key, uint64_t ttl_ms, int64_t wait_ms,
               shmlease_lease *out);
shmlease_stats tu_stats(shmlease_table *t);

/* Inspects KEY, failing the test unless it is held. */
static inline shmlease_info tu_inspect_ok(shmlease_table *t, const char *key)
{
    shmlease_info i;
    memset(&i, 0, sizeof i);
    int rc = shmlease_inspect(t, key, &i);
    if (rc != 0)
        fail_msg("shmlease_inspect(%s) returned %d (%s)", key, rc, shmlease_errname(rc));
    return i;
}

/* ---- the shared test clock ---------------------------------------------- */
typedef struct tu_clock {
    _Atomic uint64_t now_ms;
} tu_clock;
tu_clock *tu_clock_new(uint64_t start_ms);          /* in a MAP_SHARED area */
uint64_t tu_clock_read(void *ctx);                  /* the clock_ms callback */
void tu_clock_advance(tu_clock *c, uint64_t delta_ms);
uint64_t tu_clock_now(tu_clock *c);
shmlease_options tu_opts_clock(tu_clock *c, uint32_t capacity);

/* ---- memory shared with children ---------------------------------------- */
void *tu_shared(size_t len);   /* zeroed, MAP_SHARED|MAP_ANONYMOUS, made before fork */

/* ---- time ---------------------------------------------------------------- */
uint64_t tu_mono_ns(void);     /* CLOCK_MONOTONIC */
uint64_t tu_mono_us(void);
uint64_t tu_mono_ms(void);
void tu_sleep_ms(unsigned ms);
void tu_sleep_us(unsigned us);
/* Time the calling thread has spent runnable but waiting for a CPU (ns,
 * /proc/thread-self/schedstat; 0 where unavailable). A latency bound on the
 * library subtracts this: on loaded cores the scheduler's delay is not the
 * library's, and what remains is still bounded. */
uint64_t tu_run_delay_ns(void);
uint64_t tu_run_delay_of(pid_t tid);   /* the same for thread TID (/proc/TID/schedstat) */
uint64_t tu_rand(uint64_t *s);         /* xorshift64* */
/* Polls COND every 2 ms until true or MS elapsed; evaluates to COND's last value. */
#define TU_WAIT_FOR(cond, ms)                                                      \
    __extension__({                                                                \
        uint64_t tu_deadline_ = tu_mono_ms() + (uint64_t)(ms);                     \
        int tu_ok_;                                                                \
        while (!(tu_ok_ = !!(cond)) && tu_mono_ms() < tu_deadline_)                \
            tu_sleep_ms(2);                                                        \
        tu_ok_;                                                                    \
    })

/* ---- processes ------------------------------------------------------------ */
/* fork(): in the parent registers the child for the teardown; in the child
 * restores the default handlers of the signals cmocka or the test may have
 * caught, unblocks every signal, sets PDEATHSIG=SIGKILL and alarm(ALARM_S)
 * (0: none), and returns 0. tu_fork() is tu_fork_alarm(90). */
pid_t tu_fork_alarm(unsigned alarm_s);
pid_t tu_fork(void);
/* Registers a process made otherwise (a grandchild adopted as subreaper, a
 * clone) for SIGKILL and reaping at teardown; tu_untrack takes it back. */
void tu_track(pid_t pid);
void tu_untrack(pid_t pid);
/* After a process ends: lets VERDICT_MS pass, the time within which a
 * try sees the death of a holder (a try may believe an "alive" answer the
 * kernel gave up to VERDICT_MS ago: src/liveness.h). Every helper below that
 * reaps or waits for a death calls it, so that "dead, hence free to a try"
 * holds right after it. */
void tu_death_settle(void);
/* Waits up to timeout_ms for PID to end; returns its wait status, or -1 after
 * killing it on timeout. Unregisters it. */
int tu_wait(pid_t pid, int timeout_ms);
/* A wait status in words: "exit 0", "killed by SIGBUS (Bus error)", ... */
const char *tu_status_str(int status);
/* Assert that PID exits with status 0 (within 60 s, or timeout_ms). */
void tu_expect_exit0(pid_t pid);
void tu_expect_exit0_within(pid_t pid, int timeout_ms);
/* Asserts that PID dies of signal SIG within 60 s. */
void tu_expect_signal(pid_t pid, int sig);
/* SIGKILL + reap. */
void tu_kill(pid_t pid);
/* 1 once PID is stopped (state T or t) within timeout_ms; 0 if it is not, or
 * ended, or is gone. */
int tu_wait_stopped(pid_t pid, int timeout_ms);
/* Waits until PID has terminated, without reaping it (it stays a zombie). */
int tu_wait_zombie(pid_t pid, int timeout_ms);

/* /proc/PID/stat, parsed from the last ')' (the command name in between the
 * parentheses may hold spaces and parentheses of its own). Times in clock
 * ticks. */
typedef struct tu_proc_stat {
    char state;              /* field 3: R, S, D, T, t, Z, ... */
    uint64_t utime, stime;   /* fields 14, 15 */
    uint64_t starttime;      /* field 22: since boot */
} tu_proc_stat;
/* 0, or -1 when PID has no readable /proc entry. */
int tu_proc_stat_read(pid_t pid, tu_proc_stat *out);
char tu_proc_state(pid_t pid);   /* the state letter, 0 if none */

/* ---- channels: pipes between a parent and one child ----------------------- */
typedef struct tu_chan {
    int up[2];     /* child -> parent */
    int down[2];   /* parent -> child */
    pid_t pid;     /* the child whose end is watched, set by tu_chan_parent */
} tu_chan;
void tu_chan_init(tu_chan *c);              /* before fork (O_CLOEXEC pipes) */
void tu_chan_child(tu_chan *c);             /* in the child, after fork */
/* In the parent, after fork. PID: the writer, if it is our child; a receive
 * then ends early when it ended without writing. 0: no such watch (the
 * writer is a grandchild). */
void tu_chan_parent(tu_chan *c, pid_t pid);
void tu_chan_close(tu_chan *c);             /* before teardown, if wanted */
/* child: sends V to the parent (TU_CK on failure). */
void tu_up(tu_chan *c, int64_t v);
/* child: waits for a value from the parent (up to 60 s, TU_CK on failure). */
int64_t tu_down_recv(tu_chan *c);
/* parent: sends V to the child. */
void tu_down(tu_chan *c, int64_t v);
/* parent: receives a value from the child; fails the test on timeout or if the
 * child ended. */
int64_t tu_up_recv(tu_chan *c, int timeout_ms);
/* parent: 0 and *v; -ETIMEDOUT; -EPIPE (every writer closed); -ECHILD when the
 * watched child ended first. */
int tu_up_try(tu_chan *c, int64_t *v, int timeout_ms);

/* ---- files ---------------------------------------------------------------- */
/* Reads a whole file (malloc'd, caller frees); NULL if it cannot. */
void *tu_read_file(const char *path, size_t *len);
/* Creates PATH afresh (unlinked first) with MODE and writes BUF: 0 or -errno. */
int tu_write_file(const char *path, const void *buf, size_t len, unsigned mode);
/* FNV-1a 64 of the file's bytes, and its size: 0 or -errno. */
int tu_file_digest(const char *path, uint64_t *digest, uint64_t *size);

/* ---- the segment layout (layout.c) ------------------------------------------- */
/* A segment names its lock file (inode and device in its header): a byte copy
 * under another name would name the original's, and a read-write open
 * refuses it. Makes a lock file for table NAME and names it in BUF (LEN bytes
 * of a segment image, changed in place) when BUF has a header; the checksum
 * is recomputed only if it was right. 0 or -errno. */
int tu_adopt_lock_file(const char *name, void *buf, size_t len);
/* tu_adopt_lock_file, then BUF written as the segment of table NAME. */
int tu_write_segment(const char *name, void *buf, size_t len);
/* Structural invariants of a quiescent table (no concurrent writers): every
 * non-retired entry is in the index exactly once, the index points only at
 * live entries with the right hash, no key twice, free list + live count ==
 * capacity, no cycle. 0, or -1 with a reason in why. */
int tu_check_structure(shmlease_table *t, char *why, size_t whylen);
/* Full usability check of table NAME: fresh handle, structure, keys,
 * exclusion with another process, capacity exact. Keys in KEYS (NULL ended)
 * are held by dead processes or free: each must be acquirable at once.
 * Fails the test on any deviation. */
void tu_check_usable(const char *name, const char *const *keys, uint32_t capacity);

#endif
