/* SPDX-License-Identifier: Apache-2.0 */
/* A fault-injecting PKCS#11 wrapper, for tests only. It sits between our module and the real HSM
 * library and makes chosen calls fail or stall.
 *
 *   DDSM_FAULT_TARGET  the real library (default /usr/lib/softhsm/libsofthsm2.so)
 *   DDSM_FAULT_CTL     a control file, re-read whenever its mtime or size changes; one rule a line:
 *                          <C_Function|*> rv=<CKR_NAME|0xHEX|decimal> [count=N]
 *                          <C_Function|*> delay=<ms> [count=N]
 *                      count=N applies the rule to the next N matching calls only (per rule
 *                      load). '#' starts a comment. An empty or missing file means no faults.
 *                      Two rules stand for a backend's own behaviour rather than a failure; each
 *                      is used up only by the calls it answers (the first such rule that is not
 *                      used up answers), and without count= it answers every call:
 *                          C_WaitForSlotEvent slot=<id> [count=N]   an event on slot <id>
 *                          C_FindObjects topbit=<n> [count=N]       a batch of n (at most the
 *                                  caller's maximum) object handles with the top bit set, before
 *                                  the real search's objects
 *                          C_GenerateKey|C_CreateObject attr=<type> rv=<CKR> [count=N]
 *                                  a backend that does not know attribute <type>: the call fails
 *                                  with rv when its template names it, and is forwarded otherwise
 *                      Any rule may carry in=<file name>: it then applies only in the wrapper
 *                      loaded from a file of that name. A copy of the wrapper under another name
 *                      is a second, independent backend (a standby HSM) over the same library.
 *   DDSM_FAULT_LOG     optional: a file to which every call's name is appended (call counting).
 *   DDSM_FAULT_LATENCY_US   optional: a networked HSM's round trip. Every call (after its fault
 *                      rules) waits this many microseconds before the real library answers it.
 *   DDSM_FAULT_CONCURRENCY  optional, with the latency: at most this many calls are in flight
 *                      (waiting or in the real library) at once, as an HSM's session or thread
 *                      limit allows; the others queue. 0 or unset: no limit.
 *                      Both are read once, when the wrapper is loaded (ddsm-bench --hsm-latency-us).
 * C_GetFunctionList itself is never faulted. */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>

/* The generated list uses the header's GNU spelling of the types (struct ck_info, ck_slot_id_t). */
#define CRYPTOKI_GNU 1
#include <p11-kit/pkcs11.h>

#include "faultp11_funcs.h"

#define EXPORT __attribute__((visibility("default")))
#define MAX_RULES 32

enum { KIND_FAULT, KIND_SLOT, KIND_TOPBIT, KIND_ATTR }; /* KIND_FAULT: rv= or delay= */

struct rule {
    char fn[48];
    char in[64]; /* "": every copy of the wrapper; else only the one loaded from that file name */
    int is_delay;
    int kind;
    unsigned long arg; /* KIND_SLOT: the slot; KIND_TOPBIT: how many handles; KIND_ATTR: type */
    ck_rv_t rv;
    unsigned long delay_ms;
    long remaining; /* -1: unlimited */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct ck_function_list *real;
static struct rule rules[MAX_RULES];
static size_t n_rules;
static char self_name[64]; /* the file name this copy of the wrapper was loaded from */
static struct timespec ctl_mtime;
static off_t ctl_size = -1;
/* Whether any rule is loaded: without a control file and rules, a call takes no lock (the bench's
 * latency model must not add a process-wide mutex to every HSM call). */
static atomic_int have_rules;

/* The networked-HSM model (fixed at load). */
static unsigned long net_latency_ns;
static unsigned long net_concurrency;
static sem_t net_slots;

static const struct {
    const char *name;
    ck_rv_t rv;
} rv_names[] = {
    {"CKR_OK", CKR_OK},
    {"CKR_GENERAL_ERROR", CKR_GENERAL_ERROR},
    {"CKR_DEVICE_ERROR", CKR_DEVICE_ERROR},
    {"CKR_DEVICE_MEMORY", CKR_DEVICE_MEMORY},
    {"CKR_DEVICE_REMOVED", CKR_DEVICE_REMOVED},
    {"CKR_SESSION_HANDLE_INVALID", CKR_SESSION_HANDLE_INVALID},
    {"CKR_SESSION_CLOSED", CKR_SESSION_CLOSED},
    {"CKR_TOKEN_NOT_PRESENT", CKR_TOKEN_NOT_PRESENT},
    {"CKR_FUNCTION_FAILED", CKR_FUNCTION_FAILED},
    {"CKR_HOST_MEMORY", CKR_HOST_MEMORY},
    {"CKR_USER_NOT_LOGGED_IN", CKR_USER_NOT_LOGGED_IN},
    {"CKR_KEY_HANDLE_INVALID", CKR_KEY_HANDLE_INVALID},
    {"CKR_OBJECT_HANDLE_INVALID", CKR_OBJECT_HANDLE_INVALID},
};

static int parse_rv(const char *s, ck_rv_t *out)
{
    for (size_t i = 0; i < sizeof(rv_names) / sizeof(rv_names[0]); i++)
        if (strcmp(s, rv_names[i].name) == 0) {
            *out = rv_names[i].rv;
            return 0;
        }
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 0);
    if (errno != 0 || end == s || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

/* Re-read the control file when it changed. Called with lock held. */
static void reload_locked(void)
{
    const char *path = getenv("DDSM_FAULT_CTL");
    struct stat st;
    if (path == NULL || stat(path, &st) != 0) {
        n_rules = 0;
        ctl_size = -1;
        atomic_store(&have_rules, 0);
        return;
    }
    if (st.st_size == ctl_size && st.st_mtim.tv_sec == ctl_mtime.tv_sec &&
        st.st_mtim.tv_nsec == ctl_mtime.tv_nsec)
        return;
    ctl_size = st.st_size;
    ctl_mtime = st.st_mtim;
    n_rules = 0;
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    char line[256];
    while (fgets(line, sizeof(line), f) != NULL && n_rules < MAX_RULES) {
        char *hash = strchr(line, '#');
        if (hash != NULL)
            *hash = '\0';
        struct rule r = {.remaining = -1};
        char *save = NULL;
        char *tok = strtok_r(line, " \t\r\n", &save);
        if (tok == NULL)
            continue;
        snprintf(r.fn, sizeof(r.fn), "%s", tok);
        int ok = 0;
        while ((tok = strtok_r(NULL, " \t\r\n", &save)) != NULL) {
            if (strncmp(tok, "rv=", 3) == 0 && parse_rv(tok + 3, &r.rv) == 0) {
                ok = 1;
            } else if (strncmp(tok, "delay=", 6) == 0) {
                r.is_delay = 1;
                r.delay_ms = strtoul(tok + 6, NULL, 10);
                ok = 1;
            } else if (strncmp(tok, "slot=", 5) == 0) {
                r.kind = KIND_SLOT;
                r.arg = strtoul(tok + 5, NULL, 0);
                ok = 1;
            } else if (strncmp(tok, "topbit=", 7) == 0) {
                r.kind = KIND_TOPBIT;
                r.arg = strtoul(tok + 7, NULL, 0);
                ok = 1;
            } else if (strncmp(tok, "attr=", 5) == 0) {
                r.kind = KIND_ATTR;
                r.arg = strtoul(tok + 5, NULL, 0);
            } else if (strncmp(tok, "in=", 3) == 0) {
                snprintf(r.in, sizeof(r.in), "%s", tok + 3);
            } else if (strncmp(tok, "count=", 6) == 0) {
                r.remaining = strtol(tok + 6, NULL, 10);
            } else {
                ok = 0;
                break;
            }
        }
        if (ok)
            rules[n_rules++] = r;
        else
            fprintf(stderr, "faultp11: ignoring bad rule for %s\n", r.fn);
    }
    fclose(f);
    atomic_store(&have_rules, n_rules > 0);
}

static void log_call(const char *fn)
{
    const char *path = getenv("DDSM_FAULT_LOG");
    if (path == NULL)
        return;
    FILE *f = fopen(path, "a");
    if (f != NULL) {
        fprintf(f, "%s\n", fn);
        fclose(f);
    }
}

static int applies_here(const struct rule *r)
{
    return r->in[0] == '\0' || strcmp(r->in, self_name) == 0;
}

/* Returns 1 and sets *rv when the call must fail; sleeps for delay rules (outside the lock). */
static int fault(const char *fn, ck_rv_t *rv)
{
    unsigned long delay = 0;
    int fail = 0;
    log_call(fn);
    if (atomic_load(&have_rules) == 0 && getenv("DDSM_FAULT_CTL") == NULL)
        return 0;
    pthread_mutex_lock(&lock);
    reload_locked();
    for (size_t i = 0; i < n_rules; i++) {
        struct rule *r = &rules[i];
        if (strcmp(r->fn, "*") != 0 && strcmp(r->fn, fn) != 0)
            continue;
        if (r->remaining == 0 || r->kind != KIND_FAULT || !applies_here(r))
            continue;
        if (r->remaining > 0)
            r->remaining--;
        if (r->is_delay) {
            delay += r->delay_ms;
        } else if (!fail) {
            fail = 1;
            *rv = r->rv;
        }
    }
    pthread_mutex_unlock(&lock);
    if (delay > 0) {
        struct timespec ts = {(time_t)(delay / 1000), (long)(delay % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
    }
    return fail;
}

/* The first rule of that kind for fn that is not used up (and, with match, whose argument match
 * accepts): uses it and gives its argument and rv. */
static int behaviour_if(const char *fn, int kind, int (*match)(unsigned long, const void *),
                        const void *cookie, unsigned long *arg, ck_rv_t *rv)
{
    int found = 0;
    pthread_mutex_lock(&lock);
    reload_locked();
    for (size_t i = 0; i < n_rules && !found; i++) {
        struct rule *r = &rules[i];
        if (r->kind != kind || strcmp(r->fn, fn) != 0 || r->remaining == 0 || !applies_here(r))
            continue;
        if (match != NULL && !match(r->arg, cookie))
            continue;
        if (r->remaining > 0)
            r->remaining--;
        *arg = r->arg;
        if (rv != NULL)
            *rv = r->rv;
        found = 1;
    }
    pthread_mutex_unlock(&lock);
    return found;
}

/* A round trip to a networked HSM: a slot among its concurrency limit, then the latency (to an
 * absolute deadline, so a late wake-up is not added twice). The real call runs inside the slot. */
static void net_enter(void)
{
    if (net_latency_ns == 0 && net_concurrency == 0)
        return;
    if (net_concurrency > 0)
        while (sem_wait(&net_slots) != 0 && errno == EINTR)
            ;
    if (net_latency_ns == 0)
        return;
    /* The default 50 us timer slack would be a tenth of a 500 us round trip. */
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
    struct timespec at;
    clock_gettime(CLOCK_MONOTONIC, &at);
    unsigned long long ns = (unsigned long long)at.tv_nsec + net_latency_ns;
    at.tv_sec += (time_t)(ns / 1000000000ULL);
    at.tv_nsec = (long)(ns % 1000000000ULL);
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL) == EINTR)
        ;
}

static void net_leave(void)
{
    if (net_concurrency > 0)
        sem_post(&net_slots);
}

static int behaviour(const char *fn, int kind, unsigned long *arg)
{
    return behaviour_if(fn, kind, NULL, NULL, arg, NULL);
}

struct tmpl {
    struct ck_attribute *t;
    unsigned long n;
};

static int tmpl_names(unsigned long type, const void *cookie)
{
    const struct tmpl *tp = cookie;
    for (unsigned long i = 0; tp->t != NULL && i < tp->n; i++)
        if (tp->t[i].type == type)
            return 1;
    return 0;
}

/* A KIND_ATTR rule of fn naming an attribute of the template: its rv. */
static int refused_attr(const char *fn, struct ck_attribute *t, unsigned long n, ck_rv_t *rv)
{
    struct tmpl tp = {t, n};
    unsigned long type;
    if (!behaviour_if(fn, KIND_ATTR, tmpl_names, &tp, &type, rv))
        return 0;
    log_call(fn);
    return 1;
}

#define WRAP(name, params, args)                                                                  \
    static ck_rv_t w_##name params                                                                  \
    {                                                                                             \
        ck_rv_t frv;                                                                                \
        if (fault(#name, &frv))                                                                   \
            return frv;                                                                           \
        /* A blocking wait for a slot event is no round trip (and would hold a slot). */          \
        int net = strcmp(#name, "C_WaitForSlotEvent") != 0;                                       \
        if (net)                                                                                  \
            net_enter();                                                                          \
        frv = real->name args;                                                                    \
        if (net)                                                                                  \
            net_leave();                                                                          \
        return frv;                                                                               \
    }
FAULT_FUNCS(WRAP)

static struct ck_function_list wrapped;

static ck_rv_t b_C_WaitForSlotEvent(ck_flags_t flags, ck_slot_id_t *slot, void *reserved)
{
    unsigned long id;
    if (slot != NULL && behaviour("C_WaitForSlotEvent", KIND_SLOT, &id)) {
        log_call("C_WaitForSlotEvent");
        *slot = id;
        return CKR_OK;
    }
    return w_C_WaitForSlotEvent(flags, slot, reserved);
}

static ck_rv_t b_C_FindObjects(ck_session_handle_t session, ck_object_handle_t *object,
                               unsigned long max_object_count, unsigned long *object_count)
{
    unsigned long n;
    if (object != NULL && object_count != NULL && max_object_count > 0 &&
        behaviour("C_FindObjects", KIND_TOPBIT, &n)) {
        log_call("C_FindObjects");
        if (n > max_object_count)
            n = max_object_count;
        for (unsigned long i = 0; i < n; i++)
            object[i] = (ck_object_handle_t)0x80000000UL + 0x100UL + i;
        *object_count = n;
        return CKR_OK;
    }
    return w_C_FindObjects(session, object, max_object_count, object_count);
}

static ck_rv_t b_C_GenerateKey(ck_session_handle_t session, struct ck_mechanism *mechanism,
                               struct ck_attribute *templ, unsigned long count,
                               ck_object_handle_t *key)
{
    ck_rv_t rv;
    if (refused_attr("C_GenerateKey", templ, count, &rv))
        return rv;
    return w_C_GenerateKey(session, mechanism, templ, count, key);
}

static ck_rv_t b_C_CreateObject(ck_session_handle_t session, struct ck_attribute *templ,
                                unsigned long count, ck_object_handle_t *object)
{
    ck_rv_t rv;
    if (refused_attr("C_CreateObject", templ, count, &rv))
        return rv;
    return w_C_CreateObject(session, templ, count, object);
}

EXPORT ck_rv_t C_GetFunctionList(struct ck_function_list **list)
{
    if (list == NULL)
        return CKR_ARGUMENTS_BAD;
    pthread_mutex_lock(&lock);
    if (real == NULL) {
        const char *target = getenv("DDSM_FAULT_TARGET");
        if (target == NULL)
            target = "/usr/lib/softhsm/libsofthsm2.so";
        void *dl = dlopen(target, RTLD_NOW | RTLD_LOCAL);
        ck_rv_t (*gfl)(struct ck_function_list **) =
            dl == NULL ? NULL : (ck_rv_t(*)(struct ck_function_list **))(uintptr_t)dlsym(dl, "C_GetFunctionList");
        if (gfl == NULL || gfl(&real) != CKR_OK || real == NULL) {
            real = NULL;
            pthread_mutex_unlock(&lock);
            fprintf(stderr, "faultp11: cannot load %s\n", target);
            return CKR_GENERAL_ERROR;
        }
        wrapped = *real;
        /* Of an object of this copy's own: the name C_GetFunctionList may resolve to another
         * library's (the module's, loaded first). */
        Dl_info self;
        if (dladdr((void *)self_name, &self) != 0 && self.dli_fname != NULL) {
            const char *slash = strrchr(self.dli_fname, '/');
            snprintf(self_name, sizeof(self_name), "%s",
                     slash != NULL ? slash + 1 : self.dli_fname);
        }
        const char *lat = getenv("DDSM_FAULT_LATENCY_US");
        const char *conc = getenv("DDSM_FAULT_CONCURRENCY");
        net_latency_ns = lat != NULL ? strtoul(lat, NULL, 10) * 1000UL : 0;
        net_concurrency = conc != NULL ? strtoul(conc, NULL, 10) : 0;
        if (net_concurrency > 0 && sem_init(&net_slots, 0, (unsigned)net_concurrency) != 0)
            net_concurrency = 0;
#define ASSIGN(name, params, args) wrapped.name = w_##name;
        FAULT_FUNCS(ASSIGN)
        wrapped.C_WaitForSlotEvent = b_C_WaitForSlotEvent;
        wrapped.C_FindObjects = b_C_FindObjects;
        wrapped.C_GenerateKey = b_C_GenerateKey;
        wrapped.C_CreateObject = b_C_CreateObject;
        wrapped.C_GetFunctionList = C_GetFunctionList;
    }
    pthread_mutex_unlock(&lock);
    *list = &wrapped;
    return CKR_OK;
}
