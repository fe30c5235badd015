/* Requests parked until something outside them happens, by key: a whoami
 * answer, a device's first stored sync, a user loaded into the cache.
 *
 * A waiter is a struct waitlist_entry that the request owns (in its state).
 * Adding it under a key takes a reference on the request; firing the key
 * unlinks every entry of it, gives each the result and wakes its request;
 * removing an entry (the request ended, or stopped waiting) unlinks it if it
 * is still linked. A woken request asks waitlist_fired whether it was fired
 * or woken for another reason (its deadline, shutdown).
 *
 * Threads: every function may be called from any thread. One mutex guards
 * the table; it is a leaf (requests are woken after it is released), so it
 * may be taken while holding other locks. */
#ifndef SYNCV3_SYNC_WAITLIST_H
#define SYNCV3_SYNC_WAITLIST_H

#include <stdbool.h>

struct http_req;
struct waitlist;
struct waitlist_key;

/* One parked request. Zero-initialise; fields are private to waitlist.c
 * except through the functions below. */
struct waitlist_entry {
    struct http_req *req;        /* the request (a reference while linked) */
    struct waitlist_key *key;    /* the key it is linked under, NULL when not linked */
    struct waitlist_entry *prev; /* in the key's list */
    struct waitlist_entry *next; /* in the key's list */
    bool fired;                  /* waitlist_fire reached it since it was added */
    int rc;                      /* the result it was fired with */
};

struct waitlist *waitlist_new(void);
/* Frees the table; entries still linked are unlinked and their references
 * dropped. NULL is a no-op. */
void waitlist_free(struct waitlist *w);

/* Links e (not linked) under key for req, clearing its fired flag. Returns
 * true when e is now the only entry of key (the caller may then start what
 * will fire it). */
bool waitlist_add(struct waitlist *w, struct waitlist_entry *e, const char *key, struct http_req *req);
/* Unlinks e if it is linked (dropping its reference); a no-op otherwise. */
void waitlist_remove(struct waitlist *w, struct waitlist_entry *e);
/* Whether e was fired since it was added; then *rc is the result. */
bool waitlist_fired(struct waitlist *w, struct waitlist_entry *e, int *rc);
/* Unlinks every entry of key, marks them fired with rc and wakes their
 * requests. Returns how many there were. */
int waitlist_fire(struct waitlist *w, const char *key, int rc);

#endif
