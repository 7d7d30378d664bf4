/* SPDX-License-Identifier: Apache-2.0 */
/* ddsm_uuid_parse / ddsm_uuid_format over arbitrary bytes (text, len), not NUL-terminated.
 *
 * Checked: acceptance is exactly the canonical 8-4-4-4-12 hex form of 36 bytes in either case
 * (an independent check); an accepted id formats to the input in lower case and re-parses to the
 * same bytes; a rejection is DDSM_E_UUID and leaves the output untouched. The first 16 input bytes,
 * read as a binary id, also format to canonical text that parses back to them, and only the
 * all-zero id is nil. */
#include <stdbool.h>
#include <string.h>

#include "ddsm/uuid.h"
#include "fuzz.h"

static bool ref_is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool ref_valid(const char *t, size_t len)
{
    static const char shape[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
    if (len != sizeof(shape) - 1)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (shape[i] == '-' ? t[i] != '-' : !ref_is_hex(t[i]))
            return false;
    }
    return true;
}

static char ref_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static void check_binary(const uint8_t b[16])
{
    ddsm_uuid u;
    ddsm_uuid v;
    char text[DDSM_UUID_TEXT_LEN + 1];

    memcpy(u.b, b, 16);
    memset(text, 0x7f, sizeof(text));
    ddsm_uuid_format(&u, text);
    FUZZ_CHECK(text[DDSM_UUID_TEXT_LEN] == '\0' && strlen(text) == DDSM_UUID_TEXT_LEN,
               "formatted id is not %d characters", DDSM_UUID_TEXT_LEN);
    FUZZ_CHECK(ref_valid(text, DDSM_UUID_TEXT_LEN), "formatted id \"%s\" is not canonical", text);
    for (size_t i = 0; i < DDSM_UUID_TEXT_LEN; i++)
        FUZZ_CHECK(text[i] == ref_lower(text[i]), "formatted id \"%s\" is not lower case", text);
    ddsm_err e = ddsm_uuid_parse(text, DDSM_UUID_TEXT_LEN, &v);
    FUZZ_CHECK(e == DDSM_OK, "formatted id \"%s\" does not parse (%d)", text, e);
    FUZZ_CHECK(memcmp(u.b, v.b, 16) == 0, "\"%s\" parses to other bytes", text);
    FUZZ_CHECK(ddsm_uuid_is_nil(&u) == fuzz_all_bytes(u.b, 16, 0), "is_nil is wrong for %s", text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    ddsm_uuid u;

    memset(&u, 0xa5, sizeof(u));
    ddsm_err e = ddsm_uuid_parse(text, size, &u);
    bool ref_ok = ref_valid(text, size);
    if (e != DDSM_OK) {
        FUZZ_CHECK(e == DDSM_E_UUID, "rejected with error %d, not DDSM_E_UUID", e);
        FUZZ_CHECK(!ref_ok, "a valid id \"%.*s\" was rejected", (int)size, text);
        FUZZ_CHECK(fuzz_all_bytes(&u, sizeof(u), 0xa5), "a rejection wrote the output");
    } else {
        char canon[DDSM_UUID_TEXT_LEN + 1];
        FUZZ_CHECK(ref_ok, "an invalid id \"%.*s\" was accepted", (int)size, text);
        ddsm_uuid_format(&u, canon);
        for (size_t i = 0; i < DDSM_UUID_TEXT_LEN; i++)
            FUZZ_CHECK(canon[i] == ref_lower(text[i]), "\"%.*s\" formats as \"%s\"", (int)size,
                       text, canon);
        check_binary(u.b);
    }
    if (size >= 16)
        check_binary(data);
    return 0;
}
