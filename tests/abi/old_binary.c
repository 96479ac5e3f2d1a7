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
#include <grp.h>
#include <sys/wait.h>

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

    /* A flag 1.0 did not know is still unknown to a 1.0 program, even where
     * a later version gave its bit a meaning (1u << 3: SHARE since 1.2). */
    shmlease_options bit3 = {.flags = 1u << 3};
    CHECK_RC(shmlease_open(name, at_page_end(&bit3, sizeof bit3), &(shmlease_table *){0}), -EINVAL);

    /* The 1.0 sharing rule, for a 1.0 program: a mode with group or other
     * bits agrees to use another user's table; without, the refusal is
     * -EACCES. Needs root, to run a child as another user. */
    if (geteuid() == 0) {
        char shared[96];                       /* abi_table_name's buffer holds NAME */
        snprintf(shared, sizeof shared, "%s-shared", name);
        shmlease_unlink(shared);
        shmlease_options mk = {.capacity = 8, .mode = 0666, .flags = SHMLEASE_OPEN_EXCL};
        shmlease_table *root_t;
        CHECK_RC(shmlease_open(shared, at_page_end(&mk, sizeof mk), &root_t), 0);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            if (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0)
                _exit(3);
            shmlease_options agree = {.mode = 0666, .flags = SHMLEASE_OPEN_NOCREATE};
            shmlease_options plain = {.flags = SHMLEASE_OPEN_NOCREATE};
            shmlease_table *ot;
            if (shmlease_open(shared, at_page_end(&agree, sizeof agree), &ot) != 0)
                _exit(4);
            shmlease_close(ot);
            _exit(shmlease_open(shared, at_page_end(&plain, sizeof plain), &ot) == -EACCES ? 0 : 5);
        }
        int status = 0;
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        shmlease_close(root_t);
        CHECK_RC(shmlease_unlink(shared), 0);
        printf("old_binary: 1.0 sharing rule kept (mode 0666 shares, mode 0 is -EACCES)\n");
    }

    shmlease_close(t);
    CHECK_RC(shmlease_unlink(name), 0);
    printf("old_binary: OK (%s)\n", shmlease_errname(0));
    return 0;
}
