/*
 * Fault points: named places in the protocol where a test can kill, stop or
 * delay the calling process, to prove that a crash at that instruction never
 * wedges the table or loses another process's lease.
 *
 * Compiled in only with -DSHMLEASE_FAULT_POINTS (the shmlease_testing library
 * that tests link; the installed libraries never have them);
 * otherwise SHMLEASE_FAULT() is empty and costs nothing.
 *
 * Arm a point in the process that should die there, either from code
 * (shmlease__fault_arm) or with the environment, read at the first
 * shmlease_open():  SHMLEASE_FAULT=point[:kill|stop|sleep][:N]
 * (N = the hit that fires, 1 = the first; "sleep" sleeps 200 ms).
 *
 * The points, with what each one interrupts, are listed once, in
 * fault_points.def (an X-macro list: SHMLEASE_FAULT_POINT(name, description)).
 * Arming a name that is not in the list aborts with a message naming it, from
 * code and from SHMLEASE_FAULT alike; so does hitting an unlisted point while
 * a point is armed. The ctest faultpoints.listed checks that the calls in src/
 * and the list name the same points.
 */
#ifndef SHMLEASE_FAULT_H
#define SHMLEASE_FAULT_H

enum shmlease_fault_action {
    SHMLEASE_FAULT_NONE  = 0,
    SHMLEASE_FAULT_KILL  = 1,   /* raise(SIGKILL) */
    SHMLEASE_FAULT_STOP  = 2,   /* raise(SIGSTOP): a paused process */
    SHMLEASE_FAULT_SLEEP = 3,   /* sleep 200 ms: widens a race window */
};

#ifdef SHMLEASE_FAULT_POINTS
/* Arms POINT in this process: ACTION at its HIT-th execution (1 = first).
 * Only one point is armed at a time; NULL disarms. POINT not in
 * fault_points.def: abort(), after a message naming it. */
void shmlease__fault_arm(const char *point, int action, unsigned hit);
void shmlease__fault_hit(const char *point);
void shmlease__fault_from_env(void);
/* 1 if POINT is in fault_points.def, else 0. */
int shmlease__fault_known(const char *point);
#define SHMLEASE_FAULT(point) shmlease__fault_hit(point)
#define SHMLEASE_HAVE_FAULT_POINTS 1
#else
#define SHMLEASE_FAULT(point) ((void)0)
#define SHMLEASE_HAVE_FAULT_POINTS 0
#endif

#endif
