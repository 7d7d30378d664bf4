/* SPDX-License-Identifier: Apache-2.0 */
/* The EC signing-key scenario (module/src/ec.h), driven through the module's function list only:
 *   ec-sign   C_SignInit + C_Sign with virtual EC private keys derived before the clock starts,
 *             alternating CKM_ECDSA over a 32-byte digest with a secp256k1 key (libsecp256k1,
 *             RFC 6979) and CKM_EDDSA over a 64-byte message with an Ed25519 key (OpenSSL).
 * Its two assets, bench-ec-secp256k1 and bench-ec-ed25519, are registered and activated on first
 * use (chained audit rows, like the other bench assets). Each thread derives its own two keys
 * (C_DeriveKey(CKM_DDSM_DERIVE) on paths m/<run>/<thread> and m/<run>'/<thread>', never repeated
 * within a process): two audited derivations per thread and run, none while the clock runs. */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "bench.h"

#define EC_ASSETS 2
static const struct {
    const char *label, *type;
} ec_assets[EC_ASSETS] = {{"bench-ec-secp256k1", "secp256k1"}, {"bench-ec-ed25519", "ed25519"}};

/* Set by ec_prepare (before any thread starts), read by the threads. */
static ddsm_uuid ec_ids[EC_ASSETS];

/* Reuse or register and activate the two EC assets. Their default paths are never used. */
static bool ec_prepare(bench *b, char *why, size_t why_len)
{
    for (unsigned i = 0; i < EC_ASSETS; i++) {
        ddsm_asset a;
        ddsm_err e = bench_asset_ensure(b, ec_assets[i].label, ec_assets[i].type, "m/0'", &a);
        if (e != DDSM_OK) {
            snprintf(why, why_len, "asset %s: %s: %s (is the database migrated?)",
                     ec_assets[i].label, ddsm_err_str(e), ddsm_store_errmsg(b->store));
            return false;
        }
        if (strcmp(a.key_type, ec_assets[i].type) != 0 || !ddsm_state_derivable(a.state)) {
            snprintf(why, why_len, "asset %s is a %s asset in state %s, not an ACTIVE %s one",
                     ec_assets[i].label, a.key_type, ddsm_state_name(a.state), ec_assets[i].type);
            return false;
        }
        ec_ids[i] = a.id;
    }
    return true;
}

typedef struct ec_thread {
    bench_mod_thread base;
    CK_OBJECT_HANDLE key[EC_ASSETS]; /* secp256k1, Ed25519 private keys */
    uint8_t digest[32];              /* what CKM_ECDSA signs: a SHA-256 */
    uint8_t msg[BENCH_MSG_LEN];      /* what CKM_EDDSA signs */
} ec_thread;

/* C_DeriveKey(CKM_DDSM_DERIVE) of an EC asset's private key object (CKO_PRIVATE_KEY). */
static CK_RV ec_derive(bench *b, CK_SESSION_HANDLE s, const ddsm_uuid *asset, const char *path,
                       CK_OBJECT_HANDLE *out)
{
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)}};
    return bench_module_derive_tmpl(b, s, asset, path, t, 1, out);
}

static bool ec_init(bench_thread *t)
{
    if (!bench_mod_thread_init(t, sizeof(ec_thread)))
        return false;
    ec_thread *m = t->priv;
    for (unsigned i = 0; i < BENCH_MSG_LEN; i++)
        m->msg[i] = (uint8_t)(i * 13 + t->tid);
    unsigned int dlen = 0;
    if (EVP_Digest(m->msg, sizeof(m->msg), m->digest, &dlen, EVP_sha256(), NULL) != 1) {
        snprintf(t->why, sizeof(t->why), "SHA-256 failed");
        return false;
    }
    for (unsigned i = 0; i < EC_ASSETS; i++) {
        /* Ed25519 (SLIP-10) has hardened children only. */
        char path[64];
        snprintf(path, sizeof(path), i == 0 ? "m/%u/%u" : "m/%u'/%u'", t->run, t->tid);
        CK_RV rv = ec_derive(t->b, m->base.s, &ec_ids[i], path, &m->key[i]);
        if (rv != CKR_OK)
            return bench_thread_fail_rv(t, "C_DeriveKey (EC)", rv);
    }
    return true;
}

static bench_rc ec_sign_op(bench_thread *t, uint64_t i)
{
    ec_thread *m = t->priv;
    CK_FUNCTION_LIST_PTR fl = t->b->mod;
    bool ed = (i + t->tid) % 2 == 1;
    CK_MECHANISM mech = {ed ? CKM_EDDSA : CKM_ECDSA, NULL, 0};
    uint8_t sig[64];
    CK_ULONG sig_len = sizeof(sig);
    CK_RV rv = fl->C_SignInit(m->base.s, &mech, m->key[ed ? 1 : 0]);
    if (rv == CKR_OK)
        rv = ed ? fl->C_Sign(m->base.s, m->msg, sizeof(m->msg), sig, &sig_len)
                : fl->C_Sign(m->base.s, m->digest, sizeof(m->digest), sig, &sig_len);
    if (rv != CKR_OK) {
        bench_thread_fail_rv(t, ed ? "C_SignInit/C_Sign CKM_EDDSA" : "C_SignInit/C_Sign CKM_ECDSA",
                             rv);
        return BENCH_OP_FAIL;
    }
    if (sig_len != sizeof(sig)) {
        snprintf(t->why, sizeof(t->why), "a signature of %lu bytes", (unsigned long)sig_len);
        return BENCH_OP_FAIL;
    }
    return BENCH_OP_OK;
}

const bench_scenario bench_sc_ec_sign = {
    .name = "ec-sign",
    .about = "C_SignInit + C_Sign, alternating secp256k1 ECDSA (of a hash) and Ed25519 (64 bytes)",
    .needs_module = true,
    .needs_store = true,
    .prepare = ec_prepare,
    .thread_init = ec_init,
    .op = ec_sign_op,
    .thread_fini = bench_mod_thread_fini,
};
