/*
 * Entry points for programs built with the 1.0 header, for the calls whose
 * option structs grew in 1.1 (reserved_0 added to shmlease_options and
 * shmlease_acquire_opts): shmlease_open, shmlease_acquire, shmlease_with.
 *
 * Such a program passes the smaller 1.0 struct. Each entry point here copies
 * the 1.0 members one by one into a zeroed struct of today's layout and calls
 * today's function: it reads the 1.0 members and nothing past them (not even
 * the 1.0 struct's tail padding), and everything 1.1 added is zero, which is
 * the 1.0 behaviour.
 *
 * In libshmlease.so the .symver directives below export them as
 * shmlease_open@SHMLEASE_1.0 etc., beside today's shmlease_open@@SHMLEASE_1.1
 * (src/shmlease.map). A program linked with a 1.1 library asks for the
 * version it was linked with. A program linked with a 1.0 library (which had
 * no symbol versions) asks for no version: the dynamic linker then takes the
 * definition in the library's first version node, SHMLEASE_1.0, i.e. these.
 * This file is compiled into the shared library only (CMakeLists.txt): the
 * static library has no symbol versions, and a program that links it was
 * built with the same header and calls today's functions.
 *
 * One rule changed in meaning since 1.0 and is kept for 1.0 programs: a
 * read-write open of another user's table. In 1.0, a mode with group or
 * other bits meant "I agree to share" and a refusal was -EACCES; since
 * SHMLEASE_OPEN_SHARE (1.2) the mode is only the creation mode, and the
 * refusal is -EPERM. The 1.0 entry point asks for SHARE when the 1.0
 * program's mode has group or other bits, and reports the refusal as 1.0
 * did.
 */
#include "shmlease.h"
#include "compiler.h"

#include <errno.h>
#include <stddef.h>

/* The 1.0 layouts, as include/shmlease.h 1.0 declared them. */
struct shmlease_options_1_0 {
    uint32_t capacity;
    uint32_t mode;
    uint32_t flags;
    uint64_t (*clock_ms)(void *ctx);
    void *clock_ctx;
    uint32_t open_timeout_ms;
};

struct shmlease_acquire_opts_1_0 {
    uint64_t ttl_ms;
    int64_t wait_ms;
    const void *metadata;
    size_t metadata_len;
};

#if defined(__LP64__)
_Static_assert(sizeof(struct shmlease_options_1_0) == 40, "the 1.0 shmlease_options");
_Static_assert(sizeof(struct shmlease_acquire_opts_1_0) == 32, "the 1.0 shmlease_acquire_opts");
#endif
/* 1.1 only appended: the 1.0 members are where they were. */
#define SAME_OFFSET(T, T10, m) _Static_assert(offsetof(T, m) == offsetof(struct T10, m), #m)
SAME_OFFSET(shmlease_options, shmlease_options_1_0, capacity);
SAME_OFFSET(shmlease_options, shmlease_options_1_0, mode);
SAME_OFFSET(shmlease_options, shmlease_options_1_0, flags);
SAME_OFFSET(shmlease_options, shmlease_options_1_0, clock_ms);
SAME_OFFSET(shmlease_options, shmlease_options_1_0, clock_ctx);
SAME_OFFSET(shmlease_options, shmlease_options_1_0, open_timeout_ms);
SAME_OFFSET(shmlease_acquire_opts, shmlease_acquire_opts_1_0, ttl_ms);
SAME_OFFSET(shmlease_acquire_opts, shmlease_acquire_opts_1_0, wait_ms);
SAME_OFFSET(shmlease_acquire_opts, shmlease_acquire_opts_1_0, metadata);
SAME_OFFSET(shmlease_acquire_opts, shmlease_acquire_opts_1_0, metadata_len);
_Static_assert(sizeof(shmlease_options) > sizeof(struct shmlease_options_1_0), "grew");
_Static_assert(sizeof(shmlease_acquire_opts) > sizeof(struct shmlease_acquire_opts_1_0), "grew");

SHM_API int shmlease__open_1_0(const char *name, const struct shmlease_options_1_0 *opts,
                               shmlease_table **out);
SHM_API int shmlease__acquire_1_0(shmlease_table *t, const char *key,
                                  const struct shmlease_acquire_opts_1_0 *o, shmlease_lease *out);
SHM_API int shmlease__with_1_0(shmlease_table *t, const char *key,
                               const struct shmlease_acquire_opts_1_0 *o,
                               int (*fn)(const shmlease_lease *l, void *arg), void *arg);

SHM_API int shmlease__open_1_1(const char *name, const shmlease_options *opts,
                               shmlease_table **out);

__asm__(".symver shmlease__open_1_0, shmlease_open@SHMLEASE_1.0");
__asm__(".symver shmlease__open_1_1, shmlease_open@SHMLEASE_1.1");
__asm__(".symver shmlease__acquire_1_0, shmlease_acquire@SHMLEASE_1.0");
__asm__(".symver shmlease__with_1_0, shmlease_with@SHMLEASE_1.0");

static shmlease_acquire_opts acquire_opts_from_1_0(const struct shmlease_acquire_opts_1_0 *o)
{
    shmlease_acquire_opts n = {0};
    n.ttl_ms = o->ttl_ms;
    n.wait_ms = o->wait_ms;
    n.metadata = o->metadata;
    n.metadata_len = o->metadata_len;
    return n;
}

/* shmlease_open as 1.0 and 1.1 defined it, on options N in today's layout:
 * they knew neither SHARE nor GROUP (their bits, and gid, were unknown or
 * reserved: -EINVAL), read a mode with group or other bits as agreement to
 * use another user's table, and refused one with -EACCES otherwise (since
 * 1.2: the SHARE flag, and -EPERM). */
static int open_before_1_2(const char *name, shmlease_options *n, shmlease_table **out)
{
    const uint32_t known = SHMLEASE_OPEN_NOCREATE | SHMLEASE_OPEN_EXCL | SHMLEASE_OPEN_READONLY;
    if ((n->flags & ~known) || n->gid != 0) {    /* as they said of what they did not know */
        if (out)
            *out = NULL;
        return -EINVAL;
    }
    if (n->mode & 077)
        n->flags |= SHMLEASE_OPEN_SHARE;
    int rc = shmlease_open(name, n, out);
    return rc == -EPERM ? -EACCES : rc;
}

SHM_API int shmlease__open_1_0(const char *name, const struct shmlease_options_1_0 *opts,
                               shmlease_table **out)
{
    if (!opts)
        return shmlease_open(name, NULL, out);
    shmlease_options n = {0};
    n.capacity = opts->capacity;
    n.mode = opts->mode;
    n.flags = opts->flags;
    n.clock_ms = opts->clock_ms;
    n.clock_ctx = opts->clock_ctx;
    n.open_timeout_ms = opts->open_timeout_ms;
    return open_before_1_2(name, &n, out);
}

SHM_API int shmlease__acquire_1_0(shmlease_table *t, const char *key,
                                  const struct shmlease_acquire_opts_1_0 *o, shmlease_lease *out)
{
    if (!o)
        return shmlease_acquire(t, key, NULL, out);   /* -EINVAL, as in 1.0 */
    shmlease_acquire_opts n = acquire_opts_from_1_0(o);
    return shmlease_acquire(t, key, &n, out);
}

SHM_API int shmlease__with_1_0(shmlease_table *t, const char *key,
                               const struct shmlease_acquire_opts_1_0 *o,
                               int (*fn)(const shmlease_lease *l, void *arg), void *arg)
{
    if (!o)
        return shmlease_with(t, key, NULL, fn, arg);  /* -EINVAL, as in 1.0 */
    shmlease_acquire_opts n = acquire_opts_from_1_0(o);
    return shmlease_with(t, key, &n, fn, arg);
}

/* The 1.1 shmlease_open: the same struct as today's; a program built with
 * the 1.1 header keeps the sharing rule it was written for. */
SHM_API int shmlease__open_1_1(const char *name, const shmlease_options *opts,
                               shmlease_table **out)
{
    if (!opts)
        return shmlease_open(name, NULL, out);
    shmlease_options n = *opts;
    return open_before_1_2(name, &n, out);
}
