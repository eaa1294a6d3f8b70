/* Callback-mode tests, concurrency (8 sending threads), and freeing a client while messages flow,
 * from another thread, and from inside its own callback. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

/* ---- callback mode basics ---------------------------------------------------------------- */

struct thread_check {
    pthread_t worker;
    int seen;
    int wrong_thread; /* a callback on another thread than the first one, or on the main thread */
    pthread_t main_thread;
};

static void same_thread_hook(collector *col, const wsc_event *ev) {
    (void)ev;
    struct thread_check *tc = col->ctx;
    pthread_t self = pthread_self();
    if (pthread_equal(self, tc->main_thread)) tc->wrong_thread = 1;
    if (!tc->seen) {
        tc->worker = self;
        tc->seen = 1;
    } else if (!pthread_equal(self, tc->worker)) {
        tc->wrong_thread = 1;
    }
}

TEST(callback_mode_echo_and_close) {
    collector col;
    collector_init(&col);
    struct thread_check tc = {.main_thread = pthread_self()};
    col.hook = same_thread_hook;
    col.ctx = &tc;
    wsc_client *c = open_callback("/", NULL, &col);
    CHECK_EQ(wsc_client_event_fd(c), -1);
    wsc_event ev;
    CHECK_STATUS(wsc_client_poll(c, &ev, 0), WSC_ERR_INVALID_STATE);
    CHECK_EQ(wsc_client_state(c), WSC_STATE_OPEN);

    uint8_t *bin = make_binary(100000, 1);
    char *text = make_text(70000, 2);
    CHECK_OK(wsc_client_send_text(c, text, 70000));
    CHECK_OK(wsc_client_send_binary(c, bin, 100000));
    CHECK_OK(wsc_client_send_ping(c, (const uint8_t *)"cb-ping", 7));
    CHECK(collector_wait_messages(&col, 2, T(10000)));
    CHECK(collector_wait_type(&col, WSC_EVENT_PONG, T(10000)));
    CHECK_OK(wsc_client_close(c, 1000, "bye now"));
    CHECK(collector_wait_type(&col, WSC_EVENT_CLOSE, T(10000)));
    sleep_ms(100); /* nothing may follow the CLOSE */

    pthread_mutex_lock(&col.mu);
    size_t n = col.n;
    test_event *evs = col.evs;
    pthread_mutex_unlock(&col.mu);
    CHECK_EQ(n, 5);
    CHECK_EQ(evs[0].type, WSC_EVENT_OPEN);
    CHECK_EQ(evs[0].len, 0);
    int seen_text = 0, seen_bin = 0, seen_pong = 0;
    for (size_t i = 1; i < 4; i++) {
        if (evs[i].type == WSC_EVENT_TEXT) {
            CHECK(!seen_bin); /* order kept */
            CHECK_MEM_EQ(evs[i].data, evs[i].len, text, 70000);
            seen_text = 1;
        } else if (evs[i].type == WSC_EVENT_BINARY) {
            CHECK(seen_text);
            CHECK_MEM_EQ(evs[i].data, evs[i].len, bin, 100000);
            seen_bin = 1;
        } else if (evs[i].type == WSC_EVENT_PONG) {
            CHECK_MEM_EQ(evs[i].data, evs[i].len, "cb-ping", 7);
            seen_pong = 1;
        } else {
            FAIL("unexpected %s", describe_copy(&evs[i]));
        }
    }
    CHECK(seen_text && seen_bin && seen_pong);
    CHECK_EQ(evs[4].type, WSC_EVENT_CLOSE);
    CHECK_EQ(evs[4].close_code, 1000);
    CHECK_STATUS(evs[4].status, WSC_OK);
    CHECK(evs[4].flags & WSC_CLOSE_LOCAL);
    CHECK_EQ(col.closes, 1);
    CHECK_EQ(wsc_client_state(c), WSC_STATE_CLOSED);
    CHECK_STATUS(wsc_client_poll(c, &ev, 0), WSC_ERR_INVALID_STATE);
    wsc_client_free(c);
    collector_set_freed(&col);
    collector_check_invariants(&col);
    CHECK_EQ(tc.wrong_thread, 0);
    free(bin);
    free(text);
    collector_destroy(&col);
}

static void expect_single_close_last(collector *col, unsigned code) {
    CHECK(collector_wait_type(col, WSC_EVENT_CLOSE, T(10000)));
    sleep_ms(200);
    pthread_mutex_lock(&col->mu);
    size_t n = col->n, closes = col->closes;
    test_event last = col->evs[n - 1];
    pthread_mutex_unlock(&col->mu);
    CHECK_EQ(closes, 1);
    if (last.type != WSC_EVENT_CLOSE) FAIL("last event is not CLOSE: %s", describe_copy(&last));
    CHECK_EQ(last.close_code, code);
    collector_check_invariants(col);
}

TEST(callback_server_close_4001) {
    collector col;
    collector_init(&col);
    wsc_client *c = open_callback("/close/4001", NULL, &col);
    expect_single_close_last(&col, 4001);
    test_event last = col.evs[col.n - 1];
    CHECK_MEM_EQ(last.data, last.len, "bye", 3);
    CHECK_STATUS(last.status, WSC_OK);
    CHECK(last.flags & WSC_CLOSE_REMOTE);
    CHECK_EQ(col.n, 2); /* OPEN, CLOSE */
    CHECK_STATUS(wsc_client_close(c, 1000, NULL), WSC_ERR_NOT_CONNECTED);
    wsc_client_free(c);
    collector_destroy(&col);
}

TEST(callback_client_close_4000_with_reason) {
    collector col;
    collector_init(&col);
    wsc_client *c = open_callback("/", NULL, &col);
    CHECK_OK(wsc_client_close(c, 4000, "client says goodbye"));
    expect_single_close_last(&col, 4000);
    test_event last = col.evs[col.n - 1];
    CHECK_STATUS(last.status, WSC_OK);
    CHECK(last.flags & WSC_CLOSE_LOCAL);
    CHECK(!(last.flags & WSC_CLOSE_ABNORMAL));
    wsc_client_free(c);
    collector_destroy(&col);
}

TEST(callback_connect_refused) {
    char url[64];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/", closed_port());
    collector col;
    collector_init(&col);
    wsc_client *c = NULL;
    CHECK_OK(wsc_client_new(url, NULL, &c));
    CHECK_OK(wsc_client_set_callback(c, collector_cb, &col));
    CHECK_OK(wsc_client_connect(c));
    expect_single_close_last(&col, 1006);
    CHECK_EQ(col.n, 2);
    CHECK_EQ(col.evs[0].type, WSC_EVENT_ERROR);
    CHECK_STATUS(col.evs[0].status, WSC_ERR_CONNECT);
    CHECK(col.evs[1].flags & WSC_CLOSE_ABNORMAL);
    wsc_client_free(c);
    collector_destroy(&col);
}

/* The callback drives a conversation itself: each echo triggers the next send, and the last
 * one closes, all from inside the callback. */
struct relay {
    int next;
    int limit;
    int errors;
    wsc_status first_error;
};

static void relay_hook(collector *col, const wsc_event *ev) {
    struct relay *r = col->ctx;
    if (ev->type != WSC_EVENT_OPEN && ev->type != WSC_EVENT_TEXT) return;
    if (ev->type == WSC_EVENT_TEXT) {
        char want[32];
        int len = snprintf(want, sizeof want, "relay-%d", r->next);
        if ((size_t)len != ev->len || memcmp(want, ev->data, ev->len) != 0) r->errors++;
        r->next++;
    }
    wsc_status st;
    if (r->next < r->limit) {
        char msg[32];
        int len = snprintf(msg, sizeof msg, "relay-%d", r->next);
        st = wsc_client_send_text(col->client, msg, (size_t)len);
    } else {
        st = wsc_client_close(col->client, 1000, "relay done");
    }
    if (st != WSC_OK && !r->errors++) r->first_error = st;
    (void)wsc_client_state(col->client);
    (void)wsc_client_buffered_amount(col->client);
}

TEST(callback_sends_and_closes_from_inside) {
    collector col;
    collector_init(&col);
    struct relay r = {.limit = test_quick() ? 50 : 300};
    col.hook = relay_hook;
    col.ctx = &r;
    wsc_client *c = open_callback("/", NULL, &col);
    expect_single_close_last(&col, 1000);
    if (r.errors) FAIL("%d errors in the callback; first status %s", r.errors, wsc_status_str(r.first_error));
    CHECK_EQ(r.next, r.limit);
    CHECK_EQ(col.messages, (size_t)r.limit);
    wsc_client_free(c);
    collector_destroy(&col);
}

/* ---- 8 threads x 1000 messages ----------------------------------------------------------- */

#define NTHREADS 8

struct sender {
    wsc_client *c;
    int tid;
    int count;
    pthread_barrier_t *start;
    int failures;
    wsc_status first_error;
    char first_detail[256];
};

static void *sender_main(void *arg) {
    struct sender *s = arg;
    pthread_barrier_wait(s->start);
    for (int seq = 0; seq < s->count; seq++) {
        char msg[64];
        int len = snprintf(msg, sizeof msg, "t%d:%d:%s", s->tid, seq, seq % 7 ? "" : "padding-padding-padding");
        wsc_status st = seq % 2 ? wsc_client_send_text(s->c, msg, (size_t)len)
                                : wsc_client_send_binary(s->c, (const uint8_t *)msg, (size_t)len);
        if (st != WSC_OK && !s->failures++) {
            s->first_error = st;
            snprintf(s->first_detail, sizeof s->first_detail, "%s", wsc_last_error());
        }
    }
    return NULL;
}

struct order_check {
    int next[NTHREADS];
    int errors;
    char first[160];
};

/* Parses "t<tid>:<seq>:..." and checks per-thread order; returns 0 and notes the first error. */
static void order_note(struct order_check *oc, const uint8_t *data, size_t len, int type) {
    char buf[64];
    int tid = -1, seq = -1;
    if (len < sizeof buf) {
        memcpy(buf, data, len);
        buf[len] = 0;
        if (sscanf(buf, "t%d:%d:", &tid, &seq) != 2) tid = -1;
    }
    const char *why = NULL;
    if (tid < 0 || tid >= NTHREADS) why = "unparseable message";
    else if (seq != oc->next[tid]) why = "out of order";
    else if ((seq % 2 ? WSC_EVENT_TEXT : WSC_EVENT_BINARY) != type) why = "wrong type";
    else if (len != (size_t)snprintf(buf, sizeof buf, "t%d:%d:%s", tid, seq, seq % 7 ? "" : "padding-padding-padding") ||
             memcmp(buf, data, len) != 0) why = "payload differs";
    if (why) {
        if (!oc->errors++)
            snprintf(oc->first, sizeof oc->first, "%s: tid %d seq %d (expected seq %d), len %zu", why, tid, seq,
                     (tid >= 0 && tid < NTHREADS) ? oc->next[tid] : -1, len);
        return;
    }
    oc->next[tid]++;
}

static void order_hook(collector *col, const wsc_event *ev) {
    if (ev->type == WSC_EVENT_TEXT || ev->type == WSC_EVENT_BINARY) order_note(col->ctx, ev->data, ev->len, ev->type);
}

static void run_senders(wsc_client *c, struct sender *s, pthread_t *th, pthread_barrier_t *bar, int count) {
    pthread_barrier_init(bar, NULL, NTHREADS);
    for (int i = 0; i < NTHREADS; i++) {
        s[i] = (struct sender){.c = c, .tid = i, .count = count, .start = bar};
        CHECK_EQ(pthread_create(&th[i], NULL, sender_main, &s[i]), 0);
    }
}

static void join_senders(struct sender *s, pthread_t *th, pthread_barrier_t *bar) {
    for (int i = 0; i < NTHREADS; i++) CHECK_EQ(pthread_join(th[i], NULL), 0);
    pthread_barrier_destroy(bar);
    for (int i = 0; i < NTHREADS; i++)
        if (s[i].failures)
            FAIL("thread %d: %d sends failed, first %s (%s)", i, s[i].failures, wsc_status_str(s[i].first_error),
                 s[i].first_detail);
}

TEST(threads_8x1000_poll_mode) {
    const int count = test_quick() ? 100 : 1000;
    wsc_client *c = open_poll("/", NULL, NULL);
    struct sender s[NTHREADS];
    pthread_t th[NTHREADS];
    pthread_barrier_t bar;
    run_senders(c, s, th, &bar, count);
    /* receive concurrently with the senders */
    struct order_check oc;
    memset(&oc, 0, sizeof oc);
    int total = NTHREADS * count;
    for (int got = 0; got < total; got++) {
        wsc_event ev;
        poll_next(c, &ev, T(20000));
        if (ev.type != WSC_EVENT_TEXT && ev.type != WSC_EVENT_BINARY) FAIL("unexpected %s after %d messages", describe(&ev), got);
        order_note(&oc, ev.data, ev.len, ev.type);
        if (oc.errors) FAIL("message %d: %s", got, oc.first);
    }
    join_senders(s, th, &bar);
    for (int i = 0; i < NTHREADS; i++) CHECK_EQ(oc.next[i], count);
    wsc_event ev;
    CHECK_STATUS(wsc_client_poll(c, &ev, 100), WSC_ERR_TIMEOUT); /* nothing extra */
    CHECK_OK(wsc_client_close(c, 1000, NULL));
    test_event close_ev;
    drain_to_close(c, &close_ev, 0, T(10000));
    CHECK_EQ(close_ev.close_code, 1000);
    event_clear(&close_ev);
    wsc_client_free(c);
}

TEST(threads_8x1000_callback_mode) {
    const int count = test_quick() ? 100 : 1000;
    collector col;
    collector_init(&col);
    col.keep_payload = 0;
    struct order_check oc;
    memset(&oc, 0, sizeof oc);
    col.hook = order_hook;
    col.ctx = &oc;
    wsc_client *c = open_callback("/", NULL, &col);
    struct sender s[NTHREADS];
    pthread_t th[NTHREADS];
    pthread_barrier_t bar;
    run_senders(c, s, th, &bar, count);
    join_senders(s, th, &bar);
    size_t total = (size_t)NTHREADS * (size_t)count;
    if (!collector_wait_messages(&col, total, T(60000)))
        FAIL("only %zu of %zu messages echoed", collector_messages(&col), total);
    CHECK_OK(wsc_client_close(c, 1000, NULL));
    expect_single_close_last(&col, 1000);
    if (oc.errors) FAIL("%d order errors; first: %s", oc.errors, oc.first);
    for (int i = 0; i < NTHREADS; i++) CHECK_EQ(oc.next[i], count);
    CHECK_EQ(col.messages, total);
    wsc_client_free(c);
    collector_destroy(&col);
}

/* ---- freeing while messages flow --------------------------------------------------------- */

static wsc_client *start_flow(collector *col, int *sent) {
    collector_init(col);
    col->keep_payload = 0;
    wsc_client *c = open_callback("/", NULL, col);
    const int n = test_quick() ? 500 : 3000;
    uint8_t *p = make_binary(4096, 11);
    for (int i = 0; i < n; i++) CHECK_OK(wsc_client_send_binary(c, p, 4096));
    free(p);
    *sent = n;
    if (!collector_wait_messages(col, 50, T(10000))) FAIL("fewer than 50 echoes within 10 s");
    return c;
}

static void check_quiet_after_free(collector *col, int sent) {
    size_t n1 = collector_count(col);
    sleep_ms(300);
    size_t n2 = collector_count(col);
    CHECK_EQ(n1, n2); /* no callback after free returned */
    collector_check_invariants(col);
    harness_log("freed after %zu of %d echoes", collector_messages(col), sent);
}

TEST(free_while_messages_flow) {
    collector col;
    int sent;
    wsc_client *c = start_flow(&col, &sent);
    double t0 = now_ms();
    wsc_client_free(c); /* the worker is still receiving and calling back */
    collector_set_freed(&col);
    CHECK(now_ms() - t0 < T(5000));
    check_quiet_after_free(&col, sent);
    collector_destroy(&col);
}

static void *free_thread(void *arg) {
    wsc_client_free(arg);
    return NULL;
}

TEST(free_from_another_thread_while_messages_flow) {
    collector col;
    int sent;
    wsc_client *c = start_flow(&col, &sent);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, free_thread, c), 0);
    CHECK_EQ(pthread_join(t, NULL), 0);
    collector_set_freed(&col);
    check_quiet_after_free(&col, sent);
    collector_destroy(&col);
}

TEST(free_while_sending_large_messages) {
    /* Free with megabytes still queued for sending and arriving. */
    collector col;
    collector_init(&col);
    col.keep_payload = 0;
    wsc_client *c = open_callback("/", NULL, &col);
    uint8_t *p = make_binary(1 << 20, 12);
    for (int i = 0; i < 24; i++) CHECK_OK(wsc_client_send_binary(c, p, 1 << 20));
    free(p);
    CHECK(collector_wait_messages(&col, 1, T(20000)));
    wsc_client_free(c);
    collector_set_freed(&col);
    check_quiet_after_free(&col, 24);
    collector_destroy(&col);
}

/* Frees the client from inside its own callback when `trigger` arrives (the n-th one). */
struct free_in_cb {
    int trigger;
    int nth;
    int seen;
    /* Set while the test thread still uses the client: the hook waits for it to finish, as
     * freeing under its feet would be the test's own use after free. */
    atomic_int sending;
};

static void free_hook(collector *col, const wsc_event *ev) {
    struct free_in_cb *f = col->ctx;
    if (ev->type != f->trigger || ++f->seen != f->nth) return;
    while (atomic_load(&f->sending)) sleep_ms(1);
    wsc_client_free(col->client);
    collector_set_freed(col);
}

static void check_freed_in_callback(collector *col) {
    if (!collector_wait_freed(col, T(10000))) FAIL("the callback never freed the client");
    sleep_ms(300); /* the worker exits after the callback returns; nothing more may arrive */
    collector_check_invariants(col);
}

TEST(free_inside_callback_on_message) {
    collector col;
    collector_init(&col);
    col.keep_payload = 0;
    struct free_in_cb f = {.trigger = WSC_EVENT_TEXT, .nth = 10, .sending = 1};
    col.hook = free_hook;
    col.ctx = &f;
    wsc_client *c = open_callback("/", NULL, &col);
    /* the 10th echo may arrive before the 500th send: the hook then waits for `sending` */
    for (int i = 0; i < 500; i++) CHECK_OK(wsc_client_send_text(c, "flowing", 7));
    atomic_store(&f.sending, 0);
    /* from here on the client may be gone: do not touch it */
    check_freed_in_callback(&col);
    CHECK_EQ(collector_messages(&col), 10);
    collector_destroy(&col);
}

TEST(free_inside_callback_on_open) {
    collector col;
    collector_init(&col);
    struct free_in_cb f = {.trigger = WSC_EVENT_OPEN, .nth = 1};
    col.hook = free_hook;
    col.ctx = &f;
    char *url = test_url("/");
    wsc_client *c = NULL;
    CHECK_OK(wsc_client_new(url, NULL, &c));
    free(url);
    col.client = c;
    CHECK_OK(wsc_client_set_callback(c, collector_cb, &col));
    CHECK_OK(wsc_client_connect(c));
    check_freed_in_callback(&col);
    CHECK_EQ(collector_count(&col), 1);
    collector_destroy(&col);
}

TEST(free_inside_callback_on_close) {
    collector col;
    collector_init(&col);
    struct free_in_cb f = {.trigger = WSC_EVENT_CLOSE, .nth = 1};
    col.hook = free_hook;
    col.ctx = &f;
    wsc_client *c = open_callback("/", NULL, &col);
    CHECK_OK(wsc_client_send_text(c, "before close", 12));
    CHECK_OK(wsc_client_close(c, 1000, NULL));
    check_freed_in_callback(&col);
    pthread_mutex_lock(&col.mu);
    test_event last = col.evs[col.n - 1];
    pthread_mutex_unlock(&col.mu);
    CHECK_EQ(last.type, WSC_EVENT_CLOSE);
    CHECK_EQ(last.close_code, 1000);
    collector_destroy(&col);
}

TEST(free_inside_callback_on_server_close) {
    collector col;
    collector_init(&col);
    struct free_in_cb f = {.trigger = WSC_EVENT_CLOSE, .nth = 1};
    col.hook = free_hook;
    col.ctx = &f;
    (void)open_callback("/close/4001", NULL, &col);
    check_freed_in_callback(&col);
    CHECK_EQ(col.closes, 1);
    collector_destroy(&col);
}

TEST(many_clients_open_and_free) {
    /* Create, use and free clients repeatedly (threads, sockets, fds must all be released). */
    const int rounds = test_quick() ? 10 : 50;
    for (int i = 0; i < rounds; i++) {
        wsc_client *c = open_poll("/", NULL, NULL);
        CHECK_OK(wsc_client_send_text(c, "x", 1));
        wsc_event ev;
        poll_expect(c, WSC_EVENT_TEXT, &ev, T(10000));
        if (i % 2) CHECK_OK(wsc_client_close(c, 1000, NULL));
        wsc_client_free(c);
    }
    /* no descriptor leak: a new fd number is not far above where it started */
    int fd = dup(0);
    CHECK(fd >= 0);
    close(fd);
    CHECK(fd < 64);
}
