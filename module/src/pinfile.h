/* SPDX-License-Identifier: Apache-2.0 */
/* A custody PIN file ([backend] root_pin_file, standby_root_pin_file): its first line is the PIN
 * (a '\r' before the newline is dropped; further lines are ignored, as ddsmctl reads it). The file
 * is checked on the descriptor read, as the configuration is: refused when others may write it or
 * another user owns it. */
#ifndef DDSM_PINFILE_H
#define DDSM_PINFILE_H

#include <stddef.h>

#include "ddsm/hsm.h"

/* Log in to session s of hsm with the PIN of file (key: the configuration key that names it, for
 * the log). Touches a secret: the PIN lives in secure memory, is wiped, and is logged as its length
 * only (*pin_len, 0 when the file gave none). CKR_DEVICE_ERROR, logged, when the file is
 * unusable; else the backend's answer to the login. */
CK_RV ddsm_pinfile_login_secret(ddsm_hsm *hsm, CK_SESSION_HANDLE s, const char *file,
                                const char *key, size_t *pin_len);

#endif
