/* SPDX-License-Identifier: Apache-2.0 */
/* A growing text buffer for building statements' parameters, files and the metrics' text:
 * NUL-terminated once anything was appended; a failed allocation (or a format error) sets oom and
 * later appends do nothing, so a caller checks once at the end. Zero-initialise it; free(b.p)
 * when done. Not for secrets (realloc leaves copies). */
#ifndef DDSM_TEXTBUF_H
#define DDSM_TEXTBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ddsm_textbuf {
    char *p;
    size_t len, cap;
    bool oom;
} ddsm_textbuf;

void ddsm_textbuf_putn(ddsm_textbuf *b, const char *s, size_t n);
void ddsm_textbuf_puts(ddsm_textbuf *b, const char *s);
void ddsm_textbuf_printf(ddsm_textbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Element i (from 0) of a PostgreSQL array in text form (a value, never SQL): a ',' before all
 * but the first, then NULL for s == NULL, else s double-quoted with '"' and '\' escaped. */
void ddsm_textbuf_array_elem(ddsm_textbuf *b, size_t i, const char *s);
/* The same for an integer, NULL when !present. */
void ddsm_textbuf_array_i64(ddsm_textbuf *b, size_t i, bool present, int64_t v);

#endif
