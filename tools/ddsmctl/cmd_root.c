/* SPDX-License-Identifier: Apache-2.0 */
/* ddsmctl root ...: the root seed ceremony (docs/design.md "Root seed ceremony"). The seed exists
 * outside the HSM only in this process's secure memory while it is split (create --shares),
 * combined (recover) or read (import), and is wiped before the command returns. */
#include <errno.h>
#include <fcntl.h>
#include <libgfshare.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl.h"
#include "ddsm/derive.h"
#include "ddsm/rootpin.h"
#include "ddsm/secmem.h"
#include "share.h"
#include "tool.h"

#define SEED_LEN SHARE_SECRET_LEN
#define MAX_SHARES 255
#define HEX_FILE_MAX 4096

const ctl_help cmd_root_help = {
    "root",
    "ddsmctl root <subcommand> [options]",
    "The root seed: the one secret every asset key is derived from. It lives in the backend HSM\n"
    "as a non-extractable CKK_GENERIC_SECRET key labelled [backend] root_key_label, on the token\n"
    "[backend] root_token_label (PIN from root_pin_file) when set, else on token_label (with the\n"
    "user PIN).\n"
    "Subcommands:\n"
    "  create     generate the seed inside the HSM, or (--shares N --threshold K --out DIR) in\n"
    "             locked memory, split into N share files of which any K recover it\n"
    "  import     import a known seed from a hex file (recovery drills, test vectors)\n"
    "  recover    combine K or more share files into this HSM\n"
    "  info       show the root key's attributes, fingerprint and pin\n"
    "  pin        record the fingerprint of an existing root in the store\n"
    "\n"
    "Share files (DDSM-SHARE-V1) are text, printable and typeable like a paper backup:\n"
    "    # ddsm root seed share 2 of 5: any 3 shares recover the seed. Keep it offline.\n"
    "    DDSM-SHARE-V1\n"
    "    ceremony 5f1c2e0a9b8c7d6e threshold 3 shares 5 index 2  a1\n"
    "    fingerprint 0123456789abcdef0123456789abcdef  5c\n"
    "    1: abcd ef01 2345 6789 abcd ef01 2345 6789  c3\n"
    "    2: abcd ef01 2345 6789 abcd ef01 2345 6789  7a\n"
    "    check 9f3a01bc\n"
    "ceremony names one `root create --shares` run; index is the share's number (1..N); the\n"
    "fingerprint (first 16 bytes of HMAC-SHA256(seed, \"DDSM-v1 root fingerprint\")) is what\n"
    "`root info` shows; lines 1 and 2 hold the 32 share bytes (Shamir over GF(256)). Each line\n"
    "ends with a 2-digit check, the CRC-8 (poly 0x07, init 0, SMBus) of the line written in lower\n"
    "case with single spaces and data without grouping (e.g. \"1: abcdef01...\"), so a mistyped\n"
    "character is always named by its line; `check` covers the whole share (first 4 bytes of\n"
    "SHA-256 of those lines, each ending in \"\\n\"). Case, repeated blanks, blank lines and '#'\n"
    "comment lines do not matter.",
    NULL,
};

static const ctl_help create_help = {
    "root create",
    "ddsmctl root create [--shares N --threshold K --out DIR]",
    "Create the root seed key. Without options the HSM generates it (C_GenerateKey) and it never\n"
    "exists anywhere else: there is no backup. With --shares, 32 bytes from the OS CSPRNG are\n"
    "split by Shamir's scheme into N shares, any K of which recover the seed; each is written to\n"
    "DIR/ddsm-share-<i>-of-<N>.txt (mode 0400, never overwriting; DIR is created 0700 if\n"
    "missing), then the seed is imported into the HSM and wiped. Everything is checked before the\n"
    "seed is made: N and K, DIR, and that the token has no root key yet (exit 1, nothing\n"
    "written, when it has). Prints the root fingerprint; custodians compare it with their shares.",
    "  --shares N           number of share files, 1..255\n"
    "  --threshold K        shares needed to recover, 1..N\n"
    "  --out DIR            directory for the share files\n",
};

static const ctl_help import_help = {
    "root import",
    "ddsmctl root import --hex-file FILE",
    "Import a known root seed: FILE holds exactly 64 hex digits (whitespace anywhere is ignored).\n"
    "The seed is read into locked memory, imported as the non-extractable root key, and wiped.\n"
    "Refused (exit 1) when the token already holds a root key. For recovery drills and tests\n"
    "with known vectors; production seeds come from `root create`.",
    "  --hex-file FILE      the seed as 64 hex digits\n",
};

static const ctl_help recover_help = {
    "root recover",
    "ddsmctl root recover --share FILE --share FILE [--share FILE ...]",
    "Recover the root seed into this HSM from K or more share files of one ceremony (see\n"
    "`ddsmctl root --help` for the format). Every file is parsed and checked first: line checks,\n"
    "same ceremony, threshold, count and fingerprint, no index twice, at least K shares, and a\n"
    "token without a root key. Any failure names the offending file (and line) and writes\n"
    "nothing. The combined seed's fingerprint must equal the shares' before it is imported;\n"
    "then it is wiped. Exit 2 for bad or inconsistent shares, 1 when a root already exists.",
    "  --share FILE         a share file; repeat for each share (at least K)\n",
};

static const ctl_help info_help = {
    "root info",
    "ddsmctl root info [--json]",
    "Show the root key: token, label, key type, CKA_VALUE_LEN, the attributes the HSM enforces\n"
    "(sensitive, extractable, modifiable, copyable, destroyable, allowed mechanisms), its\n"
    "usages, CKA_UNIQUE_ID and CKA_CHECK_VALUE when the backend gives them, whether the store\n"
    "pins it, and its fingerprint computed by the HSM (an HMAC under the root key), which\n"
    "custodians compare with the fingerprint line of their shares. Warns about a root that lacks\n"
    "the HSM-enforced limits (made before ddsmctl set them: recover it from its shares into a new\n"
    "token) and about an unpinned one (`ddsmctl root pin`). With a root pinned in the store, keys\n"
    "that carry the root's label with another fingerprint are ignored. Exit 1 when the token\n"
    "holds no root key.",
    "  --json               one JSON object instead of text\n",
};

static const ctl_help pin_help = {
    "root pin",
    "ddsmctl root pin [--fingerprint FP]",
    "Record the fingerprint of the root key already on the token in the store's root pin, for a\n"
    "root made before the pin existed or while the store was out of reach (`root create`,\n"
    "`import` and `recover` pin the root they make). The module derives only with a pinned root\n"
    "and ignores every other key carrying its label. When several keys carry the label, name the\n"
    "root with --fingerprint (compare with the fingerprint line of its share files). Exit 1 when\n"
    "no such key exists or the store is not migrated; pinning a pinned root changes nothing.",
    "  --fingerprint FP     the root's fingerprint (32 lower-case hex digits)\n",
};

/* Fill buf from the OS CSPRNG (it becomes a secret when it is the seed): true, or false with
 * errno set. */
static bool getrandom_all(void *buf, size_t n)
{
    uint8_t *p = buf;
    size_t off = 0;
    while (off < n) {
        ssize_t r = getrandom(p + off, n - off, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        off += (size_t)r;
    }
    return true;
}

/* libgfshare draws polynomial coefficients (and scrubs freed contexts) through this hook. Its
 * signature cannot report failure, and a share made with weak coefficients leaks the seed, so a
 * failing getrandom ends the process. */
static void fill_rand_getrandom(unsigned char *buf, unsigned int n)
{
    if (!getrandom_all(buf, n)) {
        static const char msg[] = "ddsmctl: fatal: getrandom failed\n";
        (void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
        abort();
    }
}

static void gfshare_setup(void)
{
    gfshare_fill_rand = fill_rand_getrandom;
}

/* Combine m shares (secrets) into seed (a secret). */
static int combine_secret(const unsigned char *idx, uint8_t *const *data, size_t m,
                          uint8_t seed[SEED_LEN])
{
    unsigned char nrs[MAX_SHARES];
    memcpy(nrs, idx, m);
    gfshare_setup();
    gfshare_ctx *g = gfshare_ctx_init_dec(nrs, (unsigned)m, SEED_LEN);
    if (g == NULL) {
        ctl_err("cannot set up share combination: %s", strerror(errno));
        return CTL_EXIT_UNAVAILABLE;
    }
    for (size_t j = 0; j < m; j++)
        gfshare_ctx_dec_giveshare(g, (unsigned char)j, data[j]);
    gfshare_ctx_dec_extract(g, seed);
    gfshare_ctx_free(g);
    return CTL_EXIT_OK;
}

/* Fingerprint of a seed held in memory (a secret), with OpenSSL. */
static int seed_fingerprint_secret(const uint8_t seed[SEED_LEN], char fp[DDSM_FINGERPRINT_HEX + 1])
{
    ddsm_prf prf;
    ddsm_err e = ddsm_prf_openssl_new(seed, SEED_LEN, &prf);
    if (e == DDSM_OK) {
        e = ddsm_root_fingerprint(&prf, fp);
        ddsm_prf_openssl_free(&prf);
    }
    if (e != DDSM_OK) {
        ctl_err("cannot compute the seed fingerprint: %s", ddsm_err_str(e));
        return ctl_exit_for(e);
    }
    return CTL_EXIT_OK;
}

/* A byte-string attribute of obj as lower-case hex into out (false when the backend has none). */
static bool hex_attr(ctl_hsm *h, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE t, char *out, size_t cap)
{
    uint8_t buf[64];
    CK_ATTRIBUTE a = {t, buf, sizeof(buf)};
    if (h->fl->C_GetAttributeValue(h->session, obj, &a, 1) != CKR_OK || a.ulValueLen == 0 ||
        a.ulValueLen > sizeof(buf) || 2 * a.ulValueLen + 1 > cap)
        return false;
    for (CK_ULONG i = 0; i < a.ulValueLen; i++)
        snprintf(out + 2 * i, 3, "%02x", buf[i]);
    return true;
}

/* Record obj's fingerprint in the store's root pin. A store out of reach (a ceremony may run
 * offline) or from before the pin leaves the root unpinned, with a warning naming the remedy: the
 * module refuses to derive with an unpinned root, so this fails closed. */
static void pin_record(ctl *c, ctl_hsm *h, CK_OBJECT_HANDLE obj, const char *fp, ddsm_pin_event ev,
                       const char *not_enforced)
{
    char unique_id[129], check_value[129];
    ddsm_store *st = NULL;
    ddsm_root_pin pin = {ev, "", h->token_label, h->key_label, NULL, NULL, not_enforced};
    memcpy(pin.fingerprint, fp, DDSM_FINGERPRINT_HEX + 1);
    if (hex_attr(h, obj, CKA_UNIQUE_ID, unique_id, sizeof(unique_id)))
        pin.unique_id = unique_id;
    if (hex_attr(h, obj, CKA_CHECK_VALUE, check_value, sizeof(check_value)))
        pin.check_value = check_value;
    /* No role check at connect: pinning needs INSERT on custody_root_pins (granted to
     * ddsm_admin), and a refusal names the role and the table. */
    ddsm_store_opts opts = {.connect_timeout_s = c->cfg->store.connect_timeout_s,
                            .statement_timeout_ms = c->cfg->store.statement_timeout_ms,
                            .application_name = "ddsmctl",
                            .role = DDSM_ROLE_ANY};
    ddsm_err e = ddsm_store_open(c->cfg->store.conninfo, &opts, &st);
    if (e == DDSM_OK)
        e = ddsm_store_root_pin_record(st, &pin);
    if (e == DDSM_OK) {
        printf("pinned: fingerprint %s recorded in the store\n", fp);
    } else {
        ctl_warn("the root is NOT pinned (%s): the module refuses to derive with it until "
                 "`ddsmctl root pin` runs where the store is reachable and migrated",
                 st != NULL ? ddsm_store_errmsg(st) : ddsm_err_str(e));
    }
    ddsm_store_close(st);
}

/* Import seed (a secret) and check that the HSM computes the fingerprint we expect; print it. */
static int import_and_check_secret(ctl *c, ctl_hsm *h, const uint8_t seed[SEED_LEN],
                                   const char *expect_fp, ddsm_pin_event ev)
{
    char fp[DDSM_FINGERPRINT_HEX + 1];
    char not_enforced[CTL_NOT_ENFORCED_MAX];
    CK_OBJECT_HANDLE obj = CK_INVALID_HANDLE;
    const char *how = ev == DDSM_PIN_RECOVER ? "recovered" : "imported";
    int rc = ctl_hsm_import_root_secret(h, seed, &obj, not_enforced);
    if (rc != CTL_EXIT_OK)
        return rc;
    rc = ctl_hsm_fingerprint(h, obj, fp);
    if (rc == CTL_EXIT_OK && !ddsm_ct_equal(fp, expect_fp, DDSM_FINGERPRINT_HEX)) {
        ctl_err("the HSM computes fingerprint %s for the imported key, expected %s", fp, expect_fp);
        rc = CTL_EXIT_UNAVAILABLE;
    }
    if (rc != CTL_EXIT_OK) {
        ctl_hsm_destroy(h, obj);
        return rc;
    }
    printf("%s root key \"%s\" on token \"%s\" (not extractable)\n", how, h->key_label,
           h->token_label);
    printf("fingerprint: %s\n", fp);
    pin_record(c, h, obj, fp, ev, not_enforced);
    return CTL_EXIT_OK;
}

/* Open the root token into h (*open set: close it) and refuse when it already holds a root key. */
static int open_token_without_root(ctl *c, ctl_hsm *h, bool *open)
{
    int rc = ctl_hsm_open_root(c, h);
    if (rc != CTL_EXIT_OK)
        return rc;
    *open = true;
    return ctl_hsm_require_no_root(h);
}

static int share_path(const char *dir, unsigned i, unsigned n, char out[PATH_MAX])
{
    int k = snprintf(out, PATH_MAX, "%s/ddsm-share-%u-of-%u.txt", dir, i, n);
    if (k < 0 || k >= PATH_MAX) {
        ctl_err("output directory path too long: %s", dir);
        return CTL_EXIT_USAGE;
    }
    return CTL_EXIT_OK;
}

/* DIR must be a writable directory (or creatable) without any of the share file names. */
static int check_out_dir(const char *dir, unsigned n, bool *exists)
{
    struct stat st;
    char path[PATH_MAX];
    if (lstat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) {
            ctl_err("--out %s is not a directory", dir);
            return CTL_EXIT_USAGE;
        }
        if (access(dir, W_OK | X_OK) != 0) {
            ctl_err("--out %s is not writable: %s", dir, strerror(errno));
            return CTL_EXIT_USAGE;
        }
        if ((st.st_mode & 077) != 0)
            ctl_warn("--out %s may be read by group or others (mode %03o)", dir,
                     (unsigned)(st.st_mode & 0777));
        for (unsigned i = 1; i <= n; i++) {
            int rc = share_path(dir, i, n, path);
            if (rc != CTL_EXIT_OK)
                return rc;
            if (lstat(path, &st) == 0 || errno != ENOENT) {
                ctl_err("%s already exists: refusing to overwrite share files", path);
                return CTL_EXIT_REFUSED;
            }
        }
        *exists = true;
        return CTL_EXIT_OK;
    }
    if (errno != ENOENT) {
        ctl_err("--out %s: %s", dir, strerror(errno));
        return CTL_EXIT_USAGE;
    }
    /* Its parent must let us create it. */
    char parent[PATH_MAX];
    int k = snprintf(parent, sizeof(parent), "%s", dir);
    if (k < 0 || k >= (int)sizeof(parent)) {
        ctl_err("output directory path too long: %s", dir);
        return CTL_EXIT_USAGE;
    }
    size_t len = strlen(parent);
    while (len > 1 && parent[len - 1] == '/')
        parent[--len] = '\0';
    char *slash = strrchr(parent, '/');
    if (slash == NULL)
        strcpy(parent, ".");
    else if (slash == parent)
        parent[1] = '\0';
    else
        *slash = '\0';
    if (access(parent, W_OK | X_OK) != 0) {
        ctl_err("cannot create --out %s: %s: %s", dir, parent, strerror(errno));
        return CTL_EXIT_USAGE;
    }
    *exists = false;
    return CTL_EXIT_OK;
}

/* Write text (a secret) to a new file, mode 0400, never replacing one. */
static int write_share_file_secret(const char *path, const char *text, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0400);
    if (fd < 0) {
        ctl_err("cannot create %s: %s", path, strerror(errno));
        return errno == EEXIST ? CTL_EXIT_REFUSED : CTL_EXIT_USAGE;
    }
    int rc = CTL_EXIT_USAGE;
    size_t off = 0;
    if (fchmod(fd, 0400) != 0) {
        ctl_err("cannot set the mode of %s: %s", path, strerror(errno));
        goto out;
    }
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            ctl_err("cannot write %s: %s", path, strerror(errno));
            goto out;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0) {
        ctl_err("cannot sync %s: %s", path, strerror(errno));
        goto out;
    }
    rc = CTL_EXIT_OK;
out:
    close(fd);
    return rc;
}

static void sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

/* Whether two shares (secrets) are equal; the data is compared in constant time. */
static bool share_equal(const struct share *a, const struct share *b)
{
    return memcmp(a->ceremony, b->ceremony, sizeof(a->ceremony)) == 0 &&
           a->threshold == b->threshold && a->shares == b->shares && a->index == b->index &&
           strcmp(a->fingerprint, b->fingerprint) == 0 &&
           ddsm_ct_equal(a->data, b->data, sizeof(a->data));
}

/* getrandom_all, failure reported. Returns an exit code. */
static int random_bytes(void *buf, size_t n)
{
    if (!getrandom_all(buf, n)) {
        ctl_err("getrandom failed: %s", strerror(errno));
        return CTL_EXIT_UNAVAILABLE;
    }
    return CTL_EXIT_OK;
}

/* The split, checked: any K of the shares give the seed back (first K and last K tried). */
static int split_secret(const uint8_t seed[SEED_LEN], unsigned n, unsigned k, uint8_t *shares)
{
    unsigned char nrs[MAX_SHARES];
    uint8_t *picked[MAX_SHARES];
    unsigned char picked_nr[MAX_SHARES];
    uint8_t *back = NULL;
    int rc = CTL_EXIT_UNAVAILABLE;

    for (unsigned i = 0; i < n; i++)
        nrs[i] = (unsigned char)(i + 1);
    gfshare_setup();
    gfshare_ctx *g = gfshare_ctx_init_enc(nrs, n, (unsigned char)k, SEED_LEN);
    if (g == NULL) {
        ctl_err("cannot set up the split: %s", strerror(errno));
        return CTL_EXIT_UNAVAILABLE;
    }
    /* libgfshare takes a non-const secret but only reads it. */
    gfshare_ctx_enc_setsecret(g, (unsigned char *)seed);
    for (unsigned i = 0; i < n; i++)
        gfshare_ctx_enc_getshare(g, (unsigned char)i, shares + (size_t)i * SEED_LEN);
    gfshare_ctx_free(g);

    back = ddsm_secure_alloc(SEED_LEN);
    if (back == NULL) {
        ctl_err("out of secure memory");
        goto out;
    }
    for (int pass = 0; pass < 2; pass++) {
        unsigned first = pass == 0 ? 0 : n - k;
        for (unsigned j = 0; j < k; j++) {
            picked[j] = shares + (size_t)(first + j) * SEED_LEN;
            picked_nr[j] = (unsigned char)(first + j + 1);
        }
        rc = combine_secret(picked_nr, picked, k, back);
        if (rc != CTL_EXIT_OK)
            goto out;
        if (!ddsm_ct_equal(back, seed, SEED_LEN)) {
            ctl_err("internal error: the shares do not combine to the seed; nothing written");
            rc = CTL_EXIT_UNAVAILABLE;
            goto out;
        }
    }
    rc = CTL_EXIT_OK;
out:
    ddsm_secure_free(back, SEED_LEN);
    return rc;
}

/* The ceremony: holds the seed and its shares (secrets) in secure memory until they are wiped. */
static int root_create_shares(ctl *c, const char *n_text, const char *k_text, const char *dir)
{
    unsigned n = 0;
    unsigned k = 0;
    bool dir_existed = false;
    bool dir_made = false;
    unsigned written = 0;
    ctl_hsm h;
    bool hsm_open = false;
    uint8_t ceremony[SHARE_CEREMONY_LEN];
    char fp[DDSM_FINGERPRINT_HEX + 1];
    char path[PATH_MAX];
    uint8_t *seed = NULL;
    uint8_t *shares = NULL;
    char *text = NULL;
    struct share *s = NULL;
    struct share *back = NULL;
    int rc;

    if (!ctl_parse_uint(n_text, 1, MAX_SHARES, &n))
        return ctl_usage_error(&create_help, "--shares must be a number 1..255, not '%s'", n_text);
    if (!ctl_parse_uint(k_text, 1, MAX_SHARES, &k) || k > n)
        return ctl_usage_error(
            &create_help, "--threshold must be a number 1..%u (--shares), not '%s'", n, k_text);
    if (k == 1)
        ctl_warn("threshold 1: every share alone is the whole seed");
    rc = check_out_dir(dir, n, &dir_existed);
    if (rc != CTL_EXIT_OK)
        return rc;
    rc = open_token_without_root(c, &h, &hsm_open);
    if (rc != CTL_EXIT_OK)
        goto out;

    rc = CTL_EXIT_UNAVAILABLE;
    seed = ddsm_secure_alloc(SEED_LEN);
    shares = ddsm_secure_alloc((size_t)n * SEED_LEN);
    text = ddsm_secure_alloc(SHARE_TEXT_MAX);
    s = ddsm_secure_alloc(sizeof(*s));
    back = ddsm_secure_alloc(sizeof(*back));
    if (seed == NULL || shares == NULL || text == NULL || s == NULL || back == NULL) {
        ctl_err("out of secure memory");
        goto out;
    }
    rc = random_bytes(ceremony, sizeof(ceremony));
    if (rc == CTL_EXIT_OK)
        rc = random_bytes(seed, SEED_LEN);
    if (rc == CTL_EXIT_OK)
        rc = seed_fingerprint_secret(seed, fp);
    if (rc == CTL_EXIT_OK)
        rc = split_secret(seed, n, k, shares);
    if (rc != CTL_EXIT_OK)
        goto out;

    if (!dir_existed) {
        if (mkdir(dir, 0700) != 0) {
            ctl_err("cannot create %s: %s", dir, strerror(errno));
            rc = CTL_EXIT_USAGE;
            goto out;
        }
        dir_made = true;
    }
    for (unsigned i = 0; i < n; i++) {
        size_t len = 0;
        char why[256];
        memcpy(s->ceremony, ceremony, sizeof(ceremony));
        s->threshold = k;
        s->shares = n;
        s->index = i + 1;
        memcpy(s->fingerprint, fp, sizeof(fp));
        memcpy(s->data, shares + (size_t)i * SEED_LEN, SEED_LEN);
        rc = CTL_EXIT_UNAVAILABLE;
        if (share_format_secret(s, text, SHARE_TEXT_MAX, &len) != DDSM_OK) {
            ctl_err("internal error: cannot format share %u", i + 1);
            goto out;
        }
        /* What the custodian will type back must read as what we meant. */
        if (share_parse(text, len, back, why, sizeof(why)) != DDSM_OK || !share_equal(s, back)) {
            ctl_err("internal error: share %u does not read back", i + 1);
            goto out;
        }
        rc = share_path(dir, i + 1, n, path);
        if (rc == CTL_EXIT_OK)
            rc = write_share_file_secret(path, text, len);
        if (rc != CTL_EXIT_OK) {
            (void)unlink(path);
            goto out;
        }
        written = i + 1;
    }
    sync_dir(dir);

    rc = import_and_check_secret(c, &h, seed, fp, DDSM_PIN_CREATE);
    if (rc != CTL_EXIT_OK)
        goto out;
    printf("ceremony: ");
    for (size_t i = 0; i < sizeof(ceremony); i++)
        printf("%02x", ceremony[i]);
    printf("\nwrote %u share files to %s (any %u recover the seed):\n", n, dir, k);
    for (unsigned i = 1; i <= n; i++) {
        if (share_path(dir, i, n, path) == CTL_EXIT_OK)
            printf("  %s\n", path);
    }
    rc = CTL_EXIT_OK;
out:
    if (rc != CTL_EXIT_OK) {
        /* Shares of a seed that is not in the HSM would only mislead: remove them. */
        for (unsigned i = 1; i <= written; i++) {
            if (share_path(dir, i, n, path) == CTL_EXIT_OK)
                (void)unlink(path);
        }
        if (dir_made)
            (void)rmdir(dir);
    }
    ddsm_secure_free(seed, SEED_LEN);
    ddsm_secure_free(shares, (size_t)n * SEED_LEN);
    ddsm_secure_free(text, SHARE_TEXT_MAX);
    ddsm_secure_free(s, sizeof(*s));
    ddsm_secure_free(back, sizeof(*back));
    if (hsm_open)
        ctl_hsm_close(&h);
    return rc;
}

static int root_create(ctl *c, int argc, char **argv)
{
    const char *n_text = NULL;
    const char *k_text = NULL;
    const char *dir = NULL;
    const ctl_opt opts[] = {
        {"--shares", &n_text, NULL, NULL, 0, NULL},
        {"--threshold", &k_text, NULL, NULL, 0, NULL},
        {"--out", &dir, NULL, NULL, 0, NULL},
    };
    const char *pos[1];
    size_t npos = 0;
    ctl_hsm h;
    bool hsm_open = false;
    CK_OBJECT_HANDLE obj = CK_INVALID_HANDLE;
    char fp[DDSM_FINGERPRINT_HEX + 1];
    char not_enforced[CTL_NOT_ENFORCED_MAX];

    int rc = ctl_parse(c, &create_help, argc, argv, opts, 3, pos, 0, 0, &npos);
    if (rc != CTL_EXIT_OK)
        return rc == CTL_HELP_SHOWN ? CTL_EXIT_OK : rc;
    if (n_text != NULL || k_text != NULL || dir != NULL) {
        if (n_text == NULL || k_text == NULL || dir == NULL)
            return ctl_usage_error(&create_help, "--shares, --threshold and --out go together");
        return root_create_shares(c, n_text, k_text, dir);
    }
    rc = open_token_without_root(c, &h, &hsm_open);
    if (rc == CTL_EXIT_OK)
        rc = ctl_hsm_generate_root(&h, &obj, not_enforced);
    if (rc == CTL_EXIT_OK) {
        rc = ctl_hsm_fingerprint(&h, obj, fp);
        if (rc != CTL_EXIT_OK)
            ctl_hsm_destroy(&h, obj);
    }
    if (rc == CTL_EXIT_OK) {
        printf("generated root key \"%s\" on token \"%s\" inside the HSM (not extractable, no "
               "backup)\n",
               h.key_label, h.token_label);
        printf("fingerprint: %s\n", fp);
        pin_record(c, &h, obj, fp, DDSM_PIN_CREATE, not_enforced);
    }
    if (hsm_open)
        ctl_hsm_close(&h);
    return rc;
}

/* Reads a seed (a secret) into secure memory, imports it, wipes it. */
static int root_import(ctl *c, int argc, char **argv)
{
    const char *file = NULL;
    const ctl_opt opts[] = {{"--hex-file", &file, NULL, NULL, 0, NULL}};
    const char *pos[1];
    size_t npos = 0;
    char *text = NULL;
    size_t len = 0;
    uint8_t *seed = NULL;
    char fp[DDSM_FINGERPRINT_HEX + 1];
    ctl_hsm h;
    bool hsm_open = false;
    size_t ndig = 0;
    int hi = -1;

    int rc = ctl_parse(c, &import_help, argc, argv, opts, 1, pos, 0, 0, &npos);
    if (rc != CTL_EXIT_OK)
        return rc == CTL_HELP_SHOWN ? CTL_EXIT_OK : rc;
    if (file == NULL)
        return ctl_usage_error(&import_help, "--hex-file is required");
    rc = ctl_read_file_secret(file, "seed file", HEX_FILE_MAX, &text, &len);
    if (rc != CTL_EXIT_OK)
        return rc;
    seed = ddsm_secure_alloc(SEED_LEN);
    if (seed == NULL) {
        ctl_err("out of secure memory");
        rc = CTL_EXIT_UNAVAILABLE;
        goto out;
    }
    rc = CTL_EXIT_USAGE;
    for (size_t i = 0; i < len; i++) {
        char ch = text[i];
        int v;
        if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r')
            continue;
        if (ch >= '0' && ch <= '9')
            v = ch - '0';
        else if (ch >= 'a' && ch <= 'f')
            v = ch - 'a' + 10;
        else if (ch >= 'A' && ch <= 'F')
            v = ch - 'A' + 10;
        else {
            ctl_err("seed file %s: byte %zu is not a hex digit or whitespace", file, i + 1);
            goto out;
        }
        if (ndig == 2 * SEED_LEN) {
            ctl_err("seed file %s: more than %d hex digits", file, 2 * SEED_LEN);
            goto out;
        }
        if (ndig % 2 == 0) {
            hi = v;
        } else {
            seed[ndig / 2] = (uint8_t)(hi << 4 | v);
        }
        ndig++;
        v = 0;
    }
    hi = 0;
    if (ndig != 2 * SEED_LEN) {
        ctl_err("seed file %s: %zu hex digits, expected %d", file, ndig, 2 * SEED_LEN);
        goto out;
    }
    rc = seed_fingerprint_secret(seed, fp);
    if (rc != CTL_EXIT_OK)
        goto out;
    rc = open_token_without_root(c, &h, &hsm_open);
    if (rc == CTL_EXIT_OK)
        rc = import_and_check_secret(c, &h, seed, fp, DDSM_PIN_IMPORT);
out:
    if (hsm_open)
        ctl_hsm_close(&h);
    ddsm_secure_free(seed, SEED_LEN);
    ddsm_secure_free(text, HEX_FILE_MAX + 1);
    return rc;
}

static void hex8(const uint8_t b[SHARE_CEREMONY_LEN], char out[2 * SHARE_CEREMONY_LEN + 1])
{
    for (size_t i = 0; i < SHARE_CEREMONY_LEN; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

/* Holds shares and the combined seed (secrets) in secure memory until they are wiped. */
static int root_recover(ctl *c, int argc, char **argv)
{
    const char *files[MAX_SHARES];
    size_t nfiles = 0;
    const ctl_opt opts[] = {{"--share", NULL, NULL, files, MAX_SHARES, &nfiles}};
    const char *pos[1];
    size_t npos = 0;
    struct share *shares = NULL;
    uint8_t *seed = NULL;
    uint8_t *data[MAX_SHARES];
    unsigned char nrs[MAX_SHARES];
    size_t by_index[MAX_SHARES + 1];
    char fp[DDSM_FINGERPRINT_HEX + 1];
    char a_cer[2 * SHARE_CEREMONY_LEN + 1];
    char b_cer[2 * SHARE_CEREMONY_LEN + 1];
    ctl_hsm h;
    bool hsm_open = false;

    int rc = ctl_parse(c, &recover_help, argc, argv, opts, 1, pos, 0, 0, &npos);
    if (rc != CTL_EXIT_OK)
        return rc == CTL_HELP_SHOWN ? CTL_EXIT_OK : rc;
    if (nfiles == 0)
        return ctl_usage_error(&recover_help, "give the share files with --share FILE");
    shares = ddsm_secure_alloc(nfiles * sizeof(*shares));
    seed = ddsm_secure_alloc(SEED_LEN);
    if (shares == NULL || seed == NULL) {
        ctl_err("out of secure memory");
        rc = CTL_EXIT_UNAVAILABLE;
        goto out;
    }
    for (size_t i = 0; i <= MAX_SHARES; i++)
        by_index[i] = SIZE_MAX;
    for (size_t i = 0; i < nfiles; i++) {
        char *text = NULL;
        size_t len = 0;
        char why[256];
        rc = ctl_read_file_secret(files[i], "share file", SHARE_TEXT_MAX, &text, &len);
        if (rc != CTL_EXIT_OK)
            goto out;
        ddsm_err e = share_parse(text, len, &shares[i], why, sizeof(why));
        ddsm_secure_free(text, SHARE_TEXT_MAX + 1);
        rc = CTL_EXIT_USAGE;
        if (e != DDSM_OK) {
            ctl_err("share file %s: %s", files[i], why);
            goto out;
        }
        const struct share *a = &shares[0];
        const struct share *b = &shares[i];
        hex8(a->ceremony, a_cer);
        hex8(b->ceremony, b_cer);
        if (strcmp(a_cer, b_cer) != 0) {
            ctl_err("share file %s is from another ceremony (%s) than %s (%s)", files[i], b_cer,
                    files[0], a_cer);
            goto out;
        }
        if (a->threshold != b->threshold || a->shares != b->shares ||
            strcmp(a->fingerprint, b->fingerprint) != 0) {
            ctl_err("share file %s disagrees with %s on the threshold, share count or "
                    "fingerprint of ceremony %s",
                    files[i], files[0], a_cer);
            goto out;
        }
        if (by_index[b->index] != SIZE_MAX) {
            ctl_err("share file %s: duplicate of share %u, already given by %s", files[i], b->index,
                    files[by_index[b->index]]);
            goto out;
        }
        by_index[b->index] = i;
    }
    hex8(shares[0].ceremony, a_cer);
    if (nfiles < shares[0].threshold) {
        ctl_err("too few shares: %zu given, ceremony %s needs %u", nfiles, a_cer,
                shares[0].threshold);
        rc = CTL_EXIT_USAGE;
        goto out;
    }
    rc = open_token_without_root(c, &h, &hsm_open);
    if (rc != CTL_EXIT_OK)
        goto out;
    for (size_t i = 0; i < nfiles; i++) {
        nrs[i] = (unsigned char)shares[i].index;
        data[i] = shares[i].data;
    }
    rc = combine_secret(nrs, data, nfiles, seed);
    if (rc != CTL_EXIT_OK)
        goto out;
    rc = seed_fingerprint_secret(seed, fp);
    if (rc != CTL_EXIT_OK)
        goto out;
    if (!ddsm_ct_equal(fp, shares[0].fingerprint, DDSM_FINGERPRINT_HEX)) {
        ctl_err("the combined seed has fingerprint %s, the shares say %s: a share is wrong; "
                "nothing written",
                fp, shares[0].fingerprint);
        rc = CTL_EXIT_USAGE;
        goto out;
    }
    rc = import_and_check_secret(c, &h, seed, fp, DDSM_PIN_RECOVER);
    if (rc == CTL_EXIT_OK)
        printf("from %zu shares of ceremony %s\n", nfiles, a_cer);
out:
    if (hsm_open)
        ctl_hsm_close(&h);
    ddsm_secure_free(seed, SEED_LEN);
    ddsm_secure_free(shares, nfiles * sizeof(*shares));
    return rc;
}

static bool get_ulong_attr(ctl_hsm *h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE t, CK_ULONG *v)
{
    CK_ATTRIBUTE a = {t, v, sizeof(*v)};
    return h->fl->C_GetAttributeValue(h->session, o, &a, 1) == CKR_OK && a.ulValueLen == sizeof(*v);
}

/* 1 true, 0 false, -1 the backend does not say. */
static int bool_attr(ctl_hsm *h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE t)
{
    CK_BBOOL b = CK_FALSE;
    CK_ATTRIBUTE a = {t, &b, sizeof(b)};
    if (h->fl->C_GetAttributeValue(h->session, o, &a, 1) != CKR_OK || a.ulValueLen != sizeof(b))
        return -1;
    return b ? 1 : 0;
}

static const char *tri(int v)
{
    return v < 0 ? "unknown" : v ? "true" : "false";
}

#define MECHS_MAX 16

/* The root's attributes as `root info` shows them. */
struct root_attrs {
    char label[257];
    bool have_kt, have_len;
    CK_ULONG kt, vlen;
    int sensitive, extractable, always_sensitive, never_extractable, modifiable, copyable,
        destroyable, private_, derive;
    int mechs_known; /* 1: mechs[0..n_mechs) lists them; 0: not restricted; -1: unknown */
    CK_MECHANISM_TYPE mechs[MECHS_MAX];
    size_t n_mechs;
    char usage[80];
    bool have_uid, have_kcv;
    char unique_id[129], check_value[129];
};

static void root_attrs_read(ctl_hsm *h, CK_OBJECT_HANDLE root, struct root_attrs *r)
{
    memset(r, 0, sizeof(*r));
    CK_ATTRIBUTE la = {CKA_LABEL, r->label, sizeof(r->label) - 1};
    if (h->fl->C_GetAttributeValue(h->session, root, &la, 1) != CKR_OK ||
        la.ulValueLen >= sizeof(r->label))
        la.ulValueLen = 0;
    r->label[la.ulValueLen] = '\0';
    r->have_kt = get_ulong_attr(h, root, CKA_KEY_TYPE, &r->kt);
    r->have_len = get_ulong_attr(h, root, CKA_VALUE_LEN, &r->vlen);
    r->sensitive = bool_attr(h, root, CKA_SENSITIVE);
    r->extractable = bool_attr(h, root, CKA_EXTRACTABLE);
    r->always_sensitive = bool_attr(h, root, CKA_ALWAYS_SENSITIVE);
    r->never_extractable = bool_attr(h, root, CKA_NEVER_EXTRACTABLE);
    r->modifiable = bool_attr(h, root, CKA_MODIFIABLE);
    r->copyable = bool_attr(h, root, CKA_COPYABLE);
    r->destroyable = bool_attr(h, root, CKA_DESTROYABLE);
    r->private_ = bool_attr(h, root, CKA_PRIVATE);
    r->derive = bool_attr(h, root, CKA_DERIVE);
    CK_ATTRIBUTE ma = {CKA_ALLOWED_MECHANISMS, r->mechs, sizeof(r->mechs)};
    CK_RV rv = h->fl->C_GetAttributeValue(h->session, root, &ma, 1);
    if (rv == CKR_OK && ma.ulValueLen != CK_UNAVAILABLE_INFORMATION &&
        ma.ulValueLen % sizeof(CK_MECHANISM_TYPE) == 0) {
        r->n_mechs = ma.ulValueLen / sizeof(CK_MECHANISM_TYPE);
        /* An empty list is PKCS#11's "any mechanism". */
        r->mechs_known = r->n_mechs > 0 ? 1 : 0;
    } else {
        r->mechs_known = -1;
    }
    static const struct {
        CK_ATTRIBUTE_TYPE t;
        const char *name;
    } uses[] = {{CKA_SIGN, "sign"},       {CKA_VERIFY, "verify"},   {CKA_DERIVE, "derive"},
                {CKA_ENCRYPT, "encrypt"}, {CKA_DECRYPT, "decrypt"}, {CKA_WRAP, "wrap"},
                {CKA_UNWRAP, "unwrap"}};
    for (size_t i = 0; i < sizeof(uses) / sizeof(uses[0]); i++) {
        if (bool_attr(h, root, uses[i].t) != 1)
            continue;
        size_t len = strlen(r->usage);
        snprintf(r->usage + len, sizeof(r->usage) - len, "%s%s", len ? " " : "", uses[i].name);
    }
    r->have_uid = hex_attr(h, root, CKA_UNIQUE_ID, r->unique_id, sizeof(r->unique_id));
    r->have_kcv = hex_attr(h, root, CKA_CHECK_VALUE, r->check_value, sizeof(r->check_value));
}

/* The HSM-enforced limits of docs/root.md this root lacks, comma-separated ("" when none). */
static void root_weaknesses(const struct root_attrs *r, char *out, size_t cap)
{
    out[0] = '\0';
#define WEAK(cond, text)                                                                           \
    do {                                                                                           \
        if (cond) {                                                                                \
            size_t len_ = strlen(out);                                                             \
            snprintf(out + len_, cap - len_, "%s%s", len_ ? ", " : "", text);                      \
        }                                                                                          \
    } while (0)
    WEAK(r->sensitive != 1, "not sensitive");
    WEAK(r->extractable != 0, "extractable");
    /* Not CKA_NEVER_EXTRACTABLE: an imported or recovered root existed outside the HSM by
     * design (in the shares), and backends report that honestly. */
    WEAK(r->modifiable != 0, "modifiable");
    WEAK(r->copyable != 0, "copyable");
    WEAK(r->derive != 0, "CKA_DERIVE");
    WEAK(!(r->mechs_known == 1 && r->n_mechs == 1 && r->mechs[0] == CKM_SHA256_HMAC),
         "mechanisms not limited to CKM_SHA256_HMAC");
#undef WEAK
}

static void json_kv_str(const char *key, const char *v, bool comma)
{
    printf("  \"%s\": ", key);
    if (v == NULL)
        printf("null");
    else
        tool_json_str(stdout, v);
    printf("%s\n", comma ? "," : "");
}

static void json_kv_tri(const char *key, int v)
{
    printf("  \"%s\": %s,\n", key, v < 0 ? "null" : v ? "true" : "false");
}

static int root_info(ctl *c, int argc, char **argv)
{
    const char *pos[1];
    size_t npos = 0;
    bool json = false;
    const ctl_opt opts[] = {{"--json", NULL, &json, NULL, 0, NULL}};
    ctl_hsm h;
    bool exists = false;
    CK_OBJECT_HANDLE root = CK_INVALID_HANDLE;
    char fp[DDSM_FINGERPRINT_HEX + 1];
    char weak[256];
    struct root_attrs r;
    ddsm_root_pins pins;

    int rc = ctl_parse(c, &info_help, argc, argv, opts, 1, pos, 0, 0, &npos);
    if (rc != CTL_EXIT_OK)
        return rc == CTL_HELP_SHOWN ? CTL_EXIT_OK : rc;
    rc = ctl_hsm_open_root(c, &h);
    if (rc != CTL_EXIT_OK)
        return rc;
    rc = ctl_hsm_find_root(&h, &exists, &root);
    if (rc != CTL_EXIT_OK)
        goto out;
    if (!exists) {
        ctl_err("token \"%s\" holds no root key labelled \"%s\" (run `ddsmctl root create`)",
                h.token_label, h.key_label);
        rc = CTL_EXIT_REFUSED;
        goto out;
    }
    rc = ctl_hsm_fingerprint(&h, root, fp);
    if (rc != CTL_EXIT_OK)
        goto out;
    root_attrs_read(&h, root, &r);
    root_weaknesses(&r, weak, sizeof(weak));
    ctl_root_pins_read(c, &pins, true);
    bool pinned = ddsm_root_pins_has(&pins, fp);

    char mechs[160] = "";
    if (r.mechs_known < 0)
        snprintf(mechs, sizeof(mechs), "unknown");
    else if (r.mechs_known == 0)
        snprintf(mechs, sizeof(mechs), "any (not restricted)");
    for (size_t i = 0; r.mechs_known == 1 && i < r.n_mechs; i++) {
        size_t len = strlen(mechs);
        snprintf(mechs + len, sizeof(mechs) - len, "%s%s", len ? " " : "",
                 ddsm_mech_name(r.mechs[i]));
    }
    const char *kt = !r.have_kt                   ? NULL
                     : r.kt == CKK_GENERIC_SECRET ? "CKK_GENERIC_SECRET"
                                                  : "other (not a generic secret)";
    if (json) {
        printf("{\n");
        json_kv_str("token", h.token_label, true);
        json_kv_str("label", r.label, true);
        json_kv_str("key_type", kt, true);
        if (r.have_len)
            printf("  \"value_length\": %lu,\n", (unsigned long)r.vlen);
        json_kv_tri("private", r.private_);
        json_kv_tri("sensitive", r.sensitive);
        json_kv_tri("extractable", r.extractable);
        json_kv_tri("always_sensitive", r.always_sensitive);
        json_kv_tri("never_extractable", r.never_extractable);
        json_kv_tri("modifiable", r.modifiable);
        json_kv_tri("copyable", r.copyable);
        json_kv_tri("destroyable", r.destroyable);
        json_kv_tri("derive", r.derive);
        printf("  \"allowed_mechanisms\": ");
        if (r.mechs_known < 0) {
            printf("null");
        } else {
            printf("[");
            for (size_t i = 0; r.mechs_known == 1 && i < r.n_mechs; i++)
                printf("%s\"%s\"", i ? ", " : "", ddsm_mech_name(r.mechs[i]));
            printf("]");
        }
        printf(",\n");
        json_kv_str("usage", r.usage, true);
        json_kv_str("unique_id", r.have_uid ? r.unique_id : NULL, true);
        json_kv_str("check_value", r.have_kcv ? r.check_value : NULL, true);
        printf("  \"hsm_enforced\": %s,\n", weak[0] == '\0' ? "true" : "false");
        json_kv_str("not_enforced", weak, true);
        printf("  \"pinned\": %s,\n", pinned ? "true" : "false");
        json_kv_str("fingerprint", fp, false);
        printf("}\n");
    } else {
        printf("token:             %s\n", h.token_label);
        printf("label:             %s\n", r.label);
        if (kt != NULL)
            printf("key type:          %s\n", kt);
        if (r.have_len)
            printf("value length:      %lu\n", (unsigned long)r.vlen);
        printf("private:           %s\n", tri(r.private_));
        printf("sensitive:         %s\n", tri(r.sensitive));
        printf("extractable:       %s\n", tri(r.extractable));
        printf("always sensitive:  %s\n", tri(r.always_sensitive));
        printf("never extractable: %s\n", tri(r.never_extractable));
        printf("modifiable:        %s\n", tri(r.modifiable));
        printf("copyable:          %s\n", tri(r.copyable));
        printf("destroyable:       %s\n", tri(r.destroyable));
        printf("mechanisms:        %s\n", mechs);
        printf("usage:             %s\n", r.usage);
        if (r.have_uid)
            printf("unique id:         %s\n", r.unique_id);
        if (r.have_kcv)
            printf("check value:       %s\n", r.check_value);
        printf("hsm-enforced:      %s\n", weak[0] == '\0' ? "yes" : "no");
        printf("pinned:            %s\n", pinned ? "yes" : "no");
        printf("fingerprint:       %s\n", fp);
    }
    if (weak[0] != '\0')
        ctl_warn("the root lacks HSM-enforced limits (%s): it was made before ddsmctl set them, or "
                 "by hand. Remedy: recover it from its shares into a new token (`ddsmctl root "
                 "recover`), point [backend] at that token, and remove this one",
                 weak);
    if (!pinned)
        ctl_warn("the store does not pin this root: the module refuses to derive with it; run "
                 "`ddsmctl root pin` (after `ddsmctl db migrate`)");
    rc = CTL_EXIT_OK;
out:
    ctl_hsm_close(&h);
    return rc;
}

/* Pin the root that already exists on the token (made before the pin, or while the store was out
 * of reach). */
static int root_pin(ctl *c, int argc, char **argv)
{
    const char *want = NULL;
    const ctl_opt opts[] = {{"--fingerprint", &want, NULL, NULL, 0, NULL}};
    const char *pos[1];
    size_t npos = 0;
    ctl_hsm h;
    bool hsm_open = false;
    ctl_root_candidate cand[CTL_ROOT_CANDIDATES_MAX];
    size_t n = 0;
    ddsm_store *st = NULL;
    ddsm_root_pins pins;
    const ctl_root_candidate *pick = NULL;
    size_t with_fp = 0;

    int rc = ctl_parse(c, &pin_help, argc, argv, opts, 1, pos, 0, 0, &npos);
    if (rc != CTL_EXIT_OK)
        return rc == CTL_HELP_SHOWN ? CTL_EXIT_OK : rc;
    if (want != NULL) {
        bool ok = strlen(want) == DDSM_FINGERPRINT_HEX;
        for (size_t i = 0; ok && i < DDSM_FINGERPRINT_HEX; i++)
            ok = (want[i] >= '0' && want[i] <= '9') || (want[i] >= 'a' && want[i] <= 'f');
        if (!ok)
            return ctl_usage_error(&pin_help,
                                   "--fingerprint takes 32 lower-case hex digits, not "
                                   "'%s'",
                                   want);
    }
    rc = ctl_store_open(c, false, &st);
    if (rc != CTL_EXIT_OK)
        goto out;
    ddsm_err e = ddsm_store_root_pins(st, &pins);
    if (e != DDSM_OK) {
        rc = ctl_store_fail(st, e, "read the root pin");
        goto out;
    }
    if (!pins.table) {
        ctl_err("the store predates the root pin: run `ddsmctl db migrate` first");
        rc = CTL_EXIT_REFUSED;
        goto out;
    }
    rc = ctl_hsm_open_root(c, &h);
    if (rc != CTL_EXIT_OK)
        goto out;
    hsm_open = true;
    size_t n_public = 0;
    rc = ctl_hsm_candidates(&h, cand, CTL_ROOT_CANDIDATES_MAX, &n, &n_public);
    if (rc != CTL_EXIT_OK)
        goto out;
    for (size_t i = 0; i < n; i++) {
        if (!cand[i].has_fp)
            continue;
        with_fp++;
        if (want != NULL ? strcmp(cand[i].fp, want) == 0 : pick == NULL)
            pick = &cand[i];
    }
    if (pick == NULL || (want == NULL && with_fp > 1)) {
        if (want != NULL)
            ctl_err("token \"%s\" holds no key labelled \"%s\" with fingerprint %s", h.token_label,
                    h.key_label, want);
        else if (with_fp == 0)
            ctl_err("token \"%s\" holds no root key labelled \"%s\"", h.token_label, h.key_label);
        else
            ctl_err("token \"%s\" holds %zu keys labelled \"%s\": name the root with --fingerprint "
                    "(compare with the fingerprint line of its share files)",
                    h.token_label, with_fp, h.key_label);
        for (size_t i = 0; i < n; i++)
            if (cand[i].has_fp)
                fprintf(stderr, "  fingerprint %s\n", cand[i].fp);
        rc = CTL_EXIT_REFUSED;
        goto out;
    }
    if (ddsm_root_pins_has(&pins, pick->fp)) {
        printf("already pinned: fingerprint %s\n", pick->fp);
        rc = CTL_EXIT_OK;
        goto out;
    }
    char unique_id[129], check_value[129];
    ddsm_root_pin pin = {DDSM_PIN_PIN, "", h.token_label, h.key_label, NULL, NULL, NULL};
    memcpy(pin.fingerprint, pick->fp, sizeof(pin.fingerprint));
    if (hex_attr(&h, pick->handle, CKA_UNIQUE_ID, unique_id, sizeof(unique_id)))
        pin.unique_id = unique_id;
    if (hex_attr(&h, pick->handle, CKA_CHECK_VALUE, check_value, sizeof(check_value)))
        pin.check_value = check_value;
    e = ddsm_store_root_pin_record(st, &pin);
    if (e != DDSM_OK) {
        rc = ctl_store_fail(st, e, "record the root pin");
        goto out;
    }
    if (pins.count > 0)
        ctl_warn("the store already pins %zu other root%s: keys derived under each differ",
                 pins.count, pins.count == 1 ? "" : "s");
    printf("pinned: fingerprint %s recorded in the store\n", pick->fp);
    rc = CTL_EXIT_OK;
out:
    if (hsm_open)
        ctl_hsm_close(&h);
    ddsm_store_close(st);
    return rc;
}

int cmd_root(ctl *c, int argc, char **argv)
{
    static const ctl_sub subs[] = {{"create", root_create},
                                   {"import", root_import},
                                   {"recover", root_recover},
                                   {"info", root_info},
                                   {"pin", root_pin}};
    return ctl_run_sub(c, &cmd_root_help, subs, sizeof(subs) / sizeof(subs[0]), argc, argv);
}
