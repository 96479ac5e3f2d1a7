/*
 * LD_PRELOAD shim for the tool tests: after a successful mmap() of a file
 * whose path contains $SHMLEASE_TEST_TRUNCATE (a table name), truncates that
 * file to 0 bytes. The next access to the mapping raises SIGBUS: the case of
 * a segment truncated by someone else while a reader has it mapped, which
 * shmlease-dump must report (exit 2) instead of dying.
 */
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>

typedef void *(*mmap_fn)(void *, size_t, int, int, int, off_t);

static void truncate_if_wanted(int fd)
{
    const char *want = getenv("SHMLEASE_TEST_TRUNCATE");
    if (want == NULL || *want == '\0' || fd < 0)
        return;
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof(path) - 1);
    if (n <= 0)
        return;
    path[n] = '\0';
    if (strstr(path, want) != NULL)
        (void)truncate(path, 0);
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    static mmap_fn real;
    if (real == NULL)
        real = (mmap_fn)dlsym(RTLD_NEXT, "mmap");
    void *p = real(addr, len, prot, flags, fd, off);
    if (p != MAP_FAILED)
        truncate_if_wanted(fd);
    return p;
}

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    return mmap(addr, len, prot, flags, fd, off);
}
