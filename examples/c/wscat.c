/*
 * wscat: an interactive WebSocket client for the command line, on libwsclient's poll mode
 * and its event fd.
 *
 *   wscat [options] URL
 *
 * Each line read from stdin is sent as a text message (without its line ending); each
 * message received is printed on stdout, one per line: text as is, binary as hex. Status
 * lines (connected, closed, errors) go to stderr, so stdout carries only messages. At the
 * end of stdin (Ctrl-D on a terminal) wscat closes with 1000 and exits once the close
 * handshake is over; it also exits when the server closes. Exit status: 0 after a clean
 * close, 1 otherwise, 2 for bad arguments.
 *
 * Options:
 *   -H "Name: value"     add a header to the opening handshake (repeatable)
 *   -s NAME              offer a subprotocol (repeatable, in order of preference)
 *   --ca FILE            also trust the CA certificates in the PEM file FILE (wss://)
 *   --proxy URL          connect through this proxy: http://[user:pass@]host:port (CONNECT)
 *                        or socks5://[user:pass@]host:port
 *   --proxy-env          use https_proxy / http_proxy / all_proxy / no_proxy from the
 *                        environment (when --proxy is not given)
 *   --insecure           do not verify the server's certificate or host name (tests only!)
 *   --ping-interval MS   send a ping every MS milliseconds; a dead connection is detected
 *                        when the pong does not come within the pong timeout (10 s)
 *   --no-deflate         do not offer permessage-deflate compression
 *   -v                   also report pings and pongs on stderr
 *
 * How it waits: one poll(2) on stdin and on wsc_client_event_fd(), which is readable while
 * events are queued; the events are then taken with wsc_client_poll(..., 0). stdin is only
 * read once the connection is open. POSIX only (Windows has no event fd).
 *
 * Build: see Makefile / CMakeLists.txt in this directory.
 */

#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wsclient.h"

/* How long to wait before retrying a send the full send queue refused. */
#define QUEUE_FULL_RETRY_MS 50

static void usage(const char *prog) {
    fprintf(stderr,
            "usage: %s [-H 'Name: value']... [-s subprotocol]... [--ca FILE] [--proxy URL]\n"
            "       [--proxy-env] [--insecure]\n"
            "       [--ping-interval MS] [--no-deflate] [-v] URL\n"
            "Sends each line of stdin as a text message and prints the messages received.\n",
            prog);
}

/* Reports a failed call with its status name and the thread's error detail. */
static void fail(const char *what, wsc_status st) {
    fprintf(stderr, "wscat: %s: %s: %s\n", what, wsc_status_str(st), wsc_last_error());
}

/* Applies the command-line options to cfg. Returns the URL, or NULL after printing why not. */
static const char *configure(int argc, char **argv, wsc_config *cfg, bool *verbose) {
    const char *url = NULL;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        wsc_status st = WSC_OK;
        bool takes_value = true;

        if (strcmp(arg, "-H") == 0 && value != NULL) {
            /* "Name: value" -> name and value, spaces after the colon skipped. */
            const char *colon = strchr(value, ':');
            if (colon == NULL || colon == value) {
                fprintf(stderr, "wscat: -H wants \"Name: value\", got \"%s\"\n", value);
                return NULL;
            }
            size_t name_len = (size_t)(colon - value);
            char *name = malloc(name_len + 1);
            if (name == NULL)
                return NULL;
            memcpy(name, value, name_len);
            name[name_len] = '\0';
            const char *v = colon + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            st = wsc_config_add_header(cfg, name, v); /* copies both strings */
            free(name);
        } else if (strcmp(arg, "-s") == 0 && value != NULL) {
            st = wsc_config_add_subprotocol(cfg, value);
        } else if (strcmp(arg, "--ca") == 0 && value != NULL) {
            st = wsc_config_set_ca_file(cfg, value); /* the file is read now */
        } else if (strcmp(arg, "--proxy") == 0 && value != NULL) {
            st = wsc_config_set_proxy(cfg, value); /* checked now; credentials never printed */
        } else if (strcmp(arg, "--ping-interval") == 0 && value != NULL) {
            char *end;
            unsigned long ms = strtoul(value, &end, 10);
            if (*value == '\0' || *end != '\0' || ms > UINT32_MAX) {
                fprintf(stderr, "wscat: --ping-interval wants milliseconds, got \"%s\"\n", value);
                return NULL;
            }
            st = wsc_config_set_ping_interval_ms(cfg, (uint32_t)ms);
        } else {
            takes_value = false;
            if (strcmp(arg, "--insecure") == 0) {
                st = wsc_config_set_tls_verify(cfg, false);
                fprintf(stderr, "wscat: warning: TLS certificate verification is off\n");
            } else if (strcmp(arg, "--proxy-env") == 0) {
                st = wsc_config_set_proxy_from_env(cfg, true);
            } else if (strcmp(arg, "--no-deflate") == 0) {
                st = wsc_config_set_deflate(cfg, false);
            } else if (strcmp(arg, "-v") == 0) {
                *verbose = true;
            } else if (arg[0] != '-' && url == NULL) {
                url = arg;
            } else {
                usage(argv[0]);
                return NULL;
            }
        }
        if (st != WSC_OK) {
            fprintf(stderr, "wscat: %s %s: %s: %s\n", arg, takes_value ? value : "",
                    wsc_status_str(st), wsc_last_error());
            return NULL;
        }
        if (takes_value)
            i++;
    }
    if (url == NULL)
        usage(argv[0]);
    return url;
}

/* Prints a binary message as hex, at most 64 bytes of it. */
static void print_binary(const uint8_t *data, size_t len) {
    printf("[binary, %zu bytes]", len);
    for (size_t i = 0; i < len && i < 64; i++)
        printf(" %02x", data[i]);
    printf("%s\n", len > 64 ? " ..." : "");
}

/* Handles one event. Sets *open on OPEN; returns true for the final CLOSE, with *clean set. */
static bool handle_event(const wsc_event *ev, bool verbose, bool *open, bool *clean) {
    int len = (int)ev->len;
    const char *text = (const char *)ev->data;
    switch (ev->type) {
    case WSC_EVENT_OPEN:
        *open = true;
        if (ev->len > 0)
            fprintf(stderr, "wscat: connected (subprotocol %.*s)\n", len, text);
        else
            fprintf(stderr, "wscat: connected\n");
        break;
    case WSC_EVENT_TEXT:
        printf("%.*s\n", len, text);
        break;
    case WSC_EVENT_BINARY:
        print_binary(ev->data, ev->len);
        break;
    case WSC_EVENT_PING:
        if (verbose)
            fprintf(stderr, "wscat: ping (%zu bytes), pong sent\n", ev->len);
        break;
    case WSC_EVENT_PONG:
        if (verbose)
            fprintf(stderr, "wscat: pong (%zu bytes)\n", ev->len);
        break;
    case WSC_EVENT_ERROR:
        fprintf(stderr, "wscat: error: %s: %.*s\n", wsc_status_str(ev->status), len, text);
        break;
    case WSC_EVENT_SEND_FAILED:
        fprintf(stderr, "wscat: not sent (%s): %.*s\n", wsc_status_str(ev->status),
                ev->flags == WSC_EVENT_TEXT ? len : 0, text);
        break;
    case WSC_EVENT_CLOSE:
        *clean = ev->status == WSC_OK;
        fprintf(stderr, "wscat: closed by %s: code %u%s%.*s%s\n",
                (ev->flags & WSC_CLOSE_REMOTE) ? "server" : (ev->flags & WSC_CLOSE_LOCAL) ? "us" : "connection loss",
                (unsigned)ev->close_code, len ? ", reason \"" : "", len, text, len ? "\"" : "");
        if (!*clean)
            fprintf(stderr, "wscat: not a clean close: %s\n", wsc_status_str(ev->status));
        return true;
    default:
        break; /* event types added by later versions */
    }
    return false;
}

/* Bytes read from stdin that do not form a complete line yet, or lines not yet sent. */
struct line_buffer {
    char *data;
    size_t len, cap;
};

/* Reads what stdin has into buf. Returns the byte count, 0 at end of input, -1 on error. */
static ssize_t read_stdin(struct line_buffer *buf) {
    if (buf->cap - buf->len < 4096) {
        size_t cap = buf->cap ? buf->cap * 2 : 16384;
        char *data = realloc(buf->data, cap);
        if (data == NULL)
            return -1;
        buf->data = data;
        buf->cap = cap;
    }
    ssize_t n;
    do {
        n = read(STDIN_FILENO, buf->data + buf->len, buf->cap - buf->len);
    } while (n < 0 && errno == EINTR);
    if (n > 0)
        buf->len += (size_t)n;
    return n;
}

/*
 * Sends every complete line in buf (all of it when at_eof) and removes them. Returns
 * WSC_ERR_QUEUE_FULL when the send queue is full (the rest stays for a retry),
 * WSC_ERR_NOT_CONNECTED when the connection is closing, else WSC_OK. Lines the library
 * refuses (not UTF-8, too large) are reported and skipped.
 */
static wsc_status send_lines(wsc_client *client, struct line_buffer *buf, bool at_eof) {
    size_t start = 0;
    wsc_status result = WSC_OK;
    while (start < buf->len) {
        char *nl = memchr(buf->data + start, '\n', buf->len - start);
        if (nl == NULL && !at_eof)
            break;
        size_t end = nl ? (size_t)(nl - buf->data) : buf->len;
        size_t next = nl ? end + 1 : end;
        size_t len = end - start;
        if (len > 0 && buf->data[start + len - 1] == '\r')
            len--; /* CRLF line endings */
        wsc_status st = wsc_client_send_text(client, buf->data + start, len);
        if (st == WSC_ERR_QUEUE_FULL || st == WSC_ERR_NOT_CONNECTED) {
            result = st;
            break;
        }
        if (st != WSC_OK)
            fail("line not sent", st);
        start = next;
    }
    memmove(buf->data, buf->data + start, buf->len - start);
    buf->len -= start;
    return result;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN); /* a closed stdout shows up as a write error, not a kill */

    wsc_config *cfg = wsc_config_new();
    if (cfg == NULL) {
        fprintf(stderr, "wscat: out of memory\n");
        return 1;
    }
    bool verbose = false;
    const char *url = configure(argc, argv, cfg, &verbose);
    if (url == NULL) {
        wsc_config_free(cfg);
        return 2;
    }
    wsc_client *client = NULL;
    wsc_status st = wsc_client_new(url, cfg, &client);
    wsc_config_free(cfg); /* the client has its own copy */
    if (st != WSC_OK) {
        fail(url, st);
        return 2;
    }
    int event_fd = wsc_client_event_fd(client);
    if (event_fd < 0) {
        fprintf(stderr, "wscat: this platform has no event fd\n");
        wsc_client_free(client);
        return 1;
    }
    st = wsc_client_connect(client); /* returns at once; OPEN or ERROR + CLOSE follows */
    if (st != WSC_OK) {
        fail("connect", st);
        wsc_client_free(client);
        return 1;
    }

    struct line_buffer input = {0};
    bool open = false, stdin_open = true, eof = false, queue_full = false;
    bool closed = false, clean = false;
    while (!closed) {
        struct pollfd fds[2] = {{.fd = event_fd, .events = POLLIN}, {.fd = STDIN_FILENO, .events = POLLIN}};
        /* stdin is read only while open, and while the send queue takes more. */
        nfds_t nfds = open && stdin_open && !eof && !queue_full ? 2 : 1;
        if (poll(fds, nfds, queue_full ? QUEUE_FULL_RETRY_MS : -1) < 0 && errno != EINTR) {
            perror("wscat: poll");
            break;
        }

        /* Take every queued event; the event fd stays readable until the queue is empty. */
        wsc_event ev;
        while (!closed && wsc_client_poll(client, &ev, 0) == WSC_OK)
            closed = handle_event(&ev, verbose, &open, &clean);
        if (closed)
            break;

        if (nfds == 2 && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t n = read_stdin(&input);
            if (n < 0)
                perror("wscat: stdin");
            eof = n <= 0;
        }
        if (open && stdin_open && (eof || queue_full || input.len > 0)) {
            st = send_lines(client, &input, eof);
            queue_full = st == WSC_ERR_QUEUE_FULL;
            if (st == WSC_ERR_NOT_CONNECTED) {
                stdin_open = false; /* the server is closing; its CLOSE event is coming */
            } else if (eof && st == WSC_OK) {
                /* All input is queued: close. Queued messages go out before the close frame. */
                stdin_open = false;
                st = wsc_client_close(client, 1000, NULL);
                if (st != WSC_OK && st != WSC_ERR_NOT_CONNECTED)
                    fail("close", st);
            }
        }
    }

    wsc_client_free(client);
    free(input.data);
    return clean ? 0 : 1;
}
