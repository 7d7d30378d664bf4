/* SPDX-License-Identifier: Apache-2.0 */
/* The store connection pool as the context's parts see it: a lease of one connection for the
 * calling thread's exclusive use, given back when done. The context fills it (ctx_hooks.c) and
 * owns the pool; a part holds it from C_Initialize until the part is freed. */
#ifndef DDSM_STOREPOOL_H
#define DDSM_STOREPOOL_H

#include "ddsm/store.h"

typedef struct ddsm_storepool {
    /* DDSM_E_TIMEOUT when every pooled connection stays busy. */
    ddsm_err (*acquire)(void *owner, ddsm_store **out);
    void (*release)(void *owner, ddsm_store *st);
    void *owner;
} ddsm_storepool;

#endif
