/*
 * shmlease-dump: the JSON output. One document per pass; keys and metadata
 * as JSON strings (one code point per byte) and in hex and base64.
 */
#include "dump.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Members                                                                   */

static void json_key(FILE *f, const char *k, bool *first)
{
    if (!*first)
        fputc(',', f);
    *first = false;
    fprintf(f, "\"%s\":", k);
}

static void json_u64(FILE *f, const char *k, uint64_t v, bool *first)
{
    json_key(f, k, first);
    fprintf(f, "%llu", (unsigned long long)v);
}

static void json_i64(FILE *f, const char *k, int64_t v, bool *first)
{
    json_key(f, k, first);
    fprintf(f, "%lld", (long long)v);
}

static void json_bool(FILE *f, const char *k, bool v, bool *first)
{
    json_key(f, k, first);
    fputs(v ? "true" : "false", f);
}

static void json_str(FILE *f, const char *k, const char *v, bool *first)
{
    json_key(f, k, first);
    tool_json_string(f, v, strlen(v));
}

/* ------------------------------------------------------------------------ */
/* Leases and tables                                                         */

/* ,"NAME":"text" or ,"NAME":null */
static void ob_member_text(struct outbuf *ob, const char *name, const char *s, size_t n)
{
    ob_str(ob, name);
    if (s == NULL)
        ob_str(ob, "null");
    else
        ob_json_string(ob, s, n);
}

/* Who the holder is (dump-proc.c): null members when it cannot be told. */
static void json_holder(struct outbuf *ob, const struct proc_desc *d)
{
    ob_member_text(ob, ",\"holder_command\":", d != NULL ? d->comm_raw : NULL,
                   d != NULL ? d->comm_len : 0);
    ob_str(ob, ",\"holder_uid\":");
    if (d != NULL && d->have_uid)
        ob_u64(ob, d->uid);
    else
        ob_str(ob, "null");
    const char *user = d != NULL && d->have_uid ? d->user : NULL;
    ob_member_text(ob, ",\"holder_user\":", user, user != NULL ? strlen(user) : 0);
    const struct proc_text *t[3] = { NULL, NULL, NULL };
    if (d != NULL) {
        t[0] = &d->cgroup;
        t[1] = &d->unit;
        t[2] = &d->uunit;
    }
    static const char *const names[3] = { ",\"holder_cgroup\":", ",\"holder_unit\":",
                                          ",\"holder_user_unit\":" };
    for (int i = 0; i < 3; i++) {
        const char *raw = t[i] != NULL ? t[i]->raw : NULL;
        ob_member_text(ob, names[i], raw, raw != NULL ? strlen(raw) : 0);
    }
}

/* One lease object, written into OB (the leases are most of a document:
 * no stdio call per member). */
/* The key's queue: [{"pid","threads","other_pidns","start_time","handle",
 * "reserved"}...]. */
static void json_waiting(struct outbuf *ob, const struct table_view *v, const struct dump_row *r)
{
    ob_str(ob, ",\"waiting\":[");
    for (uint32_t i = 0; i < r->q_n; i++) {
        const struct dump_waiter *w = &v->queue[r->q_first + i];
        ob_str(ob, i > 0 ? ",{\"pid\":" : "{\"pid\":");
        ob_i64(ob, w->pid);
        ob_str(ob, ",\"threads\":");
        ob_u64(ob, w->threads);
        ob_str(ob, w->other_pidns ? ",\"other_pidns\":true" : ",\"other_pidns\":false");
        ob_str(ob, ",\"start_time\":");
        ob_u64(ob, w->start_time);
        ob_str(ob, ",\"handle\":");
        ob_u64(ob, w->handle);
        ob_str(ob, w->reserved ? ",\"reserved\":true}" : ",\"reserved\":false}");
    }
    ob_char(ob, ']');
}

static void json_lease(struct outbuf *ob, const struct table_view *v, const struct dump_row *r,
                       const shmlease_info *in)
{
    size_t mlen = in->metadata_len <= SHMLEASE_METADATA_MAX ? in->metadata_len
                                                            : SHMLEASE_METADATA_MAX;
    size_t klen = strnlen(in->key, sizeof(in->key));
    bool grace = in->in_grace || in->holder_pid == 0;
    char hex[2 * SHMLEASE_METADATA_MAX + 1];
    char b64[4 * ((SHMLEASE_METADATA_MAX + 2) / 3) + 1];

    ob_str(ob, "{\"key\":");
    ob_json_string(ob, in->key, klen);
    tool_hex(in->key, klen, hex);
    ob_str(ob, ",\"key_hex\":");
    ob_json_string(ob, hex, 2 * klen);
    ob_str(ob, ",\"fencing_token\":");
    ob_u64(ob, in->fencing_token);
    ob_str(ob, ",\"holder_pid\":");
    if (grace)
        ob_str(ob, "null");
    else
        ob_i64(ob, in->holder_pid);
    ob_str(ob, ",\"state\":");
    ob_json_string(ob, holder_state(in), strlen(holder_state(in)));
    ob_str(ob, ",\"holder_alive\":");
    ob_str(ob, grace || in->holder_alive < 0 ? "null"
               : in->holder_alive > 0        ? "true"
                                             : "false");
    ob_str(ob, in->holder_other_pidns ? ",\"holder_other_pidns\":true"
                                      : ",\"holder_other_pidns\":false");
    ob_str(ob, ",\"holder_start_time\":");
    ob_u64(ob, in->holder_start_time);
    ob_str(ob, ",\"holder_handle\":");
    if (dump_remote(v->opts))          /* no registry of handles on Redis */
        ob_str(ob, "null");
    else
        ob_u64(ob, in->holder_handle);
    json_holder(ob, proc_describe(in));
    ob_str(ob, in->in_grace ? ",\"in_grace\":true" : ",\"in_grace\":false");
    ob_str(ob, ",\"remaining_ms\":");
    ob_i64(ob, in->remaining_ms);
    ob_str(ob, in->remaining_ms <= 0 ? ",\"expired\":true" : ",\"expired\":false");
    ob_str(ob, ",\"expires_at_ms\":");
    ob_u64(ob, in->expires_at_ms);
    ob_str(ob, ",\"waiters\":");
    ob_u64(ob, in->waiters);
    if (dump_remote(v->opts))          /* shmlease_waiters: EOPNOTSUPP on Redis */
        ob_str(ob, ",\"waiting\":null");
    else
        json_waiting(ob, v, r);
    ob_str(ob, r->mode == SHMLEASE_SHARED ? ",\"mode\":\"shared\"" : ",\"mode\":\"exclusive\"");
    ob_str(ob, ",\"limit\":");
    if (r->mode == SHMLEASE_SHARED && r->limit != 0 && r->limit < SHMLEASE_LIMIT_MAX)
        ob_u64(ob, r->limit);
    else
        ob_str(ob, "null");
    ob_str(ob, ",\"holders\":");
    ob_u64(ob, in->holders);
    ob_str(ob, r->reserved ? ",\"reserved\":true" : ",\"reserved\":false");
    ob_str(ob, ",\"metadata\":");
    ob_json_string(ob, in->metadata, mlen);
    ob_str(ob, ",\"metadata_len\":");
    ob_u64(ob, in->metadata_len);
    tool_hex(in->metadata, mlen, hex);
    ob_str(ob, ",\"metadata_hex\":");
    ob_json_string(ob, hex, 2 * mlen);
    tool_base64(in->metadata, mlen, b64);
    ob_str(ob, ",\"metadata_base64\":");
    ob_json_string(ob, b64, strlen(b64));
    ob_char(ob, '}');
}

/* The members of a table that could not be read. */
static void json_table_error(FILE *f, const struct table_view *v, const struct dump_opts *o,
                             bool *first)
{
    char msg[512];
    describe_error(v, o->key, msg, sizeof(msg));
    json_str(f, "status", "error", first);
    json_str(f, "error", shmlease_errname(v->rc), first);
    json_i64(f, "errno", -v->rc, first);
    json_str(f, "message", msg, first);
    json_i64(f, "exit_code", view_exit_code(v), first);
}

/* The members of a table that was read: its summary, "stats" as an object. */
static void json_null(FILE *f, const char *k, bool *first)
{
    json_key(f, k, first);
    fputs("null", f);
}

/* A member a table on a Redis server does not have: null there. */
static void json_local_u64(FILE *f, const struct table_view *v, const char *k, uint64_t x,
                           bool *first)
{
    if (dump_remote(v->opts))
        json_null(f, k, first);
    else
        json_u64(f, k, x, first);
}

static void json_table_summary(FILE *f, const struct table_view *v, bool *first)
{
    const shmlease_stats *s = &v->st;
    char epoch[24];
    snprintf(epoch, sizeof(epoch), "%016llx", (unsigned long long)s->table_epoch);
    json_str(f, "status", "ok", first);
    json_u64(f, "format_version", s->format_version, first);
    json_local_u64(f, v, "capacity", s->capacity, first);
    json_u64(f, "held", s->held, first);
    json_u64(f, "live_keys", s->live_keys, first);
    json_local_u64(f, v, "attached", s->attached, first);
    json_u64(f, "fencing_counter", s->fencing_counter, first);
    json_local_u64(f, v, "segment_bytes", s->segment_bytes, first);
    json_local_u64(f, v, "created_at_ms", s->created_at_ms, first);
    json_u64(f, "now_ms", v->now_ms, first);
    json_str(f, "table_epoch", epoch, first);

    json_key(f, "stats", first);
    bool sf = true;
    fputc('{', f);
    json_u64(f, "acquisitions", s->acquisitions, &sf);
    json_u64(f, "contended", s->contended, &sf);
    json_u64(f, "waits", s->waits, &sf);
    json_u64(f, "timeouts", s->timeouts, &sf);
    json_u64(f, "busy", s->busy, &sf);
    json_u64(f, "expirations", s->expirations, &sf);
    json_u64(f, "reclaimed_dead", s->reclaimed_dead, &sf);
    json_u64(f, "renewals", s->renewals, &sf);
    json_u64(f, "lost", s->lost, &sf);
    json_u64(f, "broken", s->broken, &sf);
    json_u64(f, "recoveries", s->recoveries, &sf);
    fputc('}', f);
}

/* "leases": [...], after "key_query" and "key_held" with --key. */
static void json_table_leases(FILE *f, const struct table_view *v, const struct dump_opts *o,
                              bool *first)
{
    if (o->key != NULL) {
        json_key(f, "key_query", first);
        tool_json_string(f, o->key, strlen(o->key));
        json_bool(f, "key_held", !v->key_free, first);
    }
    json_key(f, "leases", first);
    struct outbuf *ob = malloc(sizeof(*ob));
    if (ob == NULL) {
        fprintf(stderr, PROG ": out of memory\n");
        exit(TOOL_EX_OSERR);
    }
    ob->f = f;
    ob->len = 0;
    ob_char(ob, '[');
    shmlease_info in;
    for (size_t r = 0; r < v->nrows; r++) {
        if (r > 0)
            ob_char(ob, ',');
        view_row(v, r, &in);
        json_lease(ob, v, view_row_ptr(v, r), &in);
    }
    ob_char(ob, ']');
    ob_flush(ob);
    free(ob);
}

static void json_table(FILE *f, const struct table_view *v, const struct dump_opts *o,
                       bool with_leases)
{
    bool first = true;
    fputc('{', f);
    json_str(f, "name", v->name, &first);
    json_str(f, "backend", o->bc.shown, &first);
    if (dump_remote(o))
        json_null(f, "path", &first);
    else
        json_str(f, "path", v->path, &first);
    if (v->have_stat) {
        json_u64(f, "owner_uid", v->sb.st_uid, &first);
        char mode[8];
        snprintf(mode, sizeof(mode), "%04o", (unsigned)(v->sb.st_mode & 07777));
        json_str(f, "mode", mode, &first);
        json_u64(f, "file_bytes", (uint64_t)v->sb.st_size, &first);
    }
    if (v->rc != 0) {
        json_table_error(f, v, o, &first);
    } else {
        json_table_summary(f, v, &first);
        if (with_leases)
            json_table_leases(f, v, o, &first);
    }
    fputc('}', f);
}

/* The JSON document of one pass: {"tool", "json_version", "tables": [...]}. */
void print_json(FILE *f, const struct table_view *views, size_t n,
                const struct dump_opts *o)
{
    bool first = true;
    fputc('{', f);
    json_str(f, "tool", PROG, &first);
    json_u64(f, "json_version", 1, &first);
    json_str(f, "backend", o->bc.shown, &first);
    json_key(f, "tables", &first);
    fputc('[', f);
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            fputc(',', f);
        json_table(f, &views[i], o, !o->list);
    }
    fputs("]}\n", f);
}
