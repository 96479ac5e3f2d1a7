/*
 * A program of version 1.0: built with the 1.0 header (tests/abi/v1.0/),
 * linked with a library without symbol versions (stub_1_0.c, as 1.0 was), so
 * that none of its references names a version. It runs with the library of
 * this build, whose shmlease_open, shmlease_acquire and shmlease_with take
 * bigger structs since 1.1.
 *
 * Its option structs end where an inaccessible page begins: the call it
 * binds to must be the SHMLEASE_1.0 entry point, which reads the 1.0 struct
 * only (today's would read reserved_0 past the end and die of SIGSEGV).
 */
#include "shmlease.h" /* tests/abi/v1.0/shmlease.h */
#include "abi_test.h"

#include <dlfcn.h>

_Static_assert(SHMLEASE_VERSION_MINOR == 0, "built with the 1.0 header");

static int with_fn(const shmlease_lease *l, void *arg)
{
    CHECK(l->fencing_token > 0);
    ++*(int *)arg;
    return 42;
}

int main(void)
{
    /* Not the stub: the library of this build (the stub has no such symbol). */
    const char *(*version)(void) = (const char *(*)(void))dlsym(RTLD_DEFAULT, "shmlease_version");
    CHECK(version != NULL);
    printf("old_binary (1.0 header, unversioned references) runs with libshmlease %s\n",
           version());

    const char *name = abi_table_name("old");
    shmlease_unlink(name);
    shmlease_options o = {.capacity = 8, .flags = SHMLEASE_OPEN_EXCL};
    shmlease_table *t;
    CHECK_RC(shmlease_open(name, at_page_end(&o, sizeof o), &t), 0);

    shmlease_stats st;
    CHECK_RC(shmlease_stats_get(t, &st), 0);
    CHECK(st.capacity == 8);   /* the 1.0 options were read */

    shmlease_acquire_opts ao = {.ttl_ms = 60000, .metadata = "old", .metadata_len = 3};
    const shmlease_acquire_opts *guarded = at_page_end(&ao, sizeof ao);
    shmlease_lease l;
    CHECK_RC(shmlease_acquire(t, "k", guarded, &l), 0);
    shmlease_info info;
    CHECK_RC(shmlease_inspect(t, "k", &info), 0);
    CHECK(info.metadata_len == 3 && memcmp(info.metadata, "old", 3) == 0);
    CHECK_RC(shmlease_acquire(t, "k", guarded, &(shmlease_lease){0}), -EBUSY);
    CHECK_RC(shmlease_renew(t, &l, 60000), 0);
    CHECK_RC(shmlease_check(t, &l), 0);
    CHECK_RC(shmlease_release(t, &l), 0);

    int called = 0;
    CHECK_RC(shmlease_with(t, "w", guarded, with_fn, &called), 42);
    CHECK(called == 1);

    /* 1.0 validation still applies through the 1.0 entry point. */
    shmlease_acquire_opts bad = {.ttl_ms = 0};
    CHECK_RC(shmlease_acquire(t, "k", at_page_end(&bad, sizeof bad), &l), -EINVAL);
    shmlease_options badopen = {.flags = 1u << 7};
    CHECK_RC(shmlease_open(name, at_page_end(&badopen, sizeof badopen), &(shmlease_table *){0}),
             -EINVAL);

    shmlease_close(t);
    CHECK_RC(shmlease_unlink(name), 0);
    printf("old_binary: OK (%s)\n", shmlease_errname(0));
    return 0;
}
