/* SPDX-License-Identifier: Apache-2.0 */
#include "pinfile.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ddsm/config.h"
#include "ddsm/log.h"
#include "ddsm/secmem.h"

#define PIN_MAX 256
#define PIN_FILE_MAX 4096

CK_RV ddsm_pinfile_login_secret(ddsm_hsm *hsm, CK_SESSION_HANDLE s, const char *file,
                                const char *key, size_t *pin_len)
{
    CK_RV rv = CKR_DEVICE_ERROR;
    char *text = ddsm_secure_alloc(PIN_FILE_MAX + 1);
    char untrusted[160];
    struct stat st;
    size_t got = 0, len = 0;
    int fd = -1;

    *pin_len = 0;
    if (text == NULL)
        return CKR_HOST_MEMORY;
    fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        ddsm_log(DDSM_LOG_ERROR, "cannot open %s %s: %s", key, file, strerror(errno));
        goto out;
    }
    /* Checked on the descriptor read, as the configuration is (it may have changed since). */
    if (fstat(fd, &st) != 0 ||
        ddsm_config_file_trusted(&st, untrusted, sizeof(untrusted)) != DDSM_OK) {
        ddsm_log(DDSM_LOG_ERROR, "%s %s refused: %s", key, file, untrusted);
        goto out;
    }
    for (;;) {
        ssize_t n = read(fd, text + got, PIN_FILE_MAX + 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            ddsm_log(DDSM_LOG_ERROR, "cannot read %s %s: %s", key, file, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        got += (size_t)n;
        if (got > PIN_FILE_MAX) {
            ddsm_log(DDSM_LOG_ERROR, "%s %s is larger than %d bytes", key, file, PIN_FILE_MAX);
            goto out;
        }
    }
    while (len < got && text[len] != '\n')
        len++;
    if (len > 0 && text[len - 1] == '\r')
        len--;
    if (len == 0) {
        ddsm_log(DDSM_LOG_ERROR, "%s %s: the first line is empty", key, file);
        goto out;
    }
    if (len > PIN_MAX || memchr(text, '\0', len) != NULL) {
        ddsm_log(DDSM_LOG_ERROR, "%s %s: the first line is %s", key, file,
                 len > PIN_MAX ? "longer than 256 bytes" : "not text (a NUL byte)");
        goto out;
    }
    *pin_len = len;
    rv = ddsm_hsm_login_secret(hsm, s, text, len);
out:
    if (fd >= 0)
        close(fd);
    ddsm_secure_free(text, PIN_FILE_MAX + 1);
    return rv;
}
