/*
 * interop_client: drives libwsclient (public C API, poll mode) against a third-party
 * WebSocket echo server (tests/interop/server_python.py or server_node.js).
 *
 *   interop_client BASE_URL LABEL deflate|none
 *
 * BASE_URL is e.g. ws://127.0.0.1:PORT (no path); LABEL names the server in the output;
 * the third argument says whether the server has permessage-deflate on (then it must be
 * negotiated with the default client config) or off (then it must not be).
 *
 * Each scenario runs on its own connection and prints one line:
 *   ok   LABEL: SCENARIO [detail]
 *   FAIL LABEL: SCENARIO: what went wrong; events: the events seen
 * and finally `interop: N passed, N failed` alone on a line. Exits 0 only if all passed.
 *
 * Build: cc -std=c11 -Wall -Wextra -Werror -Iinclude tests/interop/interop_client.c \
 *           -Ltarget/release -lwsclient -Wl,-rpath,$PWD/target/release
 */

#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wsclient.h"

/* The longest any single event may take to arrive (16 MiB through a Python deflate echo
 * takes a few seconds on a slow machine). */
#define EVENT_TIMEOUT_MS 30000

#define KiB ((size_t)1024)
#define MiB (1024 * KiB)

static const char *g_base;
static const char *g_label;
static bool g_expect_deflate;
static unsigned g_passed, g_failed;

/* ---- scenario bookkeeping ---------------------------------------------------------------- */

struct scen {
    char name[128];
    wsc_client *client;
    bool failed;
    bool closed; /* the final WSC_EVENT_CLOSE was taken */
    char why[1024];
    char detail[512]; /* printed after a pass */
    /* A compact trace of the events seen; runs of messages of one type are counted. */
    char trace[2048];
    size_t trace_len;
    bool trace_full;
    wsc_event_type run_type;
    size_t run_len;
    unsigned run_count;
};

static void fail(struct scen *s, const char *fmt, ...) {
    if (s->failed)
        return; /* keep the first cause */
    s->failed = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->why, sizeof s->why, fmt, ap);
    va_end(ap);
}

static void trace_append(struct scen *s, const char *fmt, ...) {
    if (s->trace_full)
        return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    size_t n = strlen(buf);
    if (s->trace_len + n + 8 >= sizeof s->trace) {
        memcpy(s->trace + s->trace_len, " ...", 5);
        s->trace_len += 4;
        s->trace_full = true;
        return;
    }
    if (s->trace_len > 0)
        s->trace[s->trace_len++] = ' ';
    memcpy(s->trace + s->trace_len, buf, n + 1);
    s->trace_len += n;
}

static const char *event_name(wsc_event_type t) {
    switch (t) {
    case WSC_EVENT_NONE: return "NONE";
    case WSC_EVENT_OPEN: return "OPEN";
    case WSC_EVENT_TEXT: return "TEXT";
    case WSC_EVENT_BINARY: return "BINARY";
    case WSC_EVENT_PING: return "PING";
    case WSC_EVENT_PONG: return "PONG";
    case WSC_EVENT_CLOSE: return "CLOSE";
    case WSC_EVENT_ERROR: return "ERROR";
    case WSC_EVENT_SEND_FAILED: return "SEND_FAILED";
    default: return "UNKNOWN";
    }
}

static void trace_flush_run(struct scen *s) {
    if (s->run_count > 1)
        trace_append(s, "(x%u)", s->run_count);
    s->run_count = 0;
}

/* Quotes at most 200 bytes of data, escaping what is not printable ASCII. */
static void quote(char *out, size_t cap, const uint8_t *data, size_t len) {
    size_t o = 0;
    out[o++] = '"';
    for (size_t i = 0; i < len && o + 8 < cap; i++) {
        if (i == 200) {
            o += (size_t)snprintf(out + o, cap - o, "...");
            break;
        }
        uint8_t c = data[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
    }
    out[o++] = '"';
    out[o] = 0;
}

static void trace_event(struct scen *s, const wsc_event *ev) {
    if ((ev->type == WSC_EVENT_TEXT || ev->type == WSC_EVENT_BINARY) && s->run_count > 0 &&
        s->run_type == ev->type && s->run_len == ev->len) {
        s->run_count++;
        return;
    }
    trace_flush_run(s);
    char q[900];
    quote(q, sizeof q, ev->data, ev->len);
    switch (ev->type) {
    case WSC_EVENT_TEXT:
    case WSC_EVENT_BINARY:
        trace_append(s, "%s[%zu B]", event_name(ev->type), ev->len);
        s->run_type = ev->type;
        s->run_len = ev->len;
        s->run_count = 1;
        break;
    case WSC_EVENT_OPEN:
    case WSC_EVENT_PING:
    case WSC_EVENT_PONG:
        trace_append(s, "%s(%s)", event_name(ev->type), q);
        break;
    case WSC_EVENT_CLOSE:
        trace_append(s, "CLOSE(code=%u reason=%s status=%s flags=0x%x)", (unsigned)ev->close_code, q,
                     wsc_status_str(ev->status), (unsigned)ev->flags);
        break;
    case WSC_EVENT_ERROR:
        trace_append(s, "ERROR(%s %s)", wsc_status_str(ev->status), q);
        break;
    case WSC_EVENT_SEND_FAILED:
        trace_append(s, "SEND_FAILED(id=%llu type=%s %zu B %s)", (unsigned long long)ev->id,
                     event_name((wsc_event_type)ev->flags), ev->len, wsc_status_str(ev->status));
        break;
    default:
        trace_append(s, "EVENT%d", (int)ev->type);
    }
}

static void begin(struct scen *s, const char *fmt, ...) {
    memset(s, 0, sizeof *s);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->name, sizeof s->name, fmt, ap);
    va_end(ap);
}

static void end(struct scen *s) {
    if (s->failed && s->client != NULL && !s->closed) {
        /* Show what else happened: the events up to the final CLOSE. */
        trace_flush_run(s);
        trace_append(s, "| after the failure:");
        wsc_event ev;
        for (int i = 0; i < 64 && !s->closed; i++) {
            if (wsc_client_poll(s->client, &ev, 3000) != WSC_OK) {
                trace_flush_run(s);
                trace_append(s, "(no further event within 3 s)");
                break;
            }
            trace_event(s, &ev);
            s->closed = ev.type == WSC_EVENT_CLOSE;
        }
    }
    if (s->client != NULL) {
        if (!s->failed && !s->closed)
            fail(s, "the scenario ended without the final CLOSE event");
        wsc_client_free(s->client);
        s->client = NULL;
    }
    trace_flush_run(s);
    if (s->failed) {
        g_failed++;
        printf("FAIL %s: %s: %s; events: %s\n", g_label, s->name, s->why,
               s->trace_len ? s->trace : "(none)");
    } else {
        g_passed++;
        printf("ok   %s: %s%s%s\n", g_label, s->name, s->detail[0] ? " " : "", s->detail);
    }
    fflush(stdout);
}

/* ---- events ------------------------------------------------------------------------------ */

/* Takes the next event; false (and the scenario failed) if none came or the connection is over. */
static bool next_event(struct scen *s, wsc_event *ev) {
    if (s->closed) {
        fail(s, "expected another event after the final CLOSE");
        return false;
    }
    wsc_status st = wsc_client_poll(s->client, ev, EVENT_TIMEOUT_MS);
    if (st != WSC_OK) {
        fail(s, "wsc_client_poll: %s%s%s", wsc_status_str(st),
             st == WSC_ERR_TIMEOUT ? " (no event within 30 s)" : ": ",
             st == WSC_ERR_TIMEOUT ? "" : wsc_last_error());
        return false;
    }
    trace_event(s, ev);
    if (ev->type == WSC_EVENT_CLOSE)
        s->closed = true;
    return true;
}

static void describe(char *out, size_t cap, const wsc_event *ev) {
    char q[900];
    quote(q, sizeof q, ev->data, ev->len);
    switch (ev->type) {
    case WSC_EVENT_CLOSE:
        snprintf(out, cap, "CLOSE code %u reason %s status %s flags 0x%x", (unsigned)ev->close_code,
                 q, wsc_status_str(ev->status), (unsigned)ev->flags);
        break;
    case WSC_EVENT_ERROR:
        snprintf(out, cap, "ERROR %s %s", wsc_status_str(ev->status), q);
        break;
    case WSC_EVENT_TEXT:
    case WSC_EVENT_BINARY:
        snprintf(out, cap, "%s of %zu B", event_name(ev->type), ev->len);
        break;
    case WSC_EVENT_SEND_FAILED:
        snprintf(out, cap, "SEND_FAILED id %llu (%s of %zu B) status %s", (unsigned long long)ev->id,
                 event_name((wsc_event_type)ev->flags), ev->len, wsc_status_str(ev->status));
        break;
    default:
        snprintf(out, cap, "%s %s", event_name(ev->type), q);
    }
}

/* Creates a client for BASE_URL + path (cfg NULL: defaults), connects, waits for OPEN. */
static bool open_conn(struct scen *s, const char *path, const wsc_config *cfg) {
    char url[512];
    snprintf(url, sizeof url, "%s%s", g_base, path);
    wsc_status st = wsc_client_new(url, cfg, &s->client);
    if (st != WSC_OK) {
        fail(s, "wsc_client_new(%s): %s: %s", url, wsc_status_str(st), wsc_last_error());
        s->client = NULL;
        return false;
    }
    st = wsc_client_connect(s->client);
    if (st != WSC_OK) {
        fail(s, "wsc_client_connect: %s: %s", wsc_status_str(st), wsc_last_error());
        return false;
    }
    wsc_event ev;
    if (!next_event(s, &ev))
        return false;
    if (ev.type != WSC_EVENT_OPEN) {
        char d[1100];
        describe(d, sizeof d, &ev);
        fail(s, "expected OPEN, got %s", d);
        return false;
    }
    return true;
}

static bool send_msg(struct scen *s, wsc_event_type type, const uint8_t *data, size_t len) {
    wsc_status st = wsc_client_send(s->client, type, data, len, NULL);
    if (st != WSC_OK) {
        fail(s, "wsc_client_send(%s, %zu B): %s: %s", event_name(type), len, wsc_status_str(st),
             wsc_last_error());
        return false;
    }
    return true;
}

/* Waits for the next message (PING/PONG are skipped) and checks its type and bytes. */
static bool expect_msg(struct scen *s, wsc_event_type type, const uint8_t *data, size_t len,
                       const char *what) {
    wsc_event ev;
    for (;;) {
        if (!next_event(s, &ev))
            return false;
        if (ev.type == WSC_EVENT_PING || ev.type == WSC_EVENT_PONG)
            continue;
        break;
    }
    if (ev.type != WSC_EVENT_TEXT && ev.type != WSC_EVENT_BINARY) {
        char d[1100];
        describe(d, sizeof d, &ev);
        fail(s, "%s: expected %s of %zu B, got %s", what, event_name(type), len, d);
        return false;
    }
    if (ev.type != type) {
        fail(s, "%s: expected %s of %zu B, got %s of %zu B", what, event_name(type), len,
             event_name(ev.type), ev.len);
        return false;
    }
    if (ev.len != len || (len > 0 && memcmp(ev.data, data, len) != 0)) {
        size_t i = 0;
        size_t n = ev.len < len ? ev.len : len;
        while (i < n && ev.data[i] == data[i])
            i++;
        char want[300], got[300];
        size_t from = i >= 8 ? i - 8 : 0;
        quote(want, sizeof want, data + from, (len - from) < 24 ? len - from : 24);
        quote(got, sizeof got, ev.data + from, (ev.len - from) < 24 ? ev.len - from : 24);
        fail(s, "%s: %s payload differs: expected %zu B, got %zu B, first difference at byte %zu "
                "(from byte %zu: expected %s, got %s)",
             what, event_name(type), len, ev.len, i, from, want, got);
        return false;
    }
    return true;
}

/*
 * Waits for the final CLOSE (PING/PONG skipped, anything else fails) and checks it:
 * code, reason (NULL: not checked), status WSC_OK, and that flags contain want_flag.
 */
static bool expect_close(struct scen *s, uint16_t code, const char *reason, uint32_t want_flag) {
    wsc_event ev;
    for (;;) {
        if (!next_event(s, &ev))
            return false;
        if (ev.type == WSC_EVENT_PING || ev.type == WSC_EVENT_PONG)
            continue;
        break;
    }
    char d[1100];
    describe(d, sizeof d, &ev);
    if (ev.type != WSC_EVENT_CLOSE) {
        fail(s, "expected CLOSE %u, got %s", (unsigned)code, d);
        return false;
    }
    bool ok = ev.close_code == code && ev.status == WSC_OK && (ev.flags & want_flag) &&
              !(ev.flags & WSC_CLOSE_ABNORMAL);
    if (reason != NULL)
        ok = ok && ev.len == strlen(reason) && memcmp(ev.data, reason, ev.len) == 0;
    if (!ok) {
        char want_reason[300];
        if (reason != NULL)
            quote(want_reason, sizeof want_reason, (const uint8_t *)reason, strlen(reason));
        else
            snprintf(want_reason, sizeof want_reason, "(any)");
        fail(s, "expected CLOSE code %u reason %s status WSC_OK flags with 0x%x, got %s", (unsigned)code,
             want_reason, (unsigned)want_flag, d);
        return false;
    }
    return true;
}

/* Closes with `code` (and reason) and expects the server to answer with the same. */
static bool close_clean(struct scen *s, uint16_t code, const char *reason) {
    wsc_status st = wsc_client_close(s->client, code, reason);
    if (st != WSC_OK) {
        fail(s, "wsc_client_close(%u): %s: %s", (unsigned)code, wsc_status_str(st), wsc_last_error());
        return false;
    }
    return expect_close(s, code, reason ? reason : "", WSC_CLOSE_LOCAL);
}

/* ---- payloads ---------------------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *state) { /* xorshift64* */
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

enum content { RANDOM, COMPRESSIBLE };

static void fill_random_bytes(uint8_t *buf, size_t len, uint64_t seed) {
    uint64_t st = seed * 0x9E3779B97F4A7C15ULL + 1;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t r = rng_next(&st);
        memcpy(buf + i, &r, 8);
    }
    if (i < len) {
        uint64_t r = rng_next(&st);
        memcpy(buf + i, &r, len - i);
    }
}

/* Random valid UTF-8 of exactly len bytes: a mix of 1- to 4-byte characters. */
static void fill_random_utf8(uint8_t *buf, size_t len, uint64_t seed) {
    uint64_t st = seed * 0x9E3779B97F4A7C15ULL + 1;
    size_t i = 0;
    while (i < len) {
        uint64_t r = rng_next(&st);
        size_t room = len - i;
        size_t w = 1 + (size_t)(r % 4);
        if (w > room)
            w = room;
        uint32_t v = (uint32_t)(r >> 32);
        uint32_t cp;
        switch (w) {
        case 1:
            cp = 0x20 + v % 0x5f;
            buf[i] = (uint8_t)cp;
            break;
        case 2:
            cp = 0x80 + v % (0x800 - 0x80);
            buf[i] = (uint8_t)(0xc0 | (cp >> 6));
            buf[i + 1] = (uint8_t)(0x80 | (cp & 0x3f));
            break;
        case 3:
            cp = 0x800 + v % (0x10000 - 0x800 - 0x800); /* skip the surrogates D800-DFFF */
            if (cp >= 0xd800)
                cp += 0x800;
            buf[i] = (uint8_t)(0xe0 | (cp >> 12));
            buf[i + 1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
            buf[i + 2] = (uint8_t)(0x80 | (cp & 0x3f));
            break;
        default:
            cp = 0x10000 + v % (0x110000 - 0x10000);
            buf[i] = (uint8_t)(0xf0 | (cp >> 18));
            buf[i + 1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
            buf[i + 2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
            buf[i + 3] = (uint8_t)(0x80 | (cp & 0x3f));
            break;
        }
        i += w;
    }
}

/* Highly compressible ASCII: one sentence over and over. */
static void fill_compressible(uint8_t *buf, size_t len) {
    static const char phrase[] = "All work and no play makes Jack a dull boy. ";
    size_t n = sizeof phrase - 1;
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)phrase[i % n];
}

static uint8_t *make_payload(wsc_event_type type, enum content c, size_t len, uint64_t seed) {
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL) {
        fprintf(stderr, "out of memory (%zu B)\n", len);
        exit(2);
    }
    if (c == COMPRESSIBLE)
        fill_compressible(buf, len);
    else if (type == WSC_EVENT_TEXT)
        fill_random_utf8(buf, len, seed);
    else
        fill_random_bytes(buf, len, seed);
    return buf;
}

static void size_name(char *out, size_t cap, size_t len) {
    if (len >= MiB && len % MiB == 0)
        snprintf(out, cap, "%zu MiB", len / MiB);
    else
        snprintf(out, cap, "%zu B", len);
}

/* ---- scenarios --------------------------------------------------------------------------- */

static const size_t SIZES[] = {0, 1, 125, 126, 65535, 65536, 1 * MiB, 16 * MiB};
#define NSIZES (sizeof SIZES / sizeof SIZES[0])

/* Text alternates compressible/random starting with compressible; binary the other way round,
 * so every size is covered by both kinds of content across the two types. */
static enum content content_for(wsc_event_type type, size_t idx) {
    bool even = idx % 2 == 0;
    if (type == WSC_EVENT_TEXT)
        return even ? COMPRESSIBLE : RANDOM;
    return even ? RANDOM : COMPRESSIBLE;
}

static void sc_echo(wsc_event_type type, size_t idx) {
    size_t len = SIZES[idx];
    enum content c = content_for(type, idx);
    char sz[32];
    size_name(sz, sizeof sz, len);
    struct scen s;
    begin(&s, "echo %s %s (%s)", type == WSC_EVENT_TEXT ? "text" : "binary", sz,
          c == RANDOM ? "random" : "compressible");
    uint8_t *buf = make_payload(type, c, len, 1000 + idx * 2 + (type == WSC_EVENT_BINARY));
    if (open_conn(&s, "/echo", NULL) && send_msg(&s, type, buf, len) &&
        expect_msg(&s, type, buf, len, "echo"))
        close_clean(&s, 1000, NULL);
    free(buf);
    end(&s);
}

/* All sizes of both types back to back on one connection (exercises deflate context takeover
 * across messages of very different sizes), then the echoes in order. */
static void sc_echo_sequence(void) {
    struct scen s;
    begin(&s, "echo all sizes in one connection");
    uint8_t *bufs[2 * NSIZES];
    wsc_event_type types[2 * NSIZES];
    size_t lens[2 * NSIZES];
    for (size_t i = 0; i < 2 * NSIZES; i++) {
        types[i] = i % 2 == 0 ? WSC_EVENT_TEXT : WSC_EVENT_BINARY;
        lens[i] = SIZES[i / 2];
        bufs[i] = make_payload(types[i], content_for(types[i], i / 2), lens[i], 5000 + i);
    }
    bool ok = open_conn(&s, "/echo", NULL);
    for (size_t i = 0; ok && i < 2 * NSIZES; i++)
        ok = send_msg(&s, types[i], bufs[i], lens[i]);
    for (size_t i = 0; ok && i < 2 * NSIZES; i++) {
        char what[64];
        snprintf(what, sizeof what, "message %zu of %zu", i + 1, 2 * NSIZES);
        ok = expect_msg(&s, types[i], bufs[i], lens[i], what);
    }
    if (ok)
        close_clean(&s, 1000, NULL);
    for (size_t i = 0; i < 2 * NSIZES; i++)
        free(bufs[i]);
    end(&s);
}

static void sc_many_small(void) {
    enum { N = 1000 };
    struct scen s;
    begin(&s, "1000 small messages in a row, order kept");
    bool ok = open_conn(&s, "/echo", NULL);
    char msg[64];
    for (int i = 0; ok && i < N; i++) {
        int n = snprintf(msg, sizeof msg, "message %04d of %d", i, N);
        ok = send_msg(&s, i % 2 ? WSC_EVENT_BINARY : WSC_EVENT_TEXT, (const uint8_t *)msg, (size_t)n);
    }
    for (int i = 0; ok && i < N; i++) {
        int n = snprintf(msg, sizeof msg, "message %04d of %d", i, N);
        char what[32];
        snprintf(what, sizeof what, "message %d", i);
        ok = expect_msg(&s, i % 2 ? WSC_EVENT_BINARY : WSC_EVENT_TEXT, (const uint8_t *)msg,
                        (size_t)n, what);
    }
    if (ok)
        close_clean(&s, 1000, NULL);
    end(&s);
}

static void sc_fragmented(void) {
    struct scen s;
    begin(&s, "receive fragmented messages (/fragmented)");
    static const uint8_t bin[] = {1, 2, 3, 4, 5, 6, 7};
    static const char utf8[] = "h\xc3\xa9llo \xe2\x82\xac"; /* "héllo €" */
    if (open_conn(&s, "/fragmented", NULL) &&
        expect_msg(&s, WSC_EVENT_TEXT, (const uint8_t *)"hello world", 11, "3-fragment text") &&
        expect_msg(&s, WSC_EVENT_BINARY, bin, sizeof bin, "2-fragment binary") &&
        expect_msg(&s, WSC_EVENT_TEXT, (const uint8_t *)utf8, sizeof utf8 - 1,
                   "text with UTF-8 characters split across fragments") &&
        send_msg(&s, WSC_EVENT_TEXT, (const uint8_t *)"after fragments", 15) &&
        expect_msg(&s, WSC_EVENT_TEXT, (const uint8_t *)"after fragments", 15, "echo afterwards"))
        close_clean(&s, 1000, NULL);
    end(&s);
}

static bool expect_pong(struct scen *s, const uint8_t *data, size_t len, const char *what) {
    wsc_event ev;
    if (!next_event(s, &ev))
        return false;
    char d[1100];
    describe(d, sizeof d, &ev);
    if (ev.type != WSC_EVENT_PONG) {
        fail(s, "%s: expected PONG of %zu B, got %s", what, len, d);
        return false;
    }
    if (ev.len != len || (len && memcmp(ev.data, data, len) != 0)) {
        char want[300];
        quote(want, sizeof want, data, len);
        fail(s, "%s: expected PONG %s (%zu B), got %s (%zu B)", what, want, len, d, ev.len);
        return false;
    }
    return true;
}

static void sc_client_ping(void) {
    struct scen s;
    begin(&s, "ping from the client gets PONG with the same payload");
    uint8_t big[125];
    fill_random_bytes(big, sizeof big, 77);
    bool ok = open_conn(&s, "/echo", NULL);
    ok = ok && wsc_client_send_ping(s.client, (const uint8_t *)"interop-ping", 12) == WSC_OK;
    ok = ok && expect_pong(&s, (const uint8_t *)"interop-ping", 12, "12-byte ping");
    ok = ok && wsc_client_send_ping(s.client, big, sizeof big) == WSC_OK;
    ok = ok && expect_pong(&s, big, sizeof big, "125-byte ping");
    ok = ok && wsc_client_send_ping(s.client, NULL, 0) == WSC_OK;
    ok = ok && expect_pong(&s, (const uint8_t *)"", 0, "empty ping");
    if (!ok && !s.failed)
        fail(&s, "wsc_client_send_ping failed: %s", wsc_last_error());
    if (ok)
        close_clean(&s, 1000, NULL);
    end(&s);
}

static void sc_server_ping(void) {
    struct scen s;
    begin(&s, "ping from the server (/ping): PING event, server gets the pong");
    wsc_event ev;
    if (open_conn(&s, "/ping", NULL) && next_event(&s, &ev)) {
        char d[1100];
        describe(d, sizeof d, &ev);
        if (ev.type != WSC_EVENT_PING || ev.len != 2 || memcmp(ev.data, "hi", 2) != 0)
            fail(&s, "expected PING \"hi\", got %s", d);
        else if (expect_msg(&s, WSC_EVENT_TEXT, (const uint8_t *)"pong ok", 7, "server's pong verdict"))
            close_clean(&s, 1000, NULL);
    }
    end(&s);
}

static void sc_client_close(uint16_t code, const char *reason) {
    struct scen s;
    begin(&s, "client close %u%s%s%s", (unsigned)code, reason ? " with reason \"" : "",
          reason ? reason : "", reason ? "\"" : "");
    if (open_conn(&s, "/echo", NULL))
        close_clean(&s, code, reason);
    end(&s);
}

/*
 * A message queued right before close still goes out first: the server (/record/TAG) counts
 * it, and a second connection asks for the count (/recorded/TAG). The echo may or may not
 * come back before CLOSE (Python websockets answers the close before the application can
 * echo; Node ws echoes first), but if it comes, it must be right.
 */
static void sc_send_then_close(void) {
    struct scen s;
    begin(&s, "send then close at once: the server received the message before the close");
    static const char msg[] = "last words";
    char path[128], want[128];
    snprintf(path, sizeof path, "/record/%s-%ld", g_label, (long)getpid());
    if (open_conn(&s, path, NULL) && send_msg(&s, WSC_EVENT_TEXT, (const uint8_t *)msg, 10)) {
        wsc_status st = wsc_client_close(s.client, 1000, NULL);
        wsc_event ev;
        if (st != WSC_OK) {
            fail(&s, "wsc_client_close: %s: %s", wsc_status_str(st), wsc_last_error());
        } else if (next_event(&s, &ev)) {
            bool ok = true;
            if (ev.type == WSC_EVENT_TEXT) {
                if (ev.len != 10 || memcmp(ev.data, msg, 10) != 0) {
                    char q[900];
                    quote(q, sizeof q, ev.data, ev.len);
                    fail(&s, "the echo of \"%s\" came back as %s", msg, q);
                    ok = false;
                }
                snprintf(s.detail, sizeof s.detail, "[the echo came before CLOSE]");
                ok = ok && expect_close(&s, 1000, "", WSC_CLOSE_LOCAL);
            } else if (ev.type == WSC_EVENT_CLOSE) {
                char d[1100];
                describe(d, sizeof d, &ev);
                if (ev.close_code != 1000 || ev.status != WSC_OK || !(ev.flags & WSC_CLOSE_LOCAL) ||
                    (ev.flags & WSC_CLOSE_ABNORMAL) || ev.len != 0) {
                    fail(&s, "expected CLOSE code 1000 reason \"\" status WSC_OK flags with 0x1, got %s", d);
                    ok = false;
                }
                snprintf(s.detail, sizeof s.detail, "[no echo before CLOSE]");
            } else {
                char d[1100];
                describe(d, sizeof d, &ev);
                fail(&s, "expected the echo or CLOSE 1000, got %s", d);
                ok = false;
            }
            if (ok) {
                /* Second connection: what did the server record? */
                wsc_client_free(s.client);
                s.client = NULL;
                s.closed = false;
                snprintf(path, sizeof path, "/recorded/%s-%ld", g_label, (long)getpid());
                int n = snprintf(want, sizeof want, "count=1 last=%s", msg);
                if (open_conn(&s, path, NULL) &&
                    expect_msg(&s, WSC_EVENT_TEXT, (const uint8_t *)want, (size_t)n,
                               "the server's record of the connection"))
                    close_clean(&s, 1000, NULL);
            }
        }
    }
    end(&s);
}

static uint32_t crc32_ieee(const uint8_t *p, size_t n) {
    static uint32_t table[256];
    if (table[1] == 0) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
    }
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++)
        c = table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

/* The server sends `len` random bytes it made itself (so with deflate on, a message that
 * does not compress arrives compressed), then their length and CRC-32. */
static void sc_server_random(size_t len) {
    struct scen s;
    char sz[32];
    size_name(sz, sizeof sz, len);
    begin(&s, "receive %s of server-made random binary (/random/%zu)", sz, len);
    char path[64];
    snprintf(path, sizeof path, "/random/%zu", len);
    wsc_event ev;
    if (open_conn(&s, path, NULL) && next_event(&s, &ev)) {
        char d[1100];
        describe(d, sizeof d, &ev);
        if (ev.type != WSC_EVENT_BINARY || ev.len != len) {
            fail(&s, "expected BINARY of %zu B, got %s", len, d);
        } else {
            char want[64];
            int n = snprintf(want, sizeof want, "len=%zu crc32=%08x", len,
                             (unsigned)crc32_ieee(ev.data, ev.len));
            if (expect_msg(&s, WSC_EVENT_TEXT, (const uint8_t *)want, (size_t)n,
                           "the server's length and CRC-32 (ours shown as expected)"))
                close_clean(&s, 1000, NULL);
        }
    }
    end(&s);
}

static void sc_server_close(uint16_t code) {
    struct scen s;
    begin(&s, "server close (/close/%u): CLOSE %u \"bye\"", (unsigned)code, (unsigned)code);
    char path[32];
    snprintf(path, sizeof path, "/close/%u", (unsigned)code);
    if (open_conn(&s, path, NULL))
        expect_close(&s, code, "bye", WSC_CLOSE_REMOTE);
    end(&s);
}

/* Reads the /extensions report; returns false on failure. value gets a NUL-terminated copy. */
static bool read_extensions(struct scen *s, char *value, size_t cap) {
    wsc_event ev;
    for (;;) {
        if (!next_event(s, &ev))
            return false;
        if (ev.type != WSC_EVENT_PING && ev.type != WSC_EVENT_PONG)
            break;
    }
    if (ev.type != WSC_EVENT_TEXT) {
        char d[1100];
        describe(d, sizeof d, &ev);
        fail(s, "expected the server's TEXT report of the extensions, got %s", d);
        return false;
    }
    size_t n = ev.len < cap - 1 ? ev.len : cap - 1;
    memcpy(value, ev.data, n);
    value[n] = 0;
    return true;
}

/* Echoes a compressible and a random message of `len` bytes each on an open connection. */
static bool echo_pair(struct scen *s, size_t len) {
    uint8_t *a = make_payload(WSC_EVENT_TEXT, COMPRESSIBLE, len, 1);
    uint8_t *b = make_payload(WSC_EVENT_BINARY, RANDOM, len, 2);
    bool ok = send_msg(s, WSC_EVENT_TEXT, a, len) && send_msg(s, WSC_EVENT_BINARY, b, len) &&
              expect_msg(s, WSC_EVENT_TEXT, a, len, "compressible text echo") &&
              expect_msg(s, WSC_EVENT_BINARY, b, len, "random binary echo");
    free(a);
    free(b);
    return ok;
}

static void sc_extensions_default(void) {
    struct scen s;
    begin(&s, "default config: permessage-deflate %s (/extensions)",
          g_expect_deflate ? "negotiated" : "not negotiated");
    char value[256];
    if (open_conn(&s, "/extensions", NULL) && read_extensions(&s, value, sizeof value)) {
        bool has = strstr(value, "permessage-deflate") != NULL;
        if (has != g_expect_deflate)
            fail(&s, "server reports Sec-WebSocket-Extensions \"%s\"; expected %s", value,
                 g_expect_deflate ? "permessage-deflate" : "no extension");
        else if (echo_pair(&s, 256 * KiB))
            close_clean(&s, 1000, NULL);
        snprintf(s.detail, sizeof s.detail, "[Sec-WebSocket-Extensions: \"%s\"]", value);
    }
    end(&s);
}

static void sc_extensions_client_off(void) {
    struct scen s;
    begin(&s, "deflate off in the client: nothing negotiated (/extensions)");
    wsc_config *cfg = wsc_config_new();
    char value[256];
    if (cfg == NULL || wsc_config_set_deflate(cfg, false) != WSC_OK)
        fail(&s, "config: %s", wsc_last_error());
    else if (open_conn(&s, "/extensions", cfg) && read_extensions(&s, value, sizeof value)) {
        if (value[0] != 0)
            fail(&s, "server reports Sec-WebSocket-Extensions \"%s\"; expected none", value);
        else if (echo_pair(&s, 256 * KiB))
            close_clean(&s, 1000, NULL);
    }
    wsc_config_free(cfg);
    end(&s);
}

static void sc_extensions_params(void) {
    static const char offer[] =
        "server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; "
        "client_max_window_bits=10";
    struct scen s;
    begin(&s, "deflate offer with no_context_takeover and 10-bit windows");
    wsc_config *cfg = wsc_config_new();
    char value[256];
    wsc_status st = cfg ? wsc_config_add_deflate_offer(cfg, offer) : WSC_ERR_INTERNAL;
    if (st != WSC_OK)
        fail(&s, "wsc_config_add_deflate_offer: %s: %s", wsc_status_str(st), wsc_last_error());
    else if (open_conn(&s, "/extensions", cfg) && read_extensions(&s, value, sizeof value)) {
        bool has = strstr(value, "permessage-deflate") != NULL;
        if (has != g_expect_deflate)
            fail(&s, "server reports Sec-WebSocket-Extensions \"%s\"; expected %s", value,
                 g_expect_deflate ? "permessage-deflate" : "no extension");
        else if (echo_pair(&s, 300 * KiB) && echo_pair(&s, 1000))
            close_clean(&s, 1000, NULL);
        snprintf(s.detail, sizeof s.detail, "[Sec-WebSocket-Extensions: \"%s\"]", value);
    }
    wsc_config_free(cfg);
    end(&s);
}

int main(int argc, char **argv) {
    if (argc != 4 || (strcmp(argv[3], "deflate") != 0 && strcmp(argv[3], "none") != 0)) {
        fprintf(stderr, "usage: %s BASE_URL LABEL deflate|none\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    g_base = argv[1];
    g_label = argv[2];
    g_expect_deflate = strcmp(argv[3], "deflate") == 0;

    for (size_t i = 0; i < NSIZES; i++)
        sc_echo(WSC_EVENT_TEXT, i);
    for (size_t i = 0; i < NSIZES; i++)
        sc_echo(WSC_EVENT_BINARY, i);
    sc_echo_sequence();
    sc_server_random(1 * MiB);
    sc_server_random(16 * MiB);
    sc_many_small();
    sc_fragmented();
    sc_client_ping();
    sc_server_ping();
    sc_client_close(1000, NULL);
    sc_client_close(4000, "interop says goodbye");
    sc_send_then_close();
    sc_server_close(4001);
    sc_extensions_default();
    sc_extensions_client_off();
    sc_extensions_params();

    printf("interop: %u passed, %u failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
