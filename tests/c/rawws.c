#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "rawws.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- SHA-1 (RFC 3174), only for Sec-WebSocket-Accept ------------------------------------- */

static uint32_t rol(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void sha1(const uint8_t *msg, size_t len, uint8_t out[20]) {
    uint32_t h[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u};
    size_t total = ((len + 8) / 64 + 1) * 64;
    uint8_t *buf = calloc(total, 1);
    if (!buf) abort();
    memcpy(buf, msg, len);
    buf[len] = 0x80;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) buf[total - 1 - i] = (uint8_t)(bits >> (8 * i));
    for (size_t off = 0; off < total; off += 64) {
        uint32_t w[80];
        for (int i = 0; i < 16; i++)
            w[i] = (uint32_t)buf[off + 4 * i] << 24 | (uint32_t)buf[off + 4 * i + 1] << 16 |
                   (uint32_t)buf[off + 4 * i + 2] << 8 | buf[off + 4 * i + 3];
        for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        for (int i = 0; i < 80; i++) {
            uint32_t f, k;
            if (i < 20) { f = (b & c) | (~b & d); k = 0x5A827999u; }
            else if (i < 40) { f = b ^ c ^ d; k = 0x6ED9EBA1u; }
            else if (i < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8F1BBCDCu; }
            else { f = b ^ c ^ d; k = 0xCA62C1D6u; }
            uint32_t t = rol(a, 5) + f + e + k + w[i];
            e = d; d = c; c = rol(b, 30); b = a; a = t;
        }
        h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e;
    }
    free(buf);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (uint8_t)(h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(h[i] >> 8);
        out[4 * i + 3] = (uint8_t)h[i];
    }
}

static void base64(const uint8_t *in, size_t len, char *out) {
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0) | (i + 2 < len ? in[i + 2] : 0);
        out[o++] = tbl[(v >> 18) & 63];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = i + 1 < len ? tbl[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? tbl[v & 63] : '=';
    }
    out[o] = 0;
}

/* ---- I/O --------------------------------------------------------------------------------- */

int raw_write_all(int fd, const void *buf, size_t len) {
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int read_exact(int fd, void *buf, size_t len) {
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = recv(fd, p, len, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n == 0) return 0;
        if (n < 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 1;
}

int raw_accept_request(int lfd, char *req, size_t cap) {
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0) return -1;
    size_t n = 0;
    /* byte by byte, so nothing after the request is consumed */
    while (n + 1 < cap) {
        ssize_t r = recv(fd, req + n, 1, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        n++;
        if (n >= 4 && memcmp(req + n - 4, "\r\n\r\n", 4) == 0) {
            req[n] = 0;
            return fd;
        }
    }
    close(fd);
    return -1;
}

int raw_send_101(int fd, const char *req, const void *extra, size_t extra_len) {
    const char *key = NULL;
    for (const char *line = req; line && *line; line = strstr(line, "\r\n") ? strstr(line, "\r\n") + 2 : NULL) {
        if (strncasecmp(line, "Sec-WebSocket-Key:", 18) == 0) {
            key = line + 18;
            break;
        }
    }
    if (!key) return -1;
    while (*key == ' ') key++;
    size_t klen = strcspn(key, "\r\n ");
    char concat[128];
    if (klen > 60) return -1;
    snprintf(concat, sizeof concat, "%.*s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", (int)klen, key);
    uint8_t digest[20];
    sha1((const uint8_t *)concat, strlen(concat), digest);
    char accept_key[40];
    base64(digest, 20, accept_key);
    char head[256];
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Accept: %s\r\n\r\n",
                      accept_key);
    size_t total = (size_t)hl + extra_len;
    uint8_t *all = malloc(total);
    if (!all) return -1;
    memcpy(all, head, (size_t)hl);
    if (extra_len) memcpy(all + hl, extra, extra_len);
    int rc = raw_write_all(fd, all, total);
    free(all);
    return rc;
}

size_t raw_frame(uint8_t *out, int opcode, const void *payload, size_t len) {
    size_t h = 0;
    out[h++] = (uint8_t)(0x80 | (opcode & 0x0f));
    if (len < 126) {
        out[h++] = (uint8_t)len;
    } else if (len <= 0xffff) {
        out[h++] = 126;
        out[h++] = (uint8_t)(len >> 8);
        out[h++] = (uint8_t)len;
    } else {
        out[h++] = 127;
        for (int i = 7; i >= 0; i--) out[h++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    if (len) memcpy(out + h, payload, len);
    return h + len;
}

int raw_read_frame(int fd, int *opcode, int *fin, uint8_t **payload, size_t *len) {
    uint8_t hdr[2];
    int r = read_exact(fd, hdr, 2);
    if (r <= 0) return r;
    *fin = (hdr[0] & 0x80) != 0;
    *opcode = hdr[0] & 0x0f;
    if (!(hdr[1] & 0x80)) return -1; /* client frames must be masked */
    uint64_t n = hdr[1] & 0x7f;
    if (n == 126) {
        uint8_t e[2];
        if (read_exact(fd, e, 2) != 1) return -1;
        n = (uint64_t)e[0] << 8 | e[1];
    } else if (n == 127) {
        uint8_t e[8];
        if (read_exact(fd, e, 8) != 1) return -1;
        n = 0;
        for (int i = 0; i < 8; i++) n = n << 8 | e[i];
    }
    if (n > ((uint64_t)1 << 30)) return -1;
    uint8_t key[4];
    if (read_exact(fd, key, 4) != 1) return -1;
    uint8_t *p = malloc((size_t)n + 1);
    if (!p) return -1;
    if (n && read_exact(fd, p, (size_t)n) != 1) {
        free(p);
        return -1;
    }
    for (uint64_t i = 0; i < n; i++) p[i] ^= key[i % 4];
    *payload = p;
    *len = (size_t)n;
    return 1;
}
