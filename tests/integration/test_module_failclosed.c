/* SPDX-License-Identifier: Apache-2.0 */
/* Bounded staleness fails closed: with PostgreSQL stopped (so the LISTEN link is down too), a
 * cached key older than cache.staleness_ms is not used without re-validation, which fails:
 * CKR_DEVICE_ERROR with DDSM_DEVERR_STORE_DOWN. Once the server is back the module recovers by
 * itself. Uses its own PostgreSQL cluster so that stopping it disturbs no other test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p11_support.h"

static char pgdir[2048], services[2048];

static void cluster(const char *verb)
{
    char cmd[8192];
    snprintf(cmd, sizeof(cmd), "'%s' %s '%s' >/dev/null", services, verb, pgdir);
    assert_int_equal(system(cmd), 0);
}

static void read_env(char *host, size_t hlen, char *port, size_t plen)
{
    char path[2100], line[2048];
    snprintf(path, sizeof(path), "%s/env.sh", pgdir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        if (strncmp(line, "export PGHOST=", 14) == 0)
            snprintf(host, hlen, "%s", line + 14);
        else if (strncmp(line, "export PGPORT=", 14) == 0)
            snprintf(port, plen, "%s", line + 14);
    }
    fclose(f);
}

static CK_ULONG device_error(CK_SESSION_HANDLE s)
{
    CK_SESSION_INFO info;
    assert_rv(CKR_OK, p11->C_GetSessionInfo(s, &info));
    return info.ulDeviceError;
}

static void test_failclosed__stale_keys_are_not_used_while_the_store_is_down(void **state)
{
    char host[2048] = "", port[2048] = "", conninfo[8192], cmd[8192];
    snprintf(pgdir, sizeof(pgdir), "%s/pg", getenv("DDSM_TEST_DIR"));
    snprintf(services, sizeof(services), "%s/scripts/lib/services", getenv("DDSM_SOURCE_DIR"));
    cluster("start");
    read_env(host, sizeof(host), port, sizeof(port));
    snprintf(cmd, sizeof(cmd), "'%s/createdb' -h '%s' -p %s -U postgres ddsm",
             getenv("DDSM_TEST_PGBIN"), host, port);
    assert_int_equal(system(cmd), 0);
    snprintf(conninfo, sizeof(conninfo),
             "host=%s port=%s user=postgres dbname=ddsm connect_timeout=2", host, port);
    p11_write_conf("own-cluster", conninfo, "[cache]\nstaleness_ms = 500\n");
    /* p11_setup_store and p11_audit_count use $DDSM_TEST_CONNINFO: point it there too. */
    setenv("DDSM_TEST_CONNINFO", conninfo, 1);
    p11_setup_store();

    assert_rv(CKR_OK, p11->C_Initialize(NULL));
    CK_SESSION_HANDLE s = p11_open_user();
    CK_OBJECT_HANDLE h = p11_find_label(s, "vec-a/" VEC_A_PATH);
    uint8_t sig[32];
    assert_rv(CKR_OK, p11_hmac_sign(s, h, (const uint8_t *)"up", 2, sig));

    cluster("halt");
    p11_sleep_ms(800); /* beyond staleness_ms */
    assert_rv(CKR_DEVICE_ERROR, p11_hmac_sign(s, h, (const uint8_t *)"down", 4, sig));
    assert_int_equal(device_error(s), DDSM_DEVERR_STORE_DOWN);
    CK_OBJECT_CLASS cls;
    CK_ATTRIBUTE a = {CKA_CLASS, &cls, sizeof(cls)};
    assert_rv(CKR_DEVICE_ERROR, p11->C_GetAttributeValue(s, h, &a, 1));

    cluster("start");
    CK_RV rv = CKR_DEVICE_ERROR;
    while (rv != CKR_OK) { /* it reconnects by itself; one that never does meets ctest's timeout */
        rv = p11_hmac_sign(s, h, (const uint8_t *)"back", 4, sig);
        if (rv != CKR_OK)
            p11_sleep_ms(100);
    }
    assert_rv(CKR_OK, rv);
    uint8_t want[32];
    p11_hmac_expected(VEC_A_KEY0, (const uint8_t *)"back", 4, want);
    assert_memory_equal(sig, want, 32);
    assert_rv(CKR_OK, p11->C_CloseSession(s));
    assert_rv(CKR_OK, p11->C_Finalize(NULL));
}

/* Whatever happened, the private cluster goes away. */
static int remove_cluster(void **state)
{
    char cmd[8192];
    if (pgdir[0] == '\0')
        return 0;
    snprintf(cmd, sizeof(cmd), "'%s' stop '%s' >/dev/null 2>&1", services, pgdir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    p11_load();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failclosed__stale_keys_are_not_used_while_the_store_is_down),
    };
    return cmocka_run_group_tests_name("failclosed", tests, NULL, remove_cluster);
}
