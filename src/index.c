/*
 * The key index: key -> entry, lock-free lookups, insertion and retirement
 * under index_mutex, and repair.
 *
 * Entries (one per live key) are a fixed array; the index is an open-addressing
 * table of bucket words (linear probing, at most half full, no tombstones:
 * deletion shifts later buckets back). Lookups take no lock. Insertion and
 * retirement take index_mutex.
 *
 * Why lock-free lookups are safe against concurrent insert/retire:
 *  - A lookup that MISSES is never trusted: the caller takes index_mutex and
 *    looks again before inserting. Backward-shift deletion can hide a key from
 *    a concurrent reader for an instant; that only sends it down the slow path.
 *  - A lookup that HITS verifies the entry's key under the entry's key_seq
 *    seqlock. A key is rewritten only while the entry is RETIRED, and every
 *    retirement is a CAS of the state word to RETIRED, so a lease CAS that
 *    expects the (non-RETIRED) word seen after verification fails if the entry
 *    changed keys in between.
 *
 * Retirement frees capacity: an entry whose key is free (FREE, expired, or
 * held by a dead process) can be retired so its space serves another key.
 * It happens lazily, when an insert finds the free list empty.
 *
 * Crash safety: the derived structures (buckets, free list, live count) are
 * rebuilt from the entries' state words and keys by shmlease__index_repair()
 * whenever index_mutex is inherited from a dead owner. A state word is the
 * commit point of every insert (RETIRED -> HELD) and retire (-> RETIRED).
 */
#include "index.h"
#include "clock.h"
#include "fault.h"
#include "key.h"
#include "liveness.h"
#include "mutex.h"
#include "state.h"
#include "wait.h"

#include <errno.h>
#include <string.h>

long shmlease__lookup(const shmlease_table *t, const struct keybuf *kb, uint32_t *key_seq)
{
    uint32_t mask = t->nbuckets - 1;
    uint32_t i = (uint32_t)kb->hash & mask;
    uint64_t tag = bw_tag(kb->hash);
    for (uint32_t probes = 0; probes < t->nbuckets; probes++) {
        uint64_t b = ld_acquire(&t->buckets[i]);
        if (b == BW_EMPTY)
            return -ENOENT;
        if (bw_tag(b) == tag) {
            uint32_t ei = bw_entry(b);
            if (ei < t->capacity) {
                const struct shm_entry *e = &t->entries[ei];
                uint32_t seq = ld_acquire(&e->key_seq);
                if (shmlease__key_matches(e, kb, seq)) {
                    if (key_seq)
                        *key_seq = seq;
                    return ei;
                }
            }
        }
        i = (i + 1) & mask;
    }
    return -ENOENT;
}

/* A lookup for readers that must not miss (inspect): retries while the index
 * is being changed, and after a few tries (the changer may be dead or stopped
 * with the mutex held) scans the entries themselves. Never writes. */
long shmlease__lookup_stable(const shmlease_table *t, const struct keybuf *kb, uint32_t *key_seq)
{
    for (int tries = 0; tries < 8; tries++) {
        uint32_t s1 = ld_acquire(&t->hdr->index_seq);
        long e = shmlease__lookup(t, kb, key_seq);
        if (e >= 0)
            return e;
        fence_acquire();
        uint32_t s2 = ld_relaxed(&t->hdr->index_seq);
        if (!(s1 & 1) && s1 == s2)
            return -ENOENT;
    }
    for (uint32_t i = 0; i < t->capacity; i++) {
        const struct shm_entry *e = &t->entries[i];
        if (sw_kind(ld_acquire(&e->state)) == SW_RETIRED)
            continue;
        uint32_t seq = ld_acquire(&e->key_seq);
        if (shmlease__key_matches(e, kb, seq)) {
            *key_seq = seq;
            return i;
        }
    }
    return -ENOENT;
}

#define WALK_TRIES 4

int shmlease__index_walk(shmlease_table *t, void (*fn)(shmlease_table *, uint32_t, void *), void *arg)
{
    for (int tries = 0; tries < WALK_TRIES; tries++) {
        uint32_t s1 = ld_acquire(&t->hdr->index_seq);
        if (s1 & 1)
            continue;
        for (uint32_t i = 0; i < t->nbuckets; i++) {
            uint64_t b = ld_acquire(&t->buckets[i]);
            if (b != BW_EMPTY && bw_entry(b) < t->capacity)
                fn(t, bw_entry(b), arg);
        }
        fence_acquire();
        if (ld_relaxed(&t->hdr->index_seq) == s1)
            return 0;
    }
    return -EAGAIN;
}

/* ---- the index (under index_mutex) ---------------------------------------- */

static inline uint64_t kb_hash_of(const struct shm_entry *e)
{
    return ld_relaxed(&e->hash);
}

/* index_seq is odd while the buckets change. A writer killed half-way left
 * it odd: begin moves it to the next odd value (readers see a change either
 * way), end to the even one after, so a repair always leaves it even. */
static void index_begin(struct shm_header *h)
{
    uint32_t s = ld_relaxed(&h->index_seq);
    st_relaxed(&h->index_seq, (s & 1) ? s + 2 : s + 1);
    fence_release();
}
static void index_end(struct shm_header *h)
{
    st_release(&h->index_seq, (ld_relaxed(&h->index_seq) | 1u) + 1);
}

/* 0, or -ENOSPC when no bucket is empty: impossible with at most capacity live
 * entries in 2 x capacity buckets, unless someone wrote garbage into the
 * segment; the caller then rebuilds the index rather than spin. */
static int bucket_put(shmlease_table *t, uint64_t hash, uint32_t entry)
{
    uint32_t mask = t->nbuckets - 1;
    uint32_t i = (uint32_t)hash & mask;
    for (uint32_t n = 0; ld_relaxed(&t->buckets[i]) != BW_EMPTY; n++) {
        if (n >= t->nbuckets)
            return -ENOSPC;
        i = (i + 1) & mask;
    }
    st_release(&t->buckets[i], bw_make(hash, entry));
    return 0;
}

/* Removes ENTRY's bucket; later buckets of the same cluster shift back so no
 * tombstone is left. */
static void bucket_remove(shmlease_table *t, uint32_t entry)
{
    uint32_t mask = t->nbuckets - 1;
    uint64_t hash = kb_hash_of(&t->entries[entry]);
    uint32_t i = (uint32_t)hash & mask;
    for (uint32_t n = 0;; n++) {
        uint64_t b = ld_relaxed(&t->buckets[i]);
        if (b == 0 || n >= t->nbuckets)
            return;                     /* not indexed (repair will see to it) */
        if (bw_entry(b) == entry)
            break;
        i = (i + 1) & mask;
    }
    uint32_t j = i;
    for (uint32_t n = 0; n < t->nbuckets; n++) {
        j = (j + 1) & mask;
        uint64_t b = ld_relaxed(&t->buckets[j]);
        if (b == 0)
            break;
        uint32_t be = bw_entry(b);
        uint32_t home = be < t->capacity ? (uint32_t)kb_hash_of(&t->entries[be]) & mask : j;
        /* B may move to hole I unless its home lies cyclically in (I, J]. */
        int stays = (i <= j) ? (i < home && home <= j) : (i < home || home <= j);
        if (stays)
            continue;
        st_release(&t->buckets[i], b);
        i = j;
    }
    st_release(&t->buckets[i], 0);
}

static void free_push(shmlease_table *t, uint32_t entry)
{
    t->entries[entry].next_free = t->hdr->free_head;
    t->hdr->free_head = entry + 1;
}

/* Rebuilds buckets, free list and live count from the entries. Called with
 * index_mutex held after EOWNERDEAD; idempotent; lock-free readers may miss
 * keys meanwhile, which only sends them to the (locked) slow path. */
void shmlease__index_repair(shmlease_table *t)
{
    struct shm_header *h = t->hdr;
    h->index_intent.op = SHM_INTENT_RECOVER;
    index_begin(h);
    for (uint32_t i = 0; i < t->nbuckets; i++)
        st_relaxed(&t->buckets[i], 0);
    h->free_head = 0;
    uint32_t live = 0;
    for (uint32_t k = t->capacity; k-- > 0;) {
        struct shm_entry *e = &t->entries[k];
        uint64_t w = ld_acquire(&e->state);
        /* A gate whose reaper died while it looked at the gate's slots:
         * kept (FREE, its slot count), as if the reaper had found one live;
         * the next reaper looks again. */
        if (sw_kind(w) == SW_RETIRED && sw_aux(w) != 0) {
            uint64_t c = ld_relaxed(&e->claim);
            if (ls_cas(e, (struct lstate){w, c}, (struct lstate){sw_free_aux(sw_aux(w)), c}))
                w = sw_free_aux(sw_aux(w));
        }
        uint16_t klen = ld_relaxed(&e->key_len);
        int usable = sw_kind(w) != SW_RETIRED && !(ld_relaxed(&e->key_seq) & 1) &&
                     klen >= 1 && klen <= SHMLEASE_KEY_MAX;
        if (usable) {
            /* A second live entry for the same key cannot arise from our
             * protocol; if the segment says so anyway, keep the first. */
            struct keybuf kb;
            memset(&kb, 0, sizeof kb);
            memcpy(kb.w, e->key, klen);
            kb.len = klen;
            kb.hash = ld_relaxed(&e->hash);
            if (shmlease__lookup(t, &kb, NULL) >= 0)
                usable = 0;
        }
        if (!usable) {
            for (struct lstate s = ls_load(e); sw_kind(s.w) != SW_RETIRED; s = ls_load(e)) {
                if (ls_cas(e, s, (struct lstate){SW_RETIRED_WORD, s.c})) {
                    shmlease__wake_waiters(e, 1);   /* they look the key up again */
                    break;
                }
            }
            uint32_t ks = ld_relaxed(&e->key_seq);
            if (ks & 1)
                st_release(&e->key_seq, ks + 1);
            free_push(t, k);
            continue;
        }
        bucket_put(t, kb_hash_of(e), k);       /* cannot fail: buckets just emptied */
        live++;
    }
    st_relaxed(&h->live_count, live);          /* read lock-free by stats */
    index_end(h);
    h->index_intent.op = SHM_INTENT_NONE;
}

#define QUEUE_SCAN_MAX 4096u   /* tickets a reaper looks at before keeping a queue */

/* Can entry E be retired at table time NOW? Then returns its state in *S. */
static int retirable(shmlease_table *t, struct shm_entry *e, uint64_t now, struct lstate *s)
{
    *s = ls_load(e);
    switch (sw_kind(s->w)) {
    case SW_FREE:
        return 1;
    case SW_GRACE:
        return sw_deadline(s->w) <= now;
    case SW_HELD:
        return sw_deadline(s->w) <= now || shmlease__alive(t, sw_owner(s->w)) == 0;
    default:
        return 0;
    }
}

/* Entry E (under index_mutex: its key is stable), whose state S has a
 * non-zero aux, still guards live entries: it is a key's gate and one of
 * its shared-holder slots 0..hw-1 is live, or a key's fair queue and one of
 * its places is live (key.h; docs/state-machine.md, sections 8 and 9)? */
static int guards_live(shmlease_table *t, struct shm_entry *e, struct lstate s, uint64_t now)
{
    struct keybuf kb;
    memset(&kb, 0, sizeof kb);
    kb.len = ld_relaxed(&e->key_len);
    if (kb.len == 0 || kb.len > SHMLEASE_KEY_MAX)
        return 0;
    memcpy(kb.w, e->key, kb.len);
    kb.hash = ld_relaxed(&e->hash);
    uint64_t m = shmlease__salt_of(t, kb.w, kb.len, kb.hash), first = 0, n = 0;
    if (m == 0) {
        n = sw_aux(s.w);                     /* a gate: its slots */
    } else if (m == SALT_QUEUE) {
        kb.hash = salted_hash(kb.hash, SALT_QUEUE);    /* the key's own hash */
        first = ld_relaxed(&e->pub_token);   /* a queue: places after "all done up to" */
        n = s.c - first;
        if (first > s.c || n > QUEUE_SCAN_MAX)
            return 1;                        /* too many to look at: keep it */
    } else {
        return 0;
    }
    for (uint64_t i = 0; i < n; i++) {
        struct keybuf skb;
        shmlease__salted_key(&kb, m == 0 ? i + 1 : SALT_PLACE0 + first + 1 + i, &skb);
        uint32_t kseq;
        long si = shmlease__lookup(t, &skb, &kseq);
        struct lstate ss;
        if (si < 0)
            continue;
        if (!retirable(t, &t->entries[si], now, &ss) && sw_kind(ss.w) != SW_RETIRED)
            return 1;
        /* A lapsed slot is closed (FREE, same claim) before the gate goes:
         * its claimer, held up before its token, must not refresh it once
         * the gate that counted it is gone (docs/state-machine.md, 8). */
        if (m == 0 && (sw_kind(ss.w) == SW_HELD || sw_kind(ss.w) == SW_GRACE) &&
            !ls_cas(&t->entries[si], ss, (struct lstate){SW_FREE_WORD, ss.c}))
            return 1;                        /* changed meanwhile: keep the gate */
    }
    return 0;
}

/* Retires free entries to refill the free list. Prefers entries nobody waits
 * on; takes waited-on ones only if that is all there is (their waiters are
 * woken and look the key up again). Returns how many were retired. */
static uint32_t reap(shmlease_table *t, uint64_t now)
{
    struct shm_header *h = t->hdr;
    uint32_t got = 0;
    for (int pass = 0; pass < 2 && got == 0; pass++) {
        uint32_t start = h->reap_cursor % t->capacity;
        for (uint32_t n = 0; n < t->capacity; n++) {
            uint32_t k = (start + n) % t->capacity;
            struct shm_entry *e = &t->entries[k];
            struct lstate s;
            if (!retirable(t, e, now, &s))
                continue;
            if (pass == 0 && wg_count(ld_acquire(&e->waitgen)) != 0)
                continue;
            h->index_intent = (struct shm_intent){SHM_INTENT_RETIRE, k, 0, 0};
            struct lstate r = {sw_retired_aux(sw_aux(s.w)), s.c};
            if (!ls_cas(e, s, r)) {
                h->index_intent.op = SHM_INTENT_NONE;
                continue;
            }
            /* A gate whose slots hold shared leases stays: it counts them
             * for exclusive acquirers. Retired first, then the slots looked
             * at (a shared acquirer claims a slot, then looks at the gate:
             * one of us sees the other, MO-18), else given its state back
             * (under this lock nobody else changes a retired entry). */
            if (sw_aux(s.w) != 0) {
                fence_seqcst();
                if (guards_live(t, e, s, now)) {
                    (void)ls_cas(e, r, s);
                    h->index_intent.op = SHM_INTENT_NONE;
                    continue;
                }
                (void)ls_cas(e, r, (struct lstate){SW_RETIRED_WORD, s.c});
            }
            SHMLEASE_FAULT("retire.after_cas");
            /* Waiters of the old key look it up again (the count is read
             * after the CAS, like every other transition). */
            shmlease__wake_waiters(e, 1);
            index_begin(h);
            bucket_remove(t, k);
            index_end(h);
            SHMLEASE_FAULT("retire.after_unlink");
            free_push(t, k);
            st_relaxed(&h->live_count, ld_relaxed(&h->live_count) - 1);
            h->index_intent.op = SHM_INTENT_NONE;
            got++;
            h->reap_cursor = k + 1;
        }
    }
    return got;
}

/* Under index_mutex: the entry of KB's key, or -ENOENT. Under the lock no
 * retired entry is indexed; if one is, the index is damaged: rebuilt. */
static long find_locked(shmlease_table *t, const struct keybuf *kb, uint32_t *key_seq)
{
    long found = shmlease__lookup(t, kb, key_seq);
    if (found >= 0 && sw_kind(ld_acquire(&t->entries[found].state)) == SW_RETIRED) {
        shmlease__index_repair(t);
        stats_inc(t, cold.recoveries);
        found = shmlease__lookup(t, kb, key_seq);
    }
    return found;
}

/* Under index_mutex: takes an entry off the free list (retiring free keys
 * when it is empty). The entry, -ENOSPC, or -EAGAIN after rebuilding a
 * corrupt free list. */
static long take_free_entry(shmlease_table *t)
{
    struct shm_header *h = t->hdr;
    if (h->free_head == 0 && reap(t, shmlease__now_rel(t)) == 0)
        return -ENOSPC;
    uint32_t k = h->free_head - 1;
    if (k >= t->capacity) {
        shmlease__index_repair(t);
        return -EAGAIN;
    }
    h->index_intent = (struct shm_intent){SHM_INTENT_INSERT, k, 0, 0};
    h->free_head = t->entries[k].next_free;
    SHMLEASE_FAULT("insert.after_pop");
    return k;
}

/* Writes KB into the (RETIRED) entry E under its key seqlock and starts a
 * new waiter generation. Returns the entry's new key_seq. */
static uint32_t write_key(struct shm_entry *e, const struct keybuf *kb)
{
    uint32_t seq = ld_relaxed(&e->key_seq);
    st_relaxed(&e->key_seq, seq | 1);
    fence_release();
    for (uint32_t i = 0; i < sizeof kb->w / 8; i++)
        st_relaxed((uint64_t *)(void *)(e->key + (size_t)8 * i), i < (kb->len + 7) / 8 ? kb->w[i] : 0);
    st_relaxed(&e->key_len, (uint16_t)kb->len);
    st_relaxed(&e->hash, kb->hash);
    st_release(&e->key_seq, (seq | 1) + 1);
    SHMLEASE_FAULT("insert.after_key");
    /* New key generation: waiters of the old key are gone (woken at retire). */
    st_relaxed(&e->waitgen, wg_next_gen(ld_relaxed(&e->waitgen)));
    return (seq | 1) + 1;
}

/* The commit point of an insert: entry K becomes HELD by INS->owner, then
 * gets its bucket. Nobody else changes a RETIRED entry's state (retiring
 * happens under this lock), so the CAS cannot fail; it is a CAS only to keep
 * every state change a 16-byte atomic one. The deadline is computed here,
 * once the lock is held: a wait for the lock never shortens the lease. */
static void commit_insert(shmlease_table *t, uint32_t k, struct shmlease__insert *ins)
{
    struct shm_header *h = t->hdr;
    struct shm_entry *e = &t->entries[k];
    struct lstate old = ls_load(e);
    /* A new claim, and a gate inserted FREE too: every insert adds one, so
     * that no state of the entry's earlier key (a snapshot (FREE, c) taken
     * before it was retired) can match the new key's state. */
    uint64_t claims = 1;
    struct lstate n = {ins->free_gate ? sw_free_aux(ins->aux)
                                      : sw_held_aux(ins->owner, sw_deadline_after(shmlease__now_rel(t), ins->ttl_ms), ins->aux),
                       old.c + claims};
    while (!ls_cas(e, old, n)) {
        old = ls_load(e);
        n.c = old.c + claims;
    }
    SHMLEASE_FAULT("insert.after_state");
    index_begin(h);
    SHMLEASE_FAULT("insert.mid_index");
    int full = bucket_put(t, ins->kb->hash, k) != 0;
    index_end(h);
    SHMLEASE_FAULT("insert.after_bucket");
    if (full) {
        /* Hostile index: rebuild it from the entries; that indexes this one
         * (already HELD) and recounts the live keys. */
        shmlease__index_repair(t);
        stats_inc(t, cold.recoveries);
    } else {
        st_relaxed(&h->live_count, ld_relaxed(&h->live_count) + 1);
    }
    h->index_intent.op = SHM_INTENT_NONE;
    ins->entry = k;
    ins->state = n;
}

/*
 * Slow path of acquire for a key not found by the lock-free lookup. Under
 * index_mutex: looks again; if the key is there, fills INS->entry (the
 * caller claims it the usual way). Otherwise takes a free entry, writes the
 * key and publishes the entry already HELD by INS->owner, so an inserted key
 * is never seen unowned, and sets INS->inserted. Waits at most INS->lock_ms
 * for index_mutex. 0, -ENOSPC, -ETIMEDOUT (the lock stayed taken), -EAGAIN
 * (the index was rebuilt: look again), or a lock error.
 */
int shmlease__insert_held(shmlease_table *t, struct shmlease__insert *ins)
{
    struct shm_header *h = t->hdr;
    int rc = shmlease__lock_for(t, &h->index_mutex, &h->index_holder, shmlease__index_repair, ins->lock_ms);
    if (rc)
        return rc;
    SHMLEASE_FAULT("index.locked");
    ins->inserted = 0;
    long found = find_locked(t, ins->kb, &ins->key_seq);
    if (found >= 0) {
        ins->entry = found;
    } else if (ins->find_only) {
        rc = -ENOENT;
    } else {
        long k = take_free_entry(t);
        if (k >= 0) {
            ins->key_seq = write_key(&t->entries[k], ins->kb);
            commit_insert(t, (uint32_t)k, ins);
            ins->inserted = 1;
        } else {
            rc = (int)k;
        }
    }
    shmlease__unlock(&h->index_mutex, &h->index_holder);
    return rc;
}

/* Draws a ticket of queue Q->queue and takes its place entry, both under
 * the index lock: every place of a smaller ticket was taken before (fair.c
 * relies on it). A place entry left by an earlier queue of the key (never
 * live: see fair.c) is taken over. 0, -EAGAIN (the queue entry changed:
 * look it up again), or a lock or -ENOSPC code. */
int shmlease__enqueue(shmlease_table *t, struct shmlease__enqueue *q)
{
    struct shm_header *h = t->hdr;
    int rc = shmlease__lock_for(t, &h->index_mutex, &h->index_holder, shmlease__index_repair, q->lock_ms);
    if (rc)
        return rc;
    struct shm_entry *qe = &t->entries[q->queue];
    struct lstate s = ls_load(qe);
    uint32_t kseq = ld_acquire(&qe->key_seq);
    if (sw_kind(s.w) == SW_RETIRED || kseq != q->queue_kseq) {
        shmlease__unlock(&h->index_mutex, &h->index_holder);
        return -EAGAIN;
    }
    /* A queue entry new to this key starts its "all done up to" hint at
     * its counter (the tag says which key it was set for). */
    if (ld_relaxed(&qe->pub_tag) != kseq) {
        st_relaxed(&qe->pub_token, s.c);
        st_relaxed(&qe->pub_tag, kseq);
    }
    /* Under this lock nobody else changes a queue entry: the CAS cannot fail. */
    while (!ls_cas(qe, s, (struct lstate){s.w, s.c + 1}))
        s = ls_load(qe);
    q->ticket = s.c + 1;
    struct keybuf pkb;
    shmlease__salted_key(q->kb, SALT_PLACE0 + q->ticket, &pkb);
    long found = find_locked(t, &pkb, &q->place_kseq);
    uint64_t deadline = sw_deadline_after(shmlease__now_rel(t), q->ttl_ms);
    if (found >= 0) {
        struct shm_entry *pe = &t->entries[found];
        struct lstate ps = ls_load(pe);
        struct lstate n = {sw_held(q->owner, deadline), ps.c + 1};
        while (!ls_cas(pe, ps, n)) {
            ps = ls_load(pe);
            n.c = ps.c + 1;
        }
        q->place = found;
        q->place_state = n;
    } else {
        long k = take_free_entry(t);
        if (k < 0) {
            rc = (int)k;
        } else {
            struct shmlease__insert ins = {.kb = &pkb, .owner = q->owner, .ttl_ms = q->ttl_ms};
            q->place_kseq = write_key(&t->entries[k], &pkb);
            commit_insert(t, (uint32_t)k, &ins);
            q->place = ins.entry;
            q->place_state = ins.state;
        }
    }
    shmlease__unlock(&h->index_mutex, &h->index_holder);
    return rc;
}
