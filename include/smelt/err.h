/*
 * err.h: how every fallible engine function reports failure.
 *
 * Convention: a function that can fail returns int: 0 (SMELT_OK) on success,
 * a negative SMELT_E* code on failure, and writes one human-readable line into
 * the caller's struct smelt_err (naming the file, tensor or key and the rule
 * broken). The message never ends with a newline. A NULL err is allowed and
 * discards the message. Nothing in the engine aborts on user input.
 */
#ifndef SMELT_ERR_H
#define SMELT_ERR_H

#include <stddef.h>

enum smelt_code {
	SMELT_OK = 0,
	SMELT_EINVAL = -1,    /* bad user input: recipe, parameter, argument */
	SMELT_EFORMAT = -2,   /* malformed file (safetensors, JSON, index) */
	SMELT_EIO = -3,       /* read/write/open failure, disk full */
	SMELT_ENOMEM = -4,    /* allocation failed */
	SMELT_ENOTFOUND = -5, /* file, tensor, model or repository not found */
	SMELT_ECANCELED = -6, /* cancelled by the user */
	SMELT_ENET = -7,      /* network or HTTP failure */
	SMELT_EAUTH = -8,     /* missing or rejected token */
	SMELT_ECHECKSUM = -9, /* content does not match its hash */
	SMELT_EEXIST = -10,   /* destination exists and may not be replaced */
	SMELT_EMISMATCH = -11 /* shapes, dtypes or vocabularies disagree */
};

#define SMELT_ERR_MAX 1024

struct smelt_err {
	int code;                /* last code set, 0 when clear */
	char msg[SMELT_ERR_MAX]; /* NUL-terminated message */
};

/* Format a message into err (if non-NULL) and return code. Use as
 * `return smelt_fail(err, SMELT_EINVAL, "%s: ...", path);`. */
int smelt_fail(struct smelt_err *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Prefix an existing message with "prefix: " (e.g. the file name), keeping
 * the code. Returns err->code (or SMELT_EINVAL when err is NULL). */
int smelt_err_prefix(struct smelt_err *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Clear err. */
void smelt_err_clear(struct smelt_err *err);

/* A short name for a code ("invalid input", "I/O error", ...). */
const char *smelt_code_name(int code);

#endif
