/*
 * Fair queues (SHMLEASE_ACQUIRE_FAIR; docs/state-machine.md, section 9).
 *
 * A key's queue is an entry of its own (key.h: salt SALT_QUEUE) whose claim
 * count is the last ticket drawn, and whose pub_token is a hint: every
 * ticket up to it is done. A waiter draws a ticket and takes its place, an
 * entry of its own (salt SALT_PLACE0 + ticket) HELD by the waiter, in one
 * critical section of the index lock (index.c, shmlease__enqueue), so a
 * waiter that looks at the tickets before its own finds the place of every
 * one of them taken already. The waiter whose earlier tickets have no live
 * place is at the head: it alone tries the key, waiting as an acquire of
 * its mode does; the others sleep on the place of the first live ticket
 * before theirs. A place is live like a lease: HELD, before its deadline,
 * its process alive. So a waiter that times out or is cancelled (it frees
 * its place), or dies (its place dies with it), costs nobody their turn;
 * one stopped for longer than PLACE_TTL_MS loses its place (it renews it
 * after every sleep) and queues again at the end when it resumes.
 *
 * Fairness holds among acquirers that ask for it: an acquire without the
 * flag does not look at the queue and may take a free key first.
 */
#include "acquire.h"
#include "clock.h"
#include "compiler.h"
#include "index.h"
#include "wait.h"

#include <errno.h>
#include <string.h>


struct queue {
    long ei;
    uint32_t kseq;
};

/* The key's queue entry: found (or inserted, when CREATE). 0, -ENOENT (not
 * CREATE), STEP_AGAIN, or a lock code. */
static int queue_find(struct acquire *a, struct queue *q, int create)
{
    shmlease_table *t = a->t;
    struct keybuf qkb;
    shmlease__salted_key(&a->kb, SALT_QUEUE, &qkb);
    q->ei = shmlease__lookup_stable(t, &qkb, &q->kseq);   /* must not miss: a miss barges */
    if (q->ei >= 0 && sw_kind(ld_acquire(&t->entries[q->ei].state)) != SW_RETIRED)
        return 0;
    if (!create)
        return -ENOENT;
    struct shmlease__insert ins = {.kb = &qkb, .owner = a->me, .ttl_ms = PLACE_TTL_MS,
                                   .lock_ms = shmlease__struct_lock_ms(a, shmlease__now_rel(t)),
                                   .free_gate = 1, .aux = 1};
    int rc = shmlease__insert_held(t, &ins);
    if (rc == -EAGAIN)
        return STEP_AGAIN;
    if (rc < 0)
        return shmlease__struct_lock_gave_up(a, rc);
    q->ei = ins.entry;
    q->kseq = ins.key_seq;
    return 0;
}

/* The first live place among the tickets after the queue's "done" hint and
 * before UPTO; its entry and *W its word, or -1. */
static long first_live_place(struct acquire *a, const struct queue *q, uint64_t upto, uint64_t *w)
{
    shmlease_table *t = a->t;
    const struct shm_entry *qe = &t->entries[q->ei];
    uint64_t done = ld_relaxed(&qe->pub_token);
    uint64_t now = shmlease__now_rel(t);
    for (uint64_t tk = done + 1; tk < upto; tk++) {
        struct keybuf pkb;
        shmlease__salted_key(&a->kb, SALT_PLACE0 + tk, &pkb);
        uint32_t kseq;
        long pe = shmlease__lookup_stable(t, &pkb, &kseq);
        if (pe < 0)
            continue;
        uint64_t pw = ld_seqcst(&t->entries[pe].state);
        if (ld_acquire(&t->entries[pe].key_seq) == kseq && sw_kind(pw) == SW_HELD &&
            !shmlease__takeable(a, pw, now)) {
            *w = pw;
            return pe;
        }
    }
    return -1;
}

/* Does anyone wait in the key's queue (a live place up to its last ticket)? */
static int queue_busy(struct acquire *a)
{
    struct queue q;
    if (queue_find(a, &q, 0) != 0)
        return 0;
    const struct shm_entry *qe = &a->t->entries[q.ei];
    struct lstate s = ls_snapshot(qe);
    if (ld_acquire(&qe->key_seq) != q.kseq || ld_relaxed(&qe->pub_tag) != q.kseq)
        return 0;
    uint64_t w;
    return first_live_place(a, &q, s.c + 1, &w) >= 0;
}

/* Frees our place (if we still have it) and wakes whoever sleeps on it. */
static void leave_queue(struct acquire *a)
{
    if (!a->queued)
        return;
    a->queued = 0;
    struct shm_entry *pe = &a->t->entries[a->place.ei];
    for (;;) {
        struct lstate s = ls_snapshot(pe);
        if (s.c != a->place.s.c || sw_kind(s.w) != SW_HELD || sw_owner(s.w) != a->me)
            break;
        if (ls_cas(pe, s, (struct lstate){SW_FREE_WORD, s.c})) {
            shmlease__wake_waiters(pe, 1);
            break;
        }
    }
}

/* Waits until no earlier ticket of queue Q has a live place. 0 at the head,
 * -ENOLINK (our place was lost: queue again), or the code that ends it. */
static int wait_turn(struct acquire *a, const struct queue *q, uint64_t ticket)
{
    shmlease_table *t = a->t;
    for (;;) {
        uint64_t w;
        long pe = first_live_place(a, q, ticket, &w);
        if (pe < 0)
            break;
        int rc = shmlease__wait_or_give_up(a, &t->entries[pe], w, shmlease__now_rel(t));
        if (rc)
            return rc;
    }
    /* Head: every ticket before ours is done for good (a lost place is
     * never live again: its waiter queues anew). */
    struct shm_entry *qe = &t->entries[q->ei];
    uint64_t done = ld_relaxed(&qe->pub_token);
    while (done < ticket - 1 && !cas_relaxed(&qe->pub_token, &done, ticket - 1))
        ;
    return 0;
}

/* Queues (again, after a lost place) and waits for our turn: 0 at the head
 * of the queue, -EAGAIN (look again), or a code. */
static int queue_up(struct acquire *a)
{
    shmlease_table *t = a->t;
    struct queue q;
    int rc = queue_find(a, &q, 1);
    if (rc)
        return rc == STEP_AGAIN ? -EAGAIN : rc;
    struct shmlease__enqueue e = {.kb = &a->kb, .queue = q.ei, .queue_kseq = q.kseq, .owner = a->me,
                                  .ttl_ms = PLACE_TTL_MS,
                                  .lock_ms = shmlease__struct_lock_ms(a, shmlease__now_rel(t))};
    rc = shmlease__enqueue(t, &e);
    if (rc == -EAGAIN)
        return rc;
    if (rc)
        return shmlease__struct_lock_gave_up(a, rc);
    a->queued = 1;
    a->place = (struct target){e.place, e.place_kseq, e.place_state};
    return wait_turn(a, &q, e.ticket);
}

int shmlease__acquire_fair(struct acquire *a, shmlease_lease *out)
{
    const shmlease_acquire_opts *o = a->o;
    int (*run)(struct acquire *, shmlease_lease *) =
        o->mode == SHMLEASE_SHARED ? shmlease__acquire_shared : shmlease__acquire_exclusive;
    /* Nobody queued: a try first, as any acquire would. */
    if (!queue_busy(a)) {
        shmlease_acquire_opts once = *o;
        once.wait_ms = 0;
        a->o = &once;
        int rc = run(a, out);
        a->o = o;
        if (rc != -EBUSY || o->wait_ms == 0)
            return rc;
    } else if (o->wait_ms == 0) {
        stats_inc(a->t, cold.refused);
        return -EBUSY;
    }
    for (;;) {
        int rc = queue_up(a);
        if (rc == 0)
            rc = run(a, out);          /* at the head: wait for the key itself */
        leave_queue(a);
        if (rc != -EAGAIN && rc != -ENOLINK)
            return rc;
    }
}
