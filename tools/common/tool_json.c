/* SPDX-License-Identifier: Apache-2.0 */
/* JSON strings for the tools' --json output. */
#include <string.h>

#include "ddsm/utf8.h"
#include "tool.h"

void tool_json_str(FILE *f, const char *text)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t n = strlen(text);
    fputc('"', f);
    for (size_t i = 0; i < n;) {
        unsigned char ch = s[i];
        size_t len = 1;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch == '\n')
            fputs("\\n", f);
        else if (ch == '\r')
            fputs("\\r", f);
        else if (ch == '\t')
            fputs("\\t", f);
        else if (ch < 0x20 || ch == 0x7f)
            fprintf(f, "\\u%04x", ch);
        else if ((len = ddsm_utf8_seq(s + i, n - i)) == 0)
            fputs("\\ufffd", f);
        else
            fwrite(s + i, 1, len, f);
        i += len == 0 ? 1 : len;
    }
    fputc('"', f);
}
