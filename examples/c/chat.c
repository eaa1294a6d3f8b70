/*
 * chat: a line-based chat client on libwsclient's callback mode.
 *
 *   chat URL NICKNAME
 *
 * Sends one JSON object per message:
 *   {"type":"join","nick":"alice"}                 once connected
 *   {"type":"msg","nick":"alice","text":"hello"}   for each line typed
 *   {"type":"leave","nick":"alice"}                at the end of input (Ctrl-D)
 * and expects a server that relays every message to every participant. What others send is
 * printed as "<bob> hello", "* bob joined", "* bob left"; messages with our own nickname (the
 * server's copy of ours) are not printed; anything else is printed as "* raw: ...".
 * At the end of input it closes with 1000 and exits after the close: 0 if clean, else 1.
 *
 * Threads: the library calls on_event on the client's worker thread, which prints the
 * messages as they arrive. The main thread reads stdin and sends. The callback tells the
 * main thread about OPEN and CLOSE through a pipe (the main thread waits on stdin and the
 * pipe with poll(2)), so the program also ends when the server goes away while nobody types.
 * The callback never blocks and touches nothing but the shared state below, under its lock.
 *
 * The JSON handling is deliberately small ("JSON-ish"): it escapes what it sends properly
 * and reads the "type", "nick" and "text" string fields of flat objects.
 *
 * Try it against any relay ("broadcast") WebSocket server; against the bundled echo server
 * (examples/echo_server.rs) every message comes back with our own nickname, so nothing is
 * printed but the connection status.
 *
 * Build: see Makefile / CMakeLists.txt in this directory. POSIX only (poll(2), pipe(2)).
 */

#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wsclient.h"

/* Shared by the main thread and the callback (worker thread). */
struct chat {
    const char *nick;
    int wake[2];          /* the callback writes a byte on OPEN and CLOSE */
    pthread_mutex_t lock; /* guards the fields below */
    bool open, closed, clean;
};

/* A growable string. */
struct buf {
    char *data;
    size_t len, cap;
};

static bool buf_add(struct buf *b, const char *s, size_t n) {
    if (b->cap - b->len < n + 1) {
        size_t cap = (b->cap + n + 1) * 2;
        char *data = realloc(b->data, cap);
        if (data == NULL)
            return false;
        b->data = data;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return true;
}

static bool buf_str(struct buf *b, const char *s) { return buf_add(b, s, strlen(s)); }

/* Appends s as a JSON string literal: quotes, backslashes and control characters escaped. */
static bool buf_json_string(struct buf *b, const char *s, size_t n) {
    bool ok = buf_add(b, "\"", 1);
    for (size_t i = 0; ok && i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            ok = buf_add(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            ok = buf_add(b, esc, 6);
        } else {
            ok = buf_add(b, (const char *)&s[i], 1);
        }
    }
    return ok && buf_add(b, "\"", 1);
}

/* Appends a code point (from a \uXXXX escape) as UTF-8; surrogates become '?'. */
static void put_utf8(struct buf *b, unsigned cp) {
    char u[3];
    if (cp < 0x80) {
        u[0] = (char)cp;
        buf_add(b, u, 1);
    } else if (cp < 0x800) {
        u[0] = (char)(0xc0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3f));
        buf_add(b, u, 2);
    } else if (cp >= 0xd800 && cp <= 0xdfff) {
        buf_add(b, "?", 1);
    } else {
        u[0] = (char)(0xe0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f));
        buf_add(b, u, 3);
    }
}

/*
 * Finds the string field "key" in the flat JSON object msg[0..len) and puts its unescaped
 * value into *out (emptied first). Returns false if there is no such string field.
 */
static bool json_field(const char *msg, size_t len, const char *key, struct buf *out) {
    size_t klen = strlen(key);
    out->len = 0;
    for (size_t i = 0; i + klen + 2 <= len; i++) {
        if (msg[i] != '"' || memcmp(msg + i + 1, key, klen) != 0 || msg[i + klen + 1] != '"')
            continue;
        size_t j = i + klen + 2;
        while (j < len && (msg[j] == ' ' || msg[j] == '\t'))
            j++;
        if (j >= len || msg[j] != ':')
            continue; /* the key was a value, not a key */
        j++;
        while (j < len && (msg[j] == ' ' || msg[j] == '\t'))
            j++;
        if (j >= len || msg[j] != '"')
            return false;
        for (j++; j < len && msg[j] != '"'; j++) {
            if (msg[j] != '\\' || j + 1 >= len) {
                buf_add(out, &msg[j], 1);
                continue;
            }
            char c = msg[++j];
            unsigned cp;
            if (c == 'u' && j + 4 < len && sscanf(msg + j + 1, "%4x", &cp) == 1) {
                put_utf8(out, cp);
                j += 4;
            } else {
                char plain = c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c == 'b' ? '\b' : c == 'f' ? '\f' : c;
                buf_add(out, &plain, 1);
            }
        }
        if (out->data == NULL)
            buf_add(out, "", 0);
        return j < len;
    }
    return false;
}

static void wake_main(struct chat *chat) {
    char byte = 1;
    ssize_t n;
    do {
        n = write(chat->wake[1], &byte, 1);
    } while (n < 0 && errno == EINTR);
}

/* Prints one chat message from someone else; ignores our own. */
static void show_message(struct chat *chat, const char *msg, size_t len) {
    struct buf type = {0}, nick = {0}, text = {0};
    if (!json_field(msg, len, "type", &type) || !json_field(msg, len, "nick", &nick)) {
        printf("* raw: %.*s\n", (int)len, msg);
    } else if (strcmp(nick.data, chat->nick) == 0) {
        /* our own message, relayed back */
    } else if (strcmp(type.data, "msg") == 0 && json_field(msg, len, "text", &text)) {
        printf("<%s> %s\n", nick.data, text.data);
    } else if (strcmp(type.data, "join") == 0) {
        printf("* %s joined\n", nick.data);
    } else if (strcmp(type.data, "leave") == 0) {
        printf("* %s left\n", nick.data);
    } else {
        printf("* raw: %.*s\n", (int)len, msg);
    }
    free(type.data);
    free(nick.data);
    free(text.data);
}

/* The callback: runs on the worker thread, one event at a time, and must not block. */
static void on_event(void *user_data, const wsc_event *ev) {
    struct chat *chat = user_data;
    int len = (int)ev->len;
    const char *data = (const char *)ev->data; /* valid only until we return */
    switch (ev->type) {
    case WSC_EVENT_OPEN:
        printf("* connected as %s (type a line and Enter to send, Ctrl-D to leave)\n", chat->nick);
        pthread_mutex_lock(&chat->lock);
        chat->open = true;
        pthread_mutex_unlock(&chat->lock);
        wake_main(chat);
        break;
    case WSC_EVENT_TEXT:
        show_message(chat, data, ev->len);
        break;
    case WSC_EVENT_ERROR:
        fprintf(stderr, "* error: %s: %.*s\n", wsc_status_str(ev->status), len, data);
        break;
    case WSC_EVENT_SEND_FAILED:
        fprintf(stderr, "* not delivered: %.*s\n", len, data);
        break;
    case WSC_EVENT_CLOSE:
        printf("* disconnected (code %u%s%.*s)\n", (unsigned)ev->close_code, len ? ": " : "", len, data);
        pthread_mutex_lock(&chat->lock);
        chat->closed = true;
        chat->clean = ev->status == WSC_OK;
        pthread_mutex_unlock(&chat->lock);
        wake_main(chat);
        break;
    default:
        break; /* binary messages, pings and pongs are not part of this chat */
    }
}

/* Sends {"type":TYPE,"nick":NICK[,"text":TEXT]}. */
static void send_json(wsc_client *client, const char *nick, const char *type, const char *text, size_t text_len) {
    struct buf b = {0};
    bool ok = buf_str(&b, "{\"type\":\"") && buf_str(&b, type) && buf_str(&b, "\",\"nick\":") &&
              buf_json_string(&b, nick, strlen(nick));
    if (ok && text != NULL)
        ok = buf_str(&b, ",\"text\":") && buf_json_string(&b, text, text_len);
    ok = ok && buf_str(&b, "}");
    wsc_status st = ok ? wsc_client_send_text(client, b.data, b.len) : WSC_ERR_INVALID_ARGUMENT;
    if (st != WSC_OK)
        fprintf(stderr, "* not sent: %s: %s\n", wsc_status_str(st), ok ? wsc_last_error() : "out of memory");
    free(b.data);
}

/* Waits until stdin is readable (returns true) or the callback woke us (returns false). */
static bool wait_input(struct chat *chat, bool want_stdin) {
    struct pollfd fds[2] = {{.fd = chat->wake[0], .events = POLLIN}, {.fd = STDIN_FILENO, .events = POLLIN}};
    while (poll(fds, want_stdin ? 2 : 1, -1) < 0) {
        if (errno != EINTR)
            return false;
    }
    if (fds[0].revents) {
        char drain[16];
        if (read(chat->wake[0], drain, sizeof drain) < 0)
            return false;
        return false;
    }
    return true;
}

int main(int argc, char **argv) {
    if (argc != 3 || argv[2][0] == '\0') {
        fprintf(stderr, "usage: %s URL NICKNAME\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);

    struct chat chat = {.nick = argv[2], .lock = PTHREAD_MUTEX_INITIALIZER};
    if (pipe(chat.wake) != 0) {
        perror("pipe");
        return 1;
    }
    wsc_client *client = NULL;
    wsc_status st = wsc_client_new(argv[1], NULL, &client); /* NULL: default settings */
    if (st != WSC_OK) {
        fprintf(stderr, "%s: %s: %s\n", argv[1], wsc_status_str(st), wsc_last_error());
        return 2;
    }
    /* Callback mode is chosen before connect; &chat must outlive wsc_client_free. */
    wsc_client_set_callback(client, on_event, &chat);
    st = wsc_client_connect(client);
    if (st != WSC_OK) {
        fprintf(stderr, "connect: %s: %s\n", wsc_status_str(st), wsc_last_error());
        wsc_client_free(client);
        return 1;
    }

    /* Wait for OPEN (or a failed connect's CLOSE). */
    bool open = false, closed = false;
    while (!open && !closed) {
        wait_input(&chat, false);
        pthread_mutex_lock(&chat.lock);
        open = chat.open;
        closed = chat.closed;
        pthread_mutex_unlock(&chat.lock);
    }
    if (open)
        send_json(client, chat.nick, "join", NULL, 0);

    /* Read lines until the end of input or until the connection is gone. */
    struct buf line = {0};
    bool eof = false;
    while (!closed && !eof) {
        if (wait_input(&chat, true)) {
            char chunk[4096];
            ssize_t n = read(STDIN_FILENO, chunk, sizeof chunk);
            if (n <= 0) {
                eof = n == 0 || errno != EINTR;
                if (eof && line.len > 0)
                    send_json(client, chat.nick, "msg", line.data, line.len);
            }
            for (ssize_t i = 0; i < n; i++) {
                if (chunk[i] != '\n') {
                    buf_add(&line, &chunk[i], 1);
                    continue;
                }
                if (line.len > 0 && line.data[line.len - 1] == '\r')
                    line.len--;
                if (line.len > 0)
                    send_json(client, chat.nick, "msg", line.data, line.len);
                line.len = 0;
            }
        }
        pthread_mutex_lock(&chat.lock);
        closed = chat.closed;
        pthread_mutex_unlock(&chat.lock);
    }
    free(line.data);

    if (!closed) {
        send_json(client, chat.nick, "leave", NULL, 0);
        wsc_client_close(client, 1000, "bye"); /* the leave message goes out first */
        while (!closed) {
            wait_input(&chat, false);
            pthread_mutex_lock(&chat.lock);
            closed = chat.closed;
            pthread_mutex_unlock(&chat.lock);
        }
    }
    /* After CLOSE no callback touches chat again; free waits for the worker to exit. */
    wsc_client_free(client);
    close(chat.wake[0]);
    close(chat.wake[1]);
    return chat.clean ? 0 : 1;
}
