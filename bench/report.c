/*
 * The report's pieces every scenario uses: progress lines on stderr, the CSV
 * files in --out, and the number formats of the Markdown tables.
 */
#include "bench.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

int g_failed;                     /* something broke: exit 1 */
static int g_werr;                /* a CSV could not be written */

void progress(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

FILE *csv_open(const char *name, const char *header)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", g_cfg.out, name);
    FILE *f = fopen(path, "w");
    if (!f) {
        progress("cannot write %s: %s", path, strerror(errno));
        g_werr = 1;
        return NULL;
    }
    fprintf(f, "%s\n", header);
    return f;
}

/* "23.4 ns", "1.27 µs", "3.1 ms" */
const char *fmt_t(char *buf, size_t n, double ns)
{
    if (isnan(ns))
        snprintf(buf, n, "-");
    else if (isinf(ns))
        snprintf(buf, n, "inf");
    else if (ns < 100)
        snprintf(buf, n, "%.1f ns", ns);
    else if (ns < 10000)
        snprintf(buf, n, "%.0f ns", ns);
    else if (ns < 1e6)
        snprintf(buf, n, "%.1f µs", ns / 1e3);
    else if (ns < 1e9)
        snprintf(buf, n, "%.2f ms", ns / 1e6);
    else
        snprintf(buf, n, "%.2f s", ns / 1e9);
    return buf;
}

const char *fmt_rate(char *buf, size_t n, double r)
{
    if (isnan(r))
        snprintf(buf, n, "-");
    else if (r >= 1e6)
        snprintf(buf, n, "%.2f M/s", r / 1e6);
    else if (r >= 1e3)
        snprintf(buf, n, "%.1f k/s", r / 1e3);
    else
        snprintf(buf, n, "%.0f /s", r);
    return buf;
}

const char *fmt_x(char *buf, size_t n, double x)
{
    if (isnan(x))
        snprintf(buf, n, "-");
    else if (isinf(x))
        snprintf(buf, n, "inf");
    else if (x >= 100)
        snprintf(buf, n, "%.0fx", x);
    else
        snprintf(buf, n, "%.2fx", x);
    return buf;
}

/* max/min share: "1.07"; "2e+07" when one process nearly starved; "inf" */
const char *fmt_fair(char *buf, size_t n, double f)
{
    if (isinf(f))
        snprintf(buf, n, "inf");
    else if (f >= 1000)
        snprintf(buf, n, "%.0e", f);
    else
        snprintf(buf, n, "%.2f", f);
    return buf;
}

void csv_batch_row(FILE *csv, const char *peer, const char *call, const struct batch_res *br)
{
    if (csv)
        fprintf(csv, "%s,\"%s\",%.2f,%.2f,%.2f,%.2f,%d,%ld\n", peer, call, br->s.median, br->s.p99,
                br->s.min, br->s.max, br->batches, br->ops_per_batch);
}
