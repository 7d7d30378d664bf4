/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "ddsm/err.h"

static void test_err__every_error_has_its_own_name(void **state)
{
    (void)state;
    for (int a = 0; a < DDSM_E__COUNT; a++) {
        const char *na = ddsm_err_str((ddsm_err)a);
        assert_non_null(na);
        assert_string_not_equal(na, "unknown error");
        for (int b = 0; b < a; b++)
            assert_string_not_equal(na, ddsm_err_str((ddsm_err)b));
    }
    assert_string_equal(ddsm_err_str(DDSM_E_STORE_DOWN), "store unavailable");
}

static void test_err__out_of_range_is_unknown_not_null(void **state)
{
    (void)state;
    assert_string_equal(ddsm_err_str(DDSM_E__COUNT), "unknown error");
    assert_string_equal(ddsm_err_str((ddsm_err)-1), "unknown error");
}

static void test_err__openssl_failure_drains_the_queue(void **state)
{
    (void)state;
    /* A real failure: fetching an algorithm that does not exist queues an error. */
    EVP_MD *md = EVP_MD_fetch(NULL, "NO-SUCH-DIGEST", NULL);
    assert_null(md);
    assert_int_not_equal(ERR_peek_error(), 0);
    assert_int_equal(ddsm_err_openssl("test fetch"), DDSM_E_CRYPTO);
    assert_int_equal(ERR_peek_error(), 0);
    assert_int_equal(ddsm_err_openssl(NULL), DDSM_E_CRYPTO); /* empty queue still fails */
}

static void test_err__errno_maps_to_domain_errors_never_ok(void **state)
{
    (void)state;
    assert_int_equal(ddsm_err_errno(ENOMEM), DDSM_E_NOMEM);
    assert_int_equal(ddsm_err_errno(ETIMEDOUT), DDSM_E_TIMEOUT);
    assert_int_equal(ddsm_err_errno(EACCES), DDSM_E_IO);
    assert_int_equal(ddsm_err_errno(ENOENT), DDSM_E_IO);
    assert_int_equal(ddsm_err_errno(0), DDSM_E_IO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_err__every_error_has_its_own_name),
        cmocka_unit_test(test_err__out_of_range_is_unknown_not_null),
        cmocka_unit_test(test_err__openssl_failure_drains_the_queue),
        cmocka_unit_test(test_err__errno_maps_to_domain_errors_never_ok),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
