/* tests/unit/check.h — a tiny unit-test harness: CHECK macros, a test runner, and the "N passed, N failed" line. */
#ifndef MK_TEST_CHECK_H
#define MK_TEST_CHECK_H

/*
 * Usage:
 *   static void test_parses_get(void) { CHECK(x == 1); CHECK_EQ_U(a, b); CHECK_STR(view, "get"); }
 *   int main(void) { RUN(test_parses_get); return check_summary("test_proto"); }
 *
 * A test passes when none of its CHECKs failed. Failures print file:line and the
 * expression; the summary prints "<suite>: N passed, N failed" and main returns
 * non-zero if any test failed.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check__passed, check__failed, check__cur_failed;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
            check__cur_failed++;                                                     \
        }                                                                            \
    } while (0)

#define CHECK_EQ_U(a, b)                                                               \
    do {                                                                               \
        uint64_t check__a = (uint64_t)(a), check__b = (uint64_t)(b);                   \
        if (check__a != check__b) {                                                    \
            fprintf(stderr, "  %s:%d: %s == %s failed: %" PRIu64 " != %" PRIu64 "\n", \
                    __FILE__, __LINE__, #a, #b, check__a, check__b);                   \
            check__cur_failed++;                                                       \
        }                                                                              \
    } while (0)

#define CHECK_EQ_I(a, b)                                                               \
    do {                                                                               \
        int64_t check__a = (int64_t)(a), check__b = (int64_t)(b);                      \
        if (check__a != check__b) {                                                    \
            fprintf(stderr, "  %s:%d: %s == %s failed: %" PRId64 " != %" PRId64 "\n", \
                    __FILE__, __LINE__, #a, #b, check__a, check__b);                   \
            check__cur_failed++;                                                       \
        }                                                                              \
    } while (0)

/* Compare a (pointer, length) byte range with a C string. */
#define CHECK_MEM(ptr, len, cstr)                                                      \
    do {                                                                               \
        const char *check__s = (cstr);                                                 \
        size_t check__n = strlen(check__s);                                            \
        if ((size_t)(len) != check__n || memcmp((ptr), check__s, check__n) != 0) {     \
            fprintf(stderr, "  %s:%d: %s is \"%.*s\", expected \"%s\"\n", __FILE__,    \
                    __LINE__, #ptr, (int)(len), (const char *)(ptr), check__s);        \
            check__cur_failed++;                                                       \
        }                                                                              \
    } while (0)

/* MK_TEST=substring runs only the tests whose name contains it (not run = not counted). */
#define RUN(fn)                                                                        \
    do {                                                                               \
        const char *check__only = getenv("MK_TEST");                                   \
        if (check__only && !strstr(#fn, check__only))                                  \
            break;                                                                     \
        check__cur_failed = 0;                                                         \
        fn();                                                                          \
        if (check__cur_failed) {                                                       \
            check__failed++;                                                           \
            fprintf(stderr, "FAIL %s\n", #fn);                                         \
        } else {                                                                       \
            check__passed++;                                                           \
        }                                                                              \
    } while (0)

static inline int check_summary(const char *suite)
{
    printf("%s: %d passed, %d failed\n", suite, check__passed, check__failed);
    return check__failed ? 1 : 0;
}

#endif /* MK_TEST_CHECK_H */
