#include "sync/auth.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "base/hash.h"

#include "base/alloc.h"
#include "base/clock.h"
#include "base/config.h"
#include "base/log.h"
#include "obs/metrics.h"
#include "http/server.h"
#include "ingest/ingest.h"
#include "store/db.h"
#include "store/tokens.h"
#include "sync/waitlist.h"
#include "upstream/hsclient.h"
#include "upstream/poller.h"

/* A dead token is remembered this long; after that a request with it is
 * verified with whoami again (which rejects it too). */
#define DEAD_KEEP_MS (60 * 60 * 1000)
/* At most this many dead tokens are remembered; past it the oldest are
 * forgotten. A forgotten one costs a whoami when it comes back (its row was
 * deleted when it died), which rejects it again: still 401. */
#define DEAD_MAX 10000
/* A request waits for whoami this much longer than the call's own timeout. */
#define WHOAMI_GRACE_MS 5000
/* The call's timeout when the configuration has none. */
#define WHOAMI_DEFAULT_SECS 300

/* A token seen. */
struct tok_entry {
    char hash[SHA256_HEX_LEN + 1]; /* key */
    char *user_id;                 /* owner */
    char *device_id;               /* device */
    bool stored;                   /* its row is in the store (else whoami verified it and the row is pending) */
    bool dead;                     /* the homeserver rejected it */
    int64_t dead_since_ms;         /* when (monotonic) */
    struct tok_entry *d_prev;      /* dead: the dead list, oldest first */
    struct tok_entry *d_next;      /* dead: the dead list */
    UT_hash_handle hh;             /* in auth.tokens */
};

/* A device we started a poller for. */
struct dev_entry {
    char *key;                     /* "user|device" */
    char *user_id;                 /* owner */
    char hash[SHA256_HEX_LEN + 1]; /* token the poller was given last */
    UT_hash_handle hh;             /* in auth.devices */
};

/* A whoami in flight. */
struct verify {
    char hash[SHA256_HEX_LEN + 1]; /* key: the token's hash */
    UT_hash_handle hh;             /* in auth.verifying */
};

/* The argument of a whoami's callback. */
struct whoami_call {
    struct auth *a;                /* whose */
    char hash[SHA256_HEX_LEN + 1]; /* the token asked about */
};

struct auth {
    struct auth_deps d;            /* services */
    struct token_key key;          /* token encryption key */
    int64_t whoami_wait_ms;        /* how long a request waits for whoami */
    pthread_mutex_t lock;          /* guards tokens, devices, verifying */
    struct tok_entry *tokens;      /* tokens seen */
    struct tok_entry *dead_head;   /* dead tokens, oldest first */
    struct tok_entry *dead_tail;   /* the newest dead token */
    int n_dead;                    /* length of that list */
    struct dev_entry *devices;     /* polled devices */
    struct verify *verifying;      /* whoamis in flight */
};

static void tok_free(struct tok_entry *t)
{
    free(t->user_id);
    free(t->device_id);
    free(t);
}

static void dev_free(struct dev_entry *d)
{
    free(d->key);
    free(d->user_id);
    free(d);
}

/* Makes t alive (off the dead list). Lock held. */
static void tok_revive(struct auth *a, struct tok_entry *t)
{
    if (!t->dead) return;
    if (t->d_prev)
        t->d_prev->d_next = t->d_next;
    else
        a->dead_head = t->d_next;
    if (t->d_next)
        t->d_next->d_prev = t->d_prev;
    else
        a->dead_tail = t->d_prev;
    t->d_prev = t->d_next = NULL;
    t->dead = false;
    a->n_dead--;
}

/* Forgets t. Lock held. */
static void tok_drop(struct auth *a, struct tok_entry *t)
{
    tok_revive(a, t);
    HASH_DEL(a->tokens, t);
    tok_free(t);
}

/* Marks t dead now (the newest on the dead list), forgetting the oldest
 * dead tokens past DEAD_MAX. Lock held. */
static void tok_kill(struct auth *a, struct tok_entry *t, int64_t now_ms)
{
    tok_revive(a, t);
    t->dead = true;
    t->dead_since_ms = now_ms;
    t->d_prev = a->dead_tail;
    if (a->dead_tail)
        a->dead_tail->d_next = t;
    else
        a->dead_head = t;
    a->dead_tail = t;
    a->n_dead++;
    while (a->n_dead > DEAD_MAX) tok_drop(a, a->dead_head);
}

/* The entry of hash, created (alive, not stored) when missing. Lock held. */
static struct tok_entry *tok_put(struct auth *a, const char *hash, const char *user_id, const char *device_id)
{
    struct tok_entry *t;
    HASH_FIND_STR(a->tokens, hash, t);
    if (!t) {
        t = xcalloc(1, sizeof *t);
        memcpy(t->hash, hash, sizeof t->hash);
        HASH_ADD_STR(a->tokens, hash, t);
    }
    if (!t->user_id || strcmp(t->user_id, user_id) != 0 || strcmp(t->device_id, device_id) != 0) {
        free(t->user_id);
        free(t->device_id);
        t->user_id = xstrdup(user_id);
        t->device_id = xstrdup(device_id);
        t->stored = false;
    }
    return t;
}

void auth_req_init(struct auth_req *ar, const char *token, bool has_pos, struct waitlist_entry *wait)
{
    *ar = (struct auth_req){.token = xstrdup(token), .has_pos = has_pos, .wait = wait};
    crypto_sha256_hex(token, strlen(token), ar->hash);
}

void auth_req_release(struct auth_req *ar)
{
    if (ar->token) explicit_bzero(ar->token, strlen(ar->token));
    free(ar->token);
    free(ar->user_id);
    free(ar->device_id);
    *ar = (struct auth_req){0};
}

int auth_new(struct auth **out, const struct auth_deps *deps)
{
    struct auth *a = xcalloc(1, sizeof *a);
    a->d = *deps;
    crypto_key_from_secret(&a->key, deps->cfg->secret);
    int secs = deps->cfg->http_timeout_secs > 0 ? deps->cfg->http_timeout_secs : WHOAMI_DEFAULT_SECS;
    a->whoami_wait_ms = (int64_t)secs * 1000 + WHOAMI_GRACE_MS;
    pthread_mutex_init(&a->lock, NULL);
    *out = a;
    return 0;
}

void auth_free(struct auth *a)
{
    if (!a) return;
    struct tok_entry *t, *tt;
    HASH_ITER(hh, a->tokens, t, tt)
    {
        HASH_DEL(a->tokens, t);
        tok_free(t);
    }
    struct dev_entry *d, *dt;
    HASH_ITER(hh, a->devices, d, dt)
    {
        HASH_DEL(a->devices, d);
        dev_free(d);
    }
    struct verify *v, *vt;
    HASH_ITER(hh, a->verifying, v, vt)
    {
        HASH_DEL(a->verifying, v);
        free(v);
    }
    pthread_mutex_destroy(&a->lock);
    free(a);
}

/* ---- devices and pollers ---- */

/* Starts the device's poller, gives a running one a newer token, or leaves
 * it alone. since: the device's stored since (used when a poller starts). */
static void ensure_polling(struct auth *a, const char *user_id, const char *device_id, const char *token,
                           const char *hash, const char *since, bool startup, bool take_over)
{
    char *key = xasprintf("%s|%s", user_id, device_id);
    pthread_mutex_lock(&a->lock);
    struct dev_entry *d;
    HASH_FIND_STR(a->devices, key, d);
    bool fresh = !d;
    /* A poller that stopped because its token died is started again (ingest
     * may have forgotten the device by then: stopped as well). */
    enum ingest_device_state st =
        d ? ingest_device_state(a->d.ingest, user_id, device_id, NULL) : INGEST_DEVICE_PENDING;
    bool stopped = st == INGEST_DEVICE_EXPIRED || st == INGEST_DEVICE_STOPPED;
    /* A running poller keeps its token when a client shows up with another
     * one already known to us (possibly older); only a token just verified
     * (whoami or the store) takes over. */
    if (!fresh && !stopped && (strcmp(d->hash, hash) == 0 || !take_over)) {
        pthread_mutex_unlock(&a->lock);
        free(key);
        return;
    }
    if (!d) {
        d = xcalloc(1, sizeof *d);
        d->key = key;
        key = NULL;
        d->user_id = xstrdup(user_id);
        HASH_ADD_KEYPTR(hh, a->devices, d->key, strlen(d->key), d);
    }
    memcpy(d->hash, hash, sizeof d->hash);
    bool start = fresh || stopped;
    /* A second device of a user already polled only needs its to-device
     * messages and E2EE data: the other device's poller fetches the rooms. */
    bool to_device_only = false;
    if (start && !startup) {
        for (struct dev_entry *o = a->devices; o; o = o->hh.next) {
            if (o != d && strcmp(o->user_id, user_id) == 0 &&
                ingest_device_ready(a->d.ingest, user_id, o->key + strlen(user_id) + 1))
                to_device_only = true;
        }
    }
    /* Under the lock: requests restarting the device together start it once. */
    if (start) ingest_device_pending(a->d.ingest, user_id, device_id);
    pthread_mutex_unlock(&a->lock);
    free(key);
    if (!start) LOG_INFO("auth", "%s/%s: a newer token takes the poller over", user_id, device_id);
    if (a->d.metrics) metrics_add_l(a->d.metrics->api_num_payloads, "V3EnsurePolling", NULL, 1);
    poller_set_ensure(a->d.pollers, user_id, device_id, token, hash, since, to_device_only);
}

int auth_resume_pollers(struct auth *a)
{
    char *err = NULL;
    PGconn *c = db_acquire(a->d.db, 10000, &err);
    if (!c) {
        LOG_ERROR("auth", "cannot resume pollers: %s", err);
        free(err);
        return 0;
    }
    struct store_token *devs = NULL;
    int n = 0, started = 0, failed = 0;
    if (store_devices_load(c, &devs, &n, &err) < 0) {
        LOG_ERROR("auth", "cannot resume pollers: %s", err);
        free(err);
        n = 0;
    }
    db_release(a->d.db, c);
    for (int i = 0; i < n; i++) {
        char *token = crypto_decrypt_token(&a->key, devs[i].token_encrypted);
        if (!token) {
            failed++;
        } else {
            pthread_mutex_lock(&a->lock);
            tok_put(a, devs[i].token_hash, devs[i].user_id, devs[i].device_id)->stored = true;
            pthread_mutex_unlock(&a->lock);
            ensure_polling(a, devs[i].user_id, devs[i].device_id, token, devs[i].token_hash, devs[i].since, true,
                           true);
            explicit_bzero(token, strlen(token));
            free(token);
            started++;
        }
        store_token_release(&devs[i]);
    }
    free(devs);
    LOG_INFO("auth", "resumed polling %d devices (%d tokens could not be decrypted: was SYNCV3_SECRET changed?)",
             started, failed);
    return started;
}

bool auth_is_current_token(struct auth *a, const char *user_id, const char *device_id, const char *token_hash)
{
    char *key = xasprintf("%s|%s", user_id, device_id);
    pthread_mutex_lock(&a->lock);
    struct dev_entry *d;
    HASH_FIND_STR(a->devices, key, d);
    bool current = !d || !token_hash || strcmp(d->hash, token_hash) == 0;
    pthread_mutex_unlock(&a->lock);
    free(key);
    return current;
}

void auth_token_rejected(struct auth *a, const char *user_id, const char *device_id, const char *token_hash)
{
    if (!token_hash) return;
    char *key = xasprintf("%s|%s", user_id, device_id);
    pthread_mutex_lock(&a->lock);
    tok_kill(a, tok_put(a, token_hash, user_id, device_id), clock_mono_ms());
    /* The device's poller stopped with this token: forget the device, so
     * devices that came once and went do not pile up. Its next token starts
     * a poller as for a new device. A device whose poller a newer token took
     * over meanwhile keeps its entry. */
    struct dev_entry *d;
    HASH_FIND_STR(a->devices, key, d);
    if (d && strcmp(d->hash, token_hash) == 0) {
        HASH_DEL(a->devices, d);
        dev_free(d);
    }
    pthread_mutex_unlock(&a->lock);
    free(key);
}

bool auth_token_dead(struct auth *a, const char *token_hash)
{
    pthread_mutex_lock(&a->lock);
    struct tok_entry *t;
    HASH_FIND_STR(a->tokens, token_hash, t);
    bool dead = t && t->dead;
    pthread_mutex_unlock(&a->lock);
    return dead;
}

void auth_forget(struct auth *a, const char *const *hashes, int n)
{
    pthread_mutex_lock(&a->lock);
    for (int i = 0; i < n; i++) {
        struct tok_entry *t;
        HASH_FIND_STR(a->tokens, hashes[i], t);
        if (t) tok_drop(a, t);
    }
    pthread_mutex_unlock(&a->lock);
}

void auth_tick(struct auth *a, int64_t now_ms)
{
    pthread_mutex_lock(&a->lock);
    while (a->dead_head && now_ms - a->dead_head->dead_since_ms >= DEAD_KEEP_MS) tok_drop(a, a->dead_head);
    pthread_mutex_unlock(&a->lock);
}

/* ---- authentication ---- */

static enum auth_step unknown_token(struct http_req *req)
{
    http_req_respond_error(req, 401, "M_UNKNOWN_TOKEN", "the homeserver rejected the access token");
    return AUTH_ANSWERED;
}

static enum auth_step db_busy(struct http_req *req, const char *what)
{
    http_req_respond_retry(req, 503, 1, "M_UNKNOWN", "%s: the database is busy or unavailable, try again", what);
    return AUTH_ANSWERED;
}

static void set_who(struct auth_req *ar, const char *user_id, const char *device_id)
{
    free(ar->user_id);
    free(ar->device_id);
    ar->user_id = xstrdup(user_id);
    ar->device_id = xstrdup(device_id);
}

/* Whoami verified the token: store it, then poll its device with it. */
static enum auth_step store_verified(struct auth *a, struct http_req *req, struct auth_req *ar)
{
    char *err = NULL, *since = NULL;
    char *enc = crypto_encrypt_token(&a->key, ar->token);
    PGconn *c = enc ? db_acquire(a->d.db, DB_WAIT_HTTP_MS, &err) : NULL;
    bool ok = c && store_token_put(c, ar->hash, enc, ar->user_id, ar->device_id, &err) == 0 &&
              (since = store_device_since(c, ar->user_id, ar->device_id, &err)) != NULL;
    if (c) db_release(a->d.db, c);
    free(enc);
    if (!ok) {
        LOG_WARN("auth", "%s/%s: storing a verified token failed: %s", ar->user_id, ar->device_id,
                 err ? err : "could not encrypt it");
        free(err);
        return db_busy(req, "could not store the access token");
    }
    pthread_mutex_lock(&a->lock);
    struct tok_entry *t;
    HASH_FIND_STR(a->tokens, ar->hash, t);
    if (t && !t->dead) t->stored = true;
    pthread_mutex_unlock(&a->lock);
    ensure_polling(a, ar->user_id, ar->device_id, ar->token, ar->hash, since, false, true);
    free(since);
    return AUTH_OK;
}

/* Looks the token up in the store; found, it becomes known and takes its
 * device's poller over. Returns AUTH_OK (*found tells whether it was
 * stored) or AUTH_ANSWERED. */
static enum auth_step from_store(struct auth *a, struct http_req *req, struct auth_req *ar, bool *found_out)
{
    *found_out = false;
    char *err = NULL;
    PGconn *c = db_acquire(a->d.db, DB_WAIT_HTTP_MS, &err);
    if (!c) {
        free(err);
        return db_busy(req, "could not check the access token");
    }
    struct store_token st = {0};
    int found = store_token_get(c, ar->hash, &st, &err);
    char *since = found == 1 ? store_device_since(c, st.user_id, st.device_id, &err) : NULL;
    db_release(a->d.db, c);
    if (found < 0 || (found == 1 && !since)) {
        free(err);
        store_token_release(&st);
        return db_busy(req, "could not check the access token");
    }
    if (!found) return AUTH_OK;
    *found_out = true;
    set_who(ar, st.user_id, st.device_id);
    store_token_release(&st);
    pthread_mutex_lock(&a->lock);
    struct tok_entry *t = tok_put(a, ar->hash, ar->user_id, ar->device_id);
    t->stored = true;
    tok_revive(a, t);
    pthread_mutex_unlock(&a->lock);
    ensure_polling(a, ar->user_id, ar->device_id, ar->token, ar->hash, since, false, true);
    free(since);
    return AUTH_OK;
}

/* Whether ar's token is known and alive; then fills ar's device and *stored.
 * Lock held. */
static bool known_locked(struct auth *a, struct auth_req *ar, bool *stored)
{
    struct tok_entry *t;
    HASH_FIND_STR(a->tokens, ar->hash, t);
    if (!t || t->dead) return false;
    set_who(ar, t->user_id, t->device_id);
    *stored = t->stored;
    return true;
}

static char *whoami_key(const char *hash)
{
    return xasprintf("whoami:%s", hash);
}

/* The poller thread's answer to a whoami. */
static void on_whoami(void *ud, int status, const char *user_id, const char *device_id, const char *err)
{
    struct whoami_call *w = ud;
    struct auth *a = w->a;
    pthread_mutex_lock(&a->lock);
    struct verify *v;
    HASH_FIND_STR(a->verifying, w->hash, v);
    if (v) {
        HASH_DEL(a->verifying, v);
        free(v);
    }
    if (status == HSCLIENT_OK) {
        /* Known from now on: the requests woken below store it (again, for
         * a token that was dead: its row is gone) and poll with it. */
        struct tok_entry *t = tok_put(a, w->hash, user_id, device_id);
        tok_revive(a, t);
        t->stored = false;
    }
    pthread_mutex_unlock(&a->lock);
    if (status == HSCLIENT_FAILED) LOG_WARN("auth", "whoami failed: %s", err ? err : "?");
    char *key = whoami_key(w->hash);
    waitlist_fire(a->d.waits, key, status);
    free(key);
    free(w);
}

/* Parks the request until the token's whoami answers, starting one unless
 * one is in flight. Returns AUTH_PARKED, or AUTH_OK when the answer came
 * meanwhile (checked under the lock that the answer takes). */
static enum auth_step ask_whoami(struct auth *a, struct http_req *req, struct auth_req *ar)
{
    bool stored;
    pthread_mutex_lock(&a->lock);
    if (known_locked(a, ar, &stored)) {
        pthread_mutex_unlock(&a->lock);
        return stored ? AUTH_OK : store_verified(a, req, ar);
    }
    char *key = whoami_key(ar->hash);
    struct verify *v;
    HASH_FIND_STR(a->verifying, ar->hash, v);
    bool start = !v;
    if (start) {
        v = xcalloc(1, sizeof *v);
        memcpy(v->hash, ar->hash, sizeof v->hash);
        HASH_ADD_STR(a->verifying, hash, v);
    }
    waitlist_remove(a->d.waits, ar->wait);
    waitlist_add(a->d.waits, ar->wait, key, req);
    pthread_mutex_unlock(&a->lock);
    free(key);
    if (start) {
        struct whoami_call *w = xcalloc(1, sizeof *w);
        w->a = a;
        memcpy(w->hash, ar->hash, sizeof w->hash);
        poller_set_whoami(a->d.pollers, ar->token, on_whoami, w);
    }
    ar->verifying = true;
    ar->deadline = clock_mono_ms() + a->whoami_wait_ms;
    return AUTH_PARKED;
}

/* A parked request woken: did its whoami answer? */
static enum auth_step whoami_answered(struct auth *a, struct http_req *req, struct auth_req *ar, bool *go_on)
{
    *go_on = false;
    int rc = 0;
    if (!waitlist_fired(a->d.waits, ar->wait, &rc)) {
        if (http_req_shutting_down(req)) {
            waitlist_remove(a->d.waits, ar->wait);
            http_req_respond_error(req, 503, "M_UNKNOWN", "the server is shutting down");
            return AUTH_ANSWERED;
        }
        if (clock_mono_ms() < ar->deadline) return AUTH_PARKED;
        waitlist_remove(a->d.waits, ar->wait);
        rc = HSCLIENT_FAILED;
    }
    ar->verifying = false;
    if (rc == HSCLIENT_UNAUTHORIZED) return unknown_token(req);
    if (rc != HSCLIENT_OK) {
        http_req_respond_error(req, 502, "M_UNKNOWN", "could not verify the access token with the homeserver");
        return AUTH_ANSWERED;
    }
    *go_on = true;
    return AUTH_OK;
}

enum auth_step auth_step(struct auth *a, struct http_req *req, struct auth_req *ar)
{
    bool go_on = true;
    if (ar->verifying) {
        enum auth_step r = whoami_answered(a, req, ar, &go_on);
        if (!go_on) return r;
    }
    bool stored;
    pthread_mutex_lock(&a->lock);
    if (known_locked(a, ar, &stored)) {
        pthread_mutex_unlock(&a->lock);
        return stored ? AUTH_OK : store_verified(a, req, ar);
    }
    struct tok_entry *t;
    HASH_FIND_STR(a->tokens, ar->hash, t);
    bool dead = t != NULL; /* known but not alive */
    pthread_mutex_unlock(&a->lock);
    /* Its connections ended with it: the client must refresh the token. */
    if (dead && ar->has_pos) return unknown_token(req);
    if (!dead) {
        /* A dead token's row may not be deleted yet: only the homeserver
         * can tell whether it works again. */
        bool found;
        enum auth_step r = from_store(a, req, ar, &found);
        if (r != AUTH_OK || found) return r;
    }
    return ask_whoami(a, req, ar);
}

enum auth_step auth_restart(struct auth *a, struct http_req *req, struct auth_req *ar)
{
    bool found;
    enum auth_step r = from_store(a, req, ar, &found);
    return r != AUTH_OK || found ? r : ask_whoami(a, req, ar);
}
