/* SPDX-License-Identifier: Apache-2.0 */
/* The tamper-evident audit log (docs/audit.md): canonical row encoding, the audit key, chains,
 * and verify / reconcile / maintain over a store. The audit key is a secret: it lives in secure
 * memory (ddsm_audit_key, ddsm_audit_chain) and is wiped when they are freed. */
#include "ddsm/audit.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "ddsm/log.h"
#include "ddsm/mac.h"
#include "ddsm/path.h"
#include "ddsm/secmem.h"
#include "store_audit.h"

enum key_kind { KEY_LEGACY, KEY_WRITER, KEY_CHECKPOINT };

struct ddsm_audit_key {
    uint8_t *secret; /* DDSM_AUDIT_KEY_LEN bytes of secure memory */
    enum key_kind kind;
    char writer[DDSM_AUDIT_WRITER_MAX + 1]; /* KEY_WRITER: whose */
};

struct ddsm_audit_chain {
    uint8_t *key_secret; /* DDSM_AUDIT_KEY_LEN bytes of secure memory */
    char base[DDSM_AUDIT_INSTANCE_MAX + 1];
    char instance[DDSM_AUDIT_INSTANCE_MAX + 24]; /* base, or base#epoch */
    unsigned epoch;
    int64_t seq;                      /* last committed */
    uint8_t prev[DDSM_AUDIT_MAC_LEN]; /* MAC of the last committed row (zeros at seq 0) */
    atomic_bool sealing;
};

/* ------------------------------------------------------------------------------------------ */
/* Key */

static ddsm_err key_alloc(ddsm_audit_key **out)
{
    ddsm_audit_key *k = calloc(1, sizeof *k);
    if (k == NULL)
        return DDSM_E_NOMEM;
    k->secret = ddsm_secure_alloc(DDSM_AUDIT_KEY_LEN);
    if (k->secret == NULL) {
        free(k);
        return DDSM_E_NOMEM;
    }
    *out = k;
    return DDSM_OK;
}

ddsm_err ddsm_audit_key_derive(const ddsm_prf *prf, ddsm_audit_key **out)
{
    ddsm_audit_key *k = NULL;
    ddsm_uuid nil;
    ddsm_path depth0;
    if (prf == NULL || out == NULL)
        return DDSM_E_ARG;
    memset(&nil, 0, sizeof nil);
    memset(&depth0, 0, sizeof depth0);
    ddsm_err e = key_alloc(&k);
    if (e != DDSM_OK)
        return e;
    /* docs/design.md "Reserved derivations": (nil UUID, depth 0, counter 0) is the audit MAC key. */
    e = ddsm_derive_secret(prf, &nil, &depth0, 0, k->secret);
    if (e != DDSM_OK) {
        ddsm_audit_key_free(k);
        return e;
    }
    *out = k;
    return DDSM_OK;
}

static bool writer_ok(const char *w)
{
    size_t n = w != NULL ? strlen(w) : 0;
    if (n == 0 || n > DDSM_AUDIT_WRITER_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)w[i] < 0x20 || (unsigned char)w[i] > 0x7e || w[i] == '#')
            return false;
    return true;
}

/* SP 800-108 counter mode, one iteration: [1]4 || label || 00 || context || [256]4. */
static size_t kdf_message(const char *label, const char *context, uint8_t *out, size_t cap)
{
    size_t ll = strlen(label), cl = strlen(context);
    size_t n = 4 + ll + 1 + cl + 4;
    if (n > cap)
        return 0;
    static const uint8_t one[4] = {0, 0, 0, 1}, bits[4] = {0, 0, 1, 0};
    memcpy(out, one, 4);
    memcpy(out + 4, label, ll);
    out[4 + ll] = 0;
    memcpy(out + 5 + ll, context, cl);
    memcpy(out + 5 + ll + cl, bits, 4);
    return n;
}

size_t ddsm_audit_writer_message(const char *writer, uint8_t *out, size_t cap)
{
    if (!writer_ok(writer) || out == NULL)
        return 0;
    return kdf_message(DDSM_AUDIT_WRITER_LABEL, writer, out, cap);
}

static ddsm_err key_from_message(const ddsm_prf *prf, const uint8_t *msg, size_t len,
                                 ddsm_audit_key **out)
{
    ddsm_audit_key *k = NULL;
    ddsm_err e = key_alloc(&k);
    if (e != DDSM_OK)
        return e;
    e = prf->hmac_root(prf->ctx, msg, len, k->secret);
    if (e != DDSM_OK) {
        ddsm_audit_key_free(k);
        return e;
    }
    *out = k;
    return DDSM_OK;
}

ddsm_err ddsm_audit_writer_key_derive(const ddsm_prf *prf, const char *writer, ddsm_audit_key **out)
{
    uint8_t msg[DDSM_AUDIT_KDF_MSG_MAX];
    if (prf == NULL || prf->hmac_root == NULL || out == NULL)
        return DDSM_E_ARG;
    size_t len = ddsm_audit_writer_message(writer, msg, sizeof msg);
    if (len == 0)
        return DDSM_E_INPUT;
    ddsm_audit_key *k = NULL;
    ddsm_err e = key_from_message(prf, msg, len, &k);
    if (e != DDSM_OK)
        return e;
    k->kind = KEY_WRITER;
    snprintf(k->writer, sizeof k->writer, "%s", writer);
    *out = k;
    return DDSM_OK;
}

ddsm_err ddsm_audit_checkpoint_key_derive(const ddsm_prf *prf, ddsm_audit_key **out)
{
    uint8_t msg[DDSM_AUDIT_KDF_MSG_MAX];
    if (prf == NULL || prf->hmac_root == NULL || out == NULL)
        return DDSM_E_ARG;
    size_t len = kdf_message(DDSM_AUDIT_CHECKPOINT_LABEL, "", msg, sizeof msg);
    ddsm_audit_key *k = NULL;
    ddsm_err e = key_from_message(prf, msg, len, &k);
    if (e != DDSM_OK)
        return e;
    k->kind = KEY_CHECKPOINT;
    *out = k;
    return DDSM_OK;
}

ddsm_err ddsm_audit_checkpoint_mac(const ddsm_audit_key *k, const uint8_t *msg, size_t len,
                                   uint8_t out[DDSM_AUDIT_MAC_LEN])
{
    if (k == NULL || k->kind != KEY_CHECKPOINT || (msg == NULL && len > 0) || out == NULL)
        return DDSM_E_ARG;
    return ddsm_hmac_sha256(k->secret, DDSM_AUDIT_KEY_LEN, msg, len, out);
}

const char *ddsm_audit_key_writer(const ddsm_audit_key *k)
{
    return k != NULL && k->kind == KEY_WRITER ? k->writer : NULL;
}

bool ddsm_audit_writer_of(const char *instance, char *out, size_t cap)
{
    if (instance == NULL || out == NULL || cap == 0)
        return false;
    size_t n = strlen(instance);
    const char *hash = strchr(instance, '#');
    if (hash != NULL) {
        /* "#<e>", e decimal without a leading zero, ends the name. */
        const char *d = hash + 1;
        if (*d < '1' || *d > '9')
            return false;
        while (*d >= '0' && *d <= '9')
            d++;
        if (*d != '\0')
            return false;
        n = (size_t)(hash - instance);
    }
    /* Then "/c<n>". */
    size_t i = n;
    while (i > 0 && instance[i - 1] >= '0' && instance[i - 1] <= '9')
        i--;
    if (i == n || (n - i > 1 && instance[i] == '0') || i < 3 || instance[i - 1] != 'c' ||
        instance[i - 2] != '/')
        return false;
    size_t wl = i - 2;
    if (wl == 0 || wl >= cap || wl > DDSM_AUDIT_WRITER_MAX)
        return false;
    memcpy(out, instance, wl);
    out[wl] = '\0';
    return writer_ok(out);
}

ddsm_err ddsm_audit_key_from_secret(const uint8_t key_secret[DDSM_AUDIT_KEY_LEN],
                                    ddsm_audit_key **out)
{
    ddsm_audit_key *k = NULL;
    if (key_secret == NULL || out == NULL)
        return DDSM_E_ARG;
    ddsm_err e = key_alloc(&k);
    if (e != DDSM_OK)
        return e;
    memcpy(k->secret, key_secret, DDSM_AUDIT_KEY_LEN);
    *out = k;
    return DDSM_OK;
}

void ddsm_audit_key_free(ddsm_audit_key *k)
{
    if (k == NULL)
        return;
    ddsm_secure_free(k->secret, DDSM_AUDIT_KEY_LEN);
    free(k);
}

/* ------------------------------------------------------------------------------------------ */
/* Canonical encoding */

#define MAGIC_LEN (sizeof(DDSM_AUDIT_MAGIC) - 1)
/* A field never exceeds this (the length prefix is 4 bytes; this keeps sums far from SIZE_MAX). */
#define FIELD_MAX (1u << 24)

struct enc {
    uint8_t *out;
    size_t cap;
    size_t len;
    bool too_big;
};

static void put(struct enc *e, const void *p, size_t n)
{
    if (e->out != NULL && e->len + n <= e->cap)
        memcpy(e->out + e->len, p, n);
    e->len += n;
}

static void put_be32(struct enc *e, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    put(e, b, 4);
}

static void field_null(struct enc *e)
{
    uint8_t tag = 0;
    put(e, &tag, 1);
}

static void field_bytes(struct enc *e, const void *p, size_t n)
{
    uint8_t tag = 1;
    if (n > FIELD_MAX) {
        e->too_big = true;
        return;
    }
    put(e, &tag, 1);
    put_be32(e, (uint32_t)n);
    put(e, p, n);
}

static void field_text(struct enc *e, const char *s)
{
    if (s == NULL)
        field_null(e);
    else
        field_bytes(e, s, strlen(s));
}

static void field_i64(struct enc *e, int64_t v)
{
    uint64_t u = (uint64_t)v;
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(u >> (56 - 8 * i));
    field_bytes(e, b, sizeof b);
}

ddsm_err ddsm_audit_encode(const ddsm_audit_row *r, uint8_t *out, size_t cap, size_t *len)
{
    if (r == NULL || len == NULL || r->event == NULL || r->instance == NULL)
        return DDSM_E_ARG;
    struct enc e = {out, cap, 0, false};
    put(&e, DDSM_AUDIT_MAGIC, MAGIC_LEN);
    field_text(&e, r->event);
    if (r->has_asset)
        field_bytes(&e, r->asset.b, sizeof r->asset.b);
    else
        field_null(&e);
    field_text(&e, r->path);
    if (r->has_counter)
        field_i64(&e, r->counter);
    else
        field_null(&e);
    field_text(&e, r->state);
    field_i64(&e, r->ts_us);
    field_text(&e, r->requester);
    field_text(&e, r->instance);
    field_i64(&e, r->seq);
    field_text(&e, r->detail);
    if (e.too_big)
        return DDSM_E_INPUT;
    *len = e.len;
    return DDSM_OK;
}

/* HMAC-SHA256(key_secret, prev || canonical(r)). */
static ddsm_err row_mac_secret(const uint8_t *key_secret, const uint8_t prev[DDSM_AUDIT_MAC_LEN],
                               const ddsm_audit_row *r, uint8_t out[DDSM_AUDIT_MAC_LEN])
{
    uint8_t stackbuf[1024];
    uint8_t *buf = stackbuf;
    size_t len = 0;
    ddsm_err e = ddsm_audit_encode(r, NULL, 0, &len);
    if (e != DDSM_OK)
        return e;
    if (DDSM_AUDIT_MAC_LEN + len > sizeof stackbuf) {
        buf = malloc(DDSM_AUDIT_MAC_LEN + len);
        if (buf == NULL)
            return DDSM_E_NOMEM;
    }
    memcpy(buf, prev, DDSM_AUDIT_MAC_LEN);
    e = ddsm_audit_encode(r, buf + DDSM_AUDIT_MAC_LEN, len, &len);
    if (e == DDSM_OK)
        e = ddsm_hmac_sha256(key_secret, DDSM_AUDIT_KEY_LEN, buf, DDSM_AUDIT_MAC_LEN + len, out);
    if (buf != stackbuf)
        free(buf);
    return e;
}

ddsm_err ddsm_audit_row_mac(const ddsm_audit_key *k, const uint8_t prev[DDSM_AUDIT_MAC_LEN],
                            const ddsm_audit_row *r, uint8_t out[DDSM_AUDIT_MAC_LEN])
{
    if (k == NULL || prev == NULL || r == NULL || out == NULL)
        return DDSM_E_ARG;
    return row_mac_secret(k->secret, prev, r, out);
}

/* ------------------------------------------------------------------------------------------ */
/* Chains */

static bool instance_ok(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;
    if (n == 0 || n > DDSM_AUDIT_INSTANCE_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

ddsm_err ddsm_audit_chain_new(const ddsm_audit_key *k, const char *instance, ddsm_audit_chain **out)
{
    if (k == NULL || out == NULL || k->kind == KEY_CHECKPOINT)
        return DDSM_E_ARG;
    if (!instance_ok(instance))
        return DDSM_E_INPUT;
    if (k->kind == KEY_WRITER) {
        /* verify reads the writer off the name: a chain may only bear its own key's writer. */
        char w[DDSM_AUDIT_WRITER_MAX + 1];
        if (strchr(instance, '#') != NULL || !ddsm_audit_writer_of(instance, w, sizeof w) ||
            strcmp(w, k->writer) != 0)
            return DDSM_E_INPUT;
    }
    ddsm_audit_chain *c = calloc(1, sizeof *c);
    if (c == NULL)
        return DDSM_E_NOMEM;
    c->key_secret = ddsm_secure_alloc(DDSM_AUDIT_KEY_LEN);
    if (c->key_secret == NULL) {
        free(c);
        return DDSM_E_NOMEM;
    }
    memcpy(c->key_secret, k->secret, DDSM_AUDIT_KEY_LEN);
    snprintf(c->base, sizeof c->base, "%s", instance);
    snprintf(c->instance, sizeof c->instance, "%s", instance);
    atomic_init(&c->sealing, false);
    *out = c;
    return DDSM_OK;
}

void ddsm_audit_chain_free(ddsm_audit_chain *c)
{
    if (c == NULL)
        return;
    ddsm_secure_free(c->key_secret, DDSM_AUDIT_KEY_LEN);
    free(c);
}

const char *ddsm_audit_chain_instance(const ddsm_audit_chain *c)
{
    return c != NULL ? c->instance : "";
}

int64_t ddsm_audit_chain_seq(const ddsm_audit_chain *c)
{
    return c != NULL ? c->seq : 0;
}

ddsm_err ddsm_audit_chain_seal(ddsm_audit_chain *c, ddsm_audit_row *rows, size_t n,
                               uint8_t (*macs)[DDSM_AUDIT_MAC_LEN])
{
    if (c == NULL || rows == NULL || macs == NULL || n == 0)
        return DDSM_E_ARG;
    bool idle = false;
    if (!atomic_compare_exchange_strong(&c->sealing, &idle, true)) {
        ddsm_log(DDSM_LOG_ERROR, "audit: chain %s is used by two writers at once", c->instance);
        return DDSM_E_ARG;
    }
    const uint8_t *prev = c->prev;
    for (size_t i = 0; i < n; i++) {
        rows[i].instance = c->instance;
        rows[i].seq = c->seq + 1 + (int64_t)i;
        ddsm_err e = row_mac_secret(c->key_secret, prev, &rows[i], macs[i]);
        if (e != DDSM_OK) {
            atomic_store(&c->sealing, false);
            return e;
        }
        prev = macs[i];
    }
    return DDSM_OK;
}

void ddsm_audit_chain_settle(ddsm_audit_chain *c, size_t n,
                             const uint8_t last_mac[DDSM_AUDIT_MAC_LEN],
                             enum ddsm_chain_outcome outcome)
{
    if (c == NULL)
        return;
    switch (outcome) {
    case DDSM_CHAIN_COMMITTED:
        c->seq += (int64_t)n;
        memcpy(c->prev, last_mac, DDSM_AUDIT_MAC_LEN);
        break;
    case DDSM_CHAIN_NOT_WRITTEN:
        break;
    case DDSM_CHAIN_UNKNOWN:
        /* The rows may or may not be in. Whatever happened, the checkpoint moved with them (same
         * statement), so the old chain stays verifiable; new rows start a new chain. */
        c->epoch++;
        snprintf(c->instance, sizeof c->instance, "%s#%u", c->base, c->epoch + 1);
        c->seq = 0;
        memset(c->prev, 0, sizeof c->prev);
        ddsm_log(DDSM_LOG_WARN, "audit: the outcome of a write is unknown; continuing as chain %s",
                 c->instance);
        break;
    }
    atomic_store(&c->sealing, false);
}

ddsm_err ddsm_audit_instance_id(const char *prefix, char *out, size_t cap)
{
    char host[256];
    uint8_t rnd[4];
    size_t got = 0;
    if (out == NULL)
        return DDSM_E_ARG;
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "unknown-host");
    host[sizeof host - 1] = '\0';
    for (char *p = host; *p != '\0'; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p > 0x7e || *p == '/' || *p == '#')
            *p = '_';
    while (got < sizeof rnd) {
        ssize_t r = getrandom(rnd + got, sizeof rnd - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return ddsm_err_errno(errno);
        got += (size_t)r;
    }
    int n = snprintf(out, cap, "%s%s/%ld/%02x%02x%02x%02x", prefix != NULL ? prefix : "", host,
                     (long)getpid(), rnd[0], rnd[1], rnd[2], rnd[3]);
    if (n < 0 || (size_t)n >= cap || !instance_ok(out))
        return DDSM_E_INPUT;
    return DDSM_OK;
}

int64_t ddsm_audit_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void ddsm_audit_format_ts(int64_t us, char out[40])
{
    int64_t s = us / 1000000, frac = us % 1000000;
    if (frac < 0) {
        frac += 1000000;
        s--;
    }
    time_t t = (time_t)s;
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL) {
        snprintf(out, 40, "epoch");
        return;
    }
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%d %H:%M:%S", &tm);
    snprintf(out, 40, "%.26s.%06d+00", base, (int)frac);
}

/* ------------------------------------------------------------------------------------------ */
/* Reading rows back */

/* A bytea in hex output format ("\x" and 64 hex digits) into 32 bytes. */
static bool parse_mac(const char *s, uint8_t out[DDSM_AUDIT_MAC_LEN])
{
    if (s[0] != '\\' || s[1] != 'x' || strlen(s) != 2 + 2 * DDSM_AUDIT_MAC_LEN)
        return false;
    for (size_t i = 0; i < DDSM_AUDIT_MAC_LEN; i++) {
        int hi = OPENSSL_hexchar2int((unsigned char)s[2 + 2 * i]);
        int lo = OPENSSL_hexchar2int((unsigned char)s[3 + 2 * i]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

static const char *text_or_null(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

/* Statements of a long read-only walk get this bound each (a page, not the whole walk). */
#define WALK_STATEMENT_TIMEOUT_MS 120000
#define WALK_STATEMENT_TIMEOUT_TEXT "120000"
#define WALK_CLIENT_TIMEOUT_MS (WALK_STATEMENT_TIMEOUT_MS + 5000)

/* BEGIN a REPEATABLE READ READ ONLY transaction: every cursor of the walk sees one snapshot, so
 * rows and checkpoints written meanwhile cannot look like tampering. */
static ddsm_err tx_begin(ddsm_store *st)
{
    struct ddsm_pq *pq = ddsm_store_pq(st);
    ddsm_err e = ddsm_pq_ensure(pq, NULL);
    if (e != DDSM_OK)
        return e;
    e = ddsm_pq_exec_sql(pq, "begin", "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, 0,
                         NULL);
    if (e != DDSM_OK)
        return e;
    const char *v[] = {WALK_STATEMENT_TIMEOUT_TEXT};
    return ddsm_pq_exec_sql(pq, "set statement_timeout",
                            "SELECT pg_catalog.set_config('statement_timeout', $1, true)", 1, v, 0,
                            NULL);
}

static void tx_end(ddsm_store *st, ddsm_err so_far)
{
    struct ddsm_pq *pq = ddsm_store_pq(st);
    if (pq->conn == NULL || PQtransactionStatus(pq->conn) == PQTRANS_IDLE)
        return;
    char keep[sizeof pq->errmsg];
    memcpy(keep, pq->errmsg, sizeof keep);
    if (ddsm_pq_exec_sql(pq, "end", so_far == DDSM_OK ? "COMMIT" : "ROLLBACK", 0, NULL, 0, NULL) !=
        DDSM_OK)
        ddsm_pq_reset(pq);
    if (so_far != DDSM_OK)
        memcpy(pq->errmsg, keep, sizeof keep);
}

static ddsm_err fetch(struct ddsm_pq *pq, const char *cursor_sql, const char *what, PGresult **res)
{
    return ddsm_pq_exec_sql(pq, what, cursor_sql, 0, NULL, WALK_CLIENT_TIMEOUT_MS, res);
}

/* ------------------------------------------------------------------------------------------ */
/* Verify */

const char *ddsm_audit_kind_name(ddsm_audit_kind k)
{
    static const char *const names[DDSM_AUDIT__KINDS] = {
        "EDITED",          "DELETED",   "REORDERED",  "DUPLICATE",   "TRUNCATED",  "CHECKPOINT",
        "UNAUTHENTICATED", "PRE_CHAIN", "LEGACY_KEY", "ROLLED_BACK", "CHAIN_GONE", "ANCHOR",
    };
    return (unsigned)k < DDSM_AUDIT__KINDS ? names[k] : "?";
}

/* The walk over chained rows: every column the MAC covers, in chain order. */
#define VERIFY_ROWS_SELECT                                                                         \
    "SELECT id, event, asset_id::text, derivation_path, counter, state_at_derivation,"             \
    " (extract(epoch FROM ts) * 1000000)::bigint, requester, instance_id, seq, detail, mac"        \
    " FROM custody_audit_log WHERE seq IS NOT NULL AND instance_id IS NOT NULL"                    \
    " AND ts >= $1::timestamptz AND ($2::text IS NULL OR instance_id = $2::text)"
#define VERIFY_ORDER " ORDER BY instance_id, seq, id"

const char ddsm_audit_verify_sql[] = VERIFY_ROWS_SELECT VERIFY_ORDER;
static const char verify_rows_sql[] =
    "DECLARE ddsm_verify_rows NO SCROLL CURSOR FOR " VERIFY_ROWS_SELECT VERIFY_ORDER;
static const char verify_heads_sql[] =
    "DECLARE ddsm_verify_heads NO SCROLL CURSOR FOR"
    " SELECT instance_id, seq, mac FROM custody_audit_chain_heads"
    " WHERE $1::text IS NULL OR instance_id = $1::text ORDER BY instance_id";
/* Rows outside every chain, as runs of consecutive ids, split at the migration that began
 * chaining (pre-chain rows are older than it). */
static const char verify_unchained_sql[] =
    "DECLARE ddsm_verify_unchained NO SCROLL CURSOR FOR"
    " SELECT pre, min(id), max(id), count(*) FROM ("
    "  SELECT id, pre, id - row_number() OVER (PARTITION BY pre ORDER BY id) AS grp FROM ("
    "   SELECT l.id, l.id < coalesce(m.chain_start_id, 0) AS pre"
    "     FROM custody_audit_log l LEFT JOIN custody_audit_meta m ON true"
    "    WHERE (l.seq IS NULL OR l.instance_id IS NULL) AND l.ts >= $1::timestamptz"
    "      AND ($2::text IS NULL OR l.instance_id = $2::text)) x) y"
    " GROUP BY pre, grp ORDER BY min(id)";
static const char verify_row_exists_sql[] =
    "SELECT 1 FROM custody_audit_log WHERE instance_id = $1 AND seq = $2::bigint LIMIT 1";

struct vwalk {
    ddsm_store *st;
    struct ddsm_pq *pq;
    const ddsm_audit_key *k;
    const ddsm_audit_verify_opts *o;
    ddsm_audit_finding_cb cb;
    void *arg;
    ddsm_audit_verify_stats stats;
    bool stop;
    unsigned page;
    char fetch_rows[96], fetch_heads[96];
    /* the chain being walked */
    char *inst;
    int64_t last_seq, last_id;
    uint8_t prev[DDSM_AUDIT_MAC_LEN];
    bool prev_ok;     /* prev is a MAC the next row must chain from */
    bool prev_failed; /* the previous row failed its MAC check */
    /* checkpoints, merged by instance id */
    PGresult *heads;
    int head_i;
    bool heads_done;
    /* per-writer keys (opts->prf): rows with id >= cutoff are checked under their writer's key */
    int64_t cutoff;                         /* INT64_MAX: none (every row under k) */
    bool has_writer;                        /* the chain being walked names a writer */
    char writer[DDSM_AUDIT_WRITER_MAX + 1]; /* ... this one */
    ddsm_audit_key *wkey;                   /* the key of wkey->writer, derived once */
};

/* custody_audit_meta.writer_keys_from_id, read so that a store from before migration 007 (no such
 * column) answers NULL: every row is then a legacy row. */
static const char verify_cutoff_sql[] =
    "SELECT (pg_catalog.to_jsonb(m) ->> 'writer_keys_from_id')::bigint FROM custody_audit_meta m";

static ddsm_err read_cutoff(struct vwalk *w)
{
    PGresult *r = NULL;
    w->cutoff = INT64_MAX;
    if (w->o->prf == NULL)
        return DDSM_OK;
    ddsm_err e = ddsm_pq_exec_sql(w->pq, "verify: read where per-writer keys begin",
                                  verify_cutoff_sql, 0, NULL, WALK_CLIENT_TIMEOUT_MS, &r);
    if (e != DDSM_OK)
        return e;
    int64_t v = 0;
    if (PQntuples(r) == 1 && !PQgetisnull(r, 0, 0) && ddsm_pq_get_i64(r, 0, 0, &v))
        w->cutoff = v;
    PQclear(r);
    return DDSM_OK;
}

/* The key row id of the chain being walked must verify under: NULL when the chain names no
 * writer (its rows cannot verify). */
static ddsm_err row_key(struct vwalk *w, int64_t id, const ddsm_audit_key **out)
{
    *out = w->k;
    if (id < w->cutoff)
        return DDSM_OK;
    *out = NULL;
    if (!w->has_writer)
        return DDSM_OK;
    if (w->wkey == NULL || strcmp(w->wkey->writer, w->writer) != 0) {
        ddsm_audit_key_free(w->wkey);
        w->wkey = NULL;
        ddsm_err e = ddsm_audit_writer_key_derive(w->o->prf, w->writer, &w->wkey);
        if (e != DDSM_OK)
            return ddsm_pq_fail(w->pq, e, "verify: cannot derive the key of writer %s", w->writer);
    }
    *out = w->wkey;
    return DDSM_OK;
}

static void report(struct vwalk *w, ddsm_audit_kind kind, const char *instance, int64_t row_id,
                   int64_t other_id, int64_t seq_from, int64_t seq_to, int64_t count,
                   const char *fmt, ...) __attribute__((format(printf, 9, 10)));

static void report(struct vwalk *w, ddsm_audit_kind kind, const char *instance, int64_t row_id,
                   int64_t other_id, int64_t seq_from, int64_t seq_to, int64_t count,
                   const char *fmt, ...)
{
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    w->stats.findings[kind]++;
    if (w->stop || w->cb == NULL)
        return;
    ddsm_audit_finding f = {
        .kind = kind,
        .instance = instance,
        .row_id = row_id,
        .other_id = other_id,
        .seq_from = seq_from,
        .seq_to = seq_to,
        .count = count,
        .detail = detail,
    };
    if (w->cb(&f, w->arg) != 0)
        w->stop = true;
}

/* The next checkpoint, or NULL when none is left. */
static ddsm_err head_peek(struct vwalk *w, const char **inst, int64_t *seq, const char **mac)
{
    *inst = NULL;
    if (w->heads_done)
        return DDSM_OK;
    if (w->heads == NULL || w->head_i >= PQntuples(w->heads)) {
        PQclear(w->heads);
        w->heads = NULL;
        w->head_i = 0;
        ddsm_err e = fetch(w->pq, w->fetch_heads, "verify: read checkpoints", &w->heads);
        if (e != DDSM_OK)
            return e;
        if (PQntuples(w->heads) == 0) {
            w->heads_done = true;
            return DDSM_OK;
        }
    }
    *inst = PQgetvalue(w->heads, w->head_i, 0);
    if (!ddsm_pq_get_i64(w->heads, w->head_i, 1, seq))
        *seq = 0;
    *mac = PQgetvalue(w->heads, w->head_i, 2);
    return DDSM_OK;
}

/* A checkpoint whose chain has no row in the walk. */
static ddsm_err orphan_head(struct vwalk *w, const char *inst, int64_t seq)
{
    if (w->o->has_since) {
        /* Its rows may all be older than --since: only a missing last row is a finding. */
        char seqt[24];
        snprintf(seqt, sizeof seqt, "%" PRId64, seq);
        const char *v[] = {inst, seqt};
        PGresult *r = NULL;
        ddsm_err e = ddsm_pq_exec_sql(w->pq, "verify: look up a checkpointed row",
                                      verify_row_exists_sql, 2, v, WALK_CLIENT_TIMEOUT_MS, &r);
        if (e != DDSM_OK)
            return e;
        bool exists = PQntuples(r) > 0;
        PQclear(r);
        if (exists)
            return DDSM_OK;
    }
    report(w, DDSM_AUDIT_TRUNCATED, inst, 0, 0, 1, seq, seq,
           "chain %s: its checkpoint is at seq %" PRId64 " but none of its rows%s is left", inst,
           seq, w->o->has_since ? " since the given time (nor its last row)" : "");
    return DDSM_OK;
}

/* Checkpoints before inst (in byte order) have no rows: report them; then compare inst's own. */
static ddsm_err end_chain(struct vwalk *w)
{
    const char *hinst = NULL, *hmac = NULL;
    int64_t hseq = 0;
    for (;;) {
        ddsm_err e = head_peek(w, &hinst, &hseq, &hmac);
        if (e != DDSM_OK)
            return e;
        if (hinst == NULL || w->inst == NULL || strcmp(hinst, w->inst) >= 0)
            break;
        e = orphan_head(w, hinst, hseq);
        if (e != DDSM_OK)
            return e;
        w->head_i++;
    }
    if (w->inst == NULL)
        return DDSM_OK;
    if (hinst == NULL || strcmp(hinst, w->inst) != 0) {
        report(w, DDSM_AUDIT_CHECKPOINT, w->inst, w->last_id, 0, w->last_seq, w->last_seq, 0,
               "chain %s has no checkpoint (its last row is id %" PRId64 ", seq %" PRId64 ")",
               w->inst, w->last_id, w->last_seq);
        return DDSM_OK;
    }
    uint8_t mac[DDSM_AUDIT_MAC_LEN];
    if (hseq > w->last_seq) {
        report(w, DDSM_AUDIT_TRUNCATED, w->inst, w->last_id, 0, w->last_seq + 1, hseq,
               hseq - w->last_seq,
               "chain %s: rows seq %" PRId64 "..%" PRId64 " after row id %" PRId64
               " are missing (the checkpoint is at seq %" PRId64 ")",
               w->inst, w->last_seq + 1, hseq, w->last_id, hseq);
    } else if (hseq < w->last_seq) {
        report(w, DDSM_AUDIT_CHECKPOINT, w->inst, w->last_id, 0, hseq, w->last_seq, 0,
               "chain %s: the checkpoint (seq %" PRId64 ") is behind its last row id %" PRId64
               " (seq %" PRId64 ")",
               w->inst, hseq, w->last_id, w->last_seq);
    } else if (!parse_mac(hmac, mac) || !w->prev_ok ||
               !ddsm_ct_equal(mac, w->prev, DDSM_AUDIT_MAC_LEN)) {
        report(w, DDSM_AUDIT_CHECKPOINT, w->inst, w->last_id, 0, hseq, hseq, 0,
               "chain %s: the checkpoint's MAC is not that of its last row id %" PRId64
               " (seq %" PRId64 ")",
               w->inst, w->last_id, w->last_seq);
    }
    w->head_i++;
    return DDSM_OK;
}

/* One chained row (columns as in VERIFY_ROWS_SELECT). */
static ddsm_err walk_row(struct vwalk *w, const PGresult *r, int i)
{
    int64_t id = 0, counter = 0, ts = 0, seq = 0;
    ddsm_audit_row row;
    uint8_t mac[DDSM_AUDIT_MAC_LEN], want[DDSM_AUDIT_MAC_LEN];
    memset(&row, 0, sizeof row);

    if (!ddsm_pq_get_i64(r, i, 0, &id) || !ddsm_pq_get_i64(r, i, 6, &ts) ||
        !ddsm_pq_get_i64(r, i, 9, &seq))
        return ddsm_pq_fail(w->pq, DDSM_E_STORE, "verify: a row's id, ts or seq does not parse");
    const char *inst = PQgetvalue(r, i, 8);
    row.event = PQgetvalue(r, i, 1);
    const char *asset = text_or_null(r, i, 2);
    if (asset != NULL) {
        row.has_asset = true;
        if (ddsm_uuid_parse(asset, strlen(asset), &row.asset) != DDSM_OK)
            return ddsm_pq_fail(w->pq, DDSM_E_STORE, "verify: row %" PRId64 ": bad asset id", id);
    }
    row.path = text_or_null(r, i, 3);
    if (!PQgetisnull(r, i, 4)) {
        row.has_counter = true;
        if (!ddsm_pq_get_i64(r, i, 4, &counter))
            return ddsm_pq_fail(w->pq, DDSM_E_STORE, "verify: row %" PRId64 ": bad counter", id);
        row.counter = counter;
    }
    row.state = text_or_null(r, i, 5);
    row.ts_us = ts;
    row.requester = text_or_null(r, i, 7);
    row.instance = inst;
    row.seq = seq;
    row.detail = text_or_null(r, i, 10);
    bool has_mac = !PQgetisnull(r, i, 11) && parse_mac(PQgetvalue(r, i, 11), mac);

    w->stats.rows++;
    if (w->inst == NULL || strcmp(w->inst, inst) != 0) {
        ddsm_err e = DDSM_OK;
        if (w->inst != NULL)
            e = end_chain(w);
        if (e != DDSM_OK)
            return e;
        free(w->inst);
        w->inst = strdup(inst);
        if (w->inst == NULL)
            return DDSM_E_NOMEM;
        w->stats.chains++;
        w->prev_failed = false;
        w->has_writer = ddsm_audit_writer_of(inst, w->writer, sizeof w->writer);
        if (seq == 1) {
            memset(w->prev, 0, sizeof w->prev);
            w->prev_ok = true;
        } else {
            /* Its MAC chains from a row we do not have. */
            w->prev_ok = false;
            if (!w->o->has_since)
                report(w, DDSM_AUDIT_DELETED, inst, id, 0, 1, seq - 1, seq - 1,
                       "chain %s: rows seq 1..%" PRId64 " before row id %" PRId64 " are missing",
                       inst, seq - 1, id);
        }
    } else if (seq == w->last_seq) {
        report(w, DDSM_AUDIT_DUPLICATE, inst, id, w->last_id, seq, seq, 1,
               "chain %s: row id %" PRId64 " repeats seq %" PRId64 " of row id %" PRId64, inst, id,
               seq, w->last_id);
        return DDSM_OK;
    } else if (seq > w->last_seq + 1) {
        report(w, DDSM_AUDIT_DELETED, inst, id, w->last_id, w->last_seq + 1, seq - 1,
               seq - 1 - w->last_seq,
               "chain %s: rows seq %" PRId64 "..%" PRId64 " between row ids %" PRId64
               " and %" PRId64 " are missing",
               inst, w->last_seq + 1, seq - 1, w->last_id, id);
        w->prev_ok = false;
    } else if (id < w->last_id) {
        report(w, DDSM_AUDIT_REORDERED, inst, id, w->last_id, seq, seq, 1,
               "chain %s: row id %" PRId64 " (seq %" PRId64 ") is stored before row id %" PRId64
               " (seq %" PRId64 ")",
               inst, id, seq, w->last_id, w->last_seq);
    }
    if (!has_mac) {
        report(w, DDSM_AUDIT_EDITED, inst, id, 0, seq, seq, 1,
               "chain %s: row id %" PRId64 " (seq %" PRId64 ") has no valid MAC", inst, id, seq);
    } else if (w->prev_ok) {
        const ddsm_audit_key *key = NULL;
        ddsm_err e = row_key(w, id, &key);
        if (e != DDSM_OK)
            return e;
        bool bad = true;
        if (key != NULL) {
            e = ddsm_audit_row_mac(key, w->prev, &row, want);
            if (e != DDSM_OK)
                return ddsm_pq_fail(w->pq, e, "verify: cannot compute the MAC of row %" PRId64, id);
            bad = !ddsm_ct_equal(want, mac, DDSM_AUDIT_MAC_LEN);
        }
        bool legacy = false;
        if (bad && key != w->k) {
            e = ddsm_audit_row_mac(w->k, w->prev, &row, want);
            if (e != DDSM_OK)
                return ddsm_pq_fail(w->pq, e, "verify: cannot compute the MAC of row %" PRId64, id);
            legacy = ddsm_ct_equal(want, mac, DDSM_AUDIT_MAC_LEN);
        }
        if (legacy) {
            report(w, DDSM_AUDIT_LEGACY_KEY, inst, id, 0, seq, seq, 1,
                   "chain %s: row id %" PRId64 " (seq %" PRId64 ", %s) is MACed under the legacy "
                   "shared key, but per-writer keys began at row id %" PRId64 ": a writer not "
                   "upgraded, or a forgery by a holder of that key",
                   inst, id, seq, row.event, w->cutoff);
            bad = false;
        } else if (bad && key == NULL)
            report(w, DDSM_AUDIT_EDITED, inst, id, 0, seq, seq, 1,
                   "chain %s: row id %" PRId64 " (seq %" PRId64 ", %s) does not match its MAC: "
                   "its chain names no writer, so no writer's key can have made it",
                   inst, id, seq, row.event);
        else if (bad && w->prev_failed)
            /* A replaced MAC breaks the next row's link too: say so rather than guess. */
            report(w, DDSM_AUDIT_EDITED, inst, id, w->last_id, seq, seq, 1,
                   "chain %s: row id %" PRId64 " (seq %" PRId64 ", %s) does not chain from row "
                   "id %" PRId64 ", which failed too: that row's MAC was replaced, or both rows "
                   "were edited",
                   inst, id, seq, row.event, w->last_id);
        else if (bad)
            report(w, DDSM_AUDIT_EDITED, inst, id, 0, seq, seq, 1,
                   "chain %s: row id %" PRId64 " (seq %" PRId64 ", %s) does not match its MAC",
                   inst, id, seq, row.event);
        w->prev_failed = bad;
    } else {
        w->prev_failed = !has_mac;
    }
    if (has_mac)
        memcpy(w->prev, mac, sizeof w->prev);
    w->prev_ok = has_mac;
    w->last_seq = seq;
    w->last_id = id;
    return DDSM_OK;
}

static ddsm_err walk_unchained(struct vwalk *w, const char *const *params)
{
    PGresult *r = NULL;
    ddsm_err e = ddsm_pq_exec_sql(w->pq, "verify: rows outside every chain", verify_unchained_sql,
                                  2, params, WALK_CLIENT_TIMEOUT_MS, NULL);
    while (e == DDSM_OK && !w->stop) {
        e = fetch(w->pq, "FETCH FORWARD 1000 FROM ddsm_verify_unchained",
                  "verify: rows outside every chain", &r);
        if (e != DDSM_OK || PQntuples(r) == 0)
            break;
        for (int i = 0; i < PQntuples(r); i++) {
            int64_t lo = 0, hi = 0, n = 0;
            bool pre = strcmp(PQgetvalue(r, i, 0), "t") == 0;
            if (!ddsm_pq_get_i64(r, i, 1, &lo) || !ddsm_pq_get_i64(r, i, 2, &hi) ||
                !ddsm_pq_get_i64(r, i, 3, &n)) {
                e = ddsm_pq_fail(w->pq, DDSM_E_STORE, "verify: bad id range");
                break;
            }
            w->stats.unchained_rows += (uint64_t)n;
            ddsm_audit_kind kind = pre ? DDSM_AUDIT_PRE_CHAIN : DDSM_AUDIT_UNAUTHENTICATED;
            w->stats.findings[kind]++;
            if (w->cb != NULL && !w->stop) {
                char detail[320];
                bool one = lo == hi;
                if (one)
                    snprintf(detail, sizeof detail, "row id %" PRId64 " %s", lo,
                             pre ? "was written before the audit chain began (migration 002) "
                                   "and was never authenticated"
                                 : "has no MAC and belongs to no chain");
                else
                    snprintf(detail, sizeof detail,
                             "%" PRId64 " rows with ids %" PRId64 "..%" PRId64 " %s", n, lo, hi,
                             pre ? "were written before the audit chain began (migration 002) "
                                   "and were never authenticated"
                                 : "have no MAC and belong to no chain");
                ddsm_audit_finding f = {
                    .kind = kind, .row_id = lo, .id_to = hi, .count = n, .detail = detail};
                if (w->cb(&f, w->arg) != 0)
                    w->stop = true;
            }
        }
        PQclear(r);
        r = NULL;
    }
    PQclear(r);
    return e;
}

ddsm_err ddsm_audit_verify(ddsm_store *st, const ddsm_audit_key *k,
                           const ddsm_audit_verify_opts *opts, ddsm_audit_finding_cb cb, void *arg,
                           ddsm_audit_verify_stats *stats)
{
    if (st == NULL || k == NULL)
        return DDSM_E_ARG;
    ddsm_audit_verify_opts none;
    memset(&none, 0, sizeof none);
    struct vwalk w;
    memset(&w, 0, sizeof w);
    w.st = st;
    w.pq = ddsm_store_pq(st);
    w.k = k;
    w.o = opts != NULL ? opts : &none;
    w.cb = cb;
    w.arg = arg;
    w.page = w.o->page_rows != 0 ? w.o->page_rows : 2000;
    w.cutoff = INT64_MAX;
    snprintf(w.fetch_rows, sizeof w.fetch_rows, "FETCH FORWARD %u FROM ddsm_verify_rows", w.page);
    snprintf(w.fetch_heads, sizeof w.fetch_heads, "FETCH FORWARD 1000 FROM ddsm_verify_heads");
    if (w.o->instance != NULL && !instance_ok(w.o->instance))
        return ddsm_pq_fail(w.pq, DDSM_E_INPUT,
                            "verify: the instance id must be 1..%d "
                            "printable characters",
                            DDSM_AUDIT_INSTANCE_MAX);

    char since[40];
    if (w.o->has_since)
        ddsm_audit_format_ts(w.o->since_us, since);
    else
        snprintf(since, sizeof since, "-infinity");
    const char *params[] = {since, w.o->instance};
    PGresult *r = NULL;

    ddsm_err e = tx_begin(st);
    if (e != DDSM_OK)
        goto out;
    e = read_cutoff(&w);
    if (e != DDSM_OK)
        goto out;
    e = ddsm_pq_exec_sql(w.pq, "verify: open the chain walk", verify_rows_sql, 2, params,
                         WALK_CLIENT_TIMEOUT_MS, NULL);
    if (e != DDSM_OK)
        goto out;
    e = ddsm_pq_exec_sql(w.pq, "verify: open the checkpoints", verify_heads_sql, 1, params + 1,
                         WALK_CLIENT_TIMEOUT_MS, NULL);
    if (e != DDSM_OK)
        goto out;
    while (!w.stop) {
        e = fetch(w.pq, w.fetch_rows, "verify: read rows", &r);
        if (e != DDSM_OK)
            goto out;
        int n = PQntuples(r);
        for (int i = 0; i < n && e == DDSM_OK && !w.stop; i++)
            e = walk_row(&w, r, i);
        PQclear(r);
        r = NULL;
        if (e != DDSM_OK)
            goto out;
        if (w.o->progress != NULL)
            w.o->progress(w.stats.rows, w.stats.chains, w.o->progress_arg);
        if (n < (int)w.page)
            break;
    }
    if (w.stop)
        goto out;
    /* The last chain, then the checkpoints of chains with no row at all. */
    e = end_chain(&w);
    free(w.inst);
    w.inst = NULL;
    while (e == DDSM_OK && !w.stop) {
        const char *hinst = NULL, *hmac = NULL;
        int64_t hseq = 0;
        e = head_peek(&w, &hinst, &hseq, &hmac);
        if (e != DDSM_OK || hinst == NULL)
            break;
        e = orphan_head(&w, hinst, hseq);
        w.head_i++;
    }
    if (e == DDSM_OK && !w.stop)
        e = walk_unchained(&w, params);
out:
    PQclear(r);
    PQclear(w.heads);
    free(w.inst);
    ddsm_audit_key_free(w.wkey);
    tx_end(st, e);
    if (e == DDSM_OK && stats != NULL)
        *stats = w.stats;
    return e;
}

/* ------------------------------------------------------------------------------------------ */
/* Reconcile */

/* For every ACTIVE or ROTATING asset, in one statement:
 *  - COUNTER_DRIFT: the registry counter is not where the rotation records end, or an audit row
 *    carries a counter above the registry's;
 *  - MISSING_AUDIT_ENTRY: a rotation record with no ROTATE row, or a counter the registry passed
 *    with neither a rotation record nor a ROTATE row;
 *  - ROTATED_COUNTER_DERIVED: a DERIVE row whose statement began (recorded_at, server clock, at or
 *    before the snapshot its counter was read in) after a rotation to a newer counter had surely
 *    committed (committed_at, taken after the commit; else the start of the next rotation, which
 *    had to wait for it). Only server clocks are compared.
 * $1: DERIVE / audit rows with ts >= $1 only ('-infinity': all). */
const char ddsm_audit_reconcile_sql[] =
    "WITH a AS ("
    " SELECT k.asset_id, k.label, k.derivation_counter AS counter"
    "   FROM custody_keys k"
    "  WHERE ddsm_effective_state(k.state, k.grace_until) IN ('ACTIVE', 'ROTATING')"
    "), rot AS ("
    " SELECT r.id, r.asset_id, r.from_counter, r.to_counter,"
    "        coalesce(r.committed_at, lead(r.rotated_at) OVER w) AS commit_ub"
    "   FROM custody_rotations r JOIN a USING (asset_id)"
    " WINDOW w AS (PARTITION BY r.asset_id ORDER BY r.to_counter, r.id)"
    "), settled AS ("
    " SELECT rot.*, min(rot.commit_ub) OVER (PARTITION BY rot.asset_id"
    "        ORDER BY rot.to_counter DESC, rot.id DESC ROWS UNBOUNDED PRECEDING) AS settled_at"
    "   FROM rot"
    "), last_rot AS ("
    " SELECT asset_id, max(to_counter) AS to_counter FROM rot GROUP BY asset_id"
    "), f AS ("
    " SELECT 'COUNTER_DRIFT' AS kind, a.asset_id, a.label, 0::bigint AS row_id,"
    "        a.counter, coalesce(l.to_counter, 0) AS expected,"
    "        format('the registry counter is %s but the rotation records end at %s',"
    "               a.counter, coalesce(l.to_counter, 0)) AS detail"
    "   FROM a LEFT JOIN last_rot l USING (asset_id)"
    "  WHERE a.counter <> coalesce(l.to_counter, 0)"
    " UNION ALL"
    " SELECT 'MISSING_AUDIT_ENTRY', a.asset_id, a.label, r.id, r.to_counter, r.to_counter,"
    "        format('rotation record %s (counter %s to %s) has no ROTATE audit row',"
    "               r.id, r.from_counter, r.to_counter)"
    "   FROM rot r JOIN a USING (asset_id)"
    "  WHERE NOT EXISTS (SELECT 1 FROM custody_audit_log l"
    "                     WHERE l.asset_id = r.asset_id AND l.event = 'ROTATE'"
    "                       AND l.counter = r.to_counter)"
    " UNION ALL"
    " SELECT 'MISSING_AUDIT_ENTRY', a.asset_id, a.label, 0, g.c, g.c,"
    "        format('the registry counter (now %s) passed %s with neither a rotation record"
    " nor a ROTATE audit row', a.counter, g.c)"
    "   FROM a CROSS JOIN LATERAL generate_series(1, a.counter) AS g(c)"
    "  WHERE NOT EXISTS (SELECT 1 FROM rot r WHERE r.asset_id = a.asset_id AND r.to_counter = g.c)"
    "    AND NOT EXISTS (SELECT 1 FROM custody_audit_log l"
    "                     WHERE l.asset_id = a.asset_id AND l.event = 'ROTATE'"
    "                       AND l.counter = g.c)"
    " UNION ALL"
    " SELECT 'COUNTER_DRIFT', a.asset_id, a.label, l.id, l.counter, a.counter,"
    "        format('%s row %s has counter %s, above the registry counter %s',"
    "               l.event, l.id, l.counter, a.counter)"
    "   FROM custody_audit_log l JOIN a USING (asset_id)"
    "  WHERE l.event IN ('DERIVE', 'ROTATE') AND l.counter > a.counter AND l.ts >= $1::timestamptz"
    " UNION ALL"
    " SELECT 'ROTATED_COUNTER_DERIVED', a.asset_id, a.label, d.id, d.counter, s.to_counter,"
    "        format('DERIVE row %s used counter %s in a statement that began at %s, after the"
    " rotation to counter %s had committed (by %s)',"
    "               d.id, d.counter, d.recorded_at, s.to_counter, s.settled_at)"
    "   FROM custody_audit_log d JOIN a USING (asset_id)"
    "   JOIN settled s ON s.asset_id = d.asset_id AND s.to_counter = d.counter + 1"
    "  WHERE d.event = 'DERIVE' AND d.recorded_at > s.settled_at AND d.ts >= $1::timestamptz"
    ")"
    " SELECT kind, asset_id::text, label, row_id, counter, expected, detail FROM f"
    "  ORDER BY kind, label, asset_id, row_id, counter";

ddsm_err ddsm_audit_reconcile(ddsm_store *st, const ddsm_reconcile_opts *opts, ddsm_reconcile_cb cb,
                              void *arg, uint64_t *count)
{
    if (st == NULL)
        return DDSM_E_ARG;
    struct ddsm_pq *pq = ddsm_store_pq(st);
    char since[40];
    if (opts != NULL && opts->has_since)
        ddsm_audit_format_ts(opts->since_us, since);
    else
        snprintf(since, sizeof since, "-infinity");
    const char *params[] = {since};
    static const char declare_prefix[] = "DECLARE ddsm_reconcile NO SCROLL CURSOR FOR ";
    char *declare = malloc(sizeof declare_prefix + sizeof ddsm_audit_reconcile_sql);
    PGresult *r = NULL;
    uint64_t n = 0;
    bool stop = false;
    ddsm_err e;

    if (declare == NULL)
        return DDSM_E_NOMEM;
    snprintf(declare, sizeof declare_prefix + sizeof ddsm_audit_reconcile_sql, "%s%s",
             declare_prefix, ddsm_audit_reconcile_sql);
    e = tx_begin(st);
    if (e != DDSM_OK)
        goto out;
    e = ddsm_pq_exec_sql(pq, "reconcile", declare, 1, params, WALK_CLIENT_TIMEOUT_MS, NULL);
    while (e == DDSM_OK && !stop) {
        e = fetch(pq, "FETCH FORWARD 1000 FROM ddsm_reconcile", "reconcile", &r);
        if (e != DDSM_OK || PQntuples(r) == 0)
            break;
        for (int i = 0; i < PQntuples(r) && !stop; i++) {
            ddsm_reconcile_finding f;
            memset(&f, 0, sizeof f);
            const char *id = PQgetvalue(r, i, 1);
            f.kind = PQgetvalue(r, i, 0);
            f.label = PQgetvalue(r, i, 2);
            f.detail = PQgetvalue(r, i, 6);
            if (ddsm_uuid_parse(id, strlen(id), &f.asset) != DDSM_OK ||
                !ddsm_pq_get_i64(r, i, 3, &f.row_id) || !ddsm_pq_get_i64(r, i, 4, &f.counter) ||
                !ddsm_pq_get_i64(r, i, 5, &f.expected)) {
                e = ddsm_pq_fail(pq, DDSM_E_STORE, "reconcile: a finding does not parse");
                break;
            }
            n++;
            if (cb != NULL && cb(&f, arg) != 0)
                stop = true;
        }
        PQclear(r);
        r = NULL;
    }
out:
    PQclear(r);
    free(declare);
    tx_end(st, e);
    if (e == DDSM_OK && count != NULL)
        *count = n;
    return e;
}

/* ------------------------------------------------------------------------------------------ */
/* Partitions */

static const char maintain_sql[] =
    "SELECT to_char(m, 'YYYY-MM'), 'custody_audit_log_' || to_char(m, 'YYYY_MM'),"
    "       moved IS NOT NULL, coalesce(moved, 0)"
    "  FROM (SELECT m, ddsm_audit_ensure_partition(m) AS moved"
    "          FROM (SELECT (date_trunc('month', now() AT TIME ZONE 'UTC')"
    "                        + make_interval(months => g))::date AS m"
    "                  FROM generate_series(0, $1::int) g) months"
    "         ORDER BY m) s";
static const char strays_sql[] =
    "SELECT to_char(date_trunc('month', ts AT TIME ZONE 'UTC'), 'YYYY-MM'), count(*),"
    "       min(id), max(id)"
    "  FROM custody_audit_log_default GROUP BY 1 ORDER BY 1";

#define MAINTAIN_MONTHS_MAX 120

ddsm_err ddsm_audit_maintain(ddsm_store *st, unsigned months, ddsm_maintain_cb cb, void *arg,
                             int64_t *stray_rows)
{
    if (st == NULL)
        return DDSM_E_ARG;
    struct ddsm_pq *pq = ddsm_store_pq(st);
    if (months > MAINTAIN_MONTHS_MAX)
        return ddsm_pq_fail(pq, DDSM_E_INPUT, "maintain: at most %d months ahead",
                            MAINTAIN_MONTHS_MAX);
    char m[16];
    snprintf(m, sizeof m, "%u", months);
    const char *v[] = {m};
    PGresult *r = NULL;
    int64_t strays = 0;
    const struct ddsm_pq_query q = {
        .mode = DDSM_PQ_PARAMS,
        .what = "maintain partitions",
        .sql = maintain_sql,
        .nparams = 1,
        .values = v,
        .timeout_ms = WALK_CLIENT_TIMEOUT_MS,
    };
    /* Idempotent: safe to retry on a new connection. */
    ddsm_err e = ddsm_store_run(st, &q, true, &r, NULL);
    if (e != DDSM_OK)
        goto out;
    for (int i = 0; i < PQntuples(r); i++) {
        ddsm_maintain_event ev;
        memset(&ev, 0, sizeof ev);
        ev.what =
            strcmp(PQgetvalue(r, i, 2), "t") == 0 ? DDSM_MAINTAIN_CREATED : DDSM_MAINTAIN_PRESENT;
        ev.month = PQgetvalue(r, i, 0);
        ev.partition = PQgetvalue(r, i, 1);
        if (!ddsm_pq_get_i64(r, i, 3, &ev.rows))
            ev.rows = 0;
        if (cb != NULL)
            cb(&ev, arg);
    }
    PQclear(r);
    r = NULL;
    const struct ddsm_pq_query qs = {
        .mode = DDSM_PQ_PARAMS,
        .what = "count rows in the default partition",
        .sql = strays_sql,
        .timeout_ms = WALK_CLIENT_TIMEOUT_MS,
    };
    e = ddsm_store_run(st, &qs, true, &r, NULL);
    if (e != DDSM_OK)
        goto out;
    for (int i = 0; i < PQntuples(r); i++) {
        ddsm_maintain_event ev;
        memset(&ev, 0, sizeof ev);
        ev.what = DDSM_MAINTAIN_STRAY;
        ev.month = PQgetvalue(r, i, 0);
        if (!ddsm_pq_get_i64(r, i, 1, &ev.rows) || !ddsm_pq_get_i64(r, i, 2, &ev.min_id) ||
            !ddsm_pq_get_i64(r, i, 3, &ev.max_id)) {
            e = ddsm_pq_fail(pq, DDSM_E_STORE, "maintain: a count does not parse");
            goto out;
        }
        strays += ev.rows;
        if (cb != NULL)
            cb(&ev, arg);
    }
    if (stray_rows != NULL)
        *stray_rows = strays;
out:
    PQclear(r);
    return e;
}
