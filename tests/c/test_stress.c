/* Concurrency stress (issue 6), run under ASan/UBSan and valgrind by tests/c/run.sh:
 * 32 pthreads send while the main thread closes the client and then frees it (after joining
 * them: wsc_client_free must not run concurrently with other calls on the same client, as
 * the header says). Every send the library accepted must come back: echoed by the server or
 * as WSC_EVENT_SEND_FAILED. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

#define STRESS_THREADS 32

struct stress {
    wsc_client *c;
    int per_thread;
    atomic_size_t accepted;
    atomic_int done;
    atomic_int unexpected; /* a send status other than OK, NOT_CONNECTED, QUEUE_FULL */
    pthread_barrier_t start;
};

struct stress_sender {
    struct stress *s;
    int tid;
};

static void *stress_sender_main(void *arg) {
    struct stress_sender *me = arg;
    struct stress *s = me->s;
    pthread_barrier_wait(&s->start);
    for (int seq = 0; seq < s->per_thread; seq++) {
        char msg[48];
        int len = snprintf(msg, sizeof msg, "s%d:%d", me->tid, seq);
        uint64_t id = 0;
        wsc_status st = wsc_client_send(s->c, seq % 2 ? WSC_EVENT_TEXT : WSC_EVENT_BINARY, (const uint8_t *)msg,
                                        (size_t)len, &id);
        if (st == WSC_OK) {
            atomic_fetch_add(&s->accepted, 1);
        } else if (st == WSC_ERR_NOT_CONNECTED) {
            break; /* closing or closed */
        } else if (st == WSC_ERR_QUEUE_FULL) {
            sched_yield();
        } else {
            atomic_fetch_add(&s->unexpected, 1);
        }
        (void)wsc_client_state(s->c);
        (void)wsc_client_buffered_amount(s->c);
    }
    atomic_fetch_add(&s->done, 1);
    return NULL;
}

static void stress_start(struct stress *s, wsc_client *c, pthread_t *th, struct stress_sender *me) {
    s->c = c;
    s->per_thread = test_quick() ? 50 : 200;
    atomic_init(&s->accepted, 0);
    atomic_init(&s->done, 0);
    atomic_init(&s->unexpected, 0);
    pthread_barrier_init(&s->start, NULL, STRESS_THREADS + 1);
    for (int i = 0; i < STRESS_THREADS; i++) {
        me[i] = (struct stress_sender){.s = s, .tid = i};
        CHECK_EQ(pthread_create(&th[i], NULL, stress_sender_main, &me[i]), 0);
    }
    pthread_barrier_wait(&s->start);
}

/* Closes once a third of the sends were accepted (or all senders finished). */
static void stress_close_midway(struct stress *s) {
    size_t threshold = (size_t)STRESS_THREADS * (size_t)s->per_thread / 3;
    double deadline = now_ms() + T(30000);
    while (atomic_load(&s->accepted) < threshold && atomic_load(&s->done) < STRESS_THREADS && now_ms() < deadline)
        sched_yield();
    wsc_status st = wsc_client_close(s->c, 1000, "stress");
    if (st != WSC_OK && st != WSC_ERR_NOT_CONNECTED) FAIL("close: %s", wsc_status_str(st));
}

static void stress_join(struct stress *s, pthread_t *th) {
    for (int i = 0; i < STRESS_THREADS; i++) CHECK_EQ(pthread_join(th[i], NULL), 0);
    pthread_barrier_destroy(&s->start);
    CHECK_EQ(atomic_load(&s->unexpected), 0);
}

TEST(stress_32_threads_send_while_main_closes_then_frees_poll_mode) {
    for (int round = 0; round < 3; round++) {
        wsc_client *c = open_poll("/", NULL, NULL);
        struct stress s;
        pthread_t th[STRESS_THREADS];
        struct stress_sender me[STRESS_THREADS];
        stress_start(&s, c, th, me);
        stress_close_midway(&s);
        /* Take every event up to the final CLOSE while the senders run out. */
        size_t echoed = 0, failed = 0;
        for (;;) {
            wsc_event ev;
            poll_next(c, &ev, T(30000));
            if (ev.type == WSC_EVENT_TEXT || ev.type == WSC_EVENT_BINARY) echoed++;
            else if (ev.type == WSC_EVENT_SEND_FAILED) failed++;
            else if (ev.type == WSC_EVENT_ERROR) FAIL("round %d: %s", round, describe(&ev));
            else if (ev.type == WSC_EVENT_CLOSE) {
                CHECK_EQ(ev.close_code, 1000);
                CHECK_EQ(ev.status, WSC_OK);
                break;
            }
        }
        stress_join(&s, th);
        if (echoed + failed != atomic_load(&s.accepted))
            FAIL("round %d: %zu accepted, %zu echoed + %zu failed", round, atomic_load(&s.accepted), echoed, failed);
        wsc_client_free(c);
    }
}

TEST(stress_32_threads_send_while_main_closes_then_frees_callback_mode) {
    for (int round = 0; round < 3; round++) {
        collector col;
        collector_init(&col);
        col.keep_payload = 0;
        wsc_client *c = open_callback("/", NULL, &col);
        struct stress s;
        pthread_t th[STRESS_THREADS];
        struct stress_sender me[STRESS_THREADS];
        stress_start(&s, c, th, me);
        stress_close_midway(&s);
        stress_join(&s, th);
        if (!collector_wait_type(&col, WSC_EVENT_CLOSE, T(30000))) FAIL("round %d: no CLOSE", round);
        wsc_client_free(c);
        collector_set_freed(&col);
        collector_check_invariants(&col);
        size_t echoed = 0, failed = 0;
        for (size_t i = 0; i < col.n; i++) {
            if (col.evs[i].type == WSC_EVENT_TEXT || col.evs[i].type == WSC_EVENT_BINARY) echoed++;
            else if (col.evs[i].type == WSC_EVENT_SEND_FAILED) failed++;
            else if (col.evs[i].type == WSC_EVENT_ERROR) FAIL("round %d: %s", round, describe_copy(&col.evs[i]));
        }
        CHECK_EQ(col.evs[col.n - 1].type, WSC_EVENT_CLOSE);
        CHECK_EQ(col.evs[col.n - 1].close_code, 1000);
        if (echoed + failed != atomic_load(&s.accepted))
            FAIL("round %d: %zu accepted, %zu echoed + %zu failed", round, atomic_load(&s.accepted), echoed, failed);
        collector_destroy(&col);
    }
}
