/*
 * Redis backend: the scripts (rscripts.h). Keys of table T, all with the hash
 * tag {T} so that a Cluster keeps them in one slot:
 *   shmlease:{T}:meta     hash: fmt, epoch, created, tok (the last fencing
 *                         token) and the counters of shmlease_stats
 *   shmlease:{T}:k:KEY    hash: st (h held, g grace, r released, b broken),
 *                         tok, own, req, pid, host, meta, exp (server ms)
 *   shmlease:{T}:live     sorted set: held keys by deadline
 *   shmlease:{T}:grace    sorted set: keys in a grace period by its end
 *   channel shmlease:{T}:w:KEY   a release or break is published there
 * Every lease script gets KEYS = { lease hash, meta, live, grace } and ARGV[1]
 * the key, ARGV[2] the channel. Deadlines are the server's own clock (TIME),
 * read once per script. A lease hash outlives its lease by TOMB_MS (its
 * record of how it ended), so that a call sent again after a lost answer
 * learns what its first sending did.
 */
#include "rscripts.h"

#include <pthread.h>
#include <string.h>

#define PRELUDE                                                                 \
    "local t = redis.call('TIME')\n"                                            \
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"   \
    "local TOMB = 30000\n"                                                      \
    "local function n(v) return string.format('%.0f', v) end\n"

/* ARGV[3] mode: c create if missing, n must exist, x must not; [4] epoch,
 * [5] format. -> {1 exists | 2 created | 0 missing | -1 exists (x) | -2 fmt} */
static const char OPEN[] = PRELUDE
    "local f = redis.call('HGET', KEYS[2], 'fmt')\n"
    "if f then\n"
    "  if f ~= ARGV[5] then return {-2, f} end\n"
    "  if ARGV[3] == 'x' then return {-1} end\n"
    "  return {1}\n"
    "end\n"
    "if ARGV[3] == 'n' then return {0} end\n"
    "redis.call('HSET', KEYS[2], 'fmt', ARGV[5], 'epoch', ARGV[4], 'created', n(now))\n"
    "return {2}\n";

/* ARGV[3] ttl, [4] owner, [5] request id, [6] pid, [7] host, [8] metadata,
 * [9] counting flags (c contended, b busy, w a wait), [10] token of a
 * holder proved dead ("" none).
 * -> {1, token, ttl} | {0, remaining, owner, state, token} | {-1} (our own
 *    grant, found again, already over) */
static const char ACQUIRE[] = PRELUDE
    "local h = redis.call('HMGET', KEYS[1], 'st', 'exp', 'tok', 'req', 'own')\n"
    "local st, exp = h[1], tonumber(h[2] or '0')\n"
    "if string.find(ARGV[9], 'w', 1, true) then redis.call('HINCRBY', KEYS[2], 'waits', 1) end\n"
    "if st == 'h' and h[4] == ARGV[5] and h[5] == ARGV[4] then\n"
    "  if exp > now then return {1, h[3], exp - now} end\n"
    "  return {-1}\n"
    "end\n"
    "local dead = st == 'h' and ARGV[10] ~= '' and h[3] == ARGV[10]\n"
    "if (st == 'h' or st == 'g') and exp > now and not dead then\n"
    "  if string.find(ARGV[9], 'c', 1, true) then redis.call('HINCRBY', KEYS[2], 'contended', 1) end\n"
    "  if string.find(ARGV[9], 'b', 1, true) then redis.call('HINCRBY', KEYS[2], 'busy', 1) end\n"
    "  return {0, exp - now, h[5] or '', st, h[3] or ''}\n"
    "end\n"
    "if st == 'h' then\n"
    "  if exp <= now then redis.call('HINCRBY', KEYS[2], 'expirations', 1)\n"
    "  else redis.call('HINCRBY', KEYS[2], 'reclaimed_dead', 1) end\n"
    "end\n"
    "local c = tonumber(redis.call('HGET', KEYS[2], 'tok') or '0')\n"
    "local tok = n(math.max(c + 1, tonumber(t[1]) * 1000000 + tonumber(t[2])))\n"
    "local ttl = tonumber(ARGV[3])\n"
    "redis.call('HSET', KEYS[2], 'tok', tok)\n"
    "redis.call('HINCRBY', KEYS[2], 'acquisitions', 1)\n"
    "redis.call('DEL', KEYS[1])\n"
    "redis.call('HSET', KEYS[1], 'st', 'h', 'tok', tok, 'own', ARGV[4], 'req', ARGV[5],\n"
    "           'pid', ARGV[6], 'host', ARGV[7], 'meta', ARGV[8], 'exp', n(now + ttl))\n"
    "redis.call('PEXPIRE', KEYS[1], ttl + TOMB)\n"
    "redis.call('ZREM', KEYS[4], ARGV[1])\n"
    "redis.call('ZADD', KEYS[3], n(now + ttl), ARGV[1])\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', n(now))\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', n(now))\n"
    "return {1, tok, ttl}\n";

/* Is the lease hash ours and held? (ARGV[3] token, ARGV[4] owner) */
#define OURS                                                                    \
    "local h = redis.call('HMGET', KEYS[1], 'st', 'tok', 'own', 'exp')\n"       \
    "local ours = h[2] == ARGV[3] and h[3] == ARGV[4]\n"                        \
    "local held = ours and h[1] == 'h' and tonumber(h[4]) > now\n"

/* ARGV[5] ttl -> {1, ttl} | {0} lost */
static const char RENEW[] = PRELUDE OURS
    "if not held then redis.call('HINCRBY', KEYS[2], 'lost', 1) return {0} end\n"
    "local ttl = tonumber(ARGV[5])\n"
    "redis.call('HSET', KEYS[1], 'exp', n(now + ttl))\n"
    "redis.call('PEXPIRE', KEYS[1], ttl + TOMB)\n"
    "redis.call('ZADD', KEYS[3], n(now + ttl), ARGV[1])\n"
    "redis.call('HINCRBY', KEYS[2], 'renewals', 1)\n"
    "return {1, ttl}\n";

/* ARGV[5] grace ms (0: free now), [6] "1" when sent again after a lost
 * answer -> {1} | {0} lost */
static const char RELEASE[] = PRELUDE OURS
    "local g = tonumber(ARGV[5])\n"
    "if held then\n"
    "  redis.call('ZREM', KEYS[3], ARGV[1])\n"
    "  if g == 0 then\n"
    "    redis.call('HSET', KEYS[1], 'st', 'r', 'exp', n(now))\n"
    "    redis.call('PEXPIRE', KEYS[1], TOMB)\n"
    "    redis.call('PUBLISH', ARGV[2], 'r')\n"
    "  else\n"
    "    redis.call('HSET', KEYS[1], 'st', 'g', 'exp', n(now + g))\n"
    "    redis.call('PEXPIRE', KEYS[1], g + TOMB)\n"
    "    redis.call('ZADD', KEYS[4], n(now + g), ARGV[1])\n"
    "  end\n"
    "  return {1}\n"
    "end\n"
    "if ours and ARGV[6] == '1' and ((h[1] == 'r' and g == 0) or (h[1] == 'g' and g > 0)) then\n"
    "  return {1}\n"
    "end\n"
    "redis.call('HINCRBY', KEYS[2], 'lost', 1)\n"
    "return {0}\n";

/* -> {1, remaining} | {0} lost */
static const char CHECK[] = PRELUDE OURS
    "if not held then redis.call('HINCRBY', KEYS[2], 'lost', 1) return {0} end\n"
    "return {1, tonumber(h[4]) - now}\n";

/* ARGV[3] request id -> {1} | {0} not held */
static const char BREAK[] = PRELUDE
    "local h = redis.call('HMGET', KEYS[1], 'st', 'exp', 'breq')\n"
    "if (h[1] == 'h' or h[1] == 'g') and tonumber(h[2]) > now then\n"
    "  redis.call('HSET', KEYS[1], 'st', 'b', 'exp', n(now), 'breq', ARGV[3])\n"
    "  redis.call('PEXPIRE', KEYS[1], TOMB)\n"
    "  redis.call('ZREM', KEYS[3], ARGV[1])\n"
    "  redis.call('ZREM', KEYS[4], ARGV[1])\n"
    "  redis.call('HINCRBY', KEYS[2], 'broken', 1)\n"
    "  redis.call('PUBLISH', ARGV[2], 'b')\n"
    "  return {1}\n"
    "end\n"
    "if h[1] == 'b' and h[3] == ARGV[3] then return {1} end\n"
    "return {0}\n";

/* One lease hash as the inspection calls return it, or nil when it is not
 * held or in grace now. */
#define DESCRIBE                                                                \
    "local function describe(k)\n"                                              \
    "  local h = redis.call('HMGET', k, 'st', 'tok', 'pid', 'own', 'meta', 'exp')\n" \
    "  if (h[1] ~= 'h' and h[1] ~= 'g') or tonumber(h[6]) <= now then return nil end\n" \
    "  return {h[1], h[2], h[3] or '0', h[4] or '', h[5] or '', tonumber(h[6]) - now}\n" \
    "end\n"

/* -> {} | {st, tok, pid, own, meta, remaining} */
static const char INSPECT[] = PRELUDE DESCRIBE
    "return describe(KEYS[1]) or {}\n";

/* KEYS = { live, grace }; ARGV[1] the lease hash prefix, [2] offset, [3]
 * count -> {more, key, st, tok, pid, own, meta, remaining, key, ...} over
 * the held keys then those in grace, in deadline order */
static const char LIST[] = PRELUDE DESCRIBE
    "local out = {0}\n"
    "local off, cnt = tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "local keys = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. n(now), '+inf')\n"
    "local g = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. n(now), '+inf')\n"
    "for _, k in ipairs(g) do keys[#keys + 1] = k end\n"
    "for i = off + 1, math.min(#keys, off + cnt) do\n"
    "  local d = describe(ARGV[1] .. keys[i])\n"
    "  if d then\n"
    "    out[#out + 1] = keys[i]\n"
    "    for _, v in ipairs(d) do out[#out + 1] = v end\n"
    "  end\n"
    "end\n"
    "if #keys > off + cnt then out[1] = 1 end\n"
    "return out\n";

/* KEYS = { meta, live, grace } -> {flat meta hash, held, in grace} */
static const char STATS[] = PRELUDE
    "local m = redis.call('HGETALL', KEYS[1])\n"
    "return {m, redis.call('ZCOUNT', KEYS[2], '(' .. n(now), '+inf'),\n"
    "        redis.call('ZCOUNT', KEYS[3], '(' .. n(now), '+inf')}\n";

static const char *const g_body[RS_COUNT] = {
    [RS_OPEN] = OPEN, [RS_ACQUIRE] = ACQUIRE, [RS_RENEW] = RENEW, [RS_RELEASE] = RELEASE,
    [RS_CHECK] = CHECK, [RS_BREAK] = BREAK, [RS_INSPECT] = INSPECT, [RS_LIST] = LIST,
    [RS_STATS] = STATS,
};

/* Written once each by whichever connection loads the scripts first; the
 * same value every time (a script's SHA-1), so a racing reader sees either
 * "" (and sends the body) or the whole name: the name is written before the
 * flag that publishes it. */
static char g_sha[RS_COUNT][41];
static int g_sha_ready[RS_COUNT];

const char *shmlease__rscript_body(int script)
{
    return g_body[script];
}

const char *shmlease__rscript_sha(int script)
{
    return __atomic_load_n(&g_sha_ready[script], __ATOMIC_ACQUIRE) ? g_sha[script] : "";
}

void shmlease__rscript_set_sha(int script, const char *sha, size_t n)
{
    if (n != 40 || __atomic_load_n(&g_sha_ready[script], __ATOMIC_ACQUIRE))
        return;
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&mu);
    if (!g_sha_ready[script]) {
        memcpy(g_sha[script], sha, 40);
        g_sha[script][40] = 0;
        __atomic_store_n(&g_sha_ready[script], 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&mu);
}
