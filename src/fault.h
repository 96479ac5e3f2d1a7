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
 * The points (keep this list in step with the SHMLEASE_FAULT() calls):
 *   init.lock_file         an opener holds the init lock on the lock file, the
 *                          segment not opened (nor created) yet
 *   init.after_lock        the initialiser holds the init lock, nothing written
 *   init.after_fallocate   space reserved, header not written
 *   init.after_mutexes     robust mutexes initialised, not yet READY
 *   registry.locked        registry mutex held, before any change
 *   registry.after_sweep   a dead slot's leases freed, slot not yet taken
 *   registry.after_claim   slot marked in use, before the mutex is released
 *   acquire.after_cas      state word claimed, token not yet fetched/published
 *   acquire.after_token    token fetched, not yet published
 *   publish.mid            publication block being written (its seqlock odd)
 *   renew.before_cas       just before the renew CAS
 *   renew.after_cas        renew CAS done, the clock not yet read again
 *   release.before_cas     just before the release CAS
 *   release.after_cas      release CAS done, the clock not yet read again
 *   index.locked           index mutex held, before any change
 *   insert.after_pop       entry taken off the free list
 *   insert.after_key       key written into the entry, state still RETIRED
 *   insert.after_state     entry state HELD, not yet in the index
 *   insert.mid_index       index_seq odd: the bucket change is under way
 *   insert.after_bucket    entry in the index, live count not updated
 *   retire.after_cas       entry state RETIRED, still in the index
 *   retire.after_unlink    removed from the index, not on the free list
 *   recover.during         inside the recovery of a structure after EOWNERDEAD
 *   lock.before_record     a structural mutex taken, its holder record not yet written
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
 * Only one point is armed at a time; NULL disarms. */
void shmlease__fault_arm(const char *point, int action, unsigned hit);
void shmlease__fault_hit(const char *point);
void shmlease__fault_from_env(void);
#define SHMLEASE_FAULT(point) shmlease__fault_hit(point)
#define SHMLEASE_HAVE_FAULT_POINTS 1
#else
#define SHMLEASE_FAULT(point) ((void)0)
#define SHMLEASE_HAVE_FAULT_POINTS 0
#endif

#endif
