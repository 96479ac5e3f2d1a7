/*
 * A full /dev/shm (docs/failure-modes.md F14).
 *
 * In a private mount namespace (unshare(CLONE_NEWNS), / made private, a
 * 2 MiB tmpfs mounted on /dev/shm), in a child:
 *   - a table bigger than the whole tmpfs: -ENOSPC, no SIGBUS, nothing left;
 *   - a small one fits and works;
 *   - the tmpfs filled up to the last ~64 KiB: a new table -ENOSPC, nothing left;
 *   - a 0-byte segment left by a dead creator (its creation record in the
 *     lock file), no space: -ENOSPC, the file stays (0 bytes, the
 *     creator's), and once space is freed the next opener builds the table
 *     in it.
 * Skips when a mount namespace cannot be made (unprivileged container).
 */
#include "internal.h"
#include "testutil.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>

struct out {
    int32_t skip_errno;
    char skip_what[64];
    int32_t big_rc, big_left, small_rc, small_acq, full_rc, full_left;
    int32_t zero_rc, zero_size_after, zero_exists, repaired_rc, repaired_acq;
    int64_t big_size_left;
};

static int64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_size : -1;
}

static void t_full_devshm(void **s)
{
    (void)s;
    struct out *o = tu_shared(sizeof *o);
    pid_t pid = tu_fork_alarm(60);
    if (pid == 0) {
        if (unshare(CLONE_NEWNS) != 0) {
            o->skip_errno = errno;
            snprintf(o->skip_what, sizeof o->skip_what, "unshare(CLONE_NEWNS)");
            _exit(0);
        }
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
            o->skip_errno = errno;
            snprintf(o->skip_what, sizeof o->skip_what, "mount --make-rprivate /");
            _exit(0);
        }
        if (mount("none", "/dev/shm", "tmpfs", 0, "size=2m,mode=1777") != 0) {
            o->skip_errno = errno;
            snprintf(o->skip_what, sizeof o->skip_what, "mount tmpfs on /dev/shm");
            _exit(0);
        }
        shmlease_table *t;
        shmlease_options big = {.capacity = 10000};         /* ~3.6 MB */
        o->big_rc = shmlease_open("full-big", &big, &t);
        o->big_size_left = file_size("/dev/shm/shmlease.full-big");
        o->big_left = o->big_size_left >= 0;

        shmlease_options small = {.capacity = 16};
        o->small_rc = shmlease_open("full-small", &small, &t);
        if (o->small_rc == 0) {
            shmlease_lease l;
            o->small_acq = tu_acquire(t, "k", 1000, 0, &l);
            shmlease_close(t);
        }
        shmlease_unlink("full-small");

        /* Fill the tmpfs up to ~64 KiB. */
        int fd = open("/dev/shm/filler", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        TU_CK(fd >= 0);
        off_t sz = 0;
        while (posix_fallocate(fd, sz, 64 * 1024) == 0)
            sz += 64 * 1024;
        TU_CK(ftruncate(fd, sz > 64 * 1024 ? sz - 64 * 1024 : 0) == 0);
        o->full_rc = shmlease_open("full-full", &small, &t);
        o->full_left = file_size("/dev/shm/shmlease.full-full") >= 0;

        /* A 0-byte segment from a dead creator, whose lock file carries its
         * creation record (size 1). */
        int z = open("/dev/shm/shmlease.full-zero", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        TU_CK(z >= 0);
        close(z);
        z = open("/dev/shm/shmlease-lk.full-zero", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        TU_CK(z >= 0 && ftruncate(z, 1) == 0);
        close(z);
        o->zero_rc = shmlease_open("full-zero", &small, &t);
        o->zero_size_after = (int32_t)file_size("/dev/shm/shmlease.full-zero");
        o->zero_exists = o->zero_size_after >= 0;
        TU_CK(ftruncate(fd, 0) == 0);                         /* space again */
        close(fd);
        o->repaired_rc = shmlease_open("full-zero", &small, &t);
        if (o->repaired_rc == 0) {
            shmlease_lease l;
            o->repaired_acq = tu_acquire(t, "k", 1000, 0, &l);
            shmlease_close(t);
        }
        _exit(0);
    }
    int st = tu_wait(pid, 50000);
    TU_TRUE(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: %s (a SIGBUS here is the bug)",
             tu_status_str(st));
    if (o->skip_errno)
        TU_SKIP("%s failed: %s", o->skip_what, strerror(o->skip_errno));
    TU_RC(o->big_rc, -ENOSPC);
    TU_TRUE(!o->big_left || o->big_size_left == 0, "a half-made table was left (%lld bytes)",
             (long long)o->big_size_left);
    TU_RC(o->small_rc, 0);
    TU_RC(o->small_acq, 0);
    TU_RC(o->full_rc, -ENOSPC);
    TU_TRUE(!o->full_left, "a segment was left behind in a full /dev/shm");
    TU_RC(o->zero_rc, -ENOSPC);
    TU_TRUE(o->zero_exists && o->zero_size_after == 0, "the dead creator's 0-byte file: exists %d size %d",
             o->zero_exists, o->zero_size_after);
    TU_RC(o->repaired_rc, 0);
    TU_RC(o->repaired_acq, 0);
    tu_note("fullshm: 2 MiB tmpfs in a private mount namespace: 3.6 MB table -ENOSPC (no SIGBUS, %s), small "
             "table fits, full tmpfs -ENOSPC (nothing left), dead creator's 0-byte file kept then repaired",
             o->big_left ? "a 0-byte file left" : "no file left");
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {TU_SLOW_TEST(t_full_devshm)};
    return TU_RUN(tests);
}
