/* Tests against a scripted server side (rawws.c) for what the echo server cannot do on cue:
 * hold back the handshake answer, drop the TCP connection, send a close frame without a code,
 * send invalid UTF-8, and show exactly what the client put on the wire. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rawws.h"
#include "util.h"

enum raw_script {
    SCRIPT_HOLD_THEN_CLOSE, /* wait for `go`, answer 101 + close(4002, "raw bye"), count data */
    SCRIPT_DROP,            /* answer 101, then close the TCP connection without a close frame */
    SCRIPT_CLOSE_NO_CODE,   /* answer 101 + a close frame with an empty payload */
    SCRIPT_BAD_UTF8,        /* answer 101 + a text frame that is not UTF-8 */
    SCRIPT_RECORD,          /* answer 101, record the request and the first frame, echo close */
};

struct raw_server {
    int lfd;
    int port;
    enum raw_script script;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int go;
    /* results, read after join */
    char req[4096];
    int data_messages;   /* complete data messages received before the client's close frame */
    size_t data_bytes;
    int saw_close;       /* the client's close frame arrived */
    int close_code;      /* its code, -1 if it had none */
    int first_opcode;
    uint8_t *first_payload;
    size_t first_len;
    const char *error;   /* what went wrong on the server side, if anything */
};

static void wait_go(struct raw_server *s) {
    pthread_mutex_lock(&s->mu);
    while (!s->go) pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

static void raw_go(struct raw_server *s) {
    pthread_mutex_lock(&s->mu);
    s->go = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* Reads client frames until its close frame (or EOF), counting data messages. */
static void read_until_close(struct raw_server *s, int fd, int echo_close) {
    for (;;) {
        int op, fin;
        uint8_t *p = NULL;
        size_t n = 0;
        int r = raw_read_frame(fd, &op, &fin, &p, &n);
        if (r <= 0) {
            if (r < 0) s->error = "bad frame from the client";
            return;
        }
        if (s->first_opcode == 0) {
            s->first_opcode = op;
            s->first_payload = p;
            s->first_len = n;
            p = NULL;
        }
        if (op <= 2) {
            s->data_bytes += n;
            if (fin) s->data_messages++;
        } else if (op == 8) {
            s->saw_close = 1;
            const uint8_t *cp = p ? p : s->first_payload;
            size_t cn = p ? n : s->first_len;
            s->close_code = cn >= 2 ? (cp[0] << 8 | cp[1]) : -1;
            if (echo_close) {
                uint8_t f[16];
                uint8_t code[2] = {cn >= 2 ? cp[0] : 0x03, cn >= 2 ? cp[1] : 0xe8};
                size_t fl = raw_frame(f, 8, code, 2);
                (void)raw_write_all(fd, f, fl);
            }
            free(p);
            return;
        }
        free(p);
    }
}

static void *raw_server_main(void *arg) {
    struct raw_server *s = arg;
    int fd = raw_accept_request(s->lfd, s->req, sizeof s->req);
    if (fd < 0) {
        s->error = "accept or request failed";
        return NULL;
    }
    uint8_t frame[256];
    size_t fl = 0;
    switch (s->script) {
    case SCRIPT_HOLD_THEN_CLOSE: {
        wait_go(s);
        uint8_t payload[16] = {0x0f, 0xa2}; /* 4002 */
        memcpy(payload + 2, "raw bye", 7);
        fl = raw_frame(frame, 8, payload, 9);
        if (raw_send_101(fd, s->req, frame, fl) != 0) s->error = "send 101 failed";
        read_until_close(s, fd, 0);
        break;
    }
    case SCRIPT_DROP:
        if (raw_send_101(fd, s->req, NULL, 0) != 0) s->error = "send 101 failed";
        wait_go(s);
        shutdown(fd, SHUT_RDWR);
        break;
    case SCRIPT_CLOSE_NO_CODE:
        fl = raw_frame(frame, 8, NULL, 0);
        if (raw_send_101(fd, s->req, frame, fl) != 0) s->error = "send 101 failed";
        read_until_close(s, fd, 0);
        break;
    case SCRIPT_BAD_UTF8: {
        const uint8_t bad[] = {'o', 'k', 0xff, 0xfe, '!'};
        fl = raw_frame(frame, 1, bad, sizeof bad);
        if (raw_send_101(fd, s->req, frame, fl) != 0) s->error = "send 101 failed";
        read_until_close(s, fd, 1);
        break;
    }
    case SCRIPT_RECORD:
        if (raw_send_101(fd, s->req, NULL, 0) != 0) s->error = "send 101 failed";
        read_until_close(s, fd, 1);
        break;
    }
    close(fd);
    return NULL;
}

static void raw_start(struct raw_server *s, enum raw_script script) {
    memset(s, 0, sizeof *s);
    s->script = script;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->lfd = listen_never_accept(&s->port);
    CHECK_EQ(pthread_create(&s->thread, NULL, raw_server_main, s), 0);
}

static void raw_finish(struct raw_server *s) {
    raw_go(s);
    CHECK_EQ(pthread_join(s->thread, NULL), 0);
    close(s->lfd);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    if (s->error) FAIL("raw server: %s", s->error);
}

static wsc_client *raw_client(struct raw_server *s, const char *path, const wsc_config *cfg) {
    char url[128];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d%s", s->port, path);
    wsc_client *c = NULL;
    CHECK_OK(wsc_client_new(url, cfg, &c));
    return c;
}

TEST(raw_server_close_reports_every_unsent_message) {
    /* 40 x 1 MiB are queued before the handshake is answered; the answer comes with the
     * server's close frame. Every accepted message must either reach the server (counted there,
     * before the client's close frame) or come back as SEND_FAILED: none may vanish. */
    struct raw_server s;
    raw_start(&s, SCRIPT_HOLD_THEN_CLOSE);
    wsc_client *c = raw_client(&s, "/", NULL);
    CHECK_OK(wsc_client_connect(c));
    const int n = 40;
    const size_t sz = 1 << 20;
    uint8_t *p = make_binary(sz, 3);
    for (int i = 0; i < n; i++) CHECK_OK(wsc_client_send_binary(c, p, sz));
    raw_go(&s);
    wsc_event ev;
    poll_expect(c, WSC_EVENT_OPEN, &ev, T(10000));
    int failed = 0;
    for (;;) {
        poll_next(c, &ev, T(20000));
        if (ev.type == WSC_EVENT_CLOSE) break;
        if (ev.type != WSC_EVENT_SEND_FAILED) FAIL("unexpected %s", describe(&ev));
        CHECK_EQ(ev.flags, WSC_EVENT_BINARY);
        CHECK_MEM_EQ(ev.data, ev.len, p, sz); /* the payload as sent, unmasked */
        failed++;
    }
    CHECK_EQ(ev.close_code, 4002);
    CHECK_MEM_EQ(ev.data, ev.len, "raw bye", 7);
    CHECK(ev.flags & WSC_CLOSE_REMOTE);
    wsc_client_free(c);
    free(p);
    raw_finish(&s);
    CHECK(s.saw_close);
    CHECK_EQ(s.close_code, 4002); /* the client echoed the server's code */
    free(s.first_payload);
    harness_log("server received %d messages (%zu bytes), client reported %d as SEND_FAILED, of %d accepted",
                s.data_messages, s.data_bytes, failed, n);
    if (s.data_messages + failed != n)
        FAIL("%d accepted messages vanished: %d reached the server, %d were reported as SEND_FAILED",
             n - s.data_messages - failed, s.data_messages, failed);
}

TEST(raw_connection_dropped_gives_1006) {
    struct raw_server s;
    raw_start(&s, SCRIPT_DROP);
    wsc_client *c = raw_client(&s, "/", NULL);
    CHECK_OK(wsc_client_connect(c));
    wsc_event ev;
    poll_expect(c, WSC_EVENT_OPEN, &ev, T(10000));
    raw_go(&s);
    poll_expect(c, WSC_EVENT_ERROR, &ev, T(10000));
    CHECK(ev.status == WSC_ERR_IO || ev.status == WSC_ERR_PROTOCOL);
    poll_expect(c, WSC_EVENT_CLOSE, &ev, T(10000));
    CHECK_EQ(ev.close_code, 1006);
    CHECK(ev.flags & WSC_CLOSE_ABNORMAL);
    CHECK(ev.status != WSC_OK);
    CHECK_STATUS(wsc_client_poll(c, &ev, 0), WSC_ERR_NOT_CONNECTED);
    wsc_client_free(c);
    raw_finish(&s);
}

TEST(raw_close_without_code_gives_1005) {
    struct raw_server s;
    raw_start(&s, SCRIPT_CLOSE_NO_CODE);
    wsc_client *c = raw_client(&s, "/", NULL);
    CHECK_OK(wsc_client_connect(c));
    wsc_event ev;
    poll_expect(c, WSC_EVENT_OPEN, &ev, T(10000));
    poll_expect(c, WSC_EVENT_CLOSE, &ev, T(10000));
    CHECK_EQ(ev.close_code, 1005);
    CHECK_EQ(ev.len, 0);
    CHECK_STATUS(ev.status, WSC_OK);
    CHECK(ev.flags & WSC_CLOSE_REMOTE);
    CHECK(!(ev.flags & WSC_CLOSE_ABNORMAL));
    wsc_client_free(c);
    raw_finish(&s);
    CHECK(s.saw_close);
    free(s.first_payload);
}

TEST(raw_invalid_utf8_from_server_closes_1007) {
    struct raw_server s;
    raw_start(&s, SCRIPT_BAD_UTF8);
    wsc_client *c = raw_client(&s, "/", NULL);
    CHECK_OK(wsc_client_connect(c));
    wsc_event ev;
    poll_expect(c, WSC_EVENT_OPEN, &ev, T(10000));
    poll_expect(c, WSC_EVENT_ERROR, &ev, T(10000));
    CHECK_STATUS(ev.status, WSC_ERR_INVALID_UTF8);
    poll_expect(c, WSC_EVENT_CLOSE, &ev, T(10000));
    CHECK_EQ(ev.close_code, 1007); /* the code the client sent because of the server's fault */
    CHECK_STATUS(ev.status, WSC_ERR_INVALID_UTF8);
    CHECK(ev.flags & WSC_CLOSE_LOCAL);
    wsc_client_free(c);
    raw_finish(&s);
    CHECK(s.saw_close);
    CHECK_EQ(s.close_code, 1007); /* on the wire */
    CHECK_EQ(s.data_messages, 0);
    free(s.first_payload);
}

TEST(raw_handshake_request_and_masked_frames) {
    struct raw_server s;
    raw_start(&s, SCRIPT_RECORD);
    wsc_config *cfg = wsc_config_new();
    CHECK_OK(wsc_config_add_header(cfg, "Authorization", "Bearer t0ken"));
    CHECK_OK(wsc_config_add_header(cfg, "X-Custom", "v1"));
    CHECK_OK(wsc_config_add_subprotocol(cfg, "p1"));
    CHECK_OK(wsc_config_add_subprotocol(cfg, "p2"));
    CHECK_OK(wsc_config_set_origin(cfg, "https://origin.test"));
    wsc_client *c = raw_client(&s, "/chat/room?x=1&y=2", cfg);
    wsc_config_free(cfg);
    CHECK_OK(wsc_client_connect(c));
    wsc_event ev;
    /* the raw server does not select a subprotocol: none is reported */
    poll_expect(c, WSC_EVENT_OPEN, &ev, T(10000));
    CHECK_EQ(ev.len, 0);
    CHECK_OK(wsc_client_send_text(c, "hello raw", 9));
    CHECK_OK(wsc_client_close(c, 1000, NULL));
    test_event close_ev;
    drain_to_close(c, &close_ev, 0, T(10000));
    CHECK_EQ(close_ev.close_code, 1000);
    event_clear(&close_ev);
    wsc_client_free(c);
    raw_finish(&s);

    harness_log("request line: %.*s", (int)strcspn(s.req, "\r"), s.req);
    CHECK(strncmp(s.req, "GET /chat/room?x=1&y=2 HTTP/1.1\r\n", 33) == 0);
    CHECK(strcasestr(s.req, "\r\nAuthorization: Bearer t0ken\r\n") != NULL);
    CHECK(strcasestr(s.req, "\r\nX-Custom: v1\r\n") != NULL);
    CHECK(strcasestr(s.req, "\r\nOrigin: https://origin.test\r\n") != NULL);
    CHECK(strcasestr(s.req, "\r\nSec-WebSocket-Version: 13\r\n") != NULL);
    CHECK(strcasestr(s.req, "\r\nSec-WebSocket-Protocol: p1, p2\r\n") != NULL ||
          (strcasestr(s.req, "\r\nSec-WebSocket-Protocol: p1\r\n") && strcasestr(s.req, "\r\nSec-WebSocket-Protocol: p2\r\n")));
    /* permessage-deflate is on by default, with the browsers' offer */
    CHECK(strcasestr(s.req, "\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n") != NULL);
    char host[64];
    snprintf(host, sizeof host, "\r\nHost: 127.0.0.1:%d\r\n", s.port);
    CHECK(strcasestr(s.req, host) != NULL);
    /* the first frame: the text, masked by the client (raw_read_frame refuses unmasked ones) */
    CHECK_EQ(s.first_opcode, 1);
    CHECK_MEM_EQ(s.first_payload, s.first_len, "hello raw", 9);
    CHECK(s.saw_close);
    CHECK_EQ(s.close_code, 1000);
    free(s.first_payload);
}

TEST(raw_free_while_open_sends_queued_then_1001) {
    /* wsc_client_free on an open client: what was queued goes out, then a 1001 close frame. */
    struct raw_server s;
    raw_start(&s, SCRIPT_RECORD);
    wsc_client *c = raw_client(&s, "/", NULL);
    CHECK_OK(wsc_client_connect(c));
    wsc_event ev;
    poll_expect(c, WSC_EVENT_OPEN, &ev, T(10000));
    CHECK_OK(wsc_client_send_text(c, "first", 5));
    CHECK_OK(wsc_client_send_text(c, "second", 6));
    CHECK_OK(wsc_client_send_binary(c, (const uint8_t *)"third", 5));
    double t0 = now_ms();
    wsc_client_free(c);
    CHECK(now_ms() - t0 < T(3000)); /* it does not wait for the server's answer */
    raw_finish(&s);
    CHECK_EQ(s.first_opcode, 1);
    CHECK_MEM_EQ(s.first_payload, s.first_len, "first", 5);
    CHECK_EQ(s.data_messages, 3);
    CHECK(s.saw_close);
    CHECK_EQ(s.close_code, 1001);
    free(s.first_payload);
}

TEST(raw_deflate_off_sends_no_extension_offer) {
    struct raw_server s;
    raw_start(&s, SCRIPT_RECORD);
    wsc_config *cfg = wsc_config_new();
    CHECK_OK(wsc_config_set_deflate(cfg, false));
    wsc_client *c = raw_client(&s, "/", cfg);
    wsc_config_free(cfg);
    CHECK_OK(wsc_client_connect(c));
    wsc_event ev;
    poll_expect(c, WSC_EVENT_OPEN, &ev, T(10000));
    CHECK_OK(wsc_client_send_binary(c, (const uint8_t *)"plain", 5));
    CHECK_OK(wsc_client_close(c, 1000, NULL));
    test_event close_ev;
    drain_to_close(c, &close_ev, 0, T(10000));
    event_clear(&close_ev);
    wsc_client_free(c);
    raw_finish(&s);
    CHECK(strcasestr(s.req, "Sec-WebSocket-Extensions") == NULL);
    CHECK_EQ(s.first_opcode, 2);
    CHECK_MEM_EQ(s.first_payload, s.first_len, "plain", 5);
    free(s.first_payload);
}

TEST(raw_deflate_custom_offers_in_order) {
    struct raw_server s;
    raw_start(&s, SCRIPT_RECORD);
    wsc_config *cfg = wsc_config_new();
    CHECK_OK(wsc_config_add_deflate_offer(cfg, "client_no_context_takeover; server_max_window_bits=10"));
    CHECK_OK(wsc_config_add_deflate_offer(cfg, ""));
    wsc_client *c = raw_client(&s, "/", cfg);
    wsc_config_free(cfg);
    CHECK_OK(wsc_client_connect(c));
    wsc_event ev;
    poll_expect(c, WSC_EVENT_OPEN, &ev, T(10000));
    CHECK_OK(wsc_client_close(c, 1000, NULL));
    test_event close_ev;
    drain_to_close(c, &close_ev, 0, T(10000));
    event_clear(&close_ev);
    wsc_client_free(c);
    raw_finish(&s);
    const char *ext = strcasestr(s.req, "\r\nSec-WebSocket-Extensions:");
    CHECK(ext != NULL);
    harness_log("offer: %.*s", (int)strcspn(ext + 2, "\r"), ext + 2);
    /* both offers, the first one first (one header with a comma list, or two headers) */
    const char *a = strstr(s.req, "permessage-deflate; client_no_context_takeover; server_max_window_bits=10");
    CHECK(a != NULL);
    const char *b = strstr(a + 1, "permessage-deflate");
    CHECK(b != NULL);
    free(s.first_payload);
}
