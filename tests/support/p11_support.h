/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers for C tests that drive libddsm-pkcs11.so as an application would: dlopen the module
 * named by $DDSM_MODULE, sessions, login, finds, the store set up with ddsmctl ($DDSM_CTL), the
 * audit row count read with libpq ($DDSM_TEST_CONNINFO), and the docs/design.md test vectors.
 * Include after <cmocka.h>. Every helper fails the running test on an unexpected error. */
#ifndef DDSM_P11_SUPPORT_H
#define DDSM_P11_SUPPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ddsm/names.h"
#include "ddsm/pkcs11-compat.h"
#include "ddsm/pkcs11-ddsm.h"
#include "design_vectors.h" /* VEC_A_ID ...: the docs/design.md vectors */

/* The module's function list (after p11_load). */
extern CK_FUNCTION_LIST_PTR p11;

/* Assets p11_setup_store registers besides the two vectors. */
#define FRESH_ID "11111111-2222-4333-8444-555555555555"   /* INITIALIZED, never activated */
#define RETIRED_ID "22222222-3333-4444-8555-666666666666" /* activated, then retired */
#define AES_ID "33333333-4444-4555-8666-777777777777"     /* key type aes, ACTIVE, m/1 */
#define UNKNOWN_ID "99999999-8888-4777-8666-555555555555" /* never registered */

#define assert_rv(expected, call)                                                                  \
    do {                                                                                           \
        CK_RV rv_got_ = (call);                                                                    \
        CK_RV rv_want_ = (expected);                                                               \
        if (rv_got_ != rv_want_)                                                                   \
            fail_msg("%s:%d: %s returned %s, expected %s", __FILE__, __LINE__, #call,              \
                     ddsm_rv_name(rv_got_), ddsm_rv_name(rv_want_));                               \
    } while (0)

/* dlopen $DDSM_MODULE (once) and take C_GetFunctionList's list. */
void p11_load(void);
/* The address of an exported symbol of the module (C_GetInterface, ...), or NULL. */
void *p11_sym(const char *name);

/* Write a fresh configuration (mode 0600) at $DDSM_TEST_DIR/<name>.conf for this test's token and
 * database: conninfo NULL means $DDSM_TEST_CONNINFO; extra is appended verbatim (more sections,
 * may be NULL). Points $DDSM_CONF at it and returns its path (static storage). */
const char *p11_write_conf(const char *name, const char *conninfo, const char *extra);

/* A new SoftHSM token labelled label in a free slot of this test's token directory, user PIN pin
 * (SO PIN 87654321); fails the test when softhsm2-util does. */
void p11_init_token(const char *label, const char *pin);

/* Write text to path, mode 0600 (PIN files, configurations); fails the test when it cannot. */
void p11_write_file(const char *path, const char *text);

/* Run "$DDSM_CTL <args>" through the shell with DDSM_PIN=$DDSM_TEST_PIN; returns its exit status.
 */
int p11_ctl(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Migrate the database, import the docs/design.md root seed, register and activate the vector assets
 * (labels "vec-a", "vec-b"), and the FRESH/RETIRED/AES assets above. */
void p11_setup_store(void);

/* Open a R/W session on slot 0; p11_open_user also logs in as CKU_USER with $DDSM_TEST_PIN
 * (CKR_USER_ALREADY_LOGGED_IN accepted). */
CK_SESSION_HANDLE p11_open(void);
CK_SESSION_HANDLE p11_open_user(void);

/* For cmocka setups: C_Initialize, then a user session (p11_open_user) in *s. -1 (and *s
 * untouched) when C_Initialize fails. */
int p11_start_user_session(CK_SESSION_HANDLE *s);
/* For the matching teardowns: close s, then C_Finalize; -1 when C_Finalize fails. */
int p11_end_session(CK_SESSION_HANDLE s);

/* A cmocka teardown: C_Finalize whatever it returns (a test that failed half-way leaves the
 * module initialised: the next one starts clean). Always 0. */
int p11_finalize_teardown(void **state);

/* Every object matching the template (at most max). */
size_t p11_find(CK_SESSION_HANDLE s, CK_ATTRIBUTE *t, CK_ULONG n, CK_OBJECT_HANDLE *out,
                size_t max);
/* The single object whose CKA_LABEL is label; fails the test unless exactly one. */
CK_OBJECT_HANDLE p11_find_label(CK_SESSION_HANDLE s, const char *label);
/* The root seed key's handle as the application sees it (CKO_SECRET_KEY labelled ddsm-root). */
CK_OBJECT_HANDLE p11_root(CK_SESSION_HANDLE s);
/* Count of backend objects (handles below 2^31) visible in the session. */
size_t p11_backend_object_count(CK_SESSION_HANDLE s);

/* CKM_DDSM_DERIVE parameter for (uuid text, path) into buf; returns its length. */
size_t p11_param(uint8_t *buf, size_t len, const char *uuid_text, const char *path);
/* C_DeriveKey(CKM_DDSM_DERIVE) on the root with the given template. */
CK_RV p11_derive(CK_SESSION_HANDLE s, const char *uuid_text, const char *path, CK_ATTRIBUTE *t,
                 CK_ULONG n, CK_OBJECT_HANDLE *out);

/* C_SignInit(mechanism m, no parameter) + C_Sign of data with key into sig, which must come back
 * exactly sig_len bytes long (fails the test otherwise); returns the first rv that is not OK. */
CK_RV p11_sign_fixed(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key, CK_MECHANISM_TYPE m,
                     const uint8_t *data, size_t len, uint8_t *sig, size_t sig_len);
/* HMAC-SHA256 signature of data with key h through the module (C_SignInit + C_Sign). */
CK_RV p11_hmac_sign(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, const uint8_t *data, size_t len,
                    uint8_t out[32]);
/* HMAC-SHA256 computed here with OpenSSL, for comparison. */
void p11_hmac_expected(const char *key_hex, const uint8_t *data, size_t len, uint8_t out[32]);
void p11_unhex(const char *hex, uint8_t *out, size_t n);
/* The key of (asset, path, counter) under the docs/design.md test seed, computed here with ddsm-core's
 * in-memory PRF (OpenSSL), for keys the vector table does not list. */
void p11_expected_key(const char *uuid_text, const char *path, uint64_t counter, uint8_t out[32]);
/* HMAC-SHA256 with raw key bytes. */
void p11_hmac_raw(const uint8_t key[32], const uint8_t *data, size_t len, uint8_t out[32]);
/* Sleep for ms milliseconds. */
void p11_sleep_ms(unsigned ms);

/* One number from SQL run on $DDSM_TEST_CONNINFO (e.g. the audit row count). */
long p11_sql_long(const char *sql);
long p11_audit_count(void);

/* CK_ULONG attribute of an object, or (CK_ULONG)-1 when the call fails. */
CK_ULONG p11_attr_ulong(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE t);

#endif
