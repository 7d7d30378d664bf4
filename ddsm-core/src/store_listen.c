/* SPDX-License-Identifier: Apache-2.0 */
/* The LISTEN side of the store: its own connection on DDSM_NOTIFY_CHANNEL, so that lifecycle
 * changes reach every module instance at once. Notifications sent while the link is down are lost
 * (PostgreSQL does not queue them for absent listeners): ddsm_listener_generation() changes on
 * every re-established LISTEN, and the caller must then re-validate what it caches. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ddsm/log.h"
#include "ddsm/policy.h"
#include "ddsm/store.h"
#include "store_pq.h"

struct ddsm_listener {
    struct ddsm_pq pq;
    uint64_t listen_gen; /* pq.generation on which LISTEN succeeded; 0: not listening */
    uint64_t generation; /* successful LISTENs so far */
    ddsm_zone_notify_cb zone_cb; /* DDSM_ZONE_NOTIFY_CHANNEL (ddsm/policy.h), may be NULL */
    void *zone_arg;
};

void ddsm_listener_on_zone(ddsm_listener *l, ddsm_zone_notify_cb cb, void *arg)
{
    if (l == NULL)
        return;
    l->zone_cb = cb;
    l->zone_arg = arg;
}

static ddsm_err listen_now(ddsm_listener *l)
{
    if (l->pq.conn != NULL && l->listen_gen == l->pq.generation)
        return DDSM_OK;
    ddsm_err err = ddsm_pq_ensure(&l->pq, NULL);
    if (err != DDSM_OK)
        return err;
    /* A channel name is an identifier, not a value: it cannot be a parameter. It is our own
     * compile-time constant. */
    const struct ddsm_pq_query q = {
        .mode = DDSM_PQ_SCRIPT,
        .what = "listen",
        .sql = "LISTEN " DDSM_NOTIFY_CHANNEL "; LISTEN " DDSM_ZONE_NOTIFY_CHANNEL,
    };
    PGresult *res = NULL;
    err = ddsm_pq_exec(&l->pq, &q, &res, NULL);
    PQclear(res);
    if (err != DDSM_OK) {
        ddsm_pq_reset(&l->pq);
        return err == DDSM_E_STORE_DOWN ? err : DDSM_E_STORE;
    }
    l->listen_gen = l->pq.generation;
    l->generation++;
    return DDSM_OK;
}

ddsm_err ddsm_listener_open(const char *conninfo, const ddsm_store_opts *opts,
                            ddsm_listener **out)
{
    if (conninfo == NULL || out == NULL)
        return DDSM_E_ARG;
    ddsm_listener *l = calloc(1, sizeof *l);
    if (l == NULL)
        return DDSM_E_NOMEM;
    ddsm_err err = ddsm_pq_init(&l->pq, conninfo, opts);
    if (err != DDSM_OK) {
        ddsm_pq_fini(&l->pq);
        free(l);
        return err;
    }
    /* LISTEN needs no privilege, and listen_conninfo may name another server than the store's
     * (a replica, a direct link past a pooler) where the schema's grants do not apply. */
    l->pq.role = DDSM_ROLE_ANY;
    /* Listen at once, so that nothing sent after open returns is missed. A server that is down
     * now is not an error: the first wait reports DDSM_E_STORE_DOWN and keeps trying. */
    if (listen_now(l) != DDSM_OK)
        ddsm_log(DDSM_LOG_WARN, "listener: %s", l->pq.errmsg);
    *out = l;
    return DDSM_OK;
}

void ddsm_listener_close(ddsm_listener *l)
{
    if (l == NULL)
        return;
    ddsm_pq_fini(&l->pq);
    free(l);
}

uint64_t ddsm_listener_generation(const ddsm_listener *l)
{
    return l != NULL ? l->generation : 0;
}

int ddsm_listener_socket(const ddsm_listener *l)
{
    if (l == NULL || l->pq.conn == NULL || l->listen_gen != l->pq.generation)
        return -1;
    return PQsocket(l->pq.conn);
}

/* "<uuid> <counter> <STATE>", exactly. */
static bool parse_payload(const char *p, ddsm_uuid *id, uint64_t *counter, ddsm_state *state)
{
    size_t n = strlen(p);
    if (n < DDSM_UUID_TEXT_LEN + 4 || p[DDSM_UUID_TEXT_LEN] != ' ')
        return false;
    if (ddsm_uuid_parse(p, DDSM_UUID_TEXT_LEN, id) != DDSM_OK)
        return false;
    const char *c = p + DDSM_UUID_TEXT_LEN + 1;
    if (*c < '0' || *c > '9' || (*c == '0' && c[1] != ' '))
        return false;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(c, &end, 10);
    if (errno != 0 || end == c || *end != ' ' || v > INT64_MAX)
        return false;
    if (ddsm_state_parse(end + 1, state) != DDSM_OK)
        return false;
    *counter = v;
    return true;
}

/* Hand every queued notification to cb; returns how many were ours. */
static unsigned deliver(ddsm_listener *l, ddsm_notify_cb cb, void *arg)
{
    unsigned n = 0;
    PGnotify *nt;
    while (l->pq.conn != NULL && (nt = PQnotifies(l->pq.conn)) != NULL) {
        ddsm_uuid id;
        uint64_t counter;
        ddsm_state state;
        bool zone_on = false;
        char zone[DDSM_ZONE_NAME_MAX + 1];
        if (strcmp(nt->relname, DDSM_ZONE_NOTIFY_CHANNEL) == 0) {
            if (!ddsm_zone_notify_parse(nt->extra, &id, &zone_on, zone)) {
                ddsm_log(DDSM_LOG_WARN, "listener: ignoring a malformed zone notification (%zu "
                         "bytes)", strlen(nt->extra));
            } else {
                n++;
                if (l->zone_cb != NULL)
                    l->zone_cb(&id, zone_on, zone, l->zone_arg);
            }
        } else if (strcmp(nt->relname, DDSM_NOTIFY_CHANNEL) != 0) {
            /* Not ours (someone LISTENed on this session by hand?): ignore. */
        } else if (!parse_payload(nt->extra, &id, &counter, &state)) {
            ddsm_log(DDSM_LOG_WARN, "listener: ignoring a malformed notification (%zu bytes)",
                     strlen(nt->extra));
        } else {
            n++;
            if (cb != NULL)
                cb(&id, counter, state, arg);
        }
        PQfreemem(nt);
    }
    return n;
}

static void sleep_until(int64_t deadline_ms)
{
    int64_t left = deadline_ms - ddsm_pq_now_ms();
    if (left <= 0)
        return;
    struct timespec ts = {.tv_sec = left / 1000, .tv_nsec = (long)(left % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

ddsm_err ddsm_listener_wait(ddsm_listener *l, int timeout_ms, ddsm_notify_cb cb, void *arg)
{
    if (l == NULL || timeout_ms < 0)
        return DDSM_E_ARG;
    int64_t deadline = ddsm_pq_now_ms() + timeout_ms;

    if (l->pq.conn == NULL || l->listen_gen != l->pq.generation) {
        ddsm_err err = listen_now(l);
        if (err != DDSM_OK) {
            /* Pace the reconnect attempts of a caller that loops on wait. */
            sleep_until(deadline);
            return err;
        }
        ddsm_log(DDSM_LOG_INFO, "listener: listening on %s", DDSM_NOTIFY_CHANNEL);
    }

    for (;;) {
        if (deliver(l, cb, arg) > 0)
            return DDSM_OK;
        if (PQstatus(l->pq.conn) != CONNECTION_OK)
            break;
        int64_t left = deadline - ddsm_pq_now_ms();
        if (left <= 0)
            return DDSM_OK;
        struct pollfd p = {.fd = PQsocket(l->pq.conn), .events = POLLIN, .revents = 0};
        int n = poll(&p, 1, left > INT32_MAX ? INT32_MAX : (int)left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        if (n == 0)
            return DDSM_OK;
        if (!PQconsumeInput(l->pq.conn)) {
            /* Hand out what arrived before the link died, then report it down. */
            deliver(l, cb, arg);
            break;
        }
        /* Drain any result the server pushed (a FATAL before it closes the link). */
        while (!PQisBusy(l->pq.conn)) {
            PGresult *r = PQgetResult(l->pq.conn);
            if (r == NULL)
                break;
            PQclear(r);
        }
    }
    ddsm_err err = ddsm_pq_fail(&l->pq, DDSM_E_STORE_DOWN, "listener: connection lost: %s",
                                PQerrorMessage(l->pq.conn));
    ddsm_log(DDSM_LOG_WARN, "%s", l->pq.errmsg);
    ddsm_pq_reset(&l->pq);
    l->listen_gen = 0;
    return err;
}

ddsm_err ddsm_listener_fence(ddsm_listener *l, ddsm_notify_cb cb, void *arg)
{
    if (l == NULL)
        return DDSM_E_ARG;
    if (l->pq.conn == NULL || l->listen_gen != l->pq.generation)
        return DDSM_E_STORE_DOWN;
    const struct ddsm_pq_query q = {
        .mode = DDSM_PQ_PARAMS,
        .what = "listen fence",
        .sql = "SELECT 1",
    };
    PGresult *res = NULL;
    ddsm_err err = ddsm_pq_exec(&l->pq, &q, &res, NULL);
    PQclear(res);
    deliver(l, cb, arg); /* what arrived before the answer, even if the link died after it */
    if (err == DDSM_OK)
        return DDSM_OK;
    ddsm_log(DDSM_LOG_WARN, "%s", l->pq.errmsg);
    ddsm_pq_reset(&l->pq);
    l->listen_gen = 0;
    return err == DDSM_E_STORE_DOWN ? err : DDSM_E_STORE;
}

const char *ddsm_listener_errmsg(const ddsm_listener *l)
{
    if (l == NULL)
        return "listener: not open";
    return l->pq.errmsg[0] != '\0' ? l->pq.errmsg : "no error";
}
