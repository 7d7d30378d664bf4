/* SPDX-License-Identifier: Apache-2.0 */
/* Handles that never run out, through the module: with a handle table of a few slots
 * ([cache] handles), more distinct keys than slots all derive and sign; an old handle whose slot
 * was reclaimed is invalid, never another key; C_DestroyObject releases a virtual handle (not the
 * key, not the registry row); a C_DeriveKey with CKA_TOKEN false makes a session object that no
 * reclaim takes, that its own session's finds list, and that goes when its session closes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "design_vectors.h"
#include "p11_support.h"

#define SLOTS 4
#define KEYS (5 * SLOTS)

static CK_BBOOL g_no = CK_FALSE;

static void path_of(unsigned i, char *out, size_t n)
{
    snprintf(out, n, "m/9/%u", i);
}

/* Sign with h; CKR_OK only when the MAC is that of the key of (VEC_A, path, counter 0). */
static CK_RV sign_as(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, const char *path)
{
    uint8_t key[32], want[32], got[32];
    CK_RV rv = p11_hmac_sign(s, h, (const uint8_t *)"m", 1, got);
    if (rv != CKR_OK)
        return rv;
    p11_expected_key(VEC_A_ID, path, 0, key);
    p11_hmac_raw(key, (const uint8_t *)"m", 1, want);
    assert_memory_equal(got, want, 32);
    return CKR_OK;
}

static CK_BBOOL token_attr(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h)
{
    CK_BBOOL v = 2;
    CK_ATTRIBUTE t[] = {{CKA_TOKEN, &v, sizeof(v)}};
    assert_rv(CKR_OK, p11->C_GetAttributeValue(s, h, t, 1));
    return v;
}

static CK_SESSION_HANDLE start(const char *name)
{
    char extra[64];
    snprintf(extra, sizeof(extra), "[cache]\nhandles = %d\n", SLOTS);
    p11_write_conf(name, NULL, extra);
    assert_rv(CKR_OK, p11->C_Initialize(NULL));
    return p11_open_user();
}

static void test_handles_live__more_distinct_keys_than_slots_all_derive_and_sign(void **state)
{
    CK_SESSION_HANDLE s = start("handles_many");
    CK_OBJECT_HANDLE h[KEYS];
    char path[32];
    for (unsigned i = 0; i < KEYS; i++) {
        path_of(i, path, sizeof(path));
        assert_rv(CKR_OK, p11_derive(s, VEC_A_ID, path, NULL, 0, &h[i]));
        assert_rv(CKR_OK, sign_as(s, h[i], path));
    }
    /* Every old handle is either invalid or still its own key (sign_as checks the MAC). */
    unsigned live = 0;
    for (unsigned i = 0; i < KEYS; i++) {
        path_of(i, path, sizeof(path));
        CK_RV rv = sign_as(s, h[i], path);
        if (rv == CKR_OK) {
            live++;
        } else {
            assert_rv(CKR_KEY_HANDLE_INVALID, rv);
            CK_ULONG size;
            assert_rv(CKR_OBJECT_HANDLE_INVALID, p11->C_GetObjectSize(s, h[i], &size));
        }
    }
    assert_true(live <= SLOTS);
    /* The first key was reclaimed; deriving it again gives it a new handle that signs. */
    path_of(0, path, sizeof(path));
    CK_OBJECT_HANDLE again;
    assert_rv(CKR_OK, p11_derive(s, VEC_A_ID, path, NULL, 0, &again));
    assert_int_not_equal(again, h[0]);
    assert_rv(CKR_OK, sign_as(s, again, path));
    assert_rv(CKR_KEY_HANDLE_INVALID, sign_as(s, h[0], path));
    assert_rv(CKR_OK, p11->C_CloseSession(s));
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
}

static void test_handles_live__destroy_releases_the_handle_not_the_key(void **state)
{
    CK_SESSION_HANDLE s = start("handles_destroy");
    const char *label = "vec-a/" VEC_A_PATH;
    CK_OBJECT_HANDLE h = p11_find_label(s, label), h2;
    assert_rv(CKR_OK, sign_as(s, h, VEC_A_PATH));
    assert_rv(CKR_OK, p11->C_DestroyObject(s, h));
    assert_rv(CKR_KEY_HANDLE_INVALID, sign_as(s, h, VEC_A_PATH));
    CK_ULONG size;
    assert_rv(CKR_OBJECT_HANDLE_INVALID, p11->C_GetObjectSize(s, h, &size));
    assert_rv(CKR_OBJECT_HANDLE_INVALID, p11->C_DestroyObject(s, h));
    /* The key and its registry row are still there: a find gives it a new handle. */
    h2 = p11_find_label(s, label);
    assert_int_not_equal(h2, CK_INVALID_HANDLE);
    assert_int_not_equal(h2, h);
    assert_rv(CKR_OK, sign_as(s, h2, VEC_A_PATH));
    assert_int_equal(p11_sql_long("SELECT count(*) FROM custody_keys WHERE label = 'vec-a' AND "
                                  "state = 'ACTIVE'"),
                     1);
    /* Not logged in: virtual objects do not exist for the session. */
    CK_SESSION_HANDLE plain = p11_open();
    assert_rv(CKR_OK, p11->C_Logout(s));
    assert_rv(CKR_OBJECT_HANDLE_INVALID, p11->C_DestroyObject(plain, h2));
    assert_rv(CKR_OK, p11->C_CloseSession(plain));
    assert_rv(CKR_OK, p11->C_CloseSession(s));
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
}

static void test_handles_live__session_objects_go_with_their_session(void **state)
{
    CK_SESSION_HANDLE s1 = start("handles_session");
    CK_SESSION_HANDLE s2 = p11_open();
    CK_ATTRIBUTE session_obj[] = {{CKA_TOKEN, &g_no, sizeof(g_no)}};
    CK_OBJECT_HANDLE hs, ht;
    char path[32];
    path_of(100, path, sizeof(path));
    assert_rv(CKR_OK, p11_derive(s1, VEC_A_ID, path, session_obj, 1, &hs));
    assert_rv(CKR_OK, p11_derive(s1, VEC_A_ID, path, NULL, 0, &ht));
    assert_int_not_equal(hs, ht);
    assert_int_equal(token_attr(s1, hs), CK_FALSE);
    assert_int_equal(token_attr(s1, ht), CK_TRUE);
    /* Session objects are the application's: the other session signs with it too. */
    assert_rv(CKR_OK, sign_as(s2, hs, path));
    /* Token objects take turns in the slots left; the session object is never reclaimed. */
    for (unsigned i = 0; i < KEYS; i++) {
        CK_OBJECT_HANDLE h;
        char p[32];
        path_of(200 + i, p, sizeof(p));
        assert_rv(CKR_OK, p11_derive(s2, VEC_A_ID, p, NULL, 0, &h));
        assert_rv(CKR_OK, sign_as(s2, h, p));
    }
    assert_rv(CKR_OK, sign_as(s2, hs, path));
    /* Its session closes: it goes; the key does not. */
    assert_rv(CKR_OK, p11->C_CloseSession(s1));
    assert_rv(CKR_KEY_HANDLE_INVALID, sign_as(s2, hs, path));
    CK_OBJECT_HANDLE again;
    assert_rv(CKR_OK, p11_derive(s2, VEC_A_ID, path, NULL, 0, &again));
    assert_rv(CKR_OK, sign_as(s2, again, path));
    /* C_DestroyObject releases a session object at once. */
    assert_rv(CKR_OK, p11_derive(s2, VEC_A_ID, path, session_obj, 1, &hs));
    assert_rv(CKR_OK, p11->C_DestroyObject(s2, hs));
    assert_rv(CKR_KEY_HANDLE_INVALID, sign_as(s2, hs, path));
    assert_rv(CKR_OK, p11->C_CloseSession(s2));
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
}

static void test_handles_live__a_table_of_session_objects_is_full(void **state)
{
    CK_SESSION_HANDLE s = start("handles_full");
    CK_ATTRIBUTE session_obj[] = {{CKA_TOKEN, &g_no, sizeof(g_no)}};
    CK_OBJECT_HANDLE h;
    char path[32];
    for (unsigned i = 0; i < SLOTS; i++) {
        path_of(300 + i, path, sizeof(path));
        assert_rv(CKR_OK, p11_derive(s, VEC_A_ID, path, session_obj, 1, &h));
    }
    /* Every slot holds an object its session still holds: nothing can be reclaimed. */
    path_of(400, path, sizeof(path));
    assert_rv(CKR_HOST_MEMORY, p11_derive(s, VEC_A_ID, path, NULL, 0, &h));
    assert_rv(CKR_OK, p11->C_CloseSession(s));
    s = p11_open_user();
    assert_rv(CKR_OK, p11_derive(s, VEC_A_ID, path, NULL, 0, &h));
    assert_rv(CKR_OK, p11->C_CloseSession(s));
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
}

/* Whether a find of template t in session s lists h. */
static bool lists(CK_SESSION_HANDLE s, CK_ATTRIBUTE *t, CK_ULONG n, CK_OBJECT_HANDLE h)
{
    CK_OBJECT_HANDLE found[16];
    size_t got = p11_find(s, t, n, found, 16);
    for (size_t i = 0; i < got; i++)
        if (found[i] == h)
            return true;
    return false;
}

static void test_handles_live__a_find_lists_the_sessions_own_session_objects(void **state)
{
    CK_SESSION_HANDLE s1 = start("handles_find");
    CK_SESSION_HANDLE s2 = p11_open();
    CK_ATTRIBUTE session_obj[] = {{CKA_TOKEN, &g_no, sizeof(g_no)}};
    CK_OBJECT_HANDLE hs, ht;
    char path[32], label[128];
    path_of(500, path, sizeof(path));
    snprintf(label, sizeof(label), "%s/%s", VEC_A_ID, path);
    assert_rv(CKR_OK, p11_derive(s1, VEC_A_ID, path, session_obj, 1, &hs));
    assert_rv(CKR_OK, p11_derive(s1, VEC_A_ID, path, NULL, 0, &ht));
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE by_label[] = {{CKA_LABEL, label, strlen(label)}};
    CK_ATTRIBUTE token_only[] = {{CKA_TOKEN, &yes, sizeof(yes)}, {CKA_LABEL, label, strlen(label)}};
    /* Its own session lists it, by CKA_TOKEN false and by its label beside the token object. */
    assert_true(lists(s1, session_obj, 1, hs));
    assert_true(lists(s1, by_label, 1, hs));
    assert_true(lists(s1, by_label, 1, ht));
    assert_false(lists(s1, token_only, 2, hs));
    assert_true(lists(s1, token_only, 2, ht));
    /* Another session does not. */
    assert_false(lists(s2, session_obj, 1, hs));
    assert_false(lists(s2, by_label, 1, hs));
    /* Destroyed: gone from finds too. */
    assert_rv(CKR_OK, p11->C_DestroyObject(s1, hs));
    assert_false(lists(s1, session_obj, 1, hs));
    assert_rv(CKR_OK, p11->C_CloseSession(s2));
    assert_rv(CKR_OK, p11->C_CloseSession(s1));
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
}

int main(void)
{
    p11_load();
    p11_setup_store();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handles_live__more_distinct_keys_than_slots_all_derive_and_sign),
        cmocka_unit_test(test_handles_live__destroy_releases_the_handle_not_the_key),
        cmocka_unit_test(test_handles_live__session_objects_go_with_their_session),
        cmocka_unit_test(test_handles_live__a_table_of_session_objects_is_full),
        cmocka_unit_test(test_handles_live__a_find_lists_the_sessions_own_session_objects),
    };
    return cmocka_run_group_tests_name("handles_live", tests, NULL, NULL);
}
