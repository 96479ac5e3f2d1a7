/*
 * Liveness (see liveness.h).
 *
 * Every read-write handle registers in one slot of the registry and, for as
 * long as it is attached, holds an OFD write lock on that slot's byte of the
 * table's lock file (lockfile.h: only those who may write the segment may
 * open that file, so a reader cannot hold, block or fake these locks). The
 * kernel drops the lock when the open file description goes away, i.e. when
 * the process dies, however it dies, whatever PID namespace it lives in, and
 * a new process that happens to get the same PID does not get the lock
 * (docs/failure-modes.md F7, F8). So "is the holder of a lease alive?" is
 * answered by F_OFD_GETLK on the holder's byte: a conflicting lock means
 * alive, none means dead. PIDs, start times and PID-namespace inodes are kept
 * for display (and as the death watch's wake-up hint), never as a proof. A fork child shares its parent's open file descriptions
 * only until its fork handler replaces the handle descriptors, and the
 * parent's fork() returns only after that (handles.c), so a child cannot
 * keep a dead parent looking alive.
 *
 * A read-only handle of a user who may not open the lock file asks the
 * kernel another way: /proc/locks lists every lock with its file's device
 * and inode; the WRITE OFD locks on the lock file (the header records its
 * inode and device) at SHM_LK_REG_BASE + i are the live registrations. Read
 * once per inspection call (struct shmlease__liveview); no answer (no /proc)
 * is "cannot tell" (-1), never a guess.
 */
#include "liveness.h"
#include "clock.h"
#include "compiler.h"
#include "lockfile.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>

/* Reads /proc/locks into LV: the slots whose byte of the lock file
 * (device DEV, inode INO) someone holds a WRITE OFD lock on. */
static void liveview_load(struct shmlease__liveview *lv, uint64_t ino, uint64_t dev)
{
    memset(lv->held, 0, sizeof lv->held);
    lv->state = -1;
    FILE *f = fopen("/proc/locks", "re");
    if (!f)
        return;
    unsigned long long want_maj = major((dev_t)dev), want_min = minor((dev_t)dev);
    char line[256];
    while (fgets(line, sizeof line, f)) {
        /* "1: OFDLCK ADVISORY  WRITE -1 00:1a:12345 4097 4097"; lines with
         * "->" are blocked waiters, not holders. Fields: 0 "N:", 1 kind,
         * 2 advisory, 3 READ/WRITE, 4 pid, 5 maj:min:inode, 6 start, 7 end. */
        if (strstr(line, "->"))
            continue;
        char *field[8], *save = NULL;
        int n = 0;
        for (char *tok = strtok_r(line, " \t\n", &save); tok && n < 8; tok = strtok_r(NULL, " \t\n", &save))
            field[n++] = tok;
        if (n != 8 || strcmp(field[1], "OFDLCK") != 0 || strcmp(field[3], "WRITE") != 0)
            continue;
        char *p = field[5], *endp;
        unsigned long long maj = strtoull(p, &endp, 16);
        if (*endp != ':')
            continue;
        unsigned long long min = strtoull(endp + 1, &endp, 16);
        if (*endp != ':')
            continue;
        unsigned long long i = strtoull(endp + 1, &endp, 10);
        if (*endp || i != ino || maj != want_maj || min != want_min)
            continue;
        unsigned long long start = strtoull(field[6], &endp, 10);
        if (*endp)
            continue;
        unsigned long long last = UINT64_MAX;
        if (strcmp(field[7], "EOF") != 0) {
            last = strtoull(field[7], &endp, 10);
            if (*endp)
                continue;
        }
        unsigned long long lo = start > SHM_LK_REG_BASE ? start : SHM_LK_REG_BASE + 1;
        unsigned long long hi = last < (unsigned long long)SHM_LK_REG_BASE + SHM_REG_SLOTS - 1 ? last
                                                                                     : SHM_LK_REG_BASE + SHM_REG_SLOTS - 1;
        for (unsigned long long b2 = lo; b2 <= hi; b2++) {
            uint32_t idx = (uint32_t)(b2 - SHM_LK_REG_BASE);      /* 1 .. SHM_REG_SLOTS - 1 */
            lv->held[idx / 8] = (uint8_t)(lv->held[idx / 8] | (1u << (idx % 8)));
        }
    }
    lv->state = ferror(f) ? -1 : 1;
    fclose(f);
}

int shmlease__alive_v(const shmlease_table *t, uint32_t idx, struct shmlease__liveview *lv)
{
    if (idx == 0 || idx >= SHM_REG_SLOTS)
        return 0;
    if (idx == handle_slot(t))
        return 1;
    if (t->fd >= 0) {
        /* Ask as a reader: only a write lock (a registered handle's)
         * conflicts; a read lock anyone else may take on the byte (a tool
         * probing it) never makes a dead holder look alive. */
        struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET,
                           .l_start = (off_t)shmlease__reg_lock_off(idx), .l_len = 1};
        if (fcntl(t->fd, F_OFD_GETLK, &fl) != 0)
            return -1;
        return fl.l_type == F_WRLCK;
    }
    if (!t->readonly)
        return -1;                     /* a fork child that lost its descriptor */
    struct shmlease__liveview one;
    if (!lv) {
        lv = &one;
        lv->state = 0;
    }
    if (lv->state == 0)
        liveview_load(lv, (uint64_t)t->lk_ino, (uint64_t)t->lk_dev);
    if (lv->state < 0)
        return -1;
    return (lv->held[idx / 8] >> (idx % 8)) & 1;
}

int shmlease__alive(const shmlease_table *t, uint32_t idx)
{
    return shmlease__alive_v(t, idx, NULL);
}

/*
 * Verdicts. A try on a key held by another process must know whether the
 * holder lives, and asking the kernel costs a system call, far more than
 * the rest of a try. So an "alive" answer is shared in the holder's registry
 * slot (format.h, alive_seen: the registration's generation and the hint
 * clock read BEFORE the question) and believed by tries for VERDICT_MS
 * after that read, by the hint clock's measure (a little less: calibration
 * error). What a verdict can do is bounded by construction:
 *  - only "alive" is shared: a verdict can only make a try answer -EBUSY,
 *    never take a key; "dead" is always the kernel's own answer, at once;
 *  - it is tied to the slot's registration (generation): a slot registered
 *    again does not inherit it;
 *  - a holder that dies is seen dead by the first try that comes more than
 *    VERDICT_MS after the last question asked before its death; waiters do
 *    not use verdicts.
 * A process that may write the segment could forge a verdict; it could as
 * well write the state word itself (tests/reliability/THREATS.md).
 */
/* Is verdict V about generation GEN, and younger than WINDOW at hint time NOW? */
static inline int verdict_fresh(uint64_t v, uint64_t gen, uint64_t now, uint64_t window)
{
    if (v >> VERDICT_GEN_SHIFT != (gen & 0xffffu))
        return 0;
    return ((now - v) & VERDICT_STAMP_MASK) < window;   /* modulo 2^48 */
}

int shmlease__alive_try(const shmlease_table *t, uint32_t idx)
{
    if (idx == 0 || idx >= SHM_REG_SLOTS || idx == handle_slot(t))
        return shmlease__alive(t, idx);
    struct shm_reg *r = &t->reg[idx];
    uint64_t per_ms = shmlease__hint_per_ms();
    uint64_t window = per_ms * VERDICT_MS - per_ms / 16;   /* ~6% for calibration error */
    uint64_t gen = ld_acquire(&r->gen);
    uint64_t now = shmlease__hint_now();
    if (likely(per_ms) && verdict_fresh(ld_relaxed(&r->alive_seen), gen, now, window))
        return 1;
    int alive = shmlease__alive(t, idx);
    /* Shared only if the slot was not registered again while we asked. */
    if (alive == 1 && per_ms && !t->readonly && ld_acquire(&r->gen) == gen)
        st_relaxed(&r->alive_seen, shmlease__verdict_make(gen, now));
    return alive;
}
