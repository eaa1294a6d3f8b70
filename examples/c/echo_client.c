/*
 * echo_client: a demo of libwsclient's C API in poll mode.
 *
 *   echo_client URL [message...]
 *
 * Connects to URL, sends each message as text (default: "hello" and one 16-byte binary
 * message), checks that each comes back unchanged and in order, closes with 1000, and
 * prints the close event. Exits 0 only if every message came back and the close was clean.
 *
 * Build: gcc -std=c11 -Wall -Wextra -Werror -Iinclude examples/c/echo_client.c \
 *            -Ltarget/release -lwsclient
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wsclient.h"

/* How long to wait for any one event before giving up. */
#define EVENT_TIMEOUT_MS 10000

struct message {
    wsc_event_type type; /* WSC_EVENT_TEXT or WSC_EVENT_BINARY */
    const uint8_t *data;
    size_t len;
};

static const char *type_name(wsc_event_type type) {
    return type == WSC_EVENT_TEXT ? "text" : "binary";
}

/* Prints "<verb> text: payload" or "<verb> binary: N bytes". */
static void print_message(const char *verb, wsc_event_type type, const uint8_t *data, size_t len) {
    if (type == WSC_EVENT_TEXT)
        printf("%s text: %.*s\n", verb, (int)len, (const char *)data);
    else
        printf("%s binary: %zu bytes\n", verb, len);
}

/* Waits for the next event; on a poll failure prints why and returns false. */
static bool next_event(wsc_client *client, wsc_event *ev) {
    wsc_status st = wsc_client_poll(client, ev, EVENT_TIMEOUT_MS);
    if (st != WSC_OK) {
        fprintf(stderr, "poll failed: %s %s\n", wsc_status_str(st),
                st == WSC_ERR_TIMEOUT ? "(no event in time)" : wsc_last_error());
        return false;
    }
    return true;
}

/*
 * Handles an event that is not the one the caller waits for. Returns false if it means
 * the exchange failed. Sets *closed when it was the final WSC_EVENT_CLOSE.
 */
static bool other_event(const wsc_event *ev, bool *closed) {
    switch (ev->type) {
    case WSC_EVENT_PING:
        printf("received ping: %zu bytes\n", ev->len);
        return true;
    case WSC_EVENT_PONG:
        printf("received pong: %zu bytes\n", ev->len);
        return true;
    case WSC_EVENT_ERROR:
        fprintf(stderr, "error: %s: %.*s\n", wsc_status_str(ev->status), (int)ev->len,
                (const char *)ev->data);
        return false;
    case WSC_EVENT_SEND_FAILED:
        fprintf(stderr, "send %llu failed: %s (%s, %zu bytes)\n", (unsigned long long)ev->id,
                wsc_status_str(ev->status), type_name((wsc_event_type)ev->flags), ev->len);
        return false;
    case WSC_EVENT_CLOSE:
        *closed = true;
        printf("closed: code %u, reason \"%.*s\", status %s, flags 0x%x\n", (unsigned)ev->close_code,
               (int)ev->len, (const char *)ev->data, wsc_status_str(ev->status), (unsigned)ev->flags);
        return ev->status == WSC_OK;
    default:
        fprintf(stderr, "unexpected event type %d\n", (int)ev->type);
        return false;
    }
}

/* Sends all messages, then checks that they come back unchanged and in order. */
static bool exchange(wsc_client *client, const struct message *msgs, size_t count, bool *closed) {
    for (size_t i = 0; i < count; i++) {
        wsc_status st = wsc_client_send(client, msgs[i].type, msgs[i].data, msgs[i].len, NULL);
        if (st != WSC_OK) {
            fprintf(stderr, "send failed: %s: %s\n", wsc_status_str(st), wsc_last_error());
            return false;
        }
        print_message("sent", msgs[i].type, msgs[i].data, msgs[i].len);
    }

    bool ok = true;
    size_t received = 0;
    wsc_event ev;
    while (received < count && !*closed) {
        if (!next_event(client, &ev))
            return false;
        if (ev.type != WSC_EVENT_TEXT && ev.type != WSC_EVENT_BINARY) {
            ok = other_event(&ev, closed) && ok;
            continue;
        }
        print_message("received", ev.type, ev.data, ev.len);
        const struct message *want = &msgs[received++];
        if (ev.type != want->type || ev.len != want->len ||
            (ev.len > 0 && memcmp(ev.data, want->data, ev.len) != 0)) {
            fprintf(stderr, "mismatch: message %zu did not come back unchanged\n", received);
            ok = false;
        }
    }
    return ok && received == count;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s URL [message...]\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0); /* keep stdout and stderr in order when piped */

    /* The messages to echo: the arguments as text, or a default text + binary pair. */
    static const uint8_t default_binary[16] = {0, 1, 2, 3, 4, 5, 6, 7,
                                               8, 9, 10, 11, 12, 13, 14, 15};
    size_t count = argc > 2 ? (size_t)(argc - 2) : 2;
    struct message *msgs = calloc(count, sizeof *msgs);
    if (msgs == NULL) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    if (argc > 2) {
        for (size_t i = 0; i < count; i++)
            msgs[i] = (struct message){WSC_EVENT_TEXT, (const uint8_t *)argv[i + 2], strlen(argv[i + 2])};
    } else {
        msgs[0] = (struct message){WSC_EVENT_TEXT, (const uint8_t *)"hello", 5};
        msgs[1] = (struct message){WSC_EVENT_BINARY, default_binary, sizeof default_binary};
    }

    wsc_config *cfg = wsc_config_new();
    if (cfg == NULL) {
        fprintf(stderr, "wsc_config_new: out of memory\n");
        free(msgs);
        return 1;
    }
    wsc_client *client = NULL;
    wsc_status st = wsc_client_new(argv[1], cfg, &client);
    wsc_config_free(cfg); /* the client keeps its own copy */
    if (st != WSC_OK) {
        fprintf(stderr, "wsc_client_new: %s: %s\n", wsc_status_str(st), wsc_last_error());
        free(msgs);
        return 1;
    }

    bool ok = false, closed = false;
    wsc_event ev;
    st = wsc_client_connect(client);
    if (st != WSC_OK) {
        fprintf(stderr, "wsc_client_connect: %s: %s\n", wsc_status_str(st), wsc_last_error());
        goto done;
    }

    /* Wait for the handshake; an error here is followed by the final close event. */
    while (!closed) {
        if (!next_event(client, &ev))
            goto done;
        if (ev.type == WSC_EVENT_OPEN) {
            printf("connected to %s\n", argv[1]);
            break;
        }
        other_event(&ev, &closed);
    }
    if (closed)
        goto done;

    ok = exchange(client, msgs, count, &closed);

    /* Close cleanly and wait for the final event, even after a failed exchange. */
    if (!closed) {
        st = wsc_client_close(client, 1000, "done");
        /* NOT_CONNECTED: the server is already closing; its close event is still to come. */
        if (st != WSC_OK && st != WSC_ERR_NOT_CONNECTED) {
            fprintf(stderr, "wsc_client_close: %s: %s\n", wsc_status_str(st), wsc_last_error());
            ok = false;
        }
    }
    while (!closed) {
        if (!next_event(client, &ev)) {
            ok = false;
            break;
        }
        if (ev.type == WSC_EVENT_TEXT || ev.type == WSC_EVENT_BINARY) {
            print_message("unexpected", ev.type, ev.data, ev.len);
            ok = false;
        } else {
            ok = other_event(&ev, &closed) && ok;
        }
    }

done:
    wsc_client_free(client);
    free(msgs);
    printf("%s\n", ok ? "all messages echoed" : "FAILED");
    return ok ? 0 : 1;
}
