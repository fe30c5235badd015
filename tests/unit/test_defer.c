/* Unit tests for src/base/defer: jobs run in order on the worker, every
 * queued job runs before defer_free returns, and past the bound a job runs
 * in the caller's thread. */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "base/defer.h"

#define N_JOBS 200

/* What the jobs record. */
struct record {
    pthread_mutex_t lock;      /* guards the fields below */
    int order[N_JOBS];         /* job numbers in the order they ran */
    int n;                     /* jobs run */
    pthread_t ran_on[N_JOBS];  /* the thread each job ran on, by job number */
    pthread_mutex_t *gate;     /* when set, the first job waits for it */
    int started;               /* the first job has begun */
};

/* One job's argument. */
struct job {
    struct record *rec; /* where to record */
    int no;             /* the job's number */
};

static void job_run(void *arg)
{
    struct job *j = arg;
    if (j->no == 0 && j->rec->gate) {
        pthread_mutex_lock(&j->rec->lock);
        j->rec->started = 1;
        pthread_mutex_unlock(&j->rec->lock);
        pthread_mutex_lock(j->rec->gate);
        pthread_mutex_unlock(j->rec->gate);
    }
    pthread_mutex_lock(&j->rec->lock);
    j->rec->order[j->rec->n++] = j->no;
    j->rec->ran_on[j->no] = pthread_self();
    pthread_mutex_unlock(&j->rec->lock);
}

static void test_order_and_drain(void **state)
{
    (void)state;
    static struct record rec = {.lock = PTHREAD_MUTEX_INITIALIZER};
    static struct job jobs[N_JOBS];
    struct defer *d = defer_new("t-defer", 1000);
    for (int i = 0; i < N_JOBS; i++) {
        jobs[i] = (struct job){&rec, i};
        defer_run(d, job_run, &jobs[i]);
    }
    defer_free(d); /* runs what is still queued */
    assert_int_equal(rec.n, N_JOBS);
    for (int i = 0; i < N_JOBS; i++) {
        assert_int_equal(rec.order[i], i);
        assert_false(pthread_equal(rec.ran_on[i], pthread_self()));
    }
}

static void test_bound_runs_inline(void **state)
{
    (void)state;
    static pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;
    static struct record rec = {.lock = PTHREAD_MUTEX_INITIALIZER, .gate = &gate};
    static struct job jobs[4];
    pthread_mutex_lock(&gate); /* job 0 blocks the worker */
    struct defer *d = defer_new("t-defer", 2);
    for (int i = 0; i < 4; i++) jobs[i] = (struct job){&rec, i};
    defer_run(d, job_run, &jobs[0]);
    for (int started = 0; !started;) { /* until the worker has taken job 0 */
        pthread_mutex_lock(&rec.lock);
        started = rec.started;
        pthread_mutex_unlock(&rec.lock);
        if (!started) sched_yield();
    }
    defer_run(d, job_run, &jobs[1]);
    defer_run(d, job_run, &jobs[2]); /* queued: 1 and 2 wait */
    defer_run(d, job_run, &jobs[3]); /* past the bound: runs here, now */
    pthread_mutex_lock(&rec.lock);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.order[0], 3);
    assert_true(pthread_equal(rec.ran_on[3], pthread_self()));
    pthread_mutex_unlock(&rec.lock);
    pthread_mutex_unlock(&gate);
    defer_free(d);
    assert_int_equal(rec.n, 4);
    assert_int_equal(rec.order[1], 0);
    assert_int_equal(rec.order[2], 1);
    assert_int_equal(rec.order[3], 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_and_drain),
        cmocka_unit_test(test_bound_runs_inline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
