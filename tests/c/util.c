#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- environment ------------------------------------------------------------------------- */

char *test_url(const char *path) {
    const char *base = getenv("WSC_TEST_URL");
    if (base == NULL || *base == '\0') FAIL("WSC_TEST_URL is not set (e.g. ws://127.0.0.1:PORT)");
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/') bl--;
    size_t pl = strlen(path);
    char *url = malloc(bl + pl + 1);
    CHECK(url != NULL);
    memcpy(url, base, bl);
    memcpy(url + bl, path, pl + 1);
    return url;
}

int test_quick(void) {
    const char *q = getenv("WSC_TEST_QUICK");
    return q != NULL && *q != '\0' && strcmp(q, "0") != 0;
}

int T(int ms) {
    const char *s = getenv("WSC_TEST_TIME_SCALE");
    double scale = s ? atof(s) : 1.0;
    if (scale < 1.0) scale = 1.0;
    return (int)(ms * scale);
}

double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ---- payloads ---------------------------------------------------------------------------- */

static uint32_t xorshift(uint32_t *s) {
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

uint8_t *make_binary(size_t n, uint32_t seed) {
    uint8_t *p = malloc(n ? n : 1);
    CHECK(p != NULL);
    uint32_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(xorshift(&s) >> 24);
    return p;
}

char *make_text(size_t n, uint32_t seed) {
    char *p = malloc(n + 1);
    CHECK(p != NULL);
    uint32_t s = seed * 2654435761u + 7;
    size_t i = 0;
    while (i < n) {
        uint32_t r = xorshift(&s);
        if (r % 16 == 0 && i + 3 <= n) { /* U+20AC EURO SIGN */
            p[i++] = (char)0xE2;
            p[i++] = (char)0x82;
            p[i++] = (char)0xAC;
        } else if (r % 16 == 1 && i + 2 <= n) { /* U+00E9 */
            p[i++] = (char)0xC3;
            p[i++] = (char)0xA9;
        } else {
            p[i++] = (char)(0x20 + (r >> 8) % 95);
        }
    }
    p[n] = '\0';
    return p;
}

/* ---- events ------------------------------------------------------------------------------ */

const char *event_name(int type) {
    switch (type) {
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

static const char *describe_fields(int type, int status, unsigned code, unsigned flags, uint64_t id,
                                   const uint8_t *data, size_t len) {
    static _Thread_local char buf[512];
    int textual = type == WSC_EVENT_OPEN || type == WSC_EVENT_TEXT || type == WSC_EVENT_CLOSE ||
                  type == WSC_EVENT_ERROR || type == WSC_EVENT_PING || type == WSC_EVENT_PONG;
    char shown[200];
    size_t k = 0;
    if (data != NULL && textual) {
        for (size_t i = 0; i < len && k < sizeof shown - 4; i++) {
            unsigned char ch = data[i];
            shown[k++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
        }
        if (len > k) {
            shown[k++] = '.';
            shown[k++] = '.';
        }
    }
    shown[k] = '\0';
    snprintf(buf, sizeof buf, "%s(type=%d status=%s close_code=%u flags=%u id=%llu len=%zu%s data=\"%s\")",
             event_name(type), type, wsc_status_str(status), code, flags, (unsigned long long)id, len,
             data == NULL ? " data=NULL!" : "", shown);
    return buf;
}

const char *describe(const wsc_event *ev) {
    return describe_fields(ev->type, ev->status, ev->close_code, ev->flags, ev->id, ev->data, ev->len);
}

const char *describe_copy(const test_event *ev) {
    return describe_fields(ev->type, ev->status, ev->close_code, ev->flags, ev->id, ev->data, ev->len);
}

void event_copy(test_event *dst, const wsc_event *src) {
    dst->type = src->type;
    dst->status = src->status;
    dst->close_code = src->close_code;
    dst->flags = src->flags;
    dst->id = src->id;
    dst->len = src->len;
    dst->data = malloc(src->len + 1);
    CHECK(dst->data != NULL);
    if (src->len) memcpy(dst->data, src->data, src->len);
    dst->data[src->len] = 0;
}

void event_clear(test_event *ev) {
    free(ev->data);
    memset(ev, 0, sizeof *ev);
}

/* ---- poll mode --------------------------------------------------------------------------- */

void poll_next(wsc_client *c, wsc_event *ev, int timeout_ms) {
    wsc_status st = wsc_client_poll(c, ev, timeout_ms);
    if (st != WSC_OK) FAIL("wsc_client_poll(timeout %d ms) returned %s, wanted an event", timeout_ms, wsc_status_str(st));
    if (ev->data == NULL) FAIL("event data is NULL: %s", describe(ev));
    for (size_t i = 0; i < sizeof ev->reserved / sizeof ev->reserved[0]; i++)
        if (ev->reserved[i] != 0) FAIL("reserved[%zu] is %llu, not 0: %s", i, (unsigned long long)ev->reserved[i], describe(ev));
}

void poll_expect(wsc_client *c, int type, wsc_event *ev, int timeout_ms) {
    poll_next(c, ev, timeout_ms);
    if (ev->type != type) FAIL("expected a %s event, got %s", event_name(type), describe(ev));
}

wsc_client *open_poll(const char *path, const wsc_config *cfg, test_event *open) {
    char *url = test_url(path);
    wsc_client *c = NULL;
    wsc_status st = wsc_client_new(url, cfg, &c);
    if (st != WSC_OK) FAIL("wsc_client_new(\"%s\") returned %s", url, wsc_status_str(st));
    free(url);
    CHECK(c != NULL);
    CHECK_OK(wsc_client_connect(c));
    wsc_event ev;
    poll_expect(c, WSC_EVENT_OPEN, &ev, T(10000));
    CHECK_EQ(ev.status, WSC_OK);
    if (open) event_copy(open, &ev);
    return c;
}

void drain_to_close(wsc_client *c, test_event *close_ev, int allow_error, int timeout_ms) {
    double deadline = now_ms() + timeout_ms;
    wsc_event ev;
    for (;;) {
        int left = (int)(deadline - now_ms());
        if (left < 0) left = 0;
        poll_next(c, &ev, left);
        if (ev.type == WSC_EVENT_CLOSE) break;
        if (ev.type == WSC_EVENT_ERROR && !allow_error) FAIL("unexpected event before CLOSE: %s", describe(&ev));
        if (ev.type == WSC_EVENT_OPEN) FAIL("a second OPEN event: %s", describe(&ev));
    }
    event_copy(close_ev, &ev);
    /* CLOSE is the last event: nothing follows, now or a little later. */
    wsc_event after;
    memset(&after, 0, sizeof after);
    wsc_status st = wsc_client_poll(c, &after, 0);
    if (st != WSC_ERR_NOT_CONNECTED)
        FAIL("poll after CLOSE returned %s (%s), want WSC_ERR_NOT_CONNECTED", wsc_status_str(st),
             st == WSC_OK ? describe(&after) : "-");
    st = wsc_client_poll(c, &after, 50);
    CHECK_STATUS(st, WSC_ERR_NOT_CONNECTED);
    CHECK_EQ(wsc_client_state(c), WSC_STATE_CLOSED);
}

/* ---- callback mode ----------------------------------------------------------------------- */

void collector_init(collector *col) {
    memset(col, 0, sizeof *col);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&col->cv, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&col->mu, NULL);
    col->keep_payload = 1;
}

void collector_destroy(collector *col) {
    for (size_t i = 0; i < col->n; i++) free(col->evs[i].data);
    free(col->evs);
    pthread_cond_destroy(&col->cv);
    pthread_mutex_destroy(&col->mu);
}

void collector_cb(void *user_data, const wsc_event *ev) {
    collector *col = user_data;
    pthread_mutex_lock(&col->mu);
    if (++col->calls_in_flight > 1) col->overlap = 1;
    int freed = col->freed;
    pthread_mutex_unlock(&col->mu);

    if (col->hook && !freed) col->hook(col, ev);

    test_event copy;
    int is_msg = ev->type == WSC_EVENT_TEXT || ev->type == WSC_EVENT_BINARY;
    if (is_msg && !col->keep_payload) {
        copy = (test_event){ev->type, ev->status, ev->close_code, ev->flags, ev->id, NULL, ev->len};
    } else {
        /* (no CHECK here: a failing check on the worker thread would end the process) */
        copy.type = ev->type;
        copy.status = ev->status;
        copy.close_code = ev->close_code;
        copy.flags = ev->flags;
        copy.id = ev->id;
        copy.len = ev->len;
        copy.data = malloc(ev->len + 1);
        if (copy.data == NULL) abort();
        if (ev->len && ev->data) memcpy(copy.data, ev->data, ev->len);
        copy.data[ev->len] = 0;
    }

    int reserved_set = 0;
    for (size_t i = 0; i < sizeof ev->reserved / sizeof ev->reserved[0]; i++) reserved_set |= ev->reserved[i] != 0;
    pthread_mutex_lock(&col->mu);
    if (reserved_set) col->reserved_set++;
    if (ev->data == NULL) col->null_data++;
    if (col->closes > 0) col->after_close++;
    if (freed) col->after_free++;
    if (ev->type == WSC_EVENT_CLOSE) col->closes++;
    if (is_msg) col->messages++;
    if (col->n == col->cap) {
        size_t cap = col->cap ? col->cap * 2 : 64;
        test_event *grown = realloc(col->evs, cap * sizeof *grown);
        if (grown == NULL) abort();
        col->evs = grown;
        col->cap = cap;
    }
    col->evs[col->n++] = copy;
    col->calls_in_flight--;
    pthread_cond_broadcast(&col->cv);
    pthread_mutex_unlock(&col->mu);
}

static struct timespec deadline_after(int timeout_ms) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

static int has_type(collector *col, int type) {
    for (size_t i = 0; i < col->n; i++)
        if (col->evs[i].type == type) return 1;
    return 0;
}

/* what: 0 = events >= n, 1 = messages >= n, 2 = has type n, 3 = freed */
static int collector_wait(collector *col, int what, size_t n, int timeout_ms) {
    struct timespec dl = deadline_after(timeout_ms);
    pthread_mutex_lock(&col->mu);
    int ok;
    for (;;) {
        ok = what == 0 ? col->n >= n : what == 1 ? col->messages >= n : what == 2 ? has_type(col, (int)n) : col->freed;
        if (ok) break;
        if (pthread_cond_timedwait(&col->cv, &col->mu, &dl) != 0) {
            ok = what == 0 ? col->n >= n : what == 1 ? col->messages >= n : what == 2 ? has_type(col, (int)n) : col->freed;
            break;
        }
    }
    pthread_mutex_unlock(&col->mu);
    return ok;
}

int collector_wait_events(collector *col, size_t n, int timeout_ms) { return collector_wait(col, 0, n, timeout_ms); }
int collector_wait_messages(collector *col, size_t n, int timeout_ms) { return collector_wait(col, 1, n, timeout_ms); }
int collector_wait_type(collector *col, int type, int timeout_ms) { return collector_wait(col, 2, (size_t)type, timeout_ms); }

size_t collector_count(collector *col) {
    pthread_mutex_lock(&col->mu);
    size_t n = col->n;
    pthread_mutex_unlock(&col->mu);
    return n;
}

size_t collector_messages(collector *col) {
    pthread_mutex_lock(&col->mu);
    size_t n = col->messages;
    pthread_mutex_unlock(&col->mu);
    return n;
}

void collector_set_freed(collector *col) {
    pthread_mutex_lock(&col->mu);
    col->freed = 1;
    pthread_cond_broadcast(&col->cv);
    pthread_mutex_unlock(&col->mu);
}

int collector_wait_freed(collector *col, int timeout_ms) { return collector_wait(col, 3, 0, timeout_ms); }

void collector_check_invariants(collector *col) {
    pthread_mutex_lock(&col->mu);
    size_t null_data = col->null_data, after_close = col->after_close, after_free = col->after_free;
    size_t reserved_set = col->reserved_set;
    int overlap = col->overlap;
    pthread_mutex_unlock(&col->mu);
    CHECK_EQ(null_data, 0);
    CHECK_EQ(reserved_set, 0);
    CHECK_EQ(after_close, 0);
    CHECK_EQ(after_free, 0);
    CHECK_EQ(overlap, 0);
}

wsc_client *open_callback(const char *path, const wsc_config *cfg, collector *col) {
    char *url = test_url(path);
    wsc_client *c = NULL;
    wsc_status st = wsc_client_new(url, cfg, &c);
    if (st != WSC_OK) FAIL("wsc_client_new(\"%s\") returned %s", url, wsc_status_str(st));
    free(url);
    col->client = c;
    CHECK_OK(wsc_client_set_callback(c, collector_cb, col));
    CHECK_OK(wsc_client_connect(c));
    if (!collector_wait_events(col, 1, T(10000))) FAIL("no event within 10 s of connect");
    pthread_mutex_lock(&col->mu);
    test_event first = col->evs[0];
    pthread_mutex_unlock(&col->mu);
    if (first.type != WSC_EVENT_OPEN) FAIL("first event is not OPEN: %s", describe_copy(&first));
    return c;
}

/* ---- sockets ----------------------------------------------------------------------------- */

static int bound_socket(int *port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    CHECK_EQ(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t alen = sizeof a;
    CHECK_EQ(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

int listen_never_accept(int *port) {
    int fd = bound_socket(port);
    CHECK_EQ(listen(fd, 16), 0);
    return fd;
}

int closed_port(void) {
    int port;
    int fd = bound_socket(&port);
    close(fd);
    return port;
}
