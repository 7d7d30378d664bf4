/* SPDX-License-Identifier: Apache-2.0 */
/* Lock wrappers: pthreads, or the application's CK_C_INITIALIZE_ARGS callbacks. Nothing in
 * module/src below this header: any part may use it without depending on the context. */
#ifndef DDSM_LOCK_H
#define DDSM_LOCK_H

#include "ddsm/err.h"
#include "ddsm/pkcs11-compat.h"

typedef struct ddsm_mutex ddsm_mutex;
CK_RV ddsm_mutex_new(ddsm_mutex **out) DDSM_WUR;
void ddsm_mutex_free(ddsm_mutex *m); /* NULL accepted */
void ddsm_mutex_lock(ddsm_mutex *m);
void ddsm_mutex_unlock(ddsm_mutex *m);
/* From now on create mutexes with the application's callbacks (args != NULL) or pthreads (NULL).
 * Mutexes remember how they were made. */
void ddsm_mutex_use_app(const CK_C_INITIALIZE_ARGS *args);

/* Readers-writer lock for read-mostly tables (the derived-key cache): pthreads, or, when the
 * application's callbacks are in use, one of its mutexes for readers and writers alike. */
typedef struct ddsm_rwlock ddsm_rwlock;
CK_RV ddsm_rwlock_new(ddsm_rwlock **out) DDSM_WUR;
void ddsm_rwlock_free(ddsm_rwlock *l); /* NULL accepted */
void ddsm_rwlock_rdlock(ddsm_rwlock *l);
void ddsm_rwlock_wrlock(ddsm_rwlock *l);
void ddsm_rwlock_unlock(ddsm_rwlock *l);

#endif
