/*
 * Redis backend: the server's address, read from the URL given as
 * shmlease_options.backend (docs/redis-backend.md, "Choosing the server").
 *   redis://[[user]:password@]host[:port][/db][?option=value&...]
 *   unix:///path/to/redis.sock[?db=N&option=value...]
 * Options: db, timeout_ms (each call's wait for an answer), connect_timeout_ms,
 * retry_ms (how long a call keeps reconnecting before it reports the error).
 */
#ifndef SHMLEASE_RURL_H
#define SHMLEASE_RURL_H

#include <stdint.h>

#define RURL_HOST_MAX 255
#define RURL_PATH_MAX 107          /* sun_path */
#define RURL_CRED_MAX 255

struct rurl {
    int      is_unix;
    char     host[RURL_HOST_MAX + 1];   /* TCP: a name or an address (IPv6 without []) */
    int      port;
    char     path[RURL_PATH_MAX + 1];   /* unix: the socket */
    char     user[RURL_CRED_MAX + 1];   /* "" = none (password alone: AUTH password) */
    char     pass[RURL_CRED_MAX + 1];   /* "" = no AUTH */
    int      db;
    uint32_t timeout_ms;
    uint32_t connect_timeout_ms;
    uint32_t retry_ms;
};

#define RURL_DEFAULT_PORT 6379
#define RURL_DEFAULT_TIMEOUT_MS 2000u
#define RURL_DEFAULT_CONNECT_TIMEOUT_MS 2000u
#define RURL_DEFAULT_RETRY_MS 5000u

/* Parses URL into *u. 0; -EINVAL (malformed, a field too long, an unknown
 * option, a value out of range); -EPROTONOSUPPORT (a scheme other than
 * redis:// and unix://: rediss:// (TLS) included). */
int shmlease__rurl_parse(const char *url, struct rurl *u);

#endif
