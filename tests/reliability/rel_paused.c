/*
 * Paused holders (docs/failure-modes.md F4, F5, F10).
 *
 * A holder SIGSTOPped past its TTL is not dead: its lease expires, another
 * process takes it with a greater token, and when the paused one resumes its
 * check/renew/release are -ESTALE (reported through a pipe), never touching
 * the new owner's lease; a simulated storage that keeps the largest token it
 * has seen rejects the paused holder's write.
 *
 * The same with the pause placed between the steps of an operation (fault
 * points with STOP): after the claiming CAS, after drawing the token, before
 * the renew CAS, before the release CAS.
 *
 * Time is the table's injected clock, shared by every process of a test and
 * moved by the parent alone: "still before the deadline" and "past it" are
 * then facts of the test, not races against how fast a loaded machine gets
 * from the child's claim to the parent's check.
 */
#include "internal.h"
#include "testutil.h"

#define TTL 200u

static uint64_t clock_read(void *ctx)
{
    return atomic_load((_Atomic uint64_t *)ctx);
}

/* A clock in memory shared with the children (made before fork). */
static _Atomic uint64_t *clock_new(void)
{
    _Atomic uint64_t *c = tu_shared(sizeof *c);
    atomic_store(c, 1000000);
    return c;
}

static shmlease_table *open_clocked(const char *name, _Atomic uint64_t *c)
{
    shmlease_options o = {.capacity = 16, .clock_ms = clock_read, .clock_ctx = (void *)c};
    shmlease_table *t = NULL;
    int rc = shmlease_open(name, &o, &t);
    return rc == 0 ? t : NULL;
}

/* The protected resource: accepts a write only with a token >= every token seen. */
struct storage {
    _Atomic uint64_t max_token;
    _Atomic uint64_t accepted, rejected;
};

static int storage_write(struct storage *s, uint64_t token)
{
    uint64_t cur = atomic_load(&s->max_token);
    for (;;) {
        if (token < cur) {
            atomic_fetch_add(&s->rejected, 1);
            return -1;
        }
        if (atomic_compare_exchange_weak(&s->max_token, &cur, token)) {
            atomic_fetch_add(&s->accepted, 1);
            return 0;
        }
    }
}

enum { R_TOKEN = 1, R_CHECK, R_RENEW, R_RELEASE, R_RELEASE_AFTER, R_STORE, R_ACQ, R_DONE };

static void t_paused_past_ttl(void **s)
{
    (void)s;
    const char *name = tu_name("paused");
    _Atomic uint64_t *clk = clock_new();
    shmlease_table *t = open_clocked(name, clk);
    TU_TRUE(t != NULL, "open %s", name);
    struct storage *st = tu_shared(sizeof *st);
    tu_chan c;
    tu_chan_init(&c);
    pid_t pid = tu_fork_alarm(60);
    if (pid == 0) {
        tu_chan_child(&c);
        shmlease_table *ct = open_clocked(name, clk);
        TU_CK(ct != NULL);
        shmlease_lease l;
        TU_CK_RC(tu_acquire(ct, "job", TTL, 0, &l), 0);
        TU_CK(storage_write(st, l.fencing_token) == 0);
        tu_up(&c, (int64_t)l.fencing_token);
        raise(SIGSTOP);                       /* the pause: swap, freeze, debugger... */
        /* Resumed past the deadline: believes it owns "job". */
        shmlease_lease copy = l;
        tu_up(&c, shmlease_check(ct, &l));
        tu_up(&c, shmlease_renew(ct, &l, 60000));
        tu_up(&c, shmlease_release(ct, &l));
        tu_up(&c, shmlease_release_after(ct, &copy, 60000));
        tu_up(&c, storage_write(st, l.fencing_token));
        _exit(0);
    }
    tu_chan_parent(&c, pid);
    int64_t tok1;
    TU_TRUE(tu_up_try(&c, &tok1, 10000) == 0, "child did not acquire");
    TU_TRUE(tu_wait_stopped(pid, 10000), "child did not stop");
    shmlease_stats s0;
    TU_RC(shmlease_stats_get(t, &s0), 0);
    /* A live, stopped holder is never taken before its deadline... */
    shmlease_lease l2;
    shmlease_info info;
    TU_RC(shmlease_inspect(t, "job", &info), 0);
    TU_TRUE(info.holder_alive == 1 && info.holder_pid == pid && info.remaining_ms == TTL,
             "stopped holder: pid %d alive %d remaining %lld ms", info.holder_pid,
             info.holder_alive, (long long)info.remaining_ms);
    TU_RC(tu_acquire(t, "job", 60000, 0, &l2), -EBUSY);
    atomic_fetch_add(clk, TTL - 1);
    TU_RC(tu_acquire(t, "job", 60000, 0, &l2), -EBUSY);     /* 1 ms left */
    /* ... and is taken after it. */
    atomic_fetch_add(clk, 51);
    TU_RC(tu_acquire(t, "job", 60000, 0, &l2), 0);
    TU_TRUE(l2.fencing_token > (uint64_t)tok1, "new token %llu <= paused holder's %lld",
             (unsigned long long)l2.fencing_token, (long long)tok1);
    TU_TRUE(storage_write(st, l2.fencing_token) == 0, "storage refused the new owner");
    shmlease_stats s1;
    TU_RC(shmlease_stats_get(t, &s1), 0);
    TU_TRUE(s1.expirations == s0.expirations + 1 && s1.reclaimed_dead == s0.reclaimed_dead,
             "takeover of a stopped holder must count as an expiration, not a death");
    uint64_t deadline = l2.expires_at_ms;

    kill(pid, SIGCONT);
    int64_t r[5];
    for (int i = 0; i < 5; i++)
        TU_TRUE(tu_up_try(&c, &r[i], 10000) == 0, "resumed child stopped reporting (%d)", i);
    tu_expect_exit0_within(pid, 10000);
    TU_RC(r[0], -ESTALE);          /* check */
    TU_RC(r[1], -ESTALE);          /* renew */
    TU_RC(r[2], -ESTALE);          /* release */
    TU_RC(r[3], -ESTALE);          /* release_after */
    TU_TRUE(r[4] == -1, "the storage accepted the paused holder's write");
    /* The new owner's lease is untouched. */
    TU_RC(shmlease_check(t, &l2), 0);
    TU_RC(shmlease_inspect(t, "job", &info), 0);
    TU_TRUE(info.holder_pid == getpid() && info.fencing_token == l2.fencing_token &&
             info.expires_at_ms == deadline, "new owner's lease changed by the paused holder");
    shmlease_stats s2;
    TU_RC(shmlease_stats_get(t, &s2), 0);
    TU_TRUE(s2.lost >= s1.lost + 4, "lost counter %llu -> %llu", (unsigned long long)s1.lost,
             (unsigned long long)s2.lost);
    TU_RC(shmlease_release(t, &l2), 0);
    shmlease_close(t);
    tu_note("paused: holder stopped past its %u ms TTL: taken over (token %llu > %lld), on resume check/renew/"
             "release/release_after all -ESTALE, fencing storage rejected it (%llu accepted, %llu rejected)",
             TTL, (unsigned long long)l2.fencing_token, (long long)tok1,
             (unsigned long long)atomic_load(&st->accepted), (unsigned long long)atomic_load(&st->rejected));
    tu_chan_close(&c);
}

/* A pause between the steps of one operation. */
enum op { OP_ACQ, OP_RENEW, OP_RELEASE };

static void pause_at(const char *point, enum op op)
{
    const char *name = tu_name("pstep");
    _Atomic uint64_t *clk = clock_new();
    shmlease_table *t = open_clocked(name, clk);
    TU_TRUE(t != NULL, "open %s", name);
    shmlease_lease l2;
    TU_RC(tu_acquire(t, "job", 1000, 0, &l2), 0);   /* the key exists (no insert path) */
    TU_RC(shmlease_release(t, &l2), 0);
    tu_chan c;
    tu_chan_init(&c);
    pid_t pid = tu_fork_alarm(60);
    if (pid == 0) {
        tu_chan_child(&c);
        shmlease_table *ct = open_clocked(name, clk);
        TU_CK(ct != NULL);
        shmlease_lease l;
        if (op == OP_ACQ) {
            shmlease__fault_arm(point, SHMLEASE_FAULT_STOP, 1);
            int rc = tu_acquire(ct, "job", TTL, 0, &l);
            tu_up(&c, rc);
            tu_up(&c, rc == 0 ? (int64_t)l.fencing_token : 0);
        } else {
            TU_CK_RC(tu_acquire(ct, "job", TTL, 0, &l), 0);
            shmlease__fault_arm(point, SHMLEASE_FAULT_STOP, 1);
            tu_up(&c, op == OP_RENEW ? shmlease_renew(ct, &l, 60000) : shmlease_release(ct, &l));
            tu_up(&c, (int64_t)l.fencing_token);
        }
        _exit(0);
    }
    tu_chan_parent(&c, pid);
    TU_TRUE(tu_wait_stopped(pid, 10000), "child did not stop at %s", point);
    shmlease_info info;
    TU_RC(shmlease_inspect(t, "job", &info), 0);
    TU_TRUE(info.holder_pid == pid && info.holder_alive == 1, "%s: holder pid %d alive %d", point,
             info.holder_pid, info.holder_alive);
    if (!strcmp(point, "acquire.after_cas") || !strcmp(point, "acquire.after_token"))
        TU_TRUE(info.fencing_token == 0, "unpublished claim shows token %llu",
                 (unsigned long long)info.fencing_token);
    TU_RC(tu_acquire(t, "job", 60000, 0, &l2), -EBUSY);     /* alive and unexpired */
    atomic_fetch_add(clk, TTL + 50);
    TU_RC(tu_acquire(t, "job", 60000, 0, &l2), 0);          /* expired: taken */
    uint64_t deadline = l2.expires_at_ms;
    kill(pid, SIGCONT);
    int64_t rc, tok;
    TU_TRUE(tu_up_try(&c, &rc, 10000) == 0 && tu_up_try(&c, &tok, 10000) == 0, "no report from the child");
    tu_expect_exit0_within(pid, 10000);
    if (op == OP_ACQ)
        TU_RC(rc, -EBUSY);        /* its claim was lost before it returned: it must not succeed */
    else
        TU_RC(rc, -ESTALE);
    TU_TRUE(op == OP_ACQ || (uint64_t)tok < l2.fencing_token, "token order");
    TU_RC(shmlease_check(t, &l2), 0);
    TU_RC(shmlease_inspect(t, "job", &info), 0);
    TU_TRUE(info.holder_pid == getpid() && info.expires_at_ms == deadline &&
             info.fencing_token == l2.fencing_token,
             "%s: the resumed process changed the new owner's lease (pid %d, token %llu)", point,
             info.holder_pid, (unsigned long long)info.fencing_token);
    TU_RC(shmlease_release(t, &l2), 0);
    shmlease_close(t);
    tu_note("paused at %s past the TTL: new owner unaffected, resumed call returned %s", point,
             shmlease_errname((int)rc));
    tu_chan_close(&c);
}

static void t_pause_acquire_after_cas(void **s) { (void)s; pause_at("acquire.after_cas", OP_ACQ); }
static void t_pause_acquire_after_token(void **s) { (void)s; pause_at("acquire.after_token", OP_ACQ); }
static void t_pause_renew_before_cas(void **s) { (void)s; pause_at("renew.before_cas", OP_RENEW); }
static void t_pause_release_before_cas(void **s) { (void)s; pause_at("release.before_cas", OP_RELEASE); }

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        TU_SLOW_TEST(t_paused_past_ttl),
        TU_SLOW_TEST(t_pause_acquire_after_cas),
        TU_SLOW_TEST(t_pause_acquire_after_token),
        TU_SLOW_TEST(t_pause_renew_before_cas),
        TU_SLOW_TEST(t_pause_release_before_cas),
    };
    return TU_RUN(tests);
}
