/*
 * Inspection: inspect, foreach, stats. Never blocks, never writes the segment,
 * never touches its mutexes (works on a table whose structural lock is held
 * by a dead or stopped process, and on read-only mappings). Every value read
 * from the segment is bounds-checked before use (docs/failure-modes.md F16).
 */
#include "redis.h"
#include "clock.h"
#include "compiler.h"
#include "index.h"
#include "key.h"
#include "liveness.h"
#include "state.h"

#include <errno.h>
#include <stdlib.h>
#include <sched.h>
#include <string.h>

/* A snapshot gives up on an entry that keeps changing after SNAPSHOT_TRIES
 * reads; after SNAPSHOT_PUB_TRIES it shows a lease whose publication block
 * stays odd (its writer was killed or is stopped inside it) without it
 * (token 0, no metadata) rather than not at all. */
#define SNAPSHOT_TRIES     64
#define SNAPSHOT_PUB_TRIES 48
#define ALIVE_UNASKED       2   /* in an alive cache: not asked yet */


/* Sleeping waiters of live handles, per entry, from the wait records. The
 * entry's raw counter cannot tell a waiter that was killed; the records of a
 * dead handle are simply not counted. */
struct waitview {
    uint32_t n;
    uint32_t rec[SHM_REG_SLOTS * 4];      /* entry + 1 of live records (cap: shown) */
};

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static void waitview_build(const shmlease_table *t, struct waitview *wv, int8_t *alive_cache,
                           struct shmlease__liveview *lv)
{
    wv->n = 0;
    for (uint32_t i = 1; i < SHM_REG_SLOTS; i++) {
        if (ld_relaxed(&t->reg[i].state) != SHM_REG_ACTIVE)
            continue;
        const uint32_t *recs = t->waits + (size_t)i * SHM_WAIT_RECORDS;
        int any = 0;
        for (uint32_t k = 0; k < SHM_WAIT_RECORDS; k++)
            any |= ld_relaxed(&recs[k]) != 0;
        if (!any)
            continue;
        if (alive_cache[i] == ALIVE_UNASKED)
            alive_cache[i] = (int8_t)shmlease__alive_v(t, i, lv);
        if (alive_cache[i] == 0)
            continue;
        for (uint32_t k = 0; k < SHM_WAIT_RECORDS && wv->n < sizeof wv->rec / sizeof wv->rec[0]; k++) {
            uint32_t r = ld_relaxed(&recs[k]);
            if (r && r <= t->capacity)
                wv->rec[wv->n++] = r;
        }
    }
    qsort(wv->rec, wv->n, sizeof wv->rec[0], cmp_u32);
}

/* Sleeping waiters of live handles on entry ENTRY alone (inspect, waiters):
 * the number of such handles, the first MAX of them in OUT, and their
 * threads in *THREADS. Only the
 * handles that have a record for it are asked whether they live, not every
 * handle with a record. A killed waiter's records stay in its slot until the
 * slot is reused, and registration prefers FREE slots to dead ones, so after many
 * deaths thousands of slots hold records: asking the kernel about each of them
 * (one F_OFD_GETLK apiece) made every inspect cost hundreds of syscalls. */
/* Is wait record R (entry + 1) for one of KB's key's other entries: a
 * shared holder's slot (an exclusive acquirer draining), a fair queue's
 * place (a waiter behind it)? They carry the key's bytes (key.h). */
static int record_of_key(const shmlease_table *t, uint32_t r, const struct keybuf *kb)
{
    if (!kb || r == 0 || r > t->capacity)
        return 0;
    const struct shm_entry *e = &t->entries[r - 1];
    if (ld_relaxed(&e->key_len) != kb->len || ld_relaxed(&e->hash) == kb->hash)
        return 0;
    for (uint32_t i = 0; i < (kb->len + 7) / 8; i++)
        if (shmlease__key_word(e, i) != kb->w[i])
            return 0;
    return 1;
}

static long waiters_of(const shmlease_table *t, uint32_t entry, const struct keybuf *kb,
                       struct shmlease__liveview *lv, shmlease_waiter *out, size_t max, uint32_t *threads)
{
    uint32_t want = entry + 1, nthreads = 0;
    long n = 0;
    for (uint32_t i = 1; i < SHM_REG_SLOTS; i++) {
        if (ld_relaxed(&t->reg[i].state) != SHM_REG_ACTIVE)
            continue;
        const uint32_t *recs = t->waits + (size_t)i * SHM_WAIT_RECORDS;
        uint32_t mine = 0;
        for (uint32_t k = 0; k < SHM_WAIT_RECORDS; k++) {
            uint32_t r = ld_relaxed(&recs[k]);
            mine += r != 0 && (r == want || record_of_key(t, r, kb));
        }
        if (!mine || shmlease__alive_v(t, i, lv) == 0)
            continue;
        if ((size_t)n < max) {
            const struct shm_reg *r = &t->reg[i];
            uint64_t ns = ld_relaxed(&r->pidns_ino);
            out[n] = (shmlease_waiter){
                .pid = ld_relaxed(&r->pid),
                .other_pidns = ns && t->my_pidns && ns != t->my_pidns,
                .start_time = ld_relaxed(&r->start_time),
                .threads = mine,
                .handle = i,
            };
        }
        n++;
        nthreads += mine;
    }
    if (threads)
        *threads = nthreads;
    return n;
}

static uint32_t waitview_count(const struct waitview *wv, uint32_t entry)
{
    uint32_t want = entry + 1, lo = 0, hi = wv->n;
    while (lo < hi) {                          /* first record >= want */
        uint32_t mid = lo + (hi - lo) / 2;
        if (wv->rec[mid] < want)
            lo = mid + 1;
        else
            hi = mid;
    }
    uint32_t n = 0;
    while (lo + n < wv->n && wv->rec[lo + n] == want)
        n++;
    return n;
}

#define QUEUE_LOOK_MAX 4096u   /* tickets inspect looks at in a fair queue */
#define INSPECT_LOOKS  8u      /* looks at a key whose entry changes key under
                                  us before -ENOENT */

/* An entry's key and publication block as read once, maybe torn. */
struct entry_read {
    uint64_t kw[(SHMLEASE_KEY_MAX + 1) / 8];
    uint64_t mw[SHMLEASE_METADATA_MAX / 8];
    uint32_t klen, mlen, tag;
    uint64_t token, hash;
    int      pub_ok;           /* the publication block was stable (seq PS, even) */
};

static void read_entry(const struct shm_entry *e, uint32_t ps, struct entry_read *r)
{
    r->klen = ld_relaxed(&e->key_len);
    r->hash = ld_relaxed(&e->hash);
    for (size_t i = 0; i < sizeof r->kw / 8; i++)
        r->kw[i] = shmlease__key_word(e, (uint32_t)i);
    r->mlen = ld_relaxed(&e->meta_len);
    for (size_t i = 0; i < sizeof r->mw / 8; i++)
        r->mw[i] = ld_relaxed((const uint64_t *)(const void *)(e->meta + 8 * i));
    r->token = ld_relaxed(&e->pub_token);
    r->tag = ld_relaxed(&e->pub_tag);
    fence_acquire();
    r->pub_ok = !(ps & 1) && ld_relaxed(&e->pub_seq) == ps;
}

/* Who holds word W (HELD): the registry's record, and whether it lives. One
 * walk asks the kernel once per holder (ALIVE_CACHE), not once per lease. */
static void fill_holder(const shmlease_table *t, uint64_t w, shmlease_info *info, int8_t *alive_cache,
                        struct shmlease__liveview *lv)
{
    uint32_t owner = sw_owner(w);
    const struct shm_reg *r = &t->reg[owner];
    info->holder_handle = owner;
    info->holder_pid = ld_relaxed(&r->pid);
    info->holder_start_time = ld_relaxed(&r->start_time);
    uint64_t ns = ld_relaxed(&r->pidns_ino);
    info->holder_other_pidns = ns && t->my_pidns && ns != t->my_pidns;
    if (!alive_cache) {
        info->holder_alive = shmlease__alive_v(t, owner, lv);
        return;
    }
    if (alive_cache[owner] == ALIVE_UNASKED)
        alive_cache[owner] = (int8_t)shmlease__alive_v(t, owner, lv);
    info->holder_alive = alive_cache[owner];
}

/* INFO from a stable read R of state ST at table time NOW. */
static void fill_info(const shmlease_table *t, struct lstate st, const struct entry_read *r, uint64_t now,
                      shmlease_info *info, int8_t *alive_cache, struct shmlease__liveview *lv)
{
    memset(info, 0, sizeof *info);
    memcpy(info->key, r->kw, r->klen);
    info->key[r->klen] = 0;
    /* The publication block describes this claim only if its tag says so
     * (a grace period keeps the claim that entered it); a claimer between
     * its CAS and its publication shows token 0. */
    if (r->pub_ok && r->tag == (uint32_t)st.c) {
        uint32_t mlen = r->mlen <= SHMLEASE_METADATA_MAX ? r->mlen : SHMLEASE_METADATA_MAX;
        info->fencing_token = r->token;
        memcpy(info->metadata, r->mw, mlen);
        info->metadata_len = mlen;
    }
    info->expires_at_ms = t->created_at + sw_deadline(st.w);
    info->remaining_ms = (int64_t)sw_deadline(st.w) - (int64_t)now;
    /* A shared holder's slot, or the key's own entry (key.h)? */
    if (shmlease__slot_of(t, r->kw, r->klen, r->hash)) {
        info->mode = SHMLEASE_SHARED;
        info->limit = sw_aux(st.w);
    }
    info->holders = 1;
    if (sw_kind(st.w) == SW_GRACE) {
        info->in_grace = 1;
        info->holder_pid = 0;
        info->holder_alive = -1;
    } else {
        fill_holder(t, st.w, info, alive_cache, lv);
    }
}

/* A consistent snapshot of entry E into INFO at table time NOW (of key_seq
 * *WANT_KEY_SEQ when not NULL). 1 when the entry is a live lease (held or
 * grace, unexpired), else 0. */
static int snapshot(const shmlease_table *t, const struct shm_entry *e, uint64_t now,
                    const uint32_t *want_key_seq, shmlease_info *info, int8_t *alive_cache,
                    struct shmlease__liveview *lv)
{
    for (int tries = 0; tries < SNAPSHOT_TRIES; tries++) {
        const int skip_pub = tries >= SNAPSHOT_PUB_TRIES;
        struct lstate st = ls_snapshot(e);
        uint32_t ks = ld_acquire(&e->key_seq);
        uint32_t ps = ld_acquire(&e->pub_seq);
        if ((want_key_seq && ks != *want_key_seq) || !sw_live(st.w, now))
            return 0;
        if ((ks & 1) || ((ps & 1) && !skip_pub))
            continue;
        struct entry_read r;
        read_entry(e, ps, &r);
        if (r.klen == 0 || r.klen > SHMLEASE_KEY_MAX)
            return 0;
        /* A fair queue's place is a waiter, not a lease (key.h). */
        if (shmlease__salt_of(t, r.kw, r.klen, r.hash) > SALT_SLOTS)
            return 0;
        if ((!r.pub_ok && !skip_pub) || ld_relaxed(&e->key_seq) != ks || !ls_is(e, st.w, st.c))
            continue;
        fill_info(t, st, &r, now, info, alive_cache, lv);
        return 1;
    }
    return 0;
}

/* How many acquirers wait in KB's fair queue: live places after the
 * queue's "done" hint (fair.c). */
static uint32_t queued_on(const shmlease_table *t, const struct keybuf *kb, struct shmlease__liveview *lv)
{
    struct keybuf qkb;
    shmlease__salted_key(kb, SALT_QUEUE, &qkb);
    uint32_t qseq;
    long qi = shmlease__lookup_stable(t, &qkb, &qseq);
    if (qi < 0)
        return 0;
    const struct shm_entry *qe = &t->entries[qi];
    struct lstate q = ls_snapshot(qe);
    uint64_t done = ld_relaxed(&qe->pub_token);
    if (ld_acquire(&qe->key_seq) != qseq || ld_relaxed(&qe->pub_tag) != qseq || done > q.c)
        return 0;
    uint64_t now = shmlease__now_rel(t);
    uint32_t n = 0;
    for (uint64_t tk = done + 1; tk <= q.c && tk - done <= QUEUE_LOOK_MAX; tk++) {
        struct keybuf pkb;
        shmlease__salted_key(kb, SALT_PLACE0 + tk, &pkb);
        uint32_t pseq;
        long pi = shmlease__lookup_stable(t, &pkb, &pseq);
        if (pi < 0)
            continue;
        uint64_t w = ld_acquire(&t->entries[pi].state);
        if (ld_acquire(&t->entries[pi].key_seq) == pseq && sw_kind(w) == SW_HELD && sw_deadline(w) > now &&
            shmlease__alive_v(t, sw_owner(w), lv) != 0)
            n++;
    }
    return n;
}

SHM_API int shmlease_inspect(shmlease_table *t, const char *key, shmlease_info *out)
{
    if (t && t->remote)
        return shmlease__redis_inspect(t, key, out);
    struct keybuf kb;
    if (!t || !out)
        return -EINVAL;
    int rc = shmlease__key_prepare(t, key, &kb);
    if (rc)
        return rc;
    memset(out, 0, sizeof *out);       /* -ENOENT leaves it zeroed */
    /* One view of the kernel's locks per call (read only if needed, and only
     * by a handle without the lock file: see liveness.c). */
    struct shmlease__liveview lv;
    lv.state = 0;
    for (unsigned tries = 0; tries < INSPECT_LOOKS; tries++) {
        uint32_t kseq;
        long ei = shmlease__lookup_stable(t, &kb, &kseq);
        if (ei < 0)
            return -ENOENT;
        const struct shm_entry *e = &t->entries[ei];
        if (snapshot(t, e, shmlease__now_rel(t), &kseq, out, NULL, &lv)) {
            waiters_of(t, (uint32_t)ei, &kb, &lv, NULL, 0, &out->waiters);
            out->queued = queued_on(t, &kb, &lv);
            return 0;
        }
        /* Free, or the entry changed key under us: look again. A gate
         * that a reaper retires for a moment (to look at its slots, then
         * give it back) still says how many slots it has (word.h). */
        uint64_t gw = ld_acquire(&e->state);
        uint32_t hw = sw_aux(gw);
        if (ld_acquire(&e->key_seq) != kseq) {
            sched_yield();
            continue;
        }
        if (hw == 0)
            return -ENOENT;
        /* Not held exclusively: its shared holders, if any. */
        uint32_t holders = 0;
        shmlease_info one;
        for (uint32_t i = 0; i < hw; i++) {
            struct keybuf skb;
            shmlease__slot_key(&kb, i, &skb);
            uint32_t sseq;
            long si = shmlease__lookup_stable(t, &skb, &sseq);
            if (si >= 0 && snapshot(t, &t->entries[si], shmlease__now_rel(t), &sseq, holders ? &one : out,
                                    NULL, &lv))
                holders++;
        }
        if (holders == 0)
            return -ENOENT;
        out->holders = holders;
        waiters_of(t, (uint32_t)ei, &kb, &lv, NULL, 0, &out->waiters);
        out->queued = queued_on(t, &kb, &lv);
        return 0;
    }
    return -ENOENT;
}

SHM_API long shmlease_waiters(shmlease_table *t, const char *key, shmlease_waiter *out, size_t max)
{
    if (t && t->remote)
        return -EOPNOTSUPP;               /* who waits is not recorded on Redis */
    struct keybuf kb;
    if (!t || (!out && max))
        return -EINVAL;
    int rc = shmlease__key_prepare(t, key, &kb);
    if (rc)
        return rc;
    uint32_t kseq;
    long ei = shmlease__lookup_stable(t, &kb, &kseq);
    if (ei < 0)
        return 0;                       /* not in the table: nobody waits */
    struct shmlease__liveview lv;
    lv.state = 0;
    long n = waiters_of(t, (uint32_t)ei, &kb, &lv, out, max, NULL);
    /* The entry may have been given another key meanwhile: then its records
     * were another key's. */
    if (ld_acquire(&t->entries[ei].key_seq) != kseq)
        return 0;
    return n;
}

SHM_API int shmlease_foreach(shmlease_table *t, int (*fn)(const shmlease_info *, void *), void *arg)
{
    if (t && t->remote)
        return shmlease__redis_foreach(t, fn, arg);
    if (!t || !fn)
        return -EINVAL;
    shmlease_info info;
    int8_t alive_cache[SHM_REG_SLOTS];
    memset(alive_cache, ALIVE_UNASKED, sizeof alive_cache);
    struct waitview *wv = malloc(sizeof *wv);
    if (!wv)
        return -ENOMEM;
    struct shmlease__liveview lv;
    lv.state = 0;
    waitview_build(t, wv, alive_cache, &lv);
    for (uint32_t i = 0; i < t->capacity; i++) {
        const struct shm_entry *e = &t->entries[i];
        uint64_t now = shmlease__now_rel(t);
        if (!sw_live(ld_relaxed(&e->state), now))
            continue;
        if (!snapshot(t, e, now, NULL, &info, alive_cache, &lv))
            continue;
        info.waiters = waitview_count(wv, i);
        int r = fn(&info, arg);
        if (r) {
            free(wv);
            return r;
        }
    }
    free(wv);
    return 0;
}

/* Is E (live, read without a lock) a fair queue's place? */
static int is_place(const shmlease_table *t, const struct shm_entry *e)
{
    uint64_t kw[(SHMLEASE_KEY_MAX + 1) / 8];
    uint32_t klen = ld_relaxed(&e->key_len);
    if (klen == 0 || klen > SHMLEASE_KEY_MAX)
        return 0;
    for (uint32_t i = 0; i < (klen + 7) / 8; i++)
        kw[i] = shmlease__key_word(e, i);
    return shmlease__salt_of(t, kw, klen, ld_relaxed(&e->hash)) > SALT_SLOTS;
}

SHM_API int shmlease_stats_get(shmlease_table *t, shmlease_stats *out)
{
    if (t && t->remote)
        return shmlease__redis_stats(t, out);
    if (!t || !out)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    const struct shm_header *h = t->hdr;
#define LD(x) ld_relaxed(&h->x)
    out->fencing_counter = LD(hot.fence);
    uint64_t other = LD(cold.other_tokens);
    out->acquisitions = out->fencing_counter >= other ? out->fencing_counter - other : 0;
    out->renewals = LD(hot.renewals);
    uint64_t refused = LD(cold.refused);
    out->contended = LD(cold.contended) + refused;
    out->waits = LD(cold.waits);
    out->timeouts = LD(cold.timeouts);
    out->busy = LD(cold.busy) + refused;
    out->expirations = LD(cold.expirations);
    out->reclaimed_dead = LD(cold.reclaimed_dead);
    out->lost = LD(cold.lost);
    out->broken = LD(cold.broken);
    out->recoveries = LD(cold.recoveries);
    uint32_t live = LD(live_count);
#undef LD
    out->capacity = t->capacity;
    out->live_keys = live <= t->capacity ? live : t->capacity;
    uint64_t now = shmlease__now_rel(t);
    uint32_t held = 0;
    for (uint32_t i = 0; i < t->capacity; i++) {
        const struct shm_entry *e = &t->entries[i];
        uint64_t w = ld_relaxed(&e->state);
        if (!sw_live(w, now))
            continue;
        /* A fair queue's place is a waiter, not a lease (key.h): a HELD
         * word without aux whose hash is a salt of its key. */
        if (sw_kind(w) == SW_HELD && sw_aux(w) == 0 && is_place(t, e))
            continue;
        held++;
    }
    out->held = held;
    uint32_t attached = 0;
    struct shmlease__liveview lv;
    lv.state = 0;
    for (uint32_t i = 1; i < SHM_REG_SLOTS; i++)
        if (ld_relaxed(&t->reg[i].state) == SHM_REG_ACTIVE && shmlease__alive_v(t, i, &lv) == 1)
            attached++;
    out->attached = attached;
    out->format_version = SHM_LAYOUT_VERSION;
    out->segment_bytes = t->map_size;
    out->created_at_ms = t->created_at;
    out->table_epoch = t->epoch;
    return 0;
}
