/* Tests of the API surface that need no server: strings, versions, NULL arguments, bad URLs,
 * config setters, and the calls refused before connect. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

TEST(version_matches_header) {
    const char *v = wsc_version();
    CHECK(v != NULL);
    char want[64];
    snprintf(want, sizeof want, "%d.%d.%d", WSC_VERSION_MAJOR, WSC_VERSION_MINOR, WSC_VERSION_PATCH);
    CHECK_STR_EQ(v, want);
    CHECK(wsc_version() == v); /* static */
}

TEST(header_defines_close_flags) {
#ifdef WSC_TEST_MISSING_CLOSE_FLAGS
    FAIL("include/wsclient.h does not define WSC_CLOSE_LOCAL / WSC_CLOSE_REMOTE / WSC_CLOSE_ABNORMAL, "
         "which its documentation of WSC_EVENT_CLOSE and wsc_event.flags names");
#else
    CHECK_EQ(WSC_CLOSE_LOCAL, 1);
    CHECK_EQ(WSC_CLOSE_REMOTE, 2);
    CHECK_EQ(WSC_CLOSE_ABNORMAL, 4);
#endif
}

/* The public header should only define names in the wsc_/WSC_ namespace (plus its include
 * guard): short unprefixed macros such as STATE_IDLE or CLOSE_LOCAL collide with user code. */
TEST(header_has_no_unprefixed_macros) {
    const char *leaked[16];
    int n = 0;
#ifdef CLOSE_LOCAL
    leaked[n++] = "CLOSE_LOCAL";
#endif
#ifdef CLOSE_REMOTE
    leaked[n++] = "CLOSE_REMOTE";
#endif
#ifdef CLOSE_ABNORMAL
    leaked[n++] = "CLOSE_ABNORMAL";
#endif
#ifdef STATE_IDLE
    leaked[n++] = "STATE_IDLE";
#endif
#ifdef STATE_CONNECTING
    leaked[n++] = "STATE_CONNECTING";
#endif
#ifdef STATE_OPEN
    leaked[n++] = "STATE_OPEN";
#endif
#ifdef STATE_CLOSING
    leaked[n++] = "STATE_CLOSING";
#endif
#ifdef STATE_CLOSED
    leaked[n++] = "STATE_CLOSED";
#endif
#ifdef DEFAULT_MAX_MESSAGE
    leaked[n++] = "DEFAULT_MAX_MESSAGE";
#endif
    if (n > 0) {
        char list[256] = "";
        for (int i = 0; i < n; i++) {
            strcat(list, i ? ", " : "");
            strcat(list, leaked[i]);
        }
        FAIL("include/wsclient.h defines unprefixed macros: %s", list);
    }
}

TEST(status_str_names_every_code) {
    static const char *const names[] = {
        "WSC_OK", "WSC_ERR_INVALID_ARGUMENT", "WSC_ERR_INVALID_URL", "WSC_ERR_CONNECT",
        "WSC_ERR_TIMEOUT", "WSC_ERR_TLS", "WSC_ERR_HANDSHAKE", "WSC_ERR_PROTOCOL",
        "WSC_ERR_MESSAGE_TOO_LARGE", "WSC_ERR_INVALID_UTF8", "WSC_ERR_NOT_CONNECTED",
        "WSC_ERR_QUEUE_FULL", "WSC_ERR_IO", "WSC_ERR_INTERNAL", "WSC_ERR_INVALID_STATE",
        "WSC_ERR_PROXY", "WSC_ERR_NOT_FOUND",
    };
    CHECK_EQ(sizeof names / sizeof names[0], WSC_ERR_NOT_FOUND + 1);
    for (int i = 0; i <= WSC_ERR_NOT_FOUND; i++) {
        const char *s = wsc_status_str(i);
        CHECK(s != NULL);
        CHECK_STR_EQ(s, names[i]);
    }
    const int unknown[] = {-1, 99, 1000, -2147483647 - 1, 2147483647};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        const char *s = wsc_status_str(unknown[i]);
        CHECK(s != NULL);
        CHECK_STR_EQ(s, "WSC_ERR_UNKNOWN");
    }
}

static void *last_error_in_thread(void *arg) {
    (void)arg;
    /* A fresh thread has no failure yet: "" (never NULL). */
    const char *e = wsc_last_error();
    if (e == NULL || strcmp(e, "") != 0) return (void *)"fresh thread: wsc_last_error() is not \"\"";
    wsc_client *c = NULL;
    if (wsc_client_new("http://wrong-scheme.test/", NULL, &c) != WSC_ERR_INVALID_URL) return (void *)"client_new did not fail";
    e = wsc_last_error();
    if (e == NULL || strlen(e) == 0) return (void *)"no detail after a failure in a thread";
    if (strstr(e, "wrong-scheme") == NULL && strstr(e, "http") == NULL) return (void *)"detail does not mention the URL";
    return NULL;
}

TEST(last_error_is_thread_local_and_never_null) {
    const char *e = wsc_last_error();
    CHECK(e != NULL);
    CHECK_STR_EQ(e, ""); /* fresh process (each test runs in its own child) */

    CHECK_STATUS(wsc_config_set_connect_timeout_ms(NULL, 5), WSC_ERR_INVALID_ARGUMENT);
    e = wsc_last_error();
    CHECK(e != NULL);
    CHECK(strlen(e) > 0);
    char saved[512];
    snprintf(saved, sizeof saved, "%s", e);

    /* A successful call leaves it unchanged. */
    wsc_config *cfg = wsc_config_new();
    CHECK(cfg != NULL);
    CHECK_OK(wsc_config_set_connect_timeout_ms(cfg, 5));
    CHECK_STR_EQ(wsc_last_error(), saved);
    wsc_config_free(cfg);

    /* Another thread's failure does not touch this thread's detail. */
    pthread_t t;
    void *res = NULL;
    CHECK_EQ(pthread_create(&t, NULL, last_error_in_thread, NULL), 0);
    CHECK_EQ(pthread_join(t, &res), 0);
    if (res) FAIL("%s", (const char *)res);
    CHECK_STR_EQ(wsc_last_error(), saved);
}

/* A NULL argument fails with WSC_ERR_INVALID_ARGUMENT and leaves a detail. */
#define CHECK_NULL_ARG(expr)                                                                      \
    do {                                                                                          \
        CHECK_STATUS(expr, WSC_ERR_INVALID_ARGUMENT);                                             \
        CHECK(strlen(wsc_last_error()) > 0);                                                      \
    } while (0)

static void noop_cb(void *ud, const wsc_event *ev) {
    (void)ud;
    (void)ev;
}

TEST(null_arguments_are_refused) {
    wsc_client *sentinel = (wsc_client *)(uintptr_t)0x1234;
    wsc_client *c = sentinel;
    CHECK_NULL_ARG(wsc_client_new(NULL, NULL, &c));
    CHECK(c == sentinel); /* *out untouched on failure */
    CHECK_NULL_ARG(wsc_client_new("ws://127.0.0.1:9/", NULL, NULL));

    c = NULL;
    CHECK_OK(wsc_client_new("ws://127.0.0.1:9/", NULL, &c));
    CHECK(c != NULL);

    CHECK_NULL_ARG(wsc_client_set_callback(NULL, noop_cb, NULL));
    CHECK_NULL_ARG(wsc_client_set_callback(c, NULL, NULL));
    CHECK_NULL_ARG(wsc_client_connect(NULL));

    uint8_t b = 'x';
    uint64_t id = 77;
    CHECK_NULL_ARG(wsc_client_send_text(NULL, "x", 1));
    CHECK_NULL_ARG(wsc_client_send_binary(NULL, &b, 1));
    CHECK_NULL_ARG(wsc_client_send_ping(NULL, &b, 1));
    CHECK_NULL_ARG(wsc_client_send(NULL, WSC_EVENT_TEXT, &b, 1, &id));
    CHECK_EQ(id, 77);
    /* NULL data with a non-zero length */
    CHECK_NULL_ARG(wsc_client_send_text(c, NULL, 3));
    CHECK_NULL_ARG(wsc_client_send_binary(c, NULL, 3));
    CHECK_NULL_ARG(wsc_client_send_ping(c, NULL, 3));
    CHECK_NULL_ARG(wsc_client_send(c, WSC_EVENT_BINARY, NULL, 3, NULL));
    /* a type that cannot be sent */
    CHECK_NULL_ARG(wsc_client_send(c, WSC_EVENT_CLOSE, &b, 1, NULL));
    CHECK_NULL_ARG(wsc_client_send(c, 12345, &b, 1, NULL));

    CHECK_NULL_ARG(wsc_client_close(NULL, 1000, NULL));
    CHECK_NULL_ARG(wsc_client_close(NULL, 1000, "reason"));

    wsc_event ev;
    memset(&ev, 0xAB, sizeof ev);
    wsc_event before = ev;
    CHECK_NULL_ARG(wsc_client_poll(NULL, &ev, 0));
    CHECK_NULL_ARG(wsc_client_poll(c, NULL, 0));
    CHECK(memcmp(&ev, &before, sizeof ev) == 0); /* *out written only on success */
    size_t count = 3;
    CHECK_NULL_ARG(wsc_client_poll_batch(NULL, &ev, 1, &count, 0));
    CHECK_EQ(count, 0);
    CHECK_NULL_ARG(wsc_client_poll_batch(c, NULL, 1, &count, 0));
    CHECK_NULL_ARG(wsc_client_poll_batch(c, &ev, 1, NULL, 0));
    CHECK(memcmp(&ev, &before, sizeof ev) == 0);

    CHECK_EQ(wsc_client_event_fd(NULL), -1);
    CHECK_EQ(wsc_client_state(NULL), WSC_STATE_CLOSED);
    CHECK_EQ(wsc_client_buffered_amount(NULL), 0);

    /* config functions */
    CHECK_NULL_ARG(wsc_config_add_header(NULL, "X-A", "b"));
    CHECK_NULL_ARG(wsc_config_add_subprotocol(NULL, "chat"));
    CHECK_NULL_ARG(wsc_config_set_origin(NULL, "http://o.test"));
    CHECK_NULL_ARG(wsc_config_set_connect_timeout_ms(NULL, 100));
    CHECK_NULL_ARG(wsc_config_set_ping_interval_ms(NULL, 100));
    CHECK_NULL_ARG(wsc_config_set_pong_timeout_ms(NULL, 100));
    CHECK_NULL_ARG(wsc_config_set_close_timeout_ms(NULL, 100));
    CHECK_NULL_ARG(wsc_config_set_max_message_size(NULL, 100));
    CHECK_NULL_ARG(wsc_config_set_max_frame_size(NULL, 100));
    CHECK_NULL_ARG(wsc_config_set_send_queue_limit(NULL, 100));
    CHECK_NULL_ARG(wsc_config_set_recv_queue_limit(NULL, 100));
    CHECK_NULL_ARG(wsc_config_set_read_buffer_size(NULL, 4096));
    CHECK_NULL_ARG(wsc_config_set_write_buffer_size(NULL, 4096));
    CHECK_NULL_ARG(wsc_config_set_ca_file(NULL, "/nonexistent.pem"));
    CHECK_NULL_ARG(wsc_config_set_tls_verify(NULL, true));
    CHECK_NULL_ARG(wsc_config_set_deflate(NULL, true));
    CHECK_NULL_ARG(wsc_config_add_deflate_offer(NULL, ""));

    wsc_config *cfg = wsc_config_new();
    CHECK(cfg != NULL);
    CHECK_NULL_ARG(wsc_config_add_header(cfg, NULL, "b"));
    CHECK_NULL_ARG(wsc_config_add_header(cfg, "X-A", NULL));
    CHECK_NULL_ARG(wsc_config_add_subprotocol(cfg, NULL));
    CHECK_NULL_ARG(wsc_config_set_origin(cfg, NULL));
    CHECK_NULL_ARG(wsc_config_set_ca_file(cfg, NULL));
    CHECK_NULL_ARG(wsc_config_add_deflate_offer(cfg, NULL));
    wsc_config_free(cfg);

    /* The free functions accept NULL. */
    wsc_client_free(NULL);
    wsc_config_free(NULL);

    /* The client is still usable after all that: it was never connected. */
    CHECK_EQ(wsc_client_state(c), WSC_STATE_IDLE);
    wsc_client_free(c);
}

TEST(bad_urls_are_refused) {
    static const char *const bad[] = {
        "",
        "not a url",
        "http://127.0.0.1:80/",
        "https://example.test/",
        "ftp://example.test/",
        "ws://",
        "wss://",
        "ws://:80/",
        "ws://example.test:0/",
        "ws://example.test:65536/",
        "ws://example.test:99999/",
        "ws://example.test:-1/",
        "ws://example.test:port/",
        "ws://example.test/#fragment",
        "ws://us%3Aer:pass@example.test/", /* user:pass@ is accepted, a ':' in the user is not */
        "ws://exa mple.test/",
        "ws://[::1/",
        "//example.test/",
        "example.test:80",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        wsc_client *sentinel = (wsc_client *)(uintptr_t)0x4321;
        wsc_client *c = sentinel;
        wsc_status st = wsc_client_new(bad[i], NULL, &c);
        if (st != WSC_ERR_INVALID_URL)
            FAIL("wsc_client_new(\"%s\") returned %s, want WSC_ERR_INVALID_URL", bad[i], wsc_status_str(st));
        CHECK(c == sentinel);
        CHECK(strlen(wsc_last_error()) > 0);
    }
    /* Invalid UTF-8 in the URL string is an invalid argument. */
    wsc_client *c = NULL;
    CHECK_STATUS(wsc_client_new("ws://ex\xff\xfe.test/", NULL, &c), WSC_ERR_INVALID_ARGUMENT);
    CHECK(c == NULL);

    /* And good ones are accepted (the network is not touched before connect). */
    static const char *const good[] = {
        "ws://127.0.0.1:1/",    "ws://example.test",          "wss://example.test/path?q=1",
        "ws://[::1]:65535/x",   "WS://EXAMPLE.TEST:8080/",    "wss://example.test:443",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        c = NULL;
        wsc_status st = wsc_client_new(good[i], NULL, &c);
        if (st != WSC_OK) FAIL("wsc_client_new(\"%s\") returned %s, want WSC_OK", good[i], wsc_status_str(st));
        CHECK(c != NULL);
        CHECK_EQ(wsc_client_state(c), WSC_STATE_IDLE);
        wsc_client_free(c);
    }
}

TEST(config_setters_validate) {
    wsc_config *cfg = wsc_config_new();
    CHECK(cfg != NULL);
    /* zero is refused where documented, accepted for the ping interval */
    CHECK_STATUS(wsc_config_set_connect_timeout_ms(cfg, 0), WSC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(wsc_config_set_pong_timeout_ms(cfg, 0), WSC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(wsc_config_set_close_timeout_ms(cfg, 0), WSC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(wsc_config_set_max_message_size(cfg, 0), WSC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(wsc_config_set_max_frame_size(cfg, 0), WSC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(wsc_config_set_send_queue_limit(cfg, 0), WSC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(wsc_config_set_recv_queue_limit(cfg, 0), WSC_ERR_INVALID_ARGUMENT);
    CHECK_OK(wsc_config_set_ping_interval_ms(cfg, 0));
    CHECK_OK(wsc_config_set_ping_interval_ms(cfg, 15000));
    CHECK_OK(wsc_config_set_connect_timeout_ms(cfg, 1));
    CHECK_OK(wsc_config_set_pong_timeout_ms(cfg, 2000));
    CHECK_OK(wsc_config_set_close_timeout_ms(cfg, 2000));
    CHECK_OK(wsc_config_set_max_message_size(cfg, 1 << 20));
    CHECK_OK(wsc_config_set_max_frame_size(cfg, 1 << 16));
    CHECK_OK(wsc_config_set_send_queue_limit(cfg, 1 << 20));
    CHECK_OK(wsc_config_set_recv_queue_limit(cfg, 1 << 20));
    /* buffer sizes: 256 B to 16 MiB */
    CHECK_STATUS(wsc_config_set_read_buffer_size(cfg, 255), WSC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(wsc_config_set_read_buffer_size(cfg, (16 << 20) + 1), WSC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(wsc_config_set_write_buffer_size(cfg, 0), WSC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(wsc_config_set_write_buffer_size(cfg, SIZE_MAX), WSC_ERR_INVALID_ARGUMENT);
    CHECK_OK(wsc_config_set_read_buffer_size(cfg, 256));
    CHECK_OK(wsc_config_set_write_buffer_size(cfg, 16 << 20));
    CHECK_OK(wsc_config_set_tls_verify(cfg, false));
    CHECK_OK(wsc_config_set_tls_verify(cfg, true));

    /* headers */
    CHECK_OK(wsc_config_add_header(cfg, "Authorization", "Bearer abc"));
    CHECK_OK(wsc_config_add_header(cfg, "X-Repeat", "1"));
    CHECK_OK(wsc_config_add_header(cfg, "X-Repeat", "2"));
    CHECK_OK(wsc_config_add_header(cfg, "X-Empty", ""));
    static const char *const reserved[] = {
        "Host", "host", "Upgrade", "Connection", "Sec-WebSocket-Key", "sec-websocket-version",
        "Sec-WebSocket-Accept", "Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions",
        "Content-Length", "Transfer-Encoding",
    };
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++) {
        wsc_status st = wsc_config_add_header(cfg, reserved[i], "x");
        if (st != WSC_ERR_INVALID_ARGUMENT) FAIL("reserved header %s accepted: %s", reserved[i], wsc_status_str(st));
    }
    CHECK_STATUS(wsc_config_add_header(cfg, "", "x"), WSC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(wsc_config_add_header(cfg, "Bad Name", "x"), WSC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(wsc_config_add_header(cfg, "Bad:Name", "x"), WSC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(wsc_config_add_header(cfg, "X-Inject", "a\r\nHost: evil"), WSC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(wsc_config_add_header(cfg, "X-Inject", "a\nb"), WSC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(wsc_config_add_header(cfg, "X-Inject", "a\rb"), WSC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(wsc_config_add_header(cfg, "X-Utf8", "\xff"), WSC_ERR_INVALID_ARGUMENT);

    /* subprotocols and origin */
    CHECK_OK(wsc_config_add_subprotocol(cfg, "chat.v2"));
    CHECK_STATUS(wsc_config_add_subprotocol(cfg, ""), WSC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(wsc_config_add_subprotocol(cfg, "a b"), WSC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(wsc_config_add_subprotocol(cfg, "a,b"), WSC_ERR_INVALID_ARGUMENT);
    CHECK_OK(wsc_config_set_origin(cfg, "https://origin.test"));
    CHECK_STATUS(wsc_config_set_origin(cfg, "https://o.test\r\nX: y"), WSC_ERR_INVALID_ARGUMENT);

    /* permessage-deflate offers */
    CHECK_OK(wsc_config_set_deflate(cfg, false));
    CHECK_OK(wsc_config_set_deflate(cfg, true));
    CHECK_OK(wsc_config_add_deflate_offer(cfg, ""));
    CHECK_OK(wsc_config_add_deflate_offer(cfg, "client_no_context_takeover; client_max_window_bits"));
    CHECK_OK(wsc_config_add_deflate_offer(cfg, "server_max_window_bits=10; server_no_context_takeover"));
    CHECK_OK(wsc_config_add_deflate_offer(cfg, "client_max_window_bits=15"));
    static const char *const bad_offers[] = {
        "bogus", "client_max_window_bits=16", "client_max_window_bits=7", "server_max_window_bits",
        "server_max_window_bits=99", "client_no_context_takeover; client_no_context_takeover",
        "client_no_context_takeover=1", "x\r\ny",
    };
    for (size_t i = 0; i < sizeof bad_offers / sizeof bad_offers[0]; i++) {
        wsc_status st = wsc_config_add_deflate_offer(cfg, bad_offers[i]);
        if (st != WSC_ERR_INVALID_ARGUMENT) FAIL("deflate offer \"%s\" gave %s, want WSC_ERR_INVALID_ARGUMENT", bad_offers[i], wsc_status_str(st));
    }

    /* CA files: an unreadable or invalid file gives WSC_ERR_TLS */
    CHECK_STATUS(wsc_config_set_ca_file(cfg, "/nonexistent/dir/ca.pem"), WSC_ERR_TLS);
    CHECK(strlen(wsc_last_error()) > 0);
    char path[] = "/tmp/wsc-test-ca-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    const char junk[] = "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n";
    CHECK_EQ(write(fd, junk, sizeof junk - 1), (long long)(sizeof junk - 1));
    close(fd);
    wsc_status st = wsc_config_set_ca_file(cfg, path);
    unlink(path);
    CHECK_STATUS(st, WSC_ERR_TLS);

    /* A config can be reused for several clients and freed while they live. */
    wsc_client *a = NULL, *b = NULL;
    CHECK_OK(wsc_client_new("ws://127.0.0.1:1/", cfg, &a));
    CHECK_OK(wsc_client_new("ws://127.0.0.1:2/", cfg, &b));
    wsc_config_free(cfg);
    CHECK_EQ(wsc_client_state(a), WSC_STATE_IDLE);
    wsc_client_free(a);
    wsc_client_free(b);
}

TEST(calls_before_connect) {
    wsc_client *c = NULL;
    CHECK_OK(wsc_client_new("ws://127.0.0.1:1/", NULL, &c));
    CHECK_EQ(wsc_client_state(c), WSC_STATE_IDLE);
    CHECK_EQ(wsc_client_buffered_amount(c), 0);
    CHECK(wsc_client_event_fd(c) >= 0); /* poll mode on Linux */

    uint8_t b = 1;
    CHECK_STATUS(wsc_client_send_text(c, "hi", 2), WSC_ERR_NOT_CONNECTED);
    CHECK_STATUS(wsc_client_send_binary(c, &b, 1), WSC_ERR_NOT_CONNECTED);
    CHECK_STATUS(wsc_client_send_ping(c, &b, 1), WSC_ERR_NOT_CONNECTED);
    CHECK_STATUS(wsc_client_close(c, 1000, NULL), WSC_ERR_NOT_CONNECTED);
    wsc_event ev;
    CHECK_STATUS(wsc_client_poll(c, &ev, 0), WSC_ERR_NOT_CONNECTED);
    CHECK_STATUS(wsc_client_poll(c, &ev, 10), WSC_ERR_NOT_CONNECTED);
    CHECK_EQ(wsc_client_buffered_amount(c), 0);
    CHECK_EQ(wsc_client_state(c), WSC_STATE_IDLE);

    /* Close arguments are checked first. */
    CHECK_STATUS(wsc_client_close(c, 999, NULL), WSC_ERR_INVALID_ARGUMENT);
    wsc_client_free(c);

    /* Switching to callback mode: no event fd, poll refused after connect. */
    c = NULL;
    CHECK_OK(wsc_client_new("ws://127.0.0.1:1/", NULL, &c));
    CHECK_OK(wsc_client_set_callback(c, noop_cb, NULL));
    CHECK_OK(wsc_client_set_callback(c, noop_cb, NULL)); /* may be replaced before connect */
    CHECK_EQ(wsc_client_event_fd(c), -1);
    wsc_client_free(c); /* freed without connecting, with a callback set */
}

TEST(free_unconnected_clients) {
    for (int i = 0; i < 50; i++) {
        wsc_config *cfg = wsc_config_new();
        CHECK(cfg != NULL);
        CHECK_OK(wsc_config_add_header(cfg, "X-I", "v"));
        CHECK_OK(wsc_config_add_subprotocol(cfg, "p"));
        wsc_client *c = NULL;
        CHECK_OK(wsc_client_new("wss://example.test/path", cfg, &c));
        wsc_config_free(cfg);
        wsc_client_free(c);
    }
}

TEST(proxy_unix_and_log_setters_validate) {
    wsc_config *cfg = wsc_config_new();
    CHECK(cfg != NULL);
    CHECK_STATUS(wsc_config_set_proxy(cfg, "ftp://proxy.test:21"), WSC_ERR_INVALID_URL);
    CHECK_STATUS(wsc_config_set_proxy(cfg, "http://:8080"), WSC_ERR_INVALID_URL);
    CHECK_STATUS(wsc_config_set_proxy(cfg, "socks5://h:99999"), WSC_ERR_INVALID_URL);
    CHECK_STATUS(wsc_config_set_proxy(cfg, NULL), WSC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(wsc_config_set_proxy(NULL, "http://h:1"), WSC_ERR_INVALID_ARGUMENT);
    CHECK_OK(wsc_config_set_proxy(cfg, "socks5h://u:p%40ss@127.0.0.1:1080"));
    CHECK_OK(wsc_config_set_proxy(cfg, ""));
    CHECK_OK(wsc_config_set_proxy_from_env(cfg, true));
    CHECK_STATUS(wsc_config_set_proxy_from_env(NULL, true), WSC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(wsc_config_set_unix_socket(cfg, NULL), WSC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(wsc_config_set_unix_socket(NULL, "/tmp/x.sock"), WSC_ERR_INVALID_ARGUMENT);
    CHECK_OK(wsc_config_set_unix_socket(cfg, "/tmp/x.sock"));
    CHECK_OK(wsc_config_set_unix_socket(cfg, ""));
    CHECK_STATUS(wsc_set_log_callback(6, NULL, NULL), WSC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(wsc_set_log_callback(-1, NULL, NULL), WSC_ERR_INVALID_ARGUMENT);
    CHECK_OK(wsc_set_log_callback(WSC_LOG_TRACE, NULL, NULL)); /* NULL cb: off */
    CHECK_OK(wsc_set_log_callback(WSC_LOG_OFF, NULL, NULL));
    wsc_config_free(cfg);
}
