/*
 * telemetry: an IoT telemetry publisher on libwsclient's poll mode. It stays connected
 * through outages, and no reading is lost without being reported.
 *
 *   telemetry [options] URL
 *
 * Every --interval ms it takes a (simulated) sensor reading and sends it as a text message:
 *   {"device":"sensor-1","seq":17,"ts_ms":1732540000123,"temp_c":21.37}
 *
 * Offline buffer: readings wait in a bounded ring buffer (--buffer readings) until the
 * connection is open, and are sent oldest first. When the buffer is full the oldest reading
 * is dropped, and every drop is reported on stderr and counted.
 *
 * Reconnecting: libwsclient does not reconnect by itself (yet), and a client handles one
 * connection. So when a connection ends (WSC_EVENT_CLOSE), this program frees the client
 * and, after a delay, creates a new one from the same config. The delay uses exponential
 * backoff with "full jitter": a uniformly random time between 0 and
 * min(--backoff-max, --backoff-min * 2^attempt), so that many devices cut off by the same
 * outage do not all come back at the same moment. The attempt count starts again at 0 only
 * after a connection stayed open for STABLE_MS, so a server that accepts and at once drops
 * connections is not hammered either.
 *
 * Nothing is silently lost on the client: a message the connection ended before writing in
 * full comes back as WSC_EVENT_SEND_FAILED with its payload, and is put back into the
 * buffer in sequence order to be sent again. (A message that was written to the socket but
 * that the server never processed cannot be detected by any WebSocket client; that needs
 * acknowledgements from the server, which this example's protocol does not have.)
 *
 * With --count N it stops taking readings after N, sends what is buffered, closes with
 * 1000 and prints a summary; exit status 0 if every reading was handed to a connection that
 * then closed cleanly. Without --count it runs until killed.
 *
 * Options (times in milliseconds):
 *   --interval MS      time between readings (default 1000)
 *   --count N          stop after N readings (default 0: never)
 *   --buffer N         readings kept while offline (default 1000)
 *   --backoff-min MS   first backoff ceiling (default 250)
 *   --backoff-max MS   largest backoff ceiling (default 30000)
 *   --device NAME      device name in the readings (default "sensor-1")
 *   -v                 print every reading sent and every message received
 *
 * Build: see Makefile / CMakeLists.txt in this directory. POSIX (clock_gettime, poll).
 */

#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "wsclient.h"

#define READING_MAX 160 /* bytes of one reading's JSON */
#define STABLE_MS 10000 /* a connection open this long resets the backoff */

struct reading {
    uint64_t seq;
    size_t len;
    char json[READING_MAX];
};

/* A bounded ring buffer of readings, kept in sequence order (oldest at the head). */
struct ring {
    struct reading *items;
    size_t cap, head, count;
    uint64_t dropped;
};

static struct reading *ring_at(struct ring *r, size_t i) { return &r->items[(r->head + i) % r->cap]; }

static void ring_drop_oldest(struct ring *r) {
    fprintf(stderr, "telemetry: buffer full, dropped reading %llu\n", (unsigned long long)ring_at(r, 0)->seq);
    r->head = (r->head + 1) % r->cap;
    r->count--;
    r->dropped++;
}

/*
 * Inserts a reading at its place in sequence order (new readings go to the tail, readings
 * put back after SEND_FAILED usually near the head). When full, the oldest of the buffer
 * and the new one is dropped and reported.
 */
static void ring_insert(struct ring *r, const struct reading *rd) {
    if (r->count == r->cap) {
        if (rd->seq < ring_at(r, 0)->seq) {
            fprintf(stderr, "telemetry: buffer full, dropped reading %llu\n", (unsigned long long)rd->seq);
            r->dropped++;
            return;
        }
        ring_drop_oldest(r);
    }
    size_t i = r->count++;
    *ring_at(r, i) = *rd;
    for (; i > 0 && ring_at(r, i - 1)->seq > ring_at(r, i)->seq; i--) {
        struct reading tmp = *ring_at(r, i - 1);
        *ring_at(r, i - 1) = *ring_at(r, i);
        *ring_at(r, i) = tmp;
    }
}

static uint64_t now_ms(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* xorshift64*: good enough for jitter, and no global state shared with anyone. */
static uint64_t rng_state;
static uint64_t rng_next(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

/* Full jitter: uniform in [0, min(max, min * 2^attempt)]. */
static uint64_t backoff_ms(unsigned attempt, uint64_t min, uint64_t max) {
    uint64_t ceiling = min;
    for (unsigned i = 0; i < attempt && ceiling < max; i++)
        ceiling *= 2;
    if (ceiling > max)
        ceiling = max;
    return rng_next() % (ceiling + 1);
}

/* A simulated temperature sensor: a slow triangle wave plus a little noise, in 1/100 °C. */
static void take_reading(struct reading *rd, const char *device, uint64_t seq) {
    long phase = (long)(seq % 200);
    long centi = 2000 + (phase < 100 ? phase : 200 - phase) * 3 + (long)(rng_next() % 21) - 10;
    rd->seq = seq;
    int n = snprintf(rd->json, sizeof rd->json, "{\"device\":\"%s\",\"seq\":%llu,\"ts_ms\":%llu,\"temp_c\":%ld.%02ld}",
                     device, (unsigned long long)seq, (unsigned long long)now_ms(CLOCK_REALTIME), centi / 100, centi % 100);
    rd->len = n < 0 ? 0 : (size_t)n < sizeof rd->json ? (size_t)n : sizeof rd->json - 1;
}

/* Rebuilds a reading from a SEND_FAILED payload (which is the JSON we sent). */
static bool reading_from_payload(struct reading *rd, const uint8_t *data, size_t len) {
    if (len >= sizeof rd->json)
        return false;
    memcpy(rd->json, data, len);
    rd->json[len] = '\0';
    rd->len = len;
    const char *seq = strstr(rd->json, "\"seq\":");
    return seq != NULL && sscanf(seq + 6, "%llu", (unsigned long long *)&rd->seq) == 1;
}

struct options {
    const char *url, *device;
    uint64_t interval, count, buffer, backoff_min, backoff_max;
    bool verbose;
};

static bool parse_number(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno != 0)
        return false;
    *out = v;
    return true;
}

static bool parse_options(int argc, char **argv, struct options *o) {
    *o = (struct options){.device = "sensor-1", .interval = 1000, .buffer = 1000, .backoff_min = 250, .backoff_max = 30000};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t *num = strcmp(a, "--interval") == 0      ? &o->interval
                        : strcmp(a, "--count") == 0       ? &o->count
                        : strcmp(a, "--buffer") == 0      ? &o->buffer
                        : strcmp(a, "--backoff-min") == 0 ? &o->backoff_min
                        : strcmp(a, "--backoff-max") == 0 ? &o->backoff_max
                                                          : NULL;
        if (num != NULL && v != NULL && parse_number(v, num)) {
            i++;
        } else if (strcmp(a, "--device") == 0 && v != NULL && strlen(v) < 64 && !strpbrk(v, "\"\\")) {
            o->device = v;
            i++;
        } else if (strcmp(a, "-v") == 0) {
            o->verbose = true;
        } else if (a[0] != '-' && o->url == NULL) {
            o->url = a;
        } else {
            return false;
        }
    }
    return o->url != NULL && o->interval > 0 && o->buffer > 0 && o->backoff_min > 0 &&
           o->backoff_max >= o->backoff_min;
}

int main(int argc, char **argv) {
    struct options opt;
    if (!parse_options(argc, argv, &opt)) {
        fprintf(stderr,
                "usage: %s [--interval MS] [--count N] [--buffer N] [--backoff-min MS]\n"
                "       [--backoff-max MS] [--device NAME] [-v] URL\n",
                argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    rng_state = now_ms(CLOCK_REALTIME) ^ ((uint64_t)getpid() << 32) ^ 0x9E3779B97F4A7C15ULL;

    struct ring ring = {.cap = (size_t)opt.buffer};
    ring.items = calloc(ring.cap, sizeof *ring.items);
    wsc_config *cfg = wsc_config_new();
    if (ring.items == NULL || cfg == NULL) {
        fprintf(stderr, "telemetry: out of memory\n");
        return 1;
    }
    /* Notice a dead link within seconds, not when TCP gives up. */
    wsc_config_set_ping_interval_ms(cfg, 5000);
    wsc_config_set_pong_timeout_ms(cfg, 5000);
    wsc_config_set_connect_timeout_ms(cfg, 5000);
    /* Let a full send queue push back on us while plenty still fits in the ring. */
    wsc_config_set_send_queue_limit(cfg, 1 << 20);

    uint64_t taken = 0, accepted = 0, returned = 0, echoed = 0, reconnects = 0, opens = 0;
    unsigned attempt = 0;
    uint64_t now = now_ms(CLOCK_MONOTONIC), opened_at = 0;
    uint64_t next_reading = now, reconnect_at = now;
    wsc_client *client = NULL;
    bool open = false, closing = false, done = false, clean_end = false;

    while (!done) {
        now = now_ms(CLOCK_MONOTONIC);
        bool taking = opt.count == 0 || taken < opt.count;

        /* 1. Take a reading when it is due; it waits in the ring until it can be sent. */
        if (taking && now >= next_reading) {
            struct reading rd;
            take_reading(&rd, opt.device, ++taken);
            ring_insert(&ring, &rd);
            next_reading += opt.interval;
            if (next_reading < now) /* we fell behind (suspended?): do not burst */
                next_reading = now + opt.interval;
            taking = opt.count == 0 || taken < opt.count;
        }

        /* 2. No client: make a new one when the backoff delay is over. */
        if (client == NULL && now >= reconnect_at) {
            wsc_status st = wsc_client_new(opt.url, cfg, &client);
            if (st != WSC_OK) { /* a bad URL will not get better */
                fprintf(stderr, "telemetry: %s: %s: %s\n", opt.url, wsc_status_str(st), wsc_last_error());
                return 2;
            }
            st = wsc_client_connect(client);
            if (st != WSC_OK) {
                fprintf(stderr, "telemetry: connect: %s: %s\n", wsc_status_str(st), wsc_last_error());
                wsc_client_free(client);
                client = NULL;
                reconnect_at = now + backoff_ms(attempt++, opt.backoff_min, opt.backoff_max);
            }
        }

        /* 3. Open: send what is buffered, oldest first, while the send queue takes it. */
        bool queue_full = false;
        while (open && !closing && ring.count > 0) {
            struct reading *rd = ring_at(&ring, 0);
            wsc_status st = wsc_client_send_text(client, rd->json, rd->len);
            if (st == WSC_ERR_QUEUE_FULL) {
                queue_full = true; /* try again shortly; the ring keeps the rest */
                break;
            }
            if (st == WSC_ERR_NOT_CONNECTED)
                break; /* the connection is ending; its CLOSE event is on the way */
            if (st == WSC_OK) {
                accepted++;
                if (opt.verbose)
                    printf("sent %.*s\n", (int)rd->len, rd->json);
            } else {
                fprintf(stderr, "telemetry: reading %llu refused: %s: %s\n",
                        (unsigned long long)rd->seq, wsc_status_str(st), wsc_last_error());
                ring.dropped++;
            }
            ring.head = (ring.head + 1) % ring.cap;
            ring.count--;
        }

        /* 4. All readings taken and handed over: close cleanly (queued ones go out first). */
        if (!taking && open && !closing && ring.count == 0) {
            if (wsc_client_close(client, 1000, "done") == WSC_OK)
                closing = true;
        }

        /* 5. Wait for the next event, reading or reconnect time. */
        uint64_t wake = UINT64_MAX;
        if (taking)
            wake = next_reading;
        if (client == NULL && reconnect_at < wake)
            wake = reconnect_at;
        if (queue_full && now + 20 < wake)
            wake = now + 20;
        now = now_ms(CLOCK_MONOTONIC);
        int32_t timeout = wake == UINT64_MAX ? -1 : wake <= now ? 0 : wake - now > INT32_MAX ? INT32_MAX : (int32_t)(wake - now);
        if (client == NULL) {
            poll(NULL, 0, timeout); /* just sleep: nothing to wait on */
            continue;
        }
        wsc_event ev;
        if (wsc_client_poll(client, &ev, timeout) != WSC_OK)
            continue; /* timed out: a reading or a retry is due */

        switch (ev.type) {
        case WSC_EVENT_OPEN:
            open = true;
            opened_at = now_ms(CLOCK_MONOTONIC);
            if (opens++ > 0)
                reconnects++;
            fprintf(stderr, "telemetry: connected to %s (%zu readings buffered)\n", opt.url, ring.count);
            break;
        case WSC_EVENT_TEXT:
            echoed++; /* e.g. the echo server's copy, or a command from the server */
            if (opt.verbose)
                printf("received %.*s\n", (int)ev.len, (const char *)ev.data);
            break;
        case WSC_EVENT_SEND_FAILED: {
            /* Not (fully) written before the connection ended: back into the ring. */
            struct reading rd;
            if (reading_from_payload(&rd, ev.data, ev.len)) {
                returned++;
                accepted--;
                ring_insert(&ring, &rd);
            }
            break;
        }
        case WSC_EVENT_ERROR:
            fprintf(stderr, "telemetry: %s: %.*s\n", wsc_status_str(ev.status), (int)ev.len, (const char *)ev.data);
            break;
        case WSC_EVENT_CLOSE:
            /* The last event of this client: free it, then finish or schedule a new one. */
            wsc_client_free(client);
            client = NULL;
            open = false;
            if (closing && ev.status == WSC_OK && ring.count == 0) {
                clean_end = true;
                done = true;
                break;
            }
            closing = false;
            if (opened_at != 0 && now_ms(CLOCK_MONOTONIC) - opened_at >= STABLE_MS)
                attempt = 0;
            opened_at = 0;
            {
                uint64_t delay = backoff_ms(attempt++, opt.backoff_min, opt.backoff_max);
                reconnect_at = now_ms(CLOCK_MONOTONIC) + delay;
                fprintf(stderr, "telemetry: disconnected (code %u, %s); retry %u in %llu ms, %zu readings buffered\n",
                        (unsigned)ev.close_code, wsc_status_str(ev.status), attempt,
                        (unsigned long long)delay, ring.count);
            }
            break;
        default:
            break; /* pings/pongs are handled by the library */
        }
    }

    wsc_config_free(cfg);
    free(ring.items);
    printf("telemetry: %llu taken, %llu written, %llu resent after SEND_FAILED, %llu dropped, "
           "%llu reconnects, %llu echoed\n",
           (unsigned long long)taken, (unsigned long long)accepted, (unsigned long long)returned,
           (unsigned long long)ring.dropped, (unsigned long long)reconnects, (unsigned long long)echoed);
    return clean_end && accepted + ring.dropped == taken && ring.dropped == 0 ? 0 : 1;
}
