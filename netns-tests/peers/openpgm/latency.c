/*
 * pgmpeer --latency: the OpenPGM side of the one-way latency harness
 * (netns-tests/src/bin/latency.rs), through OpenPGM's public API only.
 *
 *   sender:   pgmpeer send --latency --pace MSGS --sizes N --count C ...
 *   receiver: pgmpeer recv --latency --sizes N --count C --skip K --latency-out PATH ...
 *
 * Message i (N >= 16 bytes, one TPDU) is BE64(i) || BE64(t) || zeros, t being
 * CLOCK_MONOTONIC in ns read just before pgm_send (one clock for every network
 * namespace of the machine).  The sender sends message i at start + i / MSGS
 * (clock_nanosleep TIMER_ABSTIME, timer slack 1 ns), so the rate is exact; the
 * NAK thread of the pattern sender serves repairs and SPMs.  A message already
 * due is sent without sleeping, as the Rust peers' pacer does.  The receiver reads
 * the clock as soon as pgm_recvmsgv returns a message and writes now - t of
 * every message from index K on to PATH as native int64 ns, in arrival order.
 *
 * Output: sender `SENT count=C seconds=T late_p50_us=.. late_p99_us=..
 * late_max_us=..` (how late messages went to pgm_send against their deadline);
 * receiver `RESULT received=R missing=M bad=B lost_events=L samples=S
 * status=ok|fail`.
 */
#define _GNU_SOURCE
#define HAVE_POLL 1
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <pgm/pgm.h>

#include "pgmpeer.h"

#define LAT_HEADER 16

static int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_i64(const void* a, const void* b)
{
	const int64_t x = *(const int64_t*)a, y = *(const int64_t*)b;
	return (x > y) - (x < y);
}

/* Nearest-rank quantile of sorted v[0..n), in microseconds. */
static double quantile_us(const int64_t* v, uint64_t n, double q)
{
	if (n == 0)
		return 0;
	uint64_t rank = (uint64_t)(q * (double)n + 0.999999999);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return (double)v[rank - 1] / 1e3;
}

int do_latency_send(const struct opts* o)
{
	const size_t size = o->pat.fixed_size;
	if (size < LAT_HEADER || o->pace <= 0) {
		fprintf(stderr, "pgmpeer: --latency send needs --sizes N (N >= %d) and --pace\n", LAT_HEADER);
		return 2;
	}
	pgm_sock_t* sock = open_socket(o, true);
	if (!sock)
		return 2;
	int msss = 0;
	socklen_t ml = sizeof(msss);
	if (!pgm_getsockopt(sock, IPPROTO_PGM, PGM_MSSS, &msss, &ml) || size > (size_t)msss) {
		fprintf(stderr, "pgmpeer: --latency messages must fit one TPDU (PGM_MSSS %d)\n", msss);
		pgm_close(sock, false);
		return 2;
	}
	/* Unfragmented, so placed where OpenPGM's SSE2 copy wants it (pgmpeer.c). */
	uint8_t* mem = NULL;
	int64_t* late = malloc(o->count * sizeof(int64_t));
	if (posix_memalign((void**)&mem, 64, size + 64) != 0 || !late) {
		pgm_close(sock, false);
		return 2;
	}
	uint8_t* const buf = mem + (sizeof(struct pgm_sk_buff_t) + HDR_UNFRAGMENTED) % 16;
	memset(buf, 0, size);
	struct sender_ctx ctx = { .sock = sock, .stop = 0, .verbose = o->verbose };
	pthread_t th;
	pthread_create(&th, NULL, sender_recv_thread, &ctx);
	prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);

	const int64_t start = mono_ns() + 1000000;
	uint64_t sent = 0;
	int rc = 0;
	for (uint64_t i = 0; i < o->count && !g_signal; i++) {
		const int64_t due = start + (int64_t)((__int128)i * 1000000000 / o->pace);
		const struct timespec ts = { .tv_sec = due / 1000000000, .tv_nsec = due % 1000000000 };
		/* Late already: no sleep (a timer set in the past still costs a timer interrupt). */
		if (mono_ns() < due)
			while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR && !g_signal)
				;
		const int64_t t = mono_ns();
		late[i] = t - due;
		put_be64(buf, i);
		put_be64(buf + 8, (uint64_t)t);
		for (;;) {
			size_t wrote = 0;
			const int status = pgm_send(sock, buf, size, &wrote);
			if (status == PGM_IO_STATUS_NORMAL)
				break;
			if (g_signal) {
				rc = 1;
				goto done;
			}
			if (status == PGM_IO_STATUS_WOULD_BLOCK || status == PGM_IO_STATUS_CONGESTION ||
			    status == PGM_IO_STATUS_RATE_LIMITED) {
				pgm_wait(sock, POLLOUT, 1);
				continue;
			}
			fprintf(stderr, "pgmpeer: pgm_send failed with status %d at message %" PRIu64 "\n", status, i);
			rc = 1;
			goto done;
		}
		sent++;
	}
done:;
	const double secs = (double)(mono_ns() - start) / 1e9;
	qsort(late, sent, sizeof(int64_t), cmp_i64);
	printf("SENT count=%" PRIu64 " seconds=%.3f late_p50_us=%.1f late_p99_us=%.1f late_max_us=%.1f\n", sent,
	    secs, quantile_us(late, sent, 0.5), quantile_us(late, sent, 0.99), quantile_us(late, sent, 1.0));
	fflush(stdout);
	const int64_t until = mono_ns() + (int64_t)(o->linger * 1e9);
	if (sent == o->count)
		g_signal = 0;
	while (mono_ns() < until && !g_signal)
		usleep(20000);
	ctx.stop = 1;
	pthread_join(th, NULL);
	pgm_close(sock, true);
	free(mem);
	free(late);
	return rc;
}

int do_latency_recv(const struct opts* o)
{
	if (!o->latency_out) {
		fprintf(stderr, "pgmpeer: --latency recv needs --latency-out PATH\n");
		return 2;
	}
	pgm_sock_t* sock = open_socket(o, false);
	if (!sock)
		return 2;
	struct pgm_msgv_t msgv; /* one APDU per call: see do_recv */
	int64_t* samples = malloc((o->count > o->skip ? o->count - o->skip : 1) * sizeof(int64_t));
	uint64_t next = 0, received = 0, missing = 0, bad = 0, lost_events = 0, n = 0;
	const int64_t deadline = mono_ns() + (int64_t)(o->timeout * 1e9);

	while (next < o->count && !g_signal) {
		const int64_t now0 = mono_ns();
		if (now0 >= deadline)
			break;
		const int cap = (int)((deadline - now0) / 1000000) + 1;
		size_t bytes = 0;
		pgm_error_t* err = NULL;
		const int status = pgm_recvmsgv(sock, &msgv, 1, 0, &bytes, &err);
		switch (status) {
		case PGM_IO_STATUS_NORMAL: {
			const int64_t now = mono_ns();
			uint8_t head[LAT_HEADER];
			size_t len = 0;
			for (uint32_t j = 0; j < msgv.msgv_len; j++) {
				const struct pgm_sk_buff_t* skb = msgv.msgv_skb[j];
				if (len < LAT_HEADER) {
					const size_t k = skb->len < LAT_HEADER - len ? skb->len : LAT_HEADER - len;
					memcpy(head + len, skb->data, k);
				}
				len += skb->len;
			}
			if (len < LAT_HEADER) {
				bad++;
				break;
			}
			const uint64_t idx = get_be64(head);
			if (idx < next || idx >= o->count) {
				bad++;
				break;
			}
			missing += idx - next;
			next = idx + 1;
			received++;
			if (idx >= o->skip)
				samples[n++] = now - (int64_t)get_be64(head + 8);
			break;
		}
		case PGM_IO_STATUS_TIMER_PENDING: {
			const int ms = remain_ms(sock, PGM_TIME_REMAIN);
			pgm_wait(sock, POLLIN, ms < cap ? ms : cap);
			break;
		}
		case PGM_IO_STATUS_RATE_LIMITED: {
			const int ms = remain_ms(sock, PGM_RATE_REMAIN);
			pgm_wait(sock, POLLIN, ms < cap ? ms : cap);
			break;
		}
		case PGM_IO_STATUS_WOULD_BLOCK:
			pgm_wait(sock, POLLIN, cap < 1000 ? cap : 1000);
			break;
		case PGM_IO_STATUS_RESET:
			lost_events++;
			if (err)
				pgm_error_free(err);
			break;
		default:
			if (err)
				pgm_error_free(err);
			usleep(1000);
			break;
		}
	}
	missing += o->count - next;
	int rc = 0;
	FILE* f = fopen(o->latency_out, "wb");
	if (!f || fwrite(samples, sizeof(int64_t), n, f) != n) {
		fprintf(stderr, "pgmpeer: writing %s failed\n", o->latency_out);
		rc = 2;
	}
	if (f)
		fclose(f);
	const bool ok = missing == 0 && bad == 0 && lost_events == 0;
	printf("RESULT received=%" PRIu64 " missing=%" PRIu64 " bad=%" PRIu64 " lost_events=%" PRIu64
	       " samples=%" PRIu64 " status=%s\n",
	    received, missing, bad, lost_events, n, ok ? "ok" : "fail");
	fflush(stdout);
	pgm_close(sock, true);
	free(samples);
	return rc ? rc : ok ? 0 : 1;
}
