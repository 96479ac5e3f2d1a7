/* The public header compiles alone as strict ISO C11 (-std=c11 -pedantic), with
 * no _GNU_SOURCE, and is self-contained (included first). */
#include "shmlease.h"
#include "shmlease.h" /* include guard */

#include <stdio.h>
#include <string.h>

_Static_assert(SHMLEASE_KEY_MAX >= 127, "contract: keys of at least 127 bytes");
_Static_assert(SHMLEASE_METADATA_MAX >= 64, "contract: metadata of at least 64 bytes");
_Static_assert(SHMLEASE_WAIT_FOREVER == -1, "contract");
_Static_assert(sizeof(((shmlease_info *)0)->key) == SHMLEASE_KEY_MAX + 1, "key buffer");
_Static_assert(sizeof(((shmlease_info *)0)->metadata) == SHMLEASE_METADATA_MAX, "metadata");
_Static_assert((SHMLEASE_OPEN_NOCREATE & SHMLEASE_OPEN_EXCL) == 0, "distinct flags");
_Static_assert((SHMLEASE_OPEN_EXCL & SHMLEASE_OPEN_READONLY) == 0, "distinct flags");

int main(void)
{
    shmlease_options o = { 0 };
    shmlease_acquire_opts ao = { 0 };
    shmlease_lease l = { 0 };
    shmlease_stats s = { 0 };
    (void)o;
    (void)ao;
    (void)l;
    (void)s;
    const char *e = shmlease_strerror(0);
    if (e == NULL || strlen(e) == 0)
        return 1;
    printf("header OK from C11\n");
    return 0;
}
