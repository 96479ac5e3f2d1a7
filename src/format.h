/*
 * The on-segment format: every process that maps a table agrees on it byte
 * for byte (docs/file-format.md).
 *
 * Segment "/shmlease.NAME":
 *
 *   offset 0         struct shm_header          (SHM_HEADER_SIZE bytes)
 *   reg_off          struct shm_reg[4096]       process registry, slot 0 unused
 *   shm_waits_off()  uint32_t[4096][16]         wait records: entry + 1 that
 *                                               a thread of that handle sleeps on
 *   index_off        uint64_t bucket[nbuckets]  key -> entry, open addressing
 *   entries_off      struct shm_entry[capacity] one per live key
 *
 * Nothing in the segment is a pointer; every field has a fixed width; the
 * format word (below) changes whenever a size the layout depends on changes,
 * so two builds that disagree refuse each other's segments.
 *
 * The lock file "/shmlease-lk.NAME" (/dev/shm/shmlease-lk.NAME), empty, never
 * mapped, readable and writable only by the classes (user, group, other) that
 * may write the segment (shmlease__lk_mode() in lockfile.c): every file lock
 * of the table lives there, never on the segment, so a process that can only read
 * the segment cannot open the lock file and so cannot take, hold or block
 * any of these locks. The header records the lock file's inode and device;
 * an attacher whose lock file is another file refuses the table (-EPROTO).
 *
 * Lock-file bytes (open-file-description locks, F_OFD_SETLK):
 *   byte SHM_LK_INIT_BYTE       held (write) by whoever initialises the segment
 *                               or unlinks the table
 *   byte SHM_LK_REG_BASE + i    held (write) by the handle registered in slot i
 *                               for as long as it is attached: the kernel drops
 *                               it when the last descriptor of that open file
 *                               description closes, i.e. when the process dies.
 */
#ifndef SHMLEASE_FORMAT_H
#define SHMLEASE_FORMAT_H

#include "shmlease.h"
#include "word.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SHM_CACHELINE 64

/* ---- header -------------------------------------------------------------- */

/* 'SHMLEASE' read as a native u64: a segment made on a machine of the other
 * byte order reads as SHM_MAGIC_SWAPPED. */
#define SHM_MAGIC          UINT64_C(0x455341454c4d4853)
#define SHM_MAGIC_SWAPPED  __builtin_bswap64(SHM_MAGIC)
#define SHM_LAYOUT_VERSION 3u

#define SHM_INIT_READY     UINT32_C(0x52454459)   /* "READY": header complete */

#define SHM_HEADER_SIZE    4096u
#define SHM_REG_SLOTS      4096u          /* slot 0 means "nobody" */
#define SHM_WAIT_RECORDS   16u            /* per handle: sleeping threads shown */
#define SHM_LK_INIT_BYTE   0              /* in the lock file */
#define SHM_LK_REG_BASE    4096u          /* slot i: byte SHM_LK_REG_BASE + i */

/* Intent record: the structural change in progress under a robust mutex.
 * For diagnostics (the dump shows it): the repair routines do not read it,
 * they rebuild everything derived from the ground truth (the entries' states
 * and keys, the registry slots), whatever was cut short. */
enum shm_intent_op {
    SHM_INTENT_NONE = 0,
    SHM_INTENT_INSERT = 1,       /* a = entry */
    SHM_INTENT_RETIRE = 2,       /* a = entry */
    SHM_INTENT_REGISTER = 3,     /* a = registry slot */
    SHM_INTENT_SWEEP = 4,        /* a = registry slot whose leases are being freed */
    SHM_INTENT_RECOVER = 5,      /* a repair routine is running */
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
    uint64_t refused;         /* tries refused because the key was held: one
                                 add where there were two; stats_get counts
                                 them in both contended and busy (older builds
                                 left this padding zero) */
    uint64_t pad[5];
};

struct shm_header {
    /* --- immutable once init_state == READY; written by the initialiser
     *     under the init lock, read by anyone without a lock --- */
    uint64_t magic;
    uint64_t format;          /* shm_format_word() */
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
    uint32_t init_state;      /* SHM_INIT_READY, stored last with release */
    uint32_t pad0;

    /* --- structural lock for the key index (insert, retire) --- */
    _Alignas(SHM_CACHELINE) pthread_mutex_t index_mutex;
    struct shm_lockrec index_holder;                    /* see struct shm_lockrec */
    /* Guarded by index_mutex: */
    _Alignas(SHM_CACHELINE) struct shm_intent index_intent;
    uint32_t free_head;       /* entry + 1 of the first free entry, 0: none */
    uint32_t live_count;      /* entries not RETIRED (atomic: stats read it) */
    uint32_t index_seq;       /* odd while buckets are being changed (readers
                                 without the lock use it as a seqlock) */
    uint32_t reap_cursor;

    /* --- structural lock for the registry --- */
    _Alignas(SHM_CACHELINE) pthread_mutex_t reg_mutex;
    struct shm_lockrec reg_holder;
    _Alignas(SHM_CACHELINE) struct shm_intent reg_intent;   /* guarded by reg_mutex */
    uint32_t reg_hint;                                  /* guarded by reg_mutex */

    _Alignas(SHM_CACHELINE) struct shm_stats_hot  hot;      /* atomics, anyone */
    _Alignas(SHM_CACHELINE) struct shm_stats_cold cold;     /* atomics, anyone */
};

/* ---- registry ------------------------------------------------------------ */

enum shm_reg_state { SHM_REG_FREE = 0, SHM_REG_ACTIVE = 1 };

/* One per attached handle. Written only by the registering process under
 * reg_mutex (and state by close), except alive_seen; read by anyone without
 * a lock: the fields are for display, for the death watch's pidfd (a wake-up
 * hint, checked against the start time) and for tries (alive_seen, below);
 * liveness itself is the kernel-held byte lock.
 *
 * alive_seen: the last "alive" answer the kernel gave anyone about this
 * slot's byte lock, shared so that tries on a held key need not each ask it
 * (liveness.c, "Verdicts"): the registration's generation (low 16 bits, top
 * of the word) and the hint clock (clock.h) before the question (low 48
 * bits). Written by any attached process, relaxed; 0 never written. Older
 * builds leave it alone (it was padding): they ask the kernel every time. */
struct shm_reg {
    uint32_t state;           /* enum shm_reg_state; written last with release */
    int32_t  pid;             /* in the registrant's PID namespace */
    uint64_t gen;             /* bumped at each registration of this slot */
    uint64_t pidns_ino;       /* inode of /proc/self/ns/pid, 0 unknown */
    uint64_t start_time;      /* /proc/self/stat field 22, 0 unknown */
    uint32_t uid;
    uint32_t pad;
    uint64_t alive_seen;      /* a recent "alive" verdict, see above */
    uint64_t pad2[2];
};

/* ---- entries and the lease state ------------------------------------------ */

/*
 * struct shm_entry: one key. Field rules:
 *   state, claim
 *            the lease state: 16 bytes that change together, only by a
 *            16-byte compare-and-swap (ls_cas). Every change of
 *            ownership is ONE such CAS. `state` is the word described below;
 *            `claim` counts the claims of this entry: every transition that
 *            makes a new holder (acquire, takeover, insert) adds one, and
 *            nothing else changes it, so it never repeats.
 *   pub_token, pub_seq, pub_tag, meta_len, meta[]:
 *            the publication block: token and metadata of the current claim,
 *            written by the claimer after its CAS; pub_seq is odd while it
 *            is written; pub_tag is the low 32 bits of the claim it describes.
 *   waitgen  the waiter word (word.h): key generation and sleeping waiters;
 *            CAS by waiters, reset by the inserter.
 *   wake     futex word: bumped by whoever frees or changes the key's deadline
 *            while waiters sleep (when waitgen's count is non-zero), and by a
 *            process's death watcher when the holder's process ends.
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

/* The format word: layout version and every size the layout depends on. */
static inline uint64_t shm_format_word(void)
{
    return ((uint64_t)SHM_LAYOUT_VERSION << 56)
         | ((uint64_t)sizeof(pthread_mutex_t) << 48)
         | ((uint64_t)sizeof(void *) << 44)
         | ((uint64_t)(sizeof(struct shm_entry) / 8) << 32)
         | ((uint64_t)(sizeof(struct shm_reg)) << 24)
         | ((uint64_t)(sizeof(pid_t)) << 20)
         | ((uint64_t)(SHM_WAIT_RECORDS / 2 & 0xf) << 16)
         | ((uint64_t)SHMLEASE_KEY_MAX << 8)
         | ((uint64_t)(SHMLEASE_METADATA_MAX / 8));
}

_Static_assert(sizeof(struct shm_entry) == 320, "entry layout");
_Static_assert(offsetof(struct shm_entry, state) == 0 && offsetof(struct shm_entry, claim) == 8,
               "state and claim form one 16-byte word (little-endian: state is the low half)");
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "ls_cas assumes little-endian halves");
_Static_assert((1u << SW_OWNER_BITS) >= SHM_REG_SLOTS && SHMLEASE_HANDLES_MAX == SHM_REG_SLOTS - 1,
               "owner field, registry slots and the handle limit agree");
_Static_assert(offsetof(struct shm_entry, key) == 64, "entry hot words fill one line");
_Static_assert(sizeof(struct shm_reg) == 64, "registry slot is one cache line");
_Static_assert(offsetof(struct shm_header, lock_ino) == 112 && offsetof(struct shm_header, lock_dev) == 120,
               "the lock file's identity is in the immutable part");
_Static_assert(offsetof(struct shm_header, checksum) == 132, "checksum covers magic .. creator_uid");
_Static_assert(offsetof(struct shm_header, init_state) + 8 <= 192 &&
               offsetof(struct shm_header, index_mutex) == 192, "header immutable part: three lines");
_Static_assert(offsetof(struct shm_header, hot) % SHM_CACHELINE == 0, "hot stats on their own line");
_Static_assert(sizeof(struct shm_header) <= SHM_HEADER_SIZE, "header fits its page");
_Static_assert((SHMLEASE_KEY_MAX + 1) % 8 == 0 && SHMLEASE_METADATA_MAX % 8 == 0,
               "keys and metadata are copied in whole 8-byte words");
_Static_assert(sizeof(uint32_t) == 4 && _Alignof(uint32_t) == 4, "futex word");

static inline uint64_t shm_waits_off(const struct shm_header *h)
{
    return h->reg_off + (uint64_t)SHM_REG_SLOTS * sizeof(struct shm_reg);
}

#endif
