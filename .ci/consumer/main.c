#include <shmlease.h>
#include <stdio.h>

int main(void)
{
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
    printf("consumer: %s\n", shmlease_strerror(rc));
    return rc != 0;
}
