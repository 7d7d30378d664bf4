/* SPDX-License-Identifier: Apache-2.0 */
/* Group commit: leader/follower batching of derivations over a few chained connections.
 *
 * One mutex guards the queue, the connections' busy flags, the asset cache and the stats; it is
 * never held across a round trip. Each waiting caller sleeps on its own node's condition
 * variable and is woken only when it has something to do: its row is done, or it is the head of
 * the queue when a connection became free or the queue changed under a leader (any queued caller
 * may lead; the head is enough to get a leader). Waking every waiter on every change (one
 * condition variable for all) cost 16 threads a futex wake-up and a trip through the scheduler
 * per batch, a third of the CPU time of a 16-thread derive run. A leader waiting for company
 * sleeps on the batcher's condition variable, signalled when a request is queued. Each
 * connection has its own chain, used only by the leader holding that connection. */
#include "ddsm/batch.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ddsm/log.h"
#include "ddsm/path.h"
#include "store_audit.h"

#define MSG_MAX 512
/* A stale expectation is corrected by the answer; DDSM_OPTIMISTIC_ATTEMPTS in a row
 * (store_audit.h) mean the assets keep changing under us. Once a batch has been split into one
 * statement per asset (run_batch), each of those is hit only by its own asset's changes: it keeps
 * trying longer before the rows fail closed. */
#define SPLIT_ATTEMPTS (4 * DDSM_OPTIMISTIC_ATTEMPTS)
#define REASON_MAX 500

struct node {
    pthread_cond_t cv; /* its caller waits here */
    const ddsm_derive_req *req;
    const char *reason; /* non-NULL: a policy DENY */
    struct node *next;
    bool queued; /* still in the queue (not taken by a leader) */
    bool done;
    ddsm_err err;
    uint64_t counter;
    ddsm_state state;
    char msg[MSG_MAX];
};

struct conn {
    ddsm_store *st;
    ddsm_audit_chain *chain;
    bool busy;
    int64_t started_ns; /* when its batch in flight started (CLOCK_MONOTONIC) */
    struct node **nodes;           /* batch_max: the batch being run */
    struct ddsm_batch_item *items; /* batch_max */
    ddsm_err *errs;                /* batch_max: each item's outcome (run_batch) */
    bool *written;                 /* batch_max */
};

struct ddsm_batcher {
    pthread_mutex_t lock;
    pthread_cond_t cond; /* leaders waiting for company */
    pthread_condattr_t cv_attr; /* CLOCK_MONOTONIC, for the nodes' condition variables */
    unsigned company_waiters;
    struct node *head, *tail;
    size_t queued;
    struct conn *conns;
    unsigned nconns;
    unsigned in_flight;
    unsigned batch_max;
    unsigned wait_us;
    struct ddsm_asset_cache cache;
    ddsm_batch_stats stats;
};

static _Thread_local char tl_msg[MSG_MAX];

const char *ddsm_batcher_errmsg(void)
{
    return tl_msg[0] != '\0' ? tl_msg : "no error";
}

static ddsm_err fail(ddsm_err e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static ddsm_err fail(ddsm_err e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tl_msg, sizeof tl_msg, fmt, ap);
    va_end(ap);
    return e;
}

ddsm_err ddsm_batcher_new(const char *conninfo, const ddsm_store_opts *opts, unsigned batch_max,
                          unsigned batch_wait_us, unsigned connections, const ddsm_audit_key *key,
                          const char *instance, ddsm_batcher **out)
{
    if (conninfo == NULL || key == NULL || instance == NULL || out == NULL)
        return DDSM_E_ARG;
    if (batch_max < 1 || batch_max > DDSM_BATCH_MAX_LIMIT)
        return fail(DDSM_E_INPUT, "batch_max %u is out of range (1..%d)", batch_max,
                    DDSM_BATCH_MAX_LIMIT);
    if (batch_wait_us > 1000000)
        return fail(DDSM_E_INPUT, "batch_wait_us %u is out of range (0..1000000)", batch_wait_us);
    if (connections < 1 || connections > DDSM_BATCH_CONNECTIONS_LIMIT)
        return fail(DDSM_E_INPUT, "connections %u is out of range (1..%d)", connections,
                    DDSM_BATCH_CONNECTIONS_LIMIT);
    if (strlen(instance) + 8 > DDSM_AUDIT_INSTANCE_MAX)
        return fail(DDSM_E_INPUT, "instance id is too long (at most %d characters)",
                    DDSM_AUDIT_INSTANCE_MAX - 8);

    ddsm_err e = DDSM_E_NOMEM;
    ddsm_batcher *b = calloc(1, sizeof *b);
    if (b == NULL)
        return e;
    pthread_mutex_init(&b->lock, NULL);
    pthread_condattr_init(&b->cv_attr);
    pthread_condattr_setclock(&b->cv_attr, CLOCK_MONOTONIC);
    pthread_cond_init(&b->cond, &b->cv_attr);
    b->batch_max = batch_max;
    b->wait_us = batch_wait_us;
    b->conns = calloc(connections, sizeof *b->conns);
    if (b->conns == NULL)
        goto fail;
    b->nconns = connections;
    for (unsigned i = 0; i < connections; i++) {
        struct conn *c = &b->conns[i];
        char name[DDSM_AUDIT_INSTANCE_MAX + 1];
        snprintf(name, sizeof name, "%s/c%u", instance, i);
        c->nodes = calloc(batch_max, sizeof *c->nodes);
        c->items = calloc(batch_max, sizeof *c->items);
        c->errs = calloc(batch_max, sizeof *c->errs);
        c->written = calloc(batch_max, sizeof *c->written);
        if (c->nodes == NULL || c->items == NULL || c->errs == NULL || c->written == NULL)
            goto fail;
        e = ddsm_store_open(conninfo, opts, &c->st);
        if (e != DDSM_OK) {
            c->st = NULL;
            fail(e, "cannot open store connection %u", i);
            goto fail;
        }
        e = ddsm_audit_chain_new(key, name, &c->chain);
        if (e != DDSM_OK) {
            fail(e, "cannot make the chain of connection %u", i);
            goto fail;
        }
        ddsm_store_set_audit(c->st, c->chain);
        /* These connections run the batch statement and little else: plan it once per session. */
        ddsm_store_set_generic_plans(c->st, true);
    }
    *out = b;
    return DDSM_OK;
fail:
    ddsm_batcher_free(b);
    return e;
}

void ddsm_batcher_free(ddsm_batcher *b)
{
    if (b == NULL)
        return;
    for (unsigned i = 0; b->conns != NULL && i < b->nconns; i++) {
        ddsm_store_close(b->conns[i].st);
        ddsm_audit_chain_free(b->conns[i].chain);
        free(b->conns[i].nodes);
        free(b->conns[i].items);
        free(b->conns[i].errs);
        free(b->conns[i].written);
    }
    free(b->conns);
    pthread_cond_destroy(&b->cond);
    pthread_condattr_destroy(&b->cv_attr);
    pthread_mutex_destroy(&b->lock);
    free(b);
}

void ddsm_batcher_invalidate(ddsm_batcher *b, const ddsm_uuid *asset)
{
    if (b == NULL || asset == NULL)
        return;
    pthread_mutex_lock(&b->lock);
    ddsm_asset_cache_forget(&b->cache, asset);
    pthread_mutex_unlock(&b->lock);
}

void ddsm_batcher_stats(ddsm_batcher *b, ddsm_batch_stats *out)
{
    if (b == NULL || out == NULL)
        return;
    pthread_mutex_lock(&b->lock);
    *out = b->stats;
    pthread_mutex_unlock(&b->lock);
}

/* ------------------------------------------------------------------------------------------ */

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Beside a batch in flight, another batch starts only when half a batch (and at least BESIDE_MIN
 * requests) waits, or when the oldest batch in flight has run for BESIDE_AFTER_NS. */
#define BESIDE_MIN 2
#define BESIDE_AFTER_NS (5 * 1000000)

/* The connection a queued caller may lead a batch on now, or NULL to wait (until *retry_ns when
 * that is set: the time rule below may then let it lead). With no batch in flight, any free one:
 * a lone caller never waits. Beside a batch in flight, the waiting requests normally go together
 * in the next batch instead: on the 2-core development machine two batches in flight at once
 * slowed each other threefold (their commits did not share a WAL flush), so one connection at a
 * time carried 50% more derivations than two, and one connection per caller made nine batches in
 * ten one-row ones. Another connection is taken only when half a batch waits (one statement in
 * flight cannot keep up) or when the batch in flight is stuck (a slow server, a lock, a lost
 * link: the others need not wait for its timeout). */
static struct conn *free_conn_locked(ddsm_batcher *b, int64_t now_ns, int64_t *retry_ns)
{
    struct conn *free_c = NULL;
    int64_t oldest = INT64_MAX;
    *retry_ns = 0;
    for (unsigned i = 0; i < b->nconns; i++) {
        struct conn *c = &b->conns[i];
        if (!c->busy && free_c == NULL)
            free_c = c;
        else if (c->busy && c->started_ns < oldest)
            oldest = c->started_ns;
    }
    if (free_c == NULL || b->in_flight == 0)
        return free_c;
    if ((b->queued >= BESIDE_MIN && b->queued * 2 >= b->batch_max) ||
        now_ns - oldest >= BESIDE_AFTER_NS)
        return free_c;
    *retry_ns = oldest + BESIDE_AFTER_NS;
    return NULL;
}

/* Wait for company: until the queue holds batch_max requests or wait_us has passed. */
static void wait_for_company_locked(ddsm_batcher *b)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_nsec += (long)b->wait_us * 1000;
    deadline.tv_sec += deadline.tv_nsec / 1000000000L;
    deadline.tv_nsec %= 1000000000L;
    b->stats.waits++;
    b->company_waiters++;
    while (b->queued > 0 && b->queued < b->batch_max) {
        int rc = pthread_cond_timedwait(&b->cond, &b->lock, &deadline);
        if (rc == ETIMEDOUT)
            break;
    }
    b->company_waiters--;
}

/* The head of the queue may lead now (a connection became free, or the queue changed). */
static void wake_head_locked(ddsm_batcher *b)
{
    if (b->head != NULL)
        pthread_cond_signal(&b->head->cv);
}

/* Run items [from, from + n) of c as one statement until it is written, fails, or finds a stale
 * expectation max times; each retry expects what the last answer said. refresh: the first
 * attempt already follows an answer. */
static ddsm_err attempts(struct conn *c, size_t from, size_t n, int max, bool refresh,
                         bool *written, uint64_t *round_trips, uint64_t *retries)
{
    ddsm_err err = DDSM_OK;
    *written = false;
    for (int attempt = 0; attempt < max && !*written; attempt++) {
        if (attempt > 0 || refresh) {
            (*retries)++;
            for (size_t i = from; i < from + n; i++) {
                struct ddsm_batch_item *it = &c->items[i];
                ddsm_batch_item_expect(it, true, it->found, it->state, it->counter);
            }
        }
        (*round_trips)++;
        err = ddsm_store_batch_exec(c->st, c->chain, &c->items[from], n, written);
        if (err != DDSM_OK)
            break;
    }
    return err;
}

static bool same_asset(const struct ddsm_batch_item *a, const struct ddsm_batch_item *b)
{
    return memcmp(a->asset.b, b->asset.b, sizeof a->asset.b) == 0;
}

/* Order c's items (and their nodes) so that each asset's are adjacent (stable). */
static void group_by_asset(struct conn *c, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        struct ddsm_batch_item it = c->items[i];
        struct node *nd = c->nodes[i];
        size_t j = i;
        while (j > 0 && memcmp(c->items[j - 1].asset.b, it.asset.b, sizeof it.asset.b) > 0) {
            c->items[j] = c->items[j - 1];
            c->nodes[j] = c->nodes[j - 1];
            j--;
        }
        c->items[j] = it;
        c->nodes[j] = nd;
    }
}

/* Run the batch in c->nodes[0..n) on c, without the lock: each item's outcome into c->errs and
 * c->written, its answer into its item, the message of a failure into msg. When the batch's
 * assets keep changing under it (a rotation storm: every statement checks the expectation of
 * every row, so a batch over several assets is stale as soon as any of them changed), it is
 * split into one statement per asset, each hit only by its own asset's changes, as single
 * derivations are, and tried longer. */
static void run_batch(struct conn *c, size_t n, char *msg, size_t msg_cap, uint64_t *round_trips,
                      uint64_t *retries)
{
    bool written = false;
    ddsm_err err =
        attempts(c, 0, n, DDSM_OPTIMISTIC_ATTEMPTS, false, &written, round_trips, retries);
    msg[0] = '\0';
    if (err != DDSM_OK)
        snprintf(msg, msg_cap, "%s", ddsm_store_errmsg(c->st));
    for (size_t i = 0; i < n; i++) {
        c->errs[i] = err;
        c->written[i] = written;
    }
    if (err != DDSM_OK || written)
        return;
    group_by_asset(c, n);
    ddsm_log(DDSM_LOG_DEBUG,
             "audit batch of %zu rows: its assets changed %d times under it; one "
             "statement per asset, up to %d times each",
             n, DDSM_OPTIMISTIC_ATTEMPTS, SPLIT_ATTEMPTS);
    for (size_t i = 0, j; i < n; i = j) {
        for (j = i + 1; j < n && same_asset(&c->items[i], &c->items[j]); j++)
            ;
        bool w = false;
        ddsm_err e = attempts(c, i, j - i, SPLIT_ATTEMPTS, true, &w, round_trips, retries);
        if (e != DDSM_OK && msg[0] == '\0')
            snprintf(msg, msg_cap, "%s", ddsm_store_errmsg(c->st));
        for (size_t k = i; k < j; k++) {
            c->errs[k] = e;
            c->written[k] = w;
        }
    }
}

/* Take up to batch_max queued nodes into c, run them, hand out the results. Called and returns
 * with the lock held; releases it for the round trip. */
static void lead_locked(ddsm_batcher *b, struct conn *c)
{
    bool others_in_flight = b->in_flight > 0;
    c->busy = true;
    c->started_ns = mono_ns();
    b->in_flight++;
    if (others_in_flight && b->queued > 1 && b->wait_us > 0)
        wait_for_company_locked(b);

    size_t n = 0;
    while (b->head != NULL && n < b->batch_max) {
        struct node *nd = b->head;
        b->head = nd->next;
        if (b->head == NULL)
            b->tail = NULL;
        nd->next = NULL;
        nd->queued = false;
        b->queued--;
        struct ddsm_batch_item *it = &c->items[n];
        memset(it, 0, sizeof *it);
        it->asset = nd->req->asset;
        it->path = nd->req->path;
        it->requester = nd->req->requester;
        it->deny_reason = nd->reason;
        it->detail = nd->req->detail;
        bool found = false;
        ddsm_state s = DDSM_STATE_INITIALIZED;
        uint64_t cnt = 0;
        bool known = ddsm_asset_cache_get(&b->cache, &it->asset, &found, &s, &cnt);
        ddsm_asset_cache_get_zone(&b->cache, it);
        ddsm_batch_item_expect(it, known, found, s, cnt);
        c->nodes[n++] = nd;
    }
    /* More than one batch takes: the new head may start the next one beside this. */
    wake_head_locked(b);
    if (n == 0)
        goto release;

    pthread_mutex_unlock(&b->lock);
    uint64_t round_trips = 0, retries = 0;
    char store_msg[MSG_MAX];
    run_batch(c, n, store_msg, sizeof store_msg, &round_trips, &retries);
    pthread_mutex_lock(&b->lock);

    b->stats.batches++;
    b->stats.round_trips += round_trips;
    b->stats.retries += retries;
    if (n > 1)
        b->stats.multi_row_batches++;
    if (n > b->stats.max_batch)
        b->stats.max_batch = n;
    unsigned sb = 0;
    while (sb + 1 < DDSM_BATCH_SIZE_BUCKETS && ((size_t)1 << sb) < n)
        sb++;
    b->stats.size_buckets[sb]++;
    b->stats.size_sum += n;
    bool failed = false;
    for (size_t i = 0; i < n; i++) {
        failed = failed || c->errs[i] != DDSM_OK;
        if (c->errs[i] == DDSM_OK && c->written[i])
            b->stats.rows++;
    }
    if (failed)
        b->stats.failed_batches++;
    for (size_t i = 0; i < n; i++) {
        struct node *nd = c->nodes[i];
        struct ddsm_batch_item *it = &c->items[i];
        ddsm_err err = c->errs[i];
        bool written = c->written[i];
        if (err != DDSM_OK) {
            ddsm_asset_cache_forget(&b->cache, &it->asset);
            nd->err = err;
            snprintf(nd->msg, sizeof nd->msg, "%s", store_msg);
        } else {
            ddsm_asset_cache_put(&b->cache, &it->asset, it->found, it->state, it->counter);
            ddsm_asset_cache_set_zone(&b->cache, &it->asset, it->zone_off, it->zone);
            if (!written) {
                char idt[DDSM_UUID_TEXT_LEN + 1];
                ddsm_uuid_format(&it->asset, idt);
                nd->err = DDSM_E_STORE;
                snprintf(nd->msg, sizeof nd->msg,
                         "asset %s kept changing while its audit row was being written (%d "
                         "attempts); try again",
                         idt, DDSM_OPTIMISTIC_ATTEMPTS + SPLIT_ATTEMPTS);
            } else {
                nd->err =
                    ddsm_batch_item_result(it, nd->msg, sizeof nd->msg, &nd->counter, &nd->state);
            }
        }
        nd->done = true;
        pthread_cond_signal(&nd->cv);
    }
release:
    c->busy = false;
    b->in_flight--;
    wake_head_locked(b); /* a connection is free */
}

static ddsm_err submit(ddsm_batcher *b, const ddsm_derive_req *req, const char *reason,
                       uint64_t *counter, ddsm_state *state)
{
    struct node nd;
    memset(&nd, 0, sizeof nd);
    nd.req = req;
    nd.reason = reason;
    nd.queued = true;
    pthread_cond_init(&nd.cv, &b->cv_attr);

    pthread_mutex_lock(&b->lock);
    if (b->tail != NULL)
        b->tail->next = &nd;
    else
        b->head = &nd;
    b->tail = &nd;
    b->queued++;
    b->stats.requests++;
    if (b->company_waiters > 0)
        pthread_cond_broadcast(&b->cond); /* a leader waiting for company */
    while (!nd.done) {
        int64_t retry_ns = 0;
        struct conn *c = nd.queued ? free_conn_locked(b, mono_ns(), &retry_ns) : NULL;
        if (c != NULL) {
            lead_locked(b, c);
        } else if (retry_ns > 0) {
            struct timespec at = {(time_t)(retry_ns / 1000000000), (long)(retry_ns % 1000000000)};
            (void)pthread_cond_timedwait(&nd.cv, &b->lock, &at);
        } else {
            pthread_cond_wait(&nd.cv, &b->lock);
        }
    }
    pthread_mutex_unlock(&b->lock);
    /* Signalled only under the lock, which we held last: nobody touches it any more. */
    pthread_cond_destroy(&nd.cv);

    if (nd.err == DDSM_OK) {
        *counter = nd.counter;
        if (state != NULL)
            *state = nd.state;
        tl_msg[0] = '\0';
        return DDSM_OK;
    }
    if (nd.err == DDSM_E_STATE && state != NULL)
        *state = nd.state;
    snprintf(tl_msg, sizeof tl_msg, "%s", nd.msg);
    return nd.err;
}

/* NULL path allowed only for denials (refused before parsing). */
static ddsm_err check_path(const char *p, bool may_be_null)
{
    ddsm_path path;
    char canonical[DDSM_PATH_TEXT_MAX];
    const char *why = NULL;
    if (p == NULL)
        return may_be_null ? DDSM_OK : fail(DDSM_E_ARG, "no path");
    if (ddsm_path_parse(p, strlen(p), &path, &why) != DDSM_OK)
        return fail(DDSM_E_PATH, "path \"%.64s\": %s", p, why != NULL ? why : "malformed");
    ddsm_path_format(&path, canonical);
    if (strcmp(canonical, p) != 0)
        return fail(DDSM_E_PATH, "path \"%.64s\" is not canonical (\"%s\")", p, canonical);
    return DDSM_OK;
}

ddsm_err ddsm_batcher_derive(ddsm_batcher *b, const ddsm_derive_req *req, uint64_t *counter,
                             ddsm_state *state)
{
    if (b == NULL || req == NULL || counter == NULL)
        return fail(DDSM_E_ARG, "ddsm_batcher_derive: missing argument");
    ddsm_err e = check_path(req->path, false);
    if (e != DDSM_OK)
        return e;
    return submit(b, req, NULL, counter, state);
}

ddsm_err ddsm_batcher_deny(ddsm_batcher *b, const ddsm_derive_req *req, const char *reason)
{
    if (b == NULL || req == NULL)
        return fail(DDSM_E_ARG, "ddsm_batcher_deny: missing argument");
    if (reason == NULL || reason[0] == '\0' || strlen(reason) > REASON_MAX)
        return fail(DDSM_E_INPUT, "the reason of a denial must be 1..%d characters", REASON_MAX);
    ddsm_err e = check_path(req->path, true);
    if (e != DDSM_OK)
        return e;
    uint64_t c = 0;
    e = submit(b, req, reason, &c, NULL);
    return e == DDSM_E_POLICY ? DDSM_OK : e;
}
