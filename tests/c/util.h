/* Helpers shared by the C tests: URLs, timing, payloads, event copies, poll and callback mode. */
#ifndef WSC_TEST_UTIL_H
#define WSC_TEST_UTIL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "harness.h"

/* The header documents WSC_CLOSE_LOCAL/REMOTE/ABNORMAL for the flags of CLOSE events. Should a
 * header lack them, fall back to the values the library uses (1, 2, 4) so that the other tests
 * still build; the test header_defines_close_flags then fails and names the problem. */
#ifndef WSC_CLOSE_LOCAL
#define WSC_TEST_MISSING_CLOSE_FLAGS 1
#define WSC_CLOSE_LOCAL 1
#define WSC_CLOSE_REMOTE 2
#define WSC_CLOSE_ABNORMAL 4
#endif

/* ---- environment ------------------------------------------------------------------------- */

/* WSC_TEST_URL + path (path starts with '/' or is ""), malloc'd; fails the test if unset. */
char *test_url(const char *path);
/* WSC_TEST_QUICK=1: smaller sizes and counts (for valgrind). */
int test_quick(void);
/* A timeout in ms, multiplied by WSC_TEST_TIME_SCALE (default 1; run.sh raises it for valgrind). */
int T(int ms);
double now_ms(void);
void sleep_ms(int ms);

/* ---- payloads ---------------------------------------------------------------------------- */

/* n bytes of pseudo-random binary (all byte values, zeros included). malloc'd. */
uint8_t *make_binary(size_t n, uint32_t seed);
/* n bytes of valid UTF-8 mixing ASCII, 2-byte and 3-byte characters. malloc'd. */
char *make_text(size_t n, uint32_t seed);

/* ---- events ------------------------------------------------------------------------------ */

/* A deep copy of a wsc_event (data is malloc'd and NUL-terminated). */
typedef struct test_event {
    int type;
    int status;
    unsigned close_code;
    unsigned flags;
    uint64_t id;
    uint8_t *data;
    size_t len;
} test_event;

const char *event_name(int type);
/* A one-line description of an event for failure messages (static buffer per thread). */
const char *describe(const wsc_event *ev);
const char *describe_copy(const test_event *ev);
void event_copy(test_event *dst, const wsc_event *src);
void event_clear(test_event *ev);

/* ---- poll mode --------------------------------------------------------------------------- */

/* Creates a poll-mode client for WSC_TEST_URL+path (cfg may be NULL), connects it and checks
 * that the first event is OPEN (its subprotocol is copied to *open when open != NULL). */
wsc_client *open_poll(const char *path, const wsc_config *cfg, test_event *open);

/* Takes the next event, failing the test unless wsc_client_poll returns WSC_OK in time. The event
 * data is the library's, valid until the next poll/free. */
void poll_next(wsc_client *c, wsc_event *ev, int timeout_ms);
/* Like poll_next, and fails unless the event has the given type. */
void poll_expect(wsc_client *c, int type, wsc_event *ev, int timeout_ms);

/* Takes events until the CLOSE event (copied to *close_ev), discarding messages that were still
 * in flight, failing on ERROR events unless allow_error. Then checks that CLOSE was the last
 * event: wsc_client_poll gives WSC_ERR_NOT_CONNECTED and the state is CLOSED. */
void drain_to_close(wsc_client *c, test_event *close_ev, int allow_error, int timeout_ms);

/* ---- callback mode ----------------------------------------------------------------------- */

typedef struct collector collector;
/* Called on the worker thread for each event before it is recorded, without the lock held. */
typedef void (*collector_hook)(collector *col, const wsc_event *ev);

struct collector {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    test_event *evs; /* recorded events */
    size_t n, cap;
    int keep_payload;   /* copy payloads of TEXT/BINARY (else only their length) */
    size_t messages;    /* TEXT + BINARY events seen */
    size_t closes;      /* CLOSE events seen */
    size_t after_close; /* events that came after a CLOSE (must stay 0) */
    size_t null_data;   /* events whose data was NULL (must stay 0) */
    size_t reserved_set; /* events with a non-zero reserved field (must stay 0) */
    size_t after_free;  /* events that came after `freed` was set (must stay 0) */
    int freed;          /* set by the test once wsc_client_free returned, or by a hook */
    int calls_in_flight; /* > 1 would mean two callbacks at once */
    int overlap;        /* set if two callbacks ever ran at the same time */
    collector_hook hook;
    void *ctx;
    wsc_client *client;
};

void collector_init(collector *col);
void collector_destroy(collector *col);
/* The wsc_event_cb: user_data is a collector. */
void collector_cb(void *user_data, const wsc_event *ev);
/* Waits until at least n events were recorded; returns 0 on timeout. */
int collector_wait_events(collector *col, size_t n, int timeout_ms);
/* Waits until at least n TEXT/BINARY events were seen; returns 0 on timeout. */
int collector_wait_messages(collector *col, size_t n, int timeout_ms);
/* Waits until an event of this type was recorded; returns 0 on timeout. */
int collector_wait_type(collector *col, int type, int timeout_ms);
/* Thread-safe reads. */
size_t collector_count(collector *col);
size_t collector_messages(collector *col);
/* Marks the client as freed (and wakes waiters); later callbacks count as after_free. */
void collector_set_freed(collector *col);
/* Waits until collector_set_freed was called (e.g. by a hook); returns 0 on timeout. */
int collector_wait_freed(collector *col, int timeout_ms);
/* Fails the test on a NULL data pointer, a non-zero reserved field, events after CLOSE, after
 * free, or overlapping calls. */
void collector_check_invariants(collector *col);

/* Creates a callback-mode client (collector as user data) and connects it; waits for OPEN. */
wsc_client *open_callback(const char *path, const wsc_config *cfg, collector *col);

/* ---- sockets ----------------------------------------------------------------------------- */

/* A TCP listener on 127.0.0.1 that never accepts (connects complete in the kernel backlog, the
 * HTTP upgrade is never answered). Returns the fd; *port receives its port. */
int listen_never_accept(int *port);
/* A port on 127.0.0.1 with nothing listening (bound, then closed). */
int closed_port(void);

#endif
