/* Redis backend: a handle's state, its names, and the leases it holds (rtable.h). */
#include "rtable.h"
#include "proc.h"
#include "table.h"

#include <hiredis.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

/* Every Redis handle of the process, so that fork() can take their locks
 * (none is held across a network call) and the child can start afresh. */
static pthread_mutex_t g_all_mu = PTHREAD_MUTEX_INITIALIZER;
static struct rtable *g_all;
static pthread_once_t g_atfork_once = PTHREAD_ONCE_INIT;

static void atfork_prepare(void)
{
    pthread_mutex_lock(&g_all_mu);
    for (struct rtable *rt = g_all; rt; rt = rt->next_all) {
        pthread_mutex_lock(&rt->mu);
        pthread_mutex_lock(&rt->pool.mu);
    }
}

static void atfork_parent(void)
{
    for (struct rtable *rt = g_all; rt; rt = rt->next_all) {
        pthread_mutex_unlock(&rt->pool.mu);
        pthread_mutex_unlock(&rt->mu);
    }
    pthread_mutex_unlock(&g_all_mu);
}

static void atfork_child(void)
{
    /* The process's identity is read again in the child (proc.h): our owner
     * field must carry the child's start time, not its parent's. */
    __atomic_add_fetch(&shmlease__fork_gen, 1, __ATOMIC_RELAXED);
    for (struct rtable *rt = g_all; rt; rt = rt->next_all) {
        pthread_mutex_unlock(&rt->pool.mu);
        pthread_mutex_unlock(&rt->mu);
    }
    pthread_mutex_unlock(&g_all_mu);
}

static void install_atfork(void)
{
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

static uint64_t random64(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof v, GRND_NONBLOCK) != (ssize_t)sizeof v)
        v = (uint64_t)getpid() * UINT64_C(0x9e3779b97f4a7c15) ^ shmlease__rnow_ms();
    return v;
}

/* Who we are, as written in our leases' "own" field: the boot, PID
 * namespace, PID and start time of this process (so that a process of the
 * same host can prove the holder dead), and a nonce of this handle. */
static void make_owner(struct rtable *rt)
{
    const struct shmlease__self *s = shmlease__self();
    char boot[33];
    for (int i = 0; i < 16; i++)
        snprintf(boot + (size_t)2 * (size_t)i, 3, "%02x", s->boot_id[i]);
    rt->nonce = random64();
    rt->pid = getpid();
    int n = snprintf(rt->own, sizeof rt->own, "%s-%llu-%d-%llu-%016llx", boot,
                     (unsigned long long)s->pidns, (int)rt->pid,
                     (unsigned long long)s->start_time, (unsigned long long)rt->nonce);
    rt->ownlen = n > 0 && (size_t)n < sizeof rt->own ? (size_t)n : strlen(rt->own);
}

static void map_clear(struct rtable *rt)
{
    for (unsigned b = 0; b < RT_MAP_BUCKETS; b++) {
        while (rt->map[b]) {
            struct rlease *e = rt->map[b];
            rt->map[b] = e->next;
            free(e);
        }
    }
    rt->nleases = 0;
}

int shmlease__rt_setup(struct rtable *rt, const struct rurl *u, const char *name)
{
    shmlease__rpool_init(&rt->pool, u);
    pthread_mutex_init(&rt->mu, NULL);
    make_owner(rt);
    if (gethostname(rt->host, sizeof rt->host - 1) != 0)
        snprintf(rt->host, sizeof rt->host, "?");
    int n = snprintf(rt->prefix, sizeof rt->prefix, "shmlease:{%s}:", name);
    rt->plen = (size_t)n;
    pthread_once(&g_atfork_once, install_atfork);
    pthread_mutex_lock(&g_all_mu);
    rt->next_all = g_all;
    g_all = rt;
    pthread_mutex_unlock(&g_all_mu);
    return 0;
}

void shmlease__rt_teardown(struct rtable *rt)
{
    pthread_mutex_lock(&g_all_mu);
    for (struct rtable **p = &g_all; *p; p = &(*p)->next_all) {
        if (*p == rt) {
            *p = rt->next_all;
            break;
        }
    }
    pthread_mutex_unlock(&g_all_mu);
    map_clear(rt);
    shmlease__rpool_destroy(&rt->pool);
    pthread_mutex_destroy(&rt->mu);
}

struct rtable *shmlease__rt(shmlease_table *t)
{
    struct rtable *rt = t->remote;
    if (__builtin_expect(rt->pid == getpid(), 1))
        return rt;
    pthread_mutex_lock(&rt->mu);
    if (rt->pid != getpid()) {         /* a fork child: none of the parent's leases */
        pthread_mutex_lock(&rt->pool.mu);
        shmlease__rpool_forget(&rt->pool);
        pthread_mutex_unlock(&rt->pool.mu);
        map_clear(rt);
        make_owner(rt);
    }
    pthread_mutex_unlock(&rt->mu);
    return rt;
}

size_t shmlease__rt_name(const struct rtable *rt, char *buf, const char *suffix, size_t slen)
{
    memcpy(buf, rt->prefix, rt->plen);
    memcpy(buf + rt->plen, suffix, slen);
    buf[rt->plen + slen] = 0;
    return rt->plen + slen;
}

void shmlease__rt_lease_cmd(const struct rtable *rt, struct rcmd *cmd, const char *key, size_t klen,
                            char names[5][RT_KEYNAME_MAX])
{
    char k[SHMLEASE_KEY_MAX + 3] = "k:", w[SHMLEASE_KEY_MAX + 3] = "w:";
    memcpy(k + 2, key, klen);
    memcpy(w + 2, key, klen);
    size_t n0 = shmlease__rt_name(rt, names[0], k, klen + 2);
    size_t n1 = shmlease__rt_name(rt, names[1], "meta", 4);
    size_t n2 = shmlease__rt_name(rt, names[2], "live", 4);
    size_t n3 = shmlease__rt_name(rt, names[3], "grace", 5);
    size_t n4 = shmlease__rt_name(rt, names[4], w, klen + 2);
    cmd->argc = 0;
    shmlease__rcmd_add(cmd, "4", 1);
    shmlease__rcmd_add(cmd, names[0], n0);
    shmlease__rcmd_add(cmd, names[1], n1);
    shmlease__rcmd_add(cmd, names[2], n2);
    shmlease__rcmd_add(cmd, names[3], n3);
    shmlease__rcmd_add(cmd, key, klen);
    shmlease__rcmd_add(cmd, names[4], n4);
}

size_t shmlease__rt_reqid(struct rtable *rt, char *buf)
{
    uint64_t seq = __atomic_add_fetch(&rt->reqseq, 1, __ATOMIC_RELAXED);
    return (size_t)snprintf(buf, 24, "%llx", (unsigned long long)seq);
}

static unsigned bucket_of(uint64_t tok)
{
    return (unsigned)((tok * UINT64_C(0x9e3779b97f4a7c15)) >> 56) % RT_MAP_BUCKETS;
}

/* Drops the entries whose deadline has passed (under rt->mu). */
static void map_prune(struct rtable *rt, uint64_t now)
{
    for (unsigned b = 0; b < RT_MAP_BUCKETS; b++) {
        for (struct rlease **p = &rt->map[b]; *p;) {
            struct rlease *e = *p;
            if (e->exp <= now) {
                *p = e->next;
                free(e);
                rt->nleases--;
            } else {
                p = &e->next;
            }
        }
    }
}

int shmlease__rt_add(struct rtable *rt, uint64_t tok, uint64_t exp, const char *key, size_t klen)
{
    struct rlease *e = calloc(1, sizeof *e);
    if (!e)
        return -ENOMEM;
    e->tok = tok;
    e->exp = exp;
    e->klen = klen;
    memcpy(e->key, key, klen);
    pthread_mutex_lock(&rt->mu);
    if (rt->nleases >= 4 * RT_MAP_BUCKETS && (rt->nleases & (RT_MAP_BUCKETS - 1)) == 0)
        map_prune(rt, shmlease__rnow_ms());
    unsigned b = bucket_of(tok);
    e->next = rt->map[b];
    rt->map[b] = e;
    rt->nleases++;
    pthread_mutex_unlock(&rt->mu);
    return 0;
}

/* The entry of TOK and the link to it (under rt->mu), or NULL. */
static struct rlease **find_link(struct rtable *rt, uint64_t tok)
{
    for (struct rlease **p = &rt->map[bucket_of(tok)]; *p; p = &(*p)->next)
        if ((*p)->tok == tok)
            return p;
    return NULL;
}

int shmlease__rt_find(struct rtable *rt, uint64_t tok, char *key, size_t *klen, uint64_t *exp)
{
    uint64_t now = shmlease__rnow_ms();
    int rc = -ESTALE;
    pthread_mutex_lock(&rt->mu);
    struct rlease **p = find_link(rt, tok);
    if (p && (*p)->exp > now) {
        memcpy(key, (*p)->key, (*p)->klen);
        key[(*p)->klen] = 0;
        *klen = (*p)->klen;
        *exp = (*p)->exp;
        rc = 0;
    } else if (p) {                    /* past its deadline: lost for ever */
        struct rlease *e = *p;
        *p = e->next;
        free(e);
        rt->nleases--;
    }
    pthread_mutex_unlock(&rt->mu);
    return rc;
}

int shmlease__rt_set_exp(struct rtable *rt, uint64_t tok, uint64_t exp)
{
    uint64_t now = shmlease__rnow_ms();
    int rc = -ESTALE;
    pthread_mutex_lock(&rt->mu);
    struct rlease **p = find_link(rt, tok);
    if (p && (*p)->exp > now) {
        (*p)->exp = exp;
        rc = 0;
    } else if (p) {                    /* its old deadline passed: lost already */
        struct rlease *e = *p;
        *p = e->next;
        free(e);
        rt->nleases--;
    }
    pthread_mutex_unlock(&rt->mu);
    return rc;
}

uint64_t shmlease__rt_deadline(uint64_t sent, uint64_t ttl)
{
    uint64_t margin = ttl > RT_CLOCK_MARGIN_MS ? RT_CLOCK_MARGIN_MS : ttl - 1;
    return sent + ttl - margin;
}

void shmlease__rt_forget(struct rtable *rt, uint64_t tok)
{
    pthread_mutex_lock(&rt->mu);
    struct rlease **p = find_link(rt, tok);
    if (p) {
        struct rlease *e = *p;
        *p = e->next;
        free(e);
        rt->nleases--;
    }
    pthread_mutex_unlock(&rt->mu);
}

void shmlease__rt_lease_value(const struct rtable *rt, shmlease_lease *l, uint64_t tok, uint64_t exp)
{
    memset(l, 0, sizeof *l);
    l->fencing_token = tok;
    l->expires_at_ms = exp;
    l->_private[0] = tok;              /* where the keepalive looks for (entry, claim) */
    l->_private[1] = RT_LEASE_MAGIC;
    l->_private[2] = tok;
    l->_private[4] = rt->nonce;
}

uint64_t shmlease__rt_lease_tok(const struct rtable *rt, const shmlease_lease *l)
{
    if (l->_private[1] != RT_LEASE_MAGIC || l->_private[4] != rt->nonce ||
        l->_private[0] != l->_private[2])
        return 0;
    return l->_private[0];
}

int shmlease__rt_owner_alive(const struct rtable *rt, const char *own, int32_t *pid, uint64_t *start)
{
    const char *p = strchr(own, '-'), *q = p ? strchr(p + 1, '-') : NULL;
    if (!q)
        return -1;
    char *end = NULL;
    errno = 0;
    long long id = strtoll(q + 1, &end, 10);
    if (errno || end == q + 1 || *end != '-' || id <= 0 || id > INT32_MAX)
        return -1;
    const char *s1 = end + 1;
    unsigned long long st = strtoull(s1, &end, 10);
    if (errno || end == s1 || *end != '-')
        return -1;
    if (pid)
        *pid = (int32_t)id;
    if (start)
        *start = st;
    if (strncmp(own, rt->own, (size_t)(q - own + 1)) != 0)
        return -1;                     /* another host (boot) or PID namespace */
    if (id == (long long)getpid())
        return 1;
    if (kill((pid_t)id, 0) != 0 && errno == ESRCH)
        return 0;
    uint64_t now_start = shmlease__proc_start_time((int32_t)id);
    return now_start != 0 && st != 0 && now_start != st ? 0 : 1;
}

int shmlease__rt_check_key(const char *key, size_t *klen)
{
    if (!key || !key[0])
        return -EINVAL;
    size_t n = strnlen(key, SHMLEASE_KEY_MAX + 1);
    if (n > SHMLEASE_KEY_MAX)
        return -ENAMETOOLONG;
    *klen = n;
    return 0;
}

long long shmlease__rt_head(const void *reply)
{
    const redisReply *r = reply;
    if (r->type != REDIS_REPLY_ARRAY || r->elements == 0 || r->element[0]->type != REDIS_REPLY_INTEGER)
        return -1000;
    return r->element[0]->integer;
}

uint64_t shmlease__rt_u64(const void *reply_element)
{
    const redisReply *r = reply_element;
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer > 0 ? (uint64_t)r->integer : 0;
    if (r->type != REDIS_REPLY_STRING)
        return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < r->len && r->str[i] >= '0' && r->str[i] <= '9'; i++)
        v = v * 10 + (uint64_t)(r->str[i] - '0');
    return v;
}
