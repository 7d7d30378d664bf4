/* SPDX-License-Identifier: Apache-2.0 */
/* rv.c, the one ddsm_err -> CK_RV table: every error maps in every context, never to
 * CKR_GENERAL_ERROR, and coarse codes carry a detail. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "ddsm/names.h"
#include "ddsm/pkcs11-ddsm.h"
#include "rv.h"

static void test_rv__no_known_cause_is_a_general_error(void **state)
{
    for (int e = 0; e < DDSM_E__COUNT; e++) {
        for (int c = 0; c < DDSM_RVCTX__COUNT; c++) {
            CK_ULONG detail = 12345;
            CK_RV rv = ddsm_rv_from_err((ddsm_err)e, (ddsm_rvctx)c, &detail);
            if (rv == CKR_GENERAL_ERROR)
                fail_msg("%s in context %d maps to CKR_GENERAL_ERROR", ddsm_err_str((ddsm_err)e),
                         c);
            assert_true(detail != 12345);
            if (e == DDSM_OK)
                assert_int_equal(rv, CKR_OK);
            else
                assert_int_not_equal(rv, CKR_OK);
            /* A device error always says which device. */
            if (rv == CKR_DEVICE_ERROR)
                assert_int_not_equal(detail, DDSM_DEVERR_NONE);
        }
    }
}

static void test_rv__documented_choices(void **state)
{
    CK_ULONG d;
    assert_int_equal(ddsm_rv_from_err(DDSM_E_NOT_FOUND, DDSM_RVCTX_DERIVE, NULL),
                     CKR_MECHANISM_PARAM_INVALID);
    assert_int_equal(ddsm_rv_from_err(DDSM_E_STATE, DDSM_RVCTX_DERIVE, NULL),
                     CKR_KEY_FUNCTION_NOT_PERMITTED);
    assert_int_equal(ddsm_rv_from_err(DDSM_E_STATE, DDSM_RVCTX_KEY, NULL), CKR_KEY_HANDLE_INVALID);
    assert_int_equal(ddsm_rv_from_err(DDSM_E_STATE, DDSM_RVCTX_OBJECT, NULL),
                     CKR_OBJECT_HANDLE_INVALID);
    assert_int_equal(ddsm_rv_from_err(DDSM_E_POLICY, DDSM_RVCTX_DERIVE, NULL),
                     CKR_FUNCTION_REJECTED);
    assert_int_equal(ddsm_rv_from_err(DDSM_E_PATH, DDSM_RVCTX_DERIVE, NULL),
                     CKR_MECHANISM_PARAM_INVALID);
    assert_int_equal(ddsm_rv_from_err(DDSM_E_STORE_DOWN, DDSM_RVCTX_DERIVE, &d), CKR_DEVICE_ERROR);
    assert_int_equal(d, DDSM_DEVERR_STORE_DOWN);
    assert_int_equal(ddsm_rv_from_err(DDSM_E_STORE, DDSM_RVCTX_KEY, &d), CKR_DEVICE_ERROR);
    assert_int_equal(d, DDSM_DEVERR_STORE_FAILED);
    assert_int_equal(ddsm_rv_from_err(DDSM_E_HSM, DDSM_RVCTX_GENERAL, &d), CKR_DEVICE_ERROR);
    assert_int_equal(d, DDSM_DEVERR_HSM_FAILED);
    assert_int_equal(ddsm_rv_from_err(DDSM_E_CONFIG, DDSM_RVCTX_INIT, NULL), CKR_FUNCTION_FAILED);
    assert_int_equal(ddsm_rv_from_err(DDSM_E_NOMEM, DDSM_RVCTX_KEY, NULL), CKR_HOST_MEMORY);
}

static void test_rv__out_of_range_errors_are_internal_failures(void **state)
{
    CK_ULONG d = 0;
    assert_int_equal(ddsm_rv_from_err((ddsm_err)999, DDSM_RVCTX_GENERAL, &d), CKR_FUNCTION_FAILED);
    assert_int_equal(d, DDSM_DEVERR_INTERNAL);
}

static void test_rv__backend_failures_are_device_errors_with_a_detail(void **state)
{
    CK_ULONG d = 0;
    assert_int_equal(ddsm_rv_from_backend(CKR_OK, &d), CKR_OK);
    assert_int_equal(d, DDSM_DEVERR_NONE);
    assert_int_equal(ddsm_rv_from_backend(CKR_HOST_MEMORY, &d), CKR_HOST_MEMORY);
    assert_int_equal(ddsm_rv_from_backend(CKR_KEY_HANDLE_INVALID, &d), CKR_DEVICE_ERROR);
    assert_int_equal(d, DDSM_DEVERR_HSM_FAILED);
    assert_int_equal(ddsm_rv_from_backend(CKR_GENERAL_ERROR, &d), CKR_DEVICE_ERROR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rv__no_known_cause_is_a_general_error),
        cmocka_unit_test(test_rv__documented_choices),
        cmocka_unit_test(test_rv__out_of_range_errors_are_internal_failures),
        cmocka_unit_test(test_rv__backend_failures_are_device_errors_with_a_detail),
    };
    return cmocka_run_group_tests_name("rv", tests, NULL, NULL);
}
