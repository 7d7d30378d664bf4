/* SPDX-License-Identifier: Apache-2.0 */
/* The requester of audit rows when the module runs behind p11-kit server (the out-of-process
 * deployment, docs/deployment-p11kit.md). There the module's host is p11-kit-remote, which the
 * server forks for each client connection with the connection as its stdin; p11-kit passes
 * nothing of its client to the module, so every row would name the same program. The kernel
 * recorded the client's credentials when it connected (SO_PEERCRED), and no client can change
 * them afterwards: the module reads them and names the client's uid. */
#ifndef DDSM_PEER_H
#define DDSM_PEER_H

#include <stdbool.h>
#include <stddef.h>

/* When prog is "p11-kit-remote" and fd is a connected AF_UNIX stream socket whose peer
 * credentials the kernel gives: out = "<base>/uid=<peer uid>" and true. Otherwise (another
 * program, stdin not such a socket, out too small) false and out untouched: in-process, the
 * application's own stdin says nothing about who asks. */
bool ddsm_peer_requester(const char *base, const char *prog, int fd, char *out, size_t cap)
    __attribute__((warn_unused_result));

#endif
