/* progress.c: atomic progress records shared between a worker and a UI. */
#include "smelt/progress.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

const char *smelt_format_bytes(double bytes, char *buf, size_t size)
{
	static const char *const units[] = {"B", "kB", "MB", "GB", "TB", "PB"};
	int u = 0;

	while (bytes >= 1000 && u < 5) {
		bytes /= 1000;
		u++;
	}
	if (u == 0)
		snprintf(buf, size, "%.0f B", bytes);
	else
		snprintf(buf, size, "%.2f %s", bytes, units[u]);
	return buf;
}

uint64_t smelt_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void smelt_progress_init(struct smelt_progress *p)
{
	memset(p, 0, sizeof(*p));
	atomic_init(&p->phase, SMELT_PHASE_IDLE);
	atomic_init(&p->cancel, 0);
}

void smelt_progress_cancel(struct smelt_progress *p)
{
	atomic_store(&p->cancel, 1);
}

bool smelt_progress_canceled(const struct smelt_progress *p)
{
	return atomic_load(&p->cancel) != 0;
}

void smelt_progress_set_current(struct smelt_progress *p, const char *name)
{
	/* Seqlock: odd while the text changes, so readers retry. */
	atomic_fetch_add(&p->name_seq, 1);
	for (size_t i = 0; i + 1 < sizeof(p->current); i++) {
		((volatile char *)p->current)[i] = name[i];
		if (!name[i])
			break;
	}
	((volatile char *)p->current)[sizeof(p->current) - 1] = '\0';
	atomic_fetch_add(&p->name_seq, 1);
}

void smelt_progress_current(struct smelt_progress *p, char *buf, size_t size)
{
	if (!size)
		return;
	for (int tries = 0; tries < 100; tries++) {
		uint_fast32_t seq = atomic_load(&p->name_seq);
		size_t i;

		if (seq & 1)
			continue;
		for (i = 0; i + 1 < size && i < sizeof(p->current); i++) {
			buf[i] = ((volatile char *)p->current)[i];
			if (!buf[i])
				break;
		}
		buf[i < size ? i : size - 1] = '\0';
		if (atomic_load(&p->name_seq) == seq)
			return;
	}
	buf[0] = '\0';
}

double smelt_progress_elapsed(const struct smelt_progress *p)
{
	uint64_t start = atomic_load(&p->start_ns), end = atomic_load(&p->end_ns);

	if (!start)
		return 0;
	return (double)((end ? end : smelt_now_ns()) - start) / 1e9;
}

double smelt_progress_fraction(const struct smelt_progress *p)
{
	double total = (double)atomic_load(&p->bytes_read_total) +
		       (double)atomic_load(&p->bytes_written_total);
	double done = (double)atomic_load(&p->bytes_read) + (double)atomic_load(&p->bytes_written);

	if (total <= 0)
		return 0;
	return done >= total ? 1.0 : done / total;
}

double smelt_progress_rate(const struct smelt_progress *p)
{
	double t = smelt_progress_elapsed(p);
	double done = (double)atomic_load(&p->bytes_read) + (double)atomic_load(&p->bytes_written);

	return t > 0 ? done / t : 0;
}

double smelt_progress_eta(const struct smelt_progress *p)
{
	double f = smelt_progress_fraction(p), t = smelt_progress_elapsed(p);

	if (f <= 0.001 || t <= 0.2)
		return -1;
	return t * (1 - f) / f;
}

uint64_t smelt_progress_sample_rss(struct smelt_progress *p)
{
	char line[256];
	uint64_t kb = 0;
	FILE *f = fopen("/proc/self/status", "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long v;

		if (sscanf(line, "RssAnon: %llu kB", &v) == 1) {
			kb = v;
			break;
		}
	}
	fclose(f);
	if (p) {
		uint_fast64_t peak = atomic_load(&p->peak_rss_anon_kb);

		while (kb > peak && !atomic_compare_exchange_weak(&p->peak_rss_anon_kb, &peak, kb))
			;
	}
	return kb;
}
