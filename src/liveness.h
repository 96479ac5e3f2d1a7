/*
 * Liveness of a registered handle: the kernel-held OFD write lock on its
 * registry slot's byte of the lock file (docs/liveness.md). Never a PID.
 */
#ifndef SHMLEASE_LIVENESS_H
#define SHMLEASE_LIVENESS_H

#include "table.h"

#include <stdint.h>

/* Is the handle registered in slot IDX alive? 1, 0, or -1 cannot tell. */
int  shmlease__alive(const shmlease_table *t, uint32_t idx);

/* shmlease__alive for a try on a key held by slot IDX: believes an "alive"
 * answer the kernel gave anyone about IDX's current registration less than
 * VERDICT_MS ago (liveness.c, "Verdicts"), else asks it and shares the answer.
 * So a holder's death frees its keys to tries within VERDICT_MS of it. A
 * waiter never uses this: it asks the kernel. */
#define VERDICT_MS 1u
int  shmlease__alive_try(const shmlease_table *t, uint32_t idx);

/* A verdict word (format.h, alive_seen): generation GEN's low 16 bits on
 * top, hint-clock STAMP's low 48 bits below. */
#define VERDICT_GEN_SHIFT 48
#define VERDICT_STAMP_MASK ((UINT64_C(1) << VERDICT_GEN_SHIFT) - 1)
static inline uint64_t shmlease__verdict_make(uint64_t gen, uint64_t stamp)
{
    return (gen << VERDICT_GEN_SHIFT) | (stamp & VERDICT_STAMP_MASK);
}

/* Liveness as a handle without the lock file sees it (a read-only handle of
 * a user who may not open it): the WRITE OFD locks on the lock file listed in
 * /proc/locks, read once per view. */
struct shmlease__liveview {
    int     state;                      /* 0 not read yet, 1 read, -1 unavailable */
    uint8_t held[SHM_REG_SLOTS / 8];        /* bit i: slot i's byte is write-locked */
};
/* shmlease__alive, reading /proc/locks at most once per view LV (NULL: once
 * per call) when T has no lock-file descriptor. */
int  shmlease__alive_v(const shmlease_table *t, uint32_t idx, struct shmlease__liveview *lv);

#endif
