/*
 * PID namespaces and PID reuse (docs/failure-modes.md F6, F7, F8).
 *
 * 1. A holder in another PID namespace (PID 1 there) is never treated as dead
 *    while alive (try-acquire -EBUSY, a timed wait -ETIMEDOUT, inspect alive=1
 *    and holder_other_pidns=1), and is reclaimed at once when it dies.
 * 2. PID reuse, forced inside a fresh PID namespace through
 *    /proc/sys/kernel/ns_last_pid: the holder (PID 2 there) is killed, the
 *    next process gets PID 2 again. It must not inherit the lease: inspect
 *    says the holder is dead (although kill(2, 0) succeeds: it is itself),
 *    release/renew/check of a copy of the dead holder's lease value are
 *    -ESTALE, and it can acquire the key at once as a new owner.
 *
 * Needs CLONE_NEWPID (root, or a container that allows it): skips otherwise.
 */
#include "internal.h"
#include "testutil.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>

static void t_holder_in_other_pidns(void **s)
{
    (void)s;
    const char *name = tu_name("pidns");
    shmlease_table *t = tu_open_cap(name, 16);
    tu_chan cp, cg;                       /* from P (outer child), from G (PID 1 inside) */
    tu_chan_init(&cp);
    tu_chan_init(&cg);
    pid_t p = tu_fork_alarm(60);
    if (p == 0) {
        tu_chan_child(&cp);
        if (unshare(CLONE_NEWPID) != 0) {
            tu_up(&cp, -errno);
            _exit(0);
        }
        pid_t g = fork();
        if (g == 0) {
            tu_chan_child(&cg);
            shmlease_options o = {.flags = SHMLEASE_OPEN_NOCREATE};
            shmlease_table *gt;
            TU_CK_RC(shmlease_open(name, &o, &gt), 0);
            shmlease_lease l;
            TU_CK_RC(tu_acquire(gt, "ns-key", 600000, 0, &l), 0);
            tu_up(&cg, getpid());
            tu_up(&cg, (int64_t)l.fencing_token);
            for (;;)
                pause();
        }
        tu_up(&cp, g);                    /* G's PID here = in the parent's namespace */
        int st;
        while (waitpid(g, &st, 0) < 0 && errno == EINTR) {
        }
        tu_up(&cp, st);
        _exit(0);
    }
    tu_chan_parent(&cp, p);
    tu_chan_parent(&cg, 0);   /* written by a grandchild */
    int64_t gpid = 0, inner_pid = 0, token = 0, st = 0;
    TU_TRUE(tu_up_try(&cp, &gpid, 10000) == 0, "outer child silent");
    if (gpid < 0) {
        tu_expect_exit0_within(p, 10000);
        TU_SKIP("unshare(CLONE_NEWPID) failed: %s", strerror((int)-gpid));
    }
    TU_TRUE(tu_up_try(&cg, &inner_pid, 10000) == 0 && tu_up_try(&cg, &token, 10000) == 0,
             "holder in the new PID namespace did not acquire");
    TU_TRUE(inner_pid == 1, "holder's PID in its namespace is %lld, expected 1", (long long)inner_pid);

    shmlease_lease l;
    TU_RC(tu_acquire(t, "ns-key", 1000, 0, &l), -EBUSY);
    uint64_t t0 = tu_mono_ms();
    TU_RC(tu_acquire(t, "ns-key", 1000, 300, &l), -ETIMEDOUT);
    TU_TRUE(tu_mono_ms() - t0 >= 290, "timed wait ended early");
    shmlease_info info;
    TU_RC(shmlease_inspect(t, "ns-key", &info), 0);
    TU_TRUE(info.holder_alive == 1 && info.holder_other_pidns == 1 && info.holder_pid == 1,
             "inspect: pid %d alive %d other_pidns %d", info.holder_pid, info.holder_alive,
             info.holder_other_pidns);
    TU_TRUE(info.fencing_token == (uint64_t)token, "token shown %llu, holder has %lld",
             (unsigned long long)info.fencing_token, (long long)token);

    /* A waiter from outside sleeps on it, then the holder dies. */
    uint64_t k0 = tu_mono_ns();
    kill((pid_t)gpid, SIGKILL);
    TU_RC(tu_acquire(t, "ns-key", 1000, 5000, &l), 0);
    uint64_t lat = tu_mono_ns() - k0;
    TU_TRUE(lat < 1000000000ull, "reclaim after the holder's death took %.1f ms", lat / 1e6);
    TU_TRUE(l.fencing_token > (uint64_t)token, "token order");
    TU_TRUE(tu_up_try(&cp, &st, 10000) == 0 && WIFSIGNALED(st), "holder did not die of SIGKILL");
    tu_expect_exit0_within(p, 10000);
    TU_RC(shmlease_release(t, &l), 0);
    tu_note("pidns: holder = PID 1 of a new PID namespace: try -EBUSY, 300 ms wait -ETIMEDOUT, inspect alive=1 "
             "other_pidns=1; after SIGKILL a waiter outside got the key %.2f ms after the kill",
             lat / 1e6);
    tu_chan_close(&cp);
    tu_chan_close(&cg);
}

struct reuse {
    shmlease_lease lease;          /* H1's lease value */
    int32_t h1_pid, h2_pid;        /* in the namespace */
    int32_t skip_errno;            /* ns_last_pid not writable */
    int32_t inspect_rc, alive, shown_pid, kill0;
    int32_t release_rc, renew_rc, check_rc, acquire_rc;
    uint64_t h1_token, h2_token;
    uint32_t h1_slot, h2_slot;
};

static void t_pid_reuse(void **s)
{
    (void)s;
    const char *name = tu_name("reuse");
    tu_open_cap(name, 16);
    struct reuse *r = tu_shared(sizeof *r);
    tu_chan cp;
    tu_chan_init(&cp);
    pid_t p = tu_fork_alarm(60);
    if (p == 0) {
        tu_chan_child(&cp);
        if (unshare(CLONE_NEWPID) != 0) {
            tu_up(&cp, -errno);
            _exit(0);
        }
        pid_t g = fork();
        if (g == 0) {                                    /* PID 1: the namespace's init */
            int ready[2];
            TU_CK(pipe(ready) == 0);
            pid_t h1 = fork();
            if (h1 == 0) {
                shmlease_options o = {.flags = SHMLEASE_OPEN_NOCREATE};
                shmlease_table *ht;
                TU_CK_RC(shmlease_open(name, &o, &ht), 0);
                TU_CK_RC(tu_acquire(ht, "reuse-key", 600000, 0, &r->lease), 0);
                r->h1_pid = getpid();
                r->h1_token = r->lease.fencing_token;
                r->h1_slot = handle_slot(ht);
                char c = 1;
                TU_CK(write(ready[1], &c, 1) == 1);
                for (;;)
                    pause();
            }
            char c;
            TU_CK(read(ready[0], &c, 1) == 1);
            kill(h1, SIGKILL);
            TU_CK(waitpid(h1, NULL, 0) == h1);
            /* Force the next PID to be h1's. */
            int fd = open("/proc/sys/kernel/ns_last_pid", O_WRONLY | O_CLOEXEC);
            char buf[16];
            int n = snprintf(buf, sizeof buf, "%d", (int)h1 - 1);
            if (fd < 0 || write(fd, buf, (size_t)n) != n) {
                r->skip_errno = errno ? errno : EIO;
                _exit(0);
            }
            close(fd);
            pid_t h2 = fork();
            if (h2 == 0) {
                r->h2_pid = getpid();
                if (r->h2_pid != r->h1_pid)
                    _exit(0);
                shmlease_options o = {.flags = SHMLEASE_OPEN_NOCREATE};
                shmlease_table *ht;
                TU_CK_RC(shmlease_open(name, &o, &ht), 0);
                r->h2_slot = handle_slot(ht);
                shmlease_info info;
                r->inspect_rc = shmlease_inspect(ht, "reuse-key", &info);
                r->alive = info.holder_alive;
                r->shown_pid = info.holder_pid;
                r->kill0 = kill(r->h1_pid, 0);          /* a PID check would say "alive" */
                shmlease_lease copy = r->lease;
                r->check_rc = shmlease_check(ht, &copy);
                r->renew_rc = shmlease_renew(ht, &copy, 600000);
                r->release_rc = shmlease_release(ht, &copy);
                shmlease_lease mine;
                r->acquire_rc = tu_acquire(ht, "reuse-key", 600000, 0, &mine);
                r->h2_token = mine.fencing_token;
                shmlease_close(ht);
                _exit(0);
            }
            TU_CK(waitpid(h2, NULL, 0) == h2);
            _exit(0);
        }
        tu_up(&cp, g);
        TU_CK(waitpid(g, NULL, 0) == g);
        _exit(0);
    }
    tu_chan_parent(&cp, p);
    int64_t g;
    TU_TRUE(tu_up_try(&cp, &g, 10000) == 0, "outer child silent");
    tu_expect_exit0_within(p, 30000);
    if (g < 0)
        TU_SKIP("unshare(CLONE_NEWPID) failed: %s", strerror((int)-g));
    if (r->skip_errno)
        TU_SKIP("cannot write /proc/sys/kernel/ns_last_pid in the new namespace: %s", strerror(r->skip_errno));
    TU_TRUE(r->h1_pid > 1, "holder never ran");
    TU_TRUE(r->h2_pid == r->h1_pid, "PID not reused (%d then %d)", r->h1_pid, r->h2_pid);
    TU_RC(r->inspect_rc, 0);
    TU_TRUE(r->shown_pid == r->h1_pid && r->alive == 0 && r->kill0 == 0,
             "inspect by the process with the reused PID: shown pid %d alive %d (kill(pid,0) = %d)",
             r->shown_pid, r->alive, r->kill0);
    TU_RC(r->check_rc, -ESTALE);
    TU_RC(r->renew_rc, -ESTALE);
    TU_RC(r->release_rc, -ESTALE);
    TU_RC(r->acquire_rc, 0);
    TU_TRUE(r->h2_token > r->h1_token, "token order");
    tu_note("pidns reuse: PID %d reused inside a new PID namespace (ns_last_pid): the new process saw the old "
             "lease as dead (kill(pid,0) said alive), its check/renew/release of the copied lease were -ESTALE, "
             "it acquired the key as a new owner (registry slot %u, the dead holder's was %u)",
             r->h1_pid, r->h2_slot, r->h1_slot);
    tu_chan_close(&cp);
}

/* Not a PID namespace, but the same family: a TIME namespace shifts
 * CLOCK_MONOTONIC for its processes, and the table's clock is the monotonic
 * clock of each process. A holder whose clock ran 1 s behind would write
 * deadlines that the others read as already passed (two owners), so the
 * table records its creator's time namespace and refuses a read-write
 * attach from another one with -EXDEV; inspection (read-only) still works. */
static void t_time_namespace_offset(void **s)
{
    (void)s;
    const char *name = tu_name("timens");
    shmlease_table *t = tu_open_cap(name, 16);
    tu_sleep_ms(1200);                          /* older than the offset */
    tu_chan cp, cg;
    tu_chan_init(&cp);
    tu_chan_init(&cg);
    pid_t p = tu_fork_alarm(30);
    if (p == 0) {
        tu_chan_child(&cp);
        if (unshare(0x00000080 /* CLONE_NEWTIME */) != 0) {
            tu_up(&cp, -errno);
            _exit(0);
        }
        int fd = open("/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC);
        const char *off = "monotonic -1 0";
        if (fd < 0 || write(fd, off, strlen(off)) != (ssize_t)strlen(off)) {
            tu_up(&cp, -(errno ? errno : EIO));
            _exit(0);
        }
        close(fd);
        tu_up(&cp, 0);
        pid_t g = fork();
        if (g == 0) {
            tu_chan_child(&cg);
            shmlease_options o = {.flags = SHMLEASE_OPEN_NOCREATE};
            shmlease_table *gt = NULL;
            int orc = shmlease_open(name, &o, &gt);
            if (orc == 0) {
                shmlease_lease l;
                orc = 1000 + tu_acquire(gt, "clock-key", 800, 0, &l);   /* would be two owners */
            }
            shmlease_options ro = {.flags = SHMLEASE_OPEN_READONLY};
            shmlease_table *rt = NULL;
            TU_CK_RC(shmlease_open(name, &ro, &rt), 0);
            shmlease_info info;
            TU_CK_RC(shmlease_inspect(rt, "clock-key", &info), -ENOENT);
            tu_up(&cg, orc);
            tu_down_recv(&cg);
            _exit(0);
        }
        TU_CK(waitpid(g, NULL, 0) == g);
        _exit(0);
    }
    tu_chan_parent(&cp, p);
    tu_chan_parent(&cg, 0);   /* written by a grandchild */
    int64_t r, grc;
    TU_TRUE(tu_up_try(&cp, &r, 10000) == 0, "child silent");
    if (r < 0) {
        tu_expect_exit0_within(p, 10000);
        TU_SKIP("time namespace with a monotonic offset not available: %s", strerror((int)-r));
    }
    TU_TRUE(tu_up_try(&cg, &grc, 10000) == 0, "process in the time namespace silent");
    TU_RC(grc, -EXDEV);
    shmlease_lease l;
    int rc = tu_acquire(t, "clock-key", 800, 0, &l);
    TU_RC(rc, 0);
    tu_down(&cg, 1);
    tu_expect_exit0_within(p, 10000);
    tu_note("timens: a process whose CLOCK_MONOTONIC runs 1 s behind (time namespace) was refused a read-write "
             "attach (%s) and could still inspect read-only; the table's own users were unaffected",
             shmlease_errname((int)grc));
    tu_chan_close(&cp);
    tu_chan_close(&cg);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        TU_SLOW_TEST(t_holder_in_other_pidns),
        TU_SLOW_TEST(t_pid_reuse),
        TU_SLOW_TEST(t_time_namespace_offset),
    };
    return TU_RUN(tests);
}
