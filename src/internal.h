/*
 * shmlease internals: the shared-memory layout (a file format: every process
 * that maps a table agrees on it byte for byte) and the in-process handle.
 *
 * Segment "/shmlease.NAME":
 *
 *   offset 0            struct shm_header        (4096 bytes)
 *   reg_off             struct shm_reg[4096]     process registry, slot 0 unused
 *   waits_off           uint32_t[4096][16]       wait records: entry + 1 that
 *                                                a thread of that handle sleeps on
 *   index_off           uint64_t bucket[nbuckets] key -> entry, open addressing
 *   entries_off         struct shm_entry[capacity] one per live key
 *
 * Nothing in the segment is a pointer; every field has a fixed width; the
 * format word (below) changes whenever a size the layout depends on changes,
 * so two builds that disagree refuse each other's segments.
 *
 * The lock file "/shmlease-lk.NAME" (/dev/shm/shmlease-lk.NAME), empty, never
 * mapped, readable and writable only by the classes (user, group, other) that
 * may write the segment (see lk_mode() in segment.c): every file lock of the
 * table lives there, never on the segment, so a process that can only read
 * the segment cannot open the lock file and so cannot take, hold or block
 * any of these locks. The header records the lock file's inode and device;
 * an attacher whose lock file is another file refuses the table (-EPROTO).
 *
 * Lock-file bytes (open-file-description locks, F_OFD_SETLK):
 *   byte INIT_LOCK_OFF          held (write) by whoever initialises the segment
 *                               or unlinks the table
 *   byte LK_REG_OFF + i         held (write) by the handle registered in slot i
 *                               for as long as it is attached: the kernel drops
 *                               it when the last descriptor of that open file
 *                               description closes, i.e. when the process dies.
 */
#ifndef SHMLEASE_INTERNAL_H
#define SHMLEASE_INTERNAL_H

#include "shmlease.h"
#include "fault.h"
#include "abi.h"

#include <pthread.h>
#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

#define SHM_API SHMLEASE_API   /* the public header's export macro */
#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#define CACHELINE 64

/* ---- header -------------------------------------------------------------- */

/* 'SHMLEASE' read as a native u64: a segment made on a machine of the other
 * byte order reads as SHM_MAGIC_SWAPPED. */
#define SHM_MAGIC          UINT64_C(0x455341454c4d4853)
#define SHM_MAGIC_SWAPPED  __builtin_bswap64(SHM_MAGIC)
#define SHM_LAYOUT_VERSION 3u

#define INIT_STATE_READY   UINT32_C(0x52454459)   /* "READY": header complete */

#define HEADER_SIZE        4096u
#define REG_SLOTS          4096u                  /* slot 0 means "nobody" */
#define WAIT_RECORDS       16u                    /* per handle: sleeping threads shown */
#define INIT_LOCK_OFF      0                      /* in the lock file */
#define LK_REG_OFF         4096u                  /* slot i: byte LK_REG_OFF + i */

/* Intent record: the structural change in progress under a robust mutex, so
 * that whoever inherits the mutex with EOWNERDEAD knows what was cut short. */
enum intent_op {
    INTENT_NONE = 0,
    INTENT_INSERT = 1,       /* a = entry */
    INTENT_RETIRE = 2,       /* a = entry */
    INTENT_REGISTER = 3,     /* a = registry slot */
    INTENT_SWEEP = 4,        /* a = registry slot whose leases are being freed */
    INTENT_RECOVER = 5,      /* a = the op being repaired */
};
struct shm_intent {
    uint32_t op;
    uint32_t a;
    uint32_t pid;            /* who wrote it, for diagnostics */
    uint32_t pad;
};

/* Who holds a structural mutex: written by the locker right after it got the
 * mutex, zeroed right before it unlocks. A waiter whose timed lock keeps
 * timing out compares it with the mutex's owner thread to tell a holder that
 * is merely slow or stopped (wait) from a mutex that nobody alive can hold,
 * i.e. a corrupted segment (-EPROTO), instead of waiting for ever. */
struct shm_lockrec {
    int32_t  pid;
    int32_t  tid;
    uint64_t start_time;     /* of pid, clock ticks since boot; 0 unknown */
    uint64_t pidns;          /* inode of the locker's PID namespace, 0 unknown */
};

/* Mutable header words, each group on its own cache line. */
struct shm_stats_hot {        /* written by every acquire (one atomic add) */
    uint64_t fence;           /* last fencing token handed out */
    uint64_t renewals;
    uint64_t pad[6];
};
struct shm_stats_cold {
    uint64_t contended, waits, timeouts, busy, expirations, reclaimed_dead,
             lost, broken, recoveries;
    uint64_t other_tokens;    /* tokens not handed to a successful acquire */
    uint64_t pad[6];
};

struct shm_header {
    /* --- immutable once init_state == READY; written by the initialiser
     *     under the init lock, read by anyone without a lock --- */
    uint64_t magic;
    uint64_t format;          /* format_word() */
    uint32_t header_size;
    uint32_t capacity;        /* entries */
    uint32_t nbuckets;        /* power of two, >= 2 * capacity */
    uint32_t reg_slots;
    uint32_t entry_size;
    uint32_t reg_size;
    uint64_t reg_off, index_off, entries_off, total_size;
    uint64_t epoch;           /* random; seeds the key hash */
    uint64_t created_at;      /* table clock at creation: deadlines count from it */
    uint64_t timens_ino;      /* creator's time namespace (inode), 0 unknown:
                                 monotonic clocks agree only inside one */
    uint8_t  boot_id[16];     /* creator's boot: clocks restart at each boot */
    uint64_t lock_ino;        /* the lock file this segment was initialised */
    uint64_t lock_dev;        /* with (st_ino, st_dev): attachers must match */
    uint32_t creator_uid;
    uint32_t checksum;        /* over the fields above */
    uint32_t init_state;      /* INIT_STATE_READY, stored last with release */
    uint32_t pad0;

    /* --- structural lock for the key index (insert, retire) --- */
    _Alignas(CACHELINE) pthread_mutex_t index_mutex;
    struct shm_lockrec index_holder;                    /* see struct shm_lockrec */
    /* Guarded by index_mutex: */
    _Alignas(CACHELINE) struct shm_intent index_intent;
    uint32_t free_head;       /* entry + 1 of the first free entry, 0: none */
    uint32_t live_count;      /* entries not RETIRED */
    uint32_t index_seq;       /* odd while buckets are being changed (readers
                                 without the lock use it as a seqlock) */
    uint32_t reap_cursor;

    /* --- structural lock for the registry --- */
    _Alignas(CACHELINE) pthread_mutex_t reg_mutex;
    struct shm_lockrec reg_holder;
    _Alignas(CACHELINE) struct shm_intent reg_intent;   /* guarded by reg_mutex */
    uint32_t reg_hint;                                  /* guarded by reg_mutex */

    _Alignas(CACHELINE) struct shm_stats_hot  hot;      /* atomics, anyone */
    _Alignas(CACHELINE) struct shm_stats_cold cold;     /* atomics, anyone */
};

/* ---- registry ------------------------------------------------------------ */

enum reg_state { REG_FREE = 0, REG_ACTIVE = 1 };

/* One per attached handle. Written only by the registering process under
 * reg_mutex (and state by close); read by anyone without a lock: the fields
 * are for display, liveness itself is the kernel-held byte lock. */
struct shm_reg {
    uint32_t state;           /* enum reg_state; written last with release */
    int32_t  pid;             /* in the registrant's PID namespace */
    uint64_t gen;             /* bumped at each registration of this slot */
    uint64_t pidns_ino;       /* inode of /proc/self/ns/pid, 0 unknown */
    uint64_t start_time;      /* /proc/self/stat field 22, 0 unknown */
    uint32_t uid;
    uint32_t pad;
    uint64_t pad2[3];
};

/* ---- entries and the lease state ------------------------------------------ */

/*
 * struct shm_entry: one key. Field rules:
 *   state, claim
 *            the lease state: 16 bytes that change together, only by a
 *            16-byte compare-and-swap (state_cas). Every change of
 *            ownership is ONE such CAS. `state` is the word described below;
 *            `claim` counts the claims of this entry: every transition that
 *            makes a new holder (acquire, takeover, insert) adds one, and
 *            nothing else changes it, so it never repeats.
 *   pub_token, pub_seq, pub_tag, meta_len, meta[]:
 *            the publication block: token and metadata of the current claim,
 *            written by the claimer after its CAS; pub_seq is odd while it
 *            is written; pub_tag is the low 32 bits of the claim it describes.
 *   waitgen  hi32: generation (bumped when the entry is reused for a new key),
 *            lo32: sleeping waiters; CAS by waiters, reset by the inserter.
 *   wake     futex word: bumped by whoever frees or changes the key's deadline
 *            while waiters sleep (only when waitgen's count is non-zero).
 *   key_seq, key_len, hash, key[]:
 *            written only under index_mutex while state is RETIRED; key_seq is
 *            odd during the write (a seqlock for lock-free readers).
 *   next_free  free-list link, under index_mutex.
 */
struct shm_entry {
    _Alignas(16) uint64_t state;
    uint64_t claim;
    uint64_t pub_token;
    uint64_t waitgen;
    uint64_t hash;
    uint32_t wake;
    uint32_t key_seq;
    uint32_t pub_seq;
    uint32_t pub_tag;
    uint32_t next_free;
    uint16_t key_len;
    uint16_t meta_len;
    char     key[SHMLEASE_KEY_MAX + 1];      /* zero padded */
    uint8_t  meta[SHMLEASE_METADATA_MAX];
};

/*
 * The lease state word (64 bits):
 *
 *   63..62  kind    RETIRED 0 | FREE 1 | HELD 2 | GRACE 3
 *   HELD:   61..50 owner (registry slot), 49..40 zero, 39..0 deadline
 *   GRACE:  61..40 zero, 39..0 deadline (held by nobody)
 *   FREE, RETIRED: 61..0 zero
 *
 * The deadline lives IN the word, and the word and the claim counter change
 * in one CAS: no reader can see a new owner beside an old deadline, and a
 * lease value (word, claim) names exactly one claim. A lease that was lost
 * (taken over, broken, swept) can never match the state again, because any
 * later claim has a greater claim count; no counter that wraps is involved.
 * Deadlines are milliseconds since the table's created_at (40 bits: 34
 * years), clamped at that horizon.
 */
#define W_KIND_SHIFT   62
#define W_RETIRED      UINT64_C(0)
#define W_FREE         UINT64_C(1)
#define W_HELD         UINT64_C(2)
#define W_GRACE        UINT64_C(3)
#define W_OWNER_SHIFT  50
#define W_OWNER_BITS   12
#define W_OWNER_MASK   ((UINT64_C(1) << W_OWNER_BITS) - 1)
#define W_DEADLINE_BITS 40
#define W_DEADLINE_MASK ((UINT64_C(1) << W_DEADLINE_BITS) - 1)

static inline uint64_t w_kind(uint64_t w)     { return w >> W_KIND_SHIFT; }
static inline uint32_t w_owner(uint64_t w)    { return (uint32_t)((w >> W_OWNER_SHIFT) & W_OWNER_MASK); }
static inline uint64_t w_deadline(uint64_t w) { return w & W_DEADLINE_MASK; }
static inline uint64_t w_make_held(uint32_t owner, uint64_t deadline)
{
    return (W_HELD << W_KIND_SHIFT) | ((uint64_t)(owner & W_OWNER_MASK) << W_OWNER_SHIFT)
         | (deadline & W_DEADLINE_MASK);
}
static inline uint64_t w_make_grace(uint64_t deadline) { return (W_GRACE << W_KIND_SHIFT) | (deadline & W_DEADLINE_MASK); }
#define W_FREE_WORD    (W_FREE << W_KIND_SHIFT)
#define W_RETIRED_WORD (W_RETIRED << W_KIND_SHIFT)
/* NOW + MS, clamped at the 40-bit horizon of deadlines. */
static inline uint64_t w_deadline_after(uint64_t now, uint64_t ms)
{
    return ms >= W_DEADLINE_MASK - now ? W_DEADLINE_MASK : now + ms;
}
/* Held (or in grace) and not expired at table time NOW. */
static inline int w_live(uint64_t w, uint64_t now)
{
    uint64_t k = w_kind(w);
    return (k == W_HELD || k == W_GRACE) && w_deadline(w) > now;
}

/* The 16-byte lease state. Loads are two 8-byte atomic loads: a reader may
 * see the halves of two different states, which only makes its CAS fail (a
 * CAS succeeds only from the exact current pair). Readers that act without
 * a CAS (check, inspect) use state_snapshot(). */
struct lstate { uint64_t w, c; };

static inline struct lstate state_load(const struct shm_entry *e)
{
    struct lstate s;
    s.c = __atomic_load_n(&e->claim, __ATOMIC_ACQUIRE);
    s.w = __atomic_load_n(&e->state, __ATOMIC_ACQUIRE);
    return s;
}

/* A pair that was the entry's state at one instant: the claim is read before
 * and after the word, and the claim only grows; while it stays the same, the
 * word read in between belongs to that claim. */
static inline struct lstate state_snapshot(const struct shm_entry *e)
{
    for (;;) {
        uint64_t c1 = __atomic_load_n(&e->claim, __ATOMIC_ACQUIRE);
        uint64_t w = __atomic_load_n(&e->state, __ATOMIC_ACQUIRE);
        uint64_t c2 = __atomic_load_n(&e->claim, __ATOMIC_ACQUIRE);
        if (c1 == c2)
            return (struct lstate){w, c1};
    }
}

/* Is the entry's state (w, c) now? (One consistent read.) */
static inline int state_is(const struct shm_entry *e, uint64_t w, uint64_t c)
{
    struct lstate s = state_snapshot(e);
    return s.w == w && s.c == c;
}

/* One 16-byte CAS from OLD to NEW (sequentially consistent, like every
 * lock-prefixed instruction: see the ordering notes in lease.c). */
static inline int state_cas(struct shm_entry *e, struct lstate old, struct lstate nw)
{
    typedef unsigned __int128 u128;
    u128 o = ((u128)old.c << 64) | old.w, n = ((u128)nw.c << 64) | nw.w;
    return __sync_bool_compare_and_swap((u128 *)(void *)&e->state, o, n);
}

/* Bucket word: hi32 = hash >> 32 (a filter), lo32 = entry + 1; 0 = empty. */
static inline uint64_t bucket_make(uint64_t hash, uint32_t entry) { return (hash & UINT64_C(0xffffffff00000000)) | (uint64_t)(entry + 1); }
static inline uint32_t bucket_entry(uint64_t b) { return (uint32_t)b - 1; }

/* The format word: layout version and every size the layout depends on. */
static inline uint64_t format_word(void)
{
    return ((uint64_t)SHM_LAYOUT_VERSION << 56)
         | ((uint64_t)sizeof(pthread_mutex_t) << 48)
         | ((uint64_t)sizeof(void *) << 44)
         | ((uint64_t)(sizeof(struct shm_entry) / 8) << 32)
         | ((uint64_t)(sizeof(struct shm_reg)) << 24)
         | ((uint64_t)(sizeof(pid_t)) << 20)
         | ((uint64_t)(WAIT_RECORDS / 2 & 0xf) << 16)
         | ((uint64_t)SHMLEASE_KEY_MAX << 8)
         | ((uint64_t)(SHMLEASE_METADATA_MAX / 8));
}

_Static_assert(sizeof(struct shm_entry) == 320, "entry layout");
_Static_assert(offsetof(struct shm_entry, state) == 0 && offsetof(struct shm_entry, claim) == 8,
               "state and claim form one 16-byte word (little-endian: state is the low half)");
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "state_cas assumes little-endian halves");
_Static_assert((1u << W_OWNER_BITS) >= REG_SLOTS && SHMLEASE_HANDLES_MAX == REG_SLOTS - 1,
               "owner field, registry slots and the handle limit agree");
_Static_assert(offsetof(struct shm_entry, key) == 64, "entry hot words fill one line");
_Static_assert(sizeof(struct shm_reg) == 64, "registry slot is one cache line");
_Static_assert(offsetof(struct shm_header, lock_ino) == 112 && offsetof(struct shm_header, lock_dev) == 120,
               "the lock file's identity is in the immutable part");
_Static_assert(offsetof(struct shm_header, checksum) == 132, "checksum covers magic .. creator_uid");
_Static_assert(offsetof(struct shm_header, init_state) + 8 <= 192 &&
               offsetof(struct shm_header, index_mutex) == 192, "header immutable part: three lines");
_Static_assert(offsetof(struct shm_header, hot) % CACHELINE == 0, "hot stats on their own line");
_Static_assert(sizeof(struct shm_header) <= HEADER_SIZE, "header fits its page");
_Static_assert(sizeof(uint32_t) == 4 && _Alignof(uint32_t) == 4, "futex word");

/* ---- the in-process handle ----------------------------------------------- */

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
    uint8_t  *map;
    size_t    map_size;
    struct shm_header *hdr;
    struct shm_reg    *reg;
    uint32_t          *waits;         /* [REG_SLOTS][WAIT_RECORDS] */
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

    pthread_mutex_t lock;     /* in-process: serialises (re)registration */
    /* Our registration, one word so that threads read it whole (atomics):
     * bits 0..15 registry slot (0 = none), 16..31 fork generation at
     * registration, 32..63 the slot's registration generation. */
    uint64_t  regword;
    ino_t     ino;            /* the segment */
    dev_t     dev;
    ino_t     lk_ino;         /* the lock file (as the header records it) */
    dev_t     lk_dev;

    struct shmlease_table *next;   /* all handles, for the fork handler */
    char      name[SHMLEASE_NAME_MAX + 1];
};

extern unsigned shmlease__fork_gen;   /* bumped in every fork child */

static inline uint64_t reg_load(const shmlease_table *t) { return __atomic_load_n(&t->regword, __ATOMIC_ACQUIRE); }
/* Our registry slot if the registration is usable in this process, else 0. */
static inline uint32_t reg_slot(uint64_t rw)
{
    unsigned fg = __atomic_load_n(&shmlease__fork_gen, __ATOMIC_RELAXED) & 0xffffu;
    return ((rw >> 16) & 0xffffu) == fg ? (uint32_t)(rw & 0xffffu) : 0;
}
static inline uint32_t my_slot(const shmlease_table *t) { return reg_slot(reg_load(t)); }

/* clock.c */
uint64_t shmlease__sys_clock_ms(void *ctx);
uint64_t shmlease__now_rel(const shmlease_table *t);   /* ms since created_at */
void     shmlease__ms_to_timespec(uint64_t ms, struct timespec *ts);

/* segment.c */
int      shmlease__validate_name(const char *name);
uint64_t shmlease__reg_lock_off(uint32_t idx);            /* in the lock file */
mode_t   shmlease__lk_mode(mode_t segment_mode);
uint64_t shmlease__header_checksum(const struct shm_header *h);
int      shmlease__check_header(const struct shm_header *h, uint64_t file_size);
int      shmlease__reopen_fd(shmlease_table *t);
void     shmlease__boot_id(uint8_t id[16]);   /* this boot's id, zeroes if unknown */

/* mutex.c: the one lock-or-recover path for the robust mutexes */
typedef void (*shmlease_repair_fn)(shmlease_table *t);
int  shmlease__mutex_init(pthread_mutex_t *m);
/* Locks M, waiting at most MS ms (UINT64_MAX: as long as its holder is a
 * live process). 0, -ETIMEDOUT, or -EPROTO when nobody alive can hold it. */
int  shmlease__lock_for(shmlease_table *t, pthread_mutex_t *m, struct shm_lockrec *rec,
                        shmlease_repair_fn repair, uint64_t ms);
void shmlease__unlock(pthread_mutex_t *m, struct shm_lockrec *rec);

/* registry.c */
int  shmlease__ensure_registered(shmlease_table *t, uint64_t lock_ms);
int  shmlease__alive(const shmlease_table *t, uint32_t idx);  /* 1, 0, -1 */
/* Liveness as a handle without the lock file sees it (a read-only handle of
 * a user who may not open it): the WRITE OFD locks on the lock file listed in
 * /proc/locks, read once per view. */
struct shmlease__liveview {
    int     state;                      /* 0 not read yet, 1 read, -1 unavailable */
    uint8_t held[REG_SLOTS / 8];        /* bit i: slot i's byte is write-locked */
};
int  shmlease__alive_v(const shmlease_table *t, uint32_t idx, struct shmlease__liveview *lv);
void shmlease__unregister(shmlease_table *t);
void shmlease__free_owner_leases(shmlease_table *t, uint32_t idx);
void shmlease__reg_repair(shmlease_table *t);
uint64_t shmlease__proc_start_time(int32_t pid);
/* This process as the registry and the holder records describe it; read
 * once per process (again after fork). */
struct shmlease__self {
    unsigned fork_gen;
    int32_t  pid;
    uint64_t start_time;       /* /proc/self/stat field 22, 0 unknown */
    uint64_t pidns;            /* inode of /proc/self/ns/pid, 0 unknown */
    uint64_t timens;           /* inode of /proc/self/ns/time, 0 unknown */
};
const struct shmlease__self *shmlease__self(void);

static inline uint64_t waits_off(const struct shm_header *h)
{
    return h->reg_off + (uint64_t)REG_SLOTS * sizeof(struct shm_reg);
}

/* table.c */
struct keybuf {
    uint64_t w[(SHMLEASE_KEY_MAX + 1 + 7) / 8];   /* zero padded */
    uint32_t len;
    uint64_t hash;
};
int  shmlease__key_prepare(const shmlease_table *t, const char *key, struct keybuf *kb);
long shmlease__lookup(const shmlease_table *t, const struct keybuf *kb, uint32_t *key_seq);
long shmlease__lookup_stable(const shmlease_table *t, const struct keybuf *kb, uint32_t *key_seq);
int  shmlease__key_matches(const struct shm_entry *e, const struct keybuf *kb, uint32_t seq);
struct shmlease__insert {
    const struct keybuf *kb;   /* in: the key */
    uint32_t owner;            /* in: our registry slot */
    uint64_t ttl_ms;           /* in */
    uint64_t lock_ms;          /* in: longest wait for index_mutex */
    long     entry;            /* out: the key's entry */
    uint32_t key_seq;          /* out: its key_seq */
    struct lstate state;       /* out, when inserted: the claimed state */
};
int  shmlease__insert_held(shmlease_table *t, struct shmlease__insert *ins);
void shmlease__index_repair(shmlease_table *t);
void shmlease__wake(struct shm_entry *e, int all);
void shmlease__wake_waiters(struct shm_entry *e, int all);

/* stats: relaxed atomic adds on the header */
#define STAT_ADD(t, grp, field) __atomic_fetch_add(&(t)->hdr->grp.field, 1, __ATOMIC_RELAXED)

#endif
