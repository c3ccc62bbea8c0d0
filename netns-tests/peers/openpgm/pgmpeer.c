/*
 * pgmpeer: a small OpenPGM 5.3 peer (sender / receiver) used as the reference
 * implementation in interoperability tests of the Rust PGM suite.
 *
 * It uses OpenPGM ONLY through its public API headers (/usr/include/pgm-5.3);
 * it contains no OpenPGM source.  Build with ./build.sh.
 *
 * Subcommands
 *   pgmpeer send    --network "10.0.0.2;239.192.0.1" [options]
 *   pgmpeer recv    --network "10.0.0.3;239.192.0.1" [options]
 *   pgmpeer pattern [--count N] [--seed S] [--sizes N|--max-size M]   (dump test vectors)
 *   pgmpeer send|recv --latency ...   one-way latency mode (latency.c)
 *   Run `pgmpeer --help` for every option.
 *
 * ---------------------------------------------------------------------------
 * MESSAGE PATTERN (version 1) -- also documented in PATTERN.md.  Any sender or
 * receiver that implements exactly this interoperates with pgmpeer.
 *
 *   Parameters: seed S (u64, default 1), max size M (default 8192),
 *               fixed size F (0 = mixed sizes, the default).
 *   Messages are numbered i = 0, 1, 2, ... (u64) in send order; one message is
 *   one APDU (one pgm_send call).
 *   All arithmetic is modulo 2^64.
 *
 *   Per message i, a SplitMix64 generator:
 *       state = S ^ (i * 0xD1B54A32D192ED03)
 *       next():  state += 0x9E3779B97F4A7C15
 *                z = state
 *                z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
 *                z = (z ^ (z >> 27)) * 0x94D049BB133111EB
 *                return z ^ (z >> 31)
 *   r0   = next()                                   (always drawn, even if F > 0)
 *   size = F > 0 ? F : 1 + (r0 % M)                 (so 1..M bytes)
 *   body = BE64(i) || BE64(next()) || BE64(next()) || ...   (BE64 = 8 bytes big-endian)
 *   message = the first `size` bytes of body       (a 3-byte message is the first 3
 *                                                   bytes of BE64(i))
 *
 * A receiver knows S, M, F and the expected next index, so it checks the exact
 * length and every byte.  When loss is unrecoverable (PGM_IO_STATUS_RESET) the
 * receiver resynchronises on the index in the first 8 bytes of the next message
 * of size >= 8 (counting the skipped indexes as missing).
 * ---------------------------------------------------------------------------
 *
 * Output (stdout, one line each, machine readable):
 *   sender:   SENT count=N bytes=B seconds=T rate_msgs=R
 *   receiver: RESULT received=N bytes=B bad=K lost_events=L missing=M first_index=I
 *             last_index=J seconds=T status=ok|fail
 * The receiver exits 0 only if exactly --count messages arrived, in order,
 * intact, without any loss event.  Exit codes: 0 ok, 1 verification failed or
 * timed out, 2 usage / setup error.
 *
 * SSE2 copy bug (OpenPGM 5.3.128 as built by Debian, x86_64): when pgm_send
 * fragments an APDU, it copies each fragment into its transmit-window buffer
 * with an SSE2 checksum-and-copy routine that aligns the SOURCE to 16 bytes and
 * then stores to the destination with aligned stores (movaps).  The process
 * dies with SIGSEGV unless source and destination are congruent modulo 16.
 * The destination of a fragment's payload is malloc (16-aligned)
 * + sizeof(struct pgm_sk_buff_t) (184) + the PGM header, data header,
 * OPT_LENGTH and OPT_FRAGMENT (16 + 8 + 4 + 16 = 44) = 4 modulo 16.  So the
 * sender (1) uses an MTU whose fragment payload (PGM_MSS) is a multiple of 16,
 * so every fragment's source has the same alignment (default MTU 1496 for
 * PGM/UDP, 1488 for PGM/IP: PGM_MSS = 1424 in both cases), and (2) places each
 * fragmented message (longer than PGM_MSSS, the largest unfragmented TSDU) at an
 * address = 4 mod 16, and each unfragmented one at 184 + 24 = 0 mod 16, where
 * the same routine copies it.
 *
 * Threads: OpenPGM's sender answers NAKs and emits heartbeat SPMs only inside
 * pgm_recv*(), so `send` runs a second thread that calls pgm_recvmsgv in a loop
 * until the sender closes (after --linger seconds, or earlier on SIGINT/SIGTERM
 * once all messages are sent).
 */
#define _GNU_SOURCE
#define HAVE_POLL 1
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <pgm/pgm.h>

#include "pgmpeer.h"

/* ------------------------------------------------------------------------- */
/* Pattern                                                                    */

static uint64_t sm_next(uint64_t* state)
{
	uint64_t z;
	*state += UINT64_C(0x9E3779B97F4A7C15);
	z = *state;
	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

void put_be64(uint8_t* p, uint64_t v)
{
	for (int k = 7; k >= 0; k--) {
		p[k] = (uint8_t)v;
		v >>= 8;
	}
}

uint64_t get_be64(const uint8_t* p)
{
	uint64_t v = 0;
	for (int k = 0; k < 8; k++)
		v = (v << 8) | p[k];
	return v;
}

/* Fills buf (capacity >= max message size) with message i; returns its size. */
static size_t pattern_fill(const struct pattern* pat, uint64_t i, uint8_t* buf)
{
	uint64_t state = pat->seed ^ (i * UINT64_C(0xD1B54A32D192ED03));
	const uint64_t r0 = sm_next(&state);
	const size_t size = pat->fixed_size ? pat->fixed_size : (size_t)(1 + (r0 % pat->max_size));
	uint8_t w[8];
	size_t k;

	put_be64(w, i);
	memcpy(buf, w, size < 8 ? size : 8);
	for (k = 8; k < size; k += 8) {
		const size_t n = size - k < 8 ? size - k : 8;
		put_be64(w, sm_next(&state));
		memcpy(buf + k, w, n);
	}
	return size;
}

static size_t pattern_max(const struct pattern* pat)
{
	return pat->fixed_size ? pat->fixed_size : pat->max_size;
}

/* ------------------------------------------------------------------------- */
/* Options                                                                    */

static void usage(FILE* f)
{
	fprintf(f,
	    "usage: pgmpeer send|recv|pattern [options]\n"
	    "  --network STR        OpenPGM network string, interface ADDRESS first:\n"
	    "                       \"10.0.0.2;239.192.0.1\" (names need NSS/DNS)\n"
	    "  --udp                PGM/UDP encapsulation (default: PGM/IP, needs CAP_NET_RAW)\n"
	    "  --ucast-port P       UDP encapsulation unicast port (default 3055)\n"
	    "  --mcast-port P       UDP encapsulation multicast port (default 3056)\n"
	    "  --port P             PGM data-destination port (default 7500)\n"
	    "  --sport P            sender: PGM source port of the TSI (default random)\n"
	    "  --count N            messages to send / expect (default 1000)\n"
	    "  --sizes mixed|N      mixed 1..max-size bytes (default) or fixed N bytes\n"
	    "  --max-size M         upper bound of mixed sizes (default 8192)\n"
	    "  --seed S             pattern seed (default 1)\n"
	    "  --rate B             sender: PGM_TXW_MAX_RTE in bytes/s (default 0 = uncapped)\n"
	    "  --txw-sqns N         sender transmit window in sequence numbers (default 8192)\n"
	    "  --rxw-sqns N         receiver window in sequence numbers (default 8192)\n"
	    "  --router-alert on|off  PGM_IP_ROUTER_ALERT (default: library default, off)\n"
	    "  --linger SECS        sender: stay up after the last message (default 5)\n"
	    "  --send-delay SECS    sender: wait before the first message (default 0)\n"
	    "  --interval MS        sender: pause between messages (default 0)\n"
	    "  --timeout SECS       receiver: give up after SECS (default 60)\n"
	    "  --any-start          receiver: start at the first index seen (late join)\n"
	    "  --mtu N              PGM_MTU (default 1496 with --udp, 1488 for PGM/IP, so that\n"
	    "                       the fragment payload is a multiple of 16: see the source)\n"
	    "  --hops N             PGM_MULTICAST_HOPS (default 16)\n"
	    "  --loop               PGM_MULTICAST_LOOP on (same-host tests)\n"
	    "  --nak-bo-ivl MS      receiver NAK back-off interval (default 50)\n"
	    "  --nak-rpt-ivl MS     receiver NAK repeat interval (default 200)\n"
	    "  --nak-rdata-ivl MS   receiver NAK RDATA wait interval (default 200)\n"
	    "  --nak-data-retries N (default 50)   --nak-ncf-retries N (default 50)\n"
	    "  --spmr-expiry MS     receiver SPMR expiry (default 250)\n"
	    "  --ambient-spm MS     sender ambient SPM interval (default 30000)\n"
	    "  --rcvbuf BYTES       receive buffer of the PGM socket (SO_RCVBUFFORCE; default: the kernel's)\n"
	    "  --bus                sender: do not set PGM_SEND_ONLY (the socket also receives)\n"
	    "  --verbose            progress and OpenPGM errors on stderr\n"
	    "  --pgmcc              OpenPGM's PGMCC (PGM_USE_PGMCC: ACK back-off 50 ms, C 0.75,\n"
	    "                       c_p 500/65536), sender and receiver; --sizes N unfragmented only\n"
	    "  --latency            latency mode: message i of --sizes N bytes (N >= 16) is\n"
	    "                       BE64(i) BE64(CLOCK_MONOTONIC ns before pgm_send), zeros\n"
	    "  --pace MSGS          latency sender: messages per second, absolute deadlines\n"
	    "  --skip K             latency receiver: no sample for the first K (warm-up)\n"
	    "  --latency-out PATH   latency receiver: samples (native int64 ns) written here\n"
	    "SIGINT/SIGTERM on a sender that has sent everything ends the linger early.\n");
}

static bool parse_onoff(const char* s, int* out)
{
	if (!strcmp(s, "on") || !strcmp(s, "1") || !strcmp(s, "true")) {
		*out = 1;
		return true;
	}
	if (!strcmp(s, "off") || !strcmp(s, "0") || !strcmp(s, "false")) {
		*out = 0;
		return true;
	}
	return false;
}

static int parse_opts(int argc, char** argv, struct opts* o)
{
	enum { O_NET = 256, O_UDP, O_UP, O_MP, O_PORT, O_SPORT, O_COUNT, O_SIZES, O_MAX, O_SEED,
		O_RATE, O_TXW, O_RXW, O_RA, O_LINGER, O_TIMEOUT, O_MTU, O_HOPS, O_LOOP, O_ANY,
		O_BO, O_RPT, O_RDATA, O_DR, O_NR, O_SPMR, O_AMB, O_DELAY, O_VERBOSE, O_HELP, O_BUS, O_INTERVAL,
		O_RCVBUF, O_LATENCY, O_PACE, O_SKIP, O_LATOUT, O_PGMCC };
	static const struct option lo[] = {
		{ "network", required_argument, 0, O_NET },
		{ "udp", no_argument, 0, O_UDP },
		{ "ucast-port", required_argument, 0, O_UP },
		{ "mcast-port", required_argument, 0, O_MP },
		{ "port", required_argument, 0, O_PORT },
		{ "sport", required_argument, 0, O_SPORT },
		{ "count", required_argument, 0, O_COUNT },
		{ "sizes", required_argument, 0, O_SIZES },
		{ "max-size", required_argument, 0, O_MAX },
		{ "seed", required_argument, 0, O_SEED },
		{ "rate", required_argument, 0, O_RATE },
		{ "txw-sqns", required_argument, 0, O_TXW },
		{ "rxw-sqns", required_argument, 0, O_RXW },
		{ "router-alert", required_argument, 0, O_RA },
		{ "linger", required_argument, 0, O_LINGER },
		{ "timeout", required_argument, 0, O_TIMEOUT },
		{ "mtu", required_argument, 0, O_MTU },
		{ "hops", required_argument, 0, O_HOPS },
		{ "loop", no_argument, 0, O_LOOP },
		{ "any-start", no_argument, 0, O_ANY },
		{ "nak-bo-ivl", required_argument, 0, O_BO },
		{ "nak-rpt-ivl", required_argument, 0, O_RPT },
		{ "nak-rdata-ivl", required_argument, 0, O_RDATA },
		{ "nak-data-retries", required_argument, 0, O_DR },
		{ "nak-ncf-retries", required_argument, 0, O_NR },
		{ "spmr-expiry", required_argument, 0, O_SPMR },
		{ "ambient-spm", required_argument, 0, O_AMB },
		{ "rcvbuf", required_argument, 0, O_RCVBUF },
		{ "send-delay", required_argument, 0, O_DELAY },
		{ "interval", required_argument, 0, O_INTERVAL },
		{ "verbose", no_argument, 0, O_VERBOSE },
		{ "bus", no_argument, 0, O_BUS },
		{ "help", no_argument, 0, O_HELP },
		{ "latency", no_argument, 0, O_LATENCY },
		{ "pace", required_argument, 0, O_PACE },
		{ "skip", required_argument, 0, O_SKIP },
		{ "latency-out", required_argument, 0, O_LATOUT },
		{ "pgmcc", no_argument, 0, O_PGMCC },
		{ 0, 0, 0, 0 }
	};
	memset(o, 0, sizeof(*o));
	o->ucast_port = DEFAULT_UDP_ENCAP_UCAST_PORT;
	o->mcast_port = DEFAULT_UDP_ENCAP_MCAST_PORT;
	o->dport = DEFAULT_DATA_DESTINATION_PORT;
	o->count = 1000;
	o->pat.seed = 1;
	o->pat.max_size = 8192;
	o->txw_sqns = 8192;
	o->rxw_sqns = 8192;
	o->router_alert = -1;
	o->linger = 5;
	o->send_only = true;
	o->timeout = 60;
	o->mtu = 0; /* 0 = 1496 for PGM/UDP, 1488 for PGM/IP: see "SSE2 copy bug" */
	o->hops = 16;
	o->nak_bo_ivl_ms = 50;
	/* OpenPGM's examples use 2 s for both; in the lab (sub-ms RTT, a window of
	 * ~1 s at 10 MB/s) that lets a lost NCF or RDATA fall out of the window
	 * and the session stalls under 5% loss.  200 ms recovers. */
	o->nak_rpt_ivl_ms = 200;
	o->nak_rdata_ivl_ms = 200;
	o->nak_data_retries = 50;
	o->nak_ncf_retries = 50;
	o->spmr_expiry_ms = 250;
	o->ambient_spm_ms = 30000;

	int c;
	optind = 2; /* argv[1] is the subcommand */
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case O_NET: o->network = optarg; break;
		case O_UDP: o->udp = true; break;
		case O_UP: o->ucast_port = atoi(optarg); break;
		case O_MP: o->mcast_port = atoi(optarg); break;
		case O_PORT: o->dport = atoi(optarg); break;
		case O_SPORT: o->sport = atoi(optarg); break;
		case O_COUNT: o->count = strtoull(optarg, NULL, 0); break;
		case O_SIZES:
			if (!strcmp(optarg, "mixed"))
				o->pat.fixed_size = 0;
			else if ((o->pat.fixed_size = (uint32_t)strtoul(optarg, NULL, 0)) == 0) {
				fprintf(stderr, "--sizes: 'mixed' or a size >= 1\n");
				return -1;
			}
			break;
		case O_MAX: o->pat.max_size = (uint32_t)strtoul(optarg, NULL, 0); break;
		case O_SEED: o->pat.seed = strtoull(optarg, NULL, 0); break;
		case O_RATE: o->rate = atoi(optarg); break;
		case O_TXW: o->txw_sqns = atoi(optarg); break;
		case O_RXW: o->rxw_sqns = atoi(optarg); break;
		case O_RA:
			if (!parse_onoff(optarg, &o->router_alert)) {
				fprintf(stderr, "--router-alert on|off\n");
				return -1;
			}
			break;
		case O_LINGER: o->linger = atof(optarg); break;
		case O_TIMEOUT: o->timeout = atof(optarg); break;
		case O_MTU: o->mtu = atoi(optarg); break;
		case O_HOPS: o->hops = atoi(optarg); break;
		case O_LOOP: o->loop = true; break;
		case O_ANY: o->any_start = true; break;
		case O_BO: o->nak_bo_ivl_ms = atoi(optarg); break;
		case O_RPT: o->nak_rpt_ivl_ms = atoi(optarg); break;
		case O_RDATA: o->nak_rdata_ivl_ms = atoi(optarg); break;
		case O_DR: o->nak_data_retries = atoi(optarg); break;
		case O_NR: o->nak_ncf_retries = atoi(optarg); break;
		case O_SPMR: o->spmr_expiry_ms = atoi(optarg); break;
		case O_AMB: o->ambient_spm_ms = atoi(optarg); break;
		case O_RCVBUF: o->rcvbuf = atoi(optarg); break;
		case O_DELAY: o->send_delay = atof(optarg); break;
		case O_INTERVAL: o->interval = atof(optarg) / 1000.0; break;
		case O_VERBOSE: o->verbose = true; break;
		case O_BUS: o->send_only = false; break;
		case O_LATENCY: o->latency = true; break;
		case O_PGMCC: o->pgmcc = true; break;
		case O_PACE: o->pace = atoi(optarg); break;
		case O_SKIP: o->skip = strtoull(optarg, NULL, 0); break;
		case O_LATOUT: o->latency_out = optarg; break;
		case O_HELP: usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "unexpected argument: %s\n", argv[optind]);
		return -1;
	}
	if (o->mtu == 0)
		o->mtu = o->udp ? 1496 : 1488;
	if (o->pat.max_size < 1 || o->pat.max_size > PGM_MAX_APDU || o->pat.fixed_size > PGM_MAX_APDU) {
		fprintf(stderr, "sizes must be 1..%d\n", PGM_MAX_APDU);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------------- */
/* Helpers                                                                    */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

volatile sig_atomic_t g_signal = 0;
static void on_signal(int sig) { g_signal = sig; }

void report_err(const char* what, pgm_error_t* err)
{
	fprintf(stderr, "pgmpeer: %s: %s\n", what, err && err->message ? err->message : "(no detail)");
	if (err)
		pgm_error_free(err);
}

#define SETOPT(sock, name, val)                                                            \
	do {                                                                               \
		const int v__ = (val);                                                     \
		if (!pgm_setsockopt((sock), IPPROTO_PGM, (name), &v__, sizeof(v__))) {     \
			fprintf(stderr, "pgmpeer: setsockopt %s=%d failed\n", #name, v__); \
			return NULL;                                                       \
		}                                                                          \
	} while (0)

/* Poll the PGM socket for `events`, no longer than timeout_ms (-1 = forever). */
void pgm_wait(pgm_sock_t* sock, short events, int timeout_ms)
{
	struct pollfd fds[PGM_BUS_SOCKET_READ_COUNT + PGM_BUS_SOCKET_WRITE_COUNT + 2];
	int n = (int)(sizeof(fds) / sizeof(fds[0]));
	memset(fds, 0, sizeof(fds));
	if (pgm_poll_info(sock, fds, &n, events) < 0) {
		usleep(1000);
		return;
	}
	(void)poll(fds, (nfds_t)n, timeout_ms);
}

/* Like pgm_wait, but returns true if any descriptor became ready. */
static bool pgm_wait_active(pgm_sock_t* sock, short events, int timeout_ms)
{
	struct pollfd fds[PGM_BUS_SOCKET_READ_COUNT + PGM_BUS_SOCKET_WRITE_COUNT + 2];
	int n = (int)(sizeof(fds) / sizeof(fds[0]));
	memset(fds, 0, sizeof(fds));
	if (pgm_poll_info(sock, fds, &n, events) < 0) {
		usleep(1000);
		return false;
	}
	return poll(fds, (nfds_t)n, timeout_ms) > 0;
}

/* PGM_RATE_REMAIN / PGM_TIME_REMAIN in microseconds, 50 us .. 100 ms. */
static long remain_us(pgm_sock_t* sock, int optname)
{
	struct timeval tv;
	socklen_t len = sizeof(tv);
	if (!pgm_getsockopt(sock, IPPROTO_PGM, optname, &tv, &len))
		return 1000;
	long us = tv.tv_sec * 1000000L + tv.tv_usec;
	if (us < 50)
		us = 50;
	if (us > 100000)
		us = 100000;
	return us;
}

int remain_ms(pgm_sock_t* sock, int optname)
{
	struct timeval tv;
	socklen_t len = sizeof(tv);
	if (!pgm_getsockopt(sock, IPPROTO_PGM, optname, &tv, &len))
		return 1;
	long ms = tv.tv_sec * 1000L + (tv.tv_usec + 999) / 1000;
	if (ms < 0)
		ms = 0;
	if (ms > 1000)
		ms = 1000;
	return (int)ms;
}

/* Creates, configures, binds and connects the socket. */
pgm_sock_t* open_socket(const struct opts* o, bool sender)
{
	struct pgm_addrinfo_t* res = NULL;
	pgm_error_t* err = NULL;
	pgm_sock_t* sock = NULL;

	if (!o->network) {
		fprintf(stderr, "pgmpeer: --network is required\n");
		return NULL;
	}
	if (!pgm_getaddrinfo(o->network, NULL, &res, &err)) {
		report_err("parsing network string", err);
		return NULL;
	}
	/* pgm_getaddrinfo may leave ai_family unspecified: use the group's family. */
	const sa_family_t family = res->ai_send_addrs[0].gsr_group.ss_family;

	if (!pgm_socket(&sock, family, SOCK_SEQPACKET, o->udp ? IPPROTO_UDP : IPPROTO_PGM, &err)) {
		report_err("creating socket", err);
		pgm_freeaddrinfo(res);
		return NULL;
	}
	if (o->udp) {
		SETOPT(sock, PGM_UDP_ENCAP_UCAST_PORT, o->ucast_port);
		SETOPT(sock, PGM_UDP_ENCAP_MCAST_PORT, o->mcast_port);
	}
	SETOPT(sock, PGM_MTU, o->mtu);
	if (o->router_alert >= 0) /* an int, not a bool: a 1-byte optval is refused */
		SETOPT(sock, PGM_IP_ROUTER_ALERT, o->router_alert != 0);
	if (sender) {
		/* PGM_SEND_ONLY, as OpenPGM's own examples and ZeroMQ's sender do;
		 * --bus makes a socket that also receives (it joins the group). */
		SETOPT(sock, PGM_SEND_ONLY, o->send_only ? 1 : 0);
		SETOPT(sock, PGM_TXW_SQNS, o->txw_sqns);
		if (o->rate > 0)
			SETOPT(sock, PGM_TXW_MAX_RTE, o->rate);
		SETOPT(sock, PGM_AMBIENT_SPM, o->ambient_spm_ms * 1000);
		const int heartbeat[] = { 100 * 1000, 100 * 1000, 100 * 1000, 100 * 1000, 1300 * 1000,
			7 * 1000 * 1000, 16 * 1000 * 1000, 25 * 1000 * 1000, 30 * 1000 * 1000 };
		if (!pgm_setsockopt(sock, IPPROTO_PGM, PGM_HEARTBEAT_SPM, heartbeat, sizeof(heartbeat)))
			fprintf(stderr, "pgmpeer: setsockopt PGM_HEARTBEAT_SPM failed\n");
	} else {
		SETOPT(sock, PGM_RECV_ONLY, 1);
	}
	if (o->pgmcc) {
		/* The values of OpenPGM's own examples: ack_bo_ivl in microseconds, C = 75/100,
		 * c_p = 500/65536. Must precede pgm_bind3. */
		struct pgm_pgmccinfo_t cc = { .ack_bo_ivl = 50 * 1000, .ack_c = 75, .ack_c_p = 500 };
		if (!pgm_setsockopt(sock, IPPROTO_PGM, PGM_USE_PGMCC, &cc, sizeof(cc))) {
			fprintf(stderr, "pgmpeer: setsockopt PGM_USE_PGMCC failed\n");
			pgm_close(sock, false);
			pgm_freeaddrinfo(res);
			return NULL;
		}
	}
	if (!sender || !o->send_only) {
		/* A sender that is not send-only has a receive side too (which
		 * pgmpeer discards), and OpenPGM wants it configured. */
		SETOPT(sock, PGM_PASSIVE, 0);
		SETOPT(sock, PGM_RXW_SQNS, o->rxw_sqns);
		SETOPT(sock, PGM_PEER_EXPIRY, 300 * 1000 * 1000);
		SETOPT(sock, PGM_SPMR_EXPIRY, o->spmr_expiry_ms * 1000);
		SETOPT(sock, PGM_NAK_BO_IVL, o->nak_bo_ivl_ms * 1000);
		SETOPT(sock, PGM_NAK_RPT_IVL, o->nak_rpt_ivl_ms * 1000);
		SETOPT(sock, PGM_NAK_RDATA_IVL, o->nak_rdata_ivl_ms * 1000);
		SETOPT(sock, PGM_NAK_DATA_RETRIES, o->nak_data_retries);
		SETOPT(sock, PGM_NAK_NCF_RETRIES, o->nak_ncf_retries);
		SETOPT(sock, PGM_ABORT_ON_RESET, 0);
	}

	/* GSI from hostname + pid + time: namespaces share the host name. */
	struct pgm_sockaddr_t addr;
	memset(&addr, 0, sizeof(addr));
	addr.sa_port = (uint16_t)o->dport;
	addr.sa_addr.sport = (uint16_t)o->sport;
	{
		char seedbuf[256];
		char host[128] = "";
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		gethostname(host, sizeof(host) - 1);
		int n = snprintf(seedbuf, sizeof(seedbuf), "%s/%d/%ld/%ld/%s", host, (int)getpid(),
		    (long)ts.tv_sec, ts.tv_nsec, sender ? "send" : "recv");
		if (!pgm_gsi_create_from_data(&addr.sa_addr.gsi, (const uint8_t*)seedbuf, (size_t)n)) {
			fprintf(stderr, "pgmpeer: creating GSI failed\n");
			return NULL;
		}
	}

	struct pgm_interface_req_t if_req;
	memset(&if_req, 0, sizeof(if_req));
	if_req.ir_interface = res->ai_recv_addrs[0].gsr_interface;
	memcpy(&if_req.ir_address, &res->ai_send_addrs[0].gsr_addr, sizeof(struct sockaddr_storage));
	if (AF_INET6 == family)
		if_req.ir_scope_id = ((struct sockaddr_in6*)&res->ai_send_addrs[0].gsr_group)->sin6_scope_id;
	if (!pgm_bind3(sock, &addr, sizeof(addr), &if_req, sizeof(if_req), &if_req, sizeof(if_req), &err)) {
		report_err("binding socket", err);
		pgm_close(sock, false);
		pgm_freeaddrinfo(res);
		return NULL;
	}
	for (unsigned i = 0; i < res->ai_recv_addrs_len; i++) {
		if (!pgm_setsockopt(sock, IPPROTO_PGM, PGM_JOIN_GROUP, &res->ai_recv_addrs[i],
			sizeof(struct group_req)))
			fprintf(stderr, "pgmpeer: PGM_JOIN_GROUP failed\n");
	}
	if (!pgm_setsockopt(sock, IPPROTO_PGM, PGM_SEND_GROUP, &res->ai_send_addrs[0], sizeof(struct group_req)))
		fprintf(stderr, "pgmpeer: PGM_SEND_GROUP failed\n");
	pgm_freeaddrinfo(res);

	SETOPT(sock, PGM_MULTICAST_LOOP, o->loop ? 1 : 0);
	SETOPT(sock, PGM_MULTICAST_HOPS, o->hops);
	SETOPT(sock, PGM_NOBLOCK, 1);

	if (!pgm_connect(sock, &err)) {
		report_err("connecting socket", err);
		pgm_close(sock, false);
		return NULL;
	}
	if (o->rcvbuf > 0) {
		/* The receive socket under the PGM socket: OpenPGM's PGM_RCVBUF is capped by
		 * net.core.rmem_max, the FORCE variant (root) is not. */
		int fd = -1;
		socklen_t fdlen = sizeof(fd);
		if (!pgm_getsockopt(sock, IPPROTO_PGM, PGM_RECV_SOCK, &fd, &fdlen))
			fprintf(stderr, "pgmpeer: PGM_RECV_SOCK failed: receive buffer not set\n");
		else if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &o->rcvbuf, sizeof(o->rcvbuf)) &&
			 setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &o->rcvbuf, sizeof(o->rcvbuf)))
			fprintf(stderr, "pgmpeer: setting the receive buffer to %d failed: %s\n",
			    o->rcvbuf, strerror(errno));
	}

	if (o->verbose) {
		struct pgm_sockaddr_t name;
		socklen_t nl = sizeof(name);
		if (pgm_getsockname(sock, &name, &nl))
			fprintf(stderr, "pgmpeer: %s TSI %s dport %u %s\n", sender ? "sender" : "receiver",
			    pgm_tsi_print(&name.sa_addr), name.sa_port, o->udp ? "PGM/UDP" : "PGM/IP");
		int msss = 0, mss = 0, pdu = 0;
		socklen_t l = sizeof(int);
		pgm_getsockopt(sock, IPPROTO_PGM, PGM_MSSS, &msss, &l);
		l = sizeof(int);
		pgm_getsockopt(sock, IPPROTO_PGM, PGM_MSS, &mss, &l);
		l = sizeof(int);
		pgm_getsockopt(sock, IPPROTO_PGM, PGM_PDU, &pdu, &l);
		fprintf(stderr, "pgmpeer: MSSS %d MSS %d PDU %d\n", msss, mss, pdu);
	}
	return sock;
}

/* ------------------------------------------------------------------------- */
/* Sender                                                                     */

/* Drives NAK processing, NCF/RDATA and heartbeat SPMs.
 *
 * OpenPGM 5.3 sends at most ONE queued RDATA per pgm_recv* call, and nothing
 * wakes the caller while more repairs are queued (the RDATA notification
 * channel is only signalled when a send fails), so a loop that just polls the
 * descriptors serves ~1 repair per NAK packet or timer tick.  So after any
 * descriptor activity (a NAK arrived) this thread calls pgm_recvmsgv again
 * without sleeping, up to REPAIR_SPIN times (a NAK names at most 63 sequence
 * numbers), before it goes back to sleeping in poll. */
#define REPAIR_SPIN 1024
void* sender_recv_thread(void* arg)
{
	struct sender_ctx* ctx = arg;
	struct pgm_msgv_t msgv[16];
	int spin = 0;
	while (!ctx->stop) {
		size_t bytes = 0;
		pgm_error_t* err = NULL;
		const int status = pgm_recvmsgv(ctx->sock, msgv, 16, 0, &bytes, &err);
		switch (status) {
		case PGM_IO_STATUS_NORMAL:
			break;
		case PGM_IO_STATUS_TIMER_PENDING:
		case PGM_IO_STATUS_WOULD_BLOCK:
			if (spin > 0) {
				spin--;
				break;
			}
			if (pgm_wait_active(ctx->sock, POLLIN,
				status == PGM_IO_STATUS_WOULD_BLOCK ? 100 : remain_ms(ctx->sock, PGM_TIME_REMAIN)))
				spin = REPAIR_SPIN;
			break;
		case PGM_IO_STATUS_RATE_LIMITED:
			pgm_wait(ctx->sock, POLLIN, remain_ms(ctx->sock, PGM_RATE_REMAIN));
			break;
		default:
			if (err) {
				if (ctx->verbose)
					report_err("sender recv", err);
				else
					pgm_error_free(err);
			}
			if (status == PGM_IO_STATUS_EOF)
				return NULL;
			usleep(1000);
			break;
		}
	}
	return NULL;
}

static int do_send(const struct opts* o)
{
	pgm_sock_t* sock = open_socket(o, true);
	if (!sock)
		return 2;
	/* See "SSE2 copy bug" at the top of the file. */
	int mss = 0, msss = 0; /* max fragment payload / max unfragmented TSDU */
	socklen_t ml = sizeof(mss);
	bool ok_mss = pgm_getsockopt(sock, IPPROTO_PGM, PGM_MSS, &mss, &ml);
	ml = sizeof(msss);
	ok_mss = ok_mss && pgm_getsockopt(sock, IPPROTO_PGM, PGM_MSSS, &msss, &ml);
	if (!ok_mss || mss <= 0 || msss <= 0) {
		fprintf(stderr, "pgmpeer: cannot read PGM_MSS / PGM_MSSS\n");
		pgm_close(sock, false);
		return 2;
	}
	if (pattern_max(&o->pat) > (size_t)msss && (mss % 16) != 0)
		fprintf(stderr, "pgmpeer: warning: fragment payload %d is not a multiple of 16; OpenPGM's "
				"SSE2 checksum-copy will likely crash on fragmented messages (pick another --mtu)\n",
		    mss);
	if (o->pgmcc && pattern_max(&o->pat) > (size_t)msss) {
		/* Fragments of a PGMCC session are laid out otherwise (docs/pgmcc.md): their
		 * alignment is not worked out here, and OpenPGM's SSE2 copy would crash. */
		fprintf(stderr, "pgmpeer: --pgmcc takes unfragmented messages only (--sizes N, N <= %d)\n",
		    msss);
		pgm_close(sock, false);
		return 2;
	}
	const size_t align_single = (sizeof(struct pgm_sk_buff_t)
	                                + (o->pgmcc ? HDR_UNFRAGMENTED_PGMCC : HDR_UNFRAGMENTED)) % 16;
	const size_t align_frag = (sizeof(struct pgm_sk_buff_t) + HDR_FRAGMENTED) % 16;
	uint8_t* mem = NULL;
	if (posix_memalign((void**)&mem, 64, pattern_max(&o->pat) + 64) != 0) {
		pgm_close(sock, false);
		return 2;
	}
	struct sender_ctx ctx = { .sock = sock, .stop = 0, .verbose = o->verbose };
	pthread_t th;
	pthread_create(&th, NULL, sender_recv_thread, &ctx);

	if (o->send_delay > 0) {
		const double until = now_s() + o->send_delay;
		while (now_s() < until && !g_signal)
			usleep(10000);
	}

	const double t0 = now_s();
	uint64_t bytes_total = 0, sent = 0;
	int rc = 0;
	for (uint64_t i = 0; i < o->count && !g_signal; i++) {
		const size_t len = pattern_fill(&o->pat, i, mem + 16);
		uint8_t* const buf = mem + (len > (size_t)msss ? align_frag : align_single);
		memmove(buf, mem + 16, len);
		const double t_msg = now_s();
		for (;;) {
			size_t wrote = 0;
			const int status = pgm_send(sock, buf, len, &wrote);
			if (status == PGM_IO_STATUS_NORMAL)
				break;
			if (g_signal) {
				fprintf(stderr, "pgmpeer: interrupted while sending message %" PRIu64 "\n", i);
				rc = 1;
				goto done;
			}
			if (status == PGM_IO_STATUS_RATE_LIMITED) {
				/* A non-blocking send of a whole APDU needs its full TPDU bytes
				 * in the rate bucket at once; a bucket smaller than the APDU
				 * (a low --rate) never fills: see README.md. */
				if (now_s() - t_msg > 5.0) {
					fprintf(stderr, "pgmpeer: message %" PRIu64 " (%zu bytes) rate limited for 5 s: "
							"--rate %d is too low for this message size\n", i, len, o->rate);
					rc = 1;
					goto done;
				}
				/* Sleep, do not poll: the send socket is always writable,
				 * so a POLLOUT wait would spin and starve the receiver
				 * on a 2-core machine. */
				usleep((useconds_t)remain_us(sock, PGM_RATE_REMAIN));
				continue;
			}
			if (status == PGM_IO_STATUS_WOULD_BLOCK || status == PGM_IO_STATUS_CONGESTION) {
				pgm_wait(sock, POLLOUT, 10);
				continue;
			}
			fprintf(stderr, "pgmpeer: pgm_send failed with status %d at message %" PRIu64 "\n", status, i);
			rc = 1;
			goto done;
		}
		bytes_total += len;
		sent++;
		if (o->interval > 0) {
			const double until = now_s() + o->interval;
			while (now_s() < until && !g_signal)
				usleep(1000);
		}
		if (o->verbose && (sent % 5000) == 0)
			fprintf(stderr, "pgmpeer: sent %" PRIu64 "\n", sent);
	}
done:;
	const double t1 = now_s();
	printf("SENT count=%" PRIu64 " bytes=%" PRIu64 " seconds=%.3f rate_msgs=%.0f\n", sent, bytes_total,
	    t1 - t0, t1 > t0 ? (double)sent / (t1 - t0) : 0.0);
	fflush(stdout);
	/* Linger so late NAKs are repaired; a signal ends it early (one that
	 * interrupted the sending ends it at once). */
	const double until = now_s() + o->linger;
	if (sent == o->count)
		g_signal = 0;
	while (now_s() < until && !g_signal)
		usleep(20000);
	ctx.stop = 1;
	pthread_join(th, NULL);
	pgm_close(sock, true);
	free(mem);
	return rc;
}

/* ------------------------------------------------------------------------- */
/* Receiver                                                                   */

static int do_recv(const struct opts* o)
{
	pgm_sock_t* sock = open_socket(o, false);
	if (!sock)
		return 2;
	/* One APDU per call: with an array of msgv, OpenPGM 5.3's pgm_recvmsgv
	 * stopped delivering after the first PGM_IO_STATUS_RESET (only RESET and
	 * TIMER_PENDING afterwards, seen with 64); with one it keeps delivering
	 * the data that follows a loss. */
	enum { NMSGV = 1 };
	struct pgm_msgv_t* msgv = calloc(NMSGV, sizeof(*msgv));
	uint8_t* expect = malloc(PGM_MAX_APDU + 8);
	uint8_t* apdu = malloc(PGM_MAX_APDU + 8);

	uint64_t next = 0, received = 0, bytes_total = 0, bad = 0, lost_events = 0, missing = 0;
	uint64_t first_index = UINT64_MAX, last_index = UINT64_MAX;
	bool started = !o->any_start, done = false;
	const double t0 = now_s(), deadline = t0 + o->timeout;
	double t_first = 0, t_in_recv = 0;
	uint64_t calls[9] = { 0 };

	while (!done && !g_signal) {
		const double now = now_s();
		if (now >= deadline)
			break;
		int cap = (int)((deadline - now) * 1000) + 1;
		size_t bytes = 0;
		pgm_error_t* err = NULL;
		const double tc = now_s();
		const int status = pgm_recvmsgv(sock, msgv, NMSGV, 0, &bytes, &err);
		t_in_recv += now_s() - tc;
		calls[status >= 0 && status < 9 ? status : 0]++;
		switch (status) {
		case PGM_IO_STATUS_NORMAL: {
			struct pgm_msgv_t* m = msgv;
			while (bytes > 0 && m < msgv + NMSGV) {
				size_t len = 0;
				for (uint32_t j = 0; j < m->msgv_len; j++) {
					const struct pgm_sk_buff_t* skb = m->msgv_skb[j];
					if (len + skb->len <= PGM_MAX_APDU)
						memcpy(apdu + len, skb->data, skb->len);
					len += skb->len;
				}
				bytes -= len < bytes ? len : bytes;
				m++;
				if (done)
					continue;
				if (!started) {
					if (len < 8)
						continue; /* cannot tell its index yet */
					next = get_be64(apdu);
					started = true;
				}
				if (len >= 8 && get_be64(apdu) != next) {
					const uint64_t idx = get_be64(apdu);
					if (idx > next && idx < o->count) {
						missing += idx - next;
						if (o->verbose)
							fprintf(stderr, "pgmpeer: gap: expected %" PRIu64 " got %" PRIu64 "\n",
							    next, idx);
						next = idx;
					} else {
						bad++;
						if (o->verbose)
							fprintf(stderr, "pgmpeer: out of order: expected %" PRIu64 " got %" PRIu64 "\n",
							    next, idx);
						continue;
					}
				}
				const size_t elen = pattern_fill(&o->pat, next, expect);
				if (elen != len || memcmp(expect, apdu, len) != 0) {
					bad++;
					if (o->verbose)
						fprintf(stderr, "pgmpeer: bad message %" PRIu64 " (len %zu, expected %zu)\n",
						    next, len, elen);
				}
				if (first_index == UINT64_MAX) {
					first_index = next;
					t_first = now_s();
				}
				last_index = next;
				received++;
				bytes_total += len;
				next++;
				if (o->verbose && (received % 5000) == 0)
					fprintf(stderr, "pgmpeer: received %" PRIu64 "\n", received);
				if (next >= o->count || (o->any_start && received >= o->count))
					done = true;
			}
			break;
		}
		case PGM_IO_STATUS_TIMER_PENDING: {
			int ms = remain_ms(sock, PGM_TIME_REMAIN);
			pgm_wait(sock, POLLIN, ms < cap ? ms : cap);
			break;
		}
		case PGM_IO_STATUS_RATE_LIMITED: {
			int ms = remain_ms(sock, PGM_RATE_REMAIN);
			pgm_wait(sock, POLLIN, ms < cap ? ms : cap);
			break;
		}
		case PGM_IO_STATUS_WOULD_BLOCK:
			pgm_wait(sock, POLLIN, cap < 1000 ? cap : 1000);
			break;
		case PGM_IO_STATUS_RESET:
			lost_events++;
			if (o->verbose)
				report_err("session reset / unrecoverable loss", err);
			else if (err)
				pgm_error_free(err);
			err = NULL;
			break;
		default:
			if (err) {
				if (o->verbose)
					report_err("recv", err);
				else
					pgm_error_free(err);
			}
			usleep(1000);
			break;
		}
	}
	const double t1 = now_s();
	if (o->verbose)
		fprintf(stderr,
		    "pgmpeer: pgm_recvmsgv calls: normal=%" PRIu64 " reset=%" PRIu64 " would_block=%" PRIu64
		    " timer_pending=%" PRIu64 " rate_limited=%" PRIu64 " other=%" PRIu64 ", %.3f s inside\n",
		    calls[PGM_IO_STATUS_NORMAL], calls[PGM_IO_STATUS_RESET], calls[PGM_IO_STATUS_WOULD_BLOCK],
		    calls[PGM_IO_STATUS_TIMER_PENDING], calls[PGM_IO_STATUS_RATE_LIMITED],
		    calls[0] + calls[PGM_IO_STATUS_FIN] + calls[PGM_IO_STATUS_EOF] + calls[PGM_IO_STATUS_CONGESTION],
		    t_in_recv);
	const bool ok = done && bad == 0 && lost_events == 0 && missing == 0 && received == o->count;
	printf("RESULT received=%" PRIu64 " bytes=%" PRIu64 " bad=%" PRIu64 " lost_events=%" PRIu64
	       " missing=%" PRIu64 " first_index=%" PRId64 " last_index=%" PRId64 " seconds=%.3f status=%s\n",
	    received, bytes_total, bad, lost_events, missing,
	    first_index == UINT64_MAX ? (int64_t)-1 : (int64_t)first_index,
	    last_index == UINT64_MAX ? (int64_t)-1 : (int64_t)last_index,
	    received ? t1 - t_first : 0.0, ok ? "ok" : "fail");
	fflush(stdout);
	pgm_close(sock, true);
	free(msgv);
	free(expect);
	free(apdu);
	return ok ? 0 : 1;
}

/* ------------------------------------------------------------------------- */
/* Pattern dump (test vectors for other implementations)                      */

static int do_pattern(const struct opts* o)
{
	uint8_t* buf = malloc(pattern_max(&o->pat) + 8);
	for (uint64_t i = 0; i < o->count; i++) {
		const size_t len = pattern_fill(&o->pat, i, buf);
		printf("%" PRIu64 " %zu ", i, len);
		for (size_t k = 0; k < len; k++)
			printf("%02x", buf[k]);
		printf("\n");
	}
	free(buf);
	return 0;
}

int main(int argc, char** argv)
{
	struct opts o;
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	const char* cmd = argv[1];
	if (strcmp(cmd, "send") && strcmp(cmd, "recv") && strcmp(cmd, "pattern")) {
		usage(stderr);
		return 2;
	}
	if (parse_opts(argc, argv, &o) < 0)
		return 2;
	if (!strcmp(cmd, "pattern"))
		return do_pattern(&o);

	setvbuf(stdout, NULL, _IOLBF, 0);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	pgm_error_t* err = NULL;
	if (!pgm_init(&err)) {
		report_err("pgm_init", err);
		return 2;
	}
	int rc;
	if (o.latency)
		rc = !strcmp(cmd, "send") ? do_latency_send(&o) : do_latency_recv(&o);
	else
		rc = !strcmp(cmd, "send") ? do_send(&o) : do_recv(&o);
	pgm_shutdown();
	return rc;
}
