/*
 * Fuzz target: the API's inputs.
 *
 * Each input is a program run on a fresh table (capacity 1..16) with two
 * handles and an injected clock that ticks 1 ms per read (so waits and
 * expiries happen without real time passing): acquire / renew / release /
 * release_after / check / break / with / inspect / foreach / stats / clock
 * advances / handle reopen / calls with corrupted lease values, with keys,
 * metadata, TTLs and wait values decoded from the bytes (empty, too long,
 * non-ASCII keys; oversized or NULL metadata; zero, huge TTLs; invalid waits).
 *
 * Besides "no crash, no sanitizer report, no hang", it checks against a small
 * model: every return code is one the contract lists for that call; options
 * the contract calls invalid give -EINVAL/-ENAMETOOLONG; a key held (and
 * unexpired by 5 ms) is -EBUSY for a try-acquire through either handle (not
 * re-entrant); a successful acquire's token is above every earlier token;
 * inspect right after shows our token; a released or reopened handle's lease
 * is -ESTALE; stats.acquisitions counts exactly the successful acquires.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SLOTS 8
#define MARGIN 5

struct in {
    const uint8_t *p;
    size_t n, i;
};

static uint8_t next(struct in *in) { return in->i < in->n ? in->p[in->i++] : 0; }
static int more(const struct in *in) { return in->i < in->n; }

struct clk {
    uint64_t now;
};
static uint64_t clk_read(void *ctx)
{
    struct clk *c = ctx;
    return c->now++;
}

struct slot {
    int active;          /* a lease value is stored here */
    int live;            /* model: still ours (not released/broken/expired by our knowledge) */
    int stale;           /* model: its handle was reopened */
    int h;
    char key[SHMLEASE_KEY_MAX + 16];
    shmlease_lease l;
};

struct grace {
    char key[SHMLEASE_KEY_MAX + 16];
    uint64_t until;
};

static void die(const char *what, int rc)
{
    fprintf(stderr, "fuzz_api: %s (rc %d %s)\n", what, rc, shmlease_errname(rc));
    fflush(stderr);
    abort();
}

static void make_key(struct in *in, char *key)
{
    static const char *const pool[] = {"a", "b", "c", "job:1", "x.y-z_0", "k"};
    uint8_t b = next(in);
    if (b < 192) {
        strcpy(key, pool[b % 6]);
        return;
    }
    size_t len = next(in) % 140;      /* 0 (invalid) .. 139 (too long) */
    for (size_t i = 0; i < len; i++) {
        uint8_t c = next(in);
        key[i] = (char)(c ? c : 'z');
    }
    key[len] = 0;
}

static uint64_t pick_ttl(struct in *in)
{
    static const uint64_t v[] = {0, 1, 2, 5, 50, 1000, 60000, UINT64_MAX, (uint64_t)1 << 41, 7};
    return v[next(in) % 10];
}

static int valid_key(const char *k) { return k[0] && strlen(k) <= SHMLEASE_KEY_MAX; }

static uint64_t now_of(shmlease_table *t) { return shmlease_now_ms(t); }

struct ctx {
    shmlease_table *h[2];
    struct clk clk;
    struct slot s[SLOTS];
    struct grace g[SLOTS];
    uint64_t max_token, acquisitions;
    int model_ok;
    uint32_t capacity;
    const char *name;
    shmlease_table *with_h;
};

/* Is KEY held (unexpired by MARGIN) according to the model? */
static int model_busy(struct ctx *c, const char *key, uint64_t now)
{
    for (int i = 0; i < SLOTS; i++)
        if (c->s[i].active && c->s[i].live && !strcmp(c->s[i].key, key) &&
            c->s[i].l.expires_at_ms > now + MARGIN)
            return 1;
    for (int i = 0; i < SLOTS; i++)
        if (c->g[i].key[0] && !strcmp(c->g[i].key, key) && c->g[i].until > now + MARGIN)
            return 1;
    return 0;
}

static int with_fn(const shmlease_lease *l, void *arg)
{
    struct ctx *c = arg;
    if (shmlease_check(c->with_h, l) != 0 && l->expires_at_ms > now_of(c->with_h) + MARGIN)
        die("with: check inside fn failed", 0);
    return -7;
}

static int count_cb(const shmlease_info *i, void *arg)
{
    if (i->metadata_len > SHMLEASE_METADATA_MAX || strlen(i->key) > SHMLEASE_KEY_MAX || !i->key[0])
        die("foreach: bad info", 0);
    (*(unsigned *)arg)++;
    return 0;
}

static void op_acquire(struct ctx *c, struct in *in, int with)
{
    int h = next(in) & 1;
    if (!c->h[h])
        return;
    char key[SHMLEASE_KEY_MAX + 16];
    make_key(in, key);
    uint64_t ttl = pick_ttl(in);
    uint8_t wb = next(in);
    static const int64_t waits[] = {0, 0, 0, 1, 2, 5, -2, INT64_MIN, -1, INT64_MAX};
    int64_t wait = waits[wb % 10];
    uint64_t now = now_of(c->h[h]);
    if (wait == -1 || wait == INT64_MAX) {
        /* Could wait for ever: only on a key that is free right now. */
        shmlease_info info;
        if (!valid_key(key) || shmlease_inspect(c->h[h], key, &info) != -ENOENT)
            wait = 0;
    }
    uint8_t mb = next(in);
    size_t mlen = mb % 150;
    const void *meta = (mb & 0x80) && mlen ? NULL : in->p + (in->i < in->n ? in->i : 0);
    if (meta && in->i + mlen > in->n)
        mlen = in->n - in->i;
    shmlease_acquire_opts o = {.ttl_ms = ttl, .wait_ms = wait, .metadata = meta, .metadata_len = mlen};
    int expect_inval = ttl == 0 || wait < -1 || mlen > SHMLEASE_METADATA_MAX || (mlen && !meta);
    int busy = c->model_ok && wait >= 0 && wait <= 5 && model_busy(c, key, now + (uint64_t)wait);
    int rc;
    shmlease_lease l;
    c->with_h = c->h[h];
    if (with)
        rc = shmlease_with(c->h[h], key, &o, with_fn, c);
    else
        rc = shmlease_acquire(c->h[h], key, &o, &l);
    if (!valid_key(key)) {
        int want = key[0] ? -ENAMETOOLONG : -EINVAL;
        if (rc != want)
            die("acquire with an invalid key", rc);
        return;
    }
    if (expect_inval) {
        if (rc != -EINVAL)
            die("acquire with invalid options", rc);
        return;
    }
    if (with && rc == -7) {
        c->acquisitions++;
        return;
    }
    if (rc != 0 && rc != -EBUSY && rc != -ETIMEDOUT && rc != -ENOSPC)
        die("acquire: code not in the contract", rc);
    if (busy && rc == 0)
        die("acquire succeeded on a key held (unexpired) per the model", rc);
    if (with)
        return;
    if (rc != 0)
        return;
    c->acquisitions++;
    if (l.fencing_token <= c->max_token)
        die("token not above every earlier token", (int)l.fencing_token);
    c->max_token = l.fencing_token;
    if (l.expires_at_ms > now_of(c->h[h]) + MARGIN) {
        shmlease_info info;
        int irc = shmlease_inspect(c->h[h], key, &info);
        if (irc != 0 || info.fencing_token != l.fencing_token || info.holder_pid != getpid() ||
            strcmp(info.key, key) != 0 || info.metadata_len != mlen ||
            (mlen && memcmp(info.metadata, meta, mlen) != 0))
            die("inspect right after acquire", irc);
    }
    /* Store it in a slot (the lease it replaces stays held, unknown to us). */
    int si = next(in) % SLOTS;
    struct slot *s = &c->s[si];
    if (s->active && s->live) {
        /* The old lease stays held by the table; keep the model honest by
         * releasing it first. */
        int r2 = shmlease_release(c->h[s->h] ? c->h[s->h] : c->h[0], &s->l);
        (void)r2;
    }
    memset(s, 0, sizeof *s);
    s->active = s->live = 1;
    s->h = h;
    strcpy(s->key, key);
    s->l = l;
    for (int i = 0; i < SLOTS; i++)
        if (!strcmp(c->g[i].key, key))
            c->g[i].key[0] = 0;
}

static void op_end(struct ctx *c, struct in *in, int kind)
{
    struct slot *s = &c->s[next(in) % SLOTS];
    if (!s->active || !c->h[s->h])
        return;
    shmlease_table *t = c->h[s->h];
    uint64_t arg = pick_ttl(in);
    uint64_t before = now_of(t);
    int rc;
    switch (kind) {
    case 0: rc = shmlease_renew(t, &s->l, arg); break;
    case 1: rc = shmlease_release(t, &s->l); break;
    case 2: rc = shmlease_release_after(t, &s->l, arg); break;
    default: rc = shmlease_check(t, &s->l); break;
    }
    if (rc != 0 && rc != -ESTALE && rc != -EINVAL)
        die("renew/release/check: code not in the contract", rc);
    if (kind == 0 && arg == 0) {
        if (rc != -EINVAL && rc != -ESTALE)
            die("renew with ttl 0", rc);
        return;
    }
    if (rc == -EINVAL)
        die("-EINVAL for a lease value the library made", rc);
    int expect_live = c->model_ok && s->live && !s->stale && s->l.expires_at_ms > before + MARGIN;
    int expect_dead = c->model_ok && (!s->live || s->stale || s->l.expires_at_ms <= before);
    if (expect_live && rc != 0)
        die("renew/release/check of a live lease failed", rc);
    if (expect_dead && rc != -ESTALE)
        die("renew/release/check of a lost lease succeeded", rc);
    if (kind == 1 || kind == 2) {
        if (rc == 0 && kind == 2 && arg) {
            int gi = next(in) % SLOTS;
            strcpy(c->g[gi].key, s->key);
            c->g[gi].until = arg > UINT64_MAX - before ? UINT64_MAX : before + arg + 1;
        }
        s->live = 0;
    }
    if (rc == -ESTALE)
        s->live = 0;
}

static void op_break(struct ctx *c, struct in *in)
{
    char key[SHMLEASE_KEY_MAX + 16];
    make_key(in, key);
    shmlease_table *t = c->h[0];
    int rc = shmlease_break(t, key);
    if (!valid_key(key)) {
        if (rc != (key[0] ? -ENAMETOOLONG : -EINVAL))
            die("break with an invalid key", rc);
        return;
    }
    if (rc != 0 && rc != -ENOENT)
        die("break: code not in the contract", rc);
    if (rc == 0) {
        for (int i = 0; i < SLOTS; i++) {
            if (c->s[i].active && !strcmp(c->s[i].key, key))
                c->s[i].live = 0;
            if (!strcmp(c->g[i].key, key))
                c->g[i].key[0] = 0;
        }
    }
}

static void op_inspect(struct ctx *c, struct in *in)
{
    char key[SHMLEASE_KEY_MAX + 16];
    make_key(in, key);
    shmlease_info info;
    int rc = shmlease_inspect(c->h[0], key, &info);
    if (!valid_key(key)) {
        if (rc != (key[0] ? -ENAMETOOLONG : -EINVAL))
            die("inspect with an invalid key", rc);
        return;
    }
    if (rc != 0 && rc != -ENOENT)
        die("inspect: code not in the contract", rc);
    if (rc == 0 && (strcmp(info.key, key) != 0 || info.metadata_len > SHMLEASE_METADATA_MAX))
        die("inspect: wrong key or metadata", rc);
    if (rc == -ENOENT && c->model_ok && model_busy(c, key, now_of(c->h[0])))
        die("inspect: -ENOENT for a held key", rc);
}

static void op_corrupt(struct ctx *c, struct in *in)
{
    struct slot *s = &c->s[next(in) % SLOTS];
    shmlease_lease l = s->l;
    uint8_t w = next(in);
    l._private[w % 4] ^= (uint64_t)next(in) << ((next(in) % 8) * 8);
    if (w & 0x10)
        l._private[0] = (uint64_t)next(in) << 24;          /* entry far out */
    shmlease_table *t = c->h[next(in) & 1];
    if (!t)
        return;
    int rc = (w & 0x20) ? shmlease_release(t, &l) : (w & 0x40) ? shmlease_renew(t, &l, 1000) : shmlease_check(t, &l);
    if (rc != 0 && rc != -ESTALE && rc != -EINVAL)
        die("corrupted lease value: code not in the contract", rc);
    if (rc == 0)
        c->model_ok = 0;       /* it named a real lease: the model no longer knows */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct in in = {data, size, 0};
    struct ctx *c = calloc(1, sizeof *c);
    if (!c)
        abort();
    char name[64];
    snprintf(name, sizeof name, "fuzzapi-%d", (int)getpid());
    c->name = name;
    c->model_ok = 1;
    c->clk.now = 1000;
    c->capacity = 1 + next(&in) % 16;
    shmlease_unlink(name);
    shmlease_options o = {.capacity = c->capacity, .flags = SHMLEASE_OPEN_EXCL, .clock_ms = clk_read,
                          .clock_ctx = &c->clk};
    int rc = shmlease_open(name, &o, &c->h[0]);
    if (rc)
        die("open", rc);
    o.flags = SHMLEASE_OPEN_NOCREATE;
    if ((rc = shmlease_open(name, &o, &c->h[1])) != 0)
        die("open 2", rc);
    for (int steps = 0; more(&in) && steps < 200; steps++) {
        uint8_t op = next(&in);
        switch (op % 14) {
        case 0: case 1: op_acquire(c, &in, 0); break;
        case 2: op_end(c, &in, 0); break;
        case 3: op_end(c, &in, 1); break;
        case 4: op_end(c, &in, 2); break;
        case 5: op_end(c, &in, 3); break;
        case 6: op_break(c, &in); break;
        case 7: op_inspect(c, &in); break;
        case 8: {
            unsigned n = 0;
            if (shmlease_foreach(c->h[0], count_cb, &n) != 0 || n > c->capacity)
                die("foreach", (int)n);
            break;
        }
        case 9: {
            shmlease_stats st;
            if (shmlease_stats_get(c->h[op & 1 ? 0 : 1] ? c->h[op & 1 ? 0 : 1] : c->h[0], &st) != 0)
                die("stats", 0);
            if (st.held > c->capacity || st.live_keys > c->capacity || st.capacity != c->capacity)
                die("stats: counts", (int)st.held);
            if (st.acquisitions != c->acquisitions)
                die("stats.acquisitions != successful acquires", (int)st.acquisitions);
            break;
        }
        case 10: c->clk.now += (uint64_t)next(&in) * 8; break;
        case 11: op_acquire(c, &in, 1); break;
        case 12: {                                         /* reopen handle 1 */
            shmlease_close(c->h[1]);
            c->h[1] = NULL;
            for (int i = 0; i < SLOTS; i++)
                if (c->s[i].active && c->s[i].h == 1) {
                    c->s[i].stale = 1;
                    c->s[i].live = 0;
                    c->s[i].h = 0;                         /* used through handle 0 from now on */
                }
            if ((rc = shmlease_open(name, &o, &c->h[1])) != 0)
                die("reopen", rc);
            break;
        }
        case 13: op_corrupt(c, &in); break;
        }
    }
    shmlease_close(c->h[0]);
    shmlease_close(c->h[1]);
    shmlease_unlink(name);
    free(c);
    return 0;
}
