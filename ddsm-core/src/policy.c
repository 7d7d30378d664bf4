/* SPDX-License-Identifier: Apache-2.0 */
/* Rate limits shared through leases of tokens, and compliance zones (ddsm/policy.h,
 * docs/policy.md). The buckets are pure in-memory logic (one mutex, never held across a round
 * trip); the database side is three small statements (a lease, a zone change, an asset's move)
 * run through the store's connection with its reconnect rule. */
#include "ddsm/policy.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ddsm/audit.h"
#include "ddsm/log.h"
#include "ddsm/store.h"
#include "store_audit.h"
#include "store_pq.h"

/* ------------------------------------------------------------------------------------------ */
/* Rates                                                                                       */

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

ddsm_err ddsm_rate_parse(const char *text, ddsm_rate *out, const char **why)
{
    static const struct {
        const char *unit;
        unsigned secs;
    } units[] = {{"s", 1}, {"sec", 1}, {"min", 60}, {"h", 3600}, {"d", 86400}};
    const char *p = text;
    uint64_t n = 0;
    const char *dummy = NULL;

    if (why == NULL)
        why = &dummy;
    if (text == NULL || out == NULL) {
        *why = "no rate";
        return DDSM_E_ARG;
    }
    if (*p < '0' || *p > '9') {
        *why = "a rate is N/s, N/min, N/h or N/d (or 0 for no limit)";
        return DDSM_E_INPUT;
    }
    if (*p == '0' && p[1] >= '0' && p[1] <= '9') {
        *why = "the number of a rate has no leading zeros";
        return DDSM_E_INPUT;
    }
    for (; *p >= '0' && *p <= '9'; p++) {
        n = n * 10 + (uint64_t)(*p - '0');
        if (n > DDSM_RATE_LIMIT_MAX) {
            *why = "the number of a rate is at most 1000000000";
            return DDSM_E_INPUT;
        }
    }
    while (is_blank(*p))
        p++;
    if (*p == '\0' && n == 0) {
        out->limit = 0;
        out->window_s = 1;
        return DDSM_OK;
    }
    if (*p != '/') {
        *why = "a rate is N/s, N/min, N/h or N/d (or 0 for no limit)";
        return DDSM_E_INPUT;
    }
    p++;
    while (is_blank(*p))
        p++;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(p, units[i].unit) == 0) {
            out->limit = n;
            out->window_s = units[i].secs;
            return DDSM_OK;
        }
    }
    *why = "the unit of a rate is s, min, h or d";
    return DDSM_E_INPUT;
}

uint64_t ddsm_rate_chunk(const ddsm_rate *r)
{
    if (r == NULL || r->limit == 0)
        return 0;
    uint64_t c = r->limit / 10;
    return c < 1 ? 1 : c > 1000 ? 1000 : c;
}

const char *ddsm_rate_scope_name(ddsm_rate_scope s)
{
    switch (s) {
    case DDSM_RATE_ASSET:
        return "requester_asset";
    case DDSM_RATE_REQUESTER:
        return "requester";
    default:
        return "?";
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Buckets                                                                                     */

struct bucket {
    bool used;
    ddsm_rate_scope scope;
    char requester[DDSM_REQUESTER_MAX + 1];
    ddsm_uuid asset; /* nil for DDSM_RATE_REQUESTER */
    uint32_t hash;
    int64_t window_at_us; /* the server's window the tokens belong to; 0: none */
    int64_t end_ms;       /* local monotonic end of that window; 0: no window */
    uint64_t tokens;
    bool spent;   /* the database granted less than asked: the limit is reached in this window */
    bool leasing; /* a lease for this bucket is in flight */
    bool active;  /* a token was taken in the current window (the refill looks after it) */
    int64_t last_ms;
    struct bucket *next;
};

struct ddsm_ratelimit {
    pthread_mutex_t lock; /* everything below */
    pthread_cond_t cond;  /* a lease landed */
    ddsm_rate rate[DDSM_RATE__SCOPES];
    uint64_t chunk[DDSM_RATE__SCOPES];
    struct bucket *pool;
    unsigned cap, n_used;
    struct bucket **table;
    unsigned table_mask;
    ddsm_ratelimit_stats stats;
};

static uint32_t fnv(uint32_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 16777619u;
    return h;
}

static uint32_t bucket_hash(ddsm_rate_scope s, const char *requester, const ddsm_uuid *asset)
{
    uint32_t h = fnv(2166136261u, &s, sizeof s);
    h = fnv(h, requester, strlen(requester));
    return fnv(h, asset->b, sizeof asset->b);
}

ddsm_err ddsm_ratelimit_new(const ddsm_rate *per_asset, const ddsm_rate *per_requester,
                            unsigned max_buckets, ddsm_ratelimit **out)
{
    if (per_asset == NULL || per_requester == NULL || out == NULL)
        return DDSM_E_ARG;
    if (max_buckets < 16 || max_buckets > 1048576)
        return DDSM_E_INPUT;
    ddsm_ratelimit *rl = calloc(1, sizeof *rl);
    if (rl == NULL)
        return DDSM_E_NOMEM;
    unsigned tsize = 16;
    while (tsize < max_buckets)
        tsize *= 2;
    rl->pool = calloc(max_buckets, sizeof *rl->pool);
    rl->table = calloc(tsize, sizeof *rl->table);
    if (rl->pool == NULL || rl->table == NULL) {
        free(rl->pool);
        free(rl->table);
        free(rl);
        return DDSM_E_NOMEM;
    }
    rl->cap = max_buckets;
    rl->table_mask = tsize - 1;
    rl->rate[DDSM_RATE_ASSET] = *per_asset;
    rl->rate[DDSM_RATE_REQUESTER] = *per_requester;
    for (int s = 0; s < DDSM_RATE__SCOPES; s++)
        rl->chunk[s] = ddsm_rate_chunk(&rl->rate[s]);
    pthread_mutex_init(&rl->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&rl->cond, &ca);
    pthread_condattr_destroy(&ca);
    *out = rl;
    return DDSM_OK;
}

void ddsm_ratelimit_free(ddsm_ratelimit *rl)
{
    if (rl == NULL)
        return;
    pthread_cond_destroy(&rl->cond);
    pthread_mutex_destroy(&rl->lock);
    free(rl->pool);
    free(rl->table);
    free(rl);
}

bool ddsm_ratelimit_active(const ddsm_ratelimit *rl)
{
    return rl != NULL &&
           (rl->rate[DDSM_RATE_ASSET].limit > 0 || rl->rate[DDSM_RATE_REQUESTER].limit > 0);
}

static void unlink_locked(ddsm_ratelimit *rl, struct bucket *b)
{
    struct bucket **link = &rl->table[b->hash & rl->table_mask];
    while (*link != NULL && *link != b)
        link = &(*link)->next;
    if (*link == b)
        *link = b->next;
    b->next = NULL;
    b->used = false;
}

/* A free bucket: a new one while the pool lasts, else one whose window ended, else the least
 * recently used one that no lease is filling. NULL when every bucket is being leased. */
static struct bucket *reuse_locked(ddsm_ratelimit *rl, int64_t now_ms)
{
    if (rl->n_used < rl->cap)
        return &rl->pool[rl->n_used++];
    struct bucket *lru = NULL;
    for (unsigned i = 0; i < rl->cap; i++) {
        struct bucket *b = &rl->pool[i];
        if (b->leasing)
            continue;
        if (b->end_ms <= now_ms) {
            lru = b;
            break;
        }
        if (lru == NULL || b->last_ms < lru->last_ms)
            lru = b;
    }
    if (lru != NULL)
        unlink_locked(rl, lru);
    return lru;
}

static struct bucket *find_locked(ddsm_ratelimit *rl, ddsm_rate_scope s, const char *requester,
                                  const ddsm_uuid *asset, uint32_t h)
{
    for (struct bucket *b = rl->table[h & rl->table_mask]; b != NULL; b = b->next)
        if (b->hash == h && b->scope == s && memcmp(b->asset.b, asset->b, 16) == 0 &&
            strcmp(b->requester, requester) == 0)
            return b;
    return NULL;
}

static struct bucket *get_locked(ddsm_ratelimit *rl, ddsm_rate_scope s, const char *requester,
                                 const ddsm_uuid *asset, int64_t now_ms)
{
    uint32_t h = bucket_hash(s, requester, asset);
    struct bucket *b = find_locked(rl, s, requester, asset, h);
    if (b != NULL)
        return b;
    b = reuse_locked(rl, now_ms);
    if (b == NULL)
        return NULL;
    memset(b, 0, sizeof *b);
    b->used = true;
    b->scope = s;
    snprintf(b->requester, sizeof b->requester, "%s", requester);
    b->asset = *asset;
    b->hash = h;
    b->last_ms = now_ms;
    b->next = rl->table[h & rl->table_mask];
    rl->table[h & rl->table_mask] = b;
    return b;
}

/* The bucket's window ended (by our clock): its tokens belong to a window that is over. */
static void roll_locked(struct bucket *b, int64_t now_ms)
{
    if (b->end_ms != 0 && now_ms >= b->end_ms) {
        b->tokens = 0;
        b->spent = false;
        b->active = false;
        b->end_ms = 0;
    }
}

static void fill_req(const ddsm_ratelimit *rl, const struct bucket *b, ddsm_rate_lease_req *req)
{
    memset(req, 0, sizeof *req);
    snprintf(req->requester, sizeof req->requester, "%s", b->requester);
    req->asset = b->asset;
    req->scope = b->scope;
    req->window_s = rl->rate[b->scope].window_s;
    req->limit = rl->rate[b->scope].limit;
    req->want = rl->chunk[b->scope];
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void wait_until_locked(ddsm_ratelimit *rl, int64_t deadline_mono_ms)
{
    struct timespec ts = {.tv_sec = deadline_mono_ms / 1000,
                          .tv_nsec = (long)(deadline_mono_ms % 1000) * 1000000};
    int rc = pthread_cond_timedwait(&rl->cond, &rl->lock, &ts);
    (void)rc; /* woken or timed out: the caller looks again either way */
}

ddsm_rate_verdict ddsm_ratelimit_take(ddsm_ratelimit *rl, const char *requester,
                                      const ddsm_uuid *asset, int64_t now_ms, int wait_ms,
                                      ddsm_rate_scope *scope, ddsm_rate_lease_req *req)
{
    static const ddsm_uuid nil = {{0}};
    if (!ddsm_ratelimit_active(rl))
        return DDSM_RATE_ALLOW;
    if (requester == NULL)
        requester = "";
    int64_t start_mono = mono_ms();
    int64_t deadline = start_mono + (wait_ms > 0 ? wait_ms : 0);
    bool waited = false;

    pthread_mutex_lock(&rl->lock);
    for (;;) {
        int64_t now = now_ms + (mono_ms() - start_mono);
        struct bucket *b[DDSM_RATE__SCOPES] = {NULL, NULL};
        int blocked = -1; /* a scope whose bucket is being leased by someone else */
        for (int s = 0; s < DDSM_RATE__SCOPES; s++) {
            if (rl->rate[s].limit == 0)
                continue;
            b[s] = get_locked(rl, (ddsm_rate_scope)s, requester,
                              s == DDSM_RATE_ASSET ? asset : &nil, now);
            if (b[s] == NULL) {
                /* Every bucket is being leased: wait for one to land. */
                blocked = s;
                continue;
            }
            roll_locked(b[s], now);
            b[s]->last_ms = now;
        }
        for (int s = 0; s < DDSM_RATE__SCOPES && blocked < 0; s++) {
            if (b[s] == NULL || b[s]->tokens > 0)
                continue;
            if (b[s]->spent) {
                rl->stats.denied[s]++;
                pthread_mutex_unlock(&rl->lock);
                *scope = (ddsm_rate_scope)s;
                return DDSM_RATE_DENY;
            }
            if (b[s]->leasing) {
                blocked = s;
                continue;
            }
            b[s]->leasing = true;
            fill_req(rl, b[s], req);
            pthread_mutex_unlock(&rl->lock);
            return DDSM_RATE_LEASE;
        }
        if (blocked < 0) {
            for (int s = 0; s < DDSM_RATE__SCOPES; s++) {
                if (b[s] == NULL)
                    continue;
                b[s]->tokens--;
                b[s]->active = true;
            }
            rl->stats.allowed++;
            pthread_mutex_unlock(&rl->lock);
            return DDSM_RATE_ALLOW;
        }
        if (!waited) {
            rl->stats.lease_waits++;
            waited = true;
        }
        if (mono_ms() >= deadline) {
            /* The other lease is taking too long: lease ourselves (grants only add up). */
            struct bucket *bb = b[blocked];
            if (bb == NULL) {
                rl->stats.denied[blocked]++;
                pthread_mutex_unlock(&rl->lock);
                *scope = (ddsm_rate_scope)blocked;
                return DDSM_RATE_DENY;
            }
            fill_req(rl, bb, req);
            pthread_mutex_unlock(&rl->lock);
            return DDSM_RATE_LEASE;
        }
        wait_until_locked(rl, deadline);
    }
}

void ddsm_ratelimit_apply(ddsm_ratelimit *rl, const ddsm_rate_lease_req *req,
                          const ddsm_rate_lease_ans *ans, int64_t now_ms)
{
    if (rl == NULL || req == NULL || ans == NULL)
        return;
    pthread_mutex_lock(&rl->lock);
    struct bucket *b = get_locked(rl, req->scope, req->requester, &req->asset, now_ms);
    if (b != NULL) {
        if (b->window_at_us != ans->window_at_us || b->end_ms == 0 || now_ms >= b->end_ms) {
            /* A new window: what is left of the old one is void. */
            b->window_at_us = ans->window_at_us;
            b->tokens = 0;
            b->spent = false;
        }
        b->tokens += ans->granted;
        b->end_ms = now_ms + (ans->left_ms > 0 ? ans->left_ms : 1);
        b->spent = b->spent || ans->granted < req->want;
        b->leasing = false;
    }
    rl->stats.leases++;
    rl->stats.tokens_granted += ans->granted;
    pthread_cond_broadcast(&rl->cond);
    pthread_mutex_unlock(&rl->lock);
}

void ddsm_ratelimit_apply_failed(ddsm_ratelimit *rl, const ddsm_rate_lease_req *req)
{
    if (rl == NULL || req == NULL)
        return;
    pthread_mutex_lock(&rl->lock);
    uint32_t h = bucket_hash(req->scope, req->requester, &req->asset);
    struct bucket *b = find_locked(rl, req->scope, req->requester, &req->asset, h);
    if (b != NULL)
        b->leasing = false;
    rl->stats.leases_failed++;
    pthread_cond_broadcast(&rl->cond);
    pthread_mutex_unlock(&rl->lock);
}

size_t ddsm_ratelimit_wanted(ddsm_ratelimit *rl, int64_t now_ms, ddsm_rate_lease_req *out,
                             size_t max)
{
    size_t n = 0;
    if (!ddsm_ratelimit_active(rl) || out == NULL)
        return 0;
    pthread_mutex_lock(&rl->lock);
    for (unsigned i = 0; i < rl->n_used && n < max; i++) {
        struct bucket *b = &rl->pool[i];
        if (!b->used || b->leasing || b->spent || !b->active || b->end_ms <= now_ms)
            continue;
        uint64_t low = rl->chunk[b->scope] / 2;
        if (b->tokens > low)
            continue;
        b->leasing = true;
        fill_req(rl, b, &out[n++]);
    }
    pthread_mutex_unlock(&rl->lock);
    return n;
}

void ddsm_ratelimit_stats_get(ddsm_ratelimit *rl, ddsm_ratelimit_stats *out)
{
    if (out == NULL)
        return;
    memset(out, 0, sizeof *out);
    if (rl == NULL)
        return;
    pthread_mutex_lock(&rl->lock);
    *out = rl->stats;
    uint64_t used = 0;
    for (unsigned i = 0; i < rl->n_used; i++)
        used += rl->pool[i].used;
    out->buckets = used;
    pthread_mutex_unlock(&rl->lock);
}

/* ------------------------------------------------------------------------------------------ */
/* The database side                                                                           */

static const char lease_sql[] =
    "SELECT grant_n, (extract(epoch FROM window_at) * 1000000)::bigint, left_ms"
    "  FROM ddsm_rate_lease($1, $2::uuid, $3::integer, $4::bigint, $5::bigint, $6::bigint)";

ddsm_err ddsm_rate_lease(ddsm_store *st, const ddsm_rate_lease_req *req, ddsm_rate_lease_ans *ans)
{
    if (st == NULL || req == NULL || ans == NULL || req->want == 0 || req->limit == 0)
        return DDSM_E_ARG;
    char asset[DDSM_UUID_TEXT_LEN + 1], win[16], want[24], la[24], lr[24];
    PGresult *res = NULL;
    ddsm_uuid_format(&req->asset, asset);
    snprintf(win, sizeof win, "%u", req->window_s);
    snprintf(want, sizeof want, "%" PRIu64, req->want);
    snprintf(la, sizeof la, "%" PRIu64, req->scope == DDSM_RATE_ASSET ? req->limit : 0);
    snprintf(lr, sizeof lr, "%" PRIu64, req->scope == DDSM_RATE_REQUESTER ? req->limit : 0);
    const char *values[] = {req->requester, asset, win, want, la, lr};
    /* Not idempotent (it grants), but a lease lost with its connection only under-admits. */
    ddsm_err err = ddsm_store_run_params(st, "rate lease", lease_sql, 6, values, false, &res, NULL);
    if (err != DDSM_OK)
        return err;
    int64_t g = 0, at = 0, left = 0;
    if (PQntuples(res) != 1 || !ddsm_pq_get_i64(res, 0, 0, &g) ||
        !ddsm_pq_get_i64(res, 0, 1, &at) || !ddsm_pq_get_i64(res, 0, 2, &left) || g < 0 ||
        (uint64_t)g > req->want || left < 1) {
        PQclear(res);
        return ddsm_pq_fail(ddsm_store_pq(st), DDSM_E_STORE,
                            "store: rate lease: unexpected answer");
    }
    PQclear(res);
    ans->granted = (uint64_t)g;
    ans->window_at_us = at;
    ans->left_ms = left;
    return DDSM_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Zones                                                                                       */

bool ddsm_zone_name_valid(const char *zone)
{
    if (zone == NULL)
        return false;
    size_t n = strlen(zone);
    if (n < 1 || n > DDSM_ZONE_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = zone[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
            return false;
    }
    return true;
}

bool ddsm_zone_notify_parse(const char *payload, ddsm_uuid *asset, bool *enabled,
                            char zone[DDSM_ZONE_NAME_MAX + 1])
{
    if (payload == NULL || strlen(payload) < DDSM_UUID_TEXT_LEN + 4 ||
        payload[DDSM_UUID_TEXT_LEN] != ' ' ||
        ddsm_uuid_parse(payload, DDSM_UUID_TEXT_LEN, asset) != DDSM_OK)
        return false;
    const char *p = payload + DDSM_UUID_TEXT_LEN + 1;
    if (strncmp(p, "on ", 3) == 0) {
        *enabled = true;
        p += 3;
    } else if (strncmp(p, "off ", 4) == 0) {
        *enabled = false;
        p += 4;
    } else {
        return false;
    }
    if (!ddsm_zone_name_valid(p))
        return false;
    snprintf(zone, DDSM_ZONE_NAME_MAX + 1, "%s", p);
    return true;
}

/* The error for a zone name that ddsm_zone_name_valid refuses (zone may be NULL). */
static ddsm_err zone_name_malformed(struct ddsm_pq *pq, const char *zone)
{
    return ddsm_pq_fail(pq, DDSM_E_INPUT,
                        "zone name \"%.80s\" is malformed (1..%d "
                        "characters of A-Z a-z 0-9 . _ -, starting with a letter or digit)",
                        zone != NULL ? zone : "", DDSM_ZONE_NAME_MAX);
}

/* One audit row of a zone change, sealed when the store has a chain: the values of its
 * instance, seq and mac parameters (NULL without a chain). */
struct sealed {
    ddsm_audit_chain *chain;
    ddsm_audit_row row;
    uint8_t mac[1][DDSM_AUDIT_MAC_LEN];
    char ts[40], seq[24], mac_text[2 + 2 * DDSM_AUDIT_MAC_LEN + 1];
    const char *instance_v, *seq_v, *mac_v;
};

static ddsm_err seal_row(ddsm_store *st, struct sealed *s)
{
    s->chain = ddsm_store_chain(st);
    s->row.ts_us = ddsm_audit_now_us();
    ddsm_audit_format_ts(s->row.ts_us, s->ts);
    s->instance_v = s->seq_v = s->mac_v = NULL;
    if (s->chain == NULL)
        return DDSM_OK;
    ddsm_err err = ddsm_audit_chain_seal(s->chain, &s->row, 1, s->mac);
    if (err != DDSM_OK)
        return ddsm_pq_fail(ddsm_store_pq(st), err, "audit: cannot seal the %s row", s->row.event);
    snprintf(s->seq, sizeof s->seq, "%" PRId64, s->row.seq);
    ddsm_pq_bytea_hex(s->mac[0], DDSM_AUDIT_MAC_LEN, s->mac_text);
    s->instance_v = s->row.instance;
    s->seq_v = s->seq;
    s->mac_v = s->mac_text;
    return DDSM_OK;
}

static void settle_row(struct sealed *s, enum ddsm_chain_outcome outcome)
{
    if (s->chain != NULL)
        ddsm_audit_chain_settle(s->chain, 1, s->mac[0], outcome);
}

/* The counts a zone statement answers in row 0 from column col on: rows it changed (*n), its
 * audit rows, its checkpoints and its notifications (*notified). False unless they parse and
 * agree: at most one change, one audit row per change, a checkpoint per change with a chain. */
static bool sealed_counts(const PGresult *res, int col, const struct sealed *s, int64_t *n,
                          int64_t *notified)
{
    int64_t na = 0, nh = 0;
    return ddsm_pq_get_i64(res, 0, col, n) && ddsm_pq_get_i64(res, 0, col + 1, &na) &&
           ddsm_pq_get_i64(res, 0, col + 2, &nh) && ddsm_pq_get_i64(res, 0, col + 3, notified) &&
           *n <= 1 && na == *n && nh == (s->chain != NULL ? *n : 0);
}

/* $1 zone, $2 enabled, $3 requester, $4 may create, $5 ts, $6 event, $7 detail, $8 instance,
 * $9 seq, $10 mac (NULL without a chain), through the SECURITY DEFINER function of
 * sql/006_roles.sql (ddsm_admin may call it; it sends the NOTIFY on channel ddsm_zone). The zone
 * row is locked by the update, so a derivation statement that starts after this one committed
 * sees the new state. */
static const char zone_set_sql[] =
    "SELECT o_zones, o_audit, o_head, o_notified"
    "  FROM ddsm_zone_set($1, $2::boolean, $3, $4::boolean, $5::timestamptz, $6, $7, $8::text,"
    "                     $9::bigint, $10::bytea)";

ddsm_err ddsm_zone_set_enabled(ddsm_store *st, const char *zone, bool enabled,
                               const char *requester, uint64_t *notified)
{
    if (st == NULL)
        return DDSM_E_ARG;
    struct ddsm_pq *pq = ddsm_store_pq(st);
    if (!ddsm_zone_name_valid(zone))
        return zone_name_malformed(pq, zone);
    struct sealed s;
    char detail[DDSM_ZONE_NAME_MAX + 16];
    PGresult *res = NULL;
    bool sent = false;

    memset(&s, 0, sizeof s);
    snprintf(detail, sizeof detail, "zone %s", zone);
    s.row.event = enabled ? "ZONE_ENABLE" : "ZONE_DISABLE";
    s.row.requester = requester;
    s.row.detail = detail;
    ddsm_err err = seal_row(st, &s);
    if (err != DDSM_OK)
        return err;
    const char *values[] = {zone,
                            enabled ? "true" : "false",
                            requester,
                            enabled ? "true" : "false",
                            s.ts,
                            s.row.event,
                            detail,
                            s.instance_v,
                            s.seq_v,
                            s.mac_v};
    err = ddsm_store_run_params(st, enabled ? "enable zone" : "disable zone", zone_set_sql, 10,
                                values, false, &res, &sent);
    if (err != DDSM_OK) {
        settle_row(&s, ddsm_chain_failed_outcome(err, sent));
        return err;
    }
    int64_t nz = 0, nn = 0;
    if (PQntuples(res) != 1 || !sealed_counts(res, 0, &s, &nz, &nn)) {
        PQclear(res);
        settle_row(&s, DDSM_CHAIN_UNKNOWN);
        return ddsm_pq_fail(pq, DDSM_E_STORE, "store: zone change: unexpected answer");
    }
    PQclear(res);
    settle_row(&s, nz == 1 ? DDSM_CHAIN_COMMITTED : DDSM_CHAIN_NOT_WRITTEN);
    if (nz == 0)
        return ddsm_pq_fail(pq, DDSM_E_NOT_FOUND, "no zone \"%s\"%s", zone,
                            enabled ? " (it was created by someone else meanwhile: try again)"
                                    : "");
    if (notified != NULL)
        *notified = (uint64_t)nn;
    return DDSM_OK;
}

/* $1 asset, $2 new zone, $3 requester, $4 expected old zone, $5 ts, $6 detail, $7 instance,
 * $8 seq, $9 mac, through ddsm_zone_assign (sql/006_roles.sql). The asset row is locked; the
 * move happens only while the asset is in the expected zone (the row's detail names it). The new
 * zone is created (enabled) when missing; the foreign key is checked at the end of the
 * statement, after it. */
static const char zone_assign_sql[] =
    "SELECT o_zone, o_ok, o_audit, o_head, o_notified"
    "  FROM ddsm_zone_assign($1::uuid, $2, $3, $4, $5::timestamptz, $6, $7::text, $8::bigint,"
    "                        $9::bytea)";

static const char zone_of_sql[] =
    "SELECT k.zone, z.enabled FROM custody_keys k JOIN custody_zones z ON z.zone = k.zone"
    " WHERE k.asset_id = $1::uuid";

ddsm_err ddsm_zone_of_asset(ddsm_store *st, const ddsm_uuid *asset,
                            char zone[DDSM_ZONE_NAME_MAX + 1], bool *enabled)
{
    if (st == NULL || asset == NULL || zone == NULL || enabled == NULL)
        return DDSM_E_ARG;
    char id[DDSM_UUID_TEXT_LEN + 1];
    PGresult *res = NULL;
    ddsm_uuid_format(asset, id);
    const char *values[] = {id};
    ddsm_err err =
        ddsm_store_run_params(st, "zone of asset", zone_of_sql, 1, values, true, &res, NULL);
    if (err != DDSM_OK)
        return err;
    if (PQntuples(res) == 0) {
        PQclear(res);
        return ddsm_pq_fail(ddsm_store_pq(st), DDSM_E_NOT_FOUND, "no asset %s", id);
    }
    const char *z = PQgetvalue(res, 0, 0);
    if (!ddsm_zone_name_valid(z)) {
        PQclear(res);
        return ddsm_pq_fail(ddsm_store_pq(st), DDSM_E_STORE,
                            "store: asset %s has a malformed "
                            "zone",
                            id);
    }
    snprintf(zone, DDSM_ZONE_NAME_MAX + 1, "%s", z);
    *enabled = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
    PQclear(res);
    return DDSM_OK;
}

#define ASSIGN_ATTEMPTS 3

ddsm_err ddsm_zone_assign(ddsm_store *st, const ddsm_uuid *asset, const char *zone,
                          const char *requester, char old_zone[DDSM_ZONE_NAME_MAX + 1])
{
    if (st == NULL || asset == NULL)
        return DDSM_E_ARG;
    struct ddsm_pq *pq = ddsm_store_pq(st);
    if (!ddsm_zone_name_valid(zone))
        return zone_name_malformed(pq, zone);
    char id[DDSM_UUID_TEXT_LEN + 1];
    char expect[DDSM_ZONE_NAME_MAX + 1];
    bool enabled = false;
    ddsm_uuid_format(asset, id);
    ddsm_err err = ddsm_zone_of_asset(st, asset, expect, &enabled);
    if (err != DDSM_OK)
        return err;

    for (int attempt = 0; attempt < ASSIGN_ATTEMPTS; attempt++) {
        struct sealed s;
        char detail[2 * DDSM_ZONE_NAME_MAX + 16];
        PGresult *res = NULL;
        bool sent = false;
        memset(&s, 0, sizeof s);
        snprintf(detail, sizeof detail, "zone %s -> %s", expect, zone);
        s.row.event = "ZONE_ASSIGN";
        s.row.has_asset = true;
        s.row.asset = *asset;
        s.row.requester = requester;
        s.row.detail = detail;
        err = seal_row(st, &s);
        if (err != DDSM_OK)
            return err;
        const char *values[] = {id,     zone,         requester, expect,  s.ts,
                                detail, s.instance_v, s.seq_v,   s.mac_v};
        err = ddsm_store_run_params(st, "assign zone", zone_assign_sql, 9, values, false, &res,
                                    &sent);
        if (err != DDSM_OK) {
            settle_row(&s, ddsm_chain_failed_outcome(err, sent));
            return err;
        }
        if (PQntuples(res) == 0) {
            PQclear(res);
            settle_row(&s, DDSM_CHAIN_NOT_WRITTEN);
            return ddsm_pq_fail(pq, DDSM_E_NOT_FOUND, "no asset %s", id);
        }
        int64_t nok = 0, nn = 0;
        const char *cur = PQgetvalue(res, 0, 0);
        if (!ddsm_zone_name_valid(cur) || !sealed_counts(res, 1, &s, &nok, &nn)) {
            PQclear(res);
            settle_row(&s, DDSM_CHAIN_UNKNOWN);
            return ddsm_pq_fail(pq, DDSM_E_STORE, "store: assign zone: unexpected answer");
        }
        if (nok == 1) {
            PQclear(res);
            settle_row(&s, DDSM_CHAIN_COMMITTED);
            if (old_zone != NULL)
                snprintf(old_zone, DDSM_ZONE_NAME_MAX + 1, "%s", expect);
            return DDSM_OK;
        }
        /* Moved by someone else meanwhile: predict again from what the statement found. */
        snprintf(expect, sizeof expect, "%s", cur);
        PQclear(res);
        settle_row(&s, DDSM_CHAIN_NOT_WRITTEN);
    }
    return ddsm_pq_fail(pq, DDSM_E_STORE,
                        "store: asset %s changed zone %d times while it was "
                        "being moved; try again",
                        id, ASSIGN_ATTEMPTS);
}

static const char zone_list_sql[] =
    "SELECT z.zone, z.enabled, (extract(epoch FROM z.updated_at) * 1000000)::bigint,"
    "       coalesce(z.updated_by, ''),"
    "       (SELECT count(*) FROM custody_keys k WHERE k.zone = z.zone),"
    "       (SELECT count(*) FROM custody_keys k WHERE k.zone = z.zone"
    "           AND ddsm_effective_state(k.state, k.grace_until) IN ('ACTIVE', 'ROTATING'))"
    "  FROM custody_zones z ORDER BY z.zone";

ddsm_err ddsm_zone_list(ddsm_store *st, ddsm_zone_cb cb, void *arg)
{
    if (st == NULL || cb == NULL)
        return DDSM_E_ARG;
    PGresult *res = NULL;
    ddsm_err err =
        ddsm_store_run_params(st, "list zones", zone_list_sql, 0, NULL, true, &res, NULL);
    if (err != DDSM_OK)
        return err;
    for (int i = 0; i < PQntuples(res); i++) {
        ddsm_zone_info z;
        int64_t n = 0, d = 0;
        memset(&z, 0, sizeof z);
        const char *name = PQgetvalue(res, i, 0);
        if (!ddsm_zone_name_valid(name) || !ddsm_pq_get_i64(res, i, 2, &z.updated_us) ||
            !ddsm_pq_get_i64(res, i, 4, &n) || !ddsm_pq_get_i64(res, i, 5, &d)) {
            PQclear(res);
            return ddsm_pq_fail(ddsm_store_pq(st), DDSM_E_STORE, "store: zone row does not fit");
        }
        snprintf(z.zone, sizeof z.zone, "%s", name);
        z.enabled = strcmp(PQgetvalue(res, i, 1), "t") == 0;
        snprintf(z.updated_by, sizeof z.updated_by, "%s", PQgetvalue(res, i, 3));
        z.assets = (uint64_t)n;
        z.derivable = (uint64_t)d;
        if (cb(&z, arg) != 0)
            break;
    }
    PQclear(res);
    return DDSM_OK;
}
