/* fork(): a child holds none of its parent's leases and may use the inherited
 * handle; it cannot release or renew the parent's leases, and it does not keep
 * a dead parent looking alive. */
#include "testutil.h"

#include <pthread.h>

static void test_fork_child_holds_none_of_its_parents_leases(void **state)
{
    (void)state;
    const char *name = tu_name("forknone");
    shmlease_table *t = tu_open(name, NULL);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "p", 60000, 0, &l), 0);
    pid_t parent = getpid();
    pid_t c = tu_fork();
    if (c == 0) {
        shmlease_lease x;
        TU_CK_RC(tu_acquire(t, "p", 60000, 0, &x), -EBUSY);
        shmlease_lease copy = l;
        TU_CK_RC(shmlease_check(t, &copy), -ESTALE);
        TU_CK_RC(shmlease_renew(t, &copy, 60000), -ESTALE);
        copy = l;
        TU_CK_RC(shmlease_release(t, &copy), -ESTALE);
        copy = l;
        TU_CK_RC(shmlease_release_after(t, &copy, 60000), -ESTALE);
        shmlease_info i;
        TU_CK_RC(shmlease_inspect(t, "p", &i), 0);
        TU_CK(i.holder_pid == parent);
        TU_CK(i.fencing_token == l.fencing_token);
        _exit(0);
    }
    tu_expect_exit0(c);
    TU_RC(shmlease_check(t, &l), 0);
    shmlease_info i = tu_inspect_ok(t, "p");
    TU_EQ(i.holder_pid, getpid());
    TU_EQU(i.fencing_token, l.fencing_token);
    TU_EQU(i.expires_at_ms, l.expires_at_ms);
    TU_EQ(i.holder_alive, 1);
    TU_RC(shmlease_renew(t, &l, 60000), 0);
    TU_RC(shmlease_release(t, &l), 0);
}

static void test_fork_child_can_use_the_inherited_handle(void **state)
{
    (void)state;
    const char *name = tu_name("forkuse");
    shmlease_table *t = tu_open(name, NULL);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "p", 60000, 0, &l), 0);
    tu_chan ch;
    tu_chan_init(&ch);
    pid_t c = tu_fork();
    if (c == 0) {
        tu_chan_child(&ch);
        shmlease_lease x;
        TU_CK_RC(tu_acquire(t, "c", 60000, 0, &x), 0);
        TU_CK(x.fencing_token > l.fencing_token);
        shmlease_info i;
        TU_CK_RC(shmlease_inspect(t, "c", &i), 0);
        TU_CK(i.holder_pid == getpid());
        TU_CK(i.holder_alive == 1);
        TU_CK_RC(shmlease_renew(t, &x, 60000), 0);
        tu_up(&ch, (int64_t)x.fencing_token);
        tu_down_recv(&ch);
        TU_CK_RC(shmlease_release(t, &x), 0);
        /* and waits like anyone else on the parent's key */
        TU_CK_RC(tu_acquire(t, "p", 60000, 100, &x), -ETIMEDOUT);
        tu_up(&ch, 2);
        _exit(0);
    }
    tu_chan_parent(&ch, c);
    uint64_t ctok = (uint64_t)tu_up_recv(&ch, 10000);
    /* the child's lease is the child's: the parent is another owner */
    shmlease_lease x;
    TU_RC(tu_acquire(t, "c", 60000, 0, &x), -EBUSY);
    shmlease_info i = tu_inspect_ok(t, "c");
    TU_EQ(i.holder_pid, c);
    TU_EQU(i.fencing_token, ctok);
    tu_down(&ch, 0);
    TU_EQ(tu_up_recv(&ch, 10000), 2);
    tu_expect_exit0(c);
    TU_RC(tu_acquire(t, "c", 60000, 0, &x), 0);
    TU_RC(shmlease_check(t, &l), 0);
}

static void test_fork_child_close_of_inherited_handle_keeps_parents_leases(void **state)
{
    (void)state;
    const char *name = tu_name("forkclose");
    shmlease_table *t = tu_open(name, NULL);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "p", 60000, 0, &l), 0);
    pid_t c = tu_fork();
    if (c == 0) {
        shmlease_close(t); /* releases the leases held through t ... by this process: none */
        exit(0);           /* atexit handlers too */
    }
    tu_expect_exit0(c);
    TU_RC(shmlease_check(t, &l), 0);
    TU_EQ(tu_inspect_ok(t, "p").holder_pid, getpid());
    shmlease_table *other = tu_open(name, NULL);
    shmlease_lease x;
    TU_RC(tu_acquire(other, "p", 60000, 0, &x), -EBUSY);
    TU_RC(shmlease_renew(t, &l, 60000), 0);
    TU_RC(shmlease_release(t, &l), 0);
}

static void test_fork_child_killed_leaves_parents_leases_alone(void **state)
{
    (void)state;
    const char *name = tu_name("forkkill");
    shmlease_table *t = tu_open(name, NULL);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "p", 60000, 0, &l), 0);
    tu_chan ch;
    tu_chan_init(&ch);
    pid_t c = tu_fork();
    if (c == 0) {
        tu_chan_child(&ch);
        shmlease_lease x;
        TU_CK_RC(tu_acquire(t, "c", 60000, 0, &x), 0);
        tu_up(&ch, 1);
        for (;;)
            pause();
    }
    tu_chan_parent(&ch, c);
    TU_EQ(tu_up_recv(&ch, 10000), 1);
    tu_kill(c);
    /* the child's lease is free at once; the parent's is untouched */
    shmlease_table *other = tu_open(name, NULL);
    shmlease_lease x;
    TU_RC(tu_acquire(other, "c", 60000, 0, &x), 0);
    TU_RC(tu_acquire(other, "p", 60000, 0, &x), -EBUSY);
    shmlease_info i = tu_inspect_ok(t, "p");
    TU_EQ(i.holder_alive, 1);
    TU_RC(shmlease_check(t, &l), 0);
    TU_RC(shmlease_release(t, &l), 0);
}

/* The parent holds a lease and is SIGKILLed while its children live on: one
 * that never touched the handle, one that used it. The parent's lease must be
 * reclaimable at once; the children's inherited descriptors must not keep
 * the dead parent looking alive. */
static void test_fork_parent_killed_while_child_lives_parent_lease_reclaimable(void **state)
{
    (void)state;
    const char *name = tu_name("forkparent");
    shmlease_table *t = tu_open(name, NULL);
    tu_chan ch;
    tu_chan_init(&ch);
    pid_t m = tu_fork();
    if (m == 0) {
        tu_chan_child(&ch);
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, NULL, &u), 0);
        shmlease_lease l;
        TU_CK_RC(tu_acquire(u, "parent-key", 60000, 0, &l), 0);
        /* Until a fork child has run (its fork handler replaces the inherited
         * descriptors), it shares this process's open file descriptions, and
         * with them the registry lock: no library can act in a child that has
         * not run yet. So the idle child says it is running before its pid is
         * passed on, and the test kills this process only after that. */
        int ready[2];
        TU_CK(pipe(ready) == 0);
        pid_t idle = fork();
        if (idle == 0) {
            alarm(60);
            close(ready[0]);
            char one = 1;
            TU_CK(write(ready[1], &one, 1) == 1);
            close(ready[1]);
            for (;;)
                pause(); /* inherits the handle, never uses it */
        }
        close(ready[1]);
        char one;
        TU_CK(read(ready[0], &one, 1) == 1);
        close(ready[0]);
        tu_up(&ch, idle);
        pid_t busy = fork();
        if (busy == 0) {
            alarm(60);
            shmlease_lease x;
            TU_CK_RC(tu_acquire(u, "child-key", 60000, 0, &x), 0);
            tu_up(&ch, -1);
            for (;;)
                pause();
        }
        tu_up(&ch, busy);
        for (;;)
            pause();
    }
    tu_chan_parent(&ch, m);
    pid_t idle = (pid_t)tu_up_recv(&ch, 10000);
    tu_track(idle);
    /* the busy child's pid (from m) and its report (-1) come in either order */
    int64_t a = tu_up_recv(&ch, 10000);
    int64_t b = tu_up_recv(&ch, 10000);
    assert_true(a == -1 || b == -1);
    pid_t busy = (pid_t)(a == -1 ? b : a);
    assert_true(busy > 0);
    tu_track(busy);

    shmlease_lease x;
    TU_RC(tu_acquire(t, "parent-key", 60000, 0, &x), -EBUSY);
    tu_kill(m);
    assert_int_equal(kill(idle, 0), 0); /* the children live on */
    assert_int_equal(kill(busy, 0), 0);
    shmlease_info i = tu_inspect_ok(t, "parent-key");
    TU_EQ(i.holder_pid, m);
    TU_EQ(i.holder_alive, 0);
    uint64_t t0 = tu_mono_ms();
    TU_RC(tu_acquire(t, "parent-key", 60000, 0, &x), 0);
    TU_RANGE(tu_mono_ms() - t0, 0, 1000);
    /* the busy child is alive and keeps its own lease */
    shmlease_lease y;
    TU_RC(tu_acquire(t, "child-key", 60000, 0, &y), -EBUSY);
    i = tu_inspect_ok(t, "child-key");
    TU_EQ(i.holder_pid, busy);
    TU_EQ(i.holder_alive, 1);
}

static void test_fork_grandchild_uses_handle_inherited_twice(void **state)
{
    (void)state;
    const char *name = tu_name("forkfork");
    shmlease_table *t = tu_open(name, NULL);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "p", 60000, 0, &l), 0);
    pid_t c = tu_fork();
    if (c == 0) {
        shmlease_lease x;
        TU_CK_RC(tu_acquire(t, "c", 60000, 0, &x), 0);
        pid_t g = fork();
        if (g == 0) {
            shmlease_lease y;
            TU_CK_RC(tu_acquire(t, "c", 60000, 0, &y), -EBUSY);
            TU_CK_RC(tu_acquire(t, "p", 60000, 0, &y), -EBUSY);
            TU_CK_RC(shmlease_release(t, &x), -ESTALE);
            TU_CK_RC(tu_acquire(t, "g", 60000, 0, &y), 0);
            TU_CK_RC(shmlease_release(t, &y), 0);
            _exit(0);
        }
        int st;
        TU_CK(waitpid(g, &st, 0) == g);
        TU_CK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        TU_CK_RC(shmlease_check(t, &x), 0);
        TU_CK_RC(shmlease_release(t, &x), 0);
        _exit(0);
    }
    tu_expect_exit0(c);
    TU_RC(shmlease_check(t, &l), 0);
}

struct waiter_thread {
    shmlease_table *t;
    int rc;
    uint64_t at_us;
};

static void *wait_for_a(void *p)
{
    struct waiter_thread *w = p;
    shmlease_lease l;
    w->rc = tu_acquire(w->t, "a", 60000, SHMLEASE_WAIT_FOREVER, &l);
    w->at_us = tu_mono_us();
    return NULL;
}

/* fork() while another thread of the parent waits (and watches a holder):
 * the child can wait on the inherited handle too, and both learn of the
 * holder's death promptly. */
static void test_fork_while_another_thread_waits(void **state)
{
    (void)state;
    const char *name = tu_name("forkthread");
    shmlease_table *t = tu_open(name, NULL);
    tu_chan hc;
    tu_chan_init(&hc);
    pid_t h = tu_fork();
    if (h == 0) {
        tu_chan_child(&hc);
        shmlease_table *u = NULL;
        TU_CK_RC(shmlease_open(name, NULL, &u), 0);
        shmlease_lease l;
        TU_CK_RC(tu_acquire(u, "a", 60000, 0, &l), 0);
        TU_CK_RC(tu_acquire(u, "b", 60000, 0, &l), 0);
        tu_up(&hc, 1);
        for (;;)
            pause();
    }
    tu_chan_parent(&hc, h);
    TU_EQ(tu_up_recv(&hc, 10000), 1);

    struct waiter_thread wt = { t, 1, 0 };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, wait_for_a, &wt), 0);
    shmlease_info i;
    assert_true(TU_WAIT_FOR(shmlease_inspect(t, "a", &i) == 0 && i.waiters == 1, 5000));
    tu_sleep_ms(100); /* the thread sleeps, watching the holder */

    tu_chan cc;
    tu_chan_init(&cc);
    pid_t c = tu_fork();
    if (c == 0) {
        tu_chan_child(&cc);
        shmlease_lease l;
        tu_up(&cc, 1);
        TU_CK_RC(tu_acquire(t, "b", 60000, SHMLEASE_WAIT_FOREVER, &l), 0);
        tu_up(&cc, (int64_t)tu_mono_us());
        TU_CK_RC(shmlease_release(t, &l), 0);
        _exit(0);
    }
    tu_chan_parent(&cc, c);
    TU_EQ(tu_up_recv(&cc, 10000), 1);
    assert_true(TU_WAIT_FOR(shmlease_inspect(t, "b", &i) == 0 && i.waiters == 1, 5000));
    tu_sleep_ms(100);
    uint64_t t_kill = tu_mono_us();
    tu_kill(h);
    int64_t c_at = tu_up_recv(&cc, 5000);
    TU_RANGE((c_at - (int64_t)t_kill) / 1000, 0, 1000);
    tu_expect_exit0(c);
    pthread_join(th, NULL);
    TU_RC(wt.rc, 0);
    TU_RANGE(((int64_t)wt.at_us - (int64_t)t_kill) / 1000, 0, 1000);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(test_fork_child_holds_none_of_its_parents_leases),
        TU_TEST(test_fork_child_can_use_the_inherited_handle),
        TU_TEST(test_fork_child_close_of_inherited_handle_keeps_parents_leases),
        TU_TEST(test_fork_child_killed_leaves_parents_leases_alone),
        TU_TEST(test_fork_parent_killed_while_child_lives_parent_lease_reclaimable),
        TU_TEST(test_fork_grandchild_uses_handle_inherited_twice),
        TU_TEST(test_fork_while_another_thread_waits),
    };
    return TU_RUN(tests);
}
