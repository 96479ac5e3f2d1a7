/*
 * Security (docs/failure-modes.md F15). The boundary is the segment
 * file's owner and mode; see THREATS.md for what a writer can do.
 *
 *   - the mode asked for (default 0600) is applied whatever the umask;
 *   - another user (a child that becomes nobody, 65534) cannot attach a 0600
 *     table (-EPERM without SHMLEASE_OPEN_SHARE, -EACCES with it, read-only
 *     too); mode 0666 lets it in read-write with SHARE; mode 0644 lets it
 *     read only;
 *   - a name squatted by another user is refused by a default open (-EPERM)
 *     and accepted when the caller asks to share (SHMLEASE_OPEN_SHARE);
 *   - names cannot leave /dev/shm.
 * The user tests need root (setuid in a child): they skip otherwise.
 */
#include "internal.h"
#include "testutil.h"

#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>

#define NOBODY 65534

static mode_t file_mode(const char *name)
{
    char path[256];
    tu_shm_path(path, sizeof path, name);
    struct stat st;
    if (stat(path, &st) != 0)
        return (mode_t)-1;
    return st.st_mode & 07777;
}

static void t_mode_whatever_umask(void **s)
{
    (void)s;
    static const struct { mode_t umask; uint32_t mode; mode_t want; } cases[] = {
        {0, 0, 0600}, {077, 0, 0600}, {0, 0640, 0640}, {077, 0666, 0666}, {022, 0660, 0660}, {0777, 0644, 0644},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *name = tu_name("mode");
        mode_t old = umask(cases[i].umask);
        shmlease_options o = {.mode = cases[i].mode};
        shmlease_table *t;
        int rc = shmlease_open(name, &o, &t);
        umask(old);
        TU_RC(rc, 0);
        shmlease_close(t);
        mode_t m = file_mode(name);
        TU_TRUE(m == cases[i].want, "umask %03o mode %03o: file mode %04o, expected %04o", cases[i].umask,
                 cases[i].mode, m, cases[i].want);
    }
    tu_note("security: file mode = mode asked (default 0600) under umasks 000/022/077/777");
}

/* Runs FN(arg) in a child that has become nobody; returns FN's result
 * (0..255), or -1 if the child could not drop privileges. */
struct as_nobody_out {
    int32_t dropped;
    int32_t r[8];
};

static pid_t fork_nobody(struct as_nobody_out *out)
{
    pid_t pid = tu_fork_alarm(30);
    if (pid == 0) {
        if (setgroups(0, NULL) != 0 || setgid(NOBODY) != 0 || setuid(NOBODY) != 0) {
            out->dropped = -errno;
            _exit(0);
        }
        out->dropped = 1;
    }
    return pid;
}

static int open_rc(const char *name, uint32_t flags, uint32_t mode)
{
    shmlease_options o = {.flags = flags, .mode = mode};
    shmlease_table *t;
    int rc = shmlease_open(name, &o, &t);
    if (rc == 0)
        shmlease_close(t);
    return rc;
}

static void require_nobody(pid_t pid, struct as_nobody_out *out)
{
    tu_expect_exit0_within(pid, 20000);
    if (out->dropped != 1)
        TU_SKIP("cannot become uid %d in a child (%s): not root?", NOBODY, strerror(-out->dropped));
}

static void t_other_user_0600(void **s)
{
    (void)s;
    if (geteuid() != 0)
        TU_SKIP("needs root to run a child as another user");
    const char *name = tu_name("priv");
    tu_open_cap(name, 8);                                 /* default mode 0600 */
    struct as_nobody_out *o = tu_shared(sizeof *o);
    pid_t pid = fork_nobody(o);
    if (pid == 0) {
        o->r[0] = open_rc(name, SHMLEASE_OPEN_NOCREATE | SHMLEASE_OPEN_SHARE, 0);
        o->r[1] = open_rc(name, SHMLEASE_OPEN_READONLY, 0);
        o->r[2] = open_rc(name, SHMLEASE_OPEN_SHARE, 0);
        o->r[3] = open_rc(name, 0, 0666);
        o->r[4] = shmlease_unlink(name);
        _exit(0);
    }
    require_nobody(pid, o);
    TU_RC(o->r[0], -EACCES);
    TU_RC(o->r[1], -EACCES);
    TU_RC(o->r[2], -EACCES);
    TU_RC(o->r[3], -EPERM);
    TU_RC(o->r[4], -EACCES);
    TU_TRUE(file_mode(name) == 0600, "the table is gone or changed");
    tu_note("security: uid %d vs a 0600 table: open RW/RO/create with SHARE -EACCES, without -EPERM, unlink %s",
             NOBODY, shmlease_errname(o->r[4]));
}

static void t_other_user_0666_and_0644(void **s)
{
    (void)s;
    if (geteuid() != 0)
        TU_SKIP("needs root to run a child as another user");
    const char *shared = tu_name("shared");
    shmlease_options so = {.mode = 0666};
    shmlease_table *t;
    TU_RC(shmlease_open(shared, &so, &t), 0);
    shmlease_lease root_lease;
    TU_RC(tu_acquire(t, "root-key", 600000, 0, &root_lease), 0);
    const char *ro = tu_name("readable");
    so.mode = 0644;
    shmlease_table *t2;
    TU_RC(shmlease_open(ro, &so, &t2), 0);
    shmlease_close(t2);

    struct as_nobody_out *o = tu_shared(sizeof *o);
    pid_t pid = fork_nobody(o);
    if (pid == 0) {
        /* 0666: read-write, when asking to share; a default open is refused
         * (the table belongs to another user: could be a squatter), whatever
         * the mode it would give a table it made. */
        o->r[0] = open_rc(shared, SHMLEASE_OPEN_NOCREATE | SHMLEASE_OPEN_SHARE, 0);
        o->r[1] = open_rc(shared, SHMLEASE_OPEN_NOCREATE, 0666);
        shmlease_options oo = {.flags = SHMLEASE_OPEN_NOCREATE | SHMLEASE_OPEN_SHARE};
        shmlease_table *nt;
        if (shmlease_open(shared, &oo, &nt) == 0) {
            shmlease_lease l;
            o->r[2] = tu_acquire(nt, "nobody-key", 1000, 0, &l);
            o->r[3] = tu_acquire(nt, "root-key", 1000, 0, &l);          /* held by root: busy */
            shmlease_info info;
            o->r[6] = shmlease_inspect(nt, "root-key", &info);
            o->r[7] = info.holder_alive;      /* root's process: kill() gives EPERM, lock says alive */
            shmlease_close(nt);
        }
        /* 0644: read-only yes, read-write no. */
        o->r[4] = open_rc(ro, SHMLEASE_OPEN_READONLY, 0);
        o->r[5] = open_rc(ro, SHMLEASE_OPEN_NOCREATE | SHMLEASE_OPEN_SHARE, 0);
        _exit(0);
    }
    require_nobody(pid, o);
    TU_RC(o->r[0], 0);
    TU_RC(o->r[1], -EPERM);
    TU_RC(o->r[2], 0);
    TU_RC(o->r[3], -EBUSY);
    TU_RC(o->r[6], 0);
    TU_TRUE(o->r[7] == 1, "root's live lease seen from uid %d as alive=%d", NOBODY, o->r[7]);
    TU_RC(o->r[4], 0);
    TU_RC(o->r[5], -EACCES);
    tu_note("security: uid %d vs root's 0666 table: RW open with SHARE ok (without: -EPERM, "
             "another user's table), acquire ok, root's lease -EBUSY and alive=1; vs 0644: RO ok, RW -EACCES",
             NOBODY);
}

static void t_squatted_name(void **s)
{
    (void)s;
    if (geteuid() != 0)
        TU_SKIP("needs root to run a child as another user");
    const char *name = tu_name("squat");
    const char *plain = tu_name("squat-file");
    struct as_nobody_out *o = tu_shared(sizeof *o);
    pid_t pid = fork_nobody(o);
    if (pid == 0) {
        /* The squatter makes a real table, world-writable, before the victim. */
        o->r[0] = open_rc(name, SHMLEASE_OPEN_EXCL, 0666);
        /* ... and a plain empty file. */
        char path[256];
        tu_shm_path(path, sizeof path, plain);
        int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0666);
        o->r[1] = fd >= 0 ? 0 : -errno;
        if (fd >= 0) {
            fchmod(fd, 0666);
            close(fd);
        }
        _exit(0);
    }
    require_nobody(pid, o);
    TU_RC(o->r[0], 0);
    TU_RC(o->r[1], 0);
    TU_RC(open_rc(name, 0, 0), -EPERM);
    TU_RC(open_rc(name, 0, 0666), -EPERM);               /* a mode is not consent */
    TU_RC(open_rc(name, SHMLEASE_OPEN_NOCREATE, 0), -EPERM);
    TU_RC(open_rc(plain, 0, 0), -EPERM);
    TU_RC(open_rc(plain, SHMLEASE_OPEN_SHARE, 0), -EPROTO);   /* shared or not, not a table */
    TU_RC(open_rc(name, SHMLEASE_OPEN_SHARE, 0), 0);     /* asked to share: accepted */
    TU_RC(open_rc(name, SHMLEASE_OPEN_READONLY, 0), 0);  /* reading is not trusting */
    char lp[256];
    snprintf(lp, sizeof lp, "/dev/shm/shmlease-lk.%s", plain);
    TU_TRUE(access(lp, F_OK) != 0, "the refused opens of a squatted plain file left a lock file");
    tu_note("security: table squatted by uid %d (0666): root's default open -EPERM (table and plain file, "
             "whatever mode asked), accepted with SHARE, read-only allowed; the empty file -EPROTO with SHARE",
             NOBODY);
}

static void t_names_stay_in_devshm(void **s)
{
    (void)s;
    char longname[SHMLEASE_NAME_MAX + 2];
    memset(longname, 'a', sizeof longname);
    longname[SHMLEASE_NAME_MAX + 1] = 0;
    static const char *const bad[] = {"../x", "a/b", "/abs", "", ".", "..", "x\n", "a b", "..%2f",
                                      "../../tmp/shmlease-escape", "ä", "a\\b", "*", "x:y"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        TU_TRUE(open_rc(bad[i], 0, 0) == -EINVAL, "open(\"%s\")", bad[i]);
        TU_TRUE(shmlease_unlink(bad[i]) == -EINVAL, "unlink(\"%s\")", bad[i]);
    }
    TU_RC(open_rc(longname, 0, 0), -EINVAL);
    TU_RC(open_rc(NULL, 0, 0), -EINVAL);
    TU_RC(shmlease_unlink(NULL), -EINVAL);
    TU_TRUE(access("/dev/x", F_OK) != 0 && access("/tmp/shmlease-escape", F_OK) != 0 &&
             access("/dev/shm/x", F_OK) != 0, "a file escaped /dev/shm");
    /* The longest legal name works. */
    longname[SHMLEASE_NAME_MAX] = 0;
    TU_RC(open_rc(longname, 0, 0), 0);
    TU_RC(shmlease_unlink(longname), 0);
    tu_note("security: %zu malformed names (../x, a/b, /abs, ., .., control chars, 201 bytes, ...) -EINVAL for "
             "open and unlink; a 200-byte name works", sizeof bad / sizeof bad[0] + 2);
}

/* Things that are not regular files under a table's name: a symlink planted
 * by another user (the sticky /dev/shm and O_NOFOLLOW), a FIFO, a directory.
 * Opens must fail cleanly (no hang, no write through the link). */
static void t_non_regular_files(void **s)
{
    (void)s;
    const char *lnk = tu_name("symlink"), *fifo = tu_name("fifo"), *dir = tu_name("dir");
    char plnk[256], pfifo[256], pdir[256], target[64];
    tu_shm_path(plnk, sizeof plnk, lnk);
    tu_shm_path(pfifo, sizeof pfifo, fifo);
    tu_shm_path(pdir, sizeof pdir, dir);
    snprintf(target, sizeof target, "/tmp/shmlease-symlink-target-%d", (int)getpid());
    TU_RC(tu_write_file(target, "victim", 6, 0644), 0);
    unlink(plnk);
    TU_TRUE(symlink(target, plnk) == 0, "symlink: %s", strerror(errno));
    TU_TRUE(mkfifo(pfifo, 0600) == 0, "mkfifo: %s", strerror(errno));
    TU_TRUE(mkdir(pdir, 0700) == 0, "mkdir: %s", strerror(errno));
    int rcs[3][2];
    const char *names[3] = {lnk, fifo, dir};
    for (int i = 0; i < 3; i++) {
        pid_t pid = tu_fork_alarm(10);
        if (pid == 0) {
            int a = open_rc(names[i], 0, 0), b = open_rc(names[i], SHMLEASE_OPEN_READONLY, 0);
            _exit(a == 0 || b == 0 ? 0 : 1);     /* 1: both refused */
        }
        int st = tu_wait(pid, 5000);
        TU_TRUE(st != -1, "open of a non-regular file (%s) hung", names[i]);
        TU_TRUE(WIFEXITED(st) && WEXITSTATUS(st) != 0, "open of a non-regular file (%s) succeeded: %s",
                 names[i], tu_status_str(st));
        rcs[i][0] = open_rc(names[i], 0, 0);
        rcs[i][1] = open_rc(names[i], SHMLEASE_OPEN_READONLY, 0);
    }
    size_t n;
    char *back = tu_read_file(target, &n);
    TU_TRUE(back && n == 6 && !memcmp(back, "victim", 6), "the symlink's target was written");
    free(back);
    unlink(target);
    unlink(plnk);
    rmdir(pdir);
    tu_note("security: table name taken by a symlink -> RW %s / RO %s (target untouched), a FIFO -> %s / %s, "
             "a directory -> %s / %s", shmlease_errname(rcs[0][0]), shmlease_errname(rcs[0][1]),
             shmlease_errname(rcs[1][0]), shmlease_errname(rcs[1][1]), shmlease_errname(rcs[2][0]),
             shmlease_errname(rcs[2][1]));
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        TU_SLOW_TEST(t_mode_whatever_umask),
        TU_SLOW_TEST(t_other_user_0600),
        TU_SLOW_TEST(t_other_user_0666_and_0644),
        TU_SLOW_TEST(t_squatted_name),
        TU_SLOW_TEST(t_names_stay_in_devshm),
        TU_SLOW_TEST(t_non_regular_files),
    };
    return TU_RUN(tests);
}
