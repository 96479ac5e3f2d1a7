/*
 * A stand-in for libshmlease.so.1 of version 1.0.0, which had no symbol
 * versions: the same functions and soname, no version script, and bodies
 * that never run. old_binary is linked with it, so its references carry no
 * version, exactly like a program linked with the real 1.0 library; it then
 * runs with the library of this build (LD_LIBRARY_PATH).
 */
#include "shmlease.h" /* tests/abi/v1.0/shmlease.h */

#include <stdlib.h>

#define NEVER abort()

int shmlease_open(const char *name, const shmlease_options *opts, shmlease_table **out)
{ (void)name; (void)opts; (void)out; NEVER; }
void shmlease_close(shmlease_table *t) { (void)t; NEVER; }
int shmlease_unlink(const char *name) { (void)name; NEVER; }
int shmlease_acquire(shmlease_table *t, const char *key, const shmlease_acquire_opts *o,
                     shmlease_lease *out)
{ (void)t; (void)key; (void)o; (void)out; NEVER; }
int shmlease_renew(shmlease_table *t, shmlease_lease *l, uint64_t ttl_ms)
{ (void)t; (void)l; (void)ttl_ms; NEVER; }
int shmlease_release(shmlease_table *t, shmlease_lease *l) { (void)t; (void)l; NEVER; }
int shmlease_release_after(shmlease_table *t, shmlease_lease *l, uint64_t grace_ms)
{ (void)t; (void)l; (void)grace_ms; NEVER; }
int shmlease_with(shmlease_table *t, const char *key, const shmlease_acquire_opts *o,
                  int (*fn)(const shmlease_lease *l, void *arg), void *arg)
{ (void)t; (void)key; (void)o; (void)fn; (void)arg; NEVER; }
int shmlease_check(shmlease_table *t, const shmlease_lease *l) { (void)t; (void)l; NEVER; }
int shmlease_break(shmlease_table *t, const char *key) { (void)t; (void)key; NEVER; }
const char *shmlease_strerror(int rc) { (void)rc; NEVER; }
const char *shmlease_errname(int rc) { (void)rc; NEVER; }
int shmlease_inspect(shmlease_table *t, const char *key, shmlease_info *out)
{ (void)t; (void)key; (void)out; NEVER; }
int shmlease_foreach(shmlease_table *t, int (*fn)(const shmlease_info *, void *), void *arg)
{ (void)t; (void)fn; (void)arg; NEVER; }
int shmlease_stats_get(shmlease_table *t, shmlease_stats *out) { (void)t; (void)out; NEVER; }
uint64_t shmlease_now_ms(shmlease_table *t) { (void)t; NEVER; }
