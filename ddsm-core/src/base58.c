/* SPDX-License-Identifier: Apache-2.0 */
/* Base58Check (Bitcoin alphabet, double-SHA-256 checksum) for BIP-32 extended keys. The payload
 * can be an xprv, a secret: every temporary is wiped before return. Quadratic base conversion is
 * fine for the ~82-byte payloads we carry. */
#include "ddsm/hd.h"
#include "ddsm/ossl.h"

#include <openssl/evp.h>
#include <string.h>

#include "ddsm/secmem.h"

#define CHECKSUM_LEN 4
#define RAW_MAX (DDSM_BASE58_MAX_PAYLOAD + CHECKSUM_LEN)
/* log(256)/log(58) < 1.37: a RAW_MAX-byte input never needs more digits than this. */
#define TEXT_MAX (RAW_MAX * 137 / 100 + 1)

static const char alphabet[] = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

static int digit_of(char c)
{
    const char *p = (c != '\0') ? strchr(alphabet, c) : NULL;
    return p != NULL ? (int)(p - alphabet) : -1;
}

/* The first 4 bytes of SHA-256(SHA-256(data)). data may be a secret; the hashes are wiped. */
static ddsm_err checksum(const uint8_t *data, size_t len, uint8_t out[CHECKSUM_LEN])
{
    uint8_t h1[32], h2[32];
    ddsm_err e = DDSM_OK;

    if (EVP_Digest(data, len, h1, NULL, ddsm_ossl_sha256(), NULL) != 1 ||
        EVP_Digest(h1, sizeof(h1), h2, NULL, ddsm_ossl_sha256(), NULL) != 1) {
        e = ddsm_err_openssl("base58check checksum");
        goto out;
    }
    memcpy(out, h2, CHECKSUM_LEN);
out:
    ddsm_wipe(h1, sizeof(h1));
    ddsm_wipe(h2, sizeof(h2));
    return e;
}

ddsm_err ddsm_base58check_encode(const uint8_t *payload, size_t len, char *out, size_t out_size)
{
    uint8_t raw[RAW_MAX];
    uint8_t digits[TEXT_MAX];
    char text[TEXT_MAX + 1];
    size_t ndigits = 0, zeros = 0, o = 0;
    ddsm_err e = DDSM_E_ARG;

    if ((payload == NULL && len > 0) || len > DDSM_BASE58_MAX_PAYLOAD || out == NULL)
        goto out;
    if (len > 0)
        memcpy(raw, payload, len);
    e = checksum(raw, len, raw + len);
    if (e != DDSM_OK)
        goto out;
    size_t rlen = len + CHECKSUM_LEN;

    while (zeros < rlen && raw[zeros] == 0)
        zeros++;
    /* digits[0..ndigits) holds the number so far, least significant digit first. */
    for (size_t i = zeros; i < rlen; i++) {
        unsigned carry = raw[i];
        for (size_t j = 0; j < ndigits; j++) {
            carry += (unsigned)digits[j] << 8;
            digits[j] = (uint8_t)(carry % 58);
            carry /= 58;
        }
        while (carry > 0) {
            digits[ndigits++] = (uint8_t)(carry % 58);
            carry /= 58;
        }
    }
    for (size_t i = 0; i < zeros; i++)
        text[o++] = '1';
    for (size_t j = ndigits; j > 0; j--)
        text[o++] = alphabet[digits[j - 1]];
    text[o] = '\0';
    if (o + 1 > out_size) {
        e = DDSM_E_ARG;
        goto out;
    }
    memcpy(out, text, o + 1);
    e = DDSM_OK;
out:
    ddsm_wipe(raw, sizeof(raw));
    ddsm_wipe(digits, sizeof(digits));
    ddsm_wipe(text, sizeof(text));
    return e;
}

ddsm_err ddsm_base58check_decode(const char *text, size_t text_len, uint8_t *out, size_t out_size,
                                 size_t *out_len, const char **why)
{
    uint8_t bytes[RAW_MAX]; /* the number, least significant byte first */
    uint8_t raw[RAW_MAX];
    uint8_t sum[CHECKSUM_LEN];
    size_t nbytes = 0, zeros = 0;
    const char *reason = NULL;
    ddsm_err e = DDSM_E_ARG;

    if (text == NULL || out == NULL || out_len == NULL)
        goto out;
    e = DDSM_E_INPUT;
    if (text_len > TEXT_MAX) {
        reason = "Base58Check text too long";
        goto out;
    }
    while (zeros < text_len && text[zeros] == '1')
        zeros++;
    for (size_t i = zeros; i < text_len; i++) {
        int d = digit_of(text[i]);
        if (d < 0) {
            reason = "not Base58 (a character outside the Bitcoin alphabet)";
            goto out;
        }
        unsigned carry = (unsigned)d;
        for (size_t j = 0; j < nbytes; j++) {
            carry += (unsigned)bytes[j] * 58;
            bytes[j] = (uint8_t)carry;
            carry >>= 8;
        }
        while (carry > 0) {
            if (zeros + nbytes >= RAW_MAX) {
                reason = "Base58Check payload too long";
                goto out;
            }
            bytes[nbytes++] = (uint8_t)carry;
            carry >>= 8;
        }
    }
    size_t rlen = zeros + nbytes;
    if (rlen > RAW_MAX) {
        reason = "Base58Check payload too long";
        goto out;
    }
    if (rlen < CHECKSUM_LEN) {
        reason = "Base58Check text too short for its checksum";
        goto out;
    }
    memset(raw, 0, zeros);
    for (size_t j = 0; j < nbytes; j++)
        raw[zeros + j] = bytes[nbytes - 1 - j];
    size_t plen = rlen - CHECKSUM_LEN;
    e = checksum(raw, plen, sum);
    if (e != DDSM_OK)
        goto out;
    if (!ddsm_ct_equal(sum, raw + plen, CHECKSUM_LEN)) {
        e = DDSM_E_INPUT;
        reason = "invalid checksum";
        goto out;
    }
    if (plen > out_size) {
        e = DDSM_E_INPUT;
        reason = "Base58Check payload larger than expected";
        goto out;
    }
    memcpy(out, raw, plen);
    *out_len = plen;
    e = DDSM_OK;
out:
    ddsm_wipe(bytes, sizeof(bytes));
    ddsm_wipe(raw, sizeof(raw));
    if (e != DDSM_OK && why != NULL)
        *why = reason != NULL ? reason : ddsm_err_str(e);
    return e;
}
