/*
 * The registry: one slot per attached read-write handle (liveness.c says
 * whether a slot's holder lives).
 *
 * A slot is reused only after its previous user is dead (or closed), and only
 * after every lease still naming it as owner has been freed, so a new
 * registrant never inherits a dead process's leases: a closing user frees
 * its own before it marks the slot FREE; a slot left ACTIVE by a user that
 * died is swept by the next registrant ("sweep"). Registration and
 * sweep happen under reg_mutex; the release of a slot at close takes no lock
 * (only the holder of the slot's byte lock writes the slot). A crash anywhere
 * leaves a slot that is either not ACTIVE or ACTIVE without a lock (dead), and
 * the sweep is simply redone on the next reuse.
 */
#include "registry.h"
#include "fault.h"
#include "index.h"
#include "liveness.h"
#include "lockfile.h"
#include "mutex.h"
#include "proc.h"
#include "state.h"
#include "wait.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* Frees every lease whose word names IDX as owner. Each is one CAS from the
 * state we saw to FREE; a concurrent takeover simply wins. */
static void free_if_owner(shmlease_table *t, uint32_t entry, void *arg)
{
    uint32_t idx = *(const uint32_t *)arg;
    struct shm_entry *e = &t->entries[entry];
    for (struct lstate s = ls_load(e); sw_kind(s.w) == SW_HELD && sw_owner(s.w) == idx; s = ls_load(e)) {
        if (ls_cas(e, s, (struct lstate){sw_free_aux(sw_aux(s.w)), s.c})) {
            shmlease__wake_waiters(e, 1);
            break;
        }
    }
}

void shmlease__free_owner_leases(shmlease_table *t, uint32_t idx)
{
    for (uint32_t i = 0; i < t->capacity; i++)
        free_if_owner(t, i, &idx);
}

/* At close: frees the leases still held through T, registered in slot IDX.
 * A handle that claimed nothing since it registered holds nothing (a slot's
 * earlier user's leases were swept when T took it). Otherwise each of its
 * leases is in the index: its own inserts completed before close (close
 * never runs beside another call on the handle), and an entry leaves the
 * index only once retired, i.e. no longer HELD. So a walk of the index (a
 * few pages) serves instead of reading every entry of the table, unless the
 * index keeps changing under the walk. */
static void free_own_leases(shmlease_table *t, uint32_t idx)
{
    if (!ld_relaxed(&t->claimed))
        return;
    if (shmlease__index_walk(t, free_if_owner, &idx) != 0)
        shmlease__free_owner_leases(t, idx);
}

/* Repair after a registrant died holding reg_mutex: slots are committed by
 * their state word, locks are kernel-held, sweeps are redone on reuse; only
 * the intent record and the hint need resetting. */
void shmlease__reg_repair(shmlease_table *t)
{
    struct shm_header *h = t->hdr;
    h->reg_intent.op = SHM_INTENT_NONE;
    uint32_t hint = ld_relaxed(&h->reg_hint);
    if (hint == 0 || hint >= SHM_REG_SLOTS)
        st_relaxed(&h->reg_hint, 1);
}

static int try_claim_slot(shmlease_table *t, uint32_t idx, const struct shmlease__self *me)
{
    struct shm_header *h = t->hdr;
    struct shm_reg *r = &t->reg[idx];
    uint32_t state = ld_acquire(&r->state);
    if (state == SHM_REG_ACTIVE && shmlease__alive(t, idx) != 0)
        return 0;                           /* in use (or cannot tell) */
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET,
                       .l_start = (off_t)shmlease__reg_lock_off(idx), .l_len = 1};
    if (fcntl(t->fd, F_OFD_SETLK, &fl) != 0)
        return 0;                           /* someone alive holds it */
    if (state == SHM_REG_ACTIVE) {
        /* Its user died attached: no lease may still name this slot. (A
         * FREE slot's user closed it, and close freed its leases first, with
         * a release store of FREE that our acquire load of state saw; a user
         * killed during close left it ACTIVE.) A full scan: a user killed
         * between an insert's commit and its bucket left a HELD entry that
         * only the entries themselves show. */
        h->reg_intent = (struct shm_intent){SHM_INTENT_SWEEP, idx, (uint32_t)me->pid, 0};
        shmlease__free_owner_leases(t, idx);
        SHMLEASE_FAULT("registry.after_sweep");
    }
    h->reg_intent = (struct shm_intent){SHM_INTENT_REGISTER, idx, (uint32_t)me->pid, 0};
    /* A dead user's wait records. A FREE slot's are zero already (each wait
     * clears its record before it returns, and close never runs beside
     * another call on the handle), and their page is left untouched. */
    for (uint32_t i = 0; state == SHM_REG_ACTIVE && i < SHM_WAIT_RECORDS; i++)
        st_relaxed(&t->waits[(size_t)idx * SHM_WAIT_RECORDS + i], 0);
    /* Readers (inspection, waiters) read these without a lock: atomic stores,
     * published by the release store of the generation and the state. */
    st_relaxed(&r->pid, me->pid);
    st_relaxed(&r->start_time, me->start_time);
    st_relaxed(&r->pidns_ino, me->pidns);
    st_relaxed(&r->uid, (uint32_t)t->euid);
    st_release(&r->gen, ld_relaxed(&r->gen) + 1);
    st_release(&r->state, SHM_REG_ACTIVE);
    SHMLEASE_FAULT("registry.after_claim");
    h->reg_intent.op = SHM_INTENT_NONE;
    return 1;
}

/* The first slot from HINT that try_claim_slot takes, among the FREE ones
 * (never used, or closed by their user: no sweep) in pass 0, among the
 * ACTIVE ones (taken only if their user died; swept then) in pass 1. */
static uint32_t find_slot(shmlease_table *t, uint32_t hint, int pass, const struct shmlease__self *me)
{
    for (uint32_t n = 0; n < SHM_REG_SLOTS - 1; n++) {
        uint32_t idx = 1 + (hint - 1 + n) % (SHM_REG_SLOTS - 1);
        int is_free = ld_acquire(&t->reg[idx].state) == SHM_REG_FREE;
        if (is_free == (pass == 0) && try_claim_slot(t, idx, me))
            return idx;
    }
    return 0;
}

/* The slot the search starts from (reg_hint, read relaxed: it is also read
 * before the lock, by prefault()). */
static uint32_t hint_slot(const struct shm_header *h)
{
    uint32_t hint = ld_relaxed(&h->reg_hint);
    return hint == 0 || hint >= SHM_REG_SLOTS ? 1 : hint;
}

/* Registration writes, besides the header (made present at attach), most
 * likely the slot at the hint: its page is made present and writable by
 * madvise(MADV_POPULATE_WRITE), one system call, instead of a page fault (a
 * trap, dearer than a system call, most of all on a virtual machine). Only
 * a hint: a kernel without it (before 5.14) says EINVAL, and the page
 * faults in as before. */
static void prefault(const shmlease_table *t)
{
#ifdef MADV_POPULATE_WRITE
    long pagesize = sysconf(_SC_PAGESIZE);
    uintptr_t page = pagesize > 0 ? (uintptr_t)pagesize : 4096;
    uintptr_t slot = (uintptr_t)&t->reg[hint_slot(t->hdr)] & ~(page - 1);
    madvise((void *)slot, page, MADV_POPULATE_WRITE);
#else
    (void)t;
#endif
}

static int register_handle(shmlease_table *t, uint64_t lock_ms)
{
    struct shm_header *h = t->hdr;
    const struct shmlease__self *me = shmlease__self();
    prefault(t);
    int rc = shmlease__lock_for(t, &h->reg_mutex, &h->reg_holder, shmlease__reg_repair, lock_ms);
    if (rc)
        return rc;
    SHMLEASE_FAULT("registry.locked");
    uint32_t hint = hint_slot(h);
    uint32_t found = find_slot(t, hint, 0, me);
    if (!found)
        found = find_slot(t, hint, 1, me);
    if (found) {
        st_relaxed(&h->reg_hint, found + 1 < SHM_REG_SLOTS ? found + 1 : 1);
        st_relaxed(&t->claimed, 0);        /* nothing claimed by this registration yet */
        st_release(&t->regword, regword_make(found, me->fork_gen, ld_relaxed(&t->reg[found].gen)));
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
    if (handle_slot(t) == 0) {
        st_release(&t->regword, 0);
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
    uint32_t idx = handle_slot(t);
    if (idx == 0)
        return;
    free_own_leases(t, idx);
    /* No registry lock needed: only the holder of the slot's byte lock (we)
     * writes the slot, and a registrant takes the byte only after we drop it.
     * The caller drops it by closing t->fd, the open file description's only
     * descriptor (a fork child's handler replaced the child's), which
     * releases every lock on it: an F_UNLCK first would be one more system
     * call. A registrant that sees FREE before that fails F_OFD_SETLK and
     * takes another slot. */
    st_release(&t->reg[idx].state, SHM_REG_FREE);
    st_release(&t->regword, 0);
}
