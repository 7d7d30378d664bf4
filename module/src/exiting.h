/* SPDX-License-Identifier: Apache-2.0 */
/* Whether the process is exiting, for the calls a host makes from its own exit handlers.
 *
 * A host that registered an exit handler before it loaded the module may close sessions and call
 * C_Finalize from it: OpenSSL does (OPENSSL_cleanup tears down pkcs11-provider, which closes its
 * sessions and finalises its module). Exit handlers run in reverse order of registration, so by
 * then the backend's own exit-time destructors have already run (SoftHSMv2 registers its C++
 * singletons when it is loaded and initialised, after the host's handler): calling into it then
 * crashes the process. Once the process is exiting, the module ends its own state as usual but
 * makes no call into the backend (no C_CloseSession, no C_Finalize, no dlclose): the process is
 * going away, and the backend keeps nothing that a finalisation would save (every change it makes
 * is written when it is made). */
#ifndef DDSM_EXITING_H
#define DDSM_EXITING_H

#include <stdbool.h>

/* Registers, once per process, the exit handler that marks the process as exiting. Called after
 * the backend's first C_Initialize: every host handler registered before that (before the module
 * was loaded, as OpenSSL's) runs after ours. */
void ddsm_exiting_watch(void);
/* True once exit() (or a return from main) has reached the module's handler. */
bool ddsm_exiting(void);

#endif
