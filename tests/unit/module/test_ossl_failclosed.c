/* SPDX-License-Identifier: Apache-2.0 */
/* The module never works in the host's default OpenSSL context (ddsm/ossl.h): when its private
 * context cannot be made (here: every OpenSSL allocation fails, through OpenSSL's own allocator
 * hooks, set before OpenSSL allocates anything), C_Initialize refuses with CKR_GENERAL_ERROR
 * before reading any configuration, instead of letting OpenSSL's *_ex functions fall back to the
 * default context, where a host's configuration may route work back into the module. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include <openssl/crypto.h>

#include "ddsm/ossl.h"
#include "ddsm/pkcs11-compat.h"
#include "ddsm/pkcs11-ddsm.h"

static bool g_fail;
static unsigned g_refused;

static void *ossl_malloc(size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    if (g_fail) {
        g_refused++;
        return NULL;
    }
    return malloc(n);
}

static void *ossl_realloc(void *p, size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    if (g_fail) {
        g_refused++;
        return NULL;
    }
    return realloc(p, n);
}

static void ossl_free(void *p, const char *file, int line)
{
    (void)file;
    (void)line;
    free(p);
}

static void test_ossl_failclosed__initialize_refuses_without_private_context(void **state)
{
    (void)state;
    CK_FUNCTION_LIST_PTR fl = NULL;
    assert_int_equal(C_GetFunctionList(&fl), CKR_OK);

    g_fail = true;
    assert_int_equal(fl->C_Initialize(NULL), CKR_GENERAL_ERROR);
    g_fail = false;
    assert_true(g_refused > 0); /* the premise: OpenSSL did try to allocate, and was refused */
    assert_false(ddsm_ossl_ready());
    assert_null(ddsm_ossl_ctx());
    assert_null(ddsm_ossl_sha256());
    /* Not initialised: every other call says so. */
    CK_INFO info;
    assert_int_equal(fl->C_GetInfo(&info), CKR_CRYPTOKI_NOT_INITIALIZED);
    assert_int_equal(fl->C_Finalize(NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
}

int main(void)
{
    /* Only possible before OpenSSL's first allocation in this process. */
    if (CRYPTO_set_mem_functions(ossl_malloc, ossl_realloc, ossl_free) != 1)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ossl_failclosed__initialize_refuses_without_private_context),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
