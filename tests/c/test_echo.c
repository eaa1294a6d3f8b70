/* Poll-mode tests against the echo server (WSC_TEST_URL): open, echo, ping/pong, close codes,
 * timeouts, the event fd, subprotocols, backpressure and failures. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

TEST(connect_open_close_poll) {
    wsc_client *c = NULL;
    char *url = test_url("/");
    CHECK_OK(wsc_client_new(url, NULL, &c));
    free(url);
    CHECK_EQ(wsc_client_state(c), WSC_STATE_IDLE);
    CHECK_OK(wsc_client_connect(c));
    int st = wsc_client_state(c);
    CHECK(st == WSC_STATE_CONNECTING || st == WSC_STATE_OPEN);
    CHECK_STATUS(wsc_client_connect(c), WSC_ERR_INVALID_STATE); /* only once */
    CHECK_STATUS(wsc_client_set_callback(c, collector_cb, NULL), WSC_ERR_INVALID_STATE);

    wsc_event ev;
    poll_expect(c, WSC_EVENT_OPEN, &ev, T(10000));
    CHECK_EQ(ev.status, WSC_OK);
    CHECK_EQ(ev.len, 0); /* no subprotocol offered */
    CHECK(ev.data != NULL);
    CHECK_EQ(ev.close_code, 0);
    CHECK_EQ(ev.id, 0);
    CHECK_EQ(wsc_client_state(c), WSC_STATE_OPEN);

    CHECK_OK(wsc_client_close(c, 1000, NULL));
    test_event close_ev;
    drain_to_close(c, &close_ev, 0, T(10000));
    CHECK_EQ(close_ev.close_code, 1000);
    CHECK_STATUS(close_ev.status, WSC_OK);
    CHECK(close_ev.flags & WSC_CLOSE_LOCAL);
    CHECK(!(close_ev.flags & WSC_CLOSE_ABNORMAL));
    event_clear(&close_ev);
    CHECK_STATUS(wsc_client_connect(c), WSC_ERR_INVALID_STATE);
    wsc_client_free(c);
}

static void echo_one(wsc_client *c, int type, const void *payload, size_t n) {
    if (type == WSC_EVENT_TEXT)
        CHECK_OK(wsc_client_send_text(c, (const char *)payload, n));
    else
        CHECK_OK(wsc_client_send_binary(c, (const uint8_t *)payload, n));
    wsc_event ev;
    poll_next(c, &ev, T(60000));
    if (ev.type != type) FAIL("echo of %zu bytes: expected %s, got %s", n, event_name(type), describe(&ev));
    CHECK_STATUS(ev.status, WSC_OK);
    CHECK_MEM_EQ(ev.data, ev.len, payload, n);
}

static void echo_sizes(int type) {
    static const size_t full[] = {1, 1024, 64 * 1024, 1024 * 1024, 16 * 1024 * 1024};
    size_t count = sizeof full / sizeof full[0];
    if (test_quick()) count = 4; /* up to 1 MiB under valgrind */
    wsc_client *c = open_poll("/", NULL, NULL);
    for (size_t i = 0; i < count; i++) {
        size_t n = full[i];
        void *payload = type == WSC_EVENT_TEXT ? (void *)make_text(n, (uint32_t)(i + 1)) : (void *)make_binary(n, (uint32_t)(i + 1));
        double t0 = now_ms();
        echo_one(c, type, payload, n);
        if (n >= (1u << 20)) harness_log("%s %zu bytes echoed in %.0f ms", event_name(type), n, now_ms() - t0);
        free(payload);
    }
    /* The empty message (NULL, 0) is echoed too, with a non-NULL data pointer. */
    if (type == WSC_EVENT_TEXT)
        CHECK_OK(wsc_client_send_text(c, NULL, 0));
    else
        CHECK_OK(wsc_client_send_binary(c, NULL, 0));
    wsc_event ev;
    poll_expect(c, type, &ev, T(10000));
    CHECK_EQ(ev.len, 0);
    CHECK(ev.data != NULL);
    CHECK_EQ(wsc_client_buffered_amount(c), 0);

    CHECK_OK(wsc_client_close(c, 1000, NULL));
    test_event close_ev;
    drain_to_close(c, &close_ev, 0, T(10000));
    CHECK_EQ(close_ev.close_code, 1000);
    event_clear(&close_ev);
    wsc_client_free(c);
}

TEST(echo_text_sizes) { echo_sizes(WSC_EVENT_TEXT); }

TEST(echo_binary_sizes) { echo_sizes(WSC_EVENT_BINARY); }

TEST(echo_many_pipelined_keeps_order) {
    /* Many messages in flight at once, mixed types, all come back in order and intact. */
    wsc_client *c = open_poll("/", NULL, NULL);
    const int n = test_quick() ? 200 : 2000;
    for (int i = 0; i < n; i++) {
        char msg[64];
        int len = snprintf(msg, sizeof msg, "msg-%d-%s", i, i % 3 ? "x" : "yyyyyyyyyyyyyyyy");
        uint64_t id = 0;
        CHECK_OK(wsc_client_send(c, i % 2 ? WSC_EVENT_BINARY : WSC_EVENT_TEXT, (const uint8_t *)msg, (size_t)len, &id));
        CHECK(id > 0);
    }
    for (int i = 0; i < n; i++) {
        char msg[64];
        int len = snprintf(msg, sizeof msg, "msg-%d-%s", i, i % 3 ? "x" : "yyyyyyyyyyyyyyyy");
        wsc_event ev;
        poll_expect(c, i % 2 ? WSC_EVENT_BINARY : WSC_EVENT_TEXT, &ev, T(10000));
        CHECK_MEM_EQ(ev.data, ev.len, msg, len);
    }
    CHECK_OK(wsc_client_close(c, 1000, NULL));
    test_event close_ev;
    drain_to_close(c, &close_ev, 0, T(10000));
    event_clear(&close_ev);
    wsc_client_free(c);
}

TEST(send_ids_increase) {
    wsc_client *c = open_poll("/", NULL, NULL);
    uint64_t last = 0;
    const uint8_t p[3] = {1, 2, 3};
    for (int i = 0; i < 30; i++) {
        uint64_t id = 0;
        int type = i % 3 == 0 ? WSC_EVENT_TEXT : i % 3 == 1 ? WSC_EVENT_BINARY : WSC_EVENT_PING;
        CHECK_OK(wsc_client_send(c, type, p, sizeof p, &id));
        CHECK(id > last);
        last = id;
    }
    CHECK_OK(wsc_client_send(c, WSC_EVENT_TEXT, p, sizeof p, NULL)); /* out_id may be NULL */
    int texts = 0, bins = 0, pongs = 0;
    while (texts + bins + pongs < 31) {
        wsc_event ev;
        poll_next(c, &ev, T(10000));
        if (ev.type == WSC_EVENT_TEXT) texts++;
        else if (ev.type == WSC_EVENT_BINARY) bins++;
        else if (ev.type == WSC_EVENT_PONG) pongs++;
        else FAIL("unexpected %s", describe(&ev));
        CHECK_MEM_EQ(ev.data, ev.len, p, sizeof p);
    }
    CHECK_EQ(texts, 11);
    CHECK_EQ(bins, 10);
    CHECK_EQ(pongs, 10);
    wsc_client_free(c); /* free while open, without close */
}

TEST(ping_pong_with_payload) {
    wsc_client *c = open_poll("/", NULL, NULL);
    const char *payload = "ping-payload-\x01\x02\xff";
    size_t plen = strlen(payload);
    CHECK_OK(wsc_client_send_ping(c, (const uint8_t *)payload, plen));
    wsc_event ev;
    poll_expect(c, WSC_EVENT_PONG, &ev, T(10000));
    CHECK_MEM_EQ(ev.data, ev.len, payload, plen);

    /* empty ping */
    CHECK_OK(wsc_client_send_ping(c, NULL, 0));
    poll_expect(c, WSC_EVENT_PONG, &ev, T(10000));
    CHECK_EQ(ev.len, 0);
    CHECK(ev.data != NULL);

    /* the largest control payload: 125 bytes; 126 is refused */
    uint8_t *big = make_binary(126, 5);
    CHECK_OK(wsc_client_send_ping(c, big, 125));
    poll_expect(c, WSC_EVENT_PONG, &ev, T(10000));
    CHECK_MEM_EQ(ev.data, ev.len, big, 125);
    CHECK_STATUS(wsc_client_send_ping(c, big, 126), WSC_ERR_MESSAGE_TOO_LARGE);
    CHECK_STATUS(wsc_client_send(c, WSC_EVENT_PING, big, 126, NULL), WSC_ERR_MESSAGE_TOO_LARGE);
    free(big);

    /* pings interleave with data in order */
    CHECK_OK(wsc_client_send_text(c, "a", 1));
    CHECK_OK(wsc_client_send_ping(c, (const uint8_t *)"p1", 2));
    CHECK_OK(wsc_client_send_text(c, "b", 1));
    int got_a = 0, got_b = 0, got_p = 0;
    for (int i = 0; i < 3; i++) {
        poll_next(c, &ev, T(10000));
        if (ev.type == WSC_EVENT_TEXT && ev.len == 1 && ev.data[0] == 'a') { CHECK(!got_b); got_a = 1; }
        else if (ev.type == WSC_EVENT_TEXT && ev.len == 1 && ev.data[0] == 'b') { CHECK(got_a); got_b = 1; }
        else if (ev.type == WSC_EVENT_PONG) { CHECK_MEM_EQ(ev.data, ev.len, "p1", 2); got_p = 1; }
        else FAIL("unexpected %s", describe(&ev));
    }
    CHECK(got_a && got_b && got_p);

    CHECK_OK(wsc_client_close(c, 1000, NULL));
    test_event close_ev;
    drain_to_close(c, &close_ev, 0, T(10000));
    event_clear(&close_ev);
    wsc_client_free(c);
}

TEST(server_ping_event) {
    wsc_client *c = open_poll("/ping", NULL, NULL);
    wsc_event ev;
    poll_expect(c, WSC_EVENT_PING, &ev, T(10000));
    CHECK_MEM_EQ(ev.data, ev.len, "hello", 5);
    CHECK_STATUS(ev.status, WSC_OK);
    /* then it echoes as usual */
    CHECK_OK(wsc_client_send_text(c, "after ping", 10));
    poll_expect(c, WSC_EVENT_TEXT, &ev, T(10000));
    CHECK_MEM_EQ(ev.data, ev.len, "after ping", 10);
    CHECK_OK(wsc_client_close(c, 1000, NULL));
    test_event close_ev;
    drain_to_close(c, &close_ev, 0, T(10000));
    CHECK_EQ(close_ev.close_code, 1000);
    event_clear(&close_ev);
    wsc_client_free(c);
}

TEST(client_close_1000) {
    wsc_client *c = open_poll("/", NULL, NULL);
    CHECK_OK(wsc_client_send_text(c, "last words", 10));
    CHECK_OK(wsc_client_close(c, 1000, NULL));
    int st = wsc_client_state(c);
    CHECK(st == WSC_STATE_OPEN || st == WSC_STATE_CLOSING || st == WSC_STATE_CLOSED);
    /* after close: sends and a second close are refused */
    CHECK_STATUS(wsc_client_send_text(c, "late", 4), WSC_ERR_NOT_CONNECTED);
    CHECK_STATUS(wsc_client_send_ping(c, NULL, 0), WSC_ERR_NOT_CONNECTED);
    CHECK_STATUS(wsc_client_close(c, 1000, NULL), WSC_ERR_NOT_CONNECTED);
    /* the message sent before close still comes back, then CLOSE */
    wsc_event ev;
    poll_expect(c, WSC_EVENT_TEXT, &ev, T(10000));
    CHECK_MEM_EQ(ev.data, ev.len, "last words", 10);
    poll_expect(c, WSC_EVENT_CLOSE, &ev, T(10000));
    CHECK_EQ(ev.close_code, 1000);
    CHECK_STATUS(ev.status, WSC_OK);
    CHECK(ev.flags & WSC_CLOSE_LOCAL);
    CHECK(!(ev.flags & WSC_CLOSE_ABNORMAL));
    CHECK_STATUS(wsc_client_poll(c, &ev, 0), WSC_ERR_NOT_CONNECTED);
    CHECK_STATUS(wsc_client_poll(c, &ev, 100), WSC_ERR_NOT_CONNECTED);
    CHECK_EQ(wsc_client_state(c), WSC_STATE_CLOSED);
    CHECK_STATUS(wsc_client_send_text(c, "late", 4), WSC_ERR_NOT_CONNECTED);
    CHECK_STATUS(wsc_client_close(c, 1000, NULL), WSC_ERR_NOT_CONNECTED);
    wsc_client_free(c);
}

TEST(client_close_4000_with_reason) {
    wsc_client *c = open_poll("/", NULL, NULL);
    CHECK_OK(wsc_client_close(c, 4000, "done for today"));
    test_event close_ev;
    drain_to_close(c, &close_ev, 0, T(10000));
    CHECK_EQ(close_ev.close_code, 4000);
    CHECK_STATUS(close_ev.status, WSC_OK);
    CHECK(close_ev.flags & WSC_CLOSE_LOCAL);
    CHECK(!(close_ev.flags & WSC_CLOSE_ABNORMAL));
    harness_log("close reason from server: \"%s\"", (const char *)close_ev.data);
    event_clear(&close_ev);
    wsc_client_free(c);
}

TEST(close_arguments_validated) {
    wsc_client *c = open_poll("/", NULL, NULL);
    static const unsigned bad_codes[] = {0, 1, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof bad_codes / sizeof bad_codes[0]; i++) {
        wsc_status st = wsc_client_close(c, (uint16_t)bad_codes[i], NULL);
        if (st != WSC_ERR_INVALID_ARGUMENT) FAIL("close code %u: %s, want WSC_ERR_INVALID_ARGUMENT", bad_codes[i], wsc_status_str(st));
    }
    char reason[200];
    memset(reason, 'r', sizeof reason);
    reason[124] = '\0'; /* 124 bytes: one too many */
    CHECK_STATUS(wsc_client_close(c, 1000, reason), WSC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(wsc_client_close(c, 1000, "bad \xff utf8"), WSC_ERR_INVALID_ARGUMENT);
    /* none of those started a close: the client still echoes */
    CHECK_EQ(wsc_client_state(c), WSC_STATE_OPEN);
    CHECK_OK(wsc_client_send_text(c, "still open", 10));
    wsc_event ev;
    poll_expect(c, WSC_EVENT_TEXT, &ev, T(10000));
    CHECK_MEM_EQ(ev.data, ev.len, "still open", 10);

    reason[123] = '\0'; /* 123 bytes: the maximum */
    CHECK_OK(wsc_client_close(c, 3000, reason));
    test_event close_ev;
    drain_to_close(c, &close_ev, 0, T(10000));
    CHECK_EQ(close_ev.close_code, 3000);
    event_clear(&close_ev);
    wsc_client_free(c);
}

TEST(server_close_4001) {
    wsc_client *c = open_poll("/close/4001", NULL, NULL);
    wsc_event ev;
    poll_next(c, &ev, T(10000));
    if (ev.type != WSC_EVENT_CLOSE) FAIL("expected CLOSE, got %s", describe(&ev));
    CHECK_EQ(ev.close_code, 4001);
    CHECK_MEM_EQ(ev.data, ev.len, "bye", 3);
    CHECK_STATUS(ev.status, WSC_OK);
    CHECK(ev.flags & WSC_CLOSE_REMOTE);
    CHECK(!(ev.flags & WSC_CLOSE_ABNORMAL));
    /* exactly one CLOSE and it is the last event */
    CHECK_STATUS(wsc_client_poll(c, &ev, 0), WSC_ERR_NOT_CONNECTED);
    CHECK_STATUS(wsc_client_poll(c, &ev, 200), WSC_ERR_NOT_CONNECTED);
    CHECK_EQ(wsc_client_state(c), WSC_STATE_CLOSED);
    CHECK_STATUS(wsc_client_send_text(c, "x", 1), WSC_ERR_NOT_CONNECTED);
    CHECK_STATUS(wsc_client_close(c, 1000, NULL), WSC_ERR_NOT_CONNECTED);
    wsc_client_free(c);
}

TEST(poll_timeouts_and_out_untouched) {
    wsc_client *c = open_poll("/", NULL, NULL);
    wsc_event ev;
    memset(&ev, 0x5A, sizeof ev);
    wsc_event before = ev;
    double t0 = now_ms();
    CHECK_STATUS(wsc_client_poll(c, &ev, 0), WSC_ERR_TIMEOUT);
    CHECK(now_ms() - t0 < T(1000));
    t0 = now_ms();
    CHECK_STATUS(wsc_client_poll(c, &ev, 150), WSC_ERR_TIMEOUT);
    double waited = now_ms() - t0;
    CHECK(waited >= 140);
    CHECK(waited < T(5000));
    CHECK(memcmp(&ev, &before, sizeof ev) == 0); /* *out written only on success */
    CHECK_STATUS(wsc_client_poll(c, &ev, -2), WSC_ERR_INVALID_ARGUMENT);
    CHECK(memcmp(&ev, &before, sizeof ev) == 0);

    /* -1 waits as long as needed */
    CHECK_OK(wsc_client_send_text(c, "forever", 7));
    CHECK_OK(wsc_client_poll(c, &ev, -1));
    CHECK_EQ(ev.type, WSC_EVENT_TEXT);
    CHECK_MEM_EQ(ev.data, ev.len, "forever", 7);

    /* event data stays valid across other calls until the next poll */
    CHECK_OK(wsc_client_send_binary(c, (const uint8_t *)"second", 6));
    sleep_ms(50);
    CHECK_MEM_EQ(ev.data, ev.len, "forever", 7);
    poll_expect(c, WSC_EVENT_BINARY, &ev, T(10000));
    CHECK_MEM_EQ(ev.data, ev.len, "second", 6);
    wsc_client_free(c);
}

static int fd_readable(int fd, int timeout_ms) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r = poll(&p, 1, timeout_ms);
    CHECK(r >= 0);
    return r > 0 && (p.revents & POLLIN);
}

TEST(event_fd_readable_when_events_queued) {
    char *url = test_url("/");
    wsc_client *c = NULL;
    CHECK_OK(wsc_client_new(url, NULL, &c));
    free(url);
    int fd = wsc_client_event_fd(c);
    CHECK(fd >= 0);
    CHECK(!fd_readable(fd, 0)); /* nothing queued yet */
    CHECK_OK(wsc_client_connect(c));
    CHECK(fd_readable(fd, T(10000))); /* OPEN queued */
    wsc_event ev;
    CHECK_OK(wsc_client_poll(c, &ev, 0)); /* so poll(0) finds it */
    CHECK_EQ(ev.type, WSC_EVENT_OPEN);
    CHECK(!fd_readable(fd, 0)); /* drained */
    CHECK_EQ(wsc_client_event_fd(c), fd); /* stable */

    CHECK_OK(wsc_client_send_text(c, "one", 3));
    CHECK_OK(wsc_client_send_text(c, "two", 3));
    CHECK(fd_readable(fd, T(10000)));
    /* wait until both are queued; the fd stays readable while any event is queued */
    sleep_ms(T(200));
    CHECK_OK(wsc_client_poll(c, &ev, 0));
    CHECK_MEM_EQ(ev.data, ev.len, "one", 3);
    CHECK(fd_readable(fd, 0));
    CHECK_OK(wsc_client_poll(c, &ev, 0));
    CHECK_MEM_EQ(ev.data, ev.len, "two", 3);
    CHECK(!fd_readable(fd, 0));
    CHECK_STATUS(wsc_client_poll(c, &ev, 0), WSC_ERR_TIMEOUT);

    /* an event loop driven by the fd alone */
    const int n = 50;
    for (int i = 0; i < n; i++) CHECK_OK(wsc_client_send_binary(c, (const uint8_t *)&i, sizeof i));
    int got = 0;
    double deadline = now_ms() + T(10000);
    while (got < n) {
        CHECK(now_ms() < deadline);
        if (!fd_readable(fd, 100)) continue;
        wsc_status st;
        while ((st = wsc_client_poll(c, &ev, 0)) == WSC_OK) {
            CHECK_EQ(ev.type, WSC_EVENT_BINARY);
            CHECK_MEM_EQ(ev.data, ev.len, &got, sizeof got);
            got++;
        }
        CHECK_STATUS(st, WSC_ERR_TIMEOUT);
    }
    CHECK(!fd_readable(fd, 0));

    CHECK_OK(wsc_client_close(c, 1000, NULL));
    CHECK(fd_readable(fd, T(10000))); /* CLOSE queued */
    poll_expect(c, WSC_EVENT_CLOSE, &ev, 0);
    CHECK(!fd_readable(fd, 0));
    wsc_client_free(c);
}

TEST(subprotocol_in_open_event) {
    wsc_config *cfg = wsc_config_new();
    CHECK(cfg != NULL);
    CHECK_OK(wsc_config_add_subprotocol(cfg, "chat.v2"));
    CHECK_OK(wsc_config_add_subprotocol(cfg, "superchat"));
    CHECK_OK(wsc_config_add_header(cfg, "X-Test", "c-tests"));
    CHECK_OK(wsc_config_set_origin(cfg, "http://origin.test"));
    char *url = test_url("/");
    wsc_client *c = NULL;
    CHECK_OK(wsc_client_new(url, cfg, &c));
    free(url);
    wsc_config_free(cfg); /* the client keeps its own copy */
    CHECK_OK(wsc_client_connect(c));
    wsc_event ev;
    poll_expect(c, WSC_EVENT_OPEN, &ev, T(10000));
    CHECK_MEM_EQ(ev.data, ev.len, "chat.v2", 7);
    CHECK_OK(wsc_client_send_text(c, "proto", 5));
    poll_expect(c, WSC_EVENT_TEXT, &ev, T(10000));
    CHECK_MEM_EQ(ev.data, ev.len, "proto", 5);
    CHECK_OK(wsc_client_close(c, 1000, NULL));
    test_event close_ev;
    drain_to_close(c, &close_ev, 0, T(10000));
    event_clear(&close_ev);
    wsc_client_free(c);
}

TEST(send_limits) {
    wsc_config *cfg = wsc_config_new();
    CHECK(cfg != NULL);
    CHECK_OK(wsc_config_set_max_message_size(cfg, 1000));
    CHECK_OK(wsc_config_set_send_queue_limit(cfg, 4096));
    wsc_client *c = open_poll("/", cfg, NULL);
    wsc_config_free(cfg);

    uint8_t *buf = make_binary(5000, 9);
    char *text = make_text(1001, 9);
    CHECK_STATUS(wsc_client_send_binary(c, buf, 1001), WSC_ERR_MESSAGE_TOO_LARGE);
    CHECK_STATUS(wsc_client_send_text(c, text, 1001), WSC_ERR_MESSAGE_TOO_LARGE);
    CHECK_STATUS(wsc_client_send_text(c, "ok\xff\xfe", 4), WSC_ERR_INVALID_UTF8);
    CHECK_STATUS(wsc_client_send_text(c, "\xc3", 1), WSC_ERR_INVALID_UTF8); /* truncated sequence */
    CHECK_STATUS(wsc_client_send_text(c, "\xed\xa0\x80", 3), WSC_ERR_INVALID_UTF8); /* surrogate */
    CHECK(strlen(wsc_last_error()) > 0);

    /* exactly the maximum is fine, and the echo (1000 bytes) is accepted on the way in */
    CHECK_OK(wsc_client_send_binary(c, buf, 1000));
    wsc_event ev;
    poll_expect(c, WSC_EVENT_BINARY, &ev, T(10000));
    CHECK_MEM_EQ(ev.data, ev.len, buf, 1000);
    char *text1000 = make_text(1000, 10);
    CHECK_OK(wsc_client_send_text(c, text1000, 1000));
    poll_expect(c, WSC_EVENT_TEXT, &ev, T(10000));
    CHECK_MEM_EQ(ev.data, ev.len, text1000, 1000);
    free(text1000);
    CHECK_EQ(wsc_client_buffered_amount(c), 0);
    CHECK_OK(wsc_client_close(c, 1000, NULL));
    test_event close_ev;
    drain_to_close(c, &close_ev, 0, T(10000));
    event_clear(&close_ev);
    wsc_client_free(c);

    /* the send queue limit: a message bigger than the whole queue is refused */
    cfg = wsc_config_new();
    CHECK_OK(wsc_config_set_send_queue_limit(cfg, 4096));
    c = open_poll("/", cfg, NULL);
    wsc_config_free(cfg);
    CHECK_STATUS(wsc_client_send_binary(c, buf, 4097), WSC_ERR_QUEUE_FULL);
    CHECK_OK(wsc_client_send_binary(c, buf, 4096));
    poll_expect(c, WSC_EVENT_BINARY, &ev, T(10000));
    CHECK_MEM_EQ(ev.data, ev.len, buf, 4096);
    free(buf);
    free(text);
    wsc_client_free(c);
}

TEST(recv_queue_backpressure_loses_nothing) {
    /* A small receive queue: the worker stops reading while it is full, nothing is dropped. */
    wsc_config *cfg = wsc_config_new();
    CHECK(cfg != NULL);
    CHECK_OK(wsc_config_set_recv_queue_limit(cfg, 16 * 1024));
    wsc_client *c = open_poll("/", cfg, NULL);
    wsc_config_free(cfg);
    const int n = test_quick() ? 100 : 400;
    const size_t sz = 4096;
    for (int i = 0; i < n; i++) {
        uint8_t *p = make_binary(sz, (uint32_t)i + 100);
        CHECK_OK(wsc_client_send_binary(c, p, sz));
        free(p);
    }
    sleep_ms(300); /* let the queue fill up and the worker pause */
    for (int i = 0; i < n; i++) {
        wsc_event ev;
        poll_expect(c, WSC_EVENT_BINARY, &ev, T(10000));
        uint8_t *p = make_binary(sz, (uint32_t)i + 100);
        CHECK_MEM_EQ(ev.data, ev.len, p, sz);
        free(p);
        if (i % 50 == 0) sleep_ms(10); /* a slow consumer */
    }
    CHECK_OK(wsc_client_close(c, 1000, NULL));
    test_event close_ev;
    drain_to_close(c, &close_ev, 0, T(10000));
    CHECK_EQ(close_ev.close_code, 1000);
    event_clear(&close_ev);
    wsc_client_free(c);
}

TEST(connect_refused_gives_error_then_close) {
    char url[64];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/", closed_port());
    wsc_client *c = NULL;
    CHECK_OK(wsc_client_new(url, NULL, &c));
    CHECK_OK(wsc_client_connect(c));
    wsc_event ev;
    poll_expect(c, WSC_EVENT_ERROR, &ev, T(10000));
    CHECK_STATUS(ev.status, WSC_ERR_CONNECT);
    CHECK(ev.len > 0); /* a message */
    poll_expect(c, WSC_EVENT_CLOSE, &ev, T(10000));
    CHECK_EQ(ev.close_code, 1006);
    CHECK(ev.flags & WSC_CLOSE_ABNORMAL);
    CHECK(ev.status != WSC_OK);
    CHECK_STATUS(wsc_client_poll(c, &ev, 0), WSC_ERR_NOT_CONNECTED);
    CHECK_EQ(wsc_client_state(c), WSC_STATE_CLOSED);
    CHECK_STATUS(wsc_client_send_text(c, "x", 1), WSC_ERR_NOT_CONNECTED);
    wsc_client_free(c);
}

TEST(handshake_timeout) {
    int port;
    int lfd = listen_never_accept(&port);
    char url[64];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/", port);
    wsc_config *cfg = wsc_config_new();
    CHECK_OK(wsc_config_set_connect_timeout_ms(cfg, 300));
    wsc_client *c = NULL;
    CHECK_OK(wsc_client_new(url, cfg, &c));
    wsc_config_free(cfg);
    double t0 = now_ms();
    CHECK_OK(wsc_client_connect(c));
    /* messages sent while connecting are accepted (queued) */
    CHECK_OK(wsc_client_send_text(c, "queued", 6));
    wsc_event ev;
    poll_next(c, &ev, T(10000));
    double took = now_ms() - t0;
    int send_failed = 0;
    if (ev.type == WSC_EVENT_SEND_FAILED) { /* allowed before the ERROR too */
        CHECK_EQ(ev.flags, WSC_EVENT_TEXT);
        CHECK_MEM_EQ(ev.data, ev.len, "queued", 6);
        send_failed++;
        poll_next(c, &ev, T(10000));
        harness_log("note: SEND_FAILED came before ERROR");
    }
    if (ev.type != WSC_EVENT_ERROR) FAIL("expected ERROR, got %s", describe(&ev));
    CHECK_STATUS(ev.status, WSC_ERR_TIMEOUT);
    CHECK(took >= 250);
    CHECK(took < T(5000));
    /* the queued message is reported as never sent, before the CLOSE */
    for (;;) {
        poll_next(c, &ev, T(10000));
        if (ev.type == WSC_EVENT_CLOSE) break;
        if (ev.type != WSC_EVENT_SEND_FAILED) FAIL("expected SEND_FAILED or CLOSE, got %s", describe(&ev));
        CHECK_EQ(ev.flags, WSC_EVENT_TEXT);
        CHECK_MEM_EQ(ev.data, ev.len, "queued", 6);
        CHECK(ev.id > 0);
        CHECK(ev.status != WSC_OK);
        send_failed++;
    }
    CHECK_EQ(send_failed, 1);
    CHECK_EQ(ev.close_code, 1006);
    CHECK(ev.flags & WSC_CLOSE_ABNORMAL);
    CHECK_STATUS(wsc_client_poll(c, &ev, 0), WSC_ERR_NOT_CONNECTED);
    wsc_client_free(c);
    close(lfd);
}

TEST(close_while_connecting_abandons) {
    int port;
    int lfd = listen_never_accept(&port);
    char url[64];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/", port);
    wsc_client *c = NULL;
    CHECK_OK(wsc_client_new(url, NULL, &c)); /* default connect timeout: 10 s */
    CHECK_OK(wsc_client_connect(c));
    sleep_ms(50);
    double t0 = now_ms();
    CHECK_OK(wsc_client_close(c, 1000, NULL));
    wsc_event ev;
    for (;;) {
        poll_next(c, &ev, T(5000));
        if (ev.type == WSC_EVENT_CLOSE) break;
        if (ev.type == WSC_EVENT_OPEN) FAIL("OPEN after close while connecting: %s", describe(&ev));
    }
    CHECK(now_ms() - t0 < T(3000)); /* abandoned, not timed out */
    CHECK(ev.flags & WSC_CLOSE_LOCAL);
    CHECK_STATUS(wsc_client_poll(c, &ev, 0), WSC_ERR_NOT_CONNECTED);
    CHECK_EQ(wsc_client_state(c), WSC_STATE_CLOSED);
    wsc_client_free(c);
    close(lfd);
}

TEST(free_while_connecting_is_bounded) {
    int port;
    int lfd = listen_never_accept(&port);
    char url[64];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/", port);
    wsc_client *c = NULL;
    CHECK_OK(wsc_client_new(url, NULL, &c));
    CHECK_OK(wsc_client_connect(c));
    CHECK_OK(wsc_client_send_text(c, "never sent", 10));
    sleep_ms(50);
    double t0 = now_ms();
    wsc_client_free(c);
    CHECK(now_ms() - t0 < T(3000)); /* never waits for the server */
    close(lfd);
}

TEST(silent_server_close_timeout) {
    wsc_config *cfg = wsc_config_new();
    CHECK_OK(wsc_config_set_close_timeout_ms(cfg, 300));
    wsc_client *c = open_poll("/silent", cfg, NULL);
    wsc_config_free(cfg);
    double t0 = now_ms();
    CHECK_OK(wsc_client_close(c, 1000, NULL));
    wsc_event ev;
    poll_expect(c, WSC_EVENT_ERROR, &ev, T(10000));
    CHECK_STATUS(ev.status, WSC_ERR_TIMEOUT);
    poll_expect(c, WSC_EVENT_CLOSE, &ev, T(10000));
    double took = now_ms() - t0;
    CHECK_EQ(ev.close_code, 1006);
    CHECK(ev.flags & WSC_CLOSE_ABNORMAL);
    CHECK_STATUS(ev.status, WSC_ERR_TIMEOUT);
    CHECK(took >= 250);
    CHECK(took < T(5000));
    CHECK_STATUS(wsc_client_poll(c, &ev, 0), WSC_ERR_NOT_CONNECTED);
    wsc_client_free(c);
}

TEST(silent_server_pong_timeout) {
    wsc_config *cfg = wsc_config_new();
    CHECK_OK(wsc_config_set_ping_interval_ms(cfg, 100));
    CHECK_OK(wsc_config_set_pong_timeout_ms(cfg, 300));
    wsc_client *c = open_poll("/silent", cfg, NULL);
    wsc_config_free(cfg);
    double t0 = now_ms();
    wsc_event ev;
    poll_expect(c, WSC_EVENT_ERROR, &ev, T(10000));
    CHECK_STATUS(ev.status, WSC_ERR_TIMEOUT);
    poll_expect(c, WSC_EVENT_CLOSE, &ev, T(10000));
    double took = now_ms() - t0;
    CHECK_EQ(ev.close_code, 1006);
    CHECK(ev.flags & WSC_CLOSE_ABNORMAL);
    CHECK(took >= 250);
    CHECK(took < T(5000));
    CHECK_STATUS(wsc_client_poll(c, &ev, 0), WSC_ERR_NOT_CONNECTED);
    wsc_client_free(c);
}

TEST(heartbeat_keeps_live_connection_open) {
    /* With pings every 50 ms and a 500 ms pong timeout, an echoing server stays connected for
     * 1.5 s (without pongs the timeout would have ended it after ~550 ms). */
    wsc_config *cfg = wsc_config_new();
    CHECK_OK(wsc_config_set_ping_interval_ms(cfg, 50));
    CHECK_OK(wsc_config_set_pong_timeout_ms(cfg, T(500)));
    wsc_client *c = open_poll("/", cfg, NULL);
    wsc_config_free(cfg);
    double end = now_ms() + 1500;
    int pongs = 0;
    while (now_ms() < end) {
        wsc_event ev;
        wsc_status st = wsc_client_poll(c, &ev, 50);
        if (st == WSC_ERR_TIMEOUT) continue;
        CHECK_OK(st);
        if (ev.type == WSC_EVENT_PONG) pongs++;
        else FAIL("unexpected %s", describe(&ev));
    }
    CHECK_EQ(wsc_client_state(c), WSC_STATE_OPEN);
    harness_log("%d heartbeat pongs surfaced as events", pongs);
    CHECK_OK(wsc_client_close(c, 1000, NULL));
    test_event close_ev;
    drain_to_close(c, &close_ev, 0, T(10000));
    CHECK_EQ(close_ev.close_code, 1000);
    event_clear(&close_ev);
    wsc_client_free(c);
}

TEST(server_close_while_sending) {
    /* Queue up to 40 x 1 MiB while connecting to a server that closes at once. Once the client
     * has seen the server's close, sends fail with WSC_ERR_NOT_CONNECTED (possibly already the
     * first one: the server is fast). The CLOSE (4001, "bye") still arrives, last. Accepted
     * messages that did not reach the socket come back as SEND_FAILED: a contiguous tail of the
     * send ids, in order, with their payloads, before the CLOSE. (How many reach the socket
     * depends on timing, so only that structure is checked; handshake_timeout checks a
     * SEND_FAILED that must happen.) */
    const int n = 40;
    const size_t sz = 1 << 20;
    uint8_t *p = make_binary(sz, 77);
    char *url = test_url("/close/4001");
    wsc_client *c = NULL;
    CHECK_OK(wsc_client_new(url, NULL, &c));
    free(url);
    CHECK_OK(wsc_client_connect(c));
    uint64_t first_id = 0, last_id = 0;
    int accepted = 0;
    for (int i = 0; i < n; i++) {
        uint64_t id = 0;
        wsc_status st = wsc_client_send(c, WSC_EVENT_BINARY, p, sz, &id);
        if (st == WSC_ERR_NOT_CONNECTED) break; /* the server's close was seen */
        CHECK_OK(st);
        if (i == 0) first_id = id;
        CHECK_EQ(id, first_id + (uint64_t)i);
        last_id = id;
        accepted++;
    }
    /* once refused, sends stay refused */
    if (accepted < n) CHECK_STATUS(wsc_client_send_binary(c, p, 10), WSC_ERR_NOT_CONNECTED);
    wsc_event ev;
    poll_expect(c, WSC_EVENT_OPEN, &ev, T(10000));
    uint64_t expect_next = 0;
    int failed = 0;
    for (;;) {
        poll_next(c, &ev, T(20000));
        if (ev.type == WSC_EVENT_CLOSE) break;
        if (ev.type != WSC_EVENT_SEND_FAILED) FAIL("unexpected %s", describe(&ev));
        CHECK_EQ(ev.flags, WSC_EVENT_BINARY);
        CHECK(ev.status != WSC_OK);
        CHECK(ev.id >= first_id && ev.id <= last_id);
        if (expect_next) CHECK_EQ(ev.id, expect_next);
        expect_next = ev.id + 1;
        CHECK_MEM_EQ(ev.data, ev.len, p, sz);
        failed++;
    }
    CHECK_EQ(ev.close_code, 4001);
    CHECK_MEM_EQ(ev.data, ev.len, "bye", 3);
    CHECK(ev.flags & WSC_CLOSE_REMOTE);
    harness_log("%d of %d accepted messages reported as SEND_FAILED", failed, accepted);
    if (failed) CHECK_EQ(expect_next, last_id + 1); /* the failed ones are the last ones */
    CHECK_STATUS(wsc_client_send_binary(c, p, 10), WSC_ERR_NOT_CONNECTED);
    CHECK_STATUS(wsc_client_poll(c, &ev, 0), WSC_ERR_NOT_CONNECTED);
    CHECK_EQ(wsc_client_buffered_amount(c), 0);
    free(p);
    wsc_client_free(c);
}

TEST(free_with_unpolled_events) {
    /* Events queued but never taken are released by free. */
    wsc_client *c = open_poll("/", NULL, NULL);
    uint8_t *p = make_binary(64 * 1024, 3);
    for (int i = 0; i < 40; i++) CHECK_OK(wsc_client_send_binary(c, p, 64 * 1024));
    free(p);
    int fd = wsc_client_event_fd(c);
    CHECK(fd_readable(fd, T(10000)));
    sleep_ms(200);
    wsc_event ev;
    poll_expect(c, WSC_EVENT_BINARY, &ev, T(10000)); /* and one taken whose data free releases */
    wsc_client_free(c);
}

typedef struct {
    pthread_mutex_t mu;
    int lines, request, frames, secret, bad_len;
} log_sink;

static void log_cb(void *user_data, wsc_log_level level, const char *msg, size_t len) {
    log_sink *s = user_data;
    pthread_mutex_lock(&s->mu);
    s->lines++;
    if (strlen(msg) != len || level < WSC_LOG_ERROR || level > WSC_LOG_TRACE) s->bad_len = 1;
    if (strstr(msg, "handshake: request")) s->request = 1;
    if (strncmp(msg, "frame ", 6) == 0) s->frames++;
    if (strstr(msg, "tok-SECRET")) s->secret = 1;
    pthread_mutex_unlock(&s->mu);
}

TEST(log_callback_sees_the_handshake_and_frames_not_secrets) {
    static log_sink s = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 0, 0};
    CHECK_OK(wsc_set_log_callback(WSC_LOG_TRACE, log_cb, &s));
    wsc_config *cfg = wsc_config_new();
    CHECK_OK(wsc_config_add_header(cfg, "Authorization", "Bearer tok-SECRET"));
    wsc_client *c = open_poll("/", cfg, NULL);
    wsc_config_free(cfg);
    echo_one(c, WSC_EVENT_TEXT, "logged", 6);
    CHECK_OK(wsc_client_close(c, 1000, NULL));
    test_event close_ev;
    drain_to_close(c, &close_ev, 0, T(10000));
    event_clear(&close_ev);
    wsc_client_free(c);
    CHECK_OK(wsc_set_log_callback(WSC_LOG_OFF, NULL, NULL));
    pthread_mutex_lock(&s.mu);
    int lines = s.lines;
    CHECK(s.request);
    CHECK_GE(s.frames, 4); /* text and close, each way */
    CHECK(!s.secret);
    CHECK(!s.bad_len);
    pthread_mutex_unlock(&s.mu);
    /* Off: no more calls. */
    c = open_poll("/", NULL, NULL);
    wsc_client_free(c);
    CHECK_EQ(s.lines, lines);
}

TEST(poll_batch_pipelined_keeps_order_and_data) {
    /* Echoes taken many per call: every event's data is read only after the call returned all
     * of them (under ASan and valgrind, a released payload would show here). */
    wsc_client *c = open_poll("/", NULL, NULL);
    const int n = test_quick() ? 200 : 2000;
    for (int i = 0; i < n; i++) {
        char msg[32];
        int len = snprintf(msg, sizeof msg, "batch-%d", i);
        CHECK_OK(wsc_client_send_text(c, msg, (size_t)len));
    }
    sleep_ms(200); /* let echoes queue up, so that calls find more than one */
    wsc_event evs[64];
    int got = 0, calls = 0;
    double deadline = now_ms() + T(10000);
    while (got < n) {
        CHECK(now_ms() < deadline);
        size_t count = 99;
        wsc_status st = wsc_client_poll_batch(c, evs, 64, &count, T(1000));
        if (st == WSC_ERR_TIMEOUT) {
            CHECK_EQ(count, 0);
            continue;
        }
        CHECK_OK(st);
        CHECK(count >= 1 && count <= 64);
        calls++;
        for (size_t k = 0; k < count; k++) {
            char msg[32];
            int len = snprintf(msg, sizeof msg, "batch-%d", got);
            CHECK_EQ(evs[k].type, WSC_EVENT_TEXT);
            CHECK_MEM_EQ(evs[k].data, evs[k].len, msg, len);
            got++;
        }
    }
    CHECK(calls < n); /* at least one call took more than one event */
    size_t count = 5;
    CHECK_STATUS(wsc_client_poll_batch(c, evs, 0, &count, 0), WSC_ERR_INVALID_ARGUMENT);
    CHECK_EQ(count, 0);
    CHECK_STATUS(wsc_client_poll_batch(c, NULL, 4, &count, 0), WSC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(wsc_client_poll_batch(c, evs, 4, NULL, 0), WSC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(wsc_client_poll_batch(c, evs, 4, &count, 0), WSC_ERR_TIMEOUT);
    CHECK_OK(wsc_client_close(c, 1000, NULL));
    test_event close_ev;
    drain_to_close(c, &close_ev, 0, T(10000));
    event_clear(&close_ev);
    CHECK_STATUS(wsc_client_poll_batch(c, evs, 4, &count, 0), WSC_ERR_NOT_CONNECTED);
    CHECK_EQ(count, 0);
    wsc_client_free(c);
}
