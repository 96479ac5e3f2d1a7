/*
 * Liveness: the process registry.
 *
 * Every read-write handle registers in one slot of the registry and, for as
 * long as it is attached, holds an OFD write lock on that slot's byte of the
 * table's lock file (LK_REG_OFF + slot; see internal.h: only those who may
 * write the segment may open that file, so a reader cannot hold, block or
 * fake these locks). The kernel drops the lock when the open file description goes
 * away, i.e. when the process dies, however it dies, whatever PID namespace it
 * lives in, and a new process that happens to get the same PID does not get
 * the lock (PITFALLS 7, 8). So "is the holder of a lease alive?" is answered by
 * F_OFD_GETLK on the holder's byte: a conflicting lock means alive, none means
 * dead. PIDs, start times and PID-namespace inodes are kept for display only.
 * A fork child shares its parent's open file descriptions only until its
 * fork handler replaces the handle descriptors, and the parent's fork()
 * returns only after that (segment.c), so a child cannot keep a dead parent
 * looking alive.
 *
 * A read-only handle of a user who may not open the lock file asks the
 * kernel another way: /proc/locks lists every lock with its file's device
 * and inode; the WRITE OFD locks on the lock file (the header records its
 * inode and device) at LK_REG_OFF + i are the live registrations. Read once
 * per inspection call (struct shmlease__liveview); no answer (no /proc) is
 * "cannot tell" (-1), never a guess.
 *
 * A slot is reused only after its previous user is dead (or closed), and only
 * after every lease still naming it as owner has been freed ("sweep"), so a
 * new registrant never inherits a dead process's leases. Registration, sweep
 * and release of a slot happen under reg_mutex; a crash anywhere in them
 * leaves a slot that is either not ACTIVE or ACTIVE without a lock (dead), and
 * the sweep is simply redone on the next reuse.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* Field 22 (starttime) of /proc/PID/stat (0 = self), 0 if unknown. */
uint64_t shmlease__proc_start_time(int32_t pid)
{
    char path[64];
    if (pid)
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    else
        snprintf(path, sizeof path, "/proc/self/stat");
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    /* The command name may hold spaces and parentheses: parse from the last ')'. */
    char *p = strrchr(buf, ')');
    if (!p)
        return 0;
    p++;
    /* After ')': field 3 (state) ... field 22 (starttime) is the 20th token. */
    char *save = NULL;
    char *tok = strtok_r(p, " ", &save);
    for (int field = 3; tok && field < 22; field++)
        tok = strtok_r(NULL, " ", &save);
    return tok ? strtoull(tok, NULL, 10) : 0;
}

static uint64_t ns_inode(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_ino : 0;
}

const struct shmlease__self *shmlease__self(void)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static struct shmlease__self self;
    static unsigned ready;           /* fork generation + 1 of what self holds */
    unsigned gen = __atomic_load_n(&shmlease__fork_gen, __ATOMIC_RELAXED) + 1;
    if (likely(__atomic_load_n(&ready, __ATOMIC_ACQUIRE) == gen))
        return &self;
    pthread_mutex_lock(&lock);
    if (__atomic_load_n(&ready, __ATOMIC_RELAXED) != gen) {
        self.fork_gen = gen - 1;
        self.pid = (int32_t)getpid();
        self.start_time = shmlease__proc_start_time(0);
        self.pidns = ns_inode("/proc/self/ns/pid");
        self.timens = ns_inode("/proc/self/ns/time");
        __atomic_store_n(&ready, gen, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&lock);
    return &self;
}

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
        unsigned long long lo = start > LK_REG_OFF ? start : LK_REG_OFF + 1;
        unsigned long long hi = last < (unsigned long long)LK_REG_OFF + REG_SLOTS - 1 ? last
                                                                                     : LK_REG_OFF + REG_SLOTS - 1;
        for (unsigned long long b2 = lo; b2 <= hi; b2++) {
            uint32_t idx = (uint32_t)(b2 - LK_REG_OFF);      /* 1 .. REG_SLOTS - 1 */
            lv->held[idx / 8] = (uint8_t)(lv->held[idx / 8] | (1u << (idx % 8)));
        }
    }
    lv->state = ferror(f) ? -1 : 1;
    fclose(f);
}

int shmlease__alive_v(const shmlease_table *t, uint32_t idx, struct shmlease__liveview *lv)
{
    if (idx == 0 || idx >= REG_SLOTS)
        return 0;
    if (idx == my_slot(t))
        return 1;
    if (t->fd >= 0) {
        /* Ask as a reader: only a write lock (a registered handle's)
         * conflicts, so a read lock that some waiter's death watch holds for
         * an instant on a dead holder's byte does not make it look alive. */
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

/* Frees every lease whose word names IDX as owner. Each is one CAS from the
 * state we saw to FREE; a concurrent takeover simply wins. */
void shmlease__free_owner_leases(shmlease_table *t, uint32_t idx)
{
    for (uint32_t i = 0; i < t->capacity; i++) {
        struct shm_entry *e = &t->entries[i];
        for (struct lstate s = state_load(e); w_kind(s.w) == W_HELD && w_owner(s.w) == idx;
             s = state_load(e)) {
            if (state_cas(e, s, (struct lstate){W_FREE_WORD, s.c})) {
                shmlease__wake_waiters(e, 1);
                break;
            }
        }
    }
}

/* Repair after a registrant died holding reg_mutex: slots are committed by
 * their state word, locks are kernel-held, sweeps are redone on reuse; only
 * the intent record and the hint need resetting. */
void shmlease__reg_repair(shmlease_table *t)
{
    struct shm_header *h = t->hdr;
    h->reg_intent.op = INTENT_NONE;
    if (h->reg_hint == 0 || h->reg_hint >= REG_SLOTS)
        h->reg_hint = 1;
}

static int try_claim_slot(shmlease_table *t, uint32_t idx, const struct shmlease__self *me)
{
    struct shm_header *h = t->hdr;
    struct shm_reg *r = &t->reg[idx];
    uint32_t state = __atomic_load_n(&r->state, __ATOMIC_ACQUIRE);
    if (state == REG_ACTIVE && shmlease__alive(t, idx) != 0)
        return 0;                           /* in use (or cannot tell) */
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET,
                       .l_start = (off_t)shmlease__reg_lock_off(idx), .l_len = 1};
    if (fcntl(t->fd, F_OFD_SETLK, &fl) != 0)
        return 0;                           /* someone alive holds it */
    if (__atomic_load_n(&r->gen, __ATOMIC_RELAXED) != 0) {
        /* Reused: no lease may still name this slot. */
        h->reg_intent = (struct shm_intent){INTENT_SWEEP, idx, (uint32_t)me->pid, 0};
        shmlease__free_owner_leases(t, idx);
        SHMLEASE_FAULT("registry.after_sweep");
    }
    h->reg_intent = (struct shm_intent){INTENT_REGISTER, idx, (uint32_t)me->pid, 0};
    for (uint32_t i = 0; i < WAIT_RECORDS; i++)       /* a dead user's records */
        __atomic_store_n(&t->waits[(size_t)idx * WAIT_RECORDS + i], 0, __ATOMIC_RELAXED);
    /* Readers (inspection, waiters) read these without a lock: atomic stores,
     * published by the release store of the generation and the state. */
    __atomic_store_n(&r->pid, me->pid, __ATOMIC_RELAXED);
    __atomic_store_n(&r->start_time, me->start_time, __ATOMIC_RELAXED);
    __atomic_store_n(&r->pidns_ino, me->pidns, __ATOMIC_RELAXED);
    __atomic_store_n(&r->uid, (uint32_t)geteuid(), __ATOMIC_RELAXED);
    __atomic_store_n(&r->gen, __atomic_load_n(&r->gen, __ATOMIC_RELAXED) + 1, __ATOMIC_RELEASE);
    __atomic_store_n(&r->state, REG_ACTIVE, __ATOMIC_RELEASE);
    SHMLEASE_FAULT("registry.after_claim");
    h->reg_intent.op = INTENT_NONE;
    return 1;
}

static int register_handle(shmlease_table *t, uint64_t lock_ms)
{
    struct shm_header *h = t->hdr;
    const struct shmlease__self *me = shmlease__self();
    int rc = shmlease__lock_for(t, &h->reg_mutex, &h->reg_holder, shmlease__reg_repair, lock_ms);
    if (rc)
        return rc;
    SHMLEASE_FAULT("registry.locked");
    uint32_t hint = h->reg_hint;
    if (hint == 0 || hint >= REG_SLOTS)
        hint = 1;
    uint32_t found = 0;
    /* Prefer slots never used (no sweep), starting at the hint; then any. */
    for (int pass = 0; pass < 2 && !found; pass++) {
        for (uint32_t n = 0; n < REG_SLOTS - 1; n++) {
            uint32_t idx = 1 + (hint - 1 + n) % (REG_SLOTS - 1);
            struct shm_reg *r = &t->reg[idx];
            if (pass == 0 && __atomic_load_n(&r->gen, __ATOMIC_RELAXED) != 0)
                continue;
            if (pass == 1 && __atomic_load_n(&r->state, __ATOMIC_ACQUIRE) == REG_ACTIVE &&
                shmlease__alive(t, idx) != 0)
                continue;
            if (try_claim_slot(t, idx, me)) {
                found = idx;
                break;
            }
        }
    }
    if (found) {
        h->reg_hint = found + 1 < REG_SLOTS ? found + 1 : 1;
        uint64_t fg = me->fork_gen & 0xffffu;
        uint64_t gen = __atomic_load_n(&t->reg[found].gen, __ATOMIC_RELAXED);
        __atomic_store_n(&t->regword, (gen << 32) | (fg << 16) | found, __ATOMIC_RELEASE);
    }
    shmlease__unlock(&h->reg_mutex, &h->reg_holder);
    return found ? 0 : -EUSERS;
}

/* Slow path of every lease call: registers the handle the first time, and
 * again in a fork child. Waits at most LOCK_MS for the registry lock. */
int shmlease__ensure_registered(shmlease_table *t, uint64_t lock_ms)
{
    pthread_mutex_lock(&t->lock);
    int rc = 0;
    if (my_slot(t) == 0) {
        __atomic_store_n(&t->regword, 0, __ATOMIC_RELEASE);
        if (t->fd < 0)
            rc = shmlease__reopen_fd(t);
        if (rc == 0)
            rc = register_handle(t, lock_ms);
    }
    pthread_mutex_unlock(&t->lock);
    return rc;
}

void shmlease__unregister(shmlease_table *t)
{
    uint32_t idx = my_slot(t);
    if (idx == 0)
        return;
    shmlease__free_owner_leases(t, idx);
    /* No registry lock needed: only the holder of the slot's byte lock (we)
     * writes the slot, and a registrant takes the byte only after we drop it. */
    __atomic_store_n(&t->reg[idx].state, REG_FREE, __ATOMIC_RELEASE);
    struct flock fl = {.l_type = F_UNLCK, .l_whence = SEEK_SET,
                       .l_start = (off_t)shmlease__reg_lock_off(idx), .l_len = 1};
    fcntl(t->fd, F_OFD_SETLK, &fl);
    __atomic_store_n(&t->regword, 0, __ATOMIC_RELEASE);
}
