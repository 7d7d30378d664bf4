/* SPDX-License-Identifier: Apache-2.0 */
/* Log-linear latency histogram: values below HIST_SUB nanoseconds have a bucket each; above, every
 * power of two [2^e, 2^(e+1)) is split into HIST_SUB equal buckets. Recording is a few shifts, the
 * memory is fixed (30 KiB per thread) whatever the run length, and merging is addition. */
#include <string.h>

#include "bench.h"

static unsigned bucket_of(uint64_t v)
{
    if (v < HIST_SUB)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= HIST_SUB_BITS */
    uint64_t sub = v >> (e - HIST_SUB_BITS);         /* in [HIST_SUB, 2 * HIST_SUB) */
    return (e - HIST_SUB_BITS + 1) * HIST_SUB + (unsigned)(sub - HIST_SUB);
}

/* Lowest value of bucket idx and its width. */
static void bucket_bounds(unsigned idx, uint64_t *lo, uint64_t *width)
{
    if (idx < HIST_SUB) {
        *lo = idx;
        *width = 1;
        return;
    }
    unsigned e = idx / HIST_SUB + HIST_SUB_BITS - 1;
    uint64_t sub = (uint64_t)(idx % HIST_SUB) + HIST_SUB;
    *lo = sub << (e - HIST_SUB_BITS);
    *width = (uint64_t)1 << (e - HIST_SUB_BITS);
}

void bench_hist_reset(bench_hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min_ns = UINT64_MAX;
}

void bench_hist_add(bench_hist *h, uint64_t ns)
{
    h->count[bucket_of(ns)]++;
    h->n++;
    h->sum_ns += ns;
    if (ns < h->min_ns)
        h->min_ns = ns;
    if (ns > h->max_ns)
        h->max_ns = ns;
}

void bench_hist_merge(bench_hist *dst, const bench_hist *src)
{
    if (src->n == 0)
        return;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        dst->count[i] += src->count[i];
    dst->n += src->n;
    dst->sum_ns += src->sum_ns;
    if (src->min_ns < dst->min_ns)
        dst->min_ns = src->min_ns;
    if (src->max_ns > dst->max_ns)
        dst->max_ns = src->max_ns;
}

uint64_t bench_hist_quantile(const bench_hist *h, double q)
{
    if (h->n == 0)
        return 0;
    double want = q * (double)h->n;
    uint64_t rank = (uint64_t)want;
    if ((double)rank < want)
        rank++;
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->count[i];
        if (seen >= rank) {
            uint64_t lo, width;
            bucket_bounds(i, &lo, &width);
            uint64_t v = lo + width / 2;
            if (v < h->min_ns)
                v = h->min_ns;
            if (v > h->max_ns)
                v = h->max_ns;
            return v;
        }
    }
    return h->max_ns;
}
