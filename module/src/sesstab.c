/* SPDX-License-Identifier: Apache-2.0 */
#include "sesstab.h"

#include <stdlib.h>
#include <string.h>

#include "ddsm/secmem.h"
#include "ecop.h"

#define N_SHARDS 32
#define N_BUCKETS 64 /* per shard */

typedef struct shard {
    ddsm_mutex *lock;
    ddsm_sess *buckets[N_BUCKETS];
    size_t count;
} shard;

struct ddsm_sesstab {
    shard shards[N_SHARDS];
};

static shard *shard_of(ddsm_sesstab *t, CK_SESSION_HANDLE h)
{
    return &t->shards[(h * 0x9E3779B97F4A7C15ULL >> 40) % N_SHARDS];
}

static ddsm_sess **bucket_of(shard *sh, CK_SESSION_HANDLE h)
{
    return &sh->buckets[(h ^ (h >> 7)) % N_BUCKETS];
}

void ddsm_vop_reset(ddsm_vop *op)
{
    ddsm_kref_put(op->kref);
    ddsm_hmac_stream_free(op->stream);
    ddsm_ec_op_free(op->ec);
    if (op->aad != NULL) {
        ddsm_wipe(op->aad, op->aad_len);
        free(op->aad);
    }
    ddsm_wipe(op, sizeof(*op));
}

void ddsm_find_reset(ddsm_find *f)
{
    if (f->virt != f->few)
        free(f->virt);
    memset(f, 0, sizeof(*f));
}

static void sess_destroy(ddsm_sess *s)
{
    ddsm_vop_reset(&s->sign);
    ddsm_vop_reset(&s->verify);
    ddsm_vop_reset(&s->encrypt);
    ddsm_vop_reset(&s->decrypt);
    ddsm_find_reset(&s->find);
    ddsm_mutex_free(s->lock);
    free(s);
}

CK_RV ddsm_sesstab_new(ddsm_sesstab **out)
{
    CK_RV rv = CKR_HOST_MEMORY;
    ddsm_sesstab *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return rv;
    rv = CKR_OK;
    for (int i = 0; rv == CKR_OK && i < N_SHARDS; i++)
        rv = ddsm_mutex_new(&t->shards[i].lock);
    if (rv != CKR_OK) {
        ddsm_sesstab_free(t);
        return rv;
    }
    *out = t;
    return CKR_OK;
}

void ddsm_sesstab_free(ddsm_sesstab *t)
{
    if (t == NULL)
        return;
    for (int i = 0; i < N_SHARDS; i++) {
        for (int b = 0; b < N_BUCKETS; b++) {
            ddsm_sess *s = t->shards[i].buckets[b];
            while (s != NULL) {
                ddsm_sess *next = s->next;
                sess_destroy(s);
                s = next;
            }
        }
        ddsm_mutex_free(t->shards[i].lock);
    }
    free(t);
}

CK_RV ddsm_sesstab_add(ddsm_sesstab *t, CK_SESSION_HANDLE h)
{
    ddsm_sess *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return CKR_HOST_MEMORY;
    CK_RV rv = ddsm_mutex_new(&s->lock);
    if (rv != CKR_OK) {
        free(s);
        return rv;
    }
    s->h = h;
    atomic_init(&s->refs, 1); /* the table's */
    shard *sh = shard_of(t, h);
    ddsm_mutex_lock(sh->lock);
    ddsm_sess **b = bucket_of(sh, h);
    /* A backend may reuse the handle of a session closed behind our back: replace the record. */
    for (ddsm_sess **link = b; *link != NULL; link = &(*link)->next) {
        if ((*link)->h == h) {
            ddsm_sess *old = *link;
            *link = old->next;
            old->unlinked = true;
            sh->count--;
            if (atomic_fetch_sub(&old->refs, 1) == 1)
                sess_destroy(old);
            break;
        }
    }
    s->next = *b;
    *b = s;
    sh->count++;
    ddsm_mutex_unlock(sh->lock);
    return CKR_OK;
}

ddsm_sess *ddsm_sesstab_get(ddsm_sesstab *t, CK_SESSION_HANDLE h)
{
    shard *sh = shard_of(t, h);
    ddsm_sess *s;
    ddsm_mutex_lock(sh->lock);
    for (s = *bucket_of(sh, h); s != NULL; s = s->next)
        if (s->h == h)
            break;
    if (s != NULL)
        atomic_fetch_add(&s->refs, 1); /* linked: the table's reference keeps it alive */
    ddsm_mutex_unlock(sh->lock);
    return s;
}

void ddsm_sess_put(ddsm_sesstab *t, ddsm_sess *s)
{
    (void)t;
    /* Only an unlinked record can lose its last reference (the table holds one while linked). */
    if (s != NULL && atomic_fetch_sub(&s->refs, 1) == 1)
        sess_destroy(s);
}

void ddsm_sesstab_remove(ddsm_sesstab *t, CK_SESSION_HANDLE h)
{
    shard *sh = shard_of(t, h);
    ddsm_sess *gone = NULL;
    ddsm_mutex_lock(sh->lock);
    for (ddsm_sess **link = bucket_of(sh, h); *link != NULL; link = &(*link)->next) {
        if ((*link)->h == h) {
            gone = *link;
            *link = gone->next;
            gone->unlinked = true;
            sh->count--;
            if (atomic_fetch_sub(&gone->refs, 1) != 1)
                gone = NULL;
            break;
        }
    }
    ddsm_mutex_unlock(sh->lock);
    if (gone != NULL)
        sess_destroy(gone);
}

size_t ddsm_sesstab_count(ddsm_sesstab *t)
{
    size_t n = 0;
    for (int i = 0; i < N_SHARDS; i++) {
        ddsm_mutex_lock(t->shards[i].lock);
        n += t->shards[i].count;
        ddsm_mutex_unlock(t->shards[i].lock);
    }
    return n;
}

CK_RV ddsm_sesstab_list(ddsm_sesstab *t, CK_SESSION_HANDLE **out, size_t *n_out)
{
    size_t cap = 16, n = 0;
    CK_SESSION_HANDLE *list = malloc(cap * sizeof(*list));
    if (list == NULL)
        return CKR_HOST_MEMORY;
    for (int i = 0; i < N_SHARDS; i++) {
        shard *sh = &t->shards[i];
        ddsm_mutex_lock(sh->lock);
        for (int b = 0; b < N_BUCKETS; b++) {
            for (ddsm_sess *s = sh->buckets[b]; s != NULL; s = s->next) {
                if (n == cap) {
                    CK_SESSION_HANDLE *bigger = realloc(list, 2 * cap * sizeof(*list));
                    if (bigger == NULL) {
                        ddsm_mutex_unlock(sh->lock);
                        free(list);
                        return CKR_HOST_MEMORY;
                    }
                    list = bigger;
                    cap *= 2;
                }
                list[n++] = s->h;
            }
        }
        ddsm_mutex_unlock(sh->lock);
    }
    *out = list;
    *n_out = n;
    return CKR_OK;
}
