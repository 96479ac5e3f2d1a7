/*
 * Redis backend: the server-side scripts, one per transition
 * (docs/redis-backend.md, "Keys and scripts"). Each runs whole or not at all
 * on the server, so a client that dies mid-call never leaves half a
 * transition.
 */
#ifndef SHMLEASE_RSCRIPTS_H
#define SHMLEASE_RSCRIPTS_H

#include <stddef.h>

enum rscript {
    RS_OPEN, RS_ACQUIRE, RS_RENEW, RS_RELEASE, RS_CHECK, RS_BREAK,
    RS_INSPECT, RS_LIST, RS_STATS,
    RS_COUNT
};

/* The script's text. */
const char *shmlease__rscript_body(int script);
/* Its SHA-1 as the server named it (SCRIPT LOAD), "" until loaded once. */
const char *shmlease__rscript_sha(int script);
void shmlease__rscript_set_sha(int script, const char *sha, size_t n);

#endif
