/*
 * A tiny test harness for the C tests of libwsclient.
 *
 *   TEST(name) { ... }            defines and registers a test (any .c file that includes this)
 *   CHECK(cond)                   fails the test unless cond holds
 *   CHECK_EQ(a, b)                fails unless a == b (compared as long long; prints both)
 *   CHECK_NE(a, b), CHECK_GE(a, b), CHECK_LE(a, b)
 *   CHECK_STATUS(expr, status)    fails unless a wsc_status equals status (prints the names)
 *   CHECK_OK(expr)                CHECK_STATUS(expr, WSC_OK)
 *   CHECK_STR_EQ(a, b)            fails unless two NUL-terminated strings are equal
 *   CHECK_MEM_EQ(a, alen, b, blen) fails unless two byte ranges are equal (prints the first
 *                                 differing offset)
 *   FAIL(fmt, ...)                fails the test with a message
 *
 * Every failure prints `file:line: <what failed>` and the calling thread's wsc_last_error(),
 * then ends the test at once (a failed check is fatal for its test).
 *
 * Exactly one translation unit defines HARNESS_IMPLEMENTATION before including this header; it
 * gets the registry, the runner and main():
 *
 *   tests [--list] [--no-fork] [NAME...]
 *
 * runs all tests (or only the named ones) in registration order (file, then line), prints one
 * line per test and finally the line `N passed, N failed`. Exit status 0 iff nothing failed.
 *
 * By default each test runs in its own forked child process, so a crash or a hang fails only
 * that test, and sanitizer or valgrind findings (leaks included) at the child's exit are
 * attributed to the test that caused them: a child that exits non-zero fails its test. A test
 * that runs longer than WSC_TEST_TIMEOUT seconds (default 120) is killed and fails.
 * --no-fork (or WSC_TEST_NO_FORK=1) runs the tests in this process instead, for debuggers.
 */
#ifndef WSC_TEST_HARNESS_H
#define WSC_TEST_HARNESS_H

#include <stdarg.h>
#include <stddef.h>

#include "wsclient.h"

typedef void (*harness_test_fn)(void);

void harness_register(const char *name, harness_test_fn fn, const char *file, int line);

/* Reports a failed check at file:line and ends the current test; never returns. */
__attribute__((noreturn, format(printf, 3, 4))) void harness_fail(const char *file, int line, const char *fmt, ...);

/* Prints a diagnostic line for the current test (kept short: one line). */
__attribute__((format(printf, 1, 2))) void harness_log(const char *fmt, ...);

#define TEST(name)                                                                               \
    static void harness_test_##name(void);                                                      \
    __attribute__((constructor)) static void harness_register_##name(void) {                    \
        harness_register(#name, harness_test_##name, __FILE__, __LINE__);                       \
    }                                                                                            \
    static void harness_test_##name(void)

#define FAIL(...) harness_fail(__FILE__, __LINE__, __VA_ARGS__)

#define CHECK(cond)                                                                              \
    do {                                                                                         \
        if (!(cond)) harness_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);                       \
    } while (0)

#define HARNESS_CMP_(a, op, b)                                                                   \
    do {                                                                                         \
        long long harness_a_ = (long long)(a);                                                   \
        long long harness_b_ = (long long)(b);                                                   \
        if (!(harness_a_ op harness_b_))                                                         \
            harness_fail(__FILE__, __LINE__, "CHECK(%s %s %s): %lld vs %lld", #a, #op, #b,       \
                         harness_a_, harness_b_);                                                \
    } while (0)

#define CHECK_EQ(a, b) HARNESS_CMP_(a, ==, b)
#define CHECK_NE(a, b) HARNESS_CMP_(a, !=, b)
#define CHECK_GE(a, b) HARNESS_CMP_(a, >=, b)
#define CHECK_LE(a, b) HARNESS_CMP_(a, <=, b)

#define CHECK_STATUS(expr, expected)                                                             \
    do {                                                                                         \
        wsc_status harness_got_ = (expr);                                                        \
        wsc_status harness_want_ = (expected);                                                   \
        if (harness_got_ != harness_want_)                                                       \
            harness_fail(__FILE__, __LINE__, "CHECK_STATUS(%s, %s): got %s (%d), want %s (%d)",  \
                         #expr, #expected, wsc_status_str(harness_got_), (int)harness_got_,      \
                         wsc_status_str(harness_want_), (int)harness_want_);                     \
    } while (0)

#define CHECK_OK(expr) CHECK_STATUS(expr, WSC_OK)

#define CHECK_STR_EQ(a, b)                                                                       \
    do {                                                                                         \
        const char *harness_sa_ = (a);                                                           \
        const char *harness_sb_ = (b);                                                           \
        harness_check_str_eq(__FILE__, __LINE__, #a, #b, harness_sa_, harness_sb_);              \
    } while (0)

#define CHECK_MEM_EQ(a, alen, b, blen)                                                           \
    harness_check_mem_eq(__FILE__, __LINE__, #a, #b, (const void *)(a), (size_t)(alen),         \
                         (const void *)(b), (size_t)(blen))

void harness_check_str_eq(const char *file, int line, const char *ea, const char *eb, const char *a,
                          const char *b);
void harness_check_mem_eq(const char *file, int line, const char *ea, const char *eb, const void *a,
                          size_t alen, const void *b, size_t blen);

#ifdef HARNESS_IMPLEMENTATION

#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Exit status of a test child whose check failed (distinct from ASan's 1, LSan's 23). */
#define HARNESS_EXIT_FAILED 3

struct harness_test {
    const char *name;
    harness_test_fn fn;
    const char *file;
    int line;
};

static struct harness_test *harness_tests;
static size_t harness_count, harness_cap;
static int harness_forked = 1;
static const char *harness_current = "?";
static jmp_buf harness_jmp;
static pthread_t harness_main_thread;

void harness_register(const char *name, harness_test_fn fn, const char *file, int line) {
    if (harness_count == harness_cap) {
        size_t cap = harness_cap ? harness_cap * 2 : 64;
        struct harness_test *grown = realloc(harness_tests, cap * sizeof *grown);
        if (!grown) {
            fprintf(stderr, "harness: out of memory\n");
            abort();
        }
        harness_tests = grown;
        harness_cap = cap;
    }
    harness_tests[harness_count++] = (struct harness_test){name, fn, file, line};
}

void harness_log(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stdout, "    [%s] ", harness_current);
    vfprintf(stdout, fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
    fflush(stdout);
}

void harness_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stdout, "    %s:%d: [%s] ", file, line, harness_current);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    const char *detail = wsc_last_error();
    fprintf(stdout, "\n        wsc_last_error(): \"%s\"\n", detail ? detail : "(NULL)");
    fflush(stdout);
    fflush(stderr);
    if (harness_forked) {
        /* Other threads of the test may still run: leave at once, without exit handlers. */
        _exit(HARNESS_EXIT_FAILED);
    }
    if (!pthread_equal(pthread_self(), harness_main_thread)) {
        fprintf(stdout, "    (check failed on a non-main thread in --no-fork mode: aborting)\n");
        fflush(stdout);
        abort();
    }
    longjmp(harness_jmp, 1);
}

void harness_check_str_eq(const char *file, int line, const char *ea, const char *eb, const char *a,
                          const char *b) {
    if (a == NULL || b == NULL) {
        harness_fail(file, line, "CHECK_STR_EQ(%s, %s): %s is NULL", ea, eb, a == NULL ? ea : eb);
    }
    if (strcmp(a, b) != 0) {
        harness_fail(file, line, "CHECK_STR_EQ(%s, %s): \"%s\" vs \"%s\"", ea, eb, a, b);
    }
}

void harness_check_mem_eq(const char *file, int line, const char *ea, const char *eb, const void *a,
                          size_t alen, const void *b, size_t blen) {
    if (alen != blen) {
        harness_fail(file, line, "CHECK_MEM_EQ(%s, %s): lengths differ: %zu vs %zu", ea, eb, alen, blen);
    }
    if (alen == 0) return;
    if (a == NULL || b == NULL) {
        harness_fail(file, line, "CHECK_MEM_EQ(%s, %s): NULL pointer with length %zu", ea, eb, alen);
    }
    const unsigned char *pa = a, *pb = b;
    for (size_t i = 0; i < alen; i++) {
        if (pa[i] != pb[i]) {
            harness_fail(file, line, "CHECK_MEM_EQ(%s, %s): %zu bytes, first difference at offset %zu: 0x%02x vs 0x%02x",
                         ea, eb, alen, i, pa[i], pb[i]);
        }
    }
}

static int harness_cmp(const void *x, const void *y) {
    const struct harness_test *a = x, *b = y;
    int c = strcmp(a->file, b->file);
    return c ? c : (a->line > b->line) - (a->line < b->line);
}

static double harness_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Runs one test; returns 1 when it passed. `why` receives a reason when it failed. */
static int harness_run_one(const struct harness_test *t, double timeout_s, char *why, size_t whylen) {
    harness_current = t->name;
    fflush(stdout);
    fflush(stderr);
    if (!harness_forked) {
        if (setjmp(harness_jmp) == 0) {
            t->fn();
            return 1;
        }
        snprintf(why, whylen, "check failed");
        return 0;
    }
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(why, whylen, "fork failed");
        return 0;
    }
    if (pid == 0) {
        t->fn();
        fflush(stdout);
        exit(0); /* exit handlers run: LeakSanitizer / valgrind check this child now */
    }
    double start = harness_now_ms();
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) break;
        if (r < 0) {
            snprintf(why, whylen, "waitpid failed");
            return 0;
        }
        if (harness_now_ms() - start > timeout_s * 1e3) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            snprintf(why, whylen, "timed out after %.0f s (killed)", timeout_s);
            return 0;
        }
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (WIFEXITED(status)) {
        int code = WEXITSTATUS(status);
        if (code == 0) return 1;
        if (code == HARNESS_EXIT_FAILED)
            snprintf(why, whylen, "check failed");
        else
            snprintf(why, whylen, "exit status %d (sanitizer/valgrind error or leak? see above)", code);
        return 0;
    }
    if (WIFSIGNALED(status)) {
        snprintf(why, whylen, "killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
        return 0;
    }
    snprintf(why, whylen, "unknown wait status %d", status);
    return 0;
}

int main(int argc, char **argv) {
    harness_main_thread = pthread_self();
    setvbuf(stdout, NULL, _IOLBF, 0);
    int list = 0;
    const char *nf = getenv("WSC_TEST_NO_FORK");
    if (nf && *nf && strcmp(nf, "0") != 0) harness_forked = 0;
    double timeout_s = 120;
    const char *to = getenv("WSC_TEST_TIMEOUT");
    if (to && atof(to) > 0) timeout_s = atof(to);

    qsort(harness_tests, harness_count, sizeof *harness_tests, harness_cmp);

    /* Selected tests: by name, in the order given; none named means all. */
    size_t nsel = 0;
    const struct harness_test **sel = calloc(harness_count + (size_t)argc, sizeof *sel);
    if (!sel) return 2;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--list") == 0) {
            list = 1;
        } else if (strcmp(argv[i], "--no-fork") == 0) {
            harness_forked = 0;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "usage: %s [--list] [--no-fork] [TEST...]\n", argv[0]);
            free(sel);
            return 2;
        } else {
            size_t j;
            for (j = 0; j < harness_count; j++) {
                if (strcmp(harness_tests[j].name, argv[i]) == 0) break;
            }
            if (j == harness_count) {
                fprintf(stderr, "no test named %s (see --list)\n", argv[i]);
                free(sel);
                return 2;
            }
            sel[nsel++] = &harness_tests[j];
        }
    }
    if (nsel == 0) {
        for (size_t j = 0; j < harness_count; j++) sel[nsel++] = &harness_tests[j];
    }
    if (list) {
        for (size_t i = 0; i < nsel; i++) printf("%s\n", sel[i]->name);
        free(sel);
        free(harness_tests);
        return 0;
    }

    int passed = 0, failed = 0;
    for (size_t i = 0; i < nsel; i++) {
        char why[256] = "";
        double start = harness_now_ms();
        int ok = harness_run_one(sel[i], timeout_s, why, sizeof why);
        double ms = harness_now_ms() - start;
        harness_current = "?";
        if (ok) {
            passed++;
            printf("PASS %s (%.0f ms)\n", sel[i]->name, ms);
        } else {
            failed++;
            printf("FAIL %s (%.0f ms): %s\n", sel[i]->name, ms, why);
        }
        fflush(stdout);
    }
    printf("%d passed, %d failed\n", passed, failed);
    fflush(stdout);
    free(sel);
    free(harness_tests);
    return failed ? 1 : 0;
}

#endif /* HARNESS_IMPLEMENTATION */
#endif /* WSC_TEST_HARNESS_H */
