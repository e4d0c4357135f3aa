/* sf_test.h — a minimal C test harness: CHECK macros that report file:line and a closing
 * "N passed, N failed" line; main returns non-zero on any failure. */
#ifndef SF_TEST_H
#define SF_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "core/error.h"

/* unused attribute: a test may use CHECK without the per-case bookkeeping */
static int sf_test_passed __attribute__((unused)), sf_test_failed __attribute__((unused)), sf_test_case_failed __attribute__((unused));

/* the device of the device tests: $SFWB_TEST_DEVICE ("cuda:0" under `make gpu-check`), else emu:0 */
static inline const char *sf_test_device_name(void) {
  const char *d = getenv("SFWB_TEST_DEVICE");
  return d && *d ? d : "emu:0";
}

/* parses sf_test_device_name() and checks that its backend is there; 0, or -1 after printing why (a
 * wrong or absent device makes the test fail with the reason, never pass on nothing) */
static inline int __attribute__((unused)) sf_test_device(sf_device *d) {
  const char *name = sf_test_device_name();
  if (sf_device_parse(name, d) || !sf_backend_for(*d) || d->type == SF_DEV_CPU) {
    fprintf(stderr, "test device %s (SFWB_TEST_DEVICE) is not usable: %s\n", name,
            d->type == SF_DEV_CPU ? "it must be a cuda:N or emu:N device" : sf_last_error());
    return -1;
  }
  sf_clear_error();
  return 0;
}

#define CHECK(cond)                                                                       \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      fprintf(stderr, "  %s:%d: CHECK(%s) failed [last error: %s]\n", __FILE__, __LINE__, \
              #cond, sf_last_error());                                                    \
      sf_test_case_failed = 1;                                                            \
    }                                                                                     \
  } while (0)

#define CHECK_NEAR(a, b, tol)                                                                   \
  do {                                                                                          \
    double _a = (a), _b = (b);                                                                  \
    if (!(fabs(_a - _b) <= (tol))) {                                                            \
      fprintf(stderr, "  %s:%d: %s = %.9g, expected %.9g (tol %g)\n", __FILE__, __LINE__, #a, _a, \
              _b, (double)(tol));                                                               \
      sf_test_case_failed = 1;                                                                  \
    }                                                                                           \
  } while (0)

/* the error message of the last failed call must contain `needle` */
#define CHECK_ERROR_MENTIONS(needle)                                                          \
  do {                                                                                        \
    if (!strstr(sf_last_error(), (needle))) {                                                 \
      fprintf(stderr, "  %s:%d: error '%s' does not mention '%s'\n", __FILE__, __LINE__,     \
              sf_last_error(), (needle));                                                     \
      sf_test_case_failed = 1;                                                                \
    }                                                                                         \
  } while (0)

#define RUN(fn)                                                             \
  do {                                                                      \
    sf_test_case_failed = 0;                                                \
    sf_clear_error();                                                       \
    fn();                                                                   \
    if (sf_test_case_failed) { sf_test_failed++; printf("FAIL %s\n", #fn); } \
    else { sf_test_passed++; printf("ok   %s\n", #fn); }                     \
  } while (0)

#define TEST_DONE()                                                        \
  do {                                                                     \
    printf("%d passed, %d failed\n", sf_test_passed, sf_test_failed);     \
    return sf_test_failed ? 1 : 0;                                         \
  } while (0)

#endif
