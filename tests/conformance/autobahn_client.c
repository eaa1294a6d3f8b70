/*
 * Autobahn TestSuite client agent on the public C API: reads the case count, runs every case
 * by echoing each message back with its type, then asks the fuzzing server for the reports.
 *
 *   autobahn_client ws://127.0.0.1:9001 [agent-name]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wsclient.h"

/* Runs one connection in poll mode. Echoes messages when `echo` is set; keeps the first text
 * message in `first_text` when given. Returns 0 when the connection ran to its CLOSE event. */
static int run(const wsc_config *cfg, const char *url, int echo, char *first_text, size_t first_text_cap) {
    wsc_client *client = NULL;
    wsc_status st = wsc_client_new(url, cfg, &client);
    if (st != WSC_OK) {
        fprintf(stderr, "%s: %s: %s\n", url, wsc_status_str(st), wsc_last_error());
        return -1;
    }
    st = wsc_client_connect(client);
    if (st != WSC_OK) {
        fprintf(stderr, "%s: connect: %s: %s\n", url, wsc_status_str(st), wsc_last_error());
        wsc_client_free(client);
        return -1;
    }
    int result = -1;
    for (;;) {
        wsc_event ev;
        st = wsc_client_poll(client, &ev, 60000);
        if (st != WSC_OK) {
            fprintf(stderr, "%s: poll: %s: %s\n", url, wsc_status_str(st), wsc_last_error());
            break;
        }
        if (ev.type == WSC_EVENT_TEXT) {
            if (first_text && first_text[0] == '\0') {
                size_t n = ev.len < first_text_cap - 1 ? ev.len : first_text_cap - 1;
                memcpy(first_text, ev.data, n);
                first_text[n] = '\0';
            }
            if (echo)
                wsc_client_send_text(client, (const char *)ev.data, ev.len);
        } else if (ev.type == WSC_EVENT_BINARY && echo) {
            wsc_client_send_binary(client, ev.data, ev.len);
        } else if (ev.type == WSC_EVENT_CLOSE) {
            result = 0;
            break;
        }
    }
    wsc_client_free(client);
    return result;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s ws://HOST:PORT [agent]\n", argv[0]);
        return 2;
    }
    const char *base = argv[1];
    const char *agent = argc > 2 ? argv[2] : "libwsclient";
    char url[1024];
    char count_text[32] = "";

    /* The browsers' offer first; a second one lets the server also ask us to reset our
     * compressor after each message (the 13.2, 13.5 and 13.6 cases do). */
    wsc_config *cfg = wsc_config_new();
    if (!cfg || wsc_config_add_deflate_offer(cfg, "client_max_window_bits") != WSC_OK ||
        wsc_config_add_deflate_offer(cfg, "client_no_context_takeover; client_max_window_bits") != WSC_OK) {
        fprintf(stderr, "config: %s\n", wsc_last_error());
        return 1;
    }

    snprintf(url, sizeof url, "%s/getCaseCount", base);
    if (run(cfg, url, 0, count_text, sizeof count_text) != 0 || count_text[0] == '\0') {
        fprintf(stderr, "could not read the case count\n");
        return 1;
    }
    int count = atoi(count_text);
    fprintf(stderr, "running %d cases as agent %s\n", count, agent);
    for (int i = 1; i <= count; i++) {
        snprintf(url, sizeof url, "%s/runCase?case=%d&agent=%s", base, i, agent);
        if (run(cfg, url, 1, NULL, 0) != 0)
            fprintf(stderr, "case %d: connection did not end with a CLOSE event\n", i);
    }
    snprintf(url, sizeof url, "%s/updateReports?agent=%s", base, agent);
    int rc = run(cfg, url, 0, NULL, 0) == 0 ? 0 : 1;
    wsc_config_free(cfg);
    return rc;
}
