/* Fencing tokens: every successful acquire gets a token strictly greater than
 * every token handed out before it, for any key, by any process, for the life
 * of the segment. */
#include "testutil.h"

#define T0 1000000u

static void test_tokens_increase_for_any_key_in_one_process(void **state)
{
    (void)state;
    const char *name = tu_name("seq");
    shmlease_table *t = tu_open(name, NULL);
    uint64_t last = 0;
    char key[32];
    for (int i = 0; i < 500; i++) {
        snprintf(key, sizeof key, "k%d", (i * 7) % 13);
        shmlease_lease l;
        TU_RC(tu_acquire(t, key, 60000, 0, &l), 0);
        TU_GT(l.fencing_token, last);
        last = l.fencing_token;
        TU_EQU(tu_stats(t).fencing_counter, last);
        if (i % 3 == 0)
            TU_RC(shmlease_renew(t, &l, 1000), 0);
        TU_EQU(l.fencing_token, last); /* renew keeps the token */
        TU_RC(shmlease_release(t, &l), 0);
    }
}

enum { NPROC = 4, ITERS = 300, NKEYS = 4 };

struct rec {
    uint64_t token;
    uint64_t before; /* global ticket taken before calling acquire */
    uint64_t after;  /* ... after it returned */
    uint64_t seq;    /* order of entry into the critical section */
    int key;
    int proc;
};

struct fence_shared {
    _Atomic uint64_t ticket;
    _Atomic uint64_t seq;
    _Atomic int bad;
    struct rec recs[NPROC * ITERS];
};

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_tokens_strictly_increase_across_keys_and_processes(void **state)
{
    (void)state;
    const char *name = tu_name("multi");
    shmlease_table *t = tu_open(name, NULL);
    shmlease_stats s0 = tu_stats(t);
    struct fence_shared *sh = tu_shared(sizeof *sh);
    pid_t p[NPROC];
    for (int id = 0; id < NPROC; id++) {
        p[id] = tu_fork();
        if (p[id] == 0) {
            shmlease_table *u = NULL;
            TU_CK_RC(shmlease_open(name, NULL, &u), 0);
            for (int i = 0; i < ITERS; i++) {
                int k = (i * 7 + id * 3 + i / 5) % NKEYS;
                char key[16];
                snprintf(key, sizeof key, "key%d", k);
                struct rec *r = &sh->recs[id * ITERS + i];
                r->before = atomic_fetch_add(&sh->ticket, 1);
                shmlease_lease l;
                TU_CK_RC(tu_acquire(u, key, 10000, SHMLEASE_WAIT_FOREVER, &l), 0);
                r->after = atomic_fetch_add(&sh->ticket, 1);
                r->seq = atomic_fetch_add(&sh->seq, 1);
                r->token = l.fencing_token;
                r->key = k;
                r->proc = id;
                TU_CK_RC(shmlease_release(u, &l), 0);
            }
            shmlease_close(u);
            _exit(0);
        }
    }
    for (int id = 0; id < NPROC; id++)
        tu_expect_exit0(p[id]);

    const int n = NPROC * ITERS;
    uint64_t *toks = malloc(sizeof(uint64_t) * (size_t)n);
    for (int i = 0; i < n; i++)
        toks[i] = sh->recs[i].token;
    qsort(toks, (size_t)n, sizeof *toks, cmp_u64);
    for (int i = 1; i < n; i++)
        if (toks[i] == toks[i - 1])
            fail_msg("token %llu handed out twice", (unsigned long long)toks[i]);
    TU_GT(toks[0], s0.fencing_counter);
    shmlease_stats s1 = tu_stats(t);
    TU_EQU(s1.fencing_counter, toks[n - 1]);
    TU_EQU(s1.acquisitions, s0.acquisitions + (uint64_t)n);
    free(toks);

    /* per key, in the order the critical sections were entered: increasing */
    for (int k = 0; k < NKEYS; k++) {
        uint64_t last_seq = 0, last_tok = 0;
        int have = 0;
        for (;;) {
            /* next record of key k by seq */
            const struct rec *next = NULL;
            for (int i = 0; i < n; i++) {
                const struct rec *r = &sh->recs[i];
                if (r->key == k && (!have || r->seq > last_seq) && (!next || r->seq < next->seq))
                    next = r;
            }
            if (!next)
                break;
            if (have && !(next->token > last_tok))
                fail_msg("key%d: token %llu (seq %llu) after token %llu", k,
                         (unsigned long long)next->token, (unsigned long long)next->seq,
                         (unsigned long long)last_tok);
            have = 1;
            last_seq = next->seq;
            last_tok = next->token;
        }
    }
    /* across keys and processes: an acquire that began after another one
     * returned has a greater token */
    for (int i = 0; i < n; i++) {
        const struct rec *a = &sh->recs[i];
        for (int j = 0; j < n; j++) {
            const struct rec *b = &sh->recs[j];
            if (a->after < b->before && !(a->token < b->token))
                fail_msg("acquire by proc %d (key%d, token %llu) returned before acquire by "
                         "proc %d (key%d) began, which got token %llu", a->proc, a->key,
                         (unsigned long long)a->token, b->proc, b->key,
                         (unsigned long long)b->token);
        }
    }
}

static void test_token_after_takeover_by_expiry_is_larger(void **state)
{
    (void)state;
    const char *name = tu_name("expiry");
    tu_clock *clk = tu_clock_new(T0);
    shmlease_options o = tu_opts_clock(clk, 0);
    shmlease_table *t = tu_open(name, &o);
    shmlease_lease old;
    TU_RC(tu_acquire(t, "k", 100, 0, &old), 0);
    /* other keys move the counter on meanwhile */
    for (int i = 0; i < 20; i++) {
        shmlease_lease l;
        char key[16];
        snprintf(key, sizeof key, "o%d", i);
        TU_RC(tu_acquire(t, key, 60000, 0, &l), 0);
    }
    uint64_t counter = tu_stats(t).fencing_counter;
    tu_clock_advance(clk, 101);
    tu_chan c;
    tu_chan_init(&c);
    pid_t p = tu_fork();
    if (p == 0) {
        tu_chan_child(&c);
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, &o, &u), 0);
        shmlease_lease l;
        TU_CK_RC(tu_acquire(u, "k", 60000, 0, &l), 0);
        tu_up(&c, (int64_t)l.fencing_token);
        _exit(0);
    }
    tu_chan_parent(&c, p);
    uint64_t tok = (uint64_t)tu_up_recv(&c, 10000);
    tu_expect_exit0(p);
    TU_GT(tok, old.fencing_token);
    TU_GT(tok, counter);
    TU_RC(shmlease_release(t, &old), -ESTALE);
}

static void test_tokens_keep_increasing_across_close_and_reopen(void **state)
{
    (void)state;
    const char *name = tu_name("reopen");
    shmlease_table *t = tu_open(name, NULL);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k", 60000, 0, &l), 0);
    TU_RC(tu_acquire(t, "k2", 60000, 0, &l), 0);
    uint64_t last = l.fencing_token;
    tu_close(t); /* no handle left: the segment lives on */
    pid_t p = tu_fork();
    if (p == 0) {
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, NULL, &u), 0);
        shmlease_lease x;
        TU_CK_RC(tu_acquire(u, "other", 60000, 0, &x), 0);
        TU_CK(x.fencing_token > last);
        shmlease_close(u);
        _exit(0);
    }
    tu_expect_exit0(p);
    t = tu_open(name, NULL);
    shmlease_lease x;
    TU_RC(tu_acquire(t, "k", 60000, 0, &x), 0);
    TU_GT(x.fencing_token, last + 1);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(test_tokens_increase_for_any_key_in_one_process),
        TU_TEST(test_tokens_strictly_increase_across_keys_and_processes),
        TU_TEST(test_token_after_takeover_by_expiry_is_larger),
        TU_TEST(test_tokens_keep_increasing_across_close_and_reopen),
    };
    return TU_RUN(tests);
}
