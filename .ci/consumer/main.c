#include <shmlease.h>
#include <stdio.h>

int main(void)
{
    /* The library it runs with is at least the header it was built with. */
    if (shmlease_version_number() < SHMLEASE_VERSION_NUMBER) {
        fprintf(stderr, "libshmlease %s is older than its header %s\n", shmlease_version(),
                SHMLEASE_VERSION_STRING);
        return 1;
    }
    shmlease_table *t;
    int rc = shmlease_open("ci-consumer", NULL, &t);
    if (rc) {
        fprintf(stderr, "open: %s\n", shmlease_strerror(rc));
        return 1;
    }
    shmlease_lease l;
    rc = shmlease_acquire(t, "k", &(shmlease_acquire_opts){.ttl_ms = 1000}, &l);
    if (rc == 0)
        rc = shmlease_release(t, &l);
    shmlease_close(t);
    shmlease_unlink("ci-consumer");
    printf("consumer (libshmlease %s): %s\n", shmlease_version(), shmlease_strerror(rc));
    return rc != 0;
}
