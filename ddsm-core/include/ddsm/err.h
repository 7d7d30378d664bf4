/* SPDX-License-Identifier: Apache-2.0 */
/* The core's own small error enum. The module maps it to CK_RV in exactly one place
 * (module/src/rv.c); the tools map it to exit codes in one place. */
#ifndef DDSM_ERR_H
#define DDSM_ERR_H

#define DDSM_WUR __attribute__((warn_unused_result))

typedef enum ddsm_err {
    DDSM_OK = 0,
    DDSM_E_ARG,         /* programmer misuse inside our own code (precondition) */
    DDSM_E_NOMEM,       /* allocation or mlock failed */
    DDSM_E_PATH,        /* malformed derivation path */
    DDSM_E_UUID,        /* malformed asset id */
    DDSM_E_INPUT,       /* other malformed caller input (label too long, bad duration, ...) */
    DDSM_E_CONFIG,      /* configuration file unreadable or invalid */
    DDSM_E_STORE_DOWN,  /* PostgreSQL unreachable / connection lost: fail closed */
    DDSM_E_STORE,       /* PostgreSQL answered with an error we did not expect */
    DDSM_E_NOT_FOUND,   /* unknown asset */
    DDSM_E_EXISTS,      /* duplicate id or label */
    DDSM_E_STATE,       /* asset state forbids the operation (illegal transition, RETIRED...) */
    DDSM_E_POLICY,      /* refused by configured policy */
    DDSM_E_HSM,         /* the backend HSM failed */
    DDSM_E_CRYPTO,      /* an OpenSSL call failed */
    DDSM_E_IO,          /* file I/O */
    DDSM_E_TIMEOUT,     /* a bounded wait expired */
    DDSM_E_PRIVILEGE,   /* the store role lacks a privilege the operation needs */
    DDSM_E_DURABILITY,  /* the store session cannot make commits durable (synchronous_commit) */
    DDSM_E__COUNT
} ddsm_err;

/* Stable, lower-case name of an error ("store unavailable"), never NULL. */
const char *ddsm_err_str(ddsm_err e);

/* The one translation of each foreign error domain. ddsm_err_openssl drains OpenSSL's error
 * queue, logs its first entry (prefixed by what) and returns DDSM_E_CRYPTO (DDSM_E_NOMEM for an
 * allocation failure). ddsm_err_errno maps an errno value (never to DDSM_OK). */
ddsm_err ddsm_err_openssl(const char *what);
ddsm_err ddsm_err_errno(int errnum);

#endif
