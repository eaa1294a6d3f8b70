/* The test runner: the harness's registry, runner and main(). The tests are in test_*.c. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#define HARNESS_IMPLEMENTATION
#include "harness.h"
