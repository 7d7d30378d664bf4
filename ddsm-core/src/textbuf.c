/* SPDX-License-Identifier: Apache-2.0 */
#include "ddsm/textbuf.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Room for n more bytes and the NUL; false (oom set) when there is none. */
static bool reserve(ddsm_textbuf *b, size_t n)
{
    if (b->oom)
        return false;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap != 0 ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = true;
            return false;
        }
        b->p = p;
        b->cap = cap;
    }
    return true;
}

void ddsm_textbuf_putn(ddsm_textbuf *b, const char *s, size_t n)
{
    if (!reserve(b, n))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void ddsm_textbuf_puts(ddsm_textbuf *b, const char *s)
{
    ddsm_textbuf_putn(b, s, strlen(s));
}

void ddsm_textbuf_printf(ddsm_textbuf *b, const char *fmt, ...)
{
    /* Written in place when it fits; else the room is made and it is written again. */
    for (int pass = 0; pass < 2 && !b->oom; pass++) {
        size_t room = b->cap - b->len;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(room > 0 ? b->p + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = true;
            return;
        }
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        (void)reserve(b, (size_t)n);
    }
    b->oom = true; /* no room could be made, or the text changed between the passes */
}

void ddsm_textbuf_array_elem(ddsm_textbuf *b, size_t i, const char *s)
{
    if (i > 0)
        ddsm_textbuf_putn(b, ",", 1);
    if (s == NULL) {
        ddsm_textbuf_puts(b, "NULL");
        return;
    }
    ddsm_textbuf_putn(b, "\"", 1);
    for (const char *p = s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\')
            ddsm_textbuf_putn(b, "\\", 1);
        ddsm_textbuf_putn(b, p, 1);
    }
    ddsm_textbuf_putn(b, "\"", 1);
}

void ddsm_textbuf_array_i64(ddsm_textbuf *b, size_t i, bool present, int64_t v)
{
    char t[24];
    snprintf(t, sizeof t, "%" PRId64, v);
    ddsm_textbuf_array_elem(b, i, present ? t : NULL);
}
