/*
 * What an uncontended acquire+release is made of: the parts that cost
 * something, each timed alone in this run by the same batch method, set
 * against the pair measured by `uncontended`. Printed at the end of that
 * scenario; the rest (key hash, lookup, checks, publication of the token)
 * is what is left of the pair.
 *
 * One pair reads the precise clock twice (the proofs: the acquire's last
 * read, which bounds how short the new lease may be, and release's read
 * after its CAS, which proves it was in time) and the coarse clock twice
 * (the new deadline, release's cheap refusal), makes two 16-byte CASes on
 * the lease state (claim, release) and draws a token (one atomic add).
 */
#include "bench.h"

#include <math.h>
#include <stdint.h>
#include <sys/mman.h>
#include <time.h>

static int op_precise(void *c)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    *(volatile long *)c = ts.tv_nsec;
    return 0;
}

static int op_coarse(void *c)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    *(volatile long *)c = ts.tv_nsec;
    return 0;
}

/* A 16-byte CAS that succeeds, on a word of a shared mapping, as the claim
 * and the release are. */
static int op_cas16(void *c)
{
    unsigned __int128 *w = c, old = *w, nw = old + 1;
    return __sync_bool_compare_and_swap(w, old, nw) ? 0 : -1;
}

static int op_xadd(void *c)
{
    __atomic_add_fetch((uint64_t *)c, 1, __ATOMIC_SEQ_CST);
    return 0;
}

struct part { const char *what; op_fn op; int per_pair; double ns; };

void breakdown_print(double pair_ns)
{
    void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED || isnan(pair_ns))
        return;
    long sink = 0;
    struct part parts[] = {
        { "precise clock read (CLOCK_MONOTONIC)", op_precise, 2, NAN },
        { "coarse clock read (CLOCK_MONOTONIC_COARSE)", op_coarse, 2, NAN },
        { "16-byte CAS on the lease state (claim, release)", op_cas16, 2, NAN },
        { "atomic add (fencing token)", op_xadd, 1, NAN },
    };
    void *ctx[] = { &sink, &sink, m, (char *)m + 64 };
    double sum = 0;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        struct batch_res br;
        progress("[uncontended] part: %s", parts[i].what);
        measure_batches(parts[i].op, ctx[i], &br);
        parts[i].ns = br.err ? NAN : br.s.median;
        sum += parts[i].per_pair * parts[i].ns;
    }
    munmap(m, 4096);
    printf("\nWhat one shmlease acquire+release (wait_ms=0, %s) is made of, each part timed "
           "alone in this run:\n\n| part | each | per pair | share |\n|---|---:|---:|---:|\n",
           T(pair_ns));
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        printf("| %s | %s | %d x = %s | %.0f%% |\n", parts[i].what, T(parts[i].ns), parts[i].per_pair,
               T(parts[i].per_pair * parts[i].ns), 100 * parts[i].per_pair * parts[i].ns / pair_ns);
    printf("| the rest: key copy and hash, index lookup, checks, token publication | | %s | %.0f%% |\n",
           T(pair_ns - sum), 100 * (pair_ns - sum) / pair_ns);
}
