/*
 * The public ABI as a program built with this header sees it, linked with the
 * installed static library (libshmlease.a, not the test build): the version
 * the header names is the version the library reports.
 *
 * The shared library's side (exported symbols, symbol versions, binaries
 * built with the 1.0 header) is in tests/abi/.
 */
#include "shmlease.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

/* ---- layouts ----------------------------------------------------------------- */

/* Every public struct, byte for byte, as programs built with this header lay
 * it out (LP64: x86-64, aarch64). A change here is an ABI change: it needs a
 * new symbol version for every call that takes the struct (src/shmlease.map). */
#define SIZE(T, n) _Static_assert(sizeof(T) == (n) && _Alignof(T) == 8, #T " size")
#define AT(T, m, off, n)                                                               \
    _Static_assert(offsetof(T, m) == (off) && sizeof(((T *)0)->m) == (n), #T "." #m)

#if defined(__LP64__)
SIZE(shmlease_options, 64);       /* 1.0: 40 */
AT(shmlease_options, capacity, 0, 4);
AT(shmlease_options, mode, 4, 4);
AT(shmlease_options, flags, 8, 4);
AT(shmlease_options, clock_ms, 16, 8);
AT(shmlease_options, clock_ctx, 24, 8);
AT(shmlease_options, open_timeout_ms, 32, 4);
AT(shmlease_options, gid, 36, 4);            /* 1.2: was reserved */
AT(shmlease_options, backend, 40, 8);        /* 1.4: was reserved */
AT(shmlease_options, reserved_0, 48, 16);

SIZE(shmlease_acquire_opts, 64);  /* 1.0: 32 */
AT(shmlease_acquire_opts, ttl_ms, 0, 8);
AT(shmlease_acquire_opts, wait_ms, 8, 8);
AT(shmlease_acquire_opts, metadata, 16, 8);
AT(shmlease_acquire_opts, metadata_len, 24, 8);
AT(shmlease_acquire_opts, mode, 32, 4);     /* 1.3: was reserved */
AT(shmlease_acquire_opts, limit, 36, 4);    /* 1.3 */
AT(shmlease_acquire_opts, flags, 40, 4);    /* 1.3 */
AT(shmlease_acquire_opts, reserved_0, 44, 4);
AT(shmlease_acquire_opts, cancel, 48, 8);   /* 1.3 */
AT(shmlease_acquire_opts, reserved_1, 56, 8);

SIZE(shmlease_lease, 64);
AT(shmlease_lease, fencing_token, 0, 8);
AT(shmlease_lease, expires_at_ms, 8, 8);
AT(shmlease_lease, _private, 16, 48);

SIZE(shmlease_info, 352);
AT(shmlease_info, key, 0, 128);
AT(shmlease_info, fencing_token, 128, 8);
AT(shmlease_info, holder_pid, 136, 4);
AT(shmlease_info, holder_alive, 140, 4);
AT(shmlease_info, remaining_ms, 144, 8);
AT(shmlease_info, waiters, 152, 4);
AT(shmlease_info, metadata, 156, 128);
AT(shmlease_info, metadata_len, 288, 8);
AT(shmlease_info, expires_at_ms, 296, 8);
AT(shmlease_info, in_grace, 304, 4);
AT(shmlease_info, holder_other_pidns, 308, 4);
AT(shmlease_info, holder_start_time, 312, 8);
AT(shmlease_info, holder_handle, 320, 4);
AT(shmlease_info, mode, 324, 4);           /* 1.3: was reserved */
AT(shmlease_info, limit, 328, 4);
AT(shmlease_info, holders, 332, 4);
AT(shmlease_info, queued, 336, 4);
AT(shmlease_info, reserved_0, 340, 12);

SIZE(shmlease_stats, 208);
AT(shmlease_stats, acquisitions, 0, 8);
AT(shmlease_stats, contended, 8, 8);
AT(shmlease_stats, waits, 16, 8);
AT(shmlease_stats, timeouts, 24, 8);
AT(shmlease_stats, busy, 32, 8);
AT(shmlease_stats, expirations, 40, 8);
AT(shmlease_stats, reclaimed_dead, 48, 8);
AT(shmlease_stats, renewals, 56, 8);
AT(shmlease_stats, lost, 64, 8);
AT(shmlease_stats, broken, 72, 8);
AT(shmlease_stats, recoveries, 80, 8);
AT(shmlease_stats, fencing_counter, 88, 8);
AT(shmlease_stats, capacity, 96, 4);
AT(shmlease_stats, live_keys, 100, 4);
AT(shmlease_stats, held, 104, 4);
AT(shmlease_stats, attached, 108, 4);
AT(shmlease_stats, format_version, 112, 4);
AT(shmlease_stats, reserved_0, 116, 4);
AT(shmlease_stats, segment_bytes, 120, 8);
AT(shmlease_stats, created_at_ms, 128, 8);
AT(shmlease_stats, table_epoch, 136, 8);
AT(shmlease_stats, reserved_1, 144, 64);

SIZE(shmlease_keepalive_opts, 64);         /* 1.3 */
AT(shmlease_keepalive_opts, ttl_ms, 0, 8);
AT(shmlease_keepalive_opts, interval_ms, 8, 8);
AT(shmlease_keepalive_opts, on_lost, 16, 8);
AT(shmlease_keepalive_opts, arg, 24, 8);
AT(shmlease_keepalive_opts, reserved_0, 32, 32);

SIZE(shmlease_keepalive_stats, 88);        /* 1.3 */
AT(shmlease_keepalive_stats, status, 0, 4);
AT(shmlease_keepalive_stats, reserved_0, 4, 4);
AT(shmlease_keepalive_stats, renewals, 8, 8);
AT(shmlease_keepalive_stats, fencing_token, 16, 8);
AT(shmlease_keepalive_stats, expires_at_ms, 24, 8);
AT(shmlease_keepalive_stats, ttl_ms, 32, 8);
AT(shmlease_keepalive_stats, interval_ms, 40, 8);
AT(shmlease_keepalive_stats, running_ms, 48, 8);
AT(shmlease_keepalive_stats, reserved_1, 56, 32);
#define LAYOUTS_CHECKED 1
#else
#define LAYOUTS_CHECKED 0
#endif

static void test_layouts_are_checked_on_this_abi(void **state)
{
    (void)state;
    if (!LAYOUTS_CHECKED)
        skip();   /* the sizes above are those of LP64 */
}

/* ---- reserved members --------------------------------------------------------- */

static const char *table_name(const char *tag)
{
    static char name[64];
    snprintf(name, sizeof name, "abi-%ld-%s", (long)getpid(), tag);
    shmlease_unlink(name);   /* a leftover of a crashed run with the same pid */
    return name;
}

static int all_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return 0;
    return 1;
}

static int reserved_zero_cb(const shmlease_info *info, void *arg)
{
    *(int *)arg += all_zero(info->reserved_0, sizeof info->reserved_0) ? 1 : 100;
    return 0;
}

static int never_called(const shmlease_lease *l, void *arg)
{
    (void)l;
    ++*(int *)arg;
    return 0;
}

/* A non-zero byte anywhere in an option struct's reserved space: -EINVAL,
 * and nothing happened. */
static void test_reserved_options_nonzero_is_einval(void **state)
{
    (void)state;
    const char *name = table_name("in");
    shmlease_table *t = NULL;
    for (size_t i = 0; i < sizeof ((shmlease_options *)0)->reserved_0; i++) {
        shmlease_options o;
        memset(&o, 0, sizeof o);
        o.flags = SHMLEASE_OPEN_EXCL;
        ((unsigned char *)o.reserved_0)[i] = 1;
        assert_int_equal(shmlease_open(name, &o, &t), -EINVAL);
        assert_null(t);
    }
    shmlease_options o;
    memset(&o, 0, sizeof o);
    o.flags = SHMLEASE_OPEN_NOCREATE;
    assert_int_equal(shmlease_open(name, &o, &t), -ENOENT);   /* nothing created */
    o.flags = SHMLEASE_OPEN_EXCL;
    assert_int_equal(shmlease_open(name, &o, &t), 0);

    shmlease_stats before, after;
    assert_int_equal(shmlease_stats_get(t, &before), 0);
    int called = 0;
    /* Reserved bytes, and values of the 1.3 fields this version does not
     * know (an unknown mode or flag, a limit out of range or with
     * EXCLUSIVE). */
    size_t nres = sizeof ((shmlease_acquire_opts *)0)->reserved_0 +
                  sizeof ((shmlease_acquire_opts *)0)->reserved_1;
    for (size_t i = 0; i < nres + 5; i++) {
        shmlease_acquire_opts ao;
        memset(&ao, 0, sizeof ao);
        ao.ttl_ms = 60000;
        if (i < sizeof ao.reserved_0)
            ((unsigned char *)ao.reserved_0)[i] = 0x80;
        else if (i < nres)
            ((unsigned char *)ao.reserved_1)[i - sizeof ao.reserved_0] = 0x80;
        else if (i == nres)
            ao.mode = 2;
        else if (i == nres + 1)
            ao.flags = 1u << 31;
        else if (i == nres + 2)
            ao.limit = 1;                          /* with EXCLUSIVE */
        else if (i == nres + 3) {
            ao.mode = SHMLEASE_SHARED;
            ao.limit = SHMLEASE_LIMIT_MAX + 1;
        } else
            ao.wait_ms = -2;
        shmlease_lease l;
        assert_int_equal(shmlease_acquire(t, "k", &ao, &l), -EINVAL);
        assert_int_equal(shmlease_with(t, "k", &ao, never_called, &called), -EINVAL);
    }
    assert_int_equal(called, 0);
    shmlease_info info;
    assert_int_equal(shmlease_inspect(t, "k", &info), -ENOENT);
    assert_int_equal(shmlease_stats_get(t, &after), 0);
    assert_int_equal(after.acquisitions, before.acquisitions);
    assert_int_equal(after.fencing_counter, before.fencing_counter);
    assert_int_equal(after.live_keys, before.live_keys);

    shmlease_close(t);
    assert_int_equal(shmlease_unlink(name), 0);
}

/* What the library fills has its reserved members zero, whatever was there. */
static void test_reserved_members_filled_are_zero(void **state)
{
    (void)state;
    const char *name = table_name("out");
    shmlease_table *t;
    assert_int_equal(shmlease_open(name, NULL, &t), 0);
    shmlease_acquire_opts o;
    memset(&o, 0, sizeof o);
    o.ttl_ms = 60000;
    shmlease_lease l;
    assert_int_equal(shmlease_acquire(t, "k", &o, &l), 0);

    shmlease_info info;
    memset(&info, 0xa5, sizeof info);
    assert_int_equal(shmlease_inspect(t, "k", &info), 0);
    assert_true(all_zero(info.reserved_0, sizeof info.reserved_0));
    int seen = 0;
    assert_int_equal(shmlease_foreach(t, reserved_zero_cb, &seen), 0);
    assert_int_equal(seen, 1);

    shmlease_stats st;
    memset(&st, 0xa5, sizeof st);
    assert_int_equal(shmlease_stats_get(t, &st), 0);
    assert_true(all_zero(st.reserved_0, sizeof st.reserved_0));
    assert_true(all_zero(st.reserved_1, sizeof st.reserved_1));

    assert_int_equal(shmlease_release(t, &l), 0);
    shmlease_close(t);
    assert_int_equal(shmlease_unlink(name), 0);
}

/* ---- version ------------------------------------------------------------------ */

_Static_assert(SHMLEASE_VERSION_NUMBER ==
                   ((SHMLEASE_VERSION_MAJOR << 16) | (SHMLEASE_VERSION_MINOR << 8) |
                    SHMLEASE_VERSION_PATCH),
               "SHMLEASE_VERSION_NUMBER encodes major.minor.patch");
_Static_assert(SHMLEASE_VERSION_ENCODE(1, 1, 0) == 0x010100, "encoding");
#if SHMLEASE_VERSION_NUMBER < SHMLEASE_VERSION_ENCODE(1, 1, 0)
#error "SHMLEASE_VERSION_NUMBER must be usable in #if"
#endif

static void test_version_string_matches_the_header(void **state)
{
    (void)state;
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", SHMLEASE_VERSION_MAJOR, SHMLEASE_VERSION_MINOR,
             SHMLEASE_VERSION_PATCH);
    assert_string_equal(SHMLEASE_VERSION_STRING, want);
    assert_string_equal(shmlease_version(), want);
    /* A static string: the same pointer every time. */
    assert_ptr_equal(shmlease_version(), shmlease_version());
}

static void test_version_number_matches_the_header(void **state)
{
    (void)state;
    assert_int_equal(shmlease_version_number(), SHMLEASE_VERSION_NUMBER);
    unsigned major, minor, patch;
    assert_int_equal(sscanf(shmlease_version(), "%u.%u.%u", &major, &minor, &patch), 3);
    assert_int_equal(shmlease_version_number(), (major << 16) | (minor << 8) | patch);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layouts_are_checked_on_this_abi),
        cmocka_unit_test(test_reserved_options_nonzero_is_einval),
        cmocka_unit_test(test_reserved_members_filled_are_zero),
        cmocka_unit_test(test_version_string_matches_the_header),
        cmocka_unit_test(test_version_number_matches_the_header),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
