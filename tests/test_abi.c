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

/* ---- version ---------------------------------------------------------------- */

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
        cmocka_unit_test(test_version_string_matches_the_header),
        cmocka_unit_test(test_version_number_matches_the_header),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
