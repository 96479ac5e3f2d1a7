/* Capacity: live keys (held or in grace) up to capacity; one more is -ENOSPC;
 * released, expired, dead-holder keys make room; retired keys are reused. */
#include "testutil.h"

#define T0 1000000u

static void keyname(char *b, size_t n, const char *prefix, int i)
{
    snprintf(b, n, "%s-%d", prefix, i);
}

static void test_capacity_full_table_is_enospc_and_release_makes_room(void **state)
{
    (void)state;
    const char *name = tu_name("full");
    shmlease_table *t = tu_open_cap(name, 8);
    TU_EQ(tu_stats(t).capacity, 8);
    shmlease_lease l[8], x;
    char key[32];
    for (int i = 0; i < 8; i++) {
        keyname(key, sizeof key, "k", i);
        TU_RC(tu_acquire(t, key, 60000, 0, &l[i]), 0);
    }
    TU_EQ(tu_stats(t).held, 8);
    shmlease_stats s0 = tu_stats(t);
    TU_RC(tu_acquire(t, "ninth", 60000, 0, &x), -ENOSPC);
    int rc = tu_acquire(t, "ninth", 60000, 200, &x); /* waiting for room, if at all */
    assert_true(rc == -ENOSPC || rc == -ETIMEDOUT);
    shmlease_stats s1 = tu_stats(t);
    TU_EQU(s1.fencing_counter, s0.fencing_counter);
    TU_EQU(s1.acquisitions, s0.acquisitions);
    shmlease_info i;
    TU_RC(shmlease_inspect(t, "ninth", &i), -ENOENT);
    /* a held key of a full table is busy, not out of space */
    TU_RC(tu_acquire(t, "k-3", 60000, 0, &x), -EBUSY);
    /* from another process too */
    pid_t p = tu_fork();
    if (p == 0) {
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, NULL, &u), 0);
        shmlease_lease y;
        TU_CK_RC(tu_acquire(u, "other-ninth", 60000, 0, &y), -ENOSPC);
        TU_CK_RC(tu_acquire(u, "k-0", 60000, 0, &y), -EBUSY);
        _exit(0);
    }
    tu_expect_exit0(p);

    TU_RC(shmlease_release(t, &l[3]), 0);
    TU_RC(tu_acquire(t, "ninth", 60000, 0, &x), 0);
    TU_RC(tu_acquire(t, "tenth", 60000, 0, &l[3]), -ENOSPC);
    /* a released key can be taken again even when the table is otherwise full */
    TU_RC(shmlease_release(t, &x), 0);
    TU_RC(tu_acquire(t, "k-3", 60000, 0, &l[3]), 0);
    TU_RC(tu_acquire(t, "ninth", 60000, 0, &x), -ENOSPC);
}

static void test_capacity_one_table_works(void **state)
{
    (void)state;
    const char *name = tu_name("one");
    shmlease_table *t = tu_open_cap(name, 1);
    shmlease_lease a, b;
    TU_RC(tu_acquire(t, "a", 60000, 0, &a), 0);
    TU_RC(tu_acquire(t, "b", 60000, 0, &b), -ENOSPC);
    TU_RC(shmlease_release(t, &a), 0);
    TU_RC(tu_acquire(t, "b", 60000, 0, &b), 0);
    TU_RC(tu_acquire(t, "a", 60000, 0, &a), -ENOSPC);
}

static void test_retired_keys_are_reused_through_a_small_table(void **state)
{
    (void)state;
    const char *name = tu_name("churn");
    shmlease_table *t = tu_open_cap(name, 16);
    char key[48];
    uint64_t last = 0;
    for (int i = 0; i < 20000; i++) {
        keyname(key, sizeof key, "distinct-key", i);
        shmlease_lease l;
        int rc = tu_acquire(t, key, 60000, 0, &l);
        if (rc != 0)
            fail_msg("distinct key #%d through a capacity-16 table: %d (%s)", i, rc,
                     shmlease_errname(rc));
        TU_GT(l.fencing_token, last);
        last = l.fencing_token;
        TU_RC(shmlease_release(t, &l), 0);
    }
    shmlease_stats s = tu_stats(t);
    TU_RANGE(s.live_keys, 0, 16);
    TU_EQ(s.held, 0);
    /* and with 15 held the whole time, the 16th entry cycles */
    shmlease_lease h[15];
    for (int i = 0; i < 15; i++) {
        keyname(key, sizeof key, "held", i);
        TU_RC(tu_acquire(t, key, 60000, 0, &h[i]), 0);
    }
    for (int i = 0; i < 3000; i++) {
        keyname(key, sizeof key, "cycle", i);
        shmlease_lease l;
        int rc = tu_acquire(t, key, 60000, 0, &l);
        if (rc != 0)
            fail_msg("cycling key #%d with 15 of 16 held: %d (%s)", i, rc, shmlease_errname(rc));
        TU_RC(shmlease_release(t, &l), 0);
    }
    for (int i = 0; i < 15; i++) {
        keyname(key, sizeof key, "held", i);
        shmlease_info info;
        TU_RC(shmlease_inspect(t, key, &info), 0);
        TU_EQU(info.fencing_token, h[i].fencing_token);
    }
}

static void test_churn_of_distinct_keys_across_processes(void **state)
{
    (void)state;
    enum { N = 3, PER = 3000 };
    const char *name = tu_name("churnproc");
    shmlease_table *t = tu_open_cap(name, 16);
    pid_t p[N];
    for (int id = 0; id < N; id++) {
        p[id] = tu_fork();
        if (p[id] == 0) {
            shmlease_table *u = NULL;
            TU_CK_RC(shmlease_open(name, NULL, &u), 0);
            char key[48];
            for (int i = 0; i < PER; i++) {
                snprintf(key, sizeof key, "p%d-key-%d", id, i);
                shmlease_lease l;
                TU_CK_RC(tu_acquire(u, key, 60000, 0, &l), 0);
                TU_CK_RC(shmlease_release(u, &l), 0);
            }
            _exit(0);
        }
    }
    for (int id = 0; id < N; id++)
        tu_expect_exit0(p[id]);
    TU_EQ(tu_stats(t).held, 0);
}

static void test_grace_period_keys_count_as_live(void **state)
{
    (void)state;
    const char *name = tu_name("gracelive");
    tu_clock *clk = tu_clock_new(T0);
    shmlease_options o = tu_opts_clock(clk, 4);
    shmlease_table *t = tu_open(name, &o);
    shmlease_lease l[4], x;
    TU_RC(tu_acquire(t, "a", 60000, 0, &l[0]), 0);
    TU_RC(tu_acquire(t, "b", 60000, 0, &l[1]), 0);
    TU_RC(tu_acquire(t, "c", 60000, 0, &l[2]), 0);
    TU_RC(tu_acquire(t, "d", 60000, 0, &l[3]), 0);
    TU_RC(shmlease_release_after(t, &l[2], 1000), 0);
    TU_RC(shmlease_release_after(t, &l[3], 5000), 0);
    TU_RC(tu_acquire(t, "e", 60000, 0, &x), -ENOSPC);
    TU_EQ(tu_stats(t).held, 4);
    tu_clock_advance(clk, 1001); /* c's grace is over */
    TU_RC(tu_acquire(t, "e", 60000, 0, &x), 0);
    TU_RC(tu_acquire(t, "f", 60000, 0, &x), -ENOSPC);
    tu_clock_advance(clk, 4000); /* and d's */
    TU_RC(tu_acquire(t, "f", 60000, 0, &x), 0);
}

static void test_expired_keys_make_room(void **state)
{
    (void)state;
    const char *name = tu_name("expiredroom");
    tu_clock *clk = tu_clock_new(T0);
    shmlease_options o = tu_opts_clock(clk, 4);
    shmlease_table *t = tu_open(name, &o);
    /* a live process holds all four, with short TTLs */
    tu_chan c;
    tu_chan_init(&c);
    pid_t p = tu_fork();
    if (p == 0) {
        tu_chan_child(&c);
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, &o, &u), 0);
        char key[16];
        for (int i = 0; i < 4; i++) {
            snprintf(key, sizeof key, "h%d", i);
            shmlease_lease l;
            TU_CK_RC(tu_acquire(u, key, 100, 0, &l), 0);
        }
        tu_up(&c, 1);
        for (;;)
            pause();
    }
    tu_chan_parent(&c, p);
    TU_EQ(tu_up_recv(&c, 10000), 1);
    shmlease_lease x;
    TU_RC(tu_acquire(t, "new", 60000, 0, &x), -ENOSPC);
    tu_clock_advance(clk, 101);
    char key[16];
    for (int i = 0; i < 4; i++) {
        snprintf(key, sizeof key, "new%d", i);
        TU_RC(tu_acquire(t, key, 60000, 0, &x), 0);
    }
    TU_RC(tu_acquire(t, "new4", 60000, 0, &x), -ENOSPC);
}

static void test_dead_holders_keys_make_room(void **state)
{
    (void)state;
    const char *name = tu_name("deadroom");
    shmlease_table *t = tu_open_cap(name, 4);
    tu_chan c;
    tu_chan_init(&c);
    pid_t p = tu_fork();
    if (p == 0) {
        tu_chan_child(&c);
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, NULL, &u), 0);
        char key[16];
        for (int i = 0; i < 4; i++) {
            snprintf(key, sizeof key, "h%d", i);
            shmlease_lease l;
            TU_CK_RC(tu_acquire(u, key, 60000, 0, &l), 0);
        }
        tu_up(&c, 1);
        for (;;)
            pause();
    }
    tu_chan_parent(&c, p);
    TU_EQ(tu_up_recv(&c, 10000), 1);
    shmlease_lease x;
    TU_RC(tu_acquire(t, "new", 60000, 0, &x), -ENOSPC);
    tu_kill(p);
    char key[16];
    for (int i = 0; i < 4; i++) {
        snprintf(key, sizeof key, "new%d", i);
        TU_RC(tu_acquire(t, key, 60000, 0, &x), 0);
    }
    TU_RC(tu_acquire(t, "new4", 60000, 0, &x), -ENOSPC);
}

static void test_capacity_is_fixed_by_the_creator(void **state)
{
    (void)state;
    const char *name = tu_name("fixed");
    shmlease_table *a = tu_open_cap(name, 8);
    shmlease_table *b = tu_open_cap(name, 100);
    TU_EQ(tu_stats(b).capacity, 8);
    TU_EQ(tu_stats(a).capacity, 8);
    const char *def = tu_name("default");
    shmlease_table *d = tu_open(def, NULL);
    TU_EQ(tu_stats(d).capacity, SHMLEASE_DEFAULT_CAPACITY);
    /* the default holds its 4096 */
    char key[32];
    for (int i = 0; i < (int)SHMLEASE_DEFAULT_CAPACITY; i++) {
        snprintf(key, sizeof key, "k%d", i);
        shmlease_lease l;
        int rc = tu_acquire(d, key, 60000, 0, &l);
        if (rc != 0)
            fail_msg("key %d of the default 4096: %d (%s)", i, rc, shmlease_errname(rc));
    }
    shmlease_lease l;
    TU_RC(tu_acquire(d, "k4096", 60000, 0, &l), -ENOSPC);
    TU_EQ(tu_stats(d).held, SHMLEASE_DEFAULT_CAPACITY);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(test_capacity_full_table_is_enospc_and_release_makes_room),
        TU_TEST(test_capacity_one_table_works),
        TU_TEST(test_retired_keys_are_reused_through_a_small_table),
        TU_TEST(test_churn_of_distinct_keys_across_processes),
        TU_TEST(test_grace_period_keys_count_as_live),
        TU_TEST(test_expired_keys_make_room),
        TU_TEST(test_dead_holders_keys_make_room),
        TU_TEST(test_capacity_is_fixed_by_the_creator),
    };
    return TU_RUN(tests);
}
