/* SPDX-License-Identifier: Apache-2.0 */
#include "ddsm/uuid.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/crypto.h>

static int is_dash_position(size_t i)
{
    return i == 8 || i == 13 || i == 18 || i == 23;
}

ddsm_err ddsm_uuid_parse(const char *text, size_t len, ddsm_uuid *out)
{
    ddsm_uuid u;
    size_t nibble = 0;

    if (out == NULL || (text == NULL && len > 0))
        return DDSM_E_ARG;
    if (len != DDSM_UUID_TEXT_LEN)
        return DDSM_E_UUID;
    for (size_t i = 0; i < len; i++) {
        if (is_dash_position(i)) {
            if (text[i] != '-')
                return DDSM_E_UUID;
            continue;
        }
        int v = OPENSSL_hexchar2int((unsigned char)text[i]);
        if (v < 0)
            return DDSM_E_UUID;
        if (nibble % 2 == 0)
            u.b[nibble / 2] = (uint8_t)(v << 4);
        else
            u.b[nibble / 2] |= (uint8_t)v;
        nibble++;
    }
    *out = u;
    return DDSM_OK;
}

void ddsm_uuid_format(const ddsm_uuid *u, char out[DDSM_UUID_TEXT_LEN + 1])
{
    static const char digits[] = "0123456789abcdef";
    size_t o = 0;

    for (size_t i = 0; i < sizeof(u->b); i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = digits[u->b[i] >> 4];
        out[o++] = digits[u->b[i] & 0x0f];
    }
    out[o] = '\0';
}

ddsm_err ddsm_uuid_random(ddsm_uuid *out)
{
    ddsm_uuid u;
    size_t got = 0;

    if (out == NULL)
        return DDSM_E_ARG;
    while (got < sizeof(u.b)) {
        ssize_t n = getrandom(u.b + got, sizeof(u.b) - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return ddsm_err_errno(errno);
        }
        got += (size_t)n;
    }
    u.b[6] = (uint8_t)((u.b[6] & 0x0f) | 0x40); /* version 4 */
    u.b[8] = (uint8_t)((u.b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    *out = u;
    return DDSM_OK;
}

bool ddsm_uuid_is_nil(const ddsm_uuid *u)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < sizeof(u->b); i++)
        acc |= u->b[i];
    return acc == 0;
}
