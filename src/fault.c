/* Test-only fault points (see fault.h and the list, fault_points.def).
 * Empty unless SHMLEASE_FAULT_POINTS. */
#include "fault.h"
#include "atomics.h"
#include "compiler.h"

#include <pthread.h>

#ifdef SHMLEASE_FAULT_POINTS
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char g_point[64];
static int g_action;
static unsigned g_hit, g_count;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const g_points[] = {
#define SHMLEASE_FAULT_POINT(name, description) name,
#include "fault_points.def"
#undef SHMLEASE_FAULT_POINT
};

SHM_API int shmlease__fault_known(const char *point)
{
    for (size_t i = 0; i < sizeof g_points / sizeof g_points[0]; i++)
        if (strcmp(point, g_points[i]) == 0)
            return 1;
    return 0;
}

/* A misspelt point would never fire and the test arming it would pass for
 * the wrong reason: stop here instead. */
static _Noreturn void unknown_point(const char *point, const char *where)
{
    fprintf(stderr, "shmlease: %s: unknown fault point \"%s\" (the points are listed in "
            "src/fault_points.def)\n", where, point);
    fflush(stderr);
    abort();
}

SHM_API void shmlease__fault_arm(const char *point, int action, unsigned hit)
{
    if (point && action != SHMLEASE_FAULT_NONE && !shmlease__fault_known(point))
        unknown_point(point, "shmlease__fault_arm");
    pthread_mutex_lock(&g_lock);
    if (point && action != SHMLEASE_FAULT_NONE) {
        strncpy(g_point, point, sizeof g_point - 1);
        g_point[sizeof g_point - 1] = 0;
        g_action = action;
        g_hit = hit ? hit : 1;
    } else {
        g_point[0] = 0;
        g_action = SHMLEASE_FAULT_NONE;
    }
    g_count = 0;
    pthread_mutex_unlock(&g_lock);
}

void shmlease__fault_from_env(void)
{
    static int done;
    if (xchg_acqrel(&done, 1))
        return;
    const char *env = getenv("SHMLEASE_FAULT");
    if (!env || !*env)
        return;
    char buf[128];
    strncpy(buf, env, sizeof buf - 1);
    buf[sizeof buf - 1] = 0;
    char *action = strchr(buf, ':');
    int act = SHMLEASE_FAULT_KILL;
    unsigned hit = 1;
    if (action) {
        *action++ = 0;
        char *n = strchr(action, ':');
        if (n) {
            *n++ = 0;
            hit = (unsigned)strtoul(n, NULL, 10);
        }
        if (!strcmp(action, "stop"))
            act = SHMLEASE_FAULT_STOP;
        else if (!strcmp(action, "sleep"))
            act = SHMLEASE_FAULT_SLEEP;
    }
    if (!shmlease__fault_known(buf))
        unknown_point(buf, "SHMLEASE_FAULT");
    shmlease__fault_arm(buf, act, hit);
}

void shmlease__fault_hit(const char *point)
{
    if (ld_relaxed(&g_action) == SHMLEASE_FAULT_NONE)
        return;
    int fire = 0, act;
    /* Armed: this process is under test, and a call site naming an
     * unlisted point would make the arming of its real name miss. */
    if (!shmlease__fault_known(point))
        unknown_point(point, "fault point hit");
    pthread_mutex_lock(&g_lock);
    act = g_action;
    if (act != SHMLEASE_FAULT_NONE && strcmp(point, g_point) == 0 && ++g_count == g_hit)
        fire = 1;
    pthread_mutex_unlock(&g_lock);
    if (!fire)
        return;
    switch (act) {
    case SHMLEASE_FAULT_KILL:
        raise(SIGKILL);
        break;
    case SHMLEASE_FAULT_STOP:
        raise(SIGSTOP);
        break;
    case SHMLEASE_FAULT_SLEEP: {
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
        break;
    }
    }
}
#else
typedef int shmlease_fault_points_disabled;
#endif
