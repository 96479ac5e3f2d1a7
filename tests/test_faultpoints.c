/*
 * The fault-point list, src/fault_points.def, is the only list: every
 * SHMLEASE_FAULT("name") call in src/ names a listed point, every listed
 * point has a call, and arming a name that is not listed aborts with a
 * message naming it (from code and from SHMLEASE_FAULT in the environment).
 *
 * ctest: faultpoints.listed (the calls and the list agree), faultpoints.unknown
 * (unknown names fail loudly).
 */
#include "testutil.h"

#include <dirent.h>
#include <poll.h>
#include <sys/stat.h>

#ifndef SHMLEASE_SOURCE_DIR
#error "SHMLEASE_SOURCE_DIR (the src/ directory) must be defined by the build"
#endif

static const char *const listed[] = {
#define SHMLEASE_FAULT_POINT(name, description) name,
#include "fault_points.def"
#undef SHMLEASE_FAULT_POINT
};
enum { NLISTED = sizeof listed / sizeof listed[0] };

/* ---- the calls in src/ ------------------------------------------------------ */

#define MAX_CALLS 256

struct call {
    char point[64];
    char where[540];   /* file:line */
};

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Overwrites the comments of C source TEXT with spaces (newlines kept), so
 * that a comment mentioning the macro is not taken for a call. */
static void blank_comments(char *text)
{
    for (char *p = text; *p; p++) {
        if (p[0] == '/' && p[1] == '*') {
            char *end = strstr(p + 2, "*/");
            char *stop = end ? end + 2 : p + strlen(p);
            for (; p < stop; p++)
                if (*p != '\n')
                    *p = ' ';
            p--;
        } else if (p[0] == '/' && p[1] == '/') {
            for (; *p && *p != '\n'; p++)
                *p = ' ';
            if (!*p)
                break;
        }
    }
}

/* Appends the SHMLEASE_FAULT(...) calls of one file to CALLS. A call whose
 * argument is not a string literal cannot be checked: it fails the test. */
static void scan_file(const char *path, struct call *calls, int *n)
{
    size_t len = 0;
    char *text = (char *)tu_read_file(path, &len);
    if (!text)
        fail_msg("cannot read %s", path);
    char *buf = realloc(text, len + 1);
    assert_non_null(buf);
    buf[len] = 0;
    blank_comments(buf);
    static const char macro[] = "SHMLEASE_FAULT(";
    for (char *p = strstr(buf, macro); p; p = strstr(p + 1, macro)) {
        int line = 1;
        for (char *q = buf; q < p; q++)
            line += *q == '\n';
        char *arg = p + sizeof macro - 1;
        if (*arg != '"')
            fail_msg("%s:%d: SHMLEASE_FAULT( without a string literal: the point cannot be "
                     "checked against src/fault_points.def", path, line);
        char *end = strchr(arg + 1, '"');
        if (!end || (size_t)(end - arg - 1) >= sizeof calls[0].point)
            fail_msg("%s:%d: unterminated or overlong fault point name", path, line);
        if (*n >= MAX_CALLS)
            fail_msg("more than %d SHMLEASE_FAULT calls in src/", MAX_CALLS);
        memcpy(calls[*n].point, arg + 1, (size_t)(end - arg - 1));
        calls[*n].point[end - arg - 1] = 0;
        if (snprintf(calls[*n].where, sizeof calls[*n].where, "%s:%d", path, line) < 0)
            calls[*n].where[0] = 0;
        (*n)++;
    }
    free(buf);
}

/* Every .c file under DIR (recursively). */
static void scan_dir(const char *dir, struct call *calls, int *n, int *files)
{
    DIR *d = opendir(dir);
    if (!d)
        fail_msg("opendir(%s): %s", dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            scan_dir(path, calls, n, files);
        } else if (S_ISREG(st.st_mode) && ends_with(e->d_name, ".c")) {
            scan_file(path, calls, n);
            (*files)++;
        }
    }
    closedir(d);
}

static int scan_src(struct call *calls)
{
    int n = 0, files = 0;
    scan_dir(SHMLEASE_SOURCE_DIR, calls, &n, &files);
    if (files == 0)
        fail_msg("no .c file under %s", SHMLEASE_SOURCE_DIR);
    return n;
}

static int is_listed(const char *point)
{
    for (int i = 0; i < NLISTED; i++)
        if (strcmp(point, listed[i]) == 0)
            return 1;
    return 0;
}

static void test_every_fault_call_in_src_is_listed(void **state)
{
    (void)state;
    static struct call calls[MAX_CALLS];
    int n = scan_src(calls);
    TU_GT(n, 0);
    int bad = 0;
    for (int i = 0; i < n; i++) {
        if (!is_listed(calls[i].point)) {
            print_error("%s: SHMLEASE_FAULT(\"%s\"): not in src/fault_points.def\n",
                        calls[i].where, calls[i].point);
            bad++;
        }
    }
    TU_EQ(bad, 0);
}

static void test_every_listed_point_has_a_call_in_src(void **state)
{
    (void)state;
    static struct call calls[MAX_CALLS];
    int n = scan_src(calls);
    int missing = 0;
    for (int i = 0; i < NLISTED; i++) {
        int found = 0;
        for (int k = 0; k < n && !found; k++)
            found = strcmp(calls[k].point, listed[i]) == 0;
        if (!found) {
            print_error("src/fault_points.def lists \"%s\", but no SHMLEASE_FAULT(\"%s\") "
                        "call in src/ reaches it\n", listed[i], listed[i]);
            missing++;
        }
        for (int k = 0; k < i; k++)
            if (strcmp(listed[k], listed[i]) == 0)
                fail_msg("src/fault_points.def lists \"%s\" twice", listed[i]);
    }
    TU_EQ(missing, 0);
}

static void test_every_listed_point_can_be_armed(void **state)
{
    (void)state;
    TU_REQUIRE_FAULT_POINTS();
#if SHMLEASE_HAVE_FAULT_POINTS
    for (int i = 0; i < NLISTED; i++) {
        TU_EQ(shmlease__fault_known(listed[i]), 1);
        shmlease__fault_arm(listed[i], SHMLEASE_FAULT_KILL, 1000000);   /* never reached */
        shmlease__fault_arm(NULL, SHMLEASE_FAULT_NONE, 0);
    }
    TU_EQ(shmlease__fault_known("no.such_point"), 0);
    TU_EQ(shmlease__fault_known("init.lock_fil"), 0);
#endif
}

/* ---- unknown names abort ---------------------------------------------------- */

/* Runs FN in a child whose stderr goes into a pipe; expects it to die of
 * SIGABRT with a message that names POINT. */
static void expect_abort_naming(void (*fn)(const char *), const char *point)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = tu_fork();
    if (pid == 0) {
        close(p[0]);
        TU_CK(dup2(p[1], STDERR_FILENO) == STDERR_FILENO);
        fn(point);
        _exit(0);   /* not reached: the unknown name aborts */
    }
    close(p[1]);
    char msg[1024];
    size_t got = 0;
    for (;;) {
        struct pollfd pfd = { p[0], POLLIN, 0 };
        if (poll(&pfd, 1, 20000) <= 0)
            break;
        ssize_t r = read(p[0], msg + got, sizeof msg - 1 - got);
        if (r <= 0)
            break;
        got += (size_t)r;
        if (got == sizeof msg - 1)
            break;
    }
    msg[got] = 0;
    close(p[0]);
    tu_expect_signal(pid, SIGABRT);
    char quoted[80];
    snprintf(quoted, sizeof quoted, "\"%s\"", point);
    if (!strstr(msg, quoted) || !strstr(msg, "unknown fault point"))
        fail_msg("the abort message does not name the point %s: \"%s\"", quoted, msg);
}

static void arm_in_code(const char *point)
{
    tu_fault_arm(point, SHMLEASE_FAULT_KILL, 1);
}

static void arm_from_environment(const char *point)
{
    char env[128];
    snprintf(env, sizeof env, "%s:stop:1", point);
    TU_CK(setenv("SHMLEASE_FAULT", env, 1) == 0);
    shmlease_table *t = NULL;
    shmlease_open(tu_name("envbad"), NULL, &t);   /* reads SHMLEASE_FAULT first */
}

static void test_arming_an_unknown_point_aborts_naming_it(void **state)
{
    (void)state;
    TU_REQUIRE_FAULT_POINTS();
    expect_abort_naming(arm_in_code, "insert.after_pops");
    expect_abort_naming(arm_in_code, "bad");
}

static void test_unknown_point_in_environment_aborts_naming_it(void **state)
{
    (void)state;
    TU_REQUIRE_FAULT_POINTS();
    expect_abort_naming(arm_from_environment, "bad");
    expect_abort_naming(arm_from_environment, "index.lock");
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        TU_TEST(test_every_fault_call_in_src_is_listed),
        TU_TEST(test_every_listed_point_has_a_call_in_src),
        TU_TEST(test_every_listed_point_can_be_armed),
        TU_TEST(test_arming_an_unknown_point_aborts_naming_it),
        TU_TEST(test_unknown_point_in_environment_aborts_naming_it),
    };
    return TU_RUN(tests);
}
