/*
 * shmlease-dump: reading tables. A table is opened read-only and read with
 * the inspection calls only (stats_get, foreach, inspect, waiters, now_ms),
 * which never take a lock and never write, so a table whose structural mutex
 * is held by a dead or stopped process reads as well as any. A fault while
 * the library reads a segment is caught and the table reported as unusable.
 * Also: the tables in /dev/shm, and what an error means (message, exit
 * code).
 */
#include "dump.h"

#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

/*
 * Fault guard. Only armed while the library reads a mapped segment: a SIGBUS
 * (segment truncated by someone after we mapped it) or a SIGSEGV there jumps
 * back to collect(), which reports the table as unusable. Outside that window
 * the signal keeps its default action, so bugs in this program still crash.
 */
static sigjmp_buf guard_env;
static volatile sig_atomic_t guard_armed;

static void guard_handler(int sig)
{
    if (guard_armed) {
        guard_armed = 0;
        siglongjmp(guard_env, sig);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

void guard_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = guard_handler;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, NULL);
    sigaction(SIGSEGV, &sa, NULL);
}

/* ------------------------------------------------------------------------ */
/* Reading one table                                                         */

/* Room for at least one more row and N more bytes in *v; 0 or -ENOMEM. */
static int view_reserve(struct table_view *v, size_t n)
{
    if (v->nrows == v->caprows) {
        size_t ncap = v->caprows ? v->caprows * 2 : 16;
        struct dump_row *r = realloc(v->rows, ncap * sizeof(*r));
        if (r != NULL)
            v->rows = r;
        struct sort_item *o = realloc(v->order, ncap * sizeof(*o));
        if (o != NULL)
            v->order = o;
        if (r == NULL || o == NULL)
            return -ENOMEM;
        v->caprows = ncap;
    }
    if (v->capbytes - v->nbytes < n) {
        size_t ncap = v->capbytes ? v->capbytes * 2 : 4096;
        while (ncap - v->nbytes < n)
            ncap *= 2;
        unsigned char *b = realloc(v->bytes, ncap);
        if (b == NULL)
            return -ENOMEM;
        v->bytes = b;
        v->capbytes = ncap;
    }
    return 0;
}

/* Bytes OFF..OFF+7 of a key of KLEN bytes as a big-endian number, zero
 * padded. */
static uint64_t key_word(const char *key, size_t klen, size_t off)
{
    unsigned char b[8] = { 0 };
    if (klen > off)
        memcpy(b, key + off, klen - off < 8 ? klen - off : 8);
    uint64_t w = 0;
    for (size_t i = 0; i < 8; i++)
        w = w << 8 | b[i];
    return w;
}

/* Keeps one lease of the walk: its fields in a row, its key (up to its
 * first NUL, as every output reads it) and metadata in bytes[]. With
 * --key, only that key's rows (every holder of a shared key). */
static int collect_row(const shmlease_info *info, void *arg)
{
    struct table_view *v = arg;
    if (v->opts != NULL && v->opts->key != NULL &&
        strncmp(info->key, v->opts->key, sizeof(info->key)) != 0)
        return 0;
    if (info->in_grace || info->holder_pid == 0)
        v->n_grace++;
    else if (info->holder_alive > 0)
        v->n_alive++;
    else if (info->holder_alive == 0)
        v->n_dead++;
    else
        v->n_unknown++;
    if (!info->in_grace && info->holder_pid != 0 && info->holder_other_pidns)
        v->n_other_pidns++;
    v->n_waiters += info->waiters;
    if (info->mode == SHMLEASE_SHARED)
        v->n_shared++;
    else
        v->n_exclusive++;
    /* The metrics need the counts, and the shared keys (for their queues). */
    if (v->opts != NULL && v->opts->prometheus && info->mode != SHMLEASE_SHARED)
        return 0;
    size_t klen = strnlen(info->key, sizeof(info->key));
    size_t mlen = info->metadata_len <= SHMLEASE_METADATA_MAX ? info->metadata_len
                                                              : SHMLEASE_METADATA_MAX;
    if (view_reserve(v, klen + mlen) != 0)
        return -ENOMEM;
    struct sort_item *o = &v->order[v->nrows];
    o->p0 = key_word(info->key, klen, 0);
    o->p1 = key_word(info->key, klen, 8);
    o->row = (uint32_t)v->nrows;
    o->pad = 0;
    struct dump_row *r = &v->rows[v->nrows++];
    memset(r, 0, sizeof(*r));
    r->token = info->fencing_token;
    r->expires_at_ms = info->expires_at_ms;
    r->start_time = info->holder_start_time;
    r->remaining_ms = info->remaining_ms;
    r->metadata_len = info->metadata_len;
    r->text = v->nbytes;
    r->pid = info->holder_pid;
    r->handle = info->holder_handle;
    r->waiters = info->waiters;
    r->alive = info->holder_alive;
    r->limit = info->limit;
    r->holders = 1;
    r->in_grace = info->in_grace != 0;
    r->other_pidns = info->holder_other_pidns != 0;
    r->klen = (uint8_t)klen;
    r->mlen = (uint8_t)mlen;
    r->mode = info->mode == SHMLEASE_SHARED ? SHMLEASE_SHARED : SHMLEASE_EXCLUSIVE;
    memcpy(v->bytes + v->nbytes, info->key, klen);
    memcpy(v->bytes + v->nbytes + klen, info->metadata, mlen);
    v->nbytes += klen + mlen;
    if (v->opts != NULL && !v->opts->json && !v->opts->raw)
        for (size_t c = 0; c < v->opts->ncols; c++) {
            enum col_id id = v->opts->cols[c];
            if (column_is_late(id))
                continue;
            size_t w = cell_len(id, info, v);
            if (w > v->cell_width[id])
                v->cell_width[id] = w;
        }
    return 0;
}

void view_row_at(const struct table_view *v, size_t row, shmlease_info *out)
{
    const struct dump_row *r = &v->rows[row];
    const unsigned char *text = v->bytes + r->text;
    memset(out, 0, sizeof(*out));
    memcpy(out->key, text, r->klen);
    memcpy(out->metadata, text + r->klen, r->mlen);
    out->fencing_token = r->token;
    out->holder_pid = r->pid;
    out->holder_alive = r->alive;
    out->remaining_ms = r->remaining_ms;
    out->waiters = r->waiters;
    out->metadata_len = (size_t)r->metadata_len;
    out->expires_at_ms = r->expires_at_ms;
    out->in_grace = r->in_grace;
    out->holder_other_pidns = r->other_pidns;
    out->holder_start_time = r->start_time;
    out->holder_handle = r->handle;
    out->mode = r->mode;
    out->limit = r->limit;
    out->holders = r->holders;
}

const struct dump_row *view_row_ptr(const struct table_view *v, size_t i)
{
    return &v->rows[v->order[i].row];
}

void view_row(const struct table_view *v, size_t i, shmlease_info *out)
{
    view_row_at(v, v->order[i].row, out);
}

/* ------------------------------------------------------------------------ */
/* Sorting: by key as strcmp orders it (keys hold no NUL: unsigned bytes, a
 * prefix first), then by token, then in the order the walk met them. A
 * stable radix sort on the keys' first 16 bytes, then a comparison sort
 * inside each run of equal first 16 bytes. */

static unsigned item_byte(const struct sort_item *it, unsigned b)
{
    return (unsigned)((b < 8 ? it->p0 >> (56 - 8 * b) : it->p1 >> (56 - 8 * (b - 8))) & 0xff);
}

/* Two items whose first 16 key bytes are equal: the rest of the key, the
 * token, the walk's order. */
static int cmp_tail(const void *a, const void *b, void *arg)
{
    const struct table_view *v = arg;
    const struct sort_item *x = a, *y = b;
    const struct dump_row *rx = &v->rows[x->row], *ry = &v->rows[y->row];
    size_t lx = rx->klen > 16 ? rx->klen - 16u : 0, ly = ry->klen > 16 ? ry->klen - 16u : 0;
    if (lx > 0 && ly > 0) {
        int c = memcmp(v->bytes + rx->text + 16, v->bytes + ry->text + 16, lx < ly ? lx : ly);
        if (c != 0)
            return c;
    }
    if (lx != ly)
        return lx < ly ? -1 : 1;
    if (rx->token != ry->token)
        return rx->token < ry->token ? -1 : 1;
    return x->row < y->row ? -1 : x->row > y->row;
}

/* One counting pass on byte B of every item, A into T (stable). */
static void radix_pass(const struct sort_item *a, struct sort_item *t, size_t n, unsigned b,
                       const uint32_t *count)
{
    size_t pos[256], sum = 0;
    for (unsigned k = 0; k < 256; k++) {
        pos[k] = sum;
        sum += count[k];
    }
    for (size_t i = 0; i < n; i++)
        t[pos[item_byte(&a[i], b)]++] = a[i];
}

/* Sorts v->order (0 or -ENOMEM). */
static int view_sort(struct table_view *v)
{
    size_t n = v->nrows;
    if (n < 2)
        return 0;
    struct sort_item *tmp = malloc(n * sizeof(*tmp)), *a = v->order;
    uint32_t (*count)[256] = calloc(16, sizeof(*count));
    if (tmp == NULL || count == NULL) {
        free(tmp);
        free(count);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        for (unsigned b = 0; b < 16; b++)
            count[b][item_byte(&a[i], b)]++;
    for (unsigned b = 16; b-- > 0;) {
        if (count[b][item_byte(&a[0], b)] == n)
            continue;                 /* every key has the same byte here */
        radix_pass(a, tmp, n, b, count[b]);
        struct sort_item *s = a;
        a = tmp;
        tmp = s;
    }
    for (size_t i = 0, j; i < n; i = j) {
        for (j = i + 1; j < n && a[j].p0 == a[i].p0 && a[j].p1 == a[i].p1; j++)
            ;
        if (j - i > 1)
            qsort_r(a + i, j - i, sizeof(*a), cmp_tail, v);
    }
    v->order = a;                     /* the result may be in either array */
    free(tmp);
    free(count);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Keys and their queues                                                     */

static bool same_key(const struct table_view *v, const struct dump_row *a,
                     const struct dump_row *b)
{
    return a->klen == b->klen && memcmp(v->bytes + a->text, v->bytes + b->text, a->klen) == 0;
}

static int queue_push(struct table_view *v, const struct dump_waiter *w)
{
    if (v->nqueue == v->capqueue) {
        size_t ncap = v->capqueue ? v->capqueue * 2 : 16;
        struct dump_waiter *q = realloc(v->queue, ncap * sizeof(*q));
        if (q == NULL)
            return -ENOMEM;
        v->queue = q;
        v->capqueue = ncap;
    }
    v->queue[v->nqueue++] = *w;
    return 0;
}

/* The processes asleep waiting for KEY (NUL-terminated) into the queue;
 * their threads added to *threads. 0 or an error. */
static int key_waiters(shmlease_table *t, const char *key, struct table_view *v,
                       uint32_t *threads)
{
    shmlease_waiter small[16], *w = small;
    size_t room = sizeof(small) / sizeof(small[0]);
    long n;
    /* A snapshot: more waiters may come between two calls; a few tries. */
    for (int tries = 0;; tries++) {
        n = shmlease_waiters(t, key, w, room);
        if (n < 0 || (size_t)n <= room || tries == 3)
            break;
        if (w != small)
            free(w);
        room = (size_t)n + 16;
        w = malloc(room * sizeof(*w));
        if (w == NULL)
            return -ENOMEM;
    }
    int rc = n < 0 ? (int)n : 0;
    for (long i = 0; rc == 0 && i < n && (size_t)i < room; i++) {
        struct dump_waiter d = { .start_time = w[i].start_time, .pid = w[i].pid,
                                 .threads = w[i].threads, .handle = w[i].handle,
                                 .other_pidns = w[i].other_pidns != 0 };
        *threads += w[i].threads;
        rc = queue_push(v, &d);
    }
    if (w != small)
        free(w);
    return rc;
}

/*
 * Once the walk is over and the rows sorted: each key's holders in each
 * mode, its waiters and their total. A walk sees a key's entries one by
 * one: its own (an exclusive holder, and the queue of waiters asleep on
 * the key, which shmlease_waiters lists) and one per shared holder (where
 * only an exclusive acquirer that has reserved the key sleeps, waiting for
 * them to leave: counted on those rows by the walk, listed here as that
 * acquirer). Rows of one key in both modes mean exactly that reservation.
 */
static int resolve_keys(shmlease_table *t, struct table_view *v)
{
    char key[SHMLEASE_KEY_MAX + 1];
    for (size_t i = 0, j; i < v->nrows; i = j) {
        const struct dump_row *first = view_row_ptr(v, i);
        uint32_t nexcl = 0, nshared = 0, slot_threads = 0, excl_threads = 0;
        const struct dump_row *excl = NULL;
        for (j = i; j < v->nrows && same_key(v, first, view_row_ptr(v, j)); j++) {
            const struct dump_row *r = view_row_ptr(v, j);
            if (r->mode == SHMLEASE_SHARED) {
                nshared++;
                slot_threads += r->waiters;
            } else {
                nexcl++;
                excl_threads += r->waiters;
                /* A dead acquirer waits for nothing (the next one takes over). */
                if (excl == NULL && !r->in_grace && r->pid != 0 && r->alive != 0)
                    excl = r;
            }
        }
        uint32_t q_first = (uint32_t)v->nqueue, threads = 0;
        bool reserved = excl != NULL && nshared > 0;
        if (reserved) {
            struct dump_waiter d = { .start_time = excl->start_time, .pid = excl->pid,
                                     .threads = slot_threads ? slot_threads : 1,
                                     .handle = excl->handle, .other_pidns = excl->other_pidns,
                                     .reserved = 1 };
            if (queue_push(v, &d) != 0)
                return -ENOMEM;
            threads += d.threads;
        }
        if (dump_remote(v->opts)) {
            /* No waiters' list on a Redis table (shmlease_waiters is
             * EOPNOTSUPP there): the count inspection gives. */
            threads = excl_threads + slot_threads;
        } else if (nshared > 0 || excl_threads > 0) {
            memcpy(key, v->bytes + first->text, first->klen);
            key[first->klen] = '\0';
            int rc = key_waiters(t, key, v, &threads);
            if (rc != 0)
                return rc;
        }
        for (size_t k = i; k < j; k++) {
            struct dump_row *r = &v->rows[v->order[k].row];
            r->holders = r->mode == SHMLEASE_SHARED ? nshared : nexcl;
            r->waiters = threads;
            r->q_first = q_first;
            r->q_n = (uint32_t)v->nqueue - q_first;
            r->reserved = reserved && r == excl;
        }
    }
    return 0;
}

/* The widths of the columns measured once the keys are resolved. */
static void late_widths(struct table_view *v)
{
    const struct dump_opts *o = v->opts;
    if (o->json || o->raw)
        return;
    for (size_t c = 0; c < o->ncols; c++) {
        enum col_id id = o->cols[c];
        if (!column_is_late(id))
            continue;
        for (size_t i = 0; i < v->nrows; i++) {
            size_t w = late_cell_len(id, v, &v->rows[i]);
            if (w > v->cell_width[id])
                v->cell_width[id] = w;
        }
    }
}

/* Prometheus: the waiters asleep on each key held in shared mode (the walk
 * counted those on its holders' entries only). */
static int shared_key_waiters(shmlease_table *t, struct table_view *v)
{
    char key[SHMLEASE_KEY_MAX + 1];
    for (size_t i = 0, j; i < v->nrows; i = j) {
        const struct dump_row *first = view_row_ptr(v, i);
        for (j = i + 1; j < v->nrows && same_key(v, first, view_row_ptr(v, j)); j++)
            ;
        memcpy(key, v->bytes + first->text, first->klen);
        key[first->klen] = '\0';
        shmlease_info in;
        /* Reserved by an exclusive acquirer: the walk met the key's own
         * entry, and counted its sleepers already. */
        if (shmlease_inspect(t, key, &in) == 0 && in.mode == SHMLEASE_SHARED)
            v->n_waiters += in.waiters;
    }
    return 0;
}

void view_free(struct table_view *v)
{
    free(v->rows);
    free(v->bytes);
    free(v->order);
    free(v->queue);
    v->rows = NULL;
    v->bytes = NULL;
    v->order = NULL;
    v->queue = NULL;
    v->nrows = v->caprows = v->nbytes = v->capbytes = v->nqueue = v->capqueue = 0;
}

/* Reads an open table into *v: the counters, the clock, and the leases (with
 * key, only that key's; with summary_only, none). *call names the library
 * call under way, for the report if it fails or faults. 0 or an error. */
static int read_table(shmlease_table *t, const char *key, bool summary_only,
                      struct table_view *v, const char *volatile *call)
{
    *call = "shmlease_stats_get";
    int rc = shmlease_stats_get(t, &v->st);
    if (rc != 0)
        return rc;
    v->now_ms = shmlease_now_ms(t);
    if (v->opts->prometheus) {
        /* Every lease counted; with --key, that key's own series too. */
        *call = "shmlease_foreach";
        rc = shmlease_foreach(t, collect_row, v);
        if (rc == 0)
            rc = view_sort(v);
        *call = "shmlease_inspect";
        if (rc == 0)
            rc = shared_key_waiters(t, v);
        if (rc != 0 || key == NULL)
            return rc;
        rc = shmlease_inspect(t, key, &v->key_info);
        if (rc == 0)
            v->key_info_valid = true;
        return rc == -ENOENT ? 0 : rc;
    }
    if (summary_only)
        return 0;
    if (key != NULL) {
        /* Is it held? Then every holder of it (a walk: one entry per
         * shared holder, where inspect describes the key by one). */
        shmlease_info info;
        *call = "shmlease_inspect";
        rc = shmlease_inspect(t, key, &info);
        if (rc == -ENOENT) {
            v->key_free = true;
            return 0;
        }
        if (rc != 0)
            return rc;
    }
    *call = "shmlease_foreach";
    rc = shmlease_foreach(t, collect_row, v);
    if (rc == 0 && key != NULL && v->nrows == 0)
        v->key_free = true;            /* freed between the two looks */
    if (rc == 0)
        rc = view_sort(v);
    *call = "shmlease_waiters";
    if (rc == 0)
        rc = resolve_keys(t, v);
    if (rc == 0)
        late_widths(v);
    return rc;
}

/* Reads table NAME into *v. With key, only that key (inspect); with
 * summary_only, no leases. Never fails: errors land in v->rc. */
void collect(const char *name, const struct dump_opts *opts, struct table_view *v)
{
    const char *key = opts->key;
    bool summary_only = opts->list;
    memset(v, 0, sizeof(*v));
    v->name = name;
    v->opts = opts;
    bool remote = dump_remote(opts);
    if (!remote)
        tool_table_path(name, v->path, sizeof(v->path));
    v->have_stat = !remote && stat(v->path, &v->sb) == 0;
    /* Not handed to the library: opening a FIFO blocks until a writer comes. */
    if (v->have_stat && !S_ISREG(v->sb.st_mode)) {
        v->not_regular = true;
        v->rc = -EPROTO;
        v->failed_call = "stat";
        return;
    }

    shmlease_options o;
    memset(&o, 0, sizeof(o));
    o.flags = SHMLEASE_OPEN_READONLY | SHMLEASE_OPEN_NOCREATE;
    o.backend = opts->bc.url;

    /* volatile: read after a siglongjmp back here. */
    shmlease_table *volatile t = NULL;
    const char *volatile call = "shmlease_open";
    int sig = sigsetjmp(guard_env, 1);
    if (sig != 0) {
        /* The library faulted inside the mapping: leak the handle (its state
         * is unknown; closing could fault again) and report. */
        v->fault_sig = sig;
        v->rc = -EPROTO;
        v->failed_call = call;
        view_free(v);
        return;
    }

    guard_armed = 1;
    shmlease_table *tt = NULL;
    int rc = shmlease_open(name, &o, &tt);
    t = tt;
    if (rc == 0)
        rc = read_table(t, key, summary_only, v, &call);
    guard_armed = 0;
    if (t != NULL)
        shmlease_close(t);
    if (rc != 0) {
        v->rc = rc < 0 ? rc : -EIO;
        v->failed_call = call;
        view_free(v);
        return;
    }
}

/* ------------------------------------------------------------------------ */
/* Exit codes and error messages                                             */

int view_exit_code(const struct table_view *v)
{
    if (v->rc == 0)
        return v->key_free ? DUMP_EXIT_KEY_FREE : DUMP_EXIT_OK;
    if (v->rc == -ENOENT && v->fault_sig == 0)
        return DUMP_EXIT_NOT_FOUND;
    /* A bad name the user typed is a usage error; one found in /dev/shm
     * (not made by this library) is an unusable table. */
    if ((v->rc == -EINVAL || v->rc == -ENAMETOOLONG) && v->fault_sig == 0 && !v->scanned)
        return DUMP_EXIT_USAGE;
    return DUMP_EXIT_UNUSABLE;
}

/* Worst first: usage, unusable, not found, key free, ok. */
static int exit_rank(int code)
{
    switch (code) {
    case DUMP_EXIT_USAGE:     return 4;
    case DUMP_EXIT_UNUSABLE:  return 3;
    case DUMP_EXIT_NOT_FOUND: return 2;
    case DUMP_EXIT_KEY_FREE:  return 1;
    default:                  return 0;
    }
}

int worse(int a, int b)
{
    return exit_rank(b) > exit_rank(a) ? b : a;
}

/* One sentence for an operator, without the program name. */
void describe_error_full(const struct table_view *v, const char *key,
                         bool terse, char *buf, size_t size)
{
    if (v->fault_sig != 0) {
        snprintf(buf, size,
                 "the segment is corrupt or was truncated while being read "
                 "(caught %s in %s)",
                 v->fault_sig == SIGBUS ? "SIGBUS" : "SIGSEGV", v->failed_call);
        return;
    }
    if (v->not_regular) {
        snprintf(buf, size, "not a shmlease table: %s is not a regular file", v->path);
        return;
    }
    if (dump_remote(v->opts)) {
        const char *text = tool_backend_error_text(v->rc);
        if (v->rc == -EINVAL && !tool_valid_table_name(v->name))
            text = "invalid table name (allowed: [A-Za-z0-9._-]{1,200})";
        else if ((v->rc == -EINVAL || v->rc == -ENAMETOOLONG) && key != NULL &&
                 strcmp(v->failed_call, "shmlease_inspect") == 0)
            text = "invalid key";
        if (text == NULL)
            text = shmlease_strerror(v->rc);
        if (terse)
            snprintf(buf, size, "%s", text);
        else
            snprintf(buf, size, "%s, on %s (%s from %s)", text, v->opts->bc.shown,
                     shmlease_errname(v->rc), v->failed_call);
        return;
    }
    /* Whose table, its mode and why this user may not read it; or what
     * lies under the name instead of a table. */
    if (!terse && (v->rc == -EACCES || v->rc == -EPROTO)) {
        struct tool_table_ref ref = { .name = v->name, .reading = true };
        char why[768];
        if (tool_explain_table_error(&ref, v->rc, why, sizeof(why))) {
            snprintf(buf, size, "%s (%s from %s)", why, shmlease_errname(v->rc), v->failed_call);
            return;
        }
    }
    const char *hint = "";
    switch (-v->rc) {
    case ENOENT:
        hint = "no such table";
        break;
    case EPROTO:
        hint = "not a usable shmlease table (corrupt, truncated, foreign, made by "
               "another version, or still being initialised)";
        break;
    case EACCES:
        hint = "permission denied (the segment belongs to another user or "
               "may not be mapped by this user)";
        break;
    case EINVAL:
        hint = key != NULL && strcmp(v->failed_call, "shmlease_inspect") == 0
                   ? "invalid key"
                   : "invalid table name (allowed: [A-Za-z0-9._-]{1,200})";
        break;
    case ENAMETOOLONG:
        hint = "key too long";
        break;
    default:
        hint = shmlease_strerror(v->rc);
        break;
    }
    if (terse)
        snprintf(buf, size, "%s", hint);
    else
        snprintf(buf, size, "%s (%s from %s)", hint, shmlease_errname(v->rc),
                 v->failed_call);
}

void describe_error(const struct table_view *v, const char *key,
                    char *buf, size_t size)
{
    describe_error_full(v, key, false, buf, size);
}

void report_error(const struct table_view *v, const char *key)
{
    char msg[1024];
    describe_error(v, key, msg, sizeof(msg));
    if (strncmp(msg, "table '", 7) == 0)
        fprintf(stderr, PROG ": %s\n", msg);     /* it names the table already */
    else
        fprintf(stderr, PROG ": %s: %s\n", v->name, msg);
}

/* ------------------------------------------------------------------------ */
/* Liveness                                                                  */

const char *holder_state(const shmlease_info *in)
{
    if (in->in_grace || in->holder_pid == 0)
        return "grace";
    switch (in->holder_alive) {
    case 1:  return "alive";
    case 0:  return "dead";
    default: return "unknown";
    }
}

/* ------------------------------------------------------------------------ */
/* Discovering tables                                                        */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Names of every /dev/shm/shmlease.* entry, sorted; NULL-terminated, malloc'd. */
char **scan_tables(size_t *count, int *err)
{
    *count = 0;
    *err = 0;
    DIR *d = opendir(TOOL_SHM_DIR);
    if (d == NULL) {
        *err = errno;
        return NULL;
    }
    size_t n = 0, cap = 16;
    char **names = malloc(cap * sizeof(char *));
    struct dirent *de;
    while (names != NULL && (de = readdir(d)) != NULL) {
        size_t pl = strlen(TOOL_SHM_PREFIX);
        if (strncmp(de->d_name, TOOL_SHM_PREFIX, pl) != 0 || de->d_name[pl] == '\0')
            continue;
        if (n + 1 >= cap) {
            char **nn = realloc(names, cap * 2 * sizeof(char *));
            if (nn == NULL) {
                free(names);
                names = NULL;
                break;
            }
            names = nn;
            cap *= 2;
        }
        names[n] = strdup(de->d_name + pl);
        if (names[n] != NULL)
            n++;
    }
    closedir(d);
    if (names == NULL) {
        *err = ENOMEM;
        return NULL;
    }
    qsort(names, n, sizeof(char *), cmp_str);
    names[n] = NULL;
    *count = n;
    return names;
}
