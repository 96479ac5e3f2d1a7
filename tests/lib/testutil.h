/*
 * Helpers shared by the shmlease test programs.
 *
 * Rules every test follows (see tests/README.md):
 *   - a table name unique to the test (tu_name), unlinked in the teardown;
 *   - children made with tu_fork(): they die with the test process
 *     (PR_SET_PDEATHSIG), carry their own alarm, never return into cmocka
 *     (they end with _exit) and report failures with CK()/CK_RC() as a
 *     non-zero exit status plus a message on stderr;
 *   - the teardown SIGKILLs and reaps every child still registered;
 *   - child->parent results and barriers go through tu_chan pipes or a
 *     MAP_SHARED area made before fork (tu_shared); sleeps only let time pass.
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
int tu_setup(void **state);
int tu_teardown(void **state);
#define TU_TEST(f) cmocka_unit_test_setup_teardown(f, tu_setup, tu_teardown)
/* argv[1], if given: run only the tests matching this glob; argv[2]: skip those
 * matching this one. */
int tu_main(int argc, char **argv, const char *group, const struct CMUnitTest *tests, size_t n);
#define TU_RUN(tests) \
    tu_main(argc, argv, __FILE__, tests, sizeof(tests) / sizeof((tests)[0]))

/* Skips the calling test, loudly, when fault points are not compiled in. */
#define TU_REQUIRE_FAULT_POINTS()                                                  \
    do {                                                                           \
        if (!SHMLEASE_HAVE_FAULT_POINTS) {                                         \
            print_message("[  SKIPPED ] %s: fault points not compiled in; "        \
                          "configure with -DSHMLEASE_FAULT_POINTS=ON\n", __func__); \
            skip();                                                                \
        }                                                                          \
    } while (0)

/* Arms a fault point in the calling process (a child): no-op without them. */
void tu_fault_arm(const char *point, int action, unsigned hit);

/* ---- assertions with readable return codes -------------------------------- */
#define TU_RC(expr, want)                                                          \
    do {                                                                           \
        long long rc_ = (long long)(expr);                                         \
        long long want_ = (long long)(want);                                       \
        if (rc_ != want_)                                                          \
            fail_msg("%s:%d: %s returned %lld (%s), expected %lld (%s)", __FILE__,  \
                     __LINE__, #expr, rc_, shmlease_errname((int)rc_), want_,      \
                     shmlease_errname((int)want_));                                \
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

/* ---- names, handles ------------------------------------------------------ */
/* A unique table name for this test ("t<pid>-<tag>-<n>"), unlinked at teardown. */
const char *tu_name(const char *tag);
/* Registers NAME (any string) for shmlease_unlink at teardown. */
void tu_unlink_later(const char *name);
/* "/dev/shm/shmlease.NAME" into buf. */
void tu_shm_path(char *buf, size_t len, const char *name);
int tu_shm_exists(const char *name);

/* shmlease_open that must succeed; the handle is closed at teardown unless
 * closed with tu_close first. */
shmlease_table *tu_open(const char *name, const shmlease_options *o);
shmlease_table *tu_open_cap(const char *name, uint32_t capacity);
void tu_close(shmlease_table *t);

/* ---- leases --------------------------------------------------------------- */
shmlease_acquire_opts tu_aopts(uint64_t ttl_ms, int64_t wait_ms);
/* shmlease_acquire with ttl/wait and no metadata. */
int tu_acquire(shmlease_table *t, const char *key, uint64_t ttl_ms, int64_t wait_ms,
               shmlease_lease *out);
shmlease_stats tu_stats(shmlease_table *t);

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
uint64_t tu_mono_ms(void);     /* CLOCK_MONOTONIC in ms */
uint64_t tu_mono_us(void);
void tu_sleep_ms(unsigned ms);
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
 * resets cmocka's signal handlers, sets PDEATHSIG and an alarm, returns 0. */
pid_t tu_fork(void);
/* Registers a process that is not our direct child (a grandchild we adopted as
 * subreaper) for SIGKILL at teardown. */
void tu_adopt(pid_t pid);
/* Waits up to timeout_ms for PID to end; returns its wait status, or -1 after
 * killing it on timeout. Unregisters it. */
int tu_wait(pid_t pid, int timeout_ms);
/* Asserts that PID exits with status 0 within 60 s. */
void tu_expect_exit0(pid_t pid);
/* Asserts that PID dies of signal SIG within 60 s. */
void tu_expect_signal(pid_t pid, int sig);
/* SIGKILL + reap. */
void tu_kill(pid_t pid);
/* Waits until PID is stopped (SIGSTOP); 1 if so within timeout_ms. */
int tu_wait_stopped(pid_t pid, int timeout_ms);
/* Waits until PID has terminated, without reaping it (it stays a zombie). */
int tu_wait_zombie(pid_t pid, int timeout_ms);

_Noreturn void tu_child_fail(const char *file, int line, const char *what, long long got,
                             long long want, int with_values);
#define CK(cond)                                                                   \
    do {                                                                           \
        if (!(cond))                                                               \
            tu_child_fail(__FILE__, __LINE__, #cond, 0, 0, 0);                     \
    } while (0)
#define CK_RC(expr, want)                                                          \
    do {                                                                           \
        long long ck_rc_ = (long long)(expr);                                      \
        if (ck_rc_ != (long long)(want))                                           \
            tu_child_fail(__FILE__, __LINE__, #expr, ck_rc_, (long long)(want), 1); \
    } while (0)

/* ---- channels: pipes between a parent and one child -------------------------- */
typedef struct tu_chan {
    int up[2];     /* child -> parent */
    int down[2];   /* parent -> child */
    pid_t pid;     /* the child, set by tu_chan_parent */
} tu_chan;
void tu_chan_init(tu_chan *c);              /* before fork */
void tu_chan_child(tu_chan *c);             /* in the child, after fork */
void tu_chan_parent(tu_chan *c, pid_t pid); /* in the parent, after fork */
/* child: sends V to the parent (CK on failure). */
void tu_up(tu_chan *c, int64_t v);
/* child: waits for a value from the parent (up to 60 s, CK on failure). */
int64_t tu_down_recv(tu_chan *c);
/* parent: sends V to the child. */
void tu_down(tu_chan *c, int64_t v);
/* parent: receives a value from the child; fails the test on timeout or if the
 * child ended. */
int64_t tu_up_recv(tu_chan *c, int timeout_ms);
/* parent: 0 and *v, -ETIMEDOUT, or -ECHILD when the child ended first. */
int tu_up_try(tu_chan *c, int64_t *v, int timeout_ms);

/* ---- files ---------------------------------------------------------------- */
/* Reads a whole file (malloc'd, caller frees); NULL if it cannot. */
unsigned char *tu_read_file(const char *path, size_t *len);
void tu_write_file(const char *path, const void *buf, size_t len, unsigned mode);

/* Inspects KEY, failing the test unless it is held. */
static inline shmlease_info inspect_ok(shmlease_table *t, const char *key)
{
    shmlease_info i;
    memset(&i, 0, sizeof i);
    int rc = shmlease_inspect(t, key, &i);
    if (rc != 0)
        fail_msg("shmlease_inspect(%s) returned %d (%s)", key, rc, shmlease_errname(rc));
    return i;
}

#endif
