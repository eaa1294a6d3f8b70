/* A minimal, scriptable WebSocket server side for tests that need exact control over timing and
 * bytes on the wire (the echo server cannot, e.g., hold back its handshake answer). Blocking, one
 * connection, run from a test's own thread. */
#ifndef WSC_TEST_RAWWS_H
#define WSC_TEST_RAWWS_H

#include <stddef.h>
#include <stdint.h>

/* Accepts one connection on the listening socket lfd and reads the HTTP upgrade request (up to
 * the blank line) into req (NUL-terminated). Returns the connection fd, or -1. */
int raw_accept_request(int lfd, char *req, size_t cap);

/* Answers the request with "101 Switching Protocols" (computing Sec-WebSocket-Accept), followed
 * in the same write by `extra` bytes (e.g. frames). Returns 0 on success. */
int raw_send_101(int fd, const char *req, const void *extra, size_t extra_len);

/* Builds an unmasked server frame (FIN set) into out (room for len + 10 bytes); returns its size. */
size_t raw_frame(uint8_t *out, int opcode, const void *payload, size_t len);

/* Reads one client frame, unmasking it. *payload is malloc'd (free it). Returns 1 on a frame,
 * 0 on EOF, -1 on an error (including an unmasked client frame). */
int raw_read_frame(int fd, int *opcode, int *fin, uint8_t **payload, size_t *len);

/* Writes all bytes; returns 0 on success. */
int raw_write_all(int fd, const void *buf, size_t len);

#endif
