/* SPDX-License-Identifier: Apache-2.0 */
/* Single flight (see flight.h). One mutex guards the table; each flight has its own condition
 * variable. A flight is freed by whoever leaves it last: the leader when nobody followed, else
 * the last follower to wake. */
#include "flight.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BUCKETS 64

struct ddsm_flight {
    struct ddsm_flight *next;
    uint32_t hash;
    size_t key_len;
    unsigned waiters; /* followers still inside ddsm_flight_join */
    bool landed;
    CK_RV rv;
    CK_ULONG detail;
    void *result; /* referenced by the flight while followers remain */
    pthread_cond_t cond;
    unsigned char key[];
};

struct ddsm_flights {
    pthread_mutex_t lock;
    ddsm_flight *buckets[BUCKETS];
    ddsm_flight_ref_fn ref, unref;
    unsigned long led, followed;
};

static uint32_t hash_of(const void *key, size_t n)
{
    const unsigned char *b = key;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 16777619u;
    return h;
}

CK_RV ddsm_flights_new(ddsm_flight_ref_fn ref, ddsm_flight_ref_fn unref, ddsm_flights **out)
{
    ddsm_flights *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return CKR_HOST_MEMORY;
    if (pthread_mutex_init(&f->lock, NULL) != 0) {
        free(f);
        return CKR_CANT_LOCK;
    }
    f->ref = ref;
    f->unref = unref;
    *out = f;
    return CKR_OK;
}

void ddsm_flights_free(ddsm_flights *f)
{
    if (f == NULL)
        return;
    pthread_mutex_destroy(&f->lock);
    free(f);
}

static void flight_free(ddsm_flights *f, ddsm_flight *fl)
{
    if (fl->result != NULL)
        f->unref(fl->result);
    pthread_cond_destroy(&fl->cond);
    free(fl);
}

bool ddsm_flight_join(ddsm_flights *f, const void *key, size_t key_len, ddsm_flight **lead,
                      CK_RV *rv, CK_ULONG *detail, void **result)
{
    *lead = NULL;
    if (f == NULL || key_len > DDSM_FLIGHT_KEY_MAX)
        return true;
    uint32_t h = hash_of(key, key_len);
    pthread_mutex_lock(&f->lock);
    ddsm_flight *fl = f->buckets[h % BUCKETS];
    while (fl != NULL &&
           (fl->hash != h || fl->key_len != key_len || memcmp(fl->key, key, key_len) != 0))
        fl = fl->next;
    if (fl == NULL) {
        fl = calloc(1, sizeof(*fl) + key_len);
        if (fl != NULL && pthread_cond_init(&fl->cond, NULL) != 0) {
            free(fl);
            fl = NULL;
        }
        if (fl != NULL) {
            fl->hash = h;
            fl->key_len = key_len;
            memcpy(fl->key, key, key_len);
            fl->next = f->buckets[h % BUCKETS];
            f->buckets[h % BUCKETS] = fl;
            f->led++;
        }
        pthread_mutex_unlock(&f->lock);
        *lead = fl; /* NULL: out of memory, work alone */
        return true;
    }
    fl->waiters++;
    f->followed++;
    while (!fl->landed)
        pthread_cond_wait(&fl->cond, &f->lock);
    *rv = fl->rv;
    *detail = fl->detail;
    if (fl->rv == CKR_OK) {
        f->ref(fl->result);
        *result = fl->result;
    }
    bool last = --fl->waiters == 0;
    pthread_mutex_unlock(&f->lock);
    if (last)
        flight_free(f, fl);
    return false;
}

void ddsm_flight_land(ddsm_flights *f, ddsm_flight *fl, CK_RV rv, CK_ULONG detail, void *result)
{
    if (f == NULL || fl == NULL)
        return;
    pthread_mutex_lock(&f->lock);
    ddsm_flight **link = &f->buckets[fl->hash % BUCKETS];
    while (*link != fl)
        link = &(*link)->next;
    *link = fl->next;
    fl->next = NULL;
    fl->landed = true;
    fl->rv = rv;
    fl->detail = detail;
    if (rv == CKR_OK && result != NULL) {
        f->ref(result);
        fl->result = result;
    } else if (rv == CKR_OK) {
        fl->rv = CKR_FUNCTION_FAILED; /* a leader must land a success with its result */
    }
    bool nobody = fl->waiters == 0;
    if (!nobody)
        pthread_cond_broadcast(&fl->cond);
    pthread_mutex_unlock(&f->lock);
    if (nobody)
        flight_free(f, fl);
}

void ddsm_flights_stats(ddsm_flights *f, unsigned long *led, unsigned long *followed)
{
    pthread_mutex_lock(&f->lock);
    *led = f->led;
    *followed = f->followed;
    pthread_mutex_unlock(&f->lock);
}
