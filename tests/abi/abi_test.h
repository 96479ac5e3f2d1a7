/* Small helpers of the tests/abi programs (no cmocka: old_binary.c must
 * build with the 1.0 header alone). */
#ifndef SHMLEASE_ABI_TEST_H
#define SHMLEASE_ABI_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)
#define CHECK_RC(call, want)                                                          \
    do {                                                                              \
        long rc_ = (long)(call);                                                      \
        if (rc_ != (long)(want)) {                                                    \
            fprintf(stderr, "%s:%d: %s returned %ld, want %ld\n", __FILE__, __LINE__, \
                    #call, rc_, (long)(want));                                        \
            exit(1);                                                                  \
        }                                                                             \
    } while (0)

/* SIZE bytes that end where an inaccessible page begins: reading one byte
 * past them is SIGSEGV. The bytes are copied from SRC. */
static inline void *at_page_end(const void *src, size_t size)
{
    long page = sysconf(_SC_PAGESIZE);
    unsigned char *p = mmap(NULL, 2 * (size_t)page, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    CHECK(mprotect(p + page, (size_t)page, PROT_NONE) == 0);
    unsigned char *at = p + page - size;
    memcpy(at, src, size);
    return at;
}

/* SIZE bytes from SRC followed by EXTRA bytes of 0xff. */
static inline void *with_garbage_after(const void *src, size_t size, size_t extra)
{
    unsigned char *p = malloc(size + extra);
    CHECK(p != NULL);
    memcpy(p, src, size);
    memset(p + size, 0xff, extra);
    return p;
}

static inline const char *abi_table_name(const char *tag)
{
    static char name[64];
    snprintf(name, sizeof name, "abi-%ld-%s", (long)getpid(), tag);
    return name;
}

#endif
