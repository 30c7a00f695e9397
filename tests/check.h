/*
 * check.h: the unit-test runner. A test program defines tests with
 * TEST(name) { ... } and lists them in main via RUN(name); CHECK* record a
 * failure and continue; the program ends with check_summary(), which prints
 * "N passed, N failed" and returns the exit code.
 */
#ifndef SMELT_CHECK_H
#define SMELT_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

extern int check_failures; /* failures in the current test */

void check_fail(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void check_run(const char *name, void (*fn)(void));
int check_summary(void);

/* Path under the shared reference folder ($SMELT_SHARED) into buf. */
const char *check_shared(const char *rel, char *buf, size_t size);
/* A fresh temporary folder for this test (removed at exit unless
 * SMELT_KEEP_TMP is set). */
const char *check_tmpdir(void);

#define TEST(name) static void name(void)
#define RUN(name) check_run(#name, name)

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			check_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);                        \
	} while (0)

#define CHECK_MSG(cond, ...)                                                                       \
	do {                                                                                       \
		if (!(cond))                                                                       \
			check_fail(__FILE__, __LINE__, __VA_ARGS__);                               \
	} while (0)

#define CHECK_EQ_INT(a, b)                                                                         \
	do {                                                                                       \
		long long check_a_ = (long long)(a), check_b_ = (long long)(b);                    \
		if (check_a_ != check_b_)                                                          \
			check_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, check_a_, \
				   check_b_);                                                      \
	} while (0)

#define CHECK_STR_CONTAINS(hay, needle)                                                            \
	do {                                                                                       \
		const char *check_h_ = (hay), *check_n_ = (needle);                                \
		if (!check_h_ || !strstr(check_h_, check_n_))                                      \
			check_fail(__FILE__, __LINE__, "'%s' does not contain '%s'",               \
				   check_h_ ? check_h_ : "(null)", check_n_);                      \
	} while (0)

#define CHECK_NEAR(a, b, tol)                                                                      \
	do {                                                                                       \
		double check_a_ = (a), check_b_ = (b);                                             \
		if (!(fabs(check_a_ - check_b_) <= (tol)))                                         \
			check_fail(__FILE__, __LINE__, "%s ~ %s: %.9g vs %.9g (tol %g)", #a, #b,   \
				   check_a_, check_b_, (double)(tol));                             \
	} while (0)

#endif
