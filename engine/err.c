/* err.c: error messages carried in struct smelt_err. */
#include "smelt/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int smelt_fail(struct smelt_err *err, int code, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return code;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	err->code = code;
	return code;
}

int smelt_err_prefix(struct smelt_err *err, const char *fmt, ...)
{
	char prefix[SMELT_ERR_MAX];
	char old[SMELT_ERR_MAX];
	va_list ap;

	if (!err)
		return SMELT_EINVAL;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof(old));
	snprintf(err->msg, sizeof(err->msg), "%s: %s", prefix, old);
	return err->code ? err->code : SMELT_EINVAL;
}

void smelt_err_clear(struct smelt_err *err)
{
	if (!err)
		return;
	err->code = 0;
	err->msg[0] = '\0';
}

const char *smelt_code_name(int code)
{
	switch (code) {
	case SMELT_OK: return "ok";
	case SMELT_EINVAL: return "invalid input";
	case SMELT_EFORMAT: return "malformed file";
	case SMELT_EIO: return "I/O error";
	case SMELT_ENOMEM: return "out of memory";
	case SMELT_ENOTFOUND: return "not found";
	case SMELT_ECANCELED: return "cancelled";
	case SMELT_ENET: return "network error";
	case SMELT_EAUTH: return "authentication required";
	case SMELT_ECHECKSUM: return "checksum mismatch";
	case SMELT_EEXIST: return "already exists";
	case SMELT_EMISMATCH: return "mismatch";
	}
	return "error";
}
