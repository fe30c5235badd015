#include "base/defer.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/alloc.h"
#include "base/log.h"

struct defer_job {
    void (*fn)(void *arg);  /* what to run */
    void *arg;              /* its argument */
    struct defer_job *next; /* queue link */
};

struct defer {
    pthread_t thread;        /* the worker */
    bool started;            /* the worker runs (else every job runs inline) */
    pthread_mutex_t lock;    /* guards the queue and stop */
    pthread_cond_t cond;     /* signalled on a new job and on stop */
    struct defer_job *head;  /* oldest job */
    struct defer_job *tail;  /* newest job */
    size_t queued;           /* jobs in the queue */
    size_t max_queued;       /* past this, defer_run runs the job itself */
    bool stop;               /* defer_free has begun: drain, then exit */
    char name[16];           /* thread name (pthread_setname_np's limit) */
};

static void *run(void *arg)
{
    struct defer *d = arg;
    pthread_setname_np(pthread_self(), d->name);
    pthread_mutex_lock(&d->lock);
    for (;;) {
        while (!d->head && !d->stop) pthread_cond_wait(&d->cond, &d->lock);
        struct defer_job *j = d->head;
        if (!j) break; /* stopping and drained */
        d->head = j->next;
        if (!d->head) d->tail = NULL;
        d->queued--;
        pthread_mutex_unlock(&d->lock);
        j->fn(j->arg);
        free(j);
        pthread_mutex_lock(&d->lock);
    }
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

struct defer *defer_new(const char *thread_name, size_t max_queued)
{
    struct defer *d = xcalloc(1, sizeof *d);
    d->max_queued = max_queued;
    snprintf(d->name, sizeof d->name, "%s", thread_name);
    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->cond, NULL);
    int e = pthread_create(&d->thread, NULL, run, d);
    d->started = e == 0;
    if (!d->started) LOG_WARN("defer", "cannot start the %s thread (error %d): its jobs run inline", d->name, e);
    return d;
}

void defer_run(struct defer *d, void (*fn)(void *arg), void *arg)
{
    pthread_mutex_lock(&d->lock);
    if (!d->started || d->queued >= d->max_queued) {
        pthread_mutex_unlock(&d->lock);
        fn(arg);
        return;
    }
    struct defer_job *j = xmalloc(sizeof *j);
    *j = (struct defer_job){fn, arg, NULL};
    if (d->tail)
        d->tail->next = j;
    else
        d->head = j;
    d->tail = j;
    d->queued++;
    pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->lock);
}

void defer_free(struct defer *d)
{
    if (!d) return;
    pthread_mutex_lock(&d->lock);
    d->stop = true;
    pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->lock);
    if (d->started) pthread_join(d->thread, NULL);
    pthread_mutex_destroy(&d->lock);
    pthread_cond_destroy(&d->cond);
    free(d);
}
