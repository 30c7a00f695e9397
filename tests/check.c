/* check.c: the tiny unit-test runner behind check.h. */
#include "check.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

int check_failures;
static int passed, failed;
static char tmp_root[4096];

void check_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "  %s:%d: ", file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	check_failures++;
}

void check_run(const char *name, void (*fn)(void))
{
	check_failures = 0;
	fn();
	if (check_failures) {
		failed++;
		printf("FAIL %s\n", name);
	} else {
		passed++;
		printf("ok   %s\n", name);
	}
	fflush(stdout);
}

static void remove_tmp(void)
{
	char cmd[4200];

	if (!tmp_root[0] || getenv("SMELT_KEEP_TMP"))
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp_root);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmp_root);
}

const char *check_tmpdir(void)
{
	if (!tmp_root[0]) {
		const char *base = getenv("TMPDIR");

		snprintf(tmp_root, sizeof(tmp_root), "%s/smelt-test-XXXXXX", base ? base : "/tmp");
		if (!mkdtemp(tmp_root)) {
			perror("mkdtemp");
			exit(2);
		}
		atexit(remove_tmp);
	}
	return tmp_root;
}

const char *check_shared(const char *rel, char *buf, size_t size)
{
	const char *root = getenv("SMELT_SHARED");

	snprintf(buf, size, "%s/%s", root ? root : "../shared", rel);
	return buf;
}

int check_summary(void)
{
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
