/*
 * libshmlease.so's symbol versions, called by name: a program built with
 * today's header that binds, through .symver, to the SHMLEASE_1.0 entry
 * points of shmlease_open, shmlease_acquire and shmlease_with (what a program
 * built with the 1.0 header calls), next to their SHMLEASE_1.1 versions, and
 * the SHMLEASE_1.1 shmlease_open (1.1's sharing rule) next to 1.2's.
 */
#define _GNU_SOURCE   /* dlvsym */
#include "shmlease.h"
#include "abi_test.h"

#include <dlfcn.h>
#include <grp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* The 1.0 layouts, as the 1.0 header declared them. */
struct options_1_0 {
    uint32_t capacity, mode, flags;
    uint64_t (*clock_ms)(void *ctx);
    void *clock_ctx;
    uint32_t open_timeout_ms;
};
struct acquire_opts_1_0 {
    uint64_t ttl_ms;
    int64_t wait_ms;
    const void *metadata;
    size_t metadata_len;
};

int open_1_0(const char *name, const struct options_1_0 *o, shmlease_table **out);
int acquire_1_0(shmlease_table *t, const char *key, const struct acquire_opts_1_0 *o,
                shmlease_lease *out);
int with_1_0(shmlease_table *t, const char *key, const struct acquire_opts_1_0 *o,
             int (*fn)(const shmlease_lease *l, void *arg), void *arg);
__asm__(".symver open_1_0, shmlease_open@SHMLEASE_1.0");
__asm__(".symver acquire_1_0, shmlease_acquire@SHMLEASE_1.0");
__asm__(".symver with_1_0, shmlease_with@SHMLEASE_1.0");
int open_1_1(const char *name, const shmlease_options *o, shmlease_table **out);
__asm__(".symver open_1_1, shmlease_open@SHMLEASE_1.1");

static int with_fn(const shmlease_lease *l, void *arg)
{
    CHECK(l->fencing_token > 0);
    ++*(int *)arg;
    return 7;
}

static uint64_t fixed_clock(void *ctx)
{
    return *(const uint64_t *)ctx;
}

/* The 1.0 entry points never read past the 1.0 struct: one that ends at an
 * inaccessible page works. */
static void test_guard_page(void)
{
    const char *name = abi_table_name("guard");
    shmlease_unlink(name);
    struct options_1_0 o = {.capacity = 4, .flags = SHMLEASE_OPEN_EXCL};
    shmlease_table *t;
    CHECK_RC(open_1_0(name, at_page_end(&o, sizeof o), &t), 0);
    shmlease_stats st;
    CHECK_RC(shmlease_stats_get(t, &st), 0);
    CHECK(st.capacity == 4);

    struct acquire_opts_1_0 ao = {.ttl_ms = 60000, .metadata = "v10", .metadata_len = 3};
    const struct acquire_opts_1_0 *g = at_page_end(&ao, sizeof ao);
    shmlease_lease l;
    CHECK_RC(acquire_1_0(t, "k", g, &l), 0);
    shmlease_info info;
    CHECK_RC(shmlease_inspect(t, "k", &info), 0);
    CHECK(info.metadata_len == 3 && memcmp(info.metadata, "v10", 3) == 0);
    CHECK_RC(shmlease_release(t, &l), 0);
    int called = 0;
    CHECK_RC(with_1_0(t, "w", g, with_fn, &called), 7);
    CHECK(called == 1);
    shmlease_close(t);
    CHECK_RC(shmlease_unlink(name), 0);
}

/* Bytes after a 1.0 struct (where 1.1 has reserved_0) are not looked at by
 * the 1.0 entry points; today's entry points, given the same bytes, see a
 * non-zero reserved_0 and refuse them (-EINVAL) without creating anything. */
static void test_garbage_after(void)
{
    const char *name = abi_table_name("garbage");
    shmlease_unlink(name);
    uint64_t now = 1000000;
    struct options_1_0 o = {.capacity = 16, .flags = SHMLEASE_OPEN_EXCL, .mode = 0600,
                            .clock_ms = fixed_clock, .clock_ctx = &now,
                            .open_timeout_ms = 2000};
    void *og = with_garbage_after(&o, sizeof o, sizeof(shmlease_options));
    shmlease_table *t = (shmlease_table *)1;
    CHECK_RC(shmlease_open(name, og, &t), -EINVAL);
    CHECK(t == NULL);
    CHECK_RC(shmlease_open(name, &(shmlease_options){.flags = SHMLEASE_OPEN_NOCREATE}, &t),
             -ENOENT);
    CHECK_RC(open_1_0(name, og, &t), 0);
    CHECK(shmlease_now_ms(t) == now);   /* the 1.0 clock members were read */

    struct acquire_opts_1_0 ao = {.ttl_ms = 5000, .wait_ms = 0};
    void *ag = with_garbage_after(&ao, sizeof ao, sizeof(shmlease_acquire_opts));
    shmlease_lease l;
    CHECK_RC(shmlease_acquire(t, "k", ag, &l), -EINVAL);
    CHECK_RC(shmlease_inspect(t, "k", &(shmlease_info){0}), -ENOENT);
    int called = 0;
    CHECK_RC(shmlease_with(t, "k", ag, with_fn, &called), -EINVAL);
    CHECK(called == 0);
    CHECK_RC(acquire_1_0(t, "k", ag, &l), 0);
    CHECK(l.expires_at_ms == now + 5000);
    CHECK_RC(with_1_0(t, "k", ag, with_fn, &called), -EBUSY);   /* held: wait_ms 0 */
    CHECK_RC(shmlease_release(t, &l), 0);
    CHECK_RC(with_1_0(t, "k", ag, with_fn, &called), 7);
    CHECK(called == 1);

    /* NULL options: the 1.0 meaning. */
    CHECK_RC(acquire_1_0(t, "k", NULL, &l), -EINVAL);
    CHECK_RC(with_1_0(t, "k", NULL, with_fn, &called), -EINVAL);
    shmlease_close(t);
    CHECK_RC(open_1_0(name, NULL, &t), 0);
    shmlease_close(t);
    CHECK_RC(shmlease_unlink(name), 0);
    free(og);
    free(ag);
}

/* Two definitions of each changed call; a plain lookup gets today's. */
static void test_two_versions(void)
{
    static const char *const changed[] = {"shmlease_open", "shmlease_acquire", "shmlease_with"};
    for (size_t i = 0; i < sizeof changed / sizeof changed[0]; i++) {
        void *v10 = dlvsym(RTLD_DEFAULT, changed[i], "SHMLEASE_1.0");
        void *v11 = dlvsym(RTLD_DEFAULT, changed[i], "SHMLEASE_1.1");
        CHECK(v10 != NULL && v11 != NULL && v10 != v11);
        if (strcmp(changed[i], "shmlease_open") == 0) {  /* three: 1.2 changed sharing */
            void *v12 = dlvsym(RTLD_DEFAULT, changed[i], "SHMLEASE_1.2");
            CHECK(v12 != NULL && v12 != v11 && v12 != v10);
            CHECK(dlsym(RTLD_DEFAULT, changed[i]) == v12);
        } else {
            CHECK(dlsym(RTLD_DEFAULT, changed[i]) == v11);
        }
    }
    CHECK(dlvsym(RTLD_DEFAULT, "shmlease_close", "SHMLEASE_1.0") != NULL);
    CHECK(dlvsym(RTLD_DEFAULT, "shmlease_version", "SHMLEASE_1.1") != NULL);
    CHECK(dlvsym(RTLD_DEFAULT, "shmlease_version", "SHMLEASE_1.0") == NULL);
    CHECK(strcmp(shmlease_version(), SHMLEASE_VERSION_STRING) == 0);
}

/* The 1.1 shmlease_open keeps 1.1's rules: SHARE and GROUP are unknown flags
 * there, and a mode with group/other bits agrees to use another user's table
 * (refused with -EACCES without them); today's open asks for SHMLEASE_OPEN_SHARE
 * and refuses with -EPERM. Another user needs root. */
static void test_open_1_1_sharing_rule(void)
{
    const char *name = abi_table_name("rule11");
    shmlease_unlink(name);
    shmlease_table *t = (shmlease_table *)1;
    CHECK_RC(open_1_1(name, &(shmlease_options){.flags = SHMLEASE_OPEN_SHARE}, &t), -EINVAL);
    CHECK(t == NULL);
    CHECK_RC(open_1_1(name, &(shmlease_options){.gid = 1}, &t), -EINVAL);
    if (geteuid() != 0) {
        printf("symver: 1.1 sharing rule not checked (needs root for another user)\n");
        return;
    }
    shmlease_table *root_t;
    CHECK_RC(shmlease_open(name, &(shmlease_options){.capacity = 8, .mode = 0666,
                                                     .flags = SHMLEASE_OPEN_EXCL}, &root_t), 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        if (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0)
            _exit(3);
        shmlease_options agree = {.mode = 0666, .flags = SHMLEASE_OPEN_NOCREATE};
        shmlease_options plain = {.flags = SHMLEASE_OPEN_NOCREATE};
        shmlease_table *ot;
        if (open_1_1(name, &agree, &ot) != 0)
            _exit(4);
        shmlease_close(ot);
        if (open_1_1(name, &plain, &ot) != -EACCES)
            _exit(5);
        if (shmlease_open(name, &agree, &ot) != -EPERM)     /* today: SHARE is the way */
            _exit(6);
        _exit(0);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    shmlease_close(root_t);
    CHECK_RC(shmlease_unlink(name), 0);
    printf("symver: 1.1 sharing rule kept (mode 0666 shares, mode 0 is -EACCES; 1.2 is -EPERM)\n");
}

int main(void)
{
    test_guard_page();
    test_garbage_after();
    test_two_versions();
    test_open_1_1_sharing_rule();
    printf("symver_1_0: OK with libshmlease %s\n", shmlease_version());
    return 0;
}
