/*
 * A process that can only read a table cannot wedge it.
 *
 * Every file lock of a table lives on its lock file /dev/shm/shmlease-lk.NAME,
 * whose mode gives read and write only to the classes that may write the
 * segment. Here:
 *   - the lock file's mode for table modes 0600 .. 0666, whatever the umask;
 *     shmlease_unlink removes it; a replaced or re-made lock file is -EPROTO
 *     (read-only still attaches); a stale lock file (no segment) is used; a
 *     creator killed holding the init lock before it made the segment leaves
 *     nothing that stops the next opener;
 *   - a reader (uid nobody, table mode 0644) holding F_RDLCK on every byte of
 *     the segment, refused the lock file (EACCES): the owner's opens are
 *     prompt, acquire/renew/release and new keys work, 64 more handles
 *     register (no -EUSERS), and a holder killed meanwhile is reclaimed by
 *     the next try at once;
 *   - that reader can still inspect: a live holder shows alive 1, a dead one
 *     alive 0 (from /proc/locks: it has no descriptor of the lock file).
 * The tests with another user need root (setuid in a child): they skip
 * otherwise.
 */
#include "internal.h"
#include "testutil.h"

#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>

#define NOBODY 65534

static void lk_path(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "/dev/shm/shmlease-lk.%s", name);
}

static int lk_stat(const char *name, struct stat *st)
{
    char p[256];
    lk_path(p, sizeof p, name);
    return lstat(p, st);
}

static void t_lock_file_mode(void **s)
{
    (void)s;
    static const struct { uint32_t mode; mode_t want; } cases[] = {
        {0600, 0600}, {0640, 0600}, {0644, 0600}, {0660, 0660}, {0664, 0660}, {0666, 0666},
    };
    static const mode_t umasks[] = {0, 022, 077};
    char line[256] = "";
    for (size_t u = 0; u < sizeof umasks / sizeof umasks[0]; u++) {
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            const char *name = tu_name("lkmode");
            mode_t old = umask(umasks[u]);
            shmlease_options o = {.mode = cases[i].mode};
            shmlease_table *t;
            int rc = shmlease_open(name, &o, &t);
            umask(old);
            TU_RC(rc, 0);
            shmlease_close(t);
            struct stat st;
            TU_TRUE(lk_stat(name, &st) == 0, "no lock file for mode %03o", cases[i].mode);
            TU_TRUE(S_ISREG(st.st_mode) && (st.st_mode & 07777) == cases[i].want && st.st_uid == geteuid(),
                     "table mode %03o, umask %03o: lock file mode %04o uid %d, expected %04o",
                     cases[i].mode, umasks[u], st.st_mode & 07777, (int)st.st_uid, cases[i].want);
            TU_TRUE(st.st_size == 0, "the lock file has %lld bytes", (long long)st.st_size);
            TU_RC(shmlease_unlink(name), 0);
            TU_TRUE(lk_stat(name, &st) != 0 && errno == ENOENT, "shmlease_unlink left the lock file");
            if (u == 0) {
                size_t n = strlen(line);
                snprintf(line + n, sizeof line - n, "%s%03o->%03o", n ? ", " : "", cases[i].mode, cases[i].want);
            }
        }
    }
    tu_note("readers: lock file mode (table -> lock file) %s under umasks 000/022/077, owner = creator, "
             "0 bytes; shmlease_unlink removes it", line);
}

static int open_rc(const char *name, uint32_t flags)
{
    shmlease_options o = {.flags = flags};
    shmlease_table *t;
    int rc = shmlease_open(name, &o, &t);
    if (rc == 0)
        shmlease_close(t);
    return rc;
}

static void t_replaced_lock_file(void **s)
{
    (void)s;
    char p[256];
    /* Replaced: another file under the lock file's name. */
    const char *name = tu_name("lkrepl");
    shmlease_table *t = tu_open_cap(name, 8);
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k", 600000, 0, &l), 0);
    lk_path(p, sizeof p, name);
    TU_TRUE(unlink(p) == 0, "unlink lock file: %s", strerror(errno));
    int fd = open(p, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    TU_TRUE(fd >= 0, "create: %s", strerror(errno));
    close(fd);
    int rc_repl = open_rc(name, 0), rc_repl_nc = open_rc(name, SHMLEASE_OPEN_NOCREATE);
    TU_RC(rc_repl, -EPROTO);
    TU_RC(rc_repl_nc, -EPROTO);
    TU_RC(open_rc(name, SHMLEASE_OPEN_READONLY), 0);
    /* The handle attached before keeps working (it holds its descriptor). */
    TU_RC(shmlease_renew(t, &l, 600000), 0);
    TU_RC(shmlease_release(t, &l), 0);

    /* Removed: the next read-write open makes a new one, and refuses. */
    TU_TRUE(unlink(p) == 0, "unlink lock file: %s", strerror(errno));
    int rc_removed = open_rc(name, 0);
    TU_RC(rc_removed, -EPROTO);

    /* Stale: a lock file without a segment is simply used. */
    const char *stale = tu_name("lkstale");
    lk_path(p, sizeof p, stale);
    fd = open(p, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    TU_TRUE(fd >= 0, "create: %s", strerror(errno));
    struct stat st0, st1;
    TU_TRUE(fstat(fd, &st0) == 0, "fstat");
    close(fd);
    TU_RC(open_rc(stale, 0), 0);
    TU_TRUE(lk_stat(stale, &st1) == 0 && st1.st_ino == st0.st_ino, "the stale lock file was not the one used");
    TU_RC(open_rc(stale, SHMLEASE_OPEN_NOCREATE), 0);

    /* A stale lock file and no segment: NOCREATE is -ENOENT; shmlease_unlink
     * removes it (and says -ENOENT for the segment). */
    const char *lone = tu_name("lklone");
    lk_path(p, sizeof p, lone);
    fd = open(p, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    TU_TRUE(fd >= 0, "create: %s", strerror(errno));
    close(fd);
    TU_RC(open_rc(lone, SHMLEASE_OPEN_NOCREATE), -ENOENT);
    TU_RC(open_rc(lone, SHMLEASE_OPEN_READONLY), -ENOENT);
    TU_RC(shmlease_unlink(lone), -ENOENT);
    TU_TRUE(lk_stat(lone, &st1) != 0, "shmlease_unlink left a stale lock file");
    tu_note("readers: lock file replaced -> RW open %s (NOCREATE %s), RO 0, the attached handle renews; "
             "removed -> RW %s; stale lock file without segment is used; lone lock file removed by unlink",
             shmlease_errname(rc_repl), shmlease_errname(rc_repl_nc), shmlease_errname(rc_removed));
}

/* A creator killed while it holds the init lock on a lock file it made, before
 * the segment exists: the next opener makes the table. */
static void t_killed_before_segment(void **s)
{
    (void)s;
    const char *name = tu_name("lkkill");
    pid_t pid = tu_fork_alarm(20);
    if (pid == 0) {
        shmlease__fault_arm("init.lock_file", SHMLEASE_FAULT_KILL, 1);
        shmlease_table *t;
        shmlease_options o = {.mode = 0644};
        shmlease_open(name, &o, &t);
        _exit(3);
    }
    int st = tu_wait(pid, 10000);
    TU_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "creator: %s", tu_status_str(st));
    char p[256];
    tu_shm_path(p, sizeof p, name);
    struct stat sst, lst;
    TU_TRUE(stat(p, &sst) != 0, "the segment exists");
    TU_TRUE(lk_stat(name, &lst) == 0 && (lst.st_mode & 07777) == 0600, "lock file left: mode %04o",
             lst.st_mode & 07777);
    uint64_t t0 = tu_mono_ns();
    shmlease_table *t = tu_open_cap(name, 8);
    uint64_t us = (tu_mono_ns() - t0) / 1000;
    shmlease_lease l;
    TU_RC(tu_acquire(t, "k", 1000, 0, &l), 0);
    tu_note("readers: creator killed holding the init lock before making the segment (lock file left): "
             "next open made the table in %llu us", (unsigned long long)us);
}

/* ---- another user ------------------------------------------------------------ */

struct reader_out {
    int32_t dropped;
    int32_t ready;
    int32_t lk_ro, lk_rw;            /* open(2) of the lock file: -errno or 0 */
    int32_t seg_lock;                /* F_OFD_SETLK F_RDLCK whole segment: -errno or 0 */
    int32_t ro_open, ro_fd;          /* shmlease_open READONLY; its handle's lock-file fd */
    int32_t alive_live, alive_dead;  /* holder_alive seen by the reader */
    int32_t insp_live, insp_dead;
};

/* Becomes nobody; opens the segment of NAME read-only and read-locks every
 * byte of it; tries the lock file; then (INSPECT) inspects LIVE and DEAD keys;
 * then waits for the parent (chan) and exits. */
static pid_t spawn_reader(const char *name, struct reader_out *o, tu_chan *c, int inspect)
{
    tu_chan_init(c);
    pid_t pid = tu_fork_alarm(60);
    if (pid == 0) {
        tu_chan_child(c);
        if (setgroups(0, NULL) != 0 || setgid(NOBODY) != 0 || setuid(NOBODY) != 0) {
            o->dropped = -errno;
            tu_up(c, 0);
            _exit(0);
        }
        o->dropped = 1;
        char p[256];
        tu_shm_path(p, sizeof p, name);
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        TU_CK(fd >= 0);
        struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
        o->seg_lock = fcntl(fd, F_OFD_SETLK, &fl) == 0 ? 0 : -errno;
        lk_path(p, sizeof p, name);
        int l1 = open(p, O_RDONLY | O_CLOEXEC), e1 = errno;
        int l2 = open(p, O_RDWR | O_CLOEXEC), e2 = errno;
        o->lk_ro = l1 >= 0 ? 0 : -e1;
        o->lk_rw = l2 >= 0 ? 0 : -e2;
        if (l1 >= 0) {                       /* should not happen: then lock it too */
            struct flock all = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
            fcntl(l1, F_OFD_SETLK, &all);
        }
        if (inspect) {
            shmlease_options ro = {.flags = SHMLEASE_OPEN_READONLY};
            shmlease_table *t;
            o->ro_open = shmlease_open(name, &ro, &t);
            if (o->ro_open == 0) {
                o->ro_fd = t->fd;
                shmlease_info i;
                o->insp_live = shmlease_inspect(t, "live", &i);
                o->alive_live = o->insp_live == 0 ? i.holder_alive : 9;
                o->insp_dead = shmlease_inspect(t, "dead", &i);
                o->alive_dead = o->insp_dead == 0 ? i.holder_alive : 9;
                shmlease_close(t);
            }
        }
        o->ready = 1;
        tu_up(c, 1);
        tu_down_recv(c);                          /* hold the locks until told */
        _exit(0);
    }
    tu_chan_parent(c, pid);
    tu_track(pid);
    int64_t v;
    TU_TRUE(tu_up_try(c, &v, 20000) == 0, "the reader did not report");
    if (o->dropped != 1) {
        tu_down(c, 0);
        tu_wait(pid, 5000);
        TU_SKIP("cannot become uid %d in a child (%s)", NOBODY, strerror(-o->dropped));
    }
    return pid;
}

/* A child (root, the table's owner) that holds KEY until killed. */
static pid_t spawn_holder(const char *name, const char *key)
{
    tu_chan c;
    tu_chan_init(&c);
    pid_t pid = tu_fork_alarm(60);
    if (pid == 0) {
        tu_chan_child(&c);
        shmlease_options o = {.mode = 0644, .flags = SHMLEASE_OPEN_NOCREATE};
        shmlease_table *t;
        TU_CK_RC(shmlease_open(name, &o, &t), 0);
        shmlease_lease l;
        TU_CK_RC(tu_acquire(t, key, 600000, 0, &l), 0);
        tu_up(&c, 1);
        for (;;)
            pause();
    }
    tu_chan_parent(&c, pid);
    tu_track(pid);
    int64_t v;
    TU_TRUE(tu_up_try(&c, &v, 20000) == 0, "the holder did not report");
    tu_chan_close(&c);
    return pid;
}

static void kill_and_reap(pid_t pid)
{
    kill(pid, SIGKILL);
    tu_wait(pid, 5000);
    tu_untrack(pid);
}

static void t_reader_cannot_wedge(void **s)
{
    (void)s;
    if (geteuid() != 0)
        TU_SKIP("needs root to run a child as another user");
    const char *name = tu_name("wedge");
    shmlease_options mo = {.mode = 0644, .capacity = 64};
    shmlease_table *t;
    TU_RC(shmlease_open(name, &mo, &t), 0);
    pid_t holder = spawn_holder(name, "victim");

    struct reader_out *o = tu_shared(sizeof *o);
    tu_chan c;
    pid_t reader = spawn_reader(name, o, &c, 0);
    TU_RC(o->seg_lock, 0);                  /* it may read-lock the segment ... */
    TU_RC(o->lk_ro, -EACCES);               /* ... but not open the lock file */
    TU_RC(o->lk_rw, -EACCES);

    /* Opens: prompt, none -ETIMEDOUT. */
    uint64_t worst_us = 0;
    for (int i = 0; i < 20; i++) {
        shmlease_options oo = {.mode = 0644, .flags = SHMLEASE_OPEN_NOCREATE, .open_timeout_ms = 5000};
        shmlease_table *h;
        uint64_t t0 = tu_mono_ns();
        int rc = shmlease_open(name, &oo, &h);
        uint64_t us = (tu_mono_ns() - t0) / 1000;
        TU_RC(rc, 0);
        shmlease_close(h);
        if (us > worst_us)
            worst_us = us;
    }
    TU_TRUE(worst_us < 1000000, "an open took %llu us", (unsigned long long)worst_us);

    /* Leases on the handle opened before and a new key. */
    shmlease_lease l;
    TU_RC(tu_acquire(t, "new-key", 60000, 0, &l), 0);
    TU_RC(shmlease_renew(t, &l, 60000), 0);
    TU_RC(shmlease_release(t, &l), 0);
    TU_RC(tu_acquire(t, "victim", 60000, 0, &l), -EBUSY);      /* the live holder keeps it */

    /* Registration: 64 more handles, each in a slot of its own. */
    enum { MORE = 64 };
    shmlease_table *more[MORE];
    int eusers = 0;
    for (int i = 0; i < MORE; i++) {
        shmlease_options oo = {.mode = 0644, .flags = SHMLEASE_OPEN_NOCREATE};
        int rc = shmlease_open(name, &oo, &more[i]);
        eusers += rc == -EUSERS;
        TU_RC(rc, 0);
        TU_RC(tu_acquire(more[i], "k-more", 1000, 0, &l), 0);
        TU_RC(shmlease_release(more[i], &l), 0);
    }
    for (int i = 0; i < MORE; i++)
        shmlease_close(more[i]);

    /* The holder dies while the reader holds its locks: reclaimed at once. */
    kill_and_reap(holder);
    uint64_t t0 = tu_mono_ns();
    int rc = tu_acquire(t, "victim", 60000, 0, &l);
    uint64_t reclaim_us = (tu_mono_ns() - t0) / 1000;
    TU_RC(rc, 0);
    TU_RC(shmlease_release(t, &l), 0);

    tu_down(&c, 0);
    tu_expect_exit0_within(reader, 10000);
    tu_untrack(reader);
    tu_chan_close(&c);
    shmlease_close(t);
    tu_note("readers: uid %d read-locking every byte of a 0644 table (lock file: open RO/RW %s/%s): 20 owner "
             "opens, worst %llu us; acquire/renew/release and a new key ok; %d more handles registered, "
             "%d -EUSERS; holder killed meanwhile reclaimed by a try in %llu us",
             NOBODY, shmlease_errname(o->lk_ro), shmlease_errname(o->lk_rw), (unsigned long long)worst_us,
             MORE, eusers, (unsigned long long)reclaim_us);
}

static void t_reader_sees_liveness(void **s)
{
    (void)s;
    if (geteuid() != 0)
        TU_SKIP("needs root to run a child as another user");
    const char *name = tu_name("rdlive");
    shmlease_options mo = {.mode = 0644, .capacity = 64};
    shmlease_table *t;
    TU_RC(shmlease_open(name, &mo, &t), 0);
    pid_t live = spawn_holder(name, "live");
    pid_t dead = spawn_holder(name, "dead");
    kill_and_reap(dead);

    struct reader_out *o = tu_shared(sizeof *o);
    tu_chan c;
    pid_t reader = spawn_reader(name, o, &c, 1);
    tu_down(&c, 0);
    tu_expect_exit0_within(reader, 10000);
    tu_untrack(reader);
    tu_chan_close(&c);
    TU_RC(o->ro_open, 0);
    TU_TRUE(o->ro_fd == -1, "the reader's handle has a lock-file descriptor (%d)", o->ro_fd);
    TU_RC(o->insp_live, 0);
    TU_RC(o->insp_dead, 0);
    TU_TRUE(o->alive_live == 1 && o->alive_dead == 0, "reader sees live holder alive=%d, dead holder alive=%d",
             o->alive_live, o->alive_dead);
    /* And the owner sees the same. */
    shmlease_info i;
    TU_RC(shmlease_inspect(t, "live", &i), 0);
    TU_TRUE(i.holder_alive == 1, "owner: live alive=%d", i.holder_alive);
    TU_RC(shmlease_inspect(t, "dead", &i), 0);
    TU_TRUE(i.holder_alive == 0, "owner: dead alive=%d", i.holder_alive);
    kill_and_reap(live);
    shmlease_close(t);
    tu_note("readers: uid %d (no access to the lock file) inspecting a 0644 table read-only: live holder "
             "alive=%d, killed holder alive=%d (from /proc/locks)", NOBODY, o->alive_live, o->alive_dead);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        TU_SLOW_TEST(t_lock_file_mode),
        TU_SLOW_TEST(t_replaced_lock_file),
        TU_SLOW_TEST(t_killed_before_segment),
        TU_SLOW_TEST(t_reader_cannot_wedge),
        TU_SLOW_TEST(t_reader_sees_liveness),
    };
    return TU_RUN(tests);
}
