/* SPDX-License-Identifier: Apache-2.0 */
/* API misuse ("Bad input"): every function of the v2.40 function list, found by walking
 * the CK_FUNCTION_LIST that C_GetFunctionList returns, and C_GetInterfaceList / C_GetInterface,
 * driven with NULL pointers, bad handles (0, unknown, forged with the top bit, wider than 32 bits,
 * of closed sessions, of the module's own sessions, of keys rotated away or retired), bad slots,
 * wrong session states, wrong lengths and out-of-order calls.
 *
 * Table-driven: funcs[] has one row per function with its PKCS#11 2.40 return values (as the
 * standard lists them for that function, plus the few any function may return) and an invoker
 * that calls it with plausible arguments, any of whose required pointers can be replaced by NULL.
 * Every call checks two things: the CK_RV is the one expected for that misuse, and that CK_RV is
 * one the standard lists for the function. Never a crash (ASan/valgrind runs of this test make
 * that sharp), and never a change: every test compares the store (audit rows, the registry,
 * rotations) and the token's objects before and after. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p11_support.h"
#include "pg_support.h"

/* ------------------------------------------------------------------------------------------ */
/* PKCS#11 2.40 return values, per function                                                   */

#define END ((CK_RV)-1)
#define RVS(...) ((const CK_RV[]){__VA_ARGS__, END})
#define GEN CKR_FUNCTION_FAILED, CKR_GENERAL_ERROR, CKR_HOST_MEMORY, CKR_OK
#define INIT CKR_CRYPTOKI_NOT_INITIALIZED
#define DEV CKR_DEVICE_ERROR, CKR_DEVICE_MEMORY, CKR_DEVICE_REMOVED
#define SES CKR_SESSION_CLOSED, CKR_SESSION_HANDLE_INVALID
#define KEYINIT                                                                                    \
    CKR_ARGUMENTS_BAD, INIT, DEV, CKR_FUNCTION_CANCELED, GEN, CKR_KEY_FUNCTION_NOT_PERMITTED,      \
        CKR_KEY_HANDLE_INVALID, CKR_KEY_SIZE_RANGE, CKR_KEY_TYPE_INCONSISTENT,                     \
        CKR_MECHANISM_INVALID, CKR_MECHANISM_PARAM_INVALID, CKR_OPERATION_ACTIVE, CKR_PIN_EXPIRED, \
        SES, CKR_USER_NOT_LOGGED_IN
#define OUTSTEP                                                                                    \
    CKR_ARGUMENTS_BAD, CKR_BUFFER_TOO_SMALL, INIT, DEV, CKR_FUNCTION_CANCELED, GEN,                \
        CKR_OPERATION_NOT_INITIALIZED, SES
#define NEWOBJ                                                                                     \
    CKR_ARGUMENTS_BAD, CKR_ATTRIBUTE_READ_ONLY, CKR_ATTRIBUTE_TYPE_INVALID,                        \
        CKR_ATTRIBUTE_VALUE_INVALID, INIT, CKR_CURVE_NOT_SUPPORTED, DEV,                           \
        CKR_DOMAIN_PARAMS_INVALID, CKR_FUNCTION_CANCELED, GEN, CKR_MECHANISM_INVALID,              \
        CKR_MECHANISM_PARAM_INVALID, CKR_OPERATION_ACTIVE, CKR_PIN_EXPIRED, SES,                   \
        CKR_SESSION_READ_ONLY, CKR_TEMPLATE_INCOMPLETE, CKR_TEMPLATE_INCONSISTENT,                 \
        CKR_TOKEN_WRITE_PROTECTED, CKR_USER_NOT_LOGGED_IN

/* Steps of operations SoftHSM 2.6 does not implement (recover, dual-function): the backend says
 * so before it looks for an operation, and the module passes that on. */
#define NOT_SUPPORTED CKR_FUNCTION_NOT_SUPPORTED

/* Any function may say it is not supported (section 5.1: every function has at least a stub). */
static bool universal(CK_RV rv)
{
    return rv == CKR_FUNCTION_NOT_SUPPORTED;
}

/* ------------------------------------------------------------------------------------------ */
/* Invokers: plausible arguments from a callv, any required pointer replaceable by NULL        */

struct callv {
    CK_SLOT_ID slot;
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE obj;  /* the object or key the function takes (wrapping key for C_WrapKey) */
    CK_OBJECT_HANDLE key2; /* C_WrapKey: the key to wrap */
    unsigned nulls;        /* bit i: pass NULL for the i-th required pointer */
};

#define P(i, p) ((v->nulls & (1u << (i))) ? NULL : (p))
#define PIN (CK_UTF8CHAR_PTR) getenv("DDSM_TEST_PIN")
#define PIN_LEN strlen(getenv("DDSM_TEST_PIN"))

static CK_BYTE data4[4] = {1, 2, 3, 4};
static CK_BYTE sig32[32];
static CK_MECHANISM m_hmac = {CKM_SHA256_HMAC, NULL, 0};
static CK_MECHANISM m_sha = {CKM_SHA256, NULL, 0};
static CK_MECHANISM m_aeskg = {CKM_AES_KEY_GEN, NULL, 0};
static CK_MECHANISM m_wrap = {CKM_AES_KEY_WRAP, NULL, 0};
static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
static CK_ULONG len32 = 32;
static CK_ATTRIBUTE t_session_key[] = {{CKA_TOKEN, &no, 1}, {CKA_VALUE_LEN, &len32, sizeof(len32)}};
static uint8_t derive_param[DDSM_DERIVE_PARAM_MAX];
static CK_MECHANISM m_derive = {CKM_DDSM_DERIVE, derive_param, 0};

static CK_RV f_Initialize(const struct callv *v)
{
    return p11->C_Initialize(NULL);
}
static CK_RV f_Finalize(const struct callv *v)
{
    return p11->C_Finalize(NULL);
}
static CK_RV f_GetInfo(const struct callv *v)
{
    CK_INFO i;
    return p11->C_GetInfo(P(0, &i));
}
static CK_RV f_GetFunctionList(const struct callv *v)
{
    CK_FUNCTION_LIST_PTR l = NULL;
    return p11->C_GetFunctionList(P(0, &l));
}
static CK_RV f_GetSlotList(const struct callv *v)
{
    CK_SLOT_ID l[8];
    CK_ULONG n = 8;
    return p11->C_GetSlotList(CK_TRUE, l, P(0, &n));
}
static CK_RV f_GetSlotInfo(const struct callv *v)
{
    CK_SLOT_INFO i;
    return p11->C_GetSlotInfo(v->slot, P(0, &i));
}
static CK_RV f_GetTokenInfo(const struct callv *v)
{
    CK_TOKEN_INFO i;
    return p11->C_GetTokenInfo(v->slot, P(0, &i));
}
static CK_RV f_GetMechanismList(const struct callv *v)
{
    CK_MECHANISM_TYPE l[256];
    CK_ULONG n = 256;
    return p11->C_GetMechanismList(v->slot, l, P(0, &n));
}
static CK_RV f_GetMechanismInfo(const struct callv *v)
{
    CK_MECHANISM_INFO i;
    return p11->C_GetMechanismInfo(v->slot, CKM_SHA256_HMAC, P(0, &i));
}
static CK_RV f_InitToken(const struct callv *v)
{
    CK_UTF8CHAR label[32];
    memset(label, ' ', sizeof(label));
    memcpy(label, "custody", 7);
    const char *so = getenv("DDSM_TEST_SO_PIN");
    return p11->C_InitToken(v->slot, P(0, (CK_UTF8CHAR_PTR)so), strlen(so), P(1, label));
}
static CK_RV f_InitPIN(const struct callv *v)
{
    return p11->C_InitPIN(v->s, P(0, PIN), PIN_LEN);
}
static CK_RV f_SetPIN(const struct callv *v)
{
    return p11->C_SetPIN(v->s, P(0, PIN), PIN_LEN, P(1, PIN), PIN_LEN);
}
static CK_RV f_OpenSession(const struct callv *v)
{
    CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
    CK_RV rv = p11->C_OpenSession(v->slot, CKF_SERIAL_SESSION, NULL, NULL, P(0, &h));
    if (rv == CKR_OK)
        (void)p11->C_CloseSession(h);
    return rv;
}
static CK_RV f_CloseSession(const struct callv *v)
{
    return p11->C_CloseSession(v->s);
}
static CK_RV f_CloseAllSessions(const struct callv *v)
{
    return p11->C_CloseAllSessions(v->slot);
}
static CK_RV f_GetSessionInfo(const struct callv *v)
{
    CK_SESSION_INFO i;
    return p11->C_GetSessionInfo(v->s, P(0, &i));
}
static CK_RV f_GetOperationState(const struct callv *v)
{
    CK_BYTE buf[256];
    CK_ULONG n = sizeof(buf);
    return p11->C_GetOperationState(v->s, buf, P(0, &n));
}
static CK_RV f_SetOperationState(const struct callv *v)
{
    return p11->C_SetOperationState(v->s, P(0, data4), sizeof(data4), 0, 0);
}
static CK_RV f_Login(const struct callv *v)
{
    return p11->C_Login(v->s, CKU_USER, P(0, PIN), PIN_LEN);
}
static CK_RV f_Logout(const struct callv *v)
{
    return p11->C_Logout(v->s);
}
static CK_RV f_CreateObject(const struct callv *v)
{
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_TOKEN, &no, 1}};
    CK_OBJECT_HANDLE h = 0;
    return p11->C_CreateObject(v->s, P(0, t), 2, P(1, &h));
}
static CK_RV f_CopyObject(const struct callv *v)
{
    CK_ATTRIBUTE t[] = {{CKA_TOKEN, &no, 1}};
    CK_OBJECT_HANDLE h = 0;
    return p11->C_CopyObject(v->s, v->obj, P(0, t), 1, P(1, &h));
}
static CK_RV f_DestroyObject(const struct callv *v)
{
    return p11->C_DestroyObject(v->s, v->obj);
}
static CK_RV f_GetObjectSize(const struct callv *v)
{
    CK_ULONG n = 0;
    return p11->C_GetObjectSize(v->s, v->obj, P(0, &n));
}
static CK_RV f_GetAttributeValue(const struct callv *v)
{
    CK_OBJECT_CLASS cls = 0;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)}};
    return p11->C_GetAttributeValue(v->s, v->obj, P(0, t), 1);
}
static CK_RV f_SetAttributeValue(const struct callv *v)
{
    CK_ATTRIBUTE t[] = {{CKA_LABEL, "misuse", 6}};
    return p11->C_SetAttributeValue(v->s, v->obj, P(0, t), 1);
}
static CK_RV f_FindObjectsInit(const struct callv *v)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)}};
    return p11->C_FindObjectsInit(v->s, P(0, t), 1);
}
static CK_RV f_FindObjects(const struct callv *v)
{
    CK_OBJECT_HANDLE h[4];
    CK_ULONG n = 0;
    return p11->C_FindObjects(v->s, P(0, h), 4, P(1, &n));
}
static CK_RV f_FindObjectsFinal(const struct callv *v)
{
    return p11->C_FindObjectsFinal(v->s);
}

/* Output steps: data in, output buffer may be NULL (length query), its length pointer may not. */
#define OUT_STEP(name)                                                                             \
    static CK_RV f_##name(const struct callv *v)                                                   \
    {                                                                                              \
        CK_BYTE out[64];                                                                           \
        CK_ULONG n = sizeof(out);                                                                  \
        return p11->C_##name(v->s, P(0, data4), sizeof(data4), out, P(1, &n));                     \
    }
#define FINAL_STEP(name)                                                                           \
    static CK_RV f_##name(const struct callv *v)                                                   \
    {                                                                                              \
        CK_BYTE out[64];                                                                           \
        CK_ULONG n = sizeof(out);                                                                  \
        return p11->C_##name(v->s, out, P(0, &n));                                                 \
    }
#define IN_STEP(name)                                                                              \
    static CK_RV f_##name(const struct callv *v)                                                   \
    {                                                                                              \
        return p11->C_##name(v->s, P(0, data4), sizeof(data4));                                    \
    }
#define KEY_INIT(name, mech)                                                                       \
    static CK_RV f_##name(const struct callv *v)                                                   \
    {                                                                                              \
        return p11->C_##name(v->s, P(0, &(mech)), v->obj);                                         \
    }

KEY_INIT(EncryptInit, m_hmac)
OUT_STEP(Encrypt)
OUT_STEP(EncryptUpdate)
FINAL_STEP(EncryptFinal)
KEY_INIT(DecryptInit, m_hmac)
OUT_STEP(Decrypt)
OUT_STEP(DecryptUpdate)
FINAL_STEP(DecryptFinal)
OUT_STEP(Digest)
IN_STEP(DigestUpdate)
FINAL_STEP(DigestFinal)
KEY_INIT(SignInit, m_hmac)
OUT_STEP(Sign)
IN_STEP(SignUpdate)
FINAL_STEP(SignFinal)
KEY_INIT(SignRecoverInit, m_hmac)
OUT_STEP(SignRecover)
KEY_INIT(VerifyInit, m_hmac)
IN_STEP(VerifyUpdate)
KEY_INIT(VerifyRecoverInit, m_hmac)
OUT_STEP(VerifyRecover)
OUT_STEP(DigestEncryptUpdate)
OUT_STEP(DecryptDigestUpdate)
OUT_STEP(SignEncryptUpdate)
OUT_STEP(DecryptVerifyUpdate)
IN_STEP(SeedRandom)

static CK_RV f_DigestInit(const struct callv *v)
{
    return p11->C_DigestInit(v->s, P(0, &m_sha));
}
static CK_RV f_DigestKey(const struct callv *v)
{
    return p11->C_DigestKey(v->s, v->obj);
}
static CK_RV f_Verify(const struct callv *v)
{
    return p11->C_Verify(v->s, P(0, data4), sizeof(data4), P(1, sig32), sizeof(sig32));
}
static CK_RV f_VerifyFinal(const struct callv *v)
{
    return p11->C_VerifyFinal(v->s, P(0, sig32), sizeof(sig32));
}
static CK_RV f_GenerateKey(const struct callv *v)
{
    CK_OBJECT_HANDLE h = 0;
    CK_RV rv = p11->C_GenerateKey(v->s, P(0, &m_aeskg), P(1, t_session_key), 2, P(2, &h));
    if (rv == CKR_OK)
        (void)p11->C_DestroyObject(v->s, h);
    return rv;
}
static CK_RV f_GenerateKeyPair(const struct callv *v)
{
    CK_MECHANISM m = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    static const CK_BYTE p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
    CK_ATTRIBUTE pub[] = {{CKA_TOKEN, &no, 1}, {CKA_EC_PARAMS, (void *)p256, sizeof(p256)}};
    CK_ATTRIBUTE priv[] = {{CKA_TOKEN, &no, 1}};
    CK_OBJECT_HANDLE a = 0, b = 0;
    CK_RV rv =
        p11->C_GenerateKeyPair(v->s, P(0, &m), P(1, pub), 2, P(2, priv), 1, P(3, &a), P(4, &b));
    if (rv == CKR_OK) {
        (void)p11->C_DestroyObject(v->s, a);
        (void)p11->C_DestroyObject(v->s, b);
    }
    return rv;
}
static CK_RV f_WrapKey(const struct callv *v)
{
    CK_BYTE out[128];
    CK_ULONG n = sizeof(out);
    return p11->C_WrapKey(v->s, P(0, &m_wrap), v->obj, v->key2, out, P(1, &n));
}
static CK_RV f_UnwrapKey(const struct callv *v)
{
    CK_BYTE wrapped[40] = {0};
    CK_OBJECT_HANDLE h = 0;
    return p11->C_UnwrapKey(v->s, P(0, &m_wrap), v->obj, P(1, wrapped), sizeof(wrapped),
                            P(2, t_session_key), 2, P(3, &h));
}
static CK_RV f_DeriveKey(const struct callv *v)
{
    CK_OBJECT_HANDLE h = 0;
    return p11->C_DeriveKey(v->s, P(0, &m_derive), v->obj, P(1, t_session_key), 1, P(2, &h));
}
static CK_RV f_GenerateRandom(const struct callv *v)
{
    CK_BYTE out[16];
    return p11->C_GenerateRandom(v->s, P(0, out), sizeof(out));
}
static CK_RV f_GetFunctionStatus(const struct callv *v)
{
    return p11->C_GetFunctionStatus(v->s);
}
static CK_RV f_CancelFunction(const struct callv *v)
{
    return p11->C_CancelFunction(v->s);
}
static CK_RV f_WaitForSlotEvent(const struct callv *v)
{
    CK_SLOT_ID slot = 0;
    return p11->C_WaitForSlotEvent(CKF_DONT_BLOCK, P(0, &slot), NULL);
}

/* ------------------------------------------------------------------------------------------ */
/* The table                                                                                   */

enum {
    A_SLOT = 1u << 0,    /* takes a slot id: a bad one is CKR_SLOT_ID_INVALID */
    A_SESS = 1u << 1,    /* takes a session handle: a bad one is CKR_SESSION_HANDLE_INVALID */
    A_OBJ = 1u << 2,     /* v->obj is an object: bad ones are CKR_OBJECT_HANDLE_INVALID */
    A_KEY = 1u << 3,     /* v->obj is a key: bad ones are CKR_KEY_HANDLE_INVALID */
    A_WRAP = 1u << 4,    /* v->obj is the wrapping key, v->key2 the key to wrap */
    A_UNWRAP = 1u << 5,  /* v->obj is the unwrapping key */
    A_DIGEST = 1u << 6,  /* needs a digest operation running (C_DigestKey) */
    A_DESTROY = 1u << 7, /* would change something with good arguments: never called so */
    A_NOBE = 1u << 8,    /* SoftHSM 2.6 lacks it: backend handles get CKR_FUNCTION_NOT_SUPPORTED */
};

typedef struct fn_row {
    const char *name;
    size_t off; /* offsetof(CK_FUNCTION_LIST, C_<name>) */
    const CK_RV *spec;
    CK_RV (*call)(const struct callv *v);
    unsigned nptr;      /* required pointer arguments: NULL gives CKR_ARGUMENTS_BAD */
    unsigned args;      /* A_* */
    CK_RV no_operation; /* with no operation running (0: not an operation step) */
} fn_row;

#define ROW(n, spec, nptr, args, noop)                                                             \
    {                                                                                              \
#n, offsetof(CK_FUNCTION_LIST, C_##n), spec, f_##n, nptr, args, noop                       \
    }

static const fn_row funcs[] = {
    ROW(Initialize,
        RVS(CKR_ARGUMENTS_BAD, CKR_CANT_LOCK, CKR_CRYPTOKI_ALREADY_INITIALIZED, GEN,
            CKR_NEED_TO_CREATE_THREADS),
        0, 0, 0),
    ROW(Finalize, RVS(CKR_ARGUMENTS_BAD, INIT, GEN), 0, A_DESTROY, 0),
    ROW(GetInfo, RVS(CKR_ARGUMENTS_BAD, INIT, GEN), 1, 0, 0),
    ROW(GetFunctionList, RVS(CKR_ARGUMENTS_BAD, GEN), 1, 0, 0),
    ROW(GetSlotList, RVS(CKR_ARGUMENTS_BAD, CKR_BUFFER_TOO_SMALL, INIT, GEN), 1, 0, 0),
    ROW(GetSlotInfo, RVS(CKR_ARGUMENTS_BAD, INIT, CKR_DEVICE_ERROR, GEN, CKR_SLOT_ID_INVALID), 1,
        A_SLOT, 0),
    ROW(GetTokenInfo,
        RVS(INIT, DEV, GEN, CKR_SLOT_ID_INVALID, CKR_TOKEN_NOT_PRESENT, CKR_TOKEN_NOT_RECOGNIZED,
            CKR_ARGUMENTS_BAD),
        1, A_SLOT, 0),
    ROW(GetMechanismList,
        RVS(CKR_BUFFER_TOO_SMALL, INIT, DEV, GEN, CKR_SLOT_ID_INVALID, CKR_TOKEN_NOT_PRESENT,
            CKR_TOKEN_NOT_RECOGNIZED, CKR_ARGUMENTS_BAD),
        1, A_SLOT, 0),
    ROW(GetMechanismInfo,
        RVS(INIT, DEV, GEN, CKR_MECHANISM_INVALID, CKR_SLOT_ID_INVALID, CKR_TOKEN_NOT_PRESENT,
            CKR_TOKEN_NOT_RECOGNIZED, CKR_ARGUMENTS_BAD),
        1, A_SLOT, 0),
    ROW(InitToken,
        RVS(INIT, DEV, CKR_FUNCTION_CANCELED, GEN, CKR_PIN_INCORRECT, CKR_PIN_LOCKED,
            CKR_SESSION_EXISTS, CKR_SLOT_ID_INVALID, CKR_TOKEN_NOT_PRESENT,
            CKR_TOKEN_NOT_RECOGNIZED, CKR_TOKEN_WRITE_PROTECTED, CKR_ARGUMENTS_BAD),
        2, A_SLOT, 0),
    ROW(InitPIN,
        RVS(INIT, DEV, CKR_FUNCTION_CANCELED, GEN, CKR_PIN_INVALID, CKR_PIN_LEN_RANGE, SES,
            CKR_SESSION_READ_ONLY, CKR_TOKEN_WRITE_PROTECTED, CKR_USER_NOT_LOGGED_IN,
            CKR_ARGUMENTS_BAD),
        1, A_SESS | A_DESTROY, 0),
    ROW(SetPIN,
        RVS(INIT, DEV, CKR_FUNCTION_CANCELED, GEN, CKR_PIN_INCORRECT, CKR_PIN_INVALID,
            CKR_PIN_LEN_RANGE, CKR_PIN_LOCKED, SES, CKR_SESSION_READ_ONLY,
            CKR_TOKEN_WRITE_PROTECTED, CKR_ARGUMENTS_BAD),
        2, A_SESS | A_DESTROY, 0),
    ROW(OpenSession,
        RVS(INIT, DEV, GEN, CKR_SESSION_COUNT, CKR_SESSION_PARALLEL_NOT_SUPPORTED,
            CKR_SESSION_READ_WRITE_SO_EXISTS, CKR_SLOT_ID_INVALID, CKR_TOKEN_NOT_PRESENT,
            CKR_TOKEN_NOT_RECOGNIZED, CKR_TOKEN_WRITE_PROTECTED, CKR_ARGUMENTS_BAD),
        1, A_SLOT, 0),
    ROW(CloseSession, RVS(INIT, DEV, GEN, SES), 0, A_SESS | A_DESTROY, 0),
    ROW(CloseAllSessions, RVS(INIT, DEV, GEN, CKR_SLOT_ID_INVALID, CKR_TOKEN_NOT_PRESENT), 0,
        A_SLOT | A_DESTROY, 0),
    ROW(GetSessionInfo, RVS(INIT, DEV, GEN, SES, CKR_ARGUMENTS_BAD), 1, A_SESS, 0),
    ROW(GetOperationState,
        RVS(CKR_BUFFER_TOO_SMALL, INIT, DEV, GEN, CKR_OPERATION_NOT_INITIALIZED, SES,
            CKR_STATE_UNSAVEABLE, CKR_ARGUMENTS_BAD),
        1, A_SESS, 0),
    ROW(SetOperationState,
        RVS(INIT, DEV, GEN, CKR_KEY_CHANGED, CKR_KEY_NEEDED, CKR_KEY_NOT_NEEDED,
            CKR_SAVED_STATE_INVALID, SES, CKR_ARGUMENTS_BAD),
        1, A_SESS, 0),
    ROW(Login,
        RVS(CKR_ARGUMENTS_BAD, INIT, DEV, CKR_FUNCTION_CANCELED, GEN, CKR_OPERATION_NOT_INITIALIZED,
            CKR_PIN_INCORRECT, CKR_PIN_LOCKED, SES, CKR_SESSION_READ_ONLY_EXISTS,
            CKR_USER_ALREADY_LOGGED_IN, CKR_USER_ANOTHER_ALREADY_LOGGED_IN,
            CKR_USER_PIN_NOT_INITIALIZED, CKR_USER_TOO_MANY_TYPES, CKR_USER_TYPE_INVALID),
        1, A_SESS, 0),
    ROW(Logout, RVS(INIT, DEV, GEN, SES, CKR_USER_NOT_LOGGED_IN), 0, A_SESS | A_DESTROY, 0),
    ROW(CreateObject, RVS(NEWOBJ), 2, A_SESS, 0),
    ROW(CopyObject,
        RVS(CKR_ACTION_PROHIBITED, CKR_ARGUMENTS_BAD, CKR_ATTRIBUTE_READ_ONLY,
            CKR_ATTRIBUTE_TYPE_INVALID, CKR_ATTRIBUTE_VALUE_INVALID, INIT, DEV, GEN,
            CKR_OBJECT_HANDLE_INVALID, CKR_PIN_EXPIRED, SES, CKR_SESSION_READ_ONLY,
            CKR_TEMPLATE_INCONSISTENT, CKR_TOKEN_WRITE_PROTECTED, CKR_USER_NOT_LOGGED_IN),
        2, A_SESS | A_OBJ, 0),
    ROW(DestroyObject,
        RVS(CKR_ACTION_PROHIBITED, INIT, DEV, GEN, CKR_OBJECT_HANDLE_INVALID, CKR_PIN_EXPIRED, SES,
            CKR_SESSION_READ_ONLY, CKR_TOKEN_WRITE_PROTECTED),
        0, A_SESS | A_OBJ, 0),
    ROW(GetObjectSize,
        RVS(CKR_ARGUMENTS_BAD, INIT, DEV, GEN, CKR_INFORMATION_SENSITIVE, CKR_OBJECT_HANDLE_INVALID,
            SES),
        1, A_SESS | A_OBJ, 0),
    ROW(GetAttributeValue,
        RVS(CKR_ARGUMENTS_BAD, CKR_ATTRIBUTE_SENSITIVE, CKR_ATTRIBUTE_TYPE_INVALID,
            CKR_BUFFER_TOO_SMALL, INIT, DEV, GEN, CKR_OBJECT_HANDLE_INVALID, SES),
        1, A_SESS | A_OBJ, 0),
    ROW(SetAttributeValue,
        RVS(CKR_ACTION_PROHIBITED, CKR_ARGUMENTS_BAD, CKR_ATTRIBUTE_READ_ONLY,
            CKR_ATTRIBUTE_TYPE_INVALID, CKR_ATTRIBUTE_VALUE_INVALID, INIT, DEV, GEN,
            CKR_OBJECT_HANDLE_INVALID, SES, CKR_SESSION_READ_ONLY, CKR_TEMPLATE_INCONSISTENT,
            CKR_TOKEN_WRITE_PROTECTED, CKR_USER_NOT_LOGGED_IN),
        1, A_SESS | A_OBJ, 0),
    ROW(FindObjectsInit,
        RVS(CKR_ARGUMENTS_BAD, CKR_ATTRIBUTE_TYPE_INVALID, CKR_ATTRIBUTE_VALUE_INVALID, INIT, DEV,
            GEN, CKR_OPERATION_ACTIVE, CKR_PIN_EXPIRED, SES),
        1, A_SESS, 0),
    ROW(FindObjects, RVS(CKR_ARGUMENTS_BAD, INIT, DEV, GEN, CKR_OPERATION_NOT_INITIALIZED, SES), 2,
        A_SESS, CKR_OPERATION_NOT_INITIALIZED),
    ROW(FindObjectsFinal, RVS(INIT, DEV, GEN, CKR_OPERATION_NOT_INITIALIZED, SES), 0, A_SESS,
        CKR_OPERATION_NOT_INITIALIZED),
    /* 2.40 omits CKR_ARGUMENTS_BAD from C_EncryptInit alone of the *Init functions: a NULL
     * mechanism has no other fitting code. */
    ROW(EncryptInit, RVS(KEYINIT), 1, A_SESS | A_KEY, 0),
    ROW(Encrypt, RVS(OUTSTEP, CKR_DATA_INVALID, CKR_DATA_LEN_RANGE), 2, A_SESS,
        CKR_OPERATION_NOT_INITIALIZED),
    ROW(EncryptUpdate, RVS(OUTSTEP, CKR_DATA_LEN_RANGE), 2, A_SESS, CKR_OPERATION_NOT_INITIALIZED),
    ROW(EncryptFinal, RVS(OUTSTEP, CKR_DATA_LEN_RANGE), 1, A_SESS, CKR_OPERATION_NOT_INITIALIZED),
    ROW(DecryptInit, RVS(KEYINIT), 1, A_SESS | A_KEY, 0),
    ROW(Decrypt,
        RVS(OUTSTEP, CKR_ENCRYPTED_DATA_INVALID, CKR_ENCRYPTED_DATA_LEN_RANGE,
            CKR_USER_NOT_LOGGED_IN),
        2, A_SESS, CKR_OPERATION_NOT_INITIALIZED),
    ROW(DecryptUpdate,
        RVS(OUTSTEP, CKR_ENCRYPTED_DATA_INVALID, CKR_ENCRYPTED_DATA_LEN_RANGE,
            CKR_USER_NOT_LOGGED_IN),
        2, A_SESS, CKR_OPERATION_NOT_INITIALIZED),
    ROW(DecryptFinal,
        RVS(OUTSTEP, CKR_ENCRYPTED_DATA_INVALID, CKR_ENCRYPTED_DATA_LEN_RANGE,
            CKR_USER_NOT_LOGGED_IN),
        1, A_SESS, CKR_OPERATION_NOT_INITIALIZED),
    ROW(DigestInit,
        RVS(CKR_ARGUMENTS_BAD, INIT, DEV, CKR_FUNCTION_CANCELED, GEN, CKR_MECHANISM_INVALID,
            CKR_MECHANISM_PARAM_INVALID, CKR_OPERATION_ACTIVE, CKR_PIN_EXPIRED, SES,
            CKR_USER_NOT_LOGGED_IN),
        1, A_SESS, 0),
    ROW(Digest, RVS(OUTSTEP), 2, A_SESS, CKR_OPERATION_NOT_INITIALIZED),
    ROW(DigestUpdate,
        RVS(CKR_ARGUMENTS_BAD, INIT, DEV, CKR_FUNCTION_CANCELED, GEN, CKR_OPERATION_NOT_INITIALIZED,
            SES),
        1, A_SESS, CKR_OPERATION_NOT_INITIALIZED),
    ROW(DigestKey,
        RVS(INIT, DEV, CKR_FUNCTION_CANCELED, GEN, CKR_KEY_HANDLE_INVALID, CKR_KEY_INDIGESTIBLE,
            CKR_KEY_SIZE_RANGE, CKR_OPERATION_NOT_INITIALIZED, SES),
        0, A_SESS | A_KEY | A_DIGEST, 0),
    ROW(DigestFinal, RVS(OUTSTEP), 1, A_SESS, CKR_OPERATION_NOT_INITIALIZED),
    ROW(SignInit, RVS(KEYINIT), 1, A_SESS | A_KEY, 0),
    ROW(Sign,
        RVS(OUTSTEP, CKR_DATA_INVALID, CKR_DATA_LEN_RANGE, CKR_USER_NOT_LOGGED_IN,
            CKR_FUNCTION_REJECTED),
        2, A_SESS, CKR_OPERATION_NOT_INITIALIZED),
    ROW(SignUpdate,
        RVS(CKR_ARGUMENTS_BAD, INIT, CKR_DATA_LEN_RANGE, DEV, CKR_FUNCTION_CANCELED, GEN,
            CKR_OPERATION_NOT_INITIALIZED, SES, CKR_USER_NOT_LOGGED_IN),
        1, A_SESS, CKR_OPERATION_NOT_INITIALIZED),
    ROW(SignFinal, RVS(OUTSTEP, CKR_DATA_LEN_RANGE, CKR_USER_NOT_LOGGED_IN, CKR_FUNCTION_REJECTED),
        1, A_SESS, CKR_OPERATION_NOT_INITIALIZED),
    ROW(SignRecoverInit, RVS(KEYINIT), 1, A_SESS | A_KEY | A_NOBE, 0),
    ROW(SignRecover, RVS(OUTSTEP, CKR_DATA_INVALID, CKR_DATA_LEN_RANGE, CKR_USER_NOT_LOGGED_IN), 2,
        A_SESS, NOT_SUPPORTED),
    ROW(VerifyInit, RVS(KEYINIT), 1, A_SESS | A_KEY, 0),
    ROW(Verify,
        RVS(CKR_ARGUMENTS_BAD, INIT, CKR_DATA_INVALID, CKR_DATA_LEN_RANGE, DEV,
            CKR_FUNCTION_CANCELED, GEN, CKR_OPERATION_NOT_INITIALIZED, SES, CKR_SIGNATURE_INVALID,
            CKR_SIGNATURE_LEN_RANGE),
        2, A_SESS, CKR_OPERATION_NOT_INITIALIZED),
    ROW(VerifyUpdate,
        RVS(CKR_ARGUMENTS_BAD, INIT, CKR_DATA_LEN_RANGE, DEV, CKR_FUNCTION_CANCELED, GEN,
            CKR_OPERATION_NOT_INITIALIZED, SES),
        1, A_SESS, CKR_OPERATION_NOT_INITIALIZED),
    ROW(VerifyFinal,
        RVS(CKR_ARGUMENTS_BAD, INIT, CKR_DATA_LEN_RANGE, DEV, CKR_FUNCTION_CANCELED, GEN,
            CKR_OPERATION_NOT_INITIALIZED, SES, CKR_SIGNATURE_INVALID, CKR_SIGNATURE_LEN_RANGE),
        1, A_SESS, CKR_OPERATION_NOT_INITIALIZED),
    ROW(VerifyRecoverInit, RVS(KEYINIT), 1, A_SESS | A_KEY | A_NOBE, 0),
    ROW(VerifyRecover,
        RVS(OUTSTEP, CKR_DATA_INVALID, CKR_DATA_LEN_RANGE, CKR_SIGNATURE_LEN_RANGE,
            CKR_SIGNATURE_INVALID),
        2, A_SESS, NOT_SUPPORTED),
    ROW(DigestEncryptUpdate, RVS(OUTSTEP, CKR_DATA_LEN_RANGE), 2, A_SESS, NOT_SUPPORTED),
    ROW(DecryptDigestUpdate, RVS(OUTSTEP, CKR_ENCRYPTED_DATA_INVALID, CKR_ENCRYPTED_DATA_LEN_RANGE),
        2, A_SESS, NOT_SUPPORTED),
    ROW(SignEncryptUpdate, RVS(OUTSTEP, CKR_DATA_LEN_RANGE, CKR_USER_NOT_LOGGED_IN), 2, A_SESS,
        NOT_SUPPORTED),
    ROW(DecryptVerifyUpdate,
        RVS(OUTSTEP, CKR_DATA_LEN_RANGE, CKR_ENCRYPTED_DATA_INVALID, CKR_ENCRYPTED_DATA_LEN_RANGE),
        2, A_SESS, NOT_SUPPORTED),
    ROW(GenerateKey, RVS(NEWOBJ), 3, A_SESS, 0),
    ROW(GenerateKeyPair, RVS(NEWOBJ), 5, A_SESS, 0),
    ROW(WrapKey,
        RVS(CKR_ARGUMENTS_BAD, CKR_BUFFER_TOO_SMALL, INIT, DEV, CKR_FUNCTION_CANCELED, GEN,
            CKR_KEY_HANDLE_INVALID, CKR_KEY_NOT_WRAPPABLE, CKR_KEY_SIZE_RANGE,
            CKR_KEY_UNEXTRACTABLE, CKR_MECHANISM_INVALID, CKR_MECHANISM_PARAM_INVALID,
            CKR_OPERATION_ACTIVE, CKR_PIN_EXPIRED, SES, CKR_USER_NOT_LOGGED_IN,
            CKR_WRAPPING_KEY_HANDLE_INVALID, CKR_WRAPPING_KEY_SIZE_RANGE,
            CKR_WRAPPING_KEY_TYPE_INCONSISTENT),
        2, A_SESS | A_WRAP, 0),
    ROW(UnwrapKey,
        RVS(NEWOBJ, CKR_BUFFER_TOO_SMALL, CKR_UNWRAPPING_KEY_HANDLE_INVALID,
            CKR_UNWRAPPING_KEY_SIZE_RANGE, CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT,
            CKR_WRAPPED_KEY_INVALID, CKR_WRAPPED_KEY_LEN_RANGE),
        4, A_SESS | A_UNWRAP, 0),
    ROW(DeriveKey,
        RVS(NEWOBJ, CKR_KEY_HANDLE_INVALID, CKR_KEY_SIZE_RANGE, CKR_KEY_TYPE_INCONSISTENT), 3,
        A_SESS | A_KEY, 0),
    ROW(SeedRandom,
        RVS(CKR_ARGUMENTS_BAD, INIT, DEV, CKR_FUNCTION_CANCELED, GEN, CKR_OPERATION_ACTIVE,
            CKR_RANDOM_SEED_NOT_SUPPORTED, CKR_RANDOM_NO_RNG, SES, CKR_USER_NOT_LOGGED_IN),
        1, A_SESS, 0),
    ROW(GenerateRandom,
        RVS(CKR_ARGUMENTS_BAD, INIT, DEV, CKR_FUNCTION_CANCELED, GEN, CKR_OPERATION_ACTIVE,
            CKR_RANDOM_NO_RNG, SES, CKR_USER_NOT_LOGGED_IN),
        1, A_SESS, 0),
    ROW(GetFunctionStatus,
        RVS(INIT, CKR_FUNCTION_FAILED, CKR_FUNCTION_NOT_PARALLEL, CKR_GENERAL_ERROR,
            CKR_HOST_MEMORY, SES),
        0, A_SESS, 0),
    ROW(CancelFunction,
        RVS(INIT, CKR_FUNCTION_FAILED, CKR_FUNCTION_NOT_PARALLEL, CKR_GENERAL_ERROR,
            CKR_HOST_MEMORY, SES),
        0, A_SESS, 0),
    ROW(WaitForSlotEvent, RVS(CKR_ARGUMENTS_BAD, INIT, GEN, CKR_NO_EVENT), 1, 0, 0),
};
#define N_FUNCS (sizeof(funcs) / sizeof(funcs[0]))

static const fn_row *row(const char *name)
{
    for (size_t i = 0; i < N_FUNCS; i++)
        if (strcmp(funcs[i].name, name) == 0)
            return &funcs[i];
    fail_msg("no row for C_%s", name);
    return NULL;
}

static bool listed(const fn_row *r, CK_RV rv)
{
    if (universal(rv))
        return true;
    for (const CK_RV *p = r->spec; *p != END; p++)
        if (*p == rv)
            return true;
    return false;
}

/* The one check: rv is the expected one, and one the standard lists for the function. */
#define expect(r, want, got, what) expect_at(__FILE__, __LINE__, (r), (want), (got), (what))
static void expect_at(const char *file, int line, const fn_row *r, CK_RV want, CK_RV got,
                      const char *what)
{
    if (!listed(r, want))
        fail_msg("%s:%d: test bug: C_%s never returns %s in 2.40 (%s)", file, line, r->name,
                 ddsm_rv_name(want), what);
    if (got != want)
        fail_msg("%s:%d: C_%s with %s: %s, expected %s%s", file, line, r->name, what,
                 ddsm_rv_name(got), ddsm_rv_name(want),
                 listed(r, got) ? "" : " (and 2.40 does not list it for this function)");
}

/* ------------------------------------------------------------------------------------------ */
/* The world: nothing a refused call does may change it                                        */

typedef struct world {
    char *keys;       /* md5 of the registry */
    char *rotations;  /* md5 of the rotation records */
    long audit;       /* audit rows */
    char objects[64]; /* the token's objects: count and a hash of their classes and labels */
} world;

static CK_SESSION_HANDLE g_s;      /* R/W, logged in as the user */
static CK_OBJECT_HANDLE g_root;    /* the root seed key */
static CK_OBJECT_HANDLE g_va;      /* virtual HMAC key of vec-a */
static CK_OBJECT_HANDLE g_aes;     /* virtual AES key of aes-a */
static CK_OBJECT_HANDLE g_stale;   /* virtual key of vec-b at a counter rotated away */
static CK_OBJECT_HANDLE g_gone;    /* virtual key of an asset retired since it was found */
static CK_OBJECT_HANDLE g_hmac;    /* a backend HMAC session key */
static CK_OBJECT_HANDLE g_wrap;    /* a backend AES session key that wraps and unwraps */
static CK_SESSION_HANDLE g_closed; /* a session that was closed */
static world g_before;

static void token_objects(CK_SESSION_HANDLE s, char out[64])
{
    CK_OBJECT_HANDLE h[256];
    size_t n = p11_find(s, NULL, 0, h, 256), count = 0;
    static char list[256 * 80];
    list[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (h[i] >= 0x80000000UL)
            continue;
        CK_OBJECT_CLASS cls = 0;
        CK_BBOOL token = CK_FALSE;
        char label[64] = "";
        CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                            {CKA_TOKEN, &token, 1},
                            {CKA_LABEL, label, sizeof(label) - 1}};
        assert_rv(CKR_OK, p11->C_GetAttributeValue(s, h[i], t, 3));
        if (!token)
            continue;
        label[t[2].ulValueLen] = '\0';
        size_t used = strlen(list);
        snprintf(list + used, sizeof(list) - used, "%lu:%s|", (unsigned long)cls, label);
        count++;
    }
    /* Order-free: the backend may list objects in any order. */
    uint64_t sum = 0;
    for (char *e = list; *e != '\0';) {
        char *bar = strchr(e, '|');
        uint64_t h64 = 1469598103934665603ULL;
        for (char *q = e; q < bar; q++)
            h64 = (h64 ^ (uint8_t)*q) * 1099511628211ULL;
        sum += h64;
        e = bar + 1;
    }
    snprintf(out, 64, "%zu objects, hash %016llx", count, (unsigned long long)sum);
}

static world world_now(void)
{
    world w;
    PGconn *c = pgs_connect(pgs_conninfo());
    w.keys = pgs_text(c,
                      "SELECT md5(coalesce(string_agg(k::text, '|' ORDER BY asset_id), ''))"
                      " FROM custody_keys k",
                      0, NULL);
    w.rotations = pgs_text(c,
                           "SELECT md5(coalesce(string_agg(r::text, '|' ORDER BY id), ''))"
                           " FROM custody_rotations r",
                           0, NULL);
    w.audit = (long)pgs_int(c, "SELECT count(*) FROM custody_audit_log", 0, NULL);
    PQfinish(c);
    /* The token as the user sees it (private objects included), from a session of its own. */
    CK_SESSION_HANDLE s = p11_open_user();
    token_objects(s, w.objects);
    assert_rv(CKR_OK, p11->C_CloseSession(s));
    return w;
}

static void world_free(world *w)
{
    free(w->keys);
    free(w->rotations);
}

/* Back to the user's login on g_s, whatever a test did to the login state. */
static void relogin(void)
{
    CK_SESSION_INFO si;
    assert_rv(CKR_OK, p11->C_GetSessionInfo(g_s, &si));
    if (si.state == CKS_RW_SO_FUNCTIONS)
        assert_rv(CKR_OK, p11->C_Logout(g_s));
    CK_RV rv = p11->C_Login(g_s, CKU_USER, PIN, PIN_LEN);
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN)
        fail_msg("re-login: %s", ddsm_rv_name(rv));
}

/* Keys in use are derived (and audited) once, before the snapshot: a logout in an earlier test
 * wiped the module's cache. The root's handle may change with a new login (SoftHSM renumbers
 * private objects). */
static void warm_up(void)
{
    uint8_t sig[32], iv[12] = {0}, ct[64];
    CK_GCM_PARAMS gcm = {iv, sizeof(iv), 96, NULL, 0, 128};
    CK_MECHANISM m_gcm = {CKM_AES_GCM, &gcm, sizeof(gcm)};
    CK_ULONG n = sizeof(ct);
    g_root = p11_root(g_s);
    assert_rv(CKR_OK, p11_hmac_sign(g_s, g_va, data4, sizeof(data4), sig));
    assert_rv(CKR_OK, p11->C_EncryptInit(g_s, &m_gcm, g_aes));
    assert_rv(CKR_OK, p11->C_Encrypt(g_s, data4, sizeof(data4), ct, &n));
}

static int snapshot(void **state)
{
    relogin();
    warm_up();
    g_before = world_now();
    return 0;
}

static int unchanged(void **state)
{
    relogin();
    world after = world_now();
    assert_string_equal(after.keys, g_before.keys);
    assert_string_equal(after.rotations, g_before.rotations);
    assert_int_equal(after.audit, g_before.audit);
    assert_string_equal(after.objects, g_before.objects);
    world_free(&after);
    world_free(&g_before);
    /* No operation left behind on g_s: a find starts. */
    assert_rv(CKR_OK, p11->C_FindObjectsInit(g_s, NULL, 0));
    assert_rv(CKR_OK, p11->C_FindObjectsFinal(g_s));
    return 0;
}

/* Poll until C_SignInit on h gives want (the module hears of a lifecycle change through LISTEN, or
 * re-validates within the staleness bound). */
static void wait_sign_init(CK_OBJECT_HANDLE h, CK_RV want)
{
    CK_RV rv = CKR_OK;
    for (;;) { /* no deadline: a module that never gets there meets ctest's timeout */
        rv = p11->C_SignInit(g_s, &m_hmac, h);
        if (rv == CKR_OK) {
            CK_ULONG n = sizeof(sig32);
            assert_rv(CKR_OK, p11->C_Sign(g_s, data4, sizeof(data4), sig32, &n));
        }
        if (rv == want)
            return;
        if (rv != CKR_OK)
            fail_msg("C_SignInit gave %s, expected %s", ddsm_rv_name(rv), ddsm_rv_name(want));
        p11_sleep_ms(50);
    }
}

static CK_OBJECT_HANDLE backend_hmac_key(CK_SESSION_HANDLE s)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    uint8_t key[32] = {7};
    /* Public, so that it survives the logouts of the tests. */
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_KEY_TYPE, &kt, sizeof(kt)},
                        {CKA_TOKEN, &no, 1},
                        {CKA_PRIVATE, &no, 1},
                        {CKA_SIGN, &yes, 1},
                        {CKA_VERIFY, &yes, 1},
                        {CKA_VALUE, key, sizeof(key)}};
    CK_OBJECT_HANDLE h = 0;
    assert_rv(CKR_OK, p11->C_CreateObject(s, t, 7, &h));
    return h;
}

static CK_OBJECT_HANDLE backend_wrap_key(CK_SESSION_HANDLE s)
{
    CK_ATTRIBUTE t[] = {{CKA_VALUE_LEN, &len32, sizeof(len32)},
                        {CKA_TOKEN, &no, 1},
                        {CKA_PRIVATE, &no, 1},
                        {CKA_WRAP, &yes, 1},
                        {CKA_UNWRAP, &yes, 1},
                        {CKA_EXTRACTABLE, &yes, 1}};
    CK_OBJECT_HANDLE h = 0;
    assert_rv(CKR_OK, p11->C_GenerateKey(s, &m_aeskg, t, 6, &h));
    return h;
}

static int group_setup(void **state)
{
    if (p11->C_Initialize(NULL) != CKR_OK)
        return -1;
    m_derive.ulParameterLen = p11_param(derive_param, sizeof(derive_param), VEC_A_ID, VEC_A_PATH);
    CK_SESSION_HANDLE c = p11_open();
    assert_rv(CKR_OK, p11->C_CloseSession(c));
    g_closed = c;
    g_s = p11_open_user();
    g_root = p11_root(g_s);
    g_va = p11_find_label(g_s, "vec-a/" VEC_A_PATH);
    g_aes = p11_find_label(g_s, "aes-a/m/1");
    g_hmac = backend_hmac_key(g_s);
    g_wrap = backend_wrap_key(g_s);

    /* A key rotated away: vec-b at counter 0, then `ddsmctl asset rotate`. */
    g_stale = p11_find_label(g_s, "vec-b/m/0");
    wait_sign_init(g_stale, CKR_OK);
    if (p11_ctl("asset rotate vec-b >/dev/null") != 0)
        return -1;
    wait_sign_init(g_stale, CKR_KEY_HANDLE_INVALID);
    /* A key of an asset retired since it was found. */
    if (p11_ctl("asset register --label doomed --default-path m/9 >/dev/null") != 0 ||
        p11_ctl("asset activate doomed >/dev/null") != 0)
        return -1;
    g_gone = p11_find_label(g_s, "doomed/m/9");
    wait_sign_init(g_gone, CKR_OK);
    if (p11_ctl("asset retire doomed >/dev/null") != 0)
        return -1;
    wait_sign_init(g_gone, CKR_KEY_HANDLE_INVALID);
    return 0;
}

static int group_teardown(void **state)
{
    (void)p11->C_DestroyObject(g_s, g_hmac);
    (void)p11->C_DestroyObject(g_s, g_wrap);
    (void)p11->C_CloseSession(g_s);
    return p11->C_Finalize(NULL) == CKR_OK ? 0 : -1;
}

/* ------------------------------------------------------------------------------------------ */
/* The function list                                                                           */

static void test_misuse__the_function_list_is_complete_and_every_slot_is_in_the_table(void **state)
{
    CK_FUNCTION_LIST_PTR fl = NULL;
    CK_C_GetFunctionList gfl = (CK_C_GetFunctionList)(uintptr_t)p11_sym("C_GetFunctionList");
    assert_rv(CKR_OK, gfl(&fl));
    assert_int_equal(fl->version.major, 2);
    assert_int_equal(fl->version.minor, 40);
    size_t first = offsetof(CK_FUNCTION_LIST, C_Initialize), n = 0;
    for (size_t off = first; off + sizeof(void *) <= sizeof(*fl); off += sizeof(void *), n++) {
        void *fn = NULL;
        memcpy(&fn, (const char *)fl + off, sizeof(fn));
        if (fn == NULL)
            fail_msg("function list slot at offset %zu is NULL", off);
        bool found = false;
        for (size_t i = 0; i < N_FUNCS; i++)
            found = found || funcs[i].off == off;
        if (!found)
            fail_msg("function list slot at offset %zu has no row in the misuse table", off);
    }
    assert_int_equal(n, 68); /* the 2.40 API */
    assert_int_equal(N_FUNCS, 68);
}

/* Outside C_Initialize .. C_Finalize every function but C_GetFunctionList and C_Initialize
 * answers CKR_CRYPTOKI_NOT_INITIALIZED, with good arguments and with NULL ones alike. */
static void sweep_not_initialized(const struct callv *good, const char *when)
{
    char what[128];
    for (size_t i = 0; i < N_FUNCS; i++) {
        const fn_row *r = &funcs[i];
        if (strcmp(r->name, "Initialize") == 0)
            continue;
        CK_RV want =
            strcmp(r->name, "GetFunctionList") == 0 ? CKR_OK : CKR_CRYPTOKI_NOT_INITIALIZED;
        struct callv v = *good;
        snprintf(what, sizeof(what), "good arguments %s", when);
        expect(r, want, r->call(&v), what);
        if (r->nptr == 0 || want == CKR_OK)
            continue;
        v.nulls = (1u << r->nptr) - 1;
        snprintf(what, sizeof(what), "NULL pointers %s", when);
        expect(r, want, r->call(&v), what);
    }
    /* The 3.0 entry points need no initialisation. */
    ddsm_C_GetInterfaceList_fn gil =
        (ddsm_C_GetInterfaceList_fn)(uintptr_t)p11_sym("C_GetInterfaceList");
    ddsm_C_GetInterface_fn gi = (ddsm_C_GetInterface_fn)(uintptr_t)p11_sym("C_GetInterface");
    CK_ULONG n = 0;
    CK_INTERFACE_PTR iface = NULL;
    CK_VERSION v240 = {2, 40};
    assert_rv(CKR_OK, gil(NULL, &n));
    assert_true(n >= 1);
    assert_rv(CKR_OK, gi((CK_UTF8CHAR_PTR) "PKCS 11", &v240, &iface, 0));
    assert_ptr_equal(iface->pFunctionList, p11);
}

static void test_misuse__every_function_before_initialize_is_not_initialized(void **state)
{
    struct callv v = {0, 1, 1, 2, 0};
    sweep_not_initialized(&v, "before C_Initialize");
}

static void test_misuse__every_function_after_finalize_is_not_initialized(void **state)
{
    assert_rv(CKR_OK, p11->C_Initialize(NULL));
    CK_SESSION_HANDLE s = p11_open_user();
    CK_OBJECT_HANDLE h = p11_find_label(s, "vec-a/" VEC_A_PATH);
    assert_rv(CKR_OK, p11->C_SignInit(s, &m_hmac, h));
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
    /* The session, the key and the running operation are all gone with it. */
    struct callv v = {0, s, h, h, 0};
    sweep_not_initialized(&v, "after C_Finalize");
    assert_rv(CKR_OK, p11->C_Initialize(NULL));
    CK_ULONG n = sizeof(sig32);
    assert_rv(CKR_SESSION_HANDLE_INVALID, p11->C_Sign(s, data4, 4, sig32, &n));
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
}

/* ------------------------------------------------------------------------------------------ */
/* NULL pointers, bad slots, bad sessions                                                      */

static void test_misuse__every_required_null_pointer_is_arguments_bad(void **state)
{
    char what[96];
    for (size_t i = 0; i < N_FUNCS; i++) {
        const fn_row *r = &funcs[i];
        if (r->nptr == 0 || strcmp(r->name, "Initialize") == 0 || strcmp(r->name, "Finalize") == 0)
            continue;
        for (unsigned b = 0; b < r->nptr; b++) {
            struct callv v = {0, g_s, (r->args & A_WRAP) ? g_hmac : g_va, g_hmac, 1u << b};
            if (r->args & (A_UNWRAP | A_WRAP))
                v.obj = g_hmac;
            snprintf(what, sizeof(what), "NULL pointer argument #%u", b + 1);
            expect(r, CKR_ARGUMENTS_BAD, r->call(&v), what);
        }
    }
    /* The reserved pointers must be NULL. */
    CK_SLOT_ID slot;
    expect(row("WaitForSlotEvent"), CKR_ARGUMENTS_BAD,
           p11->C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, &slot), "pReserved not NULL");
    expect(row("Finalize"), CKR_ARGUMENTS_BAD, p11->C_Finalize(&slot), "pReserved not NULL");
    CK_C_INITIALIZE_ARGS args;
    memset(&args, 0, sizeof(args));
    args.pReserved = &args;
    expect(row("Initialize"), CKR_ARGUMENTS_BAD, p11->C_Initialize(&args), "pReserved not NULL");
    /* Lengths without their buffer. */
    expect(row("Login"), CKR_ARGUMENTS_BAD, p11->C_Login(g_s, CKU_USER, NULL, 6), "NULL PIN");
    expect(row("GetAttributeValue"), CKR_ARGUMENTS_BAD,
           p11->C_GetAttributeValue(g_s, g_root, NULL, 3), "NULL template of 3");
    expect(row("FindObjectsInit"), CKR_ARGUMENTS_BAD, p11->C_FindObjectsInit(g_s, NULL, 2),
           "NULL template of 2");
}

static void test_misuse__bad_slots_are_slot_id_invalid(void **state)
{
    static const CK_SLOT_ID bad[] = {1, 2, 0x7fffffffUL, (CK_SLOT_ID)-1, (CK_SLOT_ID)1 << 40};
    char what[64];
    for (size_t i = 0; i < N_FUNCS; i++) {
        if (!(funcs[i].args & A_SLOT))
            continue;
        for (size_t j = 0; j < sizeof(bad) / sizeof(bad[0]); j++) {
            struct callv v = {bad[j], g_s, g_va, g_va, 0};
            snprintf(what, sizeof(what), "slot %lu", (unsigned long)bad[j]);
            expect(&funcs[i], CKR_SLOT_ID_INVALID, funcs[i].call(&v), what);
        }
    }
}

/* Every session handle the application does not own: 0, unknown ones, forged ones with high bits,
 * a closed session's, and every small number that is not one of ours (the module's own backend
 * sessions live there: they are logged in and must never be reachable). */
static void test_misuse__bad_session_handles_are_session_handle_invalid(void **state)
{
    CK_SESSION_HANDLE bad[64];
    size_t nbad = 0;
    bad[nbad++] = 0;
    bad[nbad++] = g_closed;
    bad[nbad++] = 0x7ffffff0UL;
    bad[nbad++] = 0x80000000UL | g_s;
    bad[nbad++] = ((CK_SESSION_HANDLE)1 << 40) | g_s;
    bad[nbad++] = (CK_SESSION_HANDLE)-1;
    /* Make sure the module has sessions of its own: derive once (cached afterwards). */
    uint8_t sig[32];
    assert_rv(CKR_OK, p11_hmac_sign(g_s, g_va, data4, 4, sig));
    for (CK_SESSION_HANDLE h = 1; h <= 48 && nbad < 64; h++) {
        CK_SESSION_INFO si;
        if (h != g_s && p11->C_GetSessionInfo(h, &si) != CKR_OK)
            bad[nbad++] = h;
    }
    char what[64];
    for (size_t i = 0; i < N_FUNCS; i++) {
        const fn_row *r = &funcs[i];
        if (!(r->args & A_SESS))
            continue;
        for (size_t j = 0; j < nbad; j++) {
            struct callv v = {0, bad[j], g_va, g_hmac, 0};
            if (r->args & (A_WRAP | A_UNWRAP))
                v.obj = g_hmac;
            snprintf(what, sizeof(what), "session 0x%lx", (unsigned long)bad[j]);
            expect(r, CKR_SESSION_HANDLE_INVALID, r->call(&v), what);
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Bad object and key handles                                                                   */

static void test_misuse__bad_object_and_key_handles_are_refused_precisely(void **state)
{
    const struct {
        CK_OBJECT_HANDLE h;
        const char *what;
    } bad[] = {
        {CK_INVALID_HANDLE, "handle 0"},
        {0x7ffff123UL, "an unknown backend handle"},
        {0x80000000UL | 0x12345, "a forged handle with the top bit"},
        {0xfffffffeUL, "a forged handle with every bit"},
        {(CK_OBJECT_HANDLE)1 << 33, "a handle wider than 32 bits"},
        {g_va | ((CK_OBJECT_HANDLE)1 << 32), "a live handle with a bit above 32"},
        {g_va ^ (1UL << 20), "a live handle with another generation"},
        {g_stale, "a key rotated away"},
        {g_gone, "a key of a retired asset"},
    };
    for (size_t i = 0; i < N_FUNCS; i++) {
        const fn_row *r = &funcs[i];
        if (!(r->args & (A_OBJ | A_KEY | A_WRAP | A_UNWRAP)))
            continue;
        for (size_t j = 0; j < sizeof(bad) / sizeof(bad[0]); j++) {
            struct callv v = {0, g_s, bad[j].h, g_wrap, 0};
            CK_RV want = (r->args & A_OBJ)      ? CKR_OBJECT_HANDLE_INVALID
                         : (r->args & A_WRAP)   ? CKR_WRAPPING_KEY_HANDLE_INVALID
                         : (r->args & A_UNWRAP) ? CKR_UNWRAPPING_KEY_HANDLE_INVALID
                                                : CKR_KEY_HANDLE_INVALID;
            /* A handle the backend cannot describe is refused before the call is forwarded
             * (fail closed), so a function the backend lacks (A_NOBE) answers for the handle
             * too. */
            if (r->args & A_DIGEST)
                assert_rv(CKR_OK, p11->C_DigestInit(g_s, &m_sha));
            expect(r, want, r->call(&v), bad[j].what);
            if (r->args & A_DIGEST) {
                CK_BYTE d[32];
                CK_ULONG n = sizeof(d);
                /* A refused C_DigestKey may end the digest (the backend's choice) or not. */
                CK_RV rv = p11->C_DigestFinal(g_s, d, &n);
                assert_true(rv == CKR_OK || rv == CKR_OPERATION_NOT_INITIALIZED);
            }
            if (r->args & A_WRAP) {
                /* The key to wrap, with a good wrapping key. */
                v.obj = g_wrap;
                v.key2 = bad[j].h;
                expect(r, CKR_KEY_HANDLE_INVALID, r->call(&v), bad[j].what);
            }
        }
    }
    /* C_SetOperationState: no saved state can need any of these keys. */
    for (size_t j = 2; j < sizeof(bad) / sizeof(bad[0]); j++) {
        if (bad[j].h < 0x80000000UL)
            continue;
        expect(row("SetOperationState"), CKR_KEY_NOT_NEEDED,
               p11->C_SetOperationState(g_s, data4, sizeof(data4), bad[j].h, 0), bad[j].what);
        expect(row("SetOperationState"), CKR_KEY_NOT_NEEDED,
               p11->C_SetOperationState(g_s, data4, sizeof(data4), 0, bad[j].h), bad[j].what);
    }
}

/* The root seed key and virtual keys where a function cannot take them: each refusal a code the
 * function's 2.40 return values list. */
static void
test_misuse__the_root_and_virtual_keys_are_refused_where_they_do_not_belong(void **state)
{
    CK_OBJECT_HANDLE out = 0;
    struct callv v = {0, g_s, g_root, g_hmac, 0};
    CK_MECHANISM sha_kd = {CKM_SHA256_KEY_DERIVATION, NULL, 0};
    for (int k = 0; k < 2; k++) {
        CK_OBJECT_HANDLE key = k == 0 ? g_root : g_va;
        const char *what = k == 0 ? "the root" : "a virtual key";
        v.obj = key;
        expect(row("SignRecoverInit"), CKR_KEY_FUNCTION_NOT_PERMITTED, f_SignRecoverInit(&v), what);
        expect(row("VerifyRecoverInit"), CKR_KEY_FUNCTION_NOT_PERMITTED, f_VerifyRecoverInit(&v),
               what);
        assert_rv(CKR_OK, p11->C_DigestInit(g_s, &m_sha));
        expect(row("DigestKey"), CKR_KEY_INDIGESTIBLE, f_DigestKey(&v), what);
        CK_BYTE d[32];
        CK_ULONG n = sizeof(d);
        assert_rv(CKR_OK, p11->C_DigestFinal(g_s, d, &n));
        expect(row("DeriveKey"), CKR_MECHANISM_INVALID,
               p11->C_DeriveKey(g_s, &sha_kd, key, NULL, 0, &out), what);
        v.obj = key;
        v.key2 = g_hmac;
        expect(row("WrapKey"), CKR_MECHANISM_INVALID, f_WrapKey(&v), what);
        expect(row("UnwrapKey"), CKR_MECHANISM_INVALID, f_UnwrapKey(&v), what);
        v.obj = g_hmac;
        v.key2 = key;
        expect(row("WrapKey"), CKR_KEY_UNEXTRACTABLE, f_WrapKey(&v), what);
        expect(row("SetOperationState"), CKR_KEY_NOT_NEEDED,
               p11->C_SetOperationState(g_s, data4, sizeof(data4), key, 0), what);
        v.obj = key;
        expect(row("CopyObject"), CKR_ACTION_PROHIBITED, f_CopyObject(&v), what);
        expect(row("SetAttributeValue"), CKR_ACTION_PROHIBITED, f_SetAttributeValue(&v), what);
        /* On a virtual key it releases the handle only (test_handles_live.c). */
        if (k == 0)
            expect(row("DestroyObject"), CKR_ACTION_PROHIBITED, f_DestroyObject(&v), what);
    }
    assert_int_equal(out, 0);
    /* CKM_DDSM_DERIVE takes the root only. */
    expect(row("DeriveKey"), CKR_KEY_TYPE_INCONSISTENT,
           p11->C_DeriveKey(g_s, &m_derive, g_va, NULL, 0, &out), "a virtual base key");
    expect(row("DeriveKey"), CKR_KEY_TYPE_INCONSISTENT,
           p11->C_DeriveKey(g_s, &m_derive, g_hmac, NULL, 0, &out), "a backend base key");
    /* The root's value reads as sensitive (section 5.7), its label still reads. */
    uint8_t value[64];
    char label[16];
    CK_ATTRIBUTE t[] = {{CKA_VALUE, value, sizeof(value)}, {CKA_LABEL, label, sizeof(label)}};
    expect(row("GetAttributeValue"), CKR_ATTRIBUTE_SENSITIVE,
           p11->C_GetAttributeValue(g_s, g_root, t, 2), "CKA_VALUE of the root");
    assert_int_equal(t[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    assert_int_equal(t[1].ulValueLen, 9);
    expect(row("GetAttributeValue"), CKR_OBJECT_HANDLE_INVALID,
           p11->C_GetAttributeValue(g_s, CK_DDSM_ROOT_HANDLE, t, 2), "CK_DDSM_ROOT_HANDLE");
    /* ... and so does a virtual key's. */
    t[0].ulValueLen = sizeof(value);
    t[1].ulValueLen = sizeof(label);
    expect(row("GetAttributeValue"), CKR_ATTRIBUTE_SENSITIVE,
           p11->C_GetAttributeValue(g_s, g_va, t, 1), "CKA_VALUE of a virtual key");
    assert_int_equal(t[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
}

/* ------------------------------------------------------------------------------------------ */
/* Out of order                                                                                 */

static void test_misuse__operation_steps_without_their_init_are_not_initialized(void **state)
{
    for (size_t i = 0; i < N_FUNCS; i++) {
        const fn_row *r = &funcs[i];
        if (r->no_operation == 0)
            continue;
        struct callv v = {0, g_s, g_va, g_hmac, 0};
        expect(r, r->no_operation, r->call(&v), "no operation running");
    }
}

static void test_misuse__a_second_init_is_operation_active_and_the_first_survives(void **state)
{
    const fn_row *rs = row("SignInit"), *rv_ = row("VerifyInit"), *re = row("EncryptInit"),
                 *rd = row("DecryptInit"), *rf = row("FindObjectsInit"), *rg = row("DigestInit");
    uint8_t iv[12] = {0};
    CK_GCM_PARAMS gcm = {iv, sizeof(iv), 96, NULL, 0, 128};
    CK_MECHANISM m_gcm = {CKM_AES_GCM, &gcm, sizeof(gcm)};
    CK_OBJECT_HANDLE keys[] = {g_va, g_hmac};
    for (int k = 0; k < 2; k++) {
        const char *what = k == 0 ? "a virtual key" : "a backend key";
        assert_rv(CKR_OK, p11->C_SignInit(g_s, &m_hmac, keys[k]));
        expect(rs, CKR_OPERATION_ACTIVE, p11->C_SignInit(g_s, &m_hmac, keys[k]), what);
        expect(rs, CKR_OPERATION_ACTIVE, p11->C_SignInit(g_s, &m_hmac, keys[1 - k]), what);
        CK_ULONG n = sizeof(sig32);
        assert_rv(CKR_OK, p11->C_Sign(g_s, data4, sizeof(data4), sig32, &n));
        assert_rv(CKR_OK, p11->C_VerifyInit(g_s, &m_hmac, keys[k]));
        expect(rv_, CKR_OPERATION_ACTIVE, p11->C_VerifyInit(g_s, &m_hmac, keys[k]), what);
        assert_rv(CKR_OK, p11->C_Verify(g_s, data4, sizeof(data4), sig32, n));
    }
    assert_rv(CKR_OK, p11->C_EncryptInit(g_s, &m_gcm, g_aes));
    expect(re, CKR_OPERATION_ACTIVE, p11->C_EncryptInit(g_s, &m_gcm, g_aes), "AES-GCM");
    CK_BYTE ct[64];
    CK_ULONG ctn = sizeof(ct);
    assert_rv(CKR_OK, p11->C_Encrypt(g_s, data4, sizeof(data4), ct, &ctn));
    assert_rv(CKR_OK, p11->C_DecryptInit(g_s, &m_gcm, g_aes));
    expect(rd, CKR_OPERATION_ACTIVE, p11->C_DecryptInit(g_s, &m_gcm, g_aes), "AES-GCM");
    CK_BYTE pt[64];
    CK_ULONG ptn = sizeof(pt);
    assert_rv(CKR_OK, p11->C_Decrypt(g_s, ct, ctn, pt, &ptn));
    assert_memory_equal(pt, data4, sizeof(data4));
    assert_rv(CKR_OK, p11->C_FindObjectsInit(g_s, NULL, 0));
    expect(rf, CKR_OPERATION_ACTIVE, p11->C_FindObjectsInit(g_s, NULL, 0), "a find");
    assert_rv(CKR_OK, p11->C_FindObjectsFinal(g_s));
    assert_rv(CKR_OK, p11->C_DigestInit(g_s, &m_sha));
    expect(rg, CKR_OPERATION_ACTIVE, p11->C_DigestInit(g_s, &m_sha), "a digest");
    CK_BYTE d[32];
    CK_ULONG dn = sizeof(d);
    assert_rv(CKR_OK, p11->C_DigestFinal(g_s, d, &dn));
}

/* The standard: a step that fails (other than CKR_BUFFER_TOO_SMALL or a length query) ends the
 * operation; single-part C_Sign/C_Verify may not follow an *Update. */
static void test_misuse__single_part_after_update_ends_the_operation(void **state)
{
    CK_ULONG n = sizeof(sig32);
    CK_OBJECT_HANDLE keys[] = {g_va, g_hmac};
    for (int k = 0; k < 2; k++) {
        const char *what = k == 0 ? "C_Sign after C_SignUpdate, virtual key"
                                  : "C_Sign after C_SignUpdate, backend key";
        assert_rv(CKR_OK, p11->C_SignInit(g_s, &m_hmac, keys[k]));
        assert_rv(CKR_OK, p11->C_SignUpdate(g_s, data4, sizeof(data4)));
        n = sizeof(sig32);
        expect(row("Sign"), CKR_OPERATION_NOT_INITIALIZED,
               p11->C_Sign(g_s, data4, sizeof(data4), sig32, &n), what);
        expect(row("SignFinal"), CKR_OPERATION_NOT_INITIALIZED, p11->C_SignFinal(g_s, sig32, &n),
               "C_SignFinal after the refused C_Sign");
        assert_rv(CKR_OK, p11->C_VerifyInit(g_s, &m_hmac, keys[k]));
        assert_rv(CKR_OK, p11->C_VerifyUpdate(g_s, data4, sizeof(data4)));
        expect(row("Verify"), CKR_OPERATION_NOT_INITIALIZED,
               p11->C_Verify(g_s, data4, sizeof(data4), sig32, 32), what);
        expect(row("VerifyFinal"), CKR_OPERATION_NOT_INITIALIZED,
               p11->C_VerifyFinal(g_s, sig32, 32), "C_VerifyFinal after the refused C_Verify");
    }
    /* A bad argument ends a running operation too. */
    assert_rv(CKR_OK, p11->C_SignInit(g_s, &m_hmac, g_va));
    expect(row("Sign"), CKR_ARGUMENTS_BAD, p11->C_Sign(g_s, data4, sizeof(data4), sig32, NULL),
           "NULL length");
    n = sizeof(sig32);
    expect(row("Sign"), CKR_OPERATION_NOT_INITIALIZED,
           p11->C_Sign(g_s, data4, sizeof(data4), sig32, &n), "after the refused call");
}

static void test_misuse__session_calls_out_of_order(void **state)
{
    /* Login twice, logout twice. */
    expect(row("Login"), CKR_USER_ALREADY_LOGGED_IN, p11->C_Login(g_s, CKU_USER, PIN, PIN_LEN),
           "a second login");
    CK_SESSION_HANDLE s2 = p11_open();
    expect(row("Login"), CKR_USER_ALREADY_LOGGED_IN, p11->C_Login(s2, CKU_USER, PIN, PIN_LEN),
           "login on a second session of a logged-in token");
    expect(row("Login"), CKR_OPERATION_NOT_INITIALIZED,
           p11->C_Login(g_s, CKU_CONTEXT_SPECIFIC, PIN, PIN_LEN), "CKU_CONTEXT_SPECIFIC, no op");
    expect(row("Login"), CKR_USER_TYPE_INVALID, p11->C_Login(s2, 42, PIN, PIN_LEN), "user 42");
    assert_rv(CKR_OK, p11->C_Logout(g_s));
    expect(row("Logout"), CKR_USER_NOT_LOGGED_IN, p11->C_Logout(g_s), "a second logout");
    expect(row("Logout"), CKR_USER_NOT_LOGGED_IN, p11->C_Logout(s2), "logout, other session");
    assert_rv(CKR_OK, p11->C_CloseSession(s2));
    expect(row("CloseSession"), CKR_SESSION_HANDLE_INVALID, p11->C_CloseSession(s2),
           "closing twice");
    /* Init and finalize out of order. */
    expect(row("Initialize"), CKR_CRYPTOKI_ALREADY_INITIALIZED, p11->C_Initialize(NULL),
           "a second C_Initialize");
    /* Finds and digests. */
    expect(row("FindObjectsFinal"), CKR_OPERATION_NOT_INITIALIZED, p11->C_FindObjectsFinal(g_s),
           "no find");
    assert_rv(CKR_OK, p11->C_FindObjectsInit(g_s, NULL, 0));
    assert_rv(CKR_OK, p11->C_FindObjectsFinal(g_s));
    expect(row("FindObjectsFinal"), CKR_OPERATION_NOT_INITIALIZED, p11->C_FindObjectsFinal(g_s),
           "a second C_FindObjectsFinal");
    expect(row("DigestKey"), CKR_OPERATION_NOT_INITIALIZED, p11->C_DigestKey(g_s, g_hmac),
           "no digest");
}

/* ------------------------------------------------------------------------------------------ */
/* Wrong lengths                                                                                */

static void test_misuse__wrong_lengths_are_refused_precisely(void **state)
{
    CK_ULONG n = 0;
    /* Output buffers too small: the size protocol, and the operation stays. */
    CK_SLOT_ID slots[1];
    n = 0;
    expect(row("GetSlotList"), CKR_BUFFER_TOO_SMALL, p11->C_GetSlotList(CK_FALSE, slots, &n),
           "room for no slot");
    assert_int_equal(n, 1);
    CK_MECHANISM_TYPE mechs[1];
    n = 1;
    expect(row("GetMechanismList"), CKR_BUFFER_TOO_SMALL, p11->C_GetMechanismList(0, mechs, &n),
           "room for one mechanism");
    assert_true(n > 1);
    assert_rv(CKR_OK, p11->C_SignInit(g_s, &m_hmac, g_va));
    n = 31;
    expect(row("Sign"), CKR_BUFFER_TOO_SMALL, p11->C_Sign(g_s, data4, 4, sig32, &n),
           "31-byte signature buffer");
    assert_int_equal(n, 32);
    assert_rv(CKR_OK, p11->C_Sign(g_s, data4, 4, sig32, &n));
    assert_rv(CKR_OK, p11->C_VerifyInit(g_s, &m_hmac, g_va));
    expect(row("Verify"), CKR_SIGNATURE_LEN_RANGE, p11->C_Verify(g_s, data4, 4, sig32, 31),
           "a 31-byte signature");
    assert_rv(CKR_OK, p11->C_VerifyInit(g_s, &m_hmac, g_va));
    expect(row("Verify"), CKR_SIGNATURE_LEN_RANGE, p11->C_Verify(g_s, data4, 4, sig32, 33),
           "a 33-byte signature");
    char label[8];
    CK_ATTRIBUTE t[] = {{CKA_LABEL, label, sizeof(label)}};
    expect(row("GetAttributeValue"), CKR_BUFFER_TOO_SMALL,
           p11->C_GetAttributeValue(g_s, g_va, t, 1), "an 8-byte label buffer");
    assert_int_equal(t[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    CK_OBJECT_HANDLE found[1];
    assert_rv(CKR_OK, p11->C_FindObjectsInit(g_s, NULL, 0));
    n = 99;
    expect(row("FindObjects"), CKR_OK, p11->C_FindObjects(g_s, found, 0, &n), "room for none");
    assert_int_equal(n, 0);
    assert_rv(CKR_OK, p11->C_FindObjectsFinal(g_s));
    /* AES-GCM output too small; ciphertext shorter than the tag. */
    uint8_t iv[12] = {0};
    CK_GCM_PARAMS gcm = {iv, sizeof(iv), 96, NULL, 0, 128};
    CK_MECHANISM m_gcm = {CKM_AES_GCM, &gcm, sizeof(gcm)};
    CK_BYTE ct[64];
    assert_rv(CKR_OK, p11->C_EncryptInit(g_s, &m_gcm, g_aes));
    n = 19;
    expect(row("Encrypt"), CKR_BUFFER_TOO_SMALL, p11->C_Encrypt(g_s, data4, 4, ct, &n),
           "room for 19 of 20 bytes");
    assert_int_equal(n, 20);
    assert_rv(CKR_OK, p11->C_Encrypt(g_s, data4, 4, ct, &n));
    assert_rv(CKR_OK, p11->C_DecryptInit(g_s, &m_gcm, g_aes));
    CK_BYTE pt[64];
    n = sizeof(pt);
    expect(row("Decrypt"), CKR_ENCRYPTED_DATA_LEN_RANGE, p11->C_Decrypt(g_s, ct, 15, pt, &n),
           "15 bytes: shorter than the tag");
    /* Mechanism parameters of the wrong size. */
    CK_ULONG glen = 16;
    CK_MECHANISM gen_short = {CKM_SHA256_HMAC_GENERAL, &glen, sizeof(glen) - 1};
    CK_MECHANISM gen_null = {CKM_SHA256_HMAC_GENERAL, NULL, sizeof(glen)};
    CK_MECHANISM hmac_param = {CKM_SHA256_HMAC, &glen, sizeof(glen)};
    CK_ULONG g33 = 33;
    CK_MECHANISM gen_33 = {CKM_SHA256_HMAC_GENERAL, &g33, sizeof(g33)};
    const fn_row *rs = row("SignInit");
    expect(rs, CKR_MECHANISM_PARAM_INVALID, p11->C_SignInit(g_s, &gen_short, g_va), "7 bytes");
    expect(rs, CKR_MECHANISM_PARAM_INVALID, p11->C_SignInit(g_s, &gen_null, g_va), "NULL");
    expect(rs, CKR_MECHANISM_PARAM_INVALID, p11->C_SignInit(g_s, &hmac_param, g_va), "a param");
    expect(rs, CKR_MECHANISM_PARAM_INVALID, p11->C_SignInit(g_s, &gen_33, g_va), "33 bytes");
    gcm.ulIvLen = 11;
    expect(row("EncryptInit"), CKR_MECHANISM_PARAM_INVALID, p11->C_EncryptInit(g_s, &m_gcm, g_aes),
           "an 11-byte IV");
    gcm.ulIvLen = 12;
    m_gcm.ulParameterLen = sizeof(gcm) - 1;
    expect(row("EncryptInit"), CKR_MECHANISM_PARAM_INVALID, p11->C_EncryptInit(g_s, &m_gcm, g_aes),
           "a short CK_GCM_PARAMS");
    /* CKM_DDSM_DERIVE parameter lengths. */
    uint8_t param[DDSM_DERIVE_PARAM_MAX + 8];
    size_t plen = p11_param(param, sizeof(param), VEC_A_ID, VEC_A_PATH);
    /* Nothing, a part of the UUID, the UUID alone, the UUID and "m", one byte too many. */
    const CK_ULONG lens[] = {0, 1, 15, 16, 17, DDSM_DERIVE_PARAM_MAX + 1};
    CK_OBJECT_HANDLE out = 0;
    memset(param + plen, 'x', sizeof(param) - plen);
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        CK_MECHANISM m = {CKM_DDSM_DERIVE, param, lens[i]};
        char what[48];
        snprintf(what, sizeof(what), "a %lu-byte parameter", (unsigned long)lens[i]);
        expect(row("DeriveKey"), CKR_MECHANISM_PARAM_INVALID,
               p11->C_DeriveKey(g_s, &m, g_root, NULL, 0, &out), what);
    }
    CK_MECHANISM m_nullp = {CKM_DDSM_DERIVE, NULL, plen};
    expect(row("DeriveKey"), CKR_MECHANISM_PARAM_INVALID,
           p11->C_DeriveKey(g_s, &m_nullp, g_root, NULL, 0, &out), "NULL parameter");
    assert_int_equal(out, 0);
    /* Interface list size protocol. */
    ddsm_C_GetInterfaceList_fn gil =
        (ddsm_C_GetInterfaceList_fn)(uintptr_t)p11_sym("C_GetInterfaceList");
    CK_INTERFACE list[1];
    CK_ULONG count = 0;
    assert_rv(CKR_OK, gil(NULL, &count));
    n = 0;
    assert_rv(CKR_BUFFER_TOO_SMALL, gil(list, &n));
    assert_int_equal(n, count);
    assert_rv(CKR_ARGUMENTS_BAD, gil(list, NULL));
}

/* ------------------------------------------------------------------------------------------ */
/* Wrong session states                                                                         */

static void test_misuse__a_read_only_session_refuses_every_write(void **state)
{
    CK_SESSION_HANDLE ro = CK_INVALID_HANDLE;
    assert_rv(CKR_OK, p11->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &ro));
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_ATTRIBUTE tok[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_TOKEN, &yes, 1}};
    CK_OBJECT_HANDLE h = 0;
    expect(row("CreateObject"), CKR_SESSION_READ_ONLY, p11->C_CreateObject(ro, tok, 2, &h),
           "a token object from a R/O session");
    CK_ATTRIBUTE gen[] = {{CKA_TOKEN, &yes, 1}, {CKA_VALUE_LEN, &len32, sizeof(len32)}};
    expect(row("GenerateKey"), CKR_SESSION_READ_ONLY, p11->C_GenerateKey(ro, &m_aeskg, gen, 2, &h),
           "a token key from a R/O session");
    CK_ATTRIBUTE copy_tok[] = {{CKA_TOKEN, &yes, 1}};
    expect(row("CopyObject"), CKR_SESSION_READ_ONLY, p11->C_CopyObject(ro, g_hmac, copy_tok, 1, &h),
           "a token copy from a R/O session");
    expect(row("SetPIN"), CKR_SESSION_READ_ONLY, p11->C_SetPIN(ro, PIN, PIN_LEN, PIN, PIN_LEN),
           "C_SetPIN from a R/O session");
    expect(row("InitPIN"), CKR_USER_NOT_LOGGED_IN, p11->C_InitPIN(ro, PIN, PIN_LEN),
           "C_InitPIN without the SO");
    /* The SO cannot log in while a R/O session is open. */
    assert_rv(CKR_OK, p11->C_Logout(g_s));
    const char *so = getenv("DDSM_TEST_SO_PIN");
    expect(row("Login"), CKR_SESSION_READ_ONLY_EXISTS,
           p11->C_Login(g_s, CKU_SO, (CK_UTF8CHAR_PTR)so, strlen(so)), "SO with a R/O session");
    assert_int_equal(h, 0);
    assert_rv(CKR_OK, p11->C_CloseSession(ro));
}

/* Security: without C_Login no derivation happens and no virtual object is visible or usable. */
static void test_misuse__without_login_nothing_is_derived_nor_visible(void **state)
{
    assert_rv(CKR_OK, p11->C_Logout(g_s));
    CK_OBJECT_HANDLE out = 0;
    expect(row("DeriveKey"), CKR_USER_NOT_LOGGED_IN,
           p11->C_DeriveKey(g_s, &m_derive, CK_DDSM_ROOT_HANDLE, NULL, 0, &out), "no login");
    assert_int_equal(out, 0);
    /* No virtual object in any find, by label or listing everything. */
    CK_OBJECT_HANDLE h[64];
    size_t n = p11_find(g_s, NULL, 0, h, 64);
    for (size_t i = 0; i < n; i++)
        assert_true(h[i] < 0x80000000UL);
    CK_ATTRIBUTE by_label[] = {{CKA_LABEL, "vec-a/" VEC_A_PATH, strlen("vec-a/" VEC_A_PATH)}};
    assert_int_equal(p11_find(g_s, by_label, 1, h, 64), 0);
    /* Handles learnt while logged in do not work. */
    struct callv v = {0, g_s, g_va, g_hmac, 0};
    expect(row("SignInit"), CKR_USER_NOT_LOGGED_IN, f_SignInit(&v), "a virtual key, no login");
    expect(row("VerifyInit"), CKR_USER_NOT_LOGGED_IN, f_VerifyInit(&v), "a virtual key, no login");
    v.obj = g_aes;
    uint8_t iv[12] = {0};
    CK_GCM_PARAMS gcm = {iv, sizeof(iv), 96, NULL, 0, 128};
    CK_MECHANISM m_gcm = {CKM_AES_GCM, &gcm, sizeof(gcm)};
    expect(row("EncryptInit"), CKR_USER_NOT_LOGGED_IN, p11->C_EncryptInit(g_s, &m_gcm, g_aes),
           "a virtual key, no login");
    v.obj = g_va;
    expect(row("GetAttributeValue"), CKR_OBJECT_HANDLE_INVALID, f_GetAttributeValue(&v),
           "a private virtual object, no login");
    expect(row("GetObjectSize"), CKR_OBJECT_HANDLE_INVALID, f_GetObjectSize(&v),
           "a private virtual object, no login");
}

static void test_misuse__the_security_officer_derives_nothing(void **state)
{
    assert_rv(CKR_OK, p11->C_Logout(g_s));
    const char *so = getenv("DDSM_TEST_SO_PIN");
    assert_rv(CKR_OK, p11->C_Login(g_s, CKU_SO, (CK_UTF8CHAR_PTR)so, strlen(so)));
    CK_OBJECT_HANDLE out = 0;
    expect(row("DeriveKey"), CKR_USER_NOT_LOGGED_IN,
           p11->C_DeriveKey(g_s, &m_derive, CK_DDSM_ROOT_HANDLE, NULL, 0, &out), "as the SO");
    CK_OBJECT_HANDLE h[64];
    size_t n = p11_find(g_s, NULL, 0, h, 64);
    for (size_t i = 0; i < n; i++)
        assert_true(h[i] < 0x80000000UL);
    struct callv v = {0, g_s, g_va, g_hmac, 0};
    expect(row("SignInit"), CKR_USER_NOT_LOGGED_IN, f_SignInit(&v), "a virtual key as the SO");
    expect(row("GetAttributeValue"), CKR_OBJECT_HANDLE_INVALID, f_GetAttributeValue(&v),
           "a virtual object as the SO");
    expect(row("Login"), CKR_USER_ANOTHER_ALREADY_LOGGED_IN,
           p11->C_Login(g_s, CKU_USER, PIN, PIN_LEN), "the user while the SO is logged in");
    CK_SESSION_HANDLE ro = CK_INVALID_HANDLE;
    expect(row("OpenSession"), CKR_SESSION_READ_WRITE_SO_EXISTS,
           p11->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &ro), "R/O while the SO is in");
    expect(row("OpenSession"), CKR_SESSION_PARALLEL_NOT_SUPPORTED,
           p11->C_OpenSession(0, CKF_RW_SESSION, NULL, NULL, &ro), "without CKF_SERIAL_SESSION");
    assert_int_equal(ro, CK_INVALID_HANDLE);
    assert_int_equal(out, 0);
    assert_rv(CKR_OK, p11->C_Logout(g_s));
}

/* The module never hands the application a session of its own, even one whose number it guesses
 * (they are logged in: closing or logging out through one would be a bypass). */
static void test_misuse__the_module_own_sessions_are_out_of_reach(void **state)
{
    uint8_t sig[32];
    assert_rv(CKR_OK, p11_hmac_sign(g_s, g_va, data4, 4, sig));
    for (CK_SESSION_HANDLE h = 1; h <= 64; h++) {
        if (h == g_s)
            continue;
        CK_SESSION_INFO si;
        expect(row("GetSessionInfo"), CKR_SESSION_HANDLE_INVALID, p11->C_GetSessionInfo(h, &si),
               "a session the application did not open");
        expect(row("Logout"), CKR_SESSION_HANDLE_INVALID, p11->C_Logout(h),
               "a session the application did not open");
        expect(row("CloseSession"), CKR_SESSION_HANDLE_INVALID, p11->C_CloseSession(h),
               "a session the application did not open");
    }
    /* Still logged in, and the module still derives through its sessions. */
    assert_rv(CKR_OK, p11_hmac_sign(g_s, g_va, data4, 4, sig));
}

static void test_misuse__interface_entry_points_refuse_bad_arguments(void **state)
{
    ddsm_C_GetInterface_fn gi = (ddsm_C_GetInterface_fn)(uintptr_t)p11_sym("C_GetInterface");
    ddsm_C_GetInterfaceList_fn gil =
        (ddsm_C_GetInterfaceList_fn)(uintptr_t)p11_sym("C_GetInterfaceList");
    CK_INTERFACE_PTR iface = NULL;
    CK_VERSION v99 = {9, 9}, v240 = {2, 40}, v241 = {2, 41};
    assert_rv(CKR_ARGUMENTS_BAD, gil(NULL, NULL));
    assert_rv(CKR_ARGUMENTS_BAD, gi(NULL, NULL, NULL, 0));
    assert_rv(CKR_ARGUMENTS_BAD, gi((CK_UTF8CHAR_PTR) "PKCS 11 ", NULL, &iface, 0));
    assert_rv(CKR_ARGUMENTS_BAD, gi((CK_UTF8CHAR_PTR) "", NULL, &iface, 0));
    assert_rv(CKR_ARGUMENTS_BAD, gi(NULL, &v99, &iface, 0));
    assert_rv(CKR_ARGUMENTS_BAD, gi(NULL, &v241, &iface, 0));
    assert_rv(CKR_ARGUMENTS_BAD, gi(NULL, &v240, &iface, ~(CK_FLAGS)0));
    assert_null(iface);
    assert_rv(CKR_OK, gi((CK_UTF8CHAR_PTR) "PKCS 11", &v240, &iface, 0));
    assert_ptr_equal(iface->pFunctionList, p11);
}

int main(void)
{
    p11_load();
    p11_setup_store();
#define T(f) cmocka_unit_test_setup_teardown(f, snapshot, unchanged)
    const struct CMUnitTest uninit[] = {
        cmocka_unit_test(test_misuse__the_function_list_is_complete_and_every_slot_is_in_the_table),
        cmocka_unit_test(test_misuse__every_function_before_initialize_is_not_initialized),
        cmocka_unit_test(test_misuse__every_function_after_finalize_is_not_initialized),
    };
    const struct CMUnitTest live[] = {
        T(test_misuse__every_required_null_pointer_is_arguments_bad),
        T(test_misuse__bad_slots_are_slot_id_invalid),
        T(test_misuse__bad_session_handles_are_session_handle_invalid),
        T(test_misuse__bad_object_and_key_handles_are_refused_precisely),
        T(test_misuse__the_root_and_virtual_keys_are_refused_where_they_do_not_belong),
        T(test_misuse__operation_steps_without_their_init_are_not_initialized),
        T(test_misuse__a_second_init_is_operation_active_and_the_first_survives),
        T(test_misuse__single_part_after_update_ends_the_operation),
        T(test_misuse__session_calls_out_of_order),
        T(test_misuse__wrong_lengths_are_refused_precisely),
        T(test_misuse__a_read_only_session_refuses_every_write),
        T(test_misuse__without_login_nothing_is_derived_nor_visible),
        T(test_misuse__the_security_officer_derives_nothing),
        T(test_misuse__the_module_own_sessions_are_out_of_reach),
        T(test_misuse__interface_entry_points_refuse_bad_arguments),
    };
    int failed = cmocka_run_group_tests_name("misuse, not initialised", uninit, NULL, NULL);
    failed += cmocka_run_group_tests_name("misuse", live, group_setup, group_teardown);
    return failed;
}
