/* SPDX-License-Identifier: Apache-2.0 */
/* The client's uid behind p11-kit server (see peer.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* struct ucred */
#endif
#include "peer.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

bool ddsm_peer_requester(const char *base, const char *prog, int fd, char *out, size_t cap)
{
    if (base == NULL || prog == NULL || out == NULL || strcmp(prog, "p11-kit-remote") != 0)
        return false;
    struct sockaddr_un sa;
    socklen_t len = sizeof(sa);
    int type = 0;
    socklen_t tlen = sizeof(type);
    if (getsockname(fd, (struct sockaddr *)&sa, &len) != 0 || sa.sun_family != AF_UNIX ||
        getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) != 0 || type != SOCK_STREAM)
        return false;
    struct ucred cr;
    len = sizeof(cr);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0 || len != sizeof(cr))
        return false;
    /* A listening or unconnected socket has no peer: the kernel answers uid -1 for it. */
    if (cr.uid == (uid_t)-1)
        return false;
    char buf[256];
    int n = snprintf(buf, sizeof(buf), "%s/uid=%u", base, (unsigned)cr.uid);
    if (n < 0 || (size_t)n >= cap || (size_t)n >= sizeof(buf))
        return false;
    memcpy(out, buf, (size_t)n + 1);
    return true;
}
