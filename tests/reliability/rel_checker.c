/*
 * Exclusion checker: every ownership interval refereed from recorded
 * histories, through the public API of include/shmlease.h only (nothing here
 * reads the segment's layout: the referee sees what the callers saw).
 *
 * The workload (one round; CI: one 30 s round, long: SHMLEASE_LONG=1 and
 * `rel_checker --long`, rounds for SHMLEASE_CHECKER_SECONDS, default 300):
 *   - WORKERS processes x 3 threads on 16 keys (4 hot, 12 cold) of one table
 *     of capacity 10, so cold keys are retired and inserted all the time;
 *     TTLs of 1-5 ms and of 10-60 ms; acquire as a try, a timed wait, a real
 *     WAIT_FOREVER and "forever" made of timed waits; renew, release,
 *     release_after (grace 1-10 ms), check, abandoning a lease to expiry;
 *   - modes (key_limit[]): hot keys 1-3 and four cold keys are also used in
 *     SHARED mode (two acquires in three there): keys 1, 4 and 8 with no
 *     limit, counted keys 2 and 6 with limit 2, 3 and 10 with limit 3 (every
 *     process the same); a shared holder now and then upgrades (a try, a
 *     timed wait, WAIT_FOREVER; sometimes asking its spent shared value
 *     afterwards); witness rounds (5) are for exclusive leases only;
 *     thread 2 of each worker uses the handle the test process opened before
 *     forking (inherited); thread 0 forks children that use the worker's
 *     handle and try the worker's lease value (must be -ESTALE); thread 1
 *     now and then runs a "burst": it holds L0, breaks its own key, and
 *     re-acquires the key on the same handle with TTLs that end exactly at
 *     L0's deadline, asking check(L0) after each claim;
 *   - CHURN processes open a handle, use it, close it (sometimes while
 *     holding a lease), and sometimes exit holding one; they are replaced,
 *     so registry slots are reused all the time;
 *   - an operator process inspects keys every few ms and breaks one every
 *     5-40 ms;
 *   - the test process SIGKILLs a random worker or churn process every
 *     20-120 ms (the kill instant is recorded BEFORE the signal is sent) and
 *     replaces it, and SIGSTOPs one every 30-150 ms for 5-60 ms, longer than
 *     the short TTLs (stop recorded before SIGSTOP, continue after SIGCONT).
 *
 * Every call is logged in a MAP_SHARED array made before any fork: who
 * (process index, thread), which lease (a lease id unique per acquire call),
 * op, key, handle, the CLOCK_MONOTONIC instants read right before the call and
 * right after it returned, the result, token and expires_at_ms. A record is
 * written in two steps, each ended by a store of its state (CALLED, then
 * DONE): a process killed between the steps leaves a CALLED record, an op that
 * may or may not have taken effect; one killed before the first store leaves
 * an EMPTY record, an op never called.
 *
 * The referee (referee() below) runs in the test process once every process
 * of the round is dead, on the records alone. Times are ns of CLOCK_MONOTONIC;
 * a deadline D = expires_at_ms is taken to end at D ms - 1 ms (the table's
 * clock is CLOCK_MONOTONIC in whole ms: 1 ms for the rounding, no other slack).
 *   1. Exclusion. The CERTAIN interval of a successful acquire is
 *      [its return, end), end = the earliest of: its deadline (from the
 *      acquire, or from the latest successful renew that returned, the shorter
 *      of the two while a renew is running), the call of a release or
 *      release_after of it, the death of its process (the recorded kill
 *      instant, its own 'exit' record, its parent's death for a fork child,
 *      its last recorded instant if it died unexpectedly), the call of a
 *      close of its handle, and the call of any successful break of its key
 *      that returned after the acquire was called. Certain intervals of one
 *      key never overlap. A release_after keeps its key blocked: an acquire of
 *      that key returning success in [release_after returned, its call + grace
 *      - 1 ms) (cut at a break that may have ended the grace) is a violation
 *      if its claim certainly came after the release_after's CAS: an acquire
 *      can return late, with a lease it claimed before the grace began. The
 *      claim is not before the acquire's call, nor before expires_at - ttl
 *      - 1 ms (a new lease is never longer than asked).
 *   2. Tokens. Successive certain intervals of a key have strictly increasing
 *      tokens; if acquire A returned before acquire B was called, token(A) <
 *      token(B) (any keys); no token is handed out twice.
 *   3. Lost stays lost. A lease is lost from the earliest of: the return of an
 *      op on it that gave -ESTALE; its deadline + 1 ms; the return of a break
 *      of its key called after the acquire returned and returned while the
 *      lease was certainly held; the return of an inspect of its key, called
 *      after the acquire returned, that showed the key free or in a grace
 *      period; the return of its successful release/release_after (the value
 *      is spent). No op on it called after that instant returns 0. An op on a
 *      lease by another process (a fork child holding the parent's value)
 *      never returns 0.
 *   4. A successful acquire's (or upgrade's) lease lasts about ttl:
 *      return + ttl - S <= expires_at <= return + ttl + 1 ms, where S = 1 ms of rounding plus the
 *      header's allowance for the coarse clock (two of its ticks, from
 *      clock_getres(CLOCK_MONOTONIC_COARSE), rounded up to ms), unless its own process was stopped
 *      during the call. Time the calling thread spent preempted (waiting on a
 *      run queue) during the call, as the kernel counts it for that thread
 *      (/proc/thread-self/schedstat, read before and after the call), may lie
 *      between the claim and the return: a lease short by no more than that
 *      plus 2 ms is excused (counted apart). Time spent blocked inside the
 *      library (waiting for a lock, joining a thread) is not excused.
 *   5. Witness (independent of the arithmetic above): inside a lease, while
 *      (expires_at - now) > 2 ms, the holder exchanges the key's owner word in
 *      shared memory for its lease id, spins, reads it back, and logs what it
 *      saw. A mark by another lease read back while the holder was still 2 ms
 *      from its deadline, written by that other holder while IT was 2 ms from
 *      its deadline, is a violation unless a break may have ended either
 *      lease first (a broken holder does not know until it asks).
 *   6. Return codes outside the contract's list for the call.
 *
 * Modes. A successful upgrade ends its shared lease's certain interval at
 * its call and begins an exclusive lease (its own lease id, token and
 * deadline) at its return; it spends the shared value (3: lost from its
 * return); one killed inside ends the shared interval at its call too. A
 * failed upgrade leaves the shared lease as it was (3 as for any other op).
 * On top of 1-6:
 *   1.  An exclusive certain interval overlaps no other certain interval of
 *       its key, shared or exclusive; shared ones may overlap each other.
 *   1b. A shared holder's grace period blocks exclusive claims only.
 *   1c. At no instant do more certain shared intervals of a key overlap than
 *       their limit (counted keys); the peak seen per limit is reported.
 *   1d. A break that returned -ENOENT while a certain interval of its key
 *       covered the whole call missed a holder.
 *   1e. A shared acquire never gets -EDOM (every process uses the key's one
 *       limit).
 *   2.  An exclusive holder's token is greater than that of every certain
 *       interval of its key (shared or exclusive) that ended before it began;
 *       shared holders' tokens need only be distinct. The order across keys
 *       is for acquires (an upgrade is none).
 *   3b. An upgrade returns -EDEADLK only while another exclusive claim of its
 *       key is under way: an exclusive acquire or an upgrade by another
 *       thread, called before the -EDEADLK returned and not ended when the
 *       upgrade was called.
 * The library's known departures from its header, modelled by default (and
 * counted on the RESULT line), refereed as the header states them with
 * SHMLEASE_CHECKER_STRICT=1:
 *   K1  (fixed; refereed in both modes) a failed upgrade never shortens its
 *       shared lease, and reports the deadline its wait may have moved later
 *       in the lease value: the referee takes that deadline;
 *   K2  a break may return -ENOENT while a shared holder holds the key (it
 *       misses it, as K4): 1d only for exclusive intervals;
 *   K3  an upgrade may return -ESTALE while its shared lease stays current;
 *   K4  an inspect may return -ENOENT while a shared holder holds the key:
 *       neither loses a shared lease (3).
 *
 * t_referee_selftest feeds the referee a synthetic history for each kind of
 * violation and checks it is reported, and clean ones that must pass (K1-K4:
 * clean by default, violations when strict). `rel_checker --mutate` (or
 * SHMLEASE_CHECKER_MUTATE=shared-busy) runs the real workload with shared
 * tries refused with -EBUSY logged as held, and passes only if the referee
 * reports exclusion and limit violations (8 s; SHMLEASE_CHECKER_SECONDS).
 *
 * Output: a RESULT line per round and one for the run (tu_note); the first
 * SHMLEASE_CHECKER_PRINT (20) violations of each kind with their records on
 * stdout, every one in rel_checker-violations.txt of the current directory
 * (SHMLEASE_CHECKER_REPORT to choose). SHMLEASE_CHECKER_DUMP=DIR writes each
 * round's raw history; `rel_checker --replay DIR/round-N` referees it again.
 */
#include "internal.h"
#include "testutil.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>

/* ---- the record --------------------------------------------------------------------- */

enum { ST_EMPTY = 0, ST_CALLED = 1, ST_DONE = 2 };
enum { OP_ACQ = 1, OP_RENEW, OP_RELEASE, OP_RELAFTER, OP_CHECK, OP_BREAK, OP_INSPECT, OP_OPEN, OP_CLOSE,
       OP_EXIT, OP_WITNESS, OP_UPGRADE, OP_N };
static const char *const op_names[OP_N] = {"?",     "acquire", "renew", "release", "release_after", "check",
                                           "break", "inspect", "open",  "close",   "exit",          "witness",
                                           "upgrade"};

struct rec {
    _Atomic uint32_t state;  /* ST_*: CALLED stored after the call fields, DONE after the result */
    uint32_t proc;           /* index into procs[] */
    uint8_t thr, op, key;
    uint8_t mode;            /* acquire: SHMLEASE_EXCLUSIVE or SHMLEASE_SHARED; inspect: the mode shown */
    int32_t rc;
    uint32_t lid;            /* lease id: acquire, renew, release, release_after, check, witness; upgrade:
                                the shared lease it turns exclusive */
    uint32_t hid;            /* handle id */
    uint32_t arg;            /* acquire, renew, upgrade: ttl ms; release_after: grace ms; witness: mark
                                found */
    uint32_t aux;            /* acquire, upgrade: wait_ms as int32; inspect: in_grace; witness: intruder's
                                lid */
    uint64_t call, ret;      /* CLOCK_MONOTONIC ns right before the call / right after the return */
    uint64_t token;          /* acquire, upgrade: token; inspect: token shown; witness: instant after
                                marking */
    uint64_t exp;            /* acquire, renew, upgrade: expires_at_ms; inspect: expires_at_ms shown */
    uint32_t delay_us;       /* acquire, upgrade: how long the calling thread waited on a run queue
                                during the call (the kernel's schedstat run_delay); UINT32_MAX = unknown */
    uint32_t x;              /* acquire: its limit (SHARED); upgrade: the lease id of the exclusive
                                lease it made */
};
_Static_assert(sizeof(struct rec) == 72, "record layout (SHMLEASE_CHECKER_DUMP readers know it)");

enum { P_WORKER = 1, P_CHURN, P_OPERATOR, P_CHILD };
static const char *const proc_kinds[] = {"?", "worker", "churn", "operator", "child"};

struct procrec {
    _Atomic int32_t pid;
    int32_t parent;                /* proc index of the forking worker, -1 */
    uint32_t kind;
    _Atomic uint32_t unexpected;   /* died, or had to be killed, without a recorded instant */
    _Atomic uint64_t kill_ns;      /* recorded before SIGKILL was sent; 0 = never */
};

struct stoprec {
    uint32_t proc;
    uint64_t stop_ns;   /* read before SIGSTOP was sent */
    uint64_t cont_ns;   /* read after SIGCONT (or SIGKILL) was sent */
};

#define MS_NS        1000000ull
#define SLACK_NS     MS_NS          /* a deadline in whole ms: its rounding */
#define MARGIN_NS    (2 * MS_NS)    /* witness: "comfortably" inside the lease */
/* Check 4: how much shorter than ttl a new lease may be (see above). */
static uint64_t short_ns(void)
{
    struct timespec r;
    uint64_t tick_ms = 1;
    if (clock_getres(CLOCK_MONOTONIC_COARSE, &r) == 0 && r.tv_sec == 0)
        tick_ms = ((uint64_t)r.tv_nsec + MS_NS - 1) / MS_NS;
    if (tick_ms == 0 || tick_ms > 10)
        tick_ms = 0;                   /* the library does not use such a clock */
    return (1 + 2 * tick_ms) * MS_NS;
}
#define SHORT_NS     short_ns()

/* ---- the referee ------------------------------------------------------------------------ */

struct history {
    const struct rec *r;
    size_t nr;
    const struct procrec *p;
    size_t np;
    const struct stoprec *s;
    size_t ns;
    uint64_t t0;          /* origin of printed instants */
    unsigned print_max;   /* violations printed in full per kind on stdout */
    FILE *report;         /* every violation with its records, or NULL */
    int strict;           /* 0: model the library's known departures K1-K4 (see above) */
};

enum vkind { V_EXCL, V_GRACE, V_TOKEN_KEY, V_TOKEN_ORDER, V_TOKEN_DUP, V_LOST_STALE, V_LOST_DEADLINE,
             V_LOST_BROKEN, V_LOST_INSPECT, V_LOST_SPENT, V_LOST_FOREIGN, V_SHORT, V_LONG, V_WITNESS,
             V_RC, V_LIMIT, V_EDOM, V_DEADLK, V_BREAK_MISSED, V_N };
static const char *const vnames[V_N] = {
    "exclusion",        "grace",          "token-per-key",  "token-order",    "token-duplicate",
    "lost-after-stale", "lost-after-deadline", "lost-after-break", "lost-after-inspect", "lost-after-release",
    "foreign-lease",    "short-lease",    "long-lease",     "witness",        "return-code",
    "limit",            "limit-disagreement", "upgrade-deadlock", "break-missed-holder"};

#define PEAK_MAX 8        /* limits whose peak of certain holders is reported */
struct verdict {
    uint64_t n[V_N], total;
    uint64_t ops, incomplete, acquisitions, intervals, breaks, witness_rounds, witness_conflicts,
        witness_explained, short_with_other_stopped, short_preempted;
    /* Modes: successful acquires per mode, upgrades by result, the most
     * certain shared intervals of one key seen at once (per limit; [0]: no
     * limit), what the known departures K1-K4 concern. */
    uint64_t acq_excl, acq_shared, acq_counted, upgrades, upgrades_ok, upgrades_deadlk, upgrades_moved,
        breaks_missed_shared, upgrades_stale_current, inspect_missed_shared;
    uint32_t peak[PEAK_MAX];
    char example[V_N][1400];
};

static const struct history *H;   /* for the comparators (the referee is single-threaded) */

static const char *rcname(int rc) { return rc == 0 ? "0" : shmlease_errname(rc); }

static double rel_t(uint64_t ns) { return ns >= H->t0 ? (double)(ns - H->t0) / 1e6 : -(double)(H->t0 - ns) / 1e6; }

static void rec_str(char *buf, size_t len, size_t i)
{
    const struct rec *r = &H->r[i];
    const struct procrec *p = r->proc < H->np ? &H->p[r->proc] : NULL;
    uint32_t st = atomic_load_explicit(&r->state, memory_order_relaxed);
    int n = snprintf(buf, len, "#%zu %s proc %u(%s pid %d) thr %u lease %u key %u handle %u call %.6f", i,
                     r->op < OP_N ? op_names[r->op] : "?", r->proc,
                     p && p->kind <= P_CHILD ? proc_kinds[p->kind] : "?",
                     p ? (int)atomic_load_explicit(&p->pid, memory_order_relaxed) : 0, r->thr, r->lid, r->key,
                     r->hid, rel_t(r->call));
    if (n < 0 || (size_t)n >= len)
        return;
    if (st != ST_DONE) {
        snprintf(buf + n, len - (size_t)n, " (no return: killed)");
        return;
    }
    int m = snprintf(buf + n, len - (size_t)n, " ret %.6f", rel_t(r->ret));
    if (m >= 0 && r->op != OP_WITNESS && (size_t)(n + m) < len)
        m += snprintf(buf + n + m, len - (size_t)(n + m), " rc %s", rcname(r->rc));
    if (m < 0 || (size_t)(n + m) >= len)
        return;
    n += m;
    switch (r->op) {
    case OP_ACQ:
    case OP_UPGRADE: {
        char mode[48] = "";
        if (r->op == OP_UPGRADE)
            snprintf(mode, sizeof mode, " new-lease %u", r->x);
        else if (r->mode == SHMLEASE_SHARED)
            snprintf(mode, sizeof mode, " shared limit %u", r->x);
        snprintf(buf + n, len - (size_t)n, "%s ttl %u wait %d token %llu expires_at %.3f preempted %.3f", mode,
                 r->arg, (int32_t)r->aux, (unsigned long long)r->token, r->exp ? rel_t(r->exp * MS_NS) : 0.0,
                 r->delay_us == UINT32_MAX ? -1.0 : r->delay_us / 1e3);
        break;
    }
    case OP_RENEW:
        snprintf(buf + n, len - (size_t)n, " ttl %u expires_at %.3f", r->arg, r->exp ? rel_t(r->exp * MS_NS) : 0.0);
        break;
    case OP_RELAFTER:
        snprintf(buf + n, len - (size_t)n, " grace %u", r->arg);
        break;
    case OP_INSPECT:
        snprintf(buf + n, len - (size_t)n, " token %llu expires_at %.3f%s%s", (unsigned long long)r->token,
                 r->exp ? rel_t(r->exp * MS_NS) : 0.0, r->aux ? " in_grace" : "",
                 r->mode == SHMLEASE_SHARED ? " shared" : "");
        break;
    case OP_WITNESS:
        snprintf(buf + n, len - (size_t)n, " marked-by %.6f saw %u (previous %u) flags %d", rel_t(r->token), r->aux,
                 r->arg, r->rc);
        break;
    default:
        break;
    }
}

static void violation(struct verdict *v, int kind, long a, long b, long c, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static void violation(struct verdict *v, int kind, long a, long b, long c, const char *fmt, ...)
{
    char why[400], ra[360] = "", rb[360] = "", rc[360] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    v->n[kind]++;
    v->total++;
    if (a >= 0)
        rec_str(ra, sizeof ra, (size_t)a);
    if (b >= 0)
        rec_str(rb, sizeof rb, (size_t)b);
    if (c >= 0)
        rec_str(rc, sizeof rc, (size_t)c);
    for (int f = 0; f < 2; f++) {
        FILE *o = f ? H->report : stdout;
        if (!o || (!f && v->n[kind] > H->print_max))
            continue;
        fprintf(o, "VIOLATION %s: %s\n", vnames[kind], why);
        if (a >= 0)
            fprintf(o, "    %s\n", ra);
        if (b >= 0)
            fprintf(o, "    %s\n", rb);
        if (c >= 0)
            fprintf(o, "    %s\n", rc);
    }
    if (v->n[kind] == 1)
        if (snprintf(v->example[kind], sizeof v->example[kind], "%s | %s%s%s%s%s", why, ra, b >= 0 ? " | " : "",
                     rb, c >= 0 ? " | " : "", rc) < 0)   /* an example may be cut short */
            v->example[kind][0] = 0;
}

static int done(size_t i) { return atomic_load_explicit(&H->r[i].state, memory_order_relaxed) == ST_DONE; }
static int called(size_t i) { return atomic_load_explicit(&H->r[i].state, memory_order_relaxed) != ST_EMPTY; }
static uint64_t u64min(uint64_t a, uint64_t b) { return a < b ? a : b; }
static uint64_t dl_ns(uint64_t exp_ms) { return exp_ms * MS_NS > SLACK_NS ? exp_ms * MS_NS - SLACK_NS : 0; }

/* The earliest instant successful acquire A can have claimed its key: not
 * before its call, nor more than ttl before its deadline (a new lease is never
 * longer than ttl; SLACK_NS for the ms rounding). */
static uint64_t claim_lb(const struct rec *A)
{
    uint64_t d = (A->exp - A->arg) * MS_NS;
    d = d > SLACK_NS ? d - SLACK_NS : 0;
    return d > A->call ? d : A->call;
}

static int cmp_u64(uint64_t a, uint64_t b) { return (a > b) - (a < b); }

static int cmp_lease_ops(const void *x, const void *y)        /* by lease, call, index */
{
    uint32_t i = *(const uint32_t *)x, j = *(const uint32_t *)y;
    const struct rec *a = &H->r[i], *b = &H->r[j];
    if (a->lid != b->lid)
        return a->lid < b->lid ? -1 : 1;
    if (a->call != b->call)
        return cmp_u64(a->call, b->call);
    return (i > j) - (i < j);
}

static int cmp_key_call(const void *x, const void *y)         /* by key, call */
{
    uint32_t i = *(const uint32_t *)x, j = *(const uint32_t *)y;
    const struct rec *a = &H->r[i], *b = &H->r[j];
    if (a->key != b->key)
        return a->key < b->key ? -1 : 1;
    if (a->call != b->call)
        return cmp_u64(a->call, b->call);
    return (i > j) - (i < j);
}

static int cmp_key_ret(const void *x, const void *y)          /* by key, return */
{
    uint32_t i = *(const uint32_t *)x, j = *(const uint32_t *)y;
    const struct rec *a = &H->r[i], *b = &H->r[j];
    if (a->key != b->key)
        return a->key < b->key ? -1 : 1;
    if (a->ret != b->ret)
        return cmp_u64(a->ret, b->ret);
    return (i > j) - (i < j);
}

static int cmp_call(const void *x, const void *y)
{
    uint32_t i = *(const uint32_t *)x, j = *(const uint32_t *)y;
    int c = cmp_u64(H->r[i].call, H->r[j].call);
    return c ? c : (i > j) - (i < j);
}

static int cmp_ret(const void *x, const void *y)
{
    uint32_t i = *(const uint32_t *)x, j = *(const uint32_t *)y;
    int c = cmp_u64(H->r[i].ret, H->r[j].ret);
    return c ? c : (i > j) - (i < j);
}

static int cmp_token(const void *x, const void *y)
{
    uint32_t i = *(const uint32_t *)x, j = *(const uint32_t *)y;
    int c = cmp_u64(H->r[i].token, H->r[j].token);
    return c ? c : (i > j) - (i < j);
}

struct interval {
    uint64_t s, e, token;
    uint32_t acq;      /* record index of the acquire (or upgrade) */
    uint32_t key;
    uint32_t shared;   /* 1: a SHARED lease */
    uint32_t limit;    /* SHARED: its limit (0: none but SHMLEASE_LIMIT_MAX) */
};

static int cmp_interval(const void *x, const void *y)
{
    const struct interval *a = x, *b = y;
    if (a->key != b->key)
        return a->key < b->key ? -1 : 1;
    int c = cmp_u64(a->s, b->s);
    return c ? c : cmp_u64(a->e, b->e);
}

static const struct interval *IV;   /* for cmp_iv_end */

static int cmp_iv_end(const void *x, const void *y)
{
    size_t i = *(const size_t *)x, j = *(const size_t *)y;
    int c = cmp_u64(IV[i].e, IV[j].e);
    return c ? c : (i > j) - (i < j);
}

/* A start (+1) or end (-1) of a shared interval k; by instant, ends first. */
struct ev {
    uint64_t t;
    size_t k;
    int d;
};

static int cmp_ev(const void *x, const void *y)
{
    const struct ev *a = x, *b = y;
    int c = cmp_u64(a->t, b->t);
    if (c)
        return c;
    if (a->d != b->d)
        return a->d < b->d ? -1 : 1;
    return (a->k > b->k) - (a->k < b->k);
}

/* Per key: a sorted run of record indices. */
struct run {
    uint32_t *v;
    size_t n;
};

static struct run key_run(uint32_t *all, size_t n, unsigned key)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t m = lo + (hi - lo) / 2;
        if (H->r[all[m]].key < key)
            lo = m + 1;
        else
            hi = m;
    }
    size_t e = lo;
    hi = n;
    while (e < hi) {                   /* the end, also by halves: runs can be long */
        size_t m = e + (hi - e) / 2;
        if (H->r[all[m]].key <= key)
            e = m + 1;
        else
            hi = m;
    }
    struct run r = {all + lo, e - lo};
    return r;
}

struct lease {
    int64_t acq;           /* record index of its acquire, -1 */
    uint32_t first, n;     /* its ops in ops[] */
    uint64_t end_nb;       /* certain end without breaks */
    uint64_t end;          /* certain end */
};

/* Was process P (itself) stopped at some instant of [a, b]? */
static long stopped_during(uint32_t p, uint64_t a, uint64_t b)
{
    for (size_t i = 0; i < H->ns; i++)
        if (H->s[i].proc == p && H->s[i].stop_ns <= b && H->s[i].cont_ns >= a)
            return (long)i;
    return -1;
}

static long other_stopped_during(uint32_t p, uint64_t a, uint64_t b)
{
    for (size_t i = 0; i < H->ns; i++)
        if (H->s[i].proc != p && H->s[i].stop_ns <= b && H->s[i].cont_ns >= a)
            return (long)i;
    return -1;
}

static int rc_expected(const struct rec *r)
{
    int rc = r->rc;
    switch (r->op) {
    case OP_ACQ: {
        int32_t wait = (int32_t)r->aux;
        if (rc == 0 || rc == -ENOSPC || rc == -EDOM)   /* -EDOM: refereed apart */
            return 1;
        return wait == 0 ? rc == -EBUSY : wait > 0 ? rc == -ETIMEDOUT : 0;
    }
    case OP_UPGRADE: {
        int32_t wait = (int32_t)r->aux;
        if (rc == 0 || rc == -ESTALE || rc == -EDEADLK)  /* -EDEADLK: refereed apart */
            return 1;
        return wait == 0 ? rc == -EBUSY : wait > 0 ? rc == -ETIMEDOUT : 0;
    }
    case OP_RENEW:
    case OP_RELEASE:
    case OP_RELAFTER:
    case OP_CHECK:
        return rc == 0 || rc == -ESTALE;
    case OP_BREAK:
    case OP_INSPECT:
        return rc == 0 || rc == -ENOENT;
    case OP_OPEN:
        return rc == 0;
    default:
        return 1;
    }
}

/* Does inspect record I show that no claim of its key was current (the key
 * free, or in a grace period)? Only what comes from the key's state word
 * counts: the token shown comes from a publication block that the library
 * allows to be briefly mixed. */
static int inspect_shows_lost(const struct rec *i)
{
    /* A shared key is described by one of its holders: that one in grace
     * says nothing of the others. */
    return i->rc == -ENOENT || (i->rc == 0 && i->aux && i->mode != SHMLEASE_SHARED);
}

/* The lease a successful acquire or upgrade made. */
static uint32_t made_lid(const struct rec *r) { return r->op == OP_UPGRADE ? r->x : r->lid; }
static int made_shared(const struct rec *r) { return r->op == OP_ACQ && r->mode == SHMLEASE_SHARED; }
/* A failed upgrade (returned): it may have renewed its shared lease to
 * call + ttl .. return + ttl while waiting (K1), which may also be why it
 * failed with -ESTALE. */
static int upgrade_moved(const struct rec *r) { return r->op == OP_UPGRADE && r->rc != 0; }

static int referee(const struct history *h, struct verdict *v)
{
    H = h;
    memset(v, 0, sizeof *v);
    const size_t nr = h->nr, np = h->np;
    int oom = 0;

    /* Deaths. */
    uint64_t *death = malloc((np + 1) * sizeof *death), *last = calloc(np + 1, sizeof *last);
    uint32_t maxlid = 0, maxhid = 0;
    if (!death || !last)
        return -1;
    for (size_t p = 0; p < np; p++) {
        uint64_t k = atomic_load_explicit(&h->p[p].kill_ns, memory_order_relaxed);
        death[p] = k ? k : UINT64_MAX;
    }
    for (size_t i = 0; i < nr; i++) {
        const struct rec *r = &h->r[i];
        if (!called(i) || r->proc >= np)
            continue;
        v->ops++;
        v->incomplete += !done(i);
        uint64_t t = done(i) ? r->ret : r->call;
        if (t > last[r->proc])
            last[r->proc] = t;
        if (r->op == OP_EXIT)
            death[r->proc] = u64min(death[r->proc], r->call);
        if (r->lid > maxlid)
            maxlid = r->lid;
        if (r->op == OP_UPGRADE && r->x > maxlid)
            maxlid = r->x;
        if (r->hid > maxhid)
            maxhid = r->hid;
        if (done(i) && !rc_expected(r))
            violation(v, V_RC, (long)i, -1, -1, "%s returned %s, not in the contract's list", op_names[r->op],
                      rcname(r->rc));
        if (done(i) && r->op == OP_ACQ && r->rc == -EDOM)
            violation(v, V_EDOM, (long)i, -1, -1,
                      "shared acquire with limit %u returned -EDOM, though every process uses limit %u for key %u",
                      r->x, r->x, r->key);
    }
    for (size_t p = 0; p < np; p++)
        if (atomic_load_explicit(&h->p[p].unexpected, memory_order_relaxed))
            death[p] = u64min(death[p], last[p]);
    for (size_t p = 0; p < np; p++) {     /* a fork child dies with its worker (parents come first) */
        int32_t q = h->p[p].parent;
        if (q >= 0 && (size_t)q < np)
            death[p] = u64min(death[p], death[q]);
    }

    /* Handles: when each was closed. */
    uint64_t *closed = malloc((maxhid + 1) * sizeof *closed);
    struct lease *L = malloc((maxlid + 1) * sizeof *L);
    uint32_t *ops = malloc((nr + 1) * sizeof *ops), *brk = malloc((nr + 1) * sizeof *brk),
             *ins = malloc((nr + 1) * sizeof *ins), *acq = malloc((nr + 1) * sizeof *acq),
             *acq2 = malloc((nr + 1) * sizeof *acq2), *wit = malloc((nr + 1) * sizeof *wit),
             *bnf = malloc((nr + 1) * sizeof *bnf), *xc = malloc((nr + 1) * sizeof *xc);
    uint64_t *bret = malloc((nr + 1) * sizeof *bret), *bmax = malloc((nr + 1) * sizeof *bmax);
    struct interval *iv = NULL;
    size_t *pm_all = NULL, *pm_x = NULL;
    uint64_t *xend = NULL, *xmax = NULL;
    size_t nops = 0, nbrk = 0, nins = 0, nacq = 0, nwit = 0, niv = 0, nbnf = 0, nxc = 0;
    if (!closed || !L || !ops || !brk || !ins || !acq || !acq2 || !wit || !bret || !bmax || !bnf || !xc) {
        oom = 1;
        goto out;
    }
    for (uint32_t i = 0; i <= maxhid; i++)
        closed[i] = UINT64_MAX;
    for (uint32_t i = 0; i <= maxlid; i++)
        L[i] = (struct lease){.acq = -1, .end_nb = 0, .end = 0};
    for (size_t i = 0; i < nr; i++) {
        const struct rec *r = &h->r[i];
        if (!called(i) || r->proc >= np)
            continue;
        switch (r->op) {
        case OP_ACQ:
            if (r->mode != SHMLEASE_SHARED)
                xc[nxc++] = (uint32_t)i;
            if (r->lid && r->lid <= maxlid)
                L[r->lid].acq = (int64_t)i;
            if (done(i) && r->rc == 0) {
                acq[nacq++] = (uint32_t)i;
                if (r->mode != SHMLEASE_SHARED)
                    v->acq_excl++;
                else if (r->x)
                    v->acq_counted++;
                else
                    v->acq_shared++;
            }
            break;
        case OP_UPGRADE:             /* an op on the shared lease; a success also makes a lease */
            ops[nops++] = (uint32_t)i;
            xc[nxc++] = (uint32_t)i;
            v->upgrades += done(i);
            if (done(i) && r->rc == -EDEADLK)
                v->upgrades_deadlk++;
            if (done(i) && upgrade_moved(r))
                v->upgrades_moved++;
            if (done(i) && r->rc == 0) {
                v->upgrades_ok++;
                if (r->x && r->x <= maxlid)
                    L[r->x].acq = (int64_t)i;
                acq[nacq++] = (uint32_t)i;
            }
            break;
        case OP_RENEW:
        case OP_RELEASE:
        case OP_RELAFTER:
        case OP_CHECK:
            ops[nops++] = (uint32_t)i;
            break;
        case OP_BREAK:
            if (!done(i) || r->rc == 0)    /* a break with no return may have happened */
                brk[nbrk++] = (uint32_t)i;
            if (done(i) && r->rc == -ENOENT)
                bnf[nbnf++] = (uint32_t)i;
            if (done(i) && r->rc == 0)
                v->breaks++;
            break;
        case OP_INSPECT:
            if (done(i))
                ins[nins++] = (uint32_t)i;
            break;
        case OP_CLOSE:
            if (r->hid <= maxhid)
                closed[r->hid] = u64min(closed[r->hid], r->call);
            break;
        case OP_WITNESS:
            if (done(i))
                wit[nwit++] = (uint32_t)i;
            break;
        default:
            break;
        }
    }
    v->acquisitions = nacq;
    iv = malloc((nacq + 1) * sizeof *iv);
    if (!iv) {
        oom = 1;
        goto out;
    }
    qsort(ops, nops, sizeof *ops, cmp_lease_ops);
    for (size_t i = 0; i < nops;) {
        size_t j = i;
        uint32_t lid = h->r[ops[i]].lid;
        while (j < nops && h->r[ops[j]].lid == lid)
            j++;
        if (lid <= maxlid) {
            L[lid].first = (uint32_t)i;
            L[lid].n = (uint32_t)(j - i);
        }
        i = j;
    }
    qsort(brk, nbrk, sizeof *brk, cmp_key_call);
    for (size_t i = 0; i < nbrk; i++) {     /* the latest instant each break may have acted at */
        const struct rec *r = &h->r[brk[i]];
        bret[i] = done(brk[i]) ? r->ret : death[r->proc];
        bmax[i] = (i > 0 && h->r[brk[i - 1]].key == r->key && bmax[i - 1] > bret[i]) ? bmax[i - 1] : bret[i];
    }
    qsort(ins, nins, sizeof *ins, cmp_key_call);

    /* Certain intervals. */
    for (size_t a = 0; a < nacq; a++) {
        const struct rec *A = &h->r[acq[a]];
        struct lease *l = &L[made_lid(A)];
        uint64_t D = dl_ns(A->exp), end = UINT64_MAX;
        for (uint32_t o = 0; o < l->n; o++) {
            size_t oi = ops[l->first + o];
            const struct rec *O = &h->r[oi];
            if (O->proc != A->proc)
                continue;                       /* a fork child's try: checked in 3 */
            if (O->call >= D)
                break;                          /* expired before: nothing legal revives it */
            if (O->op == OP_RELEASE || O->op == OP_RELAFTER) {
                end = O->call;
                break;
            }
            if (O->op == OP_UPGRADE) {
                /* A success ends the shared lease between its call and its
                 * return (the exclusive one begins at the return); so may
                 * one with no return. A failure leaves it as it was (K1: or
                 * renewed to as little as call + ttl). */
                if (!done(oi) || O->rc == 0) {
                    end = O->call;
                    break;
                }
                /* A failed upgrade never shortens the shared lease; the
                 * deadline it reports may be later. */
                if (O->exp && dl_ns(O->exp) > D)
                    D = dl_ns(O->exp);
                continue;
            }
            if (O->op != OP_RENEW)
                continue;
            if (!done(oi)) {                    /* killed inside a renew: the shortest it can have set */
                uint64_t nd = O->call + (uint64_t)O->arg * MS_NS;
                nd = nd > MS_NS + SLACK_NS ? nd - MS_NS - SLACK_NS : 0;
                D = u64min(D, nd);
            } else if (O->rc == 0) {
                uint64_t nd = dl_ns(O->exp), m = u64min(D, nd);
                if (m <= O->ret) {
                    D = m;
                    break;
                }
                D = nd;
            }
        }
        end = u64min(end, D);
        end = u64min(end, death[A->proc]);
        if (A->hid <= maxhid)
            end = u64min(end, closed[A->hid]);
        l->end_nb = end;
        /* The earliest break of the key that returned after A was called. */
        struct run br = key_run(brk, nbrk, A->key);
        size_t off = (size_t)(br.v - brk), lo = 0, hi = br.n;
        while (lo < hi) {
            size_t m = lo + (hi - lo) / 2;
            if (bmax[off + m] > A->call)
                hi = m;
            else
                lo = m + 1;
        }
        if (lo < br.n && h->r[br.v[lo]].call < end)
            end = h->r[br.v[lo]].call;
        l->end = end;
        if (A->ret < end)
            iv[niv++] = (struct interval){A->ret, end, A->token, acq[a], A->key, (uint32_t)made_shared(A),
                                          made_shared(A) ? A->x : 0};
    }
    v->intervals = niv;

    /* 1. Exclusion: an exclusive interval overlaps no other interval of its
     * key, shared or exclusive (sorted by start: the latest-ending earlier
     * interval, and the latest-ending earlier exclusive one, are the ones to
     * compare with). */
    qsort(iv, niv, sizeof *iv, cmp_interval);
    for (size_t i = 0; i < niv;) {
        size_t j, best = i, bestx = iv[i].shared ? SIZE_MAX : i;
        for (j = i + 1; j < niv && iv[j].key == iv[i].key; j++) {
            size_t o = iv[j].shared ? bestx : best;
            if (o != SIZE_MAX && iv[j].s < iv[o].e)
                violation(v, V_EXCL, iv[o].acq, iv[j].acq, -1,
                          "key %u: certain intervals (%s, %s) overlap by %.3f ms ([%.6f, %.6f) and [%.6f, %.6f))",
                          iv[j].key, iv[o].shared ? "shared" : "exclusive", iv[j].shared ? "shared" : "exclusive",
                          (double)(u64min(iv[o].e, iv[j].e) - iv[j].s) / 1e6, rel_t(iv[o].s), rel_t(iv[o].e),
                          rel_t(iv[j].s), rel_t(iv[j].e));
            if (iv[j].e > iv[best].e)
                best = j;
            if (!iv[j].shared && (bestx == SIZE_MAX || iv[j].e > iv[bestx].e))
                bestx = j;
        }
        i = j;
    }

    /* 2. Tokens per key: an exclusive holder's token is greater than that of
     * every interval of its key that ended before it began. */
    {
        size_t *byend = malloc((niv + 1) * sizeof *byend);
        if (!byend) {
            oom = 1;
            goto out;
        }
        for (size_t i = 0; i < niv;) {
            size_t j = i;
            while (j < niv && iv[j].key == iv[i].key)
                j++;
            size_t n = 0;
            for (size_t k = i; k < j; k++)
                byend[n++] = k;
            IV = iv;
            qsort(byend, n, sizeof *byend, cmp_iv_end);
            size_t p = 0, maxk = SIZE_MAX;
            for (size_t k = i; k < j; k++) {
                while (p < n && iv[byend[p]].e <= iv[k].s) {
                    if (maxk == SIZE_MAX || iv[byend[p]].token > iv[maxk].token)
                        maxk = byend[p];
                    p++;
                }
                if (!iv[k].shared && maxk != SIZE_MAX && iv[maxk].token >= iv[k].token)
                    violation(v, V_TOKEN_KEY, iv[maxk].acq, iv[k].acq, -1,
                              "key %u: exclusive token %llu after a %s interval with token %llu had ended",
                              iv[k].key, (unsigned long long)iv[k].token, iv[maxk].shared ? "shared" : "exclusive",
                              (unsigned long long)iv[maxk].token);
            }
            i = j;
        }
        free(byend);
    }

    /* 1c. Counted keys: at no instant more than LIMIT certain shared
     * intervals of a key (a sweep over starts and ends, ends first). */
    {
        struct ev *evs = malloc((2 * niv + 1) * sizeof *evs);
        size_t open_[64];
        if (!evs) {
            oom = 1;
            goto out;
        }
        for (size_t i = 0; i < niv;) {
            size_t j = i, ne = 0;
            while (j < niv && iv[j].key == iv[i].key)
                j++;
            for (size_t k = i; k < j; k++)
                if (iv[k].shared) {
                    evs[ne++] = (struct ev){iv[k].s, k, +1};
                    evs[ne++] = (struct ev){iv[k].e, k, -1};
                }
            qsort(evs, ne, sizeof *evs, cmp_ev);
            size_t nopen = 0, count = 0;
            for (size_t e = 0; e < ne; e++) {
                size_t k = evs[e].k;
                if (evs[e].d < 0) {
                    count--;
                    for (size_t q = 0; q < nopen; q++)
                        if (open_[q] == k) {
                            open_[q] = open_[--nopen];
                            break;
                        }
                    continue;
                }
                count++;
                uint32_t lim = iv[k].limit;
                size_t slot = lim < PEAK_MAX ? lim : PEAK_MAX - 1;
                if (count > v->peak[slot])
                    v->peak[slot] = (uint32_t)count;
                if (lim && count > lim)
                    violation(v, V_LIMIT, iv[k].acq, nopen > 0 ? (long)iv[open_[0]].acq : -1,
                              nopen > 1 ? (long)iv[open_[1]].acq : -1,
                              "key %u: %zu certain shared intervals at once at %.6f, limit %u", iv[k].key, count,
                              rel_t(iv[k].s), lim);
                if (nopen < sizeof open_ / sizeof open_[0])
                    open_[nopen++] = k;
            }
            i = j;
        }
        free(evs);
    }

    /* 1b. Grace periods. */
    memcpy(acq2, acq, nacq * sizeof *acq);
    qsort(acq2, nacq, sizeof *acq2, cmp_key_ret);
    for (size_t i = 0; i < nops; i++) {
        const struct rec *R = &h->r[ops[i]];
        if (R->op != OP_RELAFTER || !done(ops[i]) || R->rc != 0 || R->lid > maxlid || L[R->lid].acq < 0)
            continue;
        const struct rec *A = &h->r[L[R->lid].acq];
        uint64_t ws = R->ret, we = R->call + (uint64_t)R->arg * MS_NS;
        we = we > MS_NS ? we - MS_NS : 0;
        struct run br = key_run(brk, nbrk, A->key);
        size_t off = (size_t)(br.v - brk), lo = 0, hi = br.n;
        while (lo < hi) {
            size_t m = lo + (hi - lo) / 2;
            if (bmax[off + m] > R->call)
                hi = m;
            else
                lo = m + 1;
        }
        if (lo < br.n && h->r[br.v[lo]].call < we)
            we = h->r[br.v[lo]].call;
        if (ws >= we)
            continue;
        struct run ar = key_run(acq2, nacq, A->key);
        lo = 0, hi = ar.n;
        while (lo < hi) {
            size_t m = lo + (hi - lo) / 2;
            if (h->r[ar.v[m]].ret >= ws)
                hi = m;
            else
                lo = m + 1;
        }
        for (size_t k = lo; k < ar.n && h->r[ar.v[k]].ret < we; k++) {
            /* Only a claim made after the release_after's CAS (<= its return)
             * took the key during the grace: an acquire that returns late may
             * have claimed before. */
            const struct rec *B = &h->r[ar.v[k]];
            if (made_shared(A) && made_shared(B))
                continue;                  /* a shared holder's grace blocks exclusive claims only */
            if (claim_lb(B) >= R->ret)
                violation(v, V_GRACE, ops[i], ar.v[k], (long)L[R->lid].acq,
                          "key %u: claimed at or after %.6f and returned %.3f ms into a grace period of %u ms "
                          "(%.3f ms before its end)",
                          A->key, rel_t(claim_lb(B)), (double)(B->ret - R->call) / 1e6, R->arg,
                          ((double)(R->call + (uint64_t)R->arg * MS_NS) - (double)B->ret) / 1e6);
        }
    }

    /* 2. Token order across keys, duplicates. */
    memcpy(acq2, acq, nacq * sizeof *acq);
    qsort(acq, nacq, sizeof *acq, cmp_call);
    qsort(acq2, nacq, sizeof *acq2, cmp_ret);
    {
        size_t p = 0;
        long maxi = -1;
        for (size_t b = 0; b < nacq; b++) {      /* acquires only: an upgrade is no acquire */
            const struct rec *B = &h->r[acq[b]];
            while (p < nacq && h->r[acq2[p]].ret < B->call) {
                if (h->r[acq2[p]].op == OP_ACQ && (maxi < 0 || h->r[acq2[p]].token > h->r[maxi].token))
                    maxi = acq2[p];
                p++;
            }
            if (B->op != OP_ACQ)
                continue;
            if (maxi >= 0 && h->r[maxi].token >= B->token)
                violation(v, V_TOKEN_ORDER, maxi, acq[b], -1,
                          "token %llu handed out after an acquire that returned token %llu had returned",
                          (unsigned long long)B->token, (unsigned long long)h->r[maxi].token);
        }
    }
    qsort(acq2, nacq, sizeof *acq2, cmp_token);
    for (size_t i = 1; i < nacq; i++)
        if (h->r[acq2[i]].token == h->r[acq2[i - 1]].token)
            violation(v, V_TOKEN_DUP, acq2[i - 1], acq2[i], -1, "token %llu handed out twice",
                      (unsigned long long)h->r[acq2[i]].token);

    /* 3. Lost stays lost. */
    for (size_t a = 0; a < nacq; a++) {
        const struct rec *A = &h->r[acq[a]];
        const struct lease *l = &L[made_lid(A)];
        if (!l->n)
            continue;
        /* A break certain to have ended A: called after A returned, returned
         * while A was certainly held otherwise. */
        uint64_t bl = UINT64_MAX;
        long bli = -1;
        struct run br = key_run(brk, nbrk, A->key);
        for (size_t k = 0; k < br.n; k++) {
            const struct rec *B = &h->r[br.v[k]];
            if (B->call < A->ret)
                continue;
            if (B->call >= l->end_nb)
                break;
            if (done(br.v[k]) && B->ret <= l->end_nb && B->ret < bl) {
                bl = B->ret;
                bli = br.v[k];
            }
        }
        struct run ir = key_run(ins, nins, A->key);
        size_t ip = 0;
        while (ip < ir.n && h->r[ir.v[ip]].call < A->ret)
            ip++;
        uint64_t lost = UINT64_MAX, exp = A->exp, stale_up = 0, ins_missed = 0;
        int why = -1, stale_counted = 0, ins_counted = 0;
        long cause = -1;
        for (uint32_t o = 0; o < l->n; o++) {
            size_t oi = ops[l->first + o];
            const struct rec *O = &h->r[oi];
            if (O->proc != A->proc) {
                if (done(oi) && O->rc == 0)
                    violation(v, V_LOST_FOREIGN, (long)oi, acq[a], -1,
                              "%s by another process (proc %u) on proc %u's lease value returned 0",
                              op_names[O->op], O->proc, A->proc);
                continue;
            }
#define LOST_AT(t, w, c)                                                                           \
    do {                                                                                           \
        if ((t) < lost) {                                                                          \
            lost = (t);                                                                            \
            why = (w);                                                                             \
            cause = (c);                                                                           \
        }                                                                                          \
    } while (0)
            if ((exp + 1) * MS_NS < O->call)
                LOST_AT((exp + 1) * MS_NS, V_LOST_DEADLINE, -1);
            if (bl < O->call)
                LOST_AT(bl, V_LOST_BROKEN, bli);
            for (; ip < ir.n && h->r[ir.v[ip]].call < O->call; ip++) {
                const struct rec *I = &h->r[ir.v[ip]];
                if (I->ret < O->call && inspect_shows_lost(I)) {
                    if (!h->strict && made_shared(A))
                        ins_missed = ins_missed ? ins_missed : I->ret;   /* K4 */
                    else
                        LOST_AT(I->ret, V_LOST_INSPECT, (long)ir.v[ip]);
                    break;
                }
            }
            if (ins_missed && ins_missed < O->call && done(oi) && O->rc == 0 && !ins_counted) {
                ins_counted = 1;
                v->inspect_missed_shared++;
            }
            if (stale_up && stale_up < O->call && done(oi) && O->rc == 0 && !stale_counted) {
                stale_counted = 1;
                v->upgrades_stale_current++;
            }
            if (done(oi) && O->rc == 0 && lost < O->call) {
                if (why == V_LOST_DEADLINE)
                    violation(v, V_LOST_DEADLINE, (long)oi, acq[a], -1,
                              "%s called %.3f ms after the lease's deadline (expires_at %.3f) returned 0",
                              op_names[O->op], (double)(O->call - exp * MS_NS) / 1e6, rel_t(exp * MS_NS));
                else
                    violation(v, why, (long)oi, acq[a], cause,
                              "%s called %.3f ms after the lease was lost returned 0 (called %+.3f ms from "
                              "the deadline then in force, expires_at %.3f)",
                              op_names[O->op], (double)(O->call - lost) / 1e6,
                              ((double)O->call - (double)(exp * MS_NS)) / 1e6, rel_t(exp * MS_NS));
            }
            if (!done(oi))
                continue;
            if (O->op == OP_RENEW && O->rc == 0)
                exp = O->exp;
            if (upgrade_moved(O) && O->exp > exp)   /* the deadline a failed upgrade reports */
                exp = O->exp;
            if (O->rc == -ESTALE && (h->strict || O->op != OP_UPGRADE))
                LOST_AT(O->ret, V_LOST_STALE, (long)oi);
            if (O->rc == -ESTALE && O->op == OP_UPGRADE && !stale_up)
                stale_up = O->ret;           /* K3: not always lost; counted if it was not */
            if ((O->op == OP_RELEASE || O->op == OP_RELAFTER || O->op == OP_UPGRADE) && O->rc == 0)
                LOST_AT(O->ret, V_LOST_SPENT, (long)oi);
#undef LOST_AT
        }
    }

    /* 1d. A break that found the key free (-ENOENT) while a certain
     * interval of it covered the whole call missed a holder (K2: only
     * exclusive ones count). By start, with the running maximum of the ends
     * (of all intervals, of the exclusive ones), per key. */
    pm_all = malloc((niv + 1) * sizeof *pm_all);
    pm_x = malloc((niv + 1) * sizeof *pm_x);
    if (!pm_all || !pm_x) {
        oom = 1;
        goto out;
    }
    for (size_t i = 0; i < niv; i++) {
        int first = i == 0 || iv[i - 1].key != iv[i].key;
        pm_all[i] = first || iv[i].e > iv[pm_all[i - 1]].e ? i : pm_all[i - 1];
        size_t px = first ? SIZE_MAX : pm_x[i - 1];
        pm_x[i] = !iv[i].shared && (px == SIZE_MAX || iv[i].e > iv[px].e) ? i : px;
    }
    for (size_t b = 0; b < nbnf; b++) {
        const struct rec *B = &h->r[bnf[b]];
        size_t lo = 0, hi = niv;             /* the last interval of B's key starting at or before its call */
        while (lo < hi) {
            size_t m = lo + (hi - lo) / 2;
            if (iv[m].key < B->key || (iv[m].key == B->key && iv[m].s <= B->call))
                lo = m + 1;
            else
                hi = m;
        }
        if (lo == 0 || iv[lo - 1].key != B->key)
            continue;
        size_t k = h->strict ? pm_all[lo - 1] : pm_x[lo - 1];
        if (k != SIZE_MAX && iv[k].e >= B->ret)
            violation(v, V_BREAK_MISSED, (long)bnf[b], iv[k].acq, -1,
                      "key %u: break returned -ENOENT while a %s lease certainly held the key ([%.6f, %.6f))",
                      B->key, iv[k].shared ? "shared" : "exclusive", rel_t(iv[k].s), rel_t(iv[k].e));
        else if (iv[pm_all[lo - 1]].e >= B->ret)
            v->breaks_missed_shared++;       /* K2 */
    }

    /* 3b. An upgrade is refused with -EDEADLK only while another exclusive
     * claim of its key is under way: an exclusive acquire or an upgrade by
     * another thread, called before the -EDEADLK returned, that had not
     * ended when the upgrade was called (ended: its failure's return; its
     * lease's latest possible end; with no return, its death plus its TTL,
     * the longest a dead waiter's reservation lasts, and 10 ms for the
     * kernel to end a killed process). */
    qsort(xc, nxc, sizeof *xc, cmp_key_call);
    xend = malloc((nxc + 1) * sizeof *xend);
    xmax = malloc((nxc + 1) * sizeof *xmax);
    if (!xend || !xmax) {
        oom = 1;
        goto out;
    }
    for (size_t k = 0; k < nxc; k++) {     /* each claim's end, and the latest end so far per key */
        const struct rec *C = &h->r[xc[k]];
        uint64_t end;
        if (!done(xc[k])) {
            uint64_t d = C->proc < np ? death[C->proc] : UINT64_MAX;
            end = d == UINT64_MAX ? d : d + ((uint64_t)C->arg + 12) * MS_NS;
        } else if (C->rc != 0) {
            end = C->ret;
        } else {
            uint32_t cl = made_lid(C);
            uint64_t ub = C->exp;
            if (cl <= maxlid)
                for (uint32_t o = 0; o < L[cl].n; o++) {
                    const struct rec *O = &h->r[ops[L[cl].first + o]];
                    if (O->op != OP_RENEW)
                        continue;
                    uint64_t e = !done(ops[L[cl].first + o]) ? (O->call + MS_NS - 1) / MS_NS + O->arg + 1
                                 : O->rc == 0 ? O->exp : 0;
                    ub = ub > e ? ub : e;
                }
            end = (ub + 1) * MS_NS;
        }
        xend[k] = end;
        xmax[k] = k > 0 && h->r[xc[k - 1]].key == C->key && xmax[k - 1] > end ? xmax[k - 1] : end;
    }
    for (size_t u = 0; u < nops; u++) {
        const struct rec *U = &h->r[ops[u]];
        if (U->op != OP_UPGRADE || !done(ops[u]) || U->rc != -EDEADLK)
            continue;
        struct run cr = key_run(xc, nxc, U->key);
        size_t off = (size_t)(cr.v - xc), lo = 0, hi = cr.n;
        while (lo < hi) {                    /* claims called before the -EDEADLK returned: [0, lo) */
            size_t m = lo + (hi - lo) / 2;
            if (h->r[cr.v[m]].call < U->ret)
                lo = m + 1;
            else
                hi = m;
        }
        int seen = 0;
        for (size_t k = lo; k-- > 0 && !seen && xmax[off + k] > U->call;) {
            const struct rec *C = &h->r[cr.v[k]];
            if (cr.v[k] == ops[u] || (C->proc == U->proc && C->thr == U->thr))
                continue;
            seen = xend[off + k] > U->call;
        }
        if (!seen)
            violation(v, V_DEADLK, (long)ops[u], L[U->lid].acq, -1,
                      "key %u: upgrade returned -EDEADLK, but no other exclusive acquire or upgrade of the key "
                      "was under way",
                      U->key);
    }

    /* 4. A new lease lasts about ttl. */
    for (size_t a = 0; a < nacq; a++) {
        const struct rec *A = &h->r[acq[a]];
        uint64_t e = A->exp * MS_NS, want = A->ret + (uint64_t)A->arg * MS_NS;
        /* Time the caller spent preempted during the call may lie between the
         * claim and the return: it excuses that much (unknown: none). */
        uint64_t preempted = A->delay_us == UINT32_MAX ? 0 : (uint64_t)A->delay_us * 1000u;
        if (e + SHORT_NS < want && e + SHORT_NS + preempted >= want && stopped_during(A->proc, A->call, A->ret) < 0)
            v->short_preempted++;
        else if (e + SHORT_NS < want && stopped_during(A->proc, A->call, A->ret) < 0) {
            long os = other_stopped_during(A->proc, A->call, A->ret);
            v->short_with_other_stopped += os >= 0;
            char other[160] = "";
            if (os >= 0)
                snprintf(other, sizeof other, "; proc %u was stopped during the call [%.6f, %.6f]", h->s[os].proc,
                         rel_t(h->s[os].stop_ns), rel_t(h->s[os].cont_ns));
            violation(v, V_SHORT, acq[a], -1, -1,
                      "acquire (not stopped itself) returned a lease %.3f ms shorter than its ttl %u ms "
                      "(%.3f ms left at return; the call took %.3f ms, %.3f ms of it preempted)%s",
                      (double)(want - e) / 1e6, A->arg, ((double)e - (double)A->ret) / 1e6,
                      (double)(A->ret - A->call) / 1e6, (double)preempted / 1e6, other);
        }
        if (e > want + SLACK_NS)
            violation(v, V_LONG, acq[a], -1, -1, "lease %.3f ms longer than its ttl %u ms",
                      (double)(e - want) / 1e6, A->arg);
    }

    /* 5. Witness. */
    v->witness_rounds = nwit;
    qsort(wit, nwit, sizeof *wit, cmp_lease_ops);
    for (size_t i = 0; i < nwit; i++) {
        const struct rec *M = &h->r[wit[i]];
        if (!M->aux)
            continue;
        v->witness_conflicts++;
        if (!(M->rc & 2) || M->lid > maxlid || L[M->lid].acq < 0)
            continue;
        /* The intruder's own rounds: one that wrote inside M's round, while valid. */
        long by = -1, by_acq = -1;
        size_t lo = 0, hi = nwit;
        while (lo < hi) {
            size_t m = lo + (hi - lo) / 2;
            if (h->r[wit[m]].lid < M->aux)
                lo = m + 1;
            else
                hi = m;
        }
        for (size_t k = lo; k < nwit && h->r[wit[k]].lid == M->aux; k++) {
            const struct rec *I = &h->r[wit[k]];
            if ((I->rc & 1) && I->call <= M->ret && I->token >= M->call && I->lid <= maxlid && L[I->lid].acq >= 0) {
                by = wit[k];
                by_acq = L[I->lid].acq;
            }
        }
        if (by < 0)
            continue;
        /* A break may have ended either lease without its holder knowing:
         * one that may have acted after M's (or the intruder's) acquire was
         * called and before M read the word back (or the intruder wrote it). */
        const struct rec *MA = &h->r[L[M->lid].acq], *IA = &h->r[by_acq], *IW = &h->r[by];
        struct run br = key_run(brk, nbrk, M->key);
        int explained = 0;
        for (size_t k = 0; k < br.n && !explained; k++) {
            uint64_t bc = h->r[br.v[k]].call, brt = bret[(size_t)(br.v - brk) + k];
            explained = (bc < M->ret && brt > MA->call) || (bc < IW->token && brt > IA->call);
        }
        if (explained) {
            v->witness_explained++;
            continue;
        }
        violation(v, V_WITNESS, wit[i], by, L[M->lid].acq,
                  "key %u: lease %u read lease %u's mark in the owner word; both were > 2 ms from their deadlines",
                  M->key, M->lid, M->aux);
    }

out:
    free(death);
    free(last);
    free(closed);
    free(L);
    free(ops);
    free(brk);
    free(ins);
    free(acq);
    free(acq2);
    free(wit);
    free(bret);
    free(bmax);
    free(bnf);
    free(xc);
    free(pm_all);
    free(pm_x);
    free(xend);
    free(xmax);
    free(iv);
    return oom ? -1 : 0;
}

/* ---- the referee's self-test: a synthetic history per kind of violation ---------------------- */

struct synth {
    struct rec r[64];
    size_t n;
    struct procrec p[8];
    struct stoprec s[4];
    size_t ns;
    int strict;
};

#define T(ms) ((uint64_t)((ms) * 1e6))    /* synthetic instants in ms */

static void synth_init(struct synth *y)
{
    memset(y, 0, sizeof *y);
    for (int i = 0; i < 8; i++) {
        y->p[i].kind = i == 7 ? P_OPERATOR : P_WORKER;
        y->p[i].parent = -1;
        atomic_store(&y->p[i].pid, 1000 + i);
    }
}

static size_t syn(struct synth *y, unsigned op, unsigned proc, unsigned key, unsigned lid, double call,
                  double ret, int rc, uint64_t token, uint64_t exp_ms, unsigned arg, int32_t aux)
{
    assert_true(y->n < 64);
    struct rec *r = &y->r[y->n];
    r->op = (uint8_t)op;
    r->proc = proc;
    r->key = (uint8_t)key;
    r->lid = lid;
    r->hid = proc + 1;
    r->call = T(call);
    r->ret = ret > 0 ? T(ret) : 0;
    r->rc = rc;
    r->token = token;
    r->exp = exp_ms;
    r->arg = arg;
    r->aux = (uint32_t)aux;
    atomic_store(&r->state, ret > 0 ? ST_DONE : ST_CALLED);
    return y->n++;
}

/* Shorthands: an acquire returning 0, and a lease op. */
#define S_ACQ(y, proc, key, lid, call, ret, tok, exp, ttl) \
    syn(y, OP_ACQ, proc, key, lid, call, ret, 0, tok, exp, ttl, 0)
#define S_OP(y, op, proc, lid, call, ret, rc) syn(y, op, proc, 0, lid, call, ret, rc, 0, 0, 0, 0)

/* A shared acquire returning 0 (LIMIT 0: none but SHMLEASE_LIMIT_MAX). */
static size_t s_shared(struct synth *y, unsigned proc, unsigned key, unsigned lid, double call, double ret,
                       uint64_t tok, uint64_t exp, unsigned ttl, unsigned limit)
{
    size_t i = syn(y, OP_ACQ, proc, key, lid, call, ret, 0, tok, exp, ttl, 0);
    y->r[i].mode = SHMLEASE_SHARED;
    y->r[i].x = limit;
    return i;
}

/* An upgrade of shared lease LID (key KEY) making lease NLID on success. */
static size_t s_upgrade(struct synth *y, unsigned proc, unsigned key, unsigned lid, unsigned nlid, double call,
                        double ret, int rc, uint64_t tok, uint64_t exp, unsigned ttl, int32_t wait)
{
    size_t i = syn(y, OP_UPGRADE, proc, key, lid, call, ret, rc, tok, exp, ttl, wait);
    y->r[i].x = nlid;
    return i;
}

static void run_synth(struct synth *y, struct verdict *v, const char *what)
{
    struct history h = {.r = y->r, .nr = y->n, .p = y->p, .np = 8, .s = y->s, .ns = y->ns, .t0 = 0, .print_max = 3,
                        .strict = y->strict};
    printf("-- synthetic history: %s\n", what);
    assert_int_equal(referee(&h, v), 0);
}

static void expect_kind(struct synth *y, int kind, const char *what)
{
    struct verdict *v = malloc(sizeof *v);
    assert_non_null(v);
    run_synth(y, v, what);
    TU_TRUE(v->n[kind] >= 1, "%s: the referee did not report a %s violation", what, vnames[kind]);
    free(v);
}

static void expect_clean(struct synth *y, const char *what)
{
    struct verdict *v = malloc(sizeof *v);
    assert_non_null(v);
    run_synth(y, v, what);
    for (int k = 0; k < V_N; k++)
        TU_TRUE(v->n[k] == 0, "%s: clean history reported %llu %s violation(s): %s", what,
                 (unsigned long long)v->n[k], vnames[k], v->example[k]);
    free(v);
}

static void t_referee_selftest(void **s)
{
    (void)s;
    struct synth *y = malloc(sizeof *y);
    assert_non_null(y);

    /* 1. Two live owners: B acquires key 0 while A's lease has 6 ms left. */
    synth_init(y);
    S_ACQ(y, 0, 0, 1, 1000, 1000.1, 1, 1010, 10);
    S_ACQ(y, 1, 0, 2, 1002, 1004.1, 2, 1014, 10);
    expect_kind(y, V_EXCL, "overlap");

    /* The same after A's deadline, A's release, A's death, a break, a close: clean. */
    synth_init(y);
    S_ACQ(y, 0, 0, 1, 1000, 1000.1, 1, 1010, 10);
    S_ACQ(y, 1, 0, 2, 1002, 1009.1, 7, 1019, 10);               /* 1009.1 >= 1010 - 1 */
    S_ACQ(y, 2, 1, 3, 1000, 1000.1, 2, 1050, 50);
    S_OP(y, OP_RELEASE, 2, 3, 1003, 1003.2, 0);
    S_ACQ(y, 3, 1, 4, 1002, 1003.1, 6, 1053, 50);               /* returned after release's call */
    S_ACQ(y, 4, 2, 5, 1000, 1000.1, 3, 1050, 50);
    atomic_store(&y->p[4].kill_ns, T(1005));
    S_ACQ(y, 5, 2, 6, 1001, 1005.2, 5, 1055, 50);               /* after the kill instant */
    S_ACQ(y, 6, 3, 7, 1000, 1000.1, 4, 1050, 50);
    syn(y, OP_BREAK, 7, 3, 0, 1004, 1004.1, 0, 0, 0, 0, 0);
    S_ACQ(y, 1, 3, 8, 1004.05, 1004.2, 8, 1054, 50);
    syn(y, OP_CLOSE, 0, 0, 0, 1020, 1020.1, 0, 0, 0, 0, 0);    /* handle 1: proc 0's */
    S_ACQ(y, 0, 4, 9, 1011, 1011.1, 9, 1061, 50);
    S_ACQ(y, 2, 4, 10, 1015, 1020.5, 10, 1070, 50);             /* after the close's call */
    syn(y, OP_ACQ, 3, 5, 11, 1030, 0, 0, 0, 0, 50, 0);          /* no return: killed inside */
    atomic_store(&y->p[3].kill_ns, T(1031));
    S_ACQ(y, 5, 5, 12, 1030.5, 1031.5, 12, 1081, 50);
    S_OP(y, OP_RENEW, 5, 12, 1040, 1040.1, 0);
    y->r[y->n - 1].exp = 1100;
    y->r[y->n - 1].arg = 60;
    S_OP(y, OP_CHECK, 5, 12, 1090, 1090.1, 0);
    S_OP(y, OP_RELEASE, 5, 12, 1091, 1091.1, 0);
    S_OP(y, OP_CHECK, 5, 12, 1092, 1092.1, -ESTALE);
    syn(y, OP_INSPECT, 7, 5, 0, 1041, 1041.1, 0, 12, 1100, 0, 0);
    expect_clean(y, "hand-overs after deadline, release, kill, break, close, renew");

    /* 1b. Grace: acquired 3 ms into a 10 ms grace period. */
    synth_init(y);
    S_ACQ(y, 0, 0, 1, 1000, 1000.1, 1, 1010, 10);
    syn(y, OP_RELAFTER, 0, 0, 1, 1002, 1002.1, 0, 0, 0, 10, 0);
    S_ACQ(y, 1, 0, 2, 1001, 1005, 2, 1015, 10);
    expect_kind(y, V_GRACE, "grace");
    /* ... and after it, or after a break that ended it: clean. */
    synth_init(y);
    S_ACQ(y, 0, 0, 1, 1000, 1000.1, 1, 1010, 10);
    syn(y, OP_RELAFTER, 0, 0, 1, 1002, 1002.1, 0, 0, 0, 10, 0);
    S_ACQ(y, 1, 0, 2, 1001, 1011.5, 3, 1021, 10);
    S_ACQ(y, 0, 1, 3, 1000, 1000.1, 2, 1010, 10);
    syn(y, OP_RELAFTER, 0, 0, 3, 1002, 1002.1, 0, 0, 0, 10, 0);
    syn(y, OP_BREAK, 7, 1, 0, 1003, 1003.1, 0, 0, 0, 0, 0);
    S_ACQ(y, 1, 1, 4, 1001, 1003.5, 4, 1013, 10);
    expect_clean(y, "grace respected, grace broken");
    /* An acquire that claimed before the grace (and before the lease that
     * entered it) and returned late, inside it: no grace violation. */
    synth_init(y);
    S_ACQ(y, 1, 0, 1, 990, 1005, 1, 996, 3);
    y->s[0] = (struct stoprec){1, T(994), T(1004)};
    y->ns = 1;
    S_ACQ(y, 0, 0, 2, 997, 997.1, 2, 1007, 10);
    syn(y, OP_RELAFTER, 0, 0, 2, 1002, 1002.1, 0, 0, 0, 10, 0);
    expect_clean(y, "late return of an earlier claim inside a grace period");

    /* 2. Tokens: per key (B's call before A's return, so only the key order sees it). */
    synth_init(y);
    S_ACQ(y, 0, 0, 1, 1000, 1000.1, 5, 1010, 10);
    S_OP(y, OP_RELEASE, 0, 1, 1002, 1002.1, 0);
    S_ACQ(y, 1, 0, 2, 999, 1003, 4, 1013, 10);
    expect_kind(y, V_TOKEN_KEY, "token order on one key");
    synth_init(y);
    S_ACQ(y, 0, 0, 1, 1000, 1000.1, 5, 1010, 10);
    S_ACQ(y, 1, 1, 2, 1001, 1001.1, 3, 1011, 10);
    expect_kind(y, V_TOKEN_ORDER, "token order across keys");
    synth_init(y);
    S_ACQ(y, 0, 0, 1, 1000, 1000.1, 5, 1010, 10);
    S_ACQ(y, 1, 1, 2, 1000, 1000.1, 5, 1011, 10);
    expect_kind(y, V_TOKEN_DUP, "token twice");

    /* 3. Lost stays lost: after -ESTALE, the deadline, a break, an inspect, a release; a foreign value. */
    synth_init(y);
    S_ACQ(y, 0, 0, 1, 1000, 1000.1, 1, 1050, 50);
    S_OP(y, OP_RENEW, 0, 1, 1002, 1002.1, -ESTALE);
    S_OP(y, OP_CHECK, 0, 1, 1003, 1003.1, 0);
    expect_kind(y, V_LOST_STALE, "0 after -ESTALE");
    synth_init(y);
    S_ACQ(y, 0, 0, 1, 1000, 1000.1, 1, 1005, 5);
    S_OP(y, OP_RENEW, 0, 1, 1006.5, 1006.6, 0);
    y->r[y->n - 1].exp = 1011;
    expect_kind(y, V_LOST_DEADLINE, "renew after the deadline");
    synth_init(y);
    S_ACQ(y, 0, 0, 1, 1000, 1000.1, 1, 1050, 50);
    syn(y, OP_BREAK, 7, 0, 0, 1010, 1010.1, 0, 0, 0, 0, 0);
    S_OP(y, OP_CHECK, 0, 1, 1011, 1011.1, 0);
    expect_kind(y, V_LOST_BROKEN, "check after a break");
    synth_init(y);
    S_ACQ(y, 0, 0, 1, 1000, 1000.1, 1, 1050, 50);
    syn(y, OP_INSPECT, 7, 0, 0, 1005, 1005.1, -ENOENT, 0, 0, 0, 0);
    S_OP(y, OP_RELEASE, 0, 1, 1006, 1006.1, 0);
    expect_kind(y, V_LOST_INSPECT, "release after an inspect saw the key free");
    synth_init(y);
    S_ACQ(y, 0, 0, 1, 1000, 1000.1, 1, 1050, 50);
    S_OP(y, OP_RELEASE, 0, 1, 1002, 1002.1, 0);
    S_OP(y, OP_CHECK, 0, 1, 1003, 1003.1, 0);
    expect_kind(y, V_LOST_SPENT, "check after release");
    synth_init(y);
    y->p[1].kind = P_CHILD;
    y->p[1].parent = 0;
    S_ACQ(y, 0, 0, 1, 1000, 1000.1, 1, 1050, 50);
    S_OP(y, OP_CHECK, 1, 1, 1003, 1003.1, 0);
    expect_kind(y, V_LOST_FOREIGN, "a fork child's copy of the lease");

    /* 4. Short and long leases; a stop of the acquirer itself excuses a short one. */
    synth_init(y);
    S_ACQ(y, 0, 0, 1, 1000, 1000.1, 1, 1005, 40);
    expect_kind(y, V_SHORT, "short lease");
    synth_init(y);
    S_ACQ(y, 0, 0, 1, 1000, 1000.1, 1, 1050, 10);
    expect_kind(y, V_LONG, "long lease");
    synth_init(y);
    S_ACQ(y, 0, 0, 1, 960, 1000.1, 1, 1005, 40);
    y->s[0] = (struct stoprec){0, T(965), T(999)};
    y->ns = 1;
    expect_clean(y, "short lease of a stopped acquirer");

    /* 5. Witness: M saw I's mark, both comfortably inside their leases. */
    synth_init(y);
    S_ACQ(y, 0, 0, 1, 1000, 1000.1, 1, 1050, 50);
    S_ACQ(y, 1, 0, 2, 1001, 1001.1, 2, 1051, 50);
    syn(y, OP_WITNESS, 0, 0, 1, 1010, 1010.05, 3, T(1010.001), 1050, 0, 2);
    syn(y, OP_WITNESS, 1, 0, 2, 1010.01, 1010.04, 3, T(1010.02), 1051, 0, 0);
    expect_kind(y, V_WITNESS, "witness");
    /* ... explained by a break of M's key in between: clean except the overlap it implies. */
    synth_init(y);
    S_ACQ(y, 0, 0, 1, 1000, 1000.1, 1, 1050, 50);
    syn(y, OP_BREAK, 7, 0, 0, 1000.5, 1000.6, 0, 0, 0, 0, 0);
    S_ACQ(y, 1, 0, 2, 1001, 1001.1, 2, 1051, 50);
    syn(y, OP_WITNESS, 0, 0, 1, 1010, 1010.05, 3, T(1010.001), 1050, 0, 2);
    syn(y, OP_WITNESS, 1, 0, 2, 1010.01, 1010.04, 3, T(1010.02), 1051, 0, 0);
    expect_clean(y, "witness conflict after a break");
    /* ... and by a break that ended the intruder's lease before M acquired
     * (the intruder, not knowing, marks on). */
    synth_init(y);
    S_ACQ(y, 1, 0, 2, 999, 999.1, 1, 1049, 50);
    syn(y, OP_BREAK, 7, 0, 0, 1000.5, 1000.6, 0, 0, 0, 0, 0);
    S_ACQ(y, 0, 0, 1, 1001, 1001.1, 2, 1051, 50);
    syn(y, OP_WITNESS, 0, 0, 1, 1010, 1010.05, 3, T(1010.001), 1051, 0, 2);
    syn(y, OP_WITNESS, 1, 0, 2, 1010.01, 1010.04, 3, T(1010.02), 1049, 0, 0);
    expect_clean(y, "witness mark of a broken holder");

    /* 6. A return code outside the contract. */
    synth_init(y);
    syn(y, OP_ACQ, 0, 0, 1, 1000, 1000.1, -EINVAL, 0, 0, 10, 0);
    expect_kind(y, V_RC, "unexpected return code");
    synth_init(y);
    syn(y, OP_ACQ, 0, 0, 1, 1000, 1000.1, -EBUSY, 0, 0, 10, 5);
    expect_kind(y, V_RC, "-EBUSY from a waiting acquire");

    /* Modes. 1. A shared lease and an exclusive one of a key overlap; two
     * shared ones may. */
    synth_init(y);
    s_shared(y, 0, 0, 1, 1000, 1000.1, 1, 1050, 50, 0);
    S_ACQ(y, 1, 0, 2, 1002, 1004.1, 2, 1014, 10);
    expect_kind(y, V_EXCL, "an exclusive lease inside a shared one");
    synth_init(y);
    s_shared(y, 0, 0, 1, 1000, 1000.1, 1, 1050, 50, 0);
    s_shared(y, 1, 0, 2, 1000.5, 1000.6, 2, 1050, 50, 0);
    s_shared(y, 2, 0, 3, 1001, 1003, 4, 1053, 50, 0);
    s_shared(y, 3, 0, 4, 1001.5, 1001.6, 3, 1051, 50, 0);   /* its call overlaps lease 3's: any order */
    S_OP(y, OP_RELEASE, 0, 1, 1010, 1010.1, 0);
    S_OP(y, OP_RELEASE, 1, 2, 1010, 1010.1, 0);
    S_OP(y, OP_RELEASE, 2, 3, 1010, 1010.1, 0);
    S_OP(y, OP_RELEASE, 3, 4, 1010, 1010.1, 0);
    S_ACQ(y, 4, 0, 5, 1009, 1011, 5, 1021, 10);              /* after every shared one was released */
    expect_clean(y, "shared leases together, then an exclusive one");

    /* 1c. Limits: three shared leases of limit 2 at once; two, then a third
     * after a release, are fine. */
    synth_init(y);
    s_shared(y, 0, 0, 1, 1000, 1000.1, 1, 1050, 50, 2);
    s_shared(y, 1, 0, 2, 1001, 1001.1, 2, 1051, 50, 2);
    s_shared(y, 2, 0, 3, 1002, 1002.1, 3, 1052, 50, 2);
    expect_kind(y, V_LIMIT, "three holders of a key of limit 2");
    synth_init(y);
    s_shared(y, 0, 0, 1, 1000, 1000.1, 1, 1050, 50, 2);
    s_shared(y, 1, 0, 2, 1001, 1001.1, 2, 1051, 50, 2);
    S_OP(y, OP_RELEASE, 0, 1, 1002, 1002.1, 0);
    s_shared(y, 2, 0, 3, 1001.5, 1002.5, 3, 1052, 50, 2);
    expect_clean(y, "two holders of a key of limit 2, a third after a release");
    /* -EDOM when every process uses the key's one limit. */
    synth_init(y);
    syn(y, OP_ACQ, 0, 0, 1, 1000, 1000.1, -EDOM, 0, 0, 10, 0);
    y->r[0].mode = SHMLEASE_SHARED;
    y->r[0].x = 2;
    expect_kind(y, V_EDOM, "-EDOM with the key's one limit");

    /* 2. An exclusive token not above that of a shared lease ended before
     * it began (its call before the shared acquire returned: only the
     * per-key rule sees it). */
    synth_init(y);
    s_shared(y, 0, 0, 1, 1000, 1000.1, 5, 1050, 50, 0);
    S_OP(y, OP_RELEASE, 0, 1, 1002, 1002.1, 0);
    S_ACQ(y, 1, 0, 2, 1000.05, 1003, 4, 1013, 10);
    expect_kind(y, V_TOKEN_KEY, "exclusive token below an ended shared lease's");

    /* Upgrades: the exclusive lease it makes excludes shared ones; the
     * shared value is spent. */
    synth_init(y);
    s_shared(y, 0, 0, 1, 1000, 1000.1, 1, 1050, 50, 0);
    s_upgrade(y, 0, 0, 1, 2, 1005, 1005.5, 0, 2, 1035, 30, 10);
    s_shared(y, 1, 0, 3, 1006, 1006.1, 3, 1056, 50, 0);
    expect_kind(y, V_EXCL, "a shared lease inside an upgraded one");
    synth_init(y);
    s_shared(y, 0, 0, 1, 1000, 1000.1, 1, 1050, 50, 0);
    s_upgrade(y, 0, 0, 1, 2, 1005, 1005.5, 0, 2, 1035, 30, 10);
    S_OP(y, OP_CHECK, 0, 1, 1006, 1006.1, 0);
    expect_kind(y, V_LOST_SPENT, "the shared value after its upgrade");
    synth_init(y);
    s_shared(y, 0, 0, 1, 1000, 1000.1, 1, 1050, 50, 0);
    s_shared(y, 1, 0, 2, 1000.15, 1000.2, 2, 1050, 50, 0);
    s_upgrade(y, 0, 0, 1, 3, 1003, 1004.5, 0, 3, 1034, 30, 10);   /* waited for lease 2 */
    S_OP(y, OP_RELEASE, 1, 2, 1004, 1004.1, 0);
    S_OP(y, OP_CHECK, 0, 1, 1005, 1005.1, -ESTALE);
    S_OP(y, OP_RELEASE, 0, 3, 1010, 1010.1, 0);
    s_shared(y, 2, 0, 4, 1011, 1011.1, 4, 1061, 50, 0);
    expect_clean(y, "upgrade after the other shared holder left, released, shared again");
    /* -EDEADLK: alone on the key (a violation); while an exclusive acquire waits (fine). */
    synth_init(y);
    s_shared(y, 0, 0, 1, 1000, 1000.1, 1, 1050, 50, 0);
    s_upgrade(y, 0, 0, 1, 2, 1005, 1005.1, -EDEADLK, 0, 0, 30, 10);
    expect_kind(y, V_DEADLK, "-EDEADLK with no other exclusive claim");
    synth_init(y);
    s_shared(y, 0, 0, 1, 1000, 1000.1, 1, 1050, 50, 0);
    syn(y, OP_ACQ, 1, 0, 2, 1001, 1020, -ETIMEDOUT, 0, 0, 10, 19);
    s_upgrade(y, 0, 0, 1, 3, 1005, 1005.1, -EDEADLK, 0, 0, 30, 10);
    expect_clean(y, "-EDEADLK while an exclusive acquire waits");

    /* 1d. A break finds the key free while a lease certainly holds it. */
    synth_init(y);
    S_ACQ(y, 0, 0, 1, 1000, 1000.1, 1, 1050, 50);
    syn(y, OP_BREAK, 7, 0, 0, 1010, 1010.1, -ENOENT, 0, 0, 0, 0);
    expect_kind(y, V_BREAK_MISSED, "break -ENOENT of a held key");
    /* A break ends shared holders too. */
    synth_init(y);
    s_shared(y, 0, 0, 1, 1000, 1000.1, 1, 1050, 50, 0);
    syn(y, OP_BREAK, 7, 0, 0, 1005, 1005.1, 0, 0, 0, 0, 0);
    S_OP(y, OP_CHECK, 0, 1, 1006, 1006.1, 0);
    expect_kind(y, V_LOST_BROKEN, "a shared lease current after a break");

    /* 1b. A shared holder's grace period blocks exclusive claims only. */
    synth_init(y);
    s_shared(y, 0, 0, 1, 1000, 1000.1, 1, 1050, 50, 0);
    syn(y, OP_RELAFTER, 0, 0, 1, 1002, 1002.1, 0, 0, 0, 10, 0);
    s_shared(y, 1, 0, 2, 1003, 1003.1, 2, 1053, 50, 0);
    expect_clean(y, "a shared claim in a shared holder's grace period");
    synth_init(y);
    s_shared(y, 0, 0, 1, 1000, 1000.1, 1, 1050, 50, 0);
    syn(y, OP_RELAFTER, 0, 0, 1, 1002, 1002.1, 0, 0, 0, 10, 0);
    S_ACQ(y, 1, 0, 2, 1003, 1005, 2, 1015, 10);
    expect_kind(y, V_GRACE, "an exclusive claim in a shared holder's grace period");

    /* The library's known departures: modelled by default, violations when strict.
     * K1 (fixed): a failed upgrade with a short ttl leaves the shared lease's deadline. */
    for (int strict = 0; strict < 2; strict++) {
        synth_init(y);
        y->strict = strict;
        s_shared(y, 0, 0, 1, 1000, 1000.1, 1, 1050, 50, 0);
        s_upgrade(y, 0, 0, 1, 2, 1005, 1008, -ETIMEDOUT, 0, 0, 2, 3);
        S_ACQ(y, 1, 0, 3, 1009, 1009.5, 3, 1019, 10);
        /* Fixed in the library: a failed upgrade never shortens the shared
         * lease, so this is a violation in both modes. */
        expect_kind(y, V_EXCL, "K1: an exclusive lease before the shared one's deadline");
        /* K2: a break -ENOENT beside a shared holder. */
        synth_init(y);
        y->strict = strict;
        s_shared(y, 0, 0, 1, 1000, 1000.1, 1, 1050, 50, 0);
        syn(y, OP_BREAK, 7, 0, 0, 1010, 1010.1, -ENOENT, 0, 0, 0, 0);
        if (strict)
            expect_kind(y, V_BREAK_MISSED, "K2 strict: break -ENOENT of a key held shared");
        else
            expect_clean(y, "K2: break -ENOENT of a key held shared");
        /* K3: an upgrade's -ESTALE with the shared lease still current. */
        synth_init(y);
        y->strict = strict;
        s_shared(y, 0, 0, 1, 1000, 1000.1, 1, 1050, 50, 0);
        s_upgrade(y, 0, 0, 1, 2, 1005, 1005.1, -ESTALE, 0, 0, 30, 0);
        S_OP(y, OP_CHECK, 0, 1, 1006, 1006.1, 0);
        if (strict)
            expect_kind(y, V_LOST_STALE, "K3 strict: check 0 after the upgrade's -ESTALE");
        else
            expect_clean(y, "K3: check 0 after the upgrade's -ESTALE");
        /* K4: an inspect found the key free while a shared holder held it. */
        synth_init(y);
        y->strict = strict;
        s_shared(y, 0, 0, 1, 1000, 1000.1, 1, 1050, 50, 0);
        syn(y, OP_INSPECT, 7, 0, 0, 1005, 1005.1, -ENOENT, 0, 0, 0, 0);
        S_OP(y, OP_CHECK, 0, 1, 1006, 1006.1, 0);
        if (strict)
            expect_kind(y, V_LOST_INSPECT, "K4 strict: a shared lease current after an inspect found the key free");
        else
            expect_clean(y, "K4: a shared lease current after an inspect found the key free");
    }

    free(y);
    tu_note("checker self-test: the referee reported each of 30 synthetic violations and passed 15 clean "
             "histories");
}

/* ---- the workload ------------------------------------------------------------------------ */

#define NKEYS     16
#define NHOT      4              /* keys 0-3; 4-15 are cold */
#define CAPACITY  10             /* fewer than the keys: cold keys are retired and inserted */
#define WORKERS   4
#define THREADS   3
#define CHURNS    2
#define NSLOTS    (WORKERS + CHURNS + 1)
#define MAXPROC   16384
#define MAXSTOPS  8192
#define LOG_CAP   (4u << 20)     /* records per round (64 B each; pages are touched as used) */

struct shared {
    _Atomic int stop;
    _Atomic uint64_t nrec;
    uint64_t cap;
    _Atomic uint32_t next_lid, next_hid, next_proc;
    _Atomic uint32_t wit[NKEYS];     /* the witness's owner words */
    _Atomic uint64_t bursts, burst_hits, forks, child_failures;
    struct procrec procs[MAXPROC];
    struct rec rec[];
};

static struct shared *G;
static const char *g_name;
static shmlease_table *g_inherited;  /* opened by the test process before forking: thread 2 uses it */
static char keyname[NKEYS][16];
/* How each key is used: -1 EXCLUSIVE only; 0 SHARED (no limit) and
 * EXCLUSIVE; N counted, SHARED with limit N (every process the same N) and
 * EXCLUSIVE. Hot keys 0-3 one of each; among the cold ones, two shared and
 * two counted. */
static const int key_limit[NKEYS] = {-1, 0, 2, 3, 0, -1, 2, -1, 0, -1, 3, -1, -1, -1, -1, -1};
/* SHMLEASE_CHECKER_MUTATE=shared-busy: a shared try refused with -EBUSY is
 * logged as a success (a lease never held): the referee must see it. */
static int g_mutate;

struct actor {
    uint32_t proc;
    uint8_t thr;
    uint64_t seed;
    shmlease_table *t;
    uint32_t hid;
    int can_fork, can_burst, cold_bias;
    int sfd;                /* this thread's /proc/thread-self/schedstat, -1 */
};

/* The calling thread's run-queue delay so far (ns), or UINT64_MAX. */
static uint64_t run_delay(const struct actor *a)
{
    char b[96];
    if (a->sfd < 0)
        return UINT64_MAX;
    ssize_t n = pread(a->sfd, b, sizeof b - 1, 0);
    if (n <= 0)
        return UINT64_MAX;
    b[n] = 0;
    unsigned long long cpu, wait;
    return sscanf(b, "%llu %llu", &cpu, &wait) == 2 ? wait : UINT64_MAX;
}

static void open_schedstat(struct actor *a) { a->sfd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC); }

struct held {
    shmlease_lease l;
    uint32_t lid;
    unsigned key;
    int live;
    int shared;
};

static uint64_t rnd(struct actor *a, uint64_t n) { return tu_rand(&a->seed) % n; }
static uint32_t new_hid(void) { return atomic_fetch_add(&G->next_hid, 1); }

/* The call fields, then the call instant, then CALLED; NULL when the log is
 * full (the round ends: the op is not made). */
static struct rec *op_begin(const struct actor *a, unsigned op, unsigned key, uint32_t lid, uint32_t arg,
                            uint32_t aux)
{
    uint64_t i = atomic_fetch_add(&G->nrec, 1);
    if (i >= G->cap) {
        atomic_store(&G->stop, 1);
        return NULL;
    }
    struct rec *r = &G->rec[i];
    r->proc = a->proc;
    r->thr = a->thr;
    r->op = (uint8_t)op;
    r->key = (uint8_t)key;
    r->lid = lid;
    r->hid = a->hid;
    r->arg = arg;
    r->aux = aux;
    r->delay_us = UINT32_MAX;
    r->call = tu_mono_ns();
    atomic_store_explicit(&r->state, ST_CALLED, memory_order_release);
    return r;
}

/* The return instant (read right after the call), the result, then DONE. */
static inline void op_end_at(struct rec *r, uint64_t ret, int rc, uint64_t token, uint64_t exp)
{
    r->ret = ret;
    r->rc = rc;
    r->token = token;
    r->exp = exp;
    atomic_store_explicit(&r->state, ST_DONE, memory_order_release);
}

static inline void op_end(struct rec *r, int rc, uint64_t token, uint64_t exp)
{
    uint64_t now = tu_mono_ns();
    op_end_at(r, now, rc, token, exp);
}

static uint32_t delay_us(uint64_t d0, uint64_t d1)
{
    return d0 == UINT64_MAX || d1 == UINT64_MAX || d1 < d0 ? UINT32_MAX
           : (d1 - d0) / 1000u >= UINT32_MAX ? UINT32_MAX - 1 : (uint32_t)((d1 - d0) / 1000u);
}

/* MODE SHMLEASE_SHARED with the key's limit, or SHMLEASE_EXCLUSIVE. */
static int x_acquire_mode(struct actor *a, unsigned k, uint32_t mode, uint64_t ttl, int64_t wait, struct held *h)
{
    uint32_t lid = atomic_fetch_add(&G->next_lid, 1);
    struct rec *r = op_begin(a, OP_ACQ, k, lid, (uint32_t)ttl, (uint32_t)(int32_t)wait);
    if (!r)
        return -ECANCELED;
    uint32_t limit = mode == SHMLEASE_SHARED && key_limit[k] > 0 ? (uint32_t)key_limit[k] : 0;
    r->mode = (uint8_t)mode;
    r->x = limit;
    shmlease_acquire_opts o = {.ttl_ms = ttl, .wait_ms = wait, .metadata = "checker", .metadata_len = 7,
                               .mode = mode, .limit = limit};
    uint64_t d0 = run_delay(a);
    r->call = tu_mono_ns();
    int rc = shmlease_acquire(a->t, keyname[k], &o, &h->l);
    uint64_t ret = tu_mono_ns();
    r->delay_us = delay_us(d0, run_delay(a));
    if (g_mutate && rc == -EBUSY && mode == SHMLEASE_SHARED) {
        /* The mutation: logged as held for ttl from now, with a token of its own. */
        op_end_at(r, ret, 0, (1ull << 48) + lid, shmlease_now_ms(a->t) + ttl);
        return rc;
    }
    /* A failed upgrade reports its shared lease's deadline (never earlier
     * than before: the wait may have moved it later). */
    op_end_at(r, ret, rc, rc == 0 ? h->l.fencing_token : 0, rc != -ESTALE ? h->l.expires_at_ms : 0);
    if (rc == 0) {
        h->lid = lid;
        h->key = k;
        h->live = 1;
        h->shared = mode == SHMLEASE_SHARED;
    }
    return rc;
}

static int x_acquire(struct actor *a, unsigned k, uint64_t ttl, int64_t wait, struct held *h)
{
    return x_acquire_mode(a, k, SHMLEASE_EXCLUSIVE, ttl, wait, h);
}

/* Upgrades shared lease H: on success H is the new exclusive lease, under a
 * new lease id; on failure H is unchanged (lost after -ESTALE). */
static int x_upgrade(struct actor *a, struct held *h, uint64_t ttl, int64_t wait)
{
    uint32_t nlid = atomic_fetch_add(&G->next_lid, 1);
    struct rec *r = op_begin(a, OP_UPGRADE, h->key, h->lid, (uint32_t)ttl, (uint32_t)(int32_t)wait);
    if (!r)
        return -ECANCELED;
    r->x = nlid;
    uint64_t d0 = run_delay(a);
    r->call = tu_mono_ns();
    int rc = shmlease_upgrade(a->t, &h->l, ttl, wait);
    uint64_t ret = tu_mono_ns();
    r->delay_us = delay_us(d0, run_delay(a));
    /* A failed upgrade reports its shared lease's deadline (never earlier
     * than before: the wait may have moved it later). */
    op_end_at(r, ret, rc, rc == 0 ? h->l.fencing_token : 0, rc != -ESTALE ? h->l.expires_at_ms : 0);
    if (rc == 0) {
        h->lid = nlid;
        h->shared = 0;
    } else if (rc == -ESTALE) {
        h->live = 0;
    }
    return rc;
}

static int x_renew(struct actor *a, struct held *h, uint64_t ttl)
{
    struct rec *r = op_begin(a, OP_RENEW, h->key, h->lid, (uint32_t)ttl, 0);
    if (!r)
        return -ECANCELED;
    int rc = shmlease_renew(a->t, &h->l, ttl);
    op_end(r, rc, 0, rc == 0 ? h->l.expires_at_ms : 0);
    return rc;
}

static int x_release(struct actor *a, struct held *h)
{
    struct rec *r = op_begin(a, OP_RELEASE, h->key, h->lid, 0, 0);
    if (!r)
        return -ECANCELED;
    int rc = shmlease_release(a->t, &h->l);
    op_end(r, rc, 0, 0);
    h->live = 0;
    return rc;
}

static int x_release_after(struct actor *a, struct held *h, uint64_t grace)
{
    struct rec *r = op_begin(a, OP_RELAFTER, h->key, h->lid, (uint32_t)grace, 0);
    if (!r)
        return -ECANCELED;
    int rc = shmlease_release_after(a->t, &h->l, grace);
    op_end(r, rc, 0, 0);
    h->live = 0;
    return rc;
}

static int x_check(struct actor *a, struct held *h)
{
    struct rec *r = op_begin(a, OP_CHECK, h->key, h->lid, 0, 0);
    if (!r)
        return -ECANCELED;
    int rc = shmlease_check(a->t, &h->l);
    op_end(r, rc, 0, 0);
    return rc;
}

static int x_break(struct actor *a, unsigned k)
{
    struct rec *r = op_begin(a, OP_BREAK, k, 0, 0, 0);
    if (!r)
        return -ECANCELED;
    int rc = shmlease_break(a->t, keyname[k]);
    op_end(r, rc, 0, 0);
    return rc;
}

static int x_inspect(struct actor *a, unsigned k)
{
    struct rec *r = op_begin(a, OP_INSPECT, k, 0, 0, 0);
    if (!r)
        return -ECANCELED;
    shmlease_info info;
    int rc = shmlease_inspect(a->t, keyname[k], &info);
    uint64_t now = tu_mono_ns();
    r->ret = now;
    r->rc = rc;
    r->token = rc == 0 ? info.fencing_token : 0;
    r->exp = rc == 0 ? info.expires_at_ms : 0;
    r->aux = rc == 0 ? (uint32_t)info.in_grace : 0;
    r->mode = rc == 0 ? (uint8_t)info.mode : 0;
    atomic_store_explicit(&r->state, ST_DONE, memory_order_release);
    return rc;
}

static shmlease_table *x_open(struct actor *a)
{
    struct rec *r = op_begin(a, OP_OPEN, 0, 0, 0, 0);
    if (!r)
        return NULL;
    shmlease_options o = {.capacity = CAPACITY};
    shmlease_table *t = NULL;
    int rc = shmlease_open(g_name, &o, &t);
    op_end(r, rc, 0, 0);
    return rc == 0 ? t : NULL;
}

static void x_close(struct actor *a, shmlease_table *t)
{
    struct rec *r = op_begin(a, OP_CLOSE, 0, 0, 0, 0);
    shmlease_close(t);
    if (r)
        op_end(r, 0, 0, 0);
}

static _Noreturn void x_exit(struct actor *a)
{
    struct rec *r = op_begin(a, OP_EXIT, 0, 0, 0, 0);
    if (r)
        op_end(r, 0, 0, 0);
    _exit(0);
}

/* CK-style witness: mark the key's owner word, spin, read it back. Only while
 * the lease has more than MARGIN_NS left; the flags say whether it still had
 * after the mark (1) and after the read-back (2). */
static void witness(struct actor *a, struct held *h)
{
    if (h->shared)
        return;                         /* one owner word: exclusive leases only */
    uint64_t expn = h->l.expires_at_ms * MS_NS;
    if (expn <= tu_mono_ns() + MARGIN_NS)
        return;
    struct rec *r = op_begin(a, OP_WITNESS, h->key, h->lid, 0, 0);
    if (!r)
        return;
    _Atomic uint32_t *w = &G->wit[h->key];
    uint32_t prev = atomic_exchange(w, h->lid);
    uint64_t tw = tu_mono_ns();
    uint64_t until = tw + 2000 + rnd(a, 20000);
    while (tu_mono_ns() < until) {
    }
    uint32_t cur = atomic_load(w);
    uint64_t t2 = tu_mono_ns();
    uint32_t mine = h->lid;
    atomic_compare_exchange_strong(w, &mine, 0);
    r->arg = prev;
    r->aux = cur == h->lid ? 0 : cur;
    r->token = tw;
    r->exp = h->l.expires_at_ms;
    r->ret = t2;
    r->rc = (expn > tw + MARGIN_NS ? 1 : 0) | (expn > t2 + MARGIN_NS ? 2 : 0);
    atomic_store_explicit(&r->state, ST_DONE, memory_order_release);
}

static uint64_t pick_ttl(struct actor *a) { return rnd(a, 10) < 6 ? 1 + rnd(a, 5) : 10 + rnd(a, 51); }

static unsigned pick_key(struct actor *a)
{
    int hot = a->cold_bias ? rnd(a, 4) == 0 : rnd(a, 4) != 0;
    return hot ? (unsigned)rnd(a, NHOT) : NHOT + (unsigned)rnd(a, NKEYS - NHOT);
}

static void pause_some(struct actor *a)
{
    uint64_t r = rnd(a, 8);
    if (r < 4) {
        tu_sleep_us((unsigned)rnd(a, 1500));
    } else if (r < 6) {
        uint64_t until = tu_mono_ns() + rnd(a, 300000);
        while (tu_mono_ns() < until) {
        }
    }
}

static int acquire_some_way(struct actor *a, unsigned k, uint64_t ttl, struct held *h)
{
    /* Keys used in SHARED mode: two acquires in three are shared. */
    uint32_t mode = key_limit[k] >= 0 && rnd(a, 3) ? SHMLEASE_SHARED : SHMLEASE_EXCLUSIVE;
    uint64_t m = rnd(a, 20);
    if (m < 8)
        return x_acquire_mode(a, k, mode, ttl, 0, h);
    if (m < 15)
        return x_acquire_mode(a, k, mode, ttl, 1 + (int64_t)rnd(a, 30), h);
    if (m < 17)
        return x_acquire_mode(a, k, mode, ttl, SHMLEASE_WAIT_FOREVER, h);
    int rc;
    do     /* "forever", made of timed waits */
        rc = x_acquire_mode(a, k, mode, ttl, 2 + (int64_t)rnd(a, 10), h);
    while (rc == -ETIMEDOUT && !atomic_load(&G->stop));
    return rc;
}

/* A shared lease turned exclusive: a try, a timed wait or WAIT_FOREVER;
 * now and then the spent shared value is asked afterwards (-ESTALE). */
static void upgrade_some_way(struct actor *a, struct held *h)
{
    struct held old = *h;
    uint64_t m = rnd(a, 10);
    int64_t wait = m < 4 ? 0 : m < 9 ? 1 + (int64_t)rnd(a, 20) : SHMLEASE_WAIT_FOREVER;
    int rc = x_upgrade(a, h, pick_ttl(a), wait);
    if (rc == 0 && rnd(a, 4) == 0)
        x_check(a, &old);
}

static void session(struct actor *a, struct held *kept);

/* A child of a worker, using the worker's handle: first the worker's lease
 * value (must be -ESTALE here), then leases of its own. */
static void fork_child(struct actor *a, struct held *h)
{
    uint32_t proc = atomic_fetch_add(&G->next_proc, 1);
    if (proc >= MAXPROC)
        return;
    G->procs[proc].parent = (int32_t)a->proc;
    G->procs[proc].kind = P_CHILD;
    pid_t pid = tu_fork_alarm(60);
    if (pid == 0) {
        atomic_store(&G->procs[proc].pid, getpid());
        struct actor c = {.proc = proc, .seed = a->seed ^ 0x9e3779b97f4a7c15ull, .t = a->t, .hid = new_hid()};
        open_schedstat(&c);        /* the inherited descriptor describes the parent's thread */
        struct held copy = *h;
        x_check(&c, &copy);
        x_renew(&c, &copy, 50);
        for (int i = 0; i < 40 && !atomic_load(&G->stop); i++) {
            session(&c, NULL);
            tu_sleep_us((unsigned)rnd(&c, 300));
        }
        x_exit(&c);
    }
    atomic_store(&G->procs[proc].pid, pid);
    atomic_fetch_add(&G->forks, 1);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    tu_untrack(pid);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        atomic_store(&G->procs[proc].unexpected, 1);
        atomic_fetch_add(&G->child_failures, 1);
    }
}

/* L0 held, its key broken by us, then claims of the key on the same handle
 * whose deadlines are L0's, each followed by check(L0): L0 was broken and
 * must stay lost whatever the key's later claims look like. */
static void burst(struct actor *a)
{
    atomic_fetch_add(&G->bursts, 1);
    unsigned k = NHOT + (unsigned)rnd(a, NKEYS - NHOT);
    struct held l0 = {0};
    if (x_acquire(a, k, 60, 0, &l0) != 0)
        return;
    if (x_break(a, k) != 0) {
        x_release(a, &l0);
        return;
    }
    for (int i = 0; i < 2100 && !atomic_load(&G->stop); i++) {
        uint64_t now = shmlease_now_ms(a->t);
        if (l0.l.expires_at_ms < now + 3)
            break;
        struct held ln = {0};
        int rc = x_acquire(a, k, l0.l.expires_at_ms - now, 0, &ln);
        if (rc == -ECANCELED)
            break;
        if (rc != 0)
            continue;
        int crc = x_check(a, &l0);
        x_release(a, &ln);
        if (crc == 0) {
            atomic_fetch_add(&G->burst_hits, 1);
            break;
        }
    }
}

/* Hold a lease a while (witness rounds, renews, checks, maybe a fork child),
 * then end it one way or another. With KEPT, it may be handed back held. */
static void hold_and_end(struct actor *a, struct held *h, struct held *kept)
{
    unsigned steps = (unsigned)rnd(a, 4);
    for (unsigned i = 0; i < steps && h->live; i++) {
        pause_some(a);
        witness(a, h);
        uint64_t r = rnd(a, 16);
        if (r < 5) {
            if (x_renew(a, h, pick_ttl(a)) != 0)
                h->live = 0;
        } else if (r < 7) {
            if (x_check(a, h) != 0)
                h->live = 0;
        } else if (r == 7 && a->can_fork && rnd(a, 24) == 0) {
            fork_child(a, h);
        } else if (r >= 8 && r < 11 && h->shared) {
            upgrade_some_way(a, h);
        }
    }
    if (!h->live) {          /* lost (or the log is full): it stays lost */
        x_check(a, h);
        return;
    }
    uint64_t e = rnd(a, 20);
    if (e < 12) {
        x_release(a, h);
        if (e == 0)
            x_check(a, h);   /* spent */
    } else if (e < 17) {
        x_release_after(a, h, 1 + rnd(a, 10));
        if (e == 12)
            x_check(a, h);
    } else if (e < 19 && h->l.expires_at_ms <= shmlease_now_ms(a->t) + 6) {
        /* abandoned: let it expire, then ask */
        uint64_t now = shmlease_now_ms(a->t);
        tu_sleep_us((unsigned)((h->l.expires_at_ms > now ? h->l.expires_at_ms - now : 0) * 1000 + 1500));
        x_check(a, h);
        x_release(a, h);
    } else if (kept) {
        *kept = *h;
    } else {
        x_release(a, h);
    }
}

static void session(struct actor *a, struct held *kept)
{
    if (a->can_burst && rnd(a, 500) == 0) {
        burst(a);
        return;
    }
    unsigned k = pick_key(a);
    struct held h = {0};
    int rc = acquire_some_way(a, k, pick_ttl(a), &h);
    if (rc == -ENOSPC)
        tu_sleep_us(300);
    if (rc == 0)
        hold_and_end(a, &h, kept);
}

static void *worker_thread(void *p)
{
    struct actor *a = p;
    open_schedstat(a);
    while (!atomic_load(&G->stop)) {
        session(a, NULL);
        tu_sleep_us((unsigned)rnd(a, 400));
    }
    return NULL;
}

static _Noreturn void worker_main(uint32_t proc, uint64_t seed)
{
    atomic_store(&G->procs[proc].pid, getpid());
    struct actor a0 = {.proc = proc, .seed = seed, .hid = new_hid(), .sfd = -1};
    shmlease_table *t = x_open(&a0);
    if (!t)
        _exit(3);
    a0.t = t;
    struct actor as[THREADS];
    pthread_t th[THREADS];
    uint32_t ihid = new_hid();           /* this process's copy of the inherited handle */
    for (int i = 0; i < THREADS; i++) {
        as[i] = a0;
        as[i].thr = (uint8_t)i;
        as[i].seed = seed * (uint64_t)(2 * i + 3) + (uint64_t)i;
        if (i == 2) {
            as[i].t = g_inherited;
            as[i].hid = ihid;
        }
        as[i].can_fork = i == 0;
        as[i].can_burst = i == 1;
        if (pthread_create(&th[i], NULL, worker_thread, &as[i]) != 0)
            _exit(4);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    x_close(&a0, t);
    x_close(&as[2], g_inherited);
    x_exit(&a0);
}

/* Handles opened and closed again and again (sometimes closed, or the
 * process ended, while holding a lease): registry slots reused. */
static _Noreturn void churn_main(uint32_t proc, uint64_t seed)
{
    atomic_store(&G->procs[proc].pid, getpid());
    struct actor a = {.proc = proc, .seed = seed, .cold_bias = 1};
    open_schedstat(&a);
    while (!atomic_load(&G->stop)) {
        a.hid = new_hid();
        shmlease_table *t = x_open(&a);
        if (!t) {
            tu_sleep_ms(1);
            continue;
        }
        a.t = t;
        struct held kept = {0};
        unsigned n = 1 + (unsigned)rnd(&a, 12);
        for (unsigned i = 0; i < n && !kept.live && !atomic_load(&G->stop); i++) {
            session(&a, &kept);
            tu_sleep_us((unsigned)rnd(&a, 300));
        }
        if (rnd(&a, 24) == 0)
            x_exit(&a);            /* ends holding what it holds; the test process replaces it */
        x_close(&a, t);            /* releases what it holds */
    }
    x_exit(&a);
}

static _Noreturn void operator_main(uint32_t proc, uint64_t seed)
{
    atomic_store(&G->procs[proc].pid, getpid());
    struct actor a = {.proc = proc, .seed = seed, .hid = new_hid(), .sfd = -1};
    a.t = x_open(&a);
    if (!a.t)
        _exit(3);
    uint64_t next_break = tu_mono_ns() + (5 + rnd(&a, 35)) * MS_NS;
    while (!atomic_load(&G->stop)) {
        tu_sleep_us(1000 + (unsigned)rnd(&a, 3000));
        x_inspect(&a, (unsigned)rnd(&a, NHOT));
        x_inspect(&a, (unsigned)rnd(&a, NKEYS));
        if (tu_mono_ns() >= next_break) {
            x_break(&a, rnd(&a, 5) ? (unsigned)rnd(&a, NHOT) : NHOT + (unsigned)rnd(&a, NKEYS - NHOT));
            next_break = tu_mono_ns() + (5 + rnd(&a, 35)) * MS_NS;
        }
    }
    x_close(&a, a.t);
    x_exit(&a);
}

/* ---- the adversary (test process) ---------------------------------------------------------- */

struct slot {
    pid_t pid;
    uint32_t proc, kind;
    int stopped;
    uint64_t cont_at;
    size_t stop_idx;
};

struct round {
    struct slot slots[NSLOTS];
    struct { pid_t pid; uint32_t proc; } dying[1024];
    int ndying;
    struct stoprec stops[MAXSTOPS];
    size_t nstops;
    uint64_t kills, spawns, unexpected, seed;
    unsigned alarm_s;
    char bad[300];
};

static void spawn(struct round *R, int i, uint32_t kind)
{
    uint32_t proc = atomic_fetch_add(&G->next_proc, 1);
    assert_true(proc < MAXPROC);
    G->procs[proc].kind = kind;
    G->procs[proc].parent = -1;
    uint64_t seed = tu_rand(&R->seed);
    pid_t pid = tu_fork_alarm(R->alarm_s);
    if (pid == 0) {
        if (kind == P_WORKER)
            worker_main(proc, seed);
        if (kind == P_CHURN)
            churn_main(proc, seed);
        operator_main(proc, seed);
    }
    atomic_store(&G->procs[proc].pid, pid);
    R->slots[i] = (struct slot){.pid = pid, .proc = proc, .kind = kind};
    R->spawns++;
}

static void unexpected(struct round *R, uint32_t proc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void unexpected(struct round *R, uint32_t proc, const char *fmt, ...)
{
    atomic_store(&G->procs[proc].unexpected, 1);
    R->unexpected++;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(R->bad, sizeof R->bad, fmt, ap);
    va_end(ap);
}

static void reap(struct round *R, int ending)
{
    int st;
    pid_t r;
    while ((r = waitpid(-1, &st, WNOHANG)) > 0) {
        tu_untrack(r);
        int found = 0;
        for (int d = 0; d < R->ndying && !found; d++) {
            if (R->dying[d].pid != r)
                continue;
            found = 1;
            /* SIGKILLed by us, or ended by itself (an exit record) just before. */
            if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) && !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
                unexpected(R, R->dying[d].proc, "proc %u (pid %d) ended with %s", R->dying[d].proc, (int)r,
                           tu_status_str(st));
            R->dying[d] = R->dying[--R->ndying];
        }
        for (int i = 0; i < NSLOTS && !found; i++) {
            struct slot *sl = &R->slots[i];
            if (sl->pid != r)
                continue;
            found = 1;
            if (sl->stopped)
                R->stops[sl->stop_idx].cont_ns = tu_mono_ns();
            int normal = WIFEXITED(st) && WEXITSTATUS(st) == 0 && (ending || sl->kind == P_CHURN);
            if (!normal)
                unexpected(R, sl->proc, "%s proc %u (pid %d) ended with %s%s", proc_kinds[sl->kind], sl->proc,
                           (int)r, tu_status_str(st), ending ? "" : " during the run");
            sl->pid = 0;
            if (!ending)
                spawn(R, i, sl->kind);
        }
    }
}

static void do_cont(struct round *R, struct slot *sl)
{
    kill(sl->pid, SIGCONT);
    R->stops[sl->stop_idx].cont_ns = tu_mono_ns();
    sl->stopped = 0;
}

static void do_kill(struct round *R, int i)
{
    struct slot *sl = &R->slots[i];
    atomic_store(&G->procs[sl->proc].kill_ns, tu_mono_ns());   /* before the signal */
    kill(sl->pid, SIGKILL);
    if (sl->stopped)
        R->stops[sl->stop_idx].cont_ns = tu_mono_ns();
    assert_true(R->ndying < 1024);
    R->dying[R->ndying].pid = sl->pid;
    R->dying[R->ndying].proc = sl->proc;
    R->ndying++;
    R->kills++;
    spawn(R, i, sl->kind);
}

static void do_stop(struct round *R, int i, uint64_t now)
{
    struct slot *sl = &R->slots[i];
    if (R->nstops >= MAXSTOPS)
        return;
    R->stops[R->nstops] = (struct stoprec){sl->proc, tu_mono_ns(), UINT64_MAX};   /* before the signal */
    kill(sl->pid, SIGSTOP);
    sl->stopped = 1;
    sl->stop_idx = R->nstops++;
    sl->cont_at = now + (5 + tu_rand(&R->seed) % 56) * MS_NS;
}

struct totals {
    double secs;
    uint64_t rounds, ops, incomplete, acquisitions, intervals, kills, stops, breaks, forks, bursts, burst_hits,
        witness_rounds, witness_conflicts, witness_explained, unexpected, log_full, short_other_stopped;
    uint64_t acq_excl, acq_shared, acq_counted, upgrades, upgrades_ok, upgrades_deadlk, upgrades_moved,
        breaks_missed_shared, upgrades_stale_current, inspect_missed_shared;
    uint32_t peak[PEAK_MAX];
    uint64_t v[V_N], violations;
    char example[V_N][1400];
    char bad[300];
};

static unsigned env_uint(const char *n, unsigned def)
{
    const char *v = getenv(n);
    return v && *v ? (unsigned)strtoul(v, NULL, 10) : def;
}

/* SHMLEASE_CHECKER_DUMP=DIR: the raw history of each round, for analysis
 * (DIR/round-N.{rec,proc,stop}: the structs above, native layout; t0 first in .stop). */
static void dump_history(const struct history *h, uint64_t round)
{
    const char *dir = getenv("SHMLEASE_CHECKER_DUMP");
    if (!dir || !*dir)
        return;
    char path[512];
    snprintf(path, sizeof path, "%s/round-%llu.rec", dir, (unsigned long long)round);
    tu_write_file(path, h->r, h->nr * sizeof *h->r, 0644);
    snprintf(path, sizeof path, "%s/round-%llu.proc", dir, (unsigned long long)round);
    tu_write_file(path, h->p, h->np * sizeof *h->p, 0644);
    size_t len = sizeof h->t0 + h->ns * sizeof *h->s;
    char *b = malloc(len);
    if (b) {
        memcpy(b, &h->t0, sizeof h->t0);
        memcpy(b + sizeof h->t0, h->s, h->ns * sizeof *h->s);
        snprintf(path, sizeof path, "%s/round-%llu.stop", dir, (unsigned long long)round);
        tu_write_file(path, b, len, 0644);
        free(b);
    }
    printf("checker: history of round %llu written to %s\n", (unsigned long long)round, dir);
}

static void one_round(unsigned seconds, uint64_t seed, struct totals *tot)
{
    struct round *R = calloc(1, sizeof *R);
    assert_non_null(R);
    R->seed = seed;
    R->alarm_s = seconds + 120;
    size_t used = (size_t)atomic_load(&G->nrec);
    if (used > G->cap)
        used = (size_t)G->cap;
    memset(G->rec, 0, used * sizeof G->rec[0]);
    memset(G->procs, 0, sizeof G->procs);
    atomic_store(&G->nrec, 0);
    atomic_store(&G->stop, 0);
    atomic_store(&G->next_lid, 1);
    atomic_store(&G->next_hid, 1);
    atomic_store(&G->next_proc, 0);
    for (int k = 0; k < NKEYS; k++)
        atomic_store(&G->wit[k], 0);
    atomic_store(&G->bursts, 0);
    atomic_store(&G->burst_hits, 0);
    atomic_store(&G->forks, 0);
    atomic_store(&G->child_failures, 0);

    g_name = tu_name("checker");
    g_inherited = tu_open_cap(g_name, CAPACITY);

    uint64_t t0 = tu_mono_ns();
    for (int i = 0; i < NSLOTS; i++)
        spawn(R, i, i < WORKERS ? P_WORKER : i < WORKERS + CHURNS ? P_CHURN : P_OPERATOR);
    uint64_t end = t0 + seconds * 1000000000ull;
    uint64_t next_kill = t0 + (20 + tu_rand(&R->seed) % 100) * MS_NS;
    uint64_t next_stop = t0 + (30 + tu_rand(&R->seed) % 120) * MS_NS;
    while (tu_mono_ns() < end && !atomic_load(&G->stop)) {
        tu_sleep_us(500 + (unsigned)(tu_rand(&R->seed) % 1500));
        reap(R, 0);
        uint64_t now = tu_mono_ns();
        for (int i = 0; i < NSLOTS; i++)
            if (R->slots[i].stopped && R->slots[i].cont_at <= now)
                do_cont(R, &R->slots[i]);
        if (now >= next_kill) {
            do_kill(R, (int)(tu_rand(&R->seed) % (WORKERS + CHURNS)));
            next_kill = now + (20 + tu_rand(&R->seed) % 100) * MS_NS;
        }
        if (now >= next_stop) {
            int i = (int)(tu_rand(&R->seed) % (WORKERS + CHURNS));
            if (!R->slots[i].stopped)
                do_stop(R, i, now);
            next_stop = now + (30 + tu_rand(&R->seed) % 120) * MS_NS;
        }
    }
    int log_full = atomic_load(&G->stop) && tu_mono_ns() < end;
    double secs = (double)(tu_mono_ns() - t0) / 1e9;
    atomic_store(&G->stop, 1);
    for (int i = 0; i < NSLOTS; i++)
        if (R->slots[i].stopped)
            do_cont(R, &R->slots[i]);
    /* Everyone stops by itself: the dying are reaped, the others exit 0. */
    uint64_t deadline = tu_mono_ns() + 30000 * MS_NS;
    for (;;) {
        reap(R, 1);
        int left = R->ndying;
        for (int i = 0; i < NSLOTS; i++)
            left += R->slots[i].pid != 0;
        if (!left || tu_mono_ns() > deadline)
            break;
        tu_sleep_ms(1);
    }
    for (int i = 0; i < NSLOTS; i++) {
        struct slot *sl = &R->slots[i];
        if (!sl->pid)
            continue;
        atomic_store(&G->procs[sl->proc].kill_ns, tu_mono_ns());
        kill(sl->pid, SIGKILL);
        waitpid(sl->pid, NULL, 0);
        tu_untrack(sl->pid);
        unexpected(R, sl->proc, "%s proc %u (pid %d) did not stop within 30 s of the end", proc_kinds[sl->kind],
                   sl->proc, (int)sl->pid);
        sl->pid = 0;
    }
    for (int d = 0; d < R->ndying; d++) {
        waitpid(R->dying[d].pid, NULL, 0);
        tu_untrack(R->dying[d].pid);
    }
    uint64_t child_failures = atomic_load(&G->child_failures);
    if (child_failures) {
        R->unexpected += child_failures;
        snprintf(R->bad, sizeof R->bad, "%llu fork children of workers failed", (unsigned long long)child_failures);
    }

    /* The referee. */
    size_t nr = (size_t)atomic_load(&G->nrec);
    if (nr > G->cap)
        nr = (size_t)G->cap;
    size_t np = atomic_load(&G->next_proc);
    if (np > MAXPROC)
        np = MAXPROC;
    /* Every violation goes to the report file, the first few of each kind to stdout. */
    char report[600];
    const char *rp = getenv("SHMLEASE_CHECKER_REPORT");
    snprintf(report, sizeof report, "%s", rp && *rp ? rp : "rel_checker-violations.txt");
    /* The mutation's tens of thousands of violations: a few on stdout, the
     * file only if asked for. */
    FILE *rf = g_mutate && !(rp && *rp) ? NULL : fopen(report, tot->rounds ? "a" : "w");
    if (rf)
        fprintf(rf, "# round %llu, seed %llu, instants in ms from the round's start\n",
                (unsigned long long)tot->rounds + 1, (unsigned long long)seed);
    struct history h = {.r = G->rec, .nr = nr, .p = G->procs, .np = np, .s = R->stops, .ns = R->nstops,
                        .t0 = t0, .print_max = env_uint("SHMLEASE_CHECKER_PRINT", g_mutate ? 3 : 20), .report = rf,
                        .strict = (int)env_uint("SHMLEASE_CHECKER_STRICT", 0)};
    dump_history(&h, tot->rounds + 1);
    struct verdict *v = malloc(sizeof *v);
    assert_non_null(v);
    uint64_t r0 = tu_mono_ns();
    TU_TRUE(referee(&h, v) == 0, "referee: out of memory");
    double rsecs = (double)(tu_mono_ns() - r0) / 1e9;
    if (rf) {
        fclose(rf);
        if (v->total)
            printf("checker: all %llu violations of round %llu, with their records, are in %s\n",
                   (unsigned long long)v->total, (unsigned long long)tot->rounds + 1, report);
    }

    char kinds[600] = "";
    size_t kl = 0;
    for (int k = 0; k < V_N; k++)
        if (v->n[k] && kl < sizeof kinds)
            kl += (size_t)snprintf(kinds + kl, sizeof kinds - kl, "%s%s %llu", kl ? ", " : ": ", vnames[k],
                                   (unsigned long long)v->n[k]);
    tu_note("checker round %llu: %.1f s%s, %u workers x %u threads + %u churn + operator, %u keys (%u hot), "
             "capacity %u: %llu operations (%llu without return), %llu acquisitions, %llu certain intervals, "
             "%llu SIGKILLs, %zu SIGSTOPs, %llu breaks, %llu fork children, %llu bursts (%llu resurrected a "
             "broken lease), %llu witness rounds (%llu conflicts, %llu after a break), %llu short leases "
             "excused by preemption, %llu processes ended unexpectedly; referee %.2f s; violations %llu%s",
             (unsigned long long)tot->rounds + 1, secs, log_full ? " (log full)" : "", WORKERS, THREADS, CHURNS,
             NKEYS, NHOT, CAPACITY, (unsigned long long)v->ops, (unsigned long long)v->incomplete,
             (unsigned long long)v->acquisitions, (unsigned long long)v->intervals, (unsigned long long)R->kills,
             R->nstops, (unsigned long long)v->breaks, (unsigned long long)atomic_load(&G->forks),
             (unsigned long long)atomic_load(&G->bursts), (unsigned long long)atomic_load(&G->burst_hits),
             (unsigned long long)v->witness_rounds, (unsigned long long)v->witness_conflicts,
             (unsigned long long)v->witness_explained, (unsigned long long)v->short_preempted,
             (unsigned long long)R->unexpected, rsecs,
             (unsigned long long)v->total, kinds);
    tu_note("checker round %llu modes: acquisitions %llu exclusive, %llu shared, %llu counted; upgrades %llu "
             "(%llu succeeded, %llu -EDEADLK, %llu failed [K1: may have renewed their shared lease], %llu "
             "-ESTALE with the shared lease still current [K3]); most certain shared holders of a key at once: "
             "limit 2: %u, limit 3: %u, no limit: %u; -ENOENT breaks beside a shared holder [K2]: %llu; shared "
             "leases current after an inspect found their key free [K4]: %llu%s",
             (unsigned long long)tot->rounds + 1, (unsigned long long)v->acq_excl,
             (unsigned long long)v->acq_shared, (unsigned long long)v->acq_counted,
             (unsigned long long)v->upgrades, (unsigned long long)v->upgrades_ok,
             (unsigned long long)v->upgrades_deadlk, (unsigned long long)v->upgrades_moved,
             (unsigned long long)v->upgrades_stale_current, v->peak[2], v->peak[3],
             v->peak[0], (unsigned long long)v->breaks_missed_shared, (unsigned long long)v->inspect_missed_shared,
             h.strict ? "; strict (K1-K4 refereed as the header states them)" : "");

    tot->rounds++;
    tot->secs += secs;
    tot->ops += v->ops;
    tot->incomplete += v->incomplete;
    tot->acquisitions += v->acquisitions;
    tot->intervals += v->intervals;
    tot->kills += R->kills;
    tot->stops += R->nstops;
    tot->breaks += v->breaks;
    tot->forks += atomic_load(&G->forks);
    tot->bursts += atomic_load(&G->bursts);
    tot->burst_hits += atomic_load(&G->burst_hits);
    tot->witness_rounds += v->witness_rounds;
    tot->witness_conflicts += v->witness_conflicts;
    tot->witness_explained += v->witness_explained;
    tot->unexpected += R->unexpected;
    tot->log_full += (uint64_t)log_full;
    tot->short_other_stopped += v->short_with_other_stopped;
    tot->acq_excl += v->acq_excl;
    tot->acq_shared += v->acq_shared;
    tot->acq_counted += v->acq_counted;
    tot->upgrades += v->upgrades;
    tot->upgrades_ok += v->upgrades_ok;
    tot->upgrades_deadlk += v->upgrades_deadlk;
    tot->upgrades_moved += v->upgrades_moved;
    tot->upgrades_stale_current += v->upgrades_stale_current;
    tot->breaks_missed_shared += v->breaks_missed_shared;
    tot->inspect_missed_shared += v->inspect_missed_shared;
    for (int k = 0; k < PEAK_MAX; k++)
        if (v->peak[k] > tot->peak[k])
            tot->peak[k] = v->peak[k];
    for (int k = 0; k < V_N; k++) {
        if (v->n[k] && !tot->v[k])
            memcpy(tot->example[k], v->example[k], sizeof tot->example[k]);
        tot->v[k] += v->n[k];
    }
    tot->violations += v->total;
    if (R->unexpected && !tot->bad[0])
        memcpy(tot->bad, R->bad, sizeof tot->bad);
    free(v);
    tu_forget(g_inherited);
    shmlease_close(g_inherited);
    g_inherited = NULL;
    shmlease_unlink(g_name);
    free(R);
}

static void run_checker(unsigned total_s, unsigned round_s)
{
    for (int k = 0; k < NKEYS; k++)
        snprintf(keyname[k], sizeof keyname[k], k < NHOT ? "hot-%d" : "cold-%d", k);
    alarm(total_s + 240);
    G = tu_shared(sizeof *G + (size_t)LOG_CAP * sizeof(struct rec));
    G->cap = LOG_CAP;
    struct totals *tot = calloc(1, sizeof *tot);
    assert_non_null(tot);
    uint64_t seed = env_uint("SHMLEASE_CHECKER_SEED", 0);
    if (!seed)
        seed = tu_mono_ns() ^ ((uint64_t)getpid() << 32);
    printf("checker: seed %llu (SHMLEASE_CHECKER_SEED)\n", (unsigned long long)seed);
    uint64_t start = tu_mono_ns();
    do {
        one_round(round_s, tu_rand(&seed), tot);
    } while ((tu_mono_ns() - start) / 1000000000ull + round_s <= total_s);

    char kinds[600] = "";
    size_t kl = 0;
    for (int k = 0; k < V_N; k++)
        if (tot->v[k] && kl < sizeof kinds)
            kl += (size_t)snprintf(kinds + kl, sizeof kinds - kl, "%s%s %llu", kl ? ", " : " (",
                                   vnames[k], (unsigned long long)tot->v[k]);
    if (kl)
        snprintf(kinds + kl, sizeof kinds - kl, ")");
    tu_note("checker%s: %llu round(s), %.1f s: %llu operations, %llu acquisitions, %llu kills, %llu stops, "
             "%llu breaks, %llu violations%s",
             total_s > round_s ? " (long)" : "", (unsigned long long)tot->rounds, tot->secs,
             (unsigned long long)tot->ops, (unsigned long long)tot->acquisitions, (unsigned long long)tot->kills,
             (unsigned long long)tot->stops, (unsigned long long)tot->breaks,
             (unsigned long long)tot->violations, kinds);
    tu_note("checker modes: %llu exclusive, %llu shared, %llu counted acquisitions; %llu upgrades (%llu "
             "succeeded, %llu -EDEADLK); most certain shared holders of a key at once: %u (limit 2), %u (limit 3), "
             "%u (no limit)",
             (unsigned long long)tot->acq_excl, (unsigned long long)tot->acq_shared,
             (unsigned long long)tot->acq_counted, (unsigned long long)tot->upgrades,
             (unsigned long long)tot->upgrades_ok, (unsigned long long)tot->upgrades_deadlk, tot->peak[2],
             tot->peak[3], tot->peak[0]);
    for (int k = 0; k < V_N; k++)
        if (tot->v[k])
            printf("first %s violation: %s\n", vnames[k], tot->example[k]);
    if (tot->short_other_stopped)
        printf("short-lease violations during which another process was stopped: %llu\n",
               (unsigned long long)tot->short_other_stopped);

    uint64_t violations = tot->violations, unexpected_ = tot->unexpected;
    char bad[300];
    memcpy(bad, tot->bad, sizeof bad);
    uint64_t kills = tot->kills, stops = tot->stops, acqs = tot->acquisitions, breaks = tot->breaks;
    uint64_t shared = tot->acq_shared, counted = tot->acq_counted, upgraded = tot->upgrades_ok,
             v_excl = tot->v[V_EXCL], v_limit = tot->v[V_LIMIT];
    free(tot);
    if (g_mutate) {
        /* Shared tries refused with -EBUSY were logged as held: leases of
         * keys held exclusively, and beyond counted keys' limits. */
        TU_TRUE(v_excl > 0 && v_limit > 0,
                 "the mutation (shared -EBUSY logged as success) was not caught: %llu exclusion, %llu limit "
                 "violations",
                 (unsigned long long)v_excl, (unsigned long long)v_limit);
        tu_note("checker mutation caught: %llu exclusion and %llu limit violations", (unsigned long long)v_excl,
                 (unsigned long long)v_limit);
        return;
    }
    TU_TRUE(violations == 0, "%llu violations%s: see the VIOLATION lines above", (unsigned long long)violations,
             kinds);
    TU_TRUE(unexpected_ == 0, "%llu processes ended unexpectedly; last: %s", (unsigned long long)unexpected_, bad);
    TU_TRUE(kills > 0 && stops > 0 && breaks > 0 && acqs > 1000 && shared > 0 && counted > 0 && upgraded > 0,
             "too little happened: %llu kills, %llu stops, %llu breaks, %llu acquisitions (%llu shared, %llu "
             "counted), %llu upgrades",
             (unsigned long long)kills, (unsigned long long)stops, (unsigned long long)breaks,
             (unsigned long long)acqs, (unsigned long long)shared, (unsigned long long)counted,
             (unsigned long long)upgraded);
}

static int g_long;

static void t_checker(void **s)
{
    (void)s;
    if (g_long) {
        unsigned total = env_uint("SHMLEASE_CHECKER_SECONDS", 300);
        run_checker(total, 40);
    } else if (g_mutate) {
        unsigned secs = env_uint("SHMLEASE_CHECKER_SECONDS", 8);
        run_checker(secs, secs);
    } else {
        unsigned secs = env_uint("SHMLEASE_CHECKER_SECONDS", 30);
        run_checker(secs, secs);
    }
}

/* `rel_checker --replay DIR/round-N`: referee a history written with
 * SHMLEASE_CHECKER_DUMP again (same build of this file), printing every
 * violation. Exit 0 when it has none, 1 when it has, 2 when unreadable. */
static int replay(const char *prefix)
{
    char path[600];
    size_t lr = 0, lp = 0, ls = 0;
    snprintf(path, sizeof path, "%s.rec", prefix);
    struct rec *r = tu_read_file(path, &lr);
    snprintf(path, sizeof path, "%s.proc", prefix);
    struct procrec *p = tu_read_file(path, &lp);
    snprintf(path, sizeof path, "%s.stop", prefix);
    char *sb = tu_read_file(path, &ls);
    if (!r || !p || !sb || ls < sizeof(uint64_t)) {
        fprintf(stderr, "replay: cannot read %s.{rec,proc,stop}\n", prefix);
        return 2;
    }
    struct history h = {.r = r, .nr = lr / sizeof *r, .p = p, .np = lp / sizeof *p,
                        .s = (const struct stoprec *)(const void *)(sb + sizeof(uint64_t)),
                        .ns = (ls - sizeof(uint64_t)) / sizeof(struct stoprec), .print_max = UINT32_MAX};
    memcpy(&h.t0, sb, sizeof h.t0);
    struct verdict *v = malloc(sizeof *v);
    if (!v || referee(&h, v) != 0)
        return 2;
    printf("replay %s: %llu operations, %llu acquisitions, %llu certain intervals, %llu violations:", prefix,
           (unsigned long long)v->ops, (unsigned long long)v->acquisitions, (unsigned long long)v->intervals,
           (unsigned long long)v->total);
    for (int k = 0; k < V_N; k++)
        if (v->n[k])
            printf(" %s %llu", vnames[k], (unsigned long long)v->n[k]);
    printf("\n");
    int bad = v->total != 0;
    free(v);
    free(r);
    free(p);
    free(sb);
    return bad;
}

int main(int argc, char **argv)
{
    if (argc > 2 && !strcmp(argv[1], "--replay"))
        return replay(argv[2]);
    if (argc > 1 && !strcmp(argv[1], "--long")) {
        const char *e = getenv("SHMLEASE_LONG");
        if (!e || strcmp(e, "1")) {
            printf("rel_checker --long: skipped (set SHMLEASE_LONG=1 to run the long exclusion checker)\n");
            return 77;
        }
        g_long = 1;
        argc = 1;
    }
    const char *mut = getenv("SHMLEASE_CHECKER_MUTATE");
    if (argc > 1 && !strcmp(argv[1], "--mutate")) {
        g_mutate = 1;                  /* the workload's mutation, and the test that it is caught */
        argc = 1;
    } else if (mut && *mut) {
        if (strcmp(mut, "shared-busy")) {
            fprintf(stderr, "rel_checker: SHMLEASE_CHECKER_MUTATE=%s: unknown (known: shared-busy)\n", mut);
            return 2;
        }
        g_mutate = 1;
    }
    const struct CMUnitTest tests[] = {
        TU_SLOW_TEST(t_referee_selftest),
        TU_SLOW_TEST(t_checker),
    };
    return TU_RUN(tests);
}
