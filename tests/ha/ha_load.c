/* SPDX-License-Identifier: Apache-2.0 */
/* The application side of the high-availability tests (tests/ha): one process that loads the
 * module like any application and derives from THREADS threads until STOPFILE exists, logging
 * every outcome, one line each, to LOG:
 *     OK|ERR <rv> <ulDeviceError> L|Z <asset> <path> <start ms> <end ms>
 * (times are CLOCK_REALTIME milliseconds, so the test can place them around its kill). Every
 * derivation gets a path of its own, m/<tag>/<thread>/<n>, so the test can find its audit row,
 * row by row. Kind L is the load over the ASSETS (comma-separated UUIDs, round robin); kind Z is
 * a derivation of ZONE_ASSET (an asset of a disabled zone), every 16th round of thread 0.
 * Nothing is retried and the process never restarts: after a failure the thread goes on with the
 * next path, so the log shows when the module began to hand out keys again by itself.
 *   ha_load MODULE PIN LOG STOPFILE THREADS TAG ASSETS ZONE_ASSET */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

#include "ddsm/pkcs11-ddsm.h"

#define MAX_THREADS 64
#define MAX_ASSETS 16

static CK_FUNCTION_LIST_PTR p11;
static int g_log = -1;
static const char *g_stop;
static int g_tag;
static unsigned char g_assets[MAX_ASSETS][16];
static char g_asset_text[MAX_ASSETS][37];
static int g_nassets;
static unsigned char g_zone_asset[16];
static char g_zone_text[37];
static CK_SLOT_ID g_slot;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int uuid_parse(const char *text, unsigned char out[16])
{
    int n = 0;
    for (const char *p = text; *p != '\0' && *p != ','; p++) {
        if (*p == '-')
            continue;
        unsigned v;
        if (n >= 16 || sscanf(p, "%2x", &v) != 1)
            return -1;
        out[n++] = (unsigned char)v;
        p++;
        if (*p == '\0')
            return -1;
    }
    return n == 16 ? 0 : -1;
}

/* One line with one write(2) on an O_APPEND descriptor: lines of threads never interleave. */
static void log_line(CK_RV rv, CK_ULONG deverr, char kind, const char *asset, const char *path,
                     long long t0, long long t1)
{
    char line[256];
    int n = snprintf(line, sizeof(line), "%s 0x%lx 0x%lx %c %s %s %lld %lld\n",
                     rv == CKR_OK ? "OK" : "ERR", (unsigned long)rv, (unsigned long)deverr, kind,
                     asset, path, t0, t1);
    if (n > 0 && n < (int)sizeof(line) && write(g_log, line, (size_t)n) != n) {
        perror("ha_load: log");
        exit(1);
    }
}

static CK_RV derive(CK_SESSION_HANDLE s, const unsigned char asset[16], const char *path,
                    CK_ULONG *deverr)
{
    unsigned char param[DDSM_DERIVE_PARAM_MAX];
    CK_MECHANISM m = {CKM_DDSM_DERIVE, param, ddsm_derive_param(param, sizeof(param), asset, path)};
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    CK_RV rv = p11->C_DeriveKey(s, &m, CK_DDSM_ROOT_HANDLE, NULL, 0, &h);
    *deverr = 0;
    if (rv == CKR_OK) {
        /* The key was handed out; its handle is not needed any more. */
        (void)p11->C_DestroyObject(s, h);
    } else {
        CK_SESSION_INFO info;
        if (p11->C_GetSessionInfo(s, &info) == CKR_OK)
            *deverr = info.ulDeviceError;
    }
    return rv;
}

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    CK_SESSION_HANDLE s;
    CK_RV rv = p11->C_OpenSession(g_slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
    if (rv != CKR_OK) {
        fprintf(stderr, "ha_load: C_OpenSession: 0x%lx\n", (unsigned long)rv);
        exit(1);
    }
    for (long n = 0; access(g_stop, F_OK) != 0; n++) {
        char path[64];
        CK_ULONG deverr;
        snprintf(path, sizeof(path), "m/%d/%d/%ld", g_tag, id, n);
        int zone = id == 0 && n % 16 == 15;
        int a = (int)(n % g_nassets);
        long long t0 = now_ms();
        rv = derive(s, zone ? g_zone_asset : g_assets[a], path, &deverr);
        log_line(rv, deverr, zone ? 'Z' : 'L', zone ? g_zone_text : g_asset_text[a], path, t0,
                 now_ms());
        if (rv != CKR_OK) {
            /* Do not spin on a refusal: 10 ms while the store is down (the window is measured
             * from these), 100 ms after a policy refusal (each writes a DENY row). */
            struct timespec pause = {0, (rv == CKR_FUNCTION_REJECTED ? 100 : 10) * 1000 * 1000};
            nanosleep(&pause, NULL);
        }
    }
    (void)p11->C_CloseSession(s);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 9) {
        fprintf(stderr, "usage: ha_load MODULE PIN LOG STOPFILE THREADS TAG ASSETS ZONE_ASSET\n");
        return 2;
    }
    const char *module = argv[1], *pin = argv[2];
    g_stop = argv[4];
    int threads = atoi(argv[5]);
    g_tag = atoi(argv[6]);
    if (threads < 1 || threads > MAX_THREADS || g_tag < 0) {
        fprintf(stderr, "ha_load: bad THREADS or TAG\n");
        return 2;
    }
    for (const char *p = argv[7]; p != NULL && *p != '\0'; g_nassets++) {
        if (g_nassets == MAX_ASSETS || uuid_parse(p, g_assets[g_nassets]) != 0) {
            fprintf(stderr, "ha_load: bad ASSETS\n");
            return 2;
        }
        snprintf(g_asset_text[g_nassets], sizeof(g_asset_text[0]), "%.36s", p);
        p = strchr(p, ',');
        p = p != NULL ? p + 1 : NULL;
    }
    if (g_nassets == 0 || uuid_parse(argv[8], g_zone_asset) != 0) {
        fprintf(stderr, "ha_load: bad ASSETS or ZONE_ASSET\n");
        return 2;
    }
    snprintf(g_zone_text, sizeof(g_zone_text), "%.36s", argv[8]);
    g_log = open(argv[3], O_WRONLY | O_CREAT | O_APPEND | O_TRUNC, 0644);
    if (g_log < 0) {
        perror(argv[3]);
        return 1;
    }

    void *lib = dlopen(module, RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        fprintf(stderr, "ha_load: %s\n", dlerror());
        return 1;
    }
    CK_C_GetFunctionList gfl = (CK_C_GetFunctionList)dlsym(lib, "C_GetFunctionList");
    CK_C_INITIALIZE_ARGS init = {.flags = CKF_OS_LOCKING_OK};
    CK_ULONG nslots = 1;
    CK_SESSION_HANDLE s0;
    CK_RV rv = gfl == NULL ? CKR_GENERAL_ERROR : gfl(&p11);
    if (rv == CKR_OK)
        rv = p11->C_Initialize(&init);
    if (rv == CKR_OK)
        rv = p11->C_GetSlotList(CK_TRUE, &g_slot, &nslots);
    if (rv == CKR_OK)
        rv = p11->C_OpenSession(g_slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s0);
    if (rv == CKR_OK)
        rv = p11->C_Login(s0, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
    if (rv != CKR_OK) {
        fprintf(stderr, "ha_load: module setup failed: 0x%lx\n", (unsigned long)rv);
        return 1;
    }
    /* Ready: the test starts its kill only when every process has said so. */
    printf("ready\n");
    fflush(stdout);

    pthread_t t[MAX_THREADS];
    for (int i = 0; i < threads; i++)
        if (pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i) != 0) {
            fprintf(stderr, "ha_load: pthread_create failed\n");
            return 1;
        }
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    (void)p11->C_Logout(s0);
    (void)p11->C_CloseSession(s0);
    rv = p11->C_Finalize(NULL);
    close(g_log);
    if (rv != CKR_OK) {
        fprintf(stderr, "ha_load: C_Finalize: 0x%lx\n", (unsigned long)rv);
        return 1;
    }
    return 0;
}
