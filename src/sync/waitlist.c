#include "sync/waitlist.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "base/hash.h"

#include "base/alloc.h"
#include "http/server.h"

/* The entries waiting for one key. */
struct waitlist_key {
    char *key;                   /* the key (owned; hash key) */
    struct waitlist_entry *head; /* its entries, newest first */
    UT_hash_handle hh;           /* in waitlist.keys */
};

struct waitlist {
    pthread_mutex_t lock;        /* guards keys and every linked entry */
    struct waitlist_key *keys;   /* keys with at least one entry */
};

struct waitlist *waitlist_new(void)
{
    struct waitlist *w = xcalloc(1, sizeof *w);
    pthread_mutex_init(&w->lock, NULL);
    return w;
}

static void key_free(struct waitlist *w, struct waitlist_key *k)
{
    HASH_DEL(w->keys, k);
    free(k->key);
    free(k);
}

void waitlist_free(struct waitlist *w)
{
    if (!w) return;
    struct waitlist_key *k, *kt;
    HASH_ITER(hh, w->keys, k, kt)
    {
        for (struct waitlist_entry *e = k->head, *next; e; e = next) {
            next = e->next;
            e->key = NULL;
            http_req_unref(e->req);
            e->req = NULL;
        }
        key_free(w, k);
    }
    pthread_mutex_destroy(&w->lock);
    free(w);
}

bool waitlist_add(struct waitlist *w, struct waitlist_entry *e, const char *key, struct http_req *req)
{
    CHECK(!e->key);
    http_req_ref(req);
    pthread_mutex_lock(&w->lock);
    struct waitlist_key *k;
    HASH_FIND_STR(w->keys, key, k);
    if (!k) {
        k = xcalloc(1, sizeof *k);
        k->key = xstrdup(key);
        HASH_ADD_KEYPTR(hh, w->keys, k->key, strlen(k->key), k);
    }
    bool only = !k->head;
    *e = (struct waitlist_entry){.req = req, .key = k, .next = k->head};
    if (k->head) k->head->prev = e;
    k->head = e;
    pthread_mutex_unlock(&w->lock);
    return only;
}

void waitlist_remove(struct waitlist *w, struct waitlist_entry *e)
{
    pthread_mutex_lock(&w->lock);
    struct waitlist_key *k = e->key;
    struct http_req *req = NULL;
    if (k) {
        if (e->prev)
            e->prev->next = e->next;
        else
            k->head = e->next;
        if (e->next) e->next->prev = e->prev;
        if (!k->head) key_free(w, k);
        req = e->req;
        e->key = NULL;
        e->req = NULL;
        e->prev = e->next = NULL;
    }
    pthread_mutex_unlock(&w->lock);
    if (req) http_req_unref(req);
}

bool waitlist_fired(struct waitlist *w, struct waitlist_entry *e, int *rc)
{
    pthread_mutex_lock(&w->lock);
    bool fired = e->fired;
    *rc = e->rc;
    pthread_mutex_unlock(&w->lock);
    return fired;
}

int waitlist_fire(struct waitlist *w, const char *key, int rc)
{
    pthread_mutex_lock(&w->lock);
    struct waitlist_key *k;
    HASH_FIND_STR(w->keys, key, k);
    int n = 0;
    struct http_req **reqs = NULL;
    if (k) {
        for (struct waitlist_entry *e = k->head; e; e = e->next) n++;
        reqs = xcalloc((size_t)n, sizeof *reqs);
        int i = 0;
        for (struct waitlist_entry *e = k->head, *next; e; e = next) {
            next = e->next;
            reqs[i++] = e->req; /* its reference moves to us */
            *e = (struct waitlist_entry){.fired = true, .rc = rc};
        }
        key_free(w, k);
    }
    pthread_mutex_unlock(&w->lock);
    /* The entries may be freed as soon as the lock is released; the
     * requests live on through the references taken from them. */
    for (int i = 0; i < n; i++) {
        http_req_wake(reqs[i]);
        http_req_unref(reqs[i]);
    }
    free(reqs);
    return n;
}
