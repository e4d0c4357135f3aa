/* sf_test.h — a minimal C test harness: CHECK macros that report file:line and a closing
 * "N passed, N failed" line; main returns non-zero on any failure. */
#ifndef SF_TEST_H
#define SF_TEST_H

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"

/* unused attribute: a test may use CHECK without the per-case bookkeeping */
static int sf_test_passed __attribute__((unused)), sf_test_failed __attribute__((unused)), sf_test_case_failed __attribute__((unused));

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
