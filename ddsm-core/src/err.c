/* SPDX-License-Identifier: Apache-2.0 */
/* Names of the core's errors, and the translation of foreign error domains (OpenSSL, errno) into
 * ddsm_err: each domain is translated here and nowhere else. */
#include "ddsm/err.h"

#include <errno.h>
#include <openssl/err.h>

#include "ddsm/log.h"

static const char *const err_names[DDSM_E__COUNT] = {
    [DDSM_OK] = "ok",
    [DDSM_E_ARG] = "invalid argument (internal)",
    [DDSM_E_NOMEM] = "out of memory",
    [DDSM_E_PATH] = "malformed derivation path",
    [DDSM_E_UUID] = "malformed asset id",
    [DDSM_E_INPUT] = "malformed input",
    [DDSM_E_CONFIG] = "invalid configuration",
    [DDSM_E_STORE_DOWN] = "store unavailable",
    [DDSM_E_STORE] = "store error",
    [DDSM_E_NOT_FOUND] = "unknown asset",
    [DDSM_E_EXISTS] = "already exists",
    [DDSM_E_STATE] = "asset state forbids the operation",
    [DDSM_E_POLICY] = "refused by policy",
    [DDSM_E_HSM] = "backend HSM failure",
    [DDSM_E_CRYPTO] = "cryptographic library failure",
    [DDSM_E_IO] = "I/O error",
    [DDSM_E_TIMEOUT] = "timed out",
    [DDSM_E_PRIVILEGE] = "store role lacks a privilege",
    [DDSM_E_DURABILITY] = "store commits not durable",
};

const char *ddsm_err_str(ddsm_err e)
{
    if ((unsigned)e >= DDSM_E__COUNT || err_names[e] == NULL)
        return "unknown error";
    return err_names[e];
}

ddsm_err ddsm_err_openssl(const char *what)
{
    /* Drain the whole queue so a stale entry never surfaces in a later, unrelated call. The
     * strings name OpenSSL's failing function and reason; they never contain key bytes. */
    unsigned long code;
    const char *file = NULL;
    int line = 0;
    int first = 1;
    ddsm_err result = DDSM_E_CRYPTO;

    while ((code = ERR_get_error_all(&file, &line, NULL, NULL, NULL)) != 0) {
        if (ERR_GET_REASON(code) == ERR_R_MALLOC_FAILURE)
            result = DDSM_E_NOMEM;
        if (first || ddsm_log_enabled(DDSM_LOG_DEBUG)) {
            char buf[256];
            ERR_error_string_n(code, buf, sizeof(buf));
            ddsm_log(first ? DDSM_LOG_INFO : DDSM_LOG_DEBUG, "%s: OpenSSL: %s",
                     what != NULL ? what : "crypto", buf);
            first = 0;
        }
    }
    if (first)
        ddsm_log(DDSM_LOG_INFO, "%s: OpenSSL failed without a reason",
                 what != NULL ? what : "crypto");
    return result;
}

ddsm_err ddsm_err_errno(int errnum)
{
    switch (errnum) {
    case ENOMEM:
        return DDSM_E_NOMEM;
    case ETIMEDOUT:
        return DDSM_E_TIMEOUT;
    default: /* including 0: the caller saw a failure, so it is never DDSM_OK */
        return DDSM_E_IO;
    }
}
