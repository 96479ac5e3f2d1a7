/*
 * The in-process handle of a table (struct shmlease_table): where the
 * segment is mapped, the lock file's descriptor, the clock, and this
 * process's registration. Opened and closed in open.c; listed for fork() in
 * handles.c.
 */
#ifndef SHMLEASE_TABLE_H
#define SHMLEASE_TABLE_H

#include "atomics.h"
#include "format.h"
#include "proc.h"

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

struct shmlease_table {
    int       fd;             /* the LOCK FILE, O_CLOEXEC (read-write handles:
                                 O_RDWR; read-only ones: O_RDONLY when allowed,
                                 else -1); its open file description holds our
                                 registry byte lock. Never mapped. Every handle
                                 descriptor (this and sfd) is created, replaced
                                 and closed only under the global handle-list
                                 lock, so that fork() never copies a descriptor
                                 the fork handler does not know of */
    int       sfd;            /* the segment, only while opening (closed once
                                 mapped: the mapping is all we need) */
    int       opening;        /* shmlease_open() has not returned it yet */
    int       readonly;
    int       placed;         /* 1 + the process's place it is mapped at
                                 (handles.c), or 0 */
    uint8_t  *map;
    size_t    map_size;
    struct shm_header *hdr;
    struct shm_reg    *reg;
    uint32_t          *waits;         /* [SHM_REG_SLOTS][SHM_WAIT_RECORDS] */
    uint64_t          *buckets;
    struct shm_entry  *entries;
    uint32_t  capacity;
    uint32_t  nbuckets;
    uint64_t  created_at;
    uint64_t  epoch;
    uint64_t  (*clock_ms)(void *);
    void     *clock_ctx;
    int       fake_clock;     /* an injected clock: sleep in short slices */
    uint64_t  my_pidns;
    uid_t     euid;           /* the opener's effective uid, read once at open
                                 (owner checks, the registry slot's uid) */

    pthread_mutex_t lock;     /* in-process: serialises (re)registration */
    /* Our registration, one word so that threads read it whole (atomics):
     * see regword_make() below. */
    uint64_t  regword;
    int       claimed;        /* a lease was claimed through this registration
                                 (atomic; lets close skip the sweep) */
    ino_t     ino;            /* the segment */
    dev_t     dev;
    ino_t     lk_ino;         /* the lock file (as the header records it) */
    dev_t     lk_dev;

    struct shmlease_table *next;   /* all handles, for the fork handler */
    struct rtable *remote;    /* a Redis-backed handle (redis.h): every other
                                 field but name and readonly is unused */
    char      name[SHMLEASE_NAME_MAX + 1];
};

/*
 * The registration word: which registry slot this handle holds, valid only
 * in the process (fork generation) that registered it, and which
 * registration of that slot it is (the slot's generation).
 *   bits  0..15  registry slot, 0 = not registered
 *   bits 16..31  fork generation at registration (low 16 bits)
 *   bits 32..63  the slot's registration generation (low 32 bits)
 */
#define REGWORD_SLOT_BITS 16
#define REGWORD_FORK_SHIFT 16
#define REGWORD_GEN_SHIFT 32
#define REGWORD_LOW16 UINT64_C(0xffff)
_Static_assert(SHM_REG_SLOTS <= (1u << REGWORD_SLOT_BITS), "a registry slot fits the registration word");

static inline uint64_t regword_make(uint32_t slot, unsigned fork_gen, uint64_t slot_gen)
{
    return (slot_gen << REGWORD_GEN_SHIFT) | (((uint64_t)fork_gen & REGWORD_LOW16) << REGWORD_FORK_SHIFT) |
           (slot & REGWORD_LOW16);
}
static inline uint64_t handle_regword(const shmlease_table *t) { return ld_acquire(&t->regword); }
/* The registry slot of registration RW if it is usable in this process, else 0. */
static inline uint32_t regword_slot(uint64_t rw)
{
    uint64_t fg = ld_relaxed(&shmlease__fork_gen) & REGWORD_LOW16;
    return ((rw >> REGWORD_FORK_SHIFT) & REGWORD_LOW16) == fg ? (uint32_t)(rw & REGWORD_LOW16) : 0;
}
/* This handle's registry slot in this process, 0 if not (yet) registered. */
static inline uint32_t handle_slot(const shmlease_table *t) { return regword_slot(handle_regword(t)); }

/* Statistics: relaxed atomic adds on the header (FIELD: hot.x or cold.x). */
#define stats_inc(t, field) ((void)add_relaxed(&(t)->hdr->field, 1))

#endif
