/*
 * PID namespaces and PID reuse (issue 5, item 5; PITFALLS 6, 7, 8).
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
#include "rel.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>

static void t_holder_in_other_pidns(void **s)
{
    (void)s;
    const char *name = rel_name("pidns");
    shmlease_table *t = rel_open(name, 16);
    rel_chan cp, cg;                       /* from P (outer child), from G (PID 1 inside) */
    rel_chan_init(&cp);
    rel_chan_init(&cg);
    pid_t p = rel_fork(60);
    if (p == 0) {
        rel_chan_child(&cp);
        if (unshare(CLONE_NEWPID) != 0) {
            rel_up(&cp, -errno);
            _exit(0);
        }
        pid_t g = fork();
        if (g == 0) {
            rel_chan_child(&cg);
            shmlease_options o = {.flags = SHMLEASE_OPEN_NOCREATE};
            shmlease_table *gt;
            CK_RC(shmlease_open(name, &o, &gt), 0);
            shmlease_lease l;
            CK_RC(rel_acq(gt, "ns-key", 600000, 0, &l), 0);
            rel_up(&cg, getpid());
            rel_up(&cg, (int64_t)l.fencing_token);
            for (;;)
                pause();
        }
        rel_up(&cp, g);                    /* G's PID here = in the parent's namespace */
        int st;
        while (waitpid(g, &st, 0) < 0 && errno == EINTR) {
        }
        rel_up(&cp, st);
        _exit(0);
    }
    rel_chan_parent(&cp);
    rel_chan_parent(&cg);
    int64_t gpid = 0, inner_pid = 0, token = 0, st = 0;
    REL_TRUE(rel_recv(&cp, &gpid, 10000) == 0, "outer child silent");
    if (gpid < 0) {
        rel_expect_exit0(p, 10000);
        REL_SKIP("unshare(CLONE_NEWPID) failed: %s", strerror((int)-gpid));
    }
    REL_TRUE(rel_recv(&cg, &inner_pid, 10000) == 0 && rel_recv(&cg, &token, 10000) == 0,
             "holder in the new PID namespace did not acquire");
    REL_TRUE(inner_pid == 1, "holder's PID in its namespace is %lld, expected 1", (long long)inner_pid);

    shmlease_lease l;
    REL_RC(rel_acq(t, "ns-key", 1000, 0, &l), -EBUSY);
    uint64_t t0 = rel_ms();
    REL_RC(rel_acq(t, "ns-key", 1000, 300, &l), -ETIMEDOUT);
    REL_TRUE(rel_ms() - t0 >= 290, "timed wait ended early");
    shmlease_info info;
    REL_RC(shmlease_inspect(t, "ns-key", &info), 0);
    REL_TRUE(info.holder_alive == 1 && info.holder_other_pidns == 1 && info.holder_pid == 1,
             "inspect: pid %d alive %d other_pidns %d", info.holder_pid, info.holder_alive,
             info.holder_other_pidns);
    REL_TRUE(info.fencing_token == (uint64_t)token, "token shown %llu, holder has %lld",
             (unsigned long long)info.fencing_token, (long long)token);

    /* A waiter from outside sleeps on it, then the holder dies. */
    uint64_t k0 = rel_ns();
    kill((pid_t)gpid, SIGKILL);
    REL_RC(rel_acq(t, "ns-key", 1000, 5000, &l), 0);
    uint64_t lat = rel_ns() - k0;
    REL_TRUE(lat < 1000000000ull, "reclaim after the holder's death took %.1f ms", lat / 1e6);
    REL_TRUE(l.fencing_token > (uint64_t)token, "token order");
    REL_TRUE(rel_recv(&cp, &st, 10000) == 0 && WIFSIGNALED(st), "holder did not die of SIGKILL");
    rel_expect_exit0(p, 10000);
    REL_RC(shmlease_release(t, &l), 0);
    rel_note("pidns: holder = PID 1 of a new PID namespace: try -EBUSY, 300 ms wait -ETIMEDOUT, inspect alive=1 "
             "other_pidns=1; after SIGKILL a waiter outside got the key %.2f ms after the kill",
             lat / 1e6);
    rel_chan_close(&cp);
    rel_chan_close(&cg);
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
    const char *name = rel_name("reuse");
    rel_open(name, 16);
    struct reuse *r = rel_shared(sizeof *r);
    rel_chan cp;
    rel_chan_init(&cp);
    pid_t p = rel_fork(60);
    if (p == 0) {
        rel_chan_child(&cp);
        if (unshare(CLONE_NEWPID) != 0) {
            rel_up(&cp, -errno);
            _exit(0);
        }
        pid_t g = fork();
        if (g == 0) {                                    /* PID 1: the namespace's init */
            int ready[2];
            CK(pipe(ready) == 0);
            pid_t h1 = fork();
            if (h1 == 0) {
                shmlease_options o = {.flags = SHMLEASE_OPEN_NOCREATE};
                shmlease_table *ht;
                CK_RC(shmlease_open(name, &o, &ht), 0);
                CK_RC(rel_acq(ht, "reuse-key", 600000, 0, &r->lease), 0);
                r->h1_pid = getpid();
                r->h1_token = r->lease.fencing_token;
                r->h1_slot = handle_slot(ht);
                char c = 1;
                CK(write(ready[1], &c, 1) == 1);
                for (;;)
                    pause();
            }
            char c;
            CK(read(ready[0], &c, 1) == 1);
            kill(h1, SIGKILL);
            CK(waitpid(h1, NULL, 0) == h1);
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
                CK_RC(shmlease_open(name, &o, &ht), 0);
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
                r->acquire_rc = rel_acq(ht, "reuse-key", 600000, 0, &mine);
                r->h2_token = mine.fencing_token;
                shmlease_close(ht);
                _exit(0);
            }
            CK(waitpid(h2, NULL, 0) == h2);
            _exit(0);
        }
        rel_up(&cp, g);
        CK(waitpid(g, NULL, 0) == g);
        _exit(0);
    }
    rel_chan_parent(&cp);
    int64_t g;
    REL_TRUE(rel_recv(&cp, &g, 10000) == 0, "outer child silent");
    rel_expect_exit0(p, 30000);
    if (g < 0)
        REL_SKIP("unshare(CLONE_NEWPID) failed: %s", strerror((int)-g));
    if (r->skip_errno)
        REL_SKIP("cannot write /proc/sys/kernel/ns_last_pid in the new namespace: %s", strerror(r->skip_errno));
    REL_TRUE(r->h1_pid > 1, "holder never ran");
    REL_TRUE(r->h2_pid == r->h1_pid, "PID not reused (%d then %d)", r->h1_pid, r->h2_pid);
    REL_RC(r->inspect_rc, 0);
    REL_TRUE(r->shown_pid == r->h1_pid && r->alive == 0 && r->kill0 == 0,
             "inspect by the process with the reused PID: shown pid %d alive %d (kill(pid,0) = %d)",
             r->shown_pid, r->alive, r->kill0);
    REL_RC(r->check_rc, -ESTALE);
    REL_RC(r->renew_rc, -ESTALE);
    REL_RC(r->release_rc, -ESTALE);
    REL_RC(r->acquire_rc, 0);
    REL_TRUE(r->h2_token > r->h1_token, "token order");
    rel_note("pidns reuse: PID %d reused inside a new PID namespace (ns_last_pid): the new process saw the old "
             "lease as dead (kill(pid,0) said alive), its check/renew/release of the copied lease were -ESTALE, "
             "it acquired the key as a new owner (registry slot %u, the dead holder's was %u)",
             r->h1_pid, r->h2_slot, r->h1_slot);
    rel_chan_close(&cp);
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
    const char *name = rel_name("timens");
    shmlease_table *t = rel_open(name, 16);
    rel_sleep_ms(1200);                          /* older than the offset */
    rel_chan cp, cg;
    rel_chan_init(&cp);
    rel_chan_init(&cg);
    pid_t p = rel_fork(30);
    if (p == 0) {
        rel_chan_child(&cp);
        if (unshare(0x00000080 /* CLONE_NEWTIME */) != 0) {
            rel_up(&cp, -errno);
            _exit(0);
        }
        int fd = open("/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC);
        const char *off = "monotonic -1 0";
        if (fd < 0 || write(fd, off, strlen(off)) != (ssize_t)strlen(off)) {
            rel_up(&cp, -(errno ? errno : EIO));
            _exit(0);
        }
        close(fd);
        rel_up(&cp, 0);
        pid_t g = fork();
        if (g == 0) {
            rel_chan_child(&cg);
            shmlease_options o = {.flags = SHMLEASE_OPEN_NOCREATE};
            shmlease_table *gt = NULL;
            int orc = shmlease_open(name, &o, &gt);
            if (orc == 0) {
                shmlease_lease l;
                orc = 1000 + rel_acq(gt, "clock-key", 800, 0, &l);   /* would be two owners */
            }
            shmlease_options ro = {.flags = SHMLEASE_OPEN_READONLY};
            shmlease_table *rt = NULL;
            CK_RC(shmlease_open(name, &ro, &rt), 0);
            shmlease_info info;
            CK_RC(shmlease_inspect(rt, "clock-key", &info), -ENOENT);
            rel_up(&cg, orc);
            rel_down(&cg);
            _exit(0);
        }
        CK(waitpid(g, NULL, 0) == g);
        _exit(0);
    }
    rel_chan_parent(&cp);
    rel_chan_parent(&cg);
    int64_t r, grc;
    REL_TRUE(rel_recv(&cp, &r, 10000) == 0, "child silent");
    if (r < 0) {
        rel_expect_exit0(p, 10000);
        REL_SKIP("time namespace with a monotonic offset not available: %s", strerror((int)-r));
    }
    REL_TRUE(rel_recv(&cg, &grc, 10000) == 0, "process in the time namespace silent");
    REL_RC(grc, -EXDEV);
    shmlease_lease l;
    int rc = rel_acq(t, "clock-key", 800, 0, &l);
    REL_RC(rc, 0);
    rel_send(&cg, 1);
    rel_expect_exit0(p, 10000);
    rel_note("timens: a process whose CLOCK_MONOTONIC runs 1 s behind (time namespace) was refused a read-write "
             "attach (%s) and could still inspect read-only; the table's own users were unaffected",
             shmlease_errname((int)grc));
    rel_chan_close(&cp);
    rel_chan_close(&cg);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        REL_TEST(t_holder_in_other_pidns),
        REL_TEST(t_pid_reuse),
        REL_TEST(t_time_namespace_offset),
    };
    return REL_RUN(tests);
}
