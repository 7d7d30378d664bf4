/* SPDX-License-Identifier: Apache-2.0 */
/* The requester behind p11-kit server (module/src/peer.h): the client's uid from the kernel's
 * peer credentials of a connected AF_UNIX stream socket, only in p11-kit-remote, and nothing
 * from anything else. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "peer.h"

static void test_peer__names_the_connected_clients_uid(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    char out[96], want[96];
    snprintf(want, sizeof(want), "p11-kit-remote/uid=%u", (unsigned)getuid());
    assert_true(ddsm_peer_requester("p11-kit-remote", "p11-kit-remote", sv[0], out, sizeof(out)));
    assert_string_equal(out, want);
    snprintf(want, sizeof(want), "payments/uid=%u", (unsigned)getuid());
    assert_true(ddsm_peer_requester("payments", "p11-kit-remote", sv[1], out, sizeof(out)));
    assert_string_equal(out, want);
    close(sv[0]);
    close(sv[1]);
}

static void test_peer__only_in_p11_kit_remote(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    char out[96] = "untouched";
    /* An application whose stdin happens to be a socket: its peer is not who asks. */
    assert_false(ddsm_peer_requester("app", "python3", sv[0], out, sizeof(out)));
    assert_false(ddsm_peer_requester("app", "p11-kit-remote-x", sv[0], out, sizeof(out)));
    assert_false(ddsm_peer_requester("app", "", sv[0], out, sizeof(out)));
    assert_false(ddsm_peer_requester("app", NULL, sv[0], out, sizeof(out)));
    assert_string_equal(out, "untouched");
    close(sv[0]);
    close(sv[1]);
}

static void test_peer__nothing_from_what_is_not_a_connected_stream(void **state)
{
    (void)state;
    char out[96] = "untouched";
    int p[2];
    assert_int_equal(pipe(p), 0); /* p11-kit remote over ssh: stdin is a pipe */
    assert_false(ddsm_peer_requester("r", "p11-kit-remote", p[0], out, sizeof(out)));
    close(p[0]);
    close(p[1]);
    int dg[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM, 0, dg), 0);
    assert_false(ddsm_peer_requester("r", "p11-kit-remote", dg[0], out, sizeof(out)));
    close(dg[0]);
    close(dg[1]);
    int lone = socket(AF_UNIX, SOCK_STREAM, 0); /* never connected: no peer */
    assert_true(lone >= 0);
    assert_false(ddsm_peer_requester("r", "p11-kit-remote", lone, out, sizeof(out)));
    close(lone);
    int inet = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(inet >= 0);
    assert_false(ddsm_peer_requester("r", "p11-kit-remote", inet, out, sizeof(out)));
    close(inet);
    assert_false(ddsm_peer_requester("r", "p11-kit-remote", -1, out, sizeof(out)));
    assert_string_equal(out, "untouched");
}

static void test_peer__too_small_a_buffer_is_left_untouched(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    char out[12] = "untouched";
    assert_false(ddsm_peer_requester("p11-kit-remote", "p11-kit-remote", sv[0], out, sizeof(out)));
    assert_string_equal(out, "untouched");
    close(sv[0]);
    close(sv[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_peer__names_the_connected_clients_uid),
        cmocka_unit_test(test_peer__only_in_p11_kit_remote),
        cmocka_unit_test(test_peer__nothing_from_what_is_not_a_connected_stream),
        cmocka_unit_test(test_peer__too_small_a_buffer_is_left_untouched),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
