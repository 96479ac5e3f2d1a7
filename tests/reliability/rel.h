/*
 * Helpers of the reliability tests (tests/reliability/): processes, pipes,
 * shared memory, clocks, table-consistency checks through the layout in
 * src/internal.h. Own copy, independent of tests/testutil.[ch].
 *
 * Rules:
 *   - children are made with rel_fork(): PDEATHSIG, own alarm, cmocka's
 *     handlers reset; they never return into cmocka: they end with _exit()
 *     and report failures with CK()/CK_RC() (message on stderr, exit 1);
 *   - every table name comes from rel_name() and is unlinked at teardown;
 *   - REL_SKIP(fmt, ...) prints why and skips (privileges, kernel features).
 */
#ifndef SHMLEASE_REL_H
#define SHMLEASE_REL_H

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "internal.h"

/* ---- running --------------------------------------------------------------- */
int rel_setup(void **state);
int rel_teardown(void **state);
#define REL_TEST(f) cmocka_unit_test_setup_teardown(f, rel_setup, rel_teardown)
/* argv[1]: run only tests matching this glob; argv[2]: skip those matching this one. */
int rel_main(int argc, char **argv, const char *group, const struct CMUnitTest *tests, size_t n);
#define REL_RUN(tests) rel_main(argc, argv, __FILE__, tests, sizeof(tests) / sizeof((tests)[0]))

#define REL_SKIP(...)                                                              \
    do {                                                                           \
        char rel_why_[512];                                                        \
        snprintf(rel_why_, sizeof rel_why_, __VA_ARGS__);                          \
        print_message("[  SKIPPED ] %s: %s\n", __func__, rel_why_);                \
        rel_note("SKIP %s: %s", __func__, rel_why_);                               \
        skip();                                                                    \
    } while (0)

/* A figure for RESULTS.md: printed as "RESULT name: text" and appended to
 * $SHMLEASE_RESULTS_FILE when set. */
void rel_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Assertions with readable codes (parent side, cmocka). */
#define REL_RC(expr, want)                                                         \
    do {                                                                           \
        long long rc_ = (long long)(expr), want_ = (long long)(want);              \
        if (rc_ != want_)                                                          \
            fail_msg("%s:%d: %s returned %lld (%s), expected %lld (%s)", __FILE__,  \
                     __LINE__, #expr, rc_, shmlease_errname((int)rc_), want_,      \
                     shmlease_errname((int)want_));                                \
    } while (0)
#define REL_TRUE(cond, ...)                                                        \
    do {                                                                           \
        if (!(cond)) {                                                             \
            char rel_m_[600];                                                      \
            if (snprintf(rel_m_, sizeof rel_m_, __VA_ARGS__) < 0) /* may cut */    \
                rel_m_[0] = 0;                                                     \
            fail_msg("%s:%d: %s: %s", __FILE__, __LINE__, #cond, rel_m_);          \
        }                                                                          \
    } while (0)

/* ---- names, handles ------------------------------------------------------------ */
const char *rel_name(const char *tag);          /* "r<pid>-<tag>-<n>", unlinked at teardown */
void rel_path(char *buf, size_t len, const char *name);   /* /dev/shm/shmlease.NAME */
shmlease_table *rel_open(const char *name, uint32_t capacity);   /* must succeed; closed at teardown */
void rel_forget(shmlease_table *t);             /* closed by the caller instead */
shmlease_acquire_opts rel_ao(uint64_t ttl_ms, int64_t wait_ms);
int rel_acq(shmlease_table *t, const char *key, uint64_t ttl_ms, int64_t wait_ms, shmlease_lease *l);

/* ---- memory shared with children, time ------------------------------------------- */
void *rel_shared(size_t len);                   /* MAP_SHARED|MAP_ANONYMOUS, zeroed, freed at teardown */
uint64_t rel_ns(void);                          /* CLOCK_MONOTONIC */
uint64_t rel_ms(void);
void rel_sleep_ms(unsigned ms);
void rel_sleep_us(unsigned us);
/* Time the calling thread has spent runnable but waiting for a CPU (ns,
 * /proc/thread-self/schedstat; 0 where unavailable). A latency bound on the
 * library subtracts this: on loaded cores the scheduler's delay is not the
 * library's, and what remains is still bounded. */
uint64_t rel_run_delay_ns(void);
uint64_t rel_run_delay_of(pid_t tid);           /* the same for thread TID (/proc/TID/schedstat) */
uint64_t rel_rand(uint64_t *s);                 /* xorshift64* */

/* ---- processes --------------------------------------------------------------------- */
/* fork(); child: default signal handlers, PDEATHSIG=SIGKILL, alarm(alarm_s). */
pid_t rel_fork(unsigned alarm_s);
void rel_track(pid_t pid);                      /* SIGKILL+reap at teardown */
void rel_untrack(pid_t pid);
/* Waits for PID up to timeout_ms: its wait status, or -1 (then it is killed). */
int rel_wait(pid_t pid, int timeout_ms);
/* "exit 0", "killed by SIGBUS", ... */
const char *rel_status_str(int status);
void rel_expect_exit0(pid_t pid, int timeout_ms);
int rel_wait_stopped(pid_t pid, int timeout_ms);   /* 1 once PID is in state T */
char rel_proc_state(pid_t pid);                 /* /proc/PID/stat state letter, 0 if none */

_Noreturn void rel_child_fail(const char *file, int line, const char *what, long long got,
                              long long want, int values);
#define CK(cond)                                                                   \
    do {                                                                           \
        if (!(cond))                                                               \
            rel_child_fail(__FILE__, __LINE__, #cond, 0, 0, 0);                    \
    } while (0)
#define CK_RC(expr, want)                                                          \
    do {                                                                           \
        long long ck_ = (long long)(expr);                                         \
        if (ck_ != (long long)(want))                                              \
            rel_child_fail(__FILE__, __LINE__, #expr, ck_, (long long)(want), 1);  \
    } while (0)

/* ---- pipes: one value at a time, both directions ------------------------------------ */
typedef struct rel_chan { int up[2], down[2]; } rel_chan;
void rel_chan_init(rel_chan *c);               /* before fork */
void rel_chan_child(rel_chan *c);              /* in the child */
void rel_chan_parent(rel_chan *c);             /* in the parent */
void rel_up(rel_chan *c, int64_t v);           /* child -> parent */
int64_t rel_down(rel_chan *c);                 /* child waits for the parent (60 s) */
void rel_send(rel_chan *c, int64_t v);         /* parent -> child */
/* parent waits for a value from the child: 0 and *v, or -1 on EOF/timeout. */
int rel_recv(rel_chan *c, int64_t *v, int timeout_ms);
void rel_chan_close(rel_chan *c);

/* ---- files ------------------------------------------------------------------------- */
/* FNV-1a 64 of the file's bytes, and its size; 0 on success. */
int rel_file_digest(const char *path, uint64_t *digest, uint64_t *size);
int rel_write_file(const char *path, const void *buf, size_t len, mode_t mode);
/* Writes BUF (a segment image, LEN bytes) as table NAME with a lock file of
 * its own, named in BUF's header (a segment names its lock file: a plain copy
 * would name the original's and be refused read-write). The checksum is
 * recomputed only if it was right. */
int rel_write_segment(const char *name, void *buf, size_t len);
void *rel_read_file(const char *path, size_t *len);     /* malloc'd */

/* ---- table checks (no concurrent writers while they run) ------------------------------- */
/* Structural invariants of a quiescent table: every non-retired entry is in
 * the index exactly once, the index points only at live entries with the
 * right hash, no key twice, free list + live count == capacity, no cycle.
 * 0, or -1 with a reason in why. */
int rel_check_structure(shmlease_table *t, char *why, size_t whylen);
/* Full usability check of table NAME (see rel.c): fresh handle, keys,
 * exclusion with another process, capacity exact. Keys in KEYS (NULL ended)
 * are held by dead processes or free: each must be acquirable at once.
 * Fails the test (cmocka) on any deviation. */
void rel_check_usable(const char *name, const char *const *keys, uint32_t capacity);

#endif
