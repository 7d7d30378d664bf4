/* SPDX-License-Identifier: Apache-2.0 */
/* The audit log's pure parts: the canonical row encoding (golden bytes from docs/audit.md), the
 * audit key (the reserved derivation, checked against an independent SP 800-108 computation),
 * row MACs and chains (sequence, chaining, and what happens after a write whose outcome is
 * known or unknown), and instance ids. No services. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../ddsm-core/src/store_audit.h"
#include "ddsm/audit.h"
#include "ddsm/derive.h"
#include "ddsm/uuid.h"
#include "hex_support.h"

/* Computed independently (Python hmac/struct following docs/audit.md; the key also with
 * `openssl kdf ... KBKDF` on the docs/design.md vector seed 00..1f and an all-zero context). */
#define AUDIT_KEY_HEX "bda64921dc9cd76526ffcd8c3d314e5d160dd46e0e4cc334293c49c538cf53d2"
#define ROW1_HEX                                                                                   \
    "4444534d41554431010000000644455249564501000000106f9619ff8b86d011b42d00c04fc964ff010000000f"   \
    "6d2f3434272f30272f30272f302f30010000000800000000000000030100000006414354495645010000000800"   \
    "064423b194bec00100000005616c696365010000000c686f73742f34322f616263640100000008000000000000"   \
    "000700"
#define ROW1_MAC_HEX "ce13fa1d7f17ba26a9d64477d52ce6c606abc2b640b9555261abb2dd90d3229d"
#define ROW2_HEX                                                                                   \
    "4444534d41554431010000000444454e59000000000100000008ffffffffffffffff0001000000017801000000"   \
    "0800000000000000080100000000"
#define ROW2_MAC_HEX "c223b178da2ab97abda2bfda08cb9665cebbddcde26241b327643963054247aa"

static void assert_hex(const uint8_t *p, size_t n, const char *want)
{
    char got[2 * 256 + 1];
    assert_true(n <= 256);
    hexs_encode(p, n, got);
    assert_string_equal(got, want);
}

static ddsm_audit_key *vector_key(void)
{
    uint8_t seed[32];
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)i;
    ddsm_prf prf;
    ddsm_audit_key *k = NULL;
    assert_int_equal(ddsm_prf_openssl_new(seed, sizeof seed, &prf), DDSM_OK);
    assert_int_equal(ddsm_audit_key_derive(&prf, &k), DDSM_OK);
    ddsm_prf_openssl_free(&prf);
    return k;
}

static ddsm_audit_row row1(void)
{
    ddsm_audit_row r;
    memset(&r, 0, sizeof r);
    r.event = "DERIVE";
    r.has_asset = true;
    assert_int_equal(ddsm_uuid_parse("6f9619ff-8b86-d011-b42d-00c04fc964ff", 36, &r.asset),
                     DDSM_OK);
    r.path = "m/44'/0'/0'/0/0";
    r.has_counter = true;
    r.counter = 3;
    r.state = "ACTIVE";
    r.ts_us = 1763769954123456;
    r.requester = "alice";
    r.instance = "host/42/abcd";
    r.seq = 7;
    return r;
}

/* Every nullable field NULL, a negative timestamp, an empty detail. */
static ddsm_audit_row row2(void)
{
    ddsm_audit_row r;
    memset(&r, 0, sizeof r);
    r.event = "DENY";
    r.ts_us = -1;
    r.instance = "x";
    r.seq = 8;
    r.detail = "";
    return r;
}

static void test_audit__encoding_matches_the_documented_bytes(void **state)
{
    (void)state;
    uint8_t buf[512], want[512];
    size_t len = 0;
    ddsm_audit_row r = row1();
    assert_int_equal(ddsm_audit_encode(&r, buf, sizeof buf, &len), DDSM_OK);
    size_t wn = hexs_decode(ROW1_HEX, want, sizeof want);
    assert_int_equal(len, wn);
    assert_memory_equal(buf, want, wn);

    r = row2();
    assert_int_equal(ddsm_audit_encode(&r, buf, sizeof buf, &len), DDSM_OK);
    wn = hexs_decode(ROW2_HEX, want, sizeof want);
    assert_int_equal(len, wn);
    assert_memory_equal(buf, want, wn);

    /* Asking for the length only, or into a short buffer, gives the same length. */
    size_t len2 = 0;
    assert_int_equal(ddsm_audit_encode(&r, NULL, 0, &len2), DDSM_OK);
    assert_int_equal(len2, wn);
    assert_int_equal(ddsm_audit_encode(&r, buf, 3, &len2), DDSM_OK);
    assert_int_equal(len2, wn);
}

/* NULL and empty, and fields that would read the same if concatenated, encode differently. */
static void test_audit__encoding_is_injective_on_nulls_and_boundaries(void **state)
{
    (void)state;
    uint8_t a[512], b[512];
    size_t la = 0, lb = 0;
    ddsm_audit_row r = row1(), s = row1();
    s.detail = "";
    assert_int_equal(ddsm_audit_encode(&r, a, sizeof a, &la), DDSM_OK);
    assert_int_equal(ddsm_audit_encode(&s, b, sizeof b, &lb), DDSM_OK);
    assert_false(la == lb && memcmp(a, b, la) == 0);

    r = row1();
    s = row1();
    r.requester = "ab";
    r.instance = "c";
    s.requester = "a";
    s.instance = "bc";
    assert_int_equal(ddsm_audit_encode(&r, a, sizeof a, &la), DDSM_OK);
    assert_int_equal(ddsm_audit_encode(&s, b, sizeof b, &lb), DDSM_OK);
    assert_int_equal(la, lb);
    assert_memory_not_equal(a, b, la);

    r = row1();
    s = row1();
    s.has_counter = false; /* NULL counter vs counter 0 */
    r.counter = 0;
    assert_int_equal(ddsm_audit_encode(&r, a, sizeof a, &la), DDSM_OK);
    assert_int_equal(ddsm_audit_encode(&s, b, sizeof b, &lb), DDSM_OK);
    assert_false(la == lb && memcmp(a, b, la) == 0);
}

static void test_audit__encode_refuses_missing_event_or_instance(void **state)
{
    (void)state;
    size_t len = 99;
    ddsm_audit_row r = row1();
    r.event = NULL;
    assert_int_equal(ddsm_audit_encode(&r, NULL, 0, &len), DDSM_E_ARG);
    r = row1();
    r.instance = NULL;
    assert_int_equal(ddsm_audit_encode(&r, NULL, 0, &len), DDSM_E_ARG);
    assert_int_equal(len, 99);
}

static void test_audit__key_is_the_reserved_nil_depth0_derivation(void **state)
{
    (void)state;
    ddsm_audit_key *k = vector_key();
    /* The key never leaves the object: check it through a MAC over a known row. */
    uint8_t prev[32] = {0}, mac[32], key_bytes[32];
    ddsm_audit_row r = row1();
    assert_int_equal(ddsm_audit_row_mac(k, prev, &r, mac), DDSM_OK);
    assert_hex(mac, 32, ROW1_MAC_HEX);

    /* And the same MAC from the raw key bytes. */
    hexs_decode(AUDIT_KEY_HEX, key_bytes, sizeof key_bytes);
    ddsm_audit_key *k2 = NULL;
    assert_int_equal(ddsm_audit_key_from_secret(key_bytes, &k2), DDSM_OK);
    uint8_t mac2[32];
    assert_int_equal(ddsm_audit_row_mac(k2, prev, &r, mac2), DDSM_OK);
    assert_memory_equal(mac, mac2, 32);
    ddsm_audit_key_free(k);
    ddsm_audit_key_free(k2);
}

static void test_audit__mac_chains_from_the_previous_mac(void **state)
{
    (void)state;
    ddsm_audit_key *k = vector_key();
    uint8_t zero[32] = {0}, m1[32], m2[32], other[32];
    ddsm_audit_row r1 = row1(), r2 = row2();
    assert_int_equal(ddsm_audit_row_mac(k, zero, &r1, m1), DDSM_OK);
    assert_int_equal(ddsm_audit_row_mac(k, m1, &r2, m2), DDSM_OK);
    assert_hex(m2, 32, ROW2_MAC_HEX);
    /* The same row after another predecessor has another MAC. */
    assert_int_equal(ddsm_audit_row_mac(k, zero, &r2, other), DDSM_OK);
    assert_memory_not_equal(m2, other, 32);
    /* Any edited field changes the MAC. */
    r1.counter = 4;
    assert_int_equal(ddsm_audit_row_mac(k, zero, &r1, other), DDSM_OK);
    assert_memory_not_equal(m1, other, 32);
    r1 = row1();
    r1.ts_us += 1;
    assert_int_equal(ddsm_audit_row_mac(k, zero, &r1, other), DDSM_OK);
    assert_memory_not_equal(m1, other, 32);
    ddsm_audit_key_free(k);
}

static void test_audit__chain_numbers_rows_and_advances_only_on_commit(void **state)
{
    (void)state;
    ddsm_audit_key *k = vector_key();
    ddsm_audit_chain *c = NULL;
    assert_int_equal(ddsm_audit_chain_new(k, "host/42/abcd", &c), DDSM_OK);
    assert_string_equal(ddsm_audit_chain_instance(c), "host/42/abcd");
    assert_int_equal(ddsm_audit_chain_seq(c), 0);

    ddsm_audit_row rows[2] = {row1(), row2()};
    uint8_t macs[2][32];
    assert_int_equal(ddsm_audit_chain_seal(c, rows, 2, macs), DDSM_OK);
    assert_int_equal(rows[0].seq, 1);
    assert_int_equal(rows[1].seq, 2);
    assert_string_equal(rows[0].instance, "host/42/abcd");
    /* The MACs are the chain's: row 1 from zeros, row 2 from row 1. */
    uint8_t zero[32] = {0}, want[32];
    assert_int_equal(ddsm_audit_row_mac(k, zero, &rows[0], want), DDSM_OK);
    assert_memory_equal(macs[0], want, 32);
    assert_int_equal(ddsm_audit_row_mac(k, macs[0], &rows[1], want), DDSM_OK);
    assert_memory_equal(macs[1], want, 32);

    /* A second seal while one is open is refused (two writers on one chain). */
    ddsm_audit_row extra = row1();
    uint8_t xm[1][32];
    assert_int_equal(ddsm_audit_chain_seal(c, &extra, 1, xm), DDSM_E_ARG);

    /* Not written: the same numbers and MACs next time. */
    ddsm_audit_chain_settle(c, 2, macs[1], DDSM_CHAIN_NOT_WRITTEN);
    assert_int_equal(ddsm_audit_chain_seq(c), 0);
    uint8_t again[2][32];
    assert_int_equal(ddsm_audit_chain_seal(c, rows, 2, again), DDSM_OK);
    assert_int_equal(rows[1].seq, 2);
    assert_memory_equal(again, macs, sizeof again);
    ddsm_audit_chain_settle(c, 2, again[1], DDSM_CHAIN_COMMITTED);
    assert_int_equal(ddsm_audit_chain_seq(c), 2);

    /* The next row chains from the last committed one. */
    ddsm_audit_row r3 = row1();
    uint8_t m3[1][32];
    assert_int_equal(ddsm_audit_chain_seal(c, &r3, 1, m3), DDSM_OK);
    assert_int_equal(r3.seq, 3);
    assert_int_equal(ddsm_audit_row_mac(k, again[1], &r3, want), DDSM_OK);
    assert_memory_equal(m3[0], want, 32);

    /* Unknown outcome: a new chain under a new instance id, from seq 1 and zeros. */
    ddsm_audit_chain_settle(c, 1, m3[0], DDSM_CHAIN_UNKNOWN);
    assert_string_equal(ddsm_audit_chain_instance(c), "host/42/abcd#2");
    assert_int_equal(ddsm_audit_chain_seq(c), 0);
    ddsm_audit_row r4 = row1();
    uint8_t m4[1][32];
    assert_int_equal(ddsm_audit_chain_seal(c, &r4, 1, m4), DDSM_OK);
    assert_int_equal(r4.seq, 1);
    assert_string_equal(r4.instance, "host/42/abcd#2");
    assert_int_equal(ddsm_audit_row_mac(k, zero, &r4, want), DDSM_OK);
    assert_memory_equal(m4[0], want, 32);
    ddsm_audit_chain_settle(c, 1, m4[0], DDSM_CHAIN_UNKNOWN);
    assert_string_equal(ddsm_audit_chain_instance(c), "host/42/abcd#3");

    ddsm_audit_chain_free(c);
    ddsm_audit_key_free(k);
}

static void test_audit__chain_refuses_bad_instance_ids(void **state)
{
    (void)state;
    ddsm_audit_key *k = vector_key();
    ddsm_audit_chain *c = (ddsm_audit_chain *)0x1;
    char longid[DDSM_AUDIT_INSTANCE_MAX + 2];
    memset(longid, 'a', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    assert_int_equal(ddsm_audit_chain_new(k, "", &c), DDSM_E_INPUT);
    assert_int_equal(ddsm_audit_chain_new(k, longid, &c), DDSM_E_INPUT);
    assert_int_equal(ddsm_audit_chain_new(k, "tab\there", &c), DDSM_E_INPUT);
    assert_int_equal(ddsm_audit_chain_new(k, NULL, &c), DDSM_E_INPUT);
    assert_ptr_equal(c, (ddsm_audit_chain *)0x1); /* untouched on failure */
    longid[DDSM_AUDIT_INSTANCE_MAX] = '\0';
    assert_int_equal(ddsm_audit_chain_new(k, longid, &c), DDSM_OK);
    ddsm_audit_chain_free(c);
    ddsm_audit_key_free(k);
}

static void test_audit__instance_ids_name_host_pid_and_differ(void **state)
{
    (void)state;
    char a[128], b[128], host[64], want[160], small[8];
    assert_int_equal(ddsm_audit_instance_id("ddsmctl/", a, sizeof a), DDSM_OK);
    assert_int_equal(ddsm_audit_instance_id(NULL, b, sizeof b), DDSM_OK);
    assert_int_equal(gethostname(host, sizeof host), 0);
    host[sizeof host - 1] = '\0';
    snprintf(want, sizeof want, "ddsmctl/%s/%ld/", host, (long)getpid());
    assert_int_equal(strncmp(a, want, strlen(want)), 0);
    assert_int_equal(strlen(a), strlen(want) + 8);
    assert_string_not_equal(a + strlen("ddsmctl/"), b); /* random suffixes differ */
    assert_int_equal(ddsm_audit_instance_id(NULL, small, sizeof small), DDSM_E_INPUT);
}

static void test_audit__timestamps_format_exactly_in_utc(void **state)
{
    (void)state;
    char t[40];
    ddsm_audit_format_ts(1763769954123456, t);
    assert_string_equal(t, "2025-11-22 00:05:54.123456+00");
    ddsm_audit_format_ts(0, t);
    assert_string_equal(t, "1970-01-01 00:00:00.000000+00");
    ddsm_audit_format_ts(-1, t);
    assert_string_equal(t, "1969-12-31 23:59:59.999999+00");
}

/* Per-writer keys and the checkpoint key (docs/design.md "Reserved derivations"). The vectors
 * were computed from the spec, not from this code: the keys with Python hmac and with
 * `openssl kdf -keylen 32 -kdfopt mac:HMAC -kdfopt digest:SHA256 -kdfopt mode:COUNTER
 * -kdfopt hexkey:<seed 00..1f> -kdfopt hexsalt:<label> -kdfopt hexinfo:<writer> KBKDF`, the MACs
 * with Python hmac over the encoding of docs/audit.md (tests/support/audit_forge.py). */
#define WRITER_MSG_HEX                                                                             \
    "000000014444534d2d61756469742d7772697465722d763100686f73742f34322f616263643132333400000100"
#define WRITER_ROW1_MAC_HEX "b2deee05bc424b62ce56f68bf5c2767871d4f9e30048bdb3c55e684784b48975"
#define CHECKPOINT_MAC_HEX "5fa97b432ce1e080d7ff1881f25a671a7aa0a75def769ecd003a52566dce3d05"

static void vector_prf(ddsm_prf *prf)
{
    uint8_t seed[32];
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)i;
    assert_int_equal(ddsm_prf_openssl_new(seed, sizeof seed, prf), DDSM_OK);
}

static void test_audit__writer_key_matches_the_spec_vector(void **state)
{
    (void)state;
    uint8_t msg[DDSM_AUDIT_KDF_MSG_MAX], mac[DDSM_AUDIT_MAC_LEN], zero[DDSM_AUDIT_MAC_LEN] = {0};
    size_t n = ddsm_audit_writer_message("host/42/abcd1234", msg, sizeof msg);
    assert_hex(msg, n, WRITER_MSG_HEX);
    /* Never a derivation message ("DDSM-v1" label) nor the fingerprint message ('D' first). */
    assert_memory_not_equal(msg + 4, DDSM_LABEL "\0", 8);
    assert_int_equal(msg[0], 0);

    ddsm_prf prf;
    ddsm_audit_key *k = NULL, *legacy = NULL;
    vector_prf(&prf);
    assert_int_equal(ddsm_audit_writer_key_derive(&prf, "host/42/abcd1234", &k), DDSM_OK);
    assert_int_equal(ddsm_audit_key_derive(&prf, &legacy), DDSM_OK);
    assert_string_equal(ddsm_audit_key_writer(k), "host/42/abcd1234");
    assert_null(ddsm_audit_key_writer(legacy));
    ddsm_audit_row r = row1();
    r.instance = "host/42/abcd1234/c0";
    assert_int_equal(ddsm_audit_row_mac(k, zero, &r, mac), DDSM_OK);
    assert_hex(mac, sizeof mac, WRITER_ROW1_MAC_HEX);

    /* Bad writer ids derive nothing. */
    ddsm_audit_key *bad = NULL;
    assert_int_equal(ddsm_audit_writer_key_derive(&prf, "", &bad), DDSM_E_INPUT);
    assert_int_equal(ddsm_audit_writer_key_derive(&prf, "a#b", &bad), DDSM_E_INPUT);
    assert_int_equal(ddsm_audit_writer_key_derive(&prf, "tab\there", &bad), DDSM_E_INPUT);
    char longw[DDSM_AUDIT_WRITER_MAX + 2];
    memset(longw, 'w', sizeof longw - 1);
    longw[sizeof longw - 1] = '\0';
    assert_int_equal(ddsm_audit_writer_key_derive(&prf, longw, &bad), DDSM_E_INPUT);
    assert_null(bad);
    ddsm_audit_key_free(k);
    ddsm_audit_key_free(legacy);
    ddsm_prf_openssl_free(&prf);
}

static void test_audit__checkpoint_key_matches_the_spec_vector(void **state)
{
    (void)state;
    ddsm_prf prf;
    ddsm_audit_key *ck = NULL, *legacy = NULL;
    ddsm_audit_chain *c = NULL;
    uint8_t mac[DDSM_AUDIT_MAC_LEN];
    static const char line[] = "DDSM-AUDIT-CHECKPOINT 1\n";
    vector_prf(&prf);
    assert_int_equal(ddsm_audit_checkpoint_key_derive(&prf, &ck), DDSM_OK);
    assert_int_equal(ddsm_audit_key_derive(&prf, &legacy), DDSM_OK);
    assert_int_equal(ddsm_audit_checkpoint_mac(ck, (const uint8_t *)line, sizeof line - 1, mac),
                     DDSM_OK);
    assert_hex(mac, sizeof mac, CHECKPOINT_MAC_HEX);
    /* The checkpoint key chains nothing, and no other key MACs a checkpoint. */
    assert_int_equal(ddsm_audit_chain_new(ck, "x/c0", &c), DDSM_E_ARG);
    assert_int_equal(ddsm_audit_checkpoint_mac(legacy, (const uint8_t *)line, 1, mac), DDSM_E_ARG);
    assert_null(c);
    ddsm_audit_key_free(ck);
    ddsm_audit_key_free(legacy);
    ddsm_prf_openssl_free(&prf);
}

static void test_audit__writer_is_read_off_the_chain_name(void **state)
{
    (void)state;
    char w[DDSM_AUDIT_WRITER_MAX + 1];
    assert_true(ddsm_audit_writer_of("host/42/abcd1234/c0", w, sizeof w));
    assert_string_equal(w, "host/42/abcd1234");
    assert_true(ddsm_audit_writer_of("host/42/abcd1234/c12#3", w, sizeof w));
    assert_string_equal(w, "host/42/abcd1234");
    assert_true(ddsm_audit_writer_of("ddsmctl/h/1/c1234567/c0", w, sizeof w));
    assert_string_equal(w, "ddsmctl/h/1/c1234567");
    static const char *const none[] = {
        "host/42/abcd1234", "x/c01",  "x/c",   "/c0", "x/c0#0", "x/c0#",
        "x/c0#2#3",         "a#b/c0", "x/c0x", "c0"};
    for (size_t i = 0; i < sizeof none / sizeof none[0]; i++)
        assert_false(ddsm_audit_writer_of(none[i], w, sizeof w));

    /* A per-writer key chains only its own writer's names. */
    ddsm_prf prf;
    ddsm_audit_key *k = NULL;
    ddsm_audit_chain *c = NULL;
    vector_prf(&prf);
    assert_int_equal(ddsm_audit_writer_key_derive(&prf, "host/42/abcd1234", &k), DDSM_OK);
    assert_int_equal(ddsm_audit_chain_new(k, "host/42/abcd1234", &c), DDSM_E_INPUT);
    assert_int_equal(ddsm_audit_chain_new(k, "host/42/other/c0", &c), DDSM_E_INPUT);
    assert_int_equal(ddsm_audit_chain_new(k, "host/42/abcd1234/c0#2", &c), DDSM_E_INPUT);
    assert_null(c);
    assert_int_equal(ddsm_audit_chain_new(k, "host/42/abcd1234/c3", &c), DDSM_OK);
    ddsm_audit_chain_free(c);
    ddsm_audit_key_free(k);
    ddsm_prf_openssl_free(&prf);
}

static void test_audit__kind_names_are_stable(void **state)
{
    (void)state;
    assert_string_equal(ddsm_audit_kind_name(DDSM_AUDIT_LEGACY_KEY), "LEGACY_KEY");
    assert_string_equal(ddsm_audit_kind_name(DDSM_AUDIT_ROLLED_BACK), "ROLLED_BACK");
    assert_string_equal(ddsm_audit_kind_name(DDSM_AUDIT_CHAIN_GONE), "CHAIN_GONE");
    assert_string_equal(ddsm_audit_kind_name(DDSM_AUDIT_ANCHOR), "ANCHOR");
    assert_string_equal(ddsm_audit_kind_name(DDSM_AUDIT_EDITED), "EDITED");
    assert_string_equal(ddsm_audit_kind_name(DDSM_AUDIT_DELETED), "DELETED");
    assert_string_equal(ddsm_audit_kind_name(DDSM_AUDIT_REORDERED), "REORDERED");
    assert_string_equal(ddsm_audit_kind_name(DDSM_AUDIT_TRUNCATED), "TRUNCATED");
    assert_string_equal(ddsm_audit_kind_name(DDSM_AUDIT_PRE_CHAIN), "PRE_CHAIN");
    assert_string_equal(ddsm_audit_kind_name(DDSM_AUDIT__KINDS), "?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_audit__encoding_matches_the_documented_bytes),
        cmocka_unit_test(test_audit__encoding_is_injective_on_nulls_and_boundaries),
        cmocka_unit_test(test_audit__encode_refuses_missing_event_or_instance),
        cmocka_unit_test(test_audit__key_is_the_reserved_nil_depth0_derivation),
        cmocka_unit_test(test_audit__mac_chains_from_the_previous_mac),
        cmocka_unit_test(test_audit__chain_numbers_rows_and_advances_only_on_commit),
        cmocka_unit_test(test_audit__chain_refuses_bad_instance_ids),
        cmocka_unit_test(test_audit__instance_ids_name_host_pid_and_differ),
        cmocka_unit_test(test_audit__timestamps_format_exactly_in_utc),
        cmocka_unit_test(test_audit__writer_key_matches_the_spec_vector),
        cmocka_unit_test(test_audit__checkpoint_key_matches_the_spec_vector),
        cmocka_unit_test(test_audit__writer_is_read_off_the_chain_name),
        cmocka_unit_test(test_audit__kind_names_are_stable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
