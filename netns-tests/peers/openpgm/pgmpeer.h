/*
 * pgmpeer: what pgmpeer.c (options, socket set-up, the pattern sender and
 * receiver) shares with latency.c (the --latency sender and receiver).
 * Include after pgm/pgm.h (and _GNU_SOURCE, HAVE_POLL), as pgmpeer.c does.
 */
#ifndef PGMPEER_H
#define PGMPEER_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

/* Offsets of the TSDU inside a transmit skb's data (see "SSE2 copy bug"). */
#define HDR_UNFRAGMENTED 24 /* PGM header 16 + data header 8 */
#define HDR_FRAGMENTED 44 /* + OPT_LENGTH 4 + OPT_FRAGMENT 16 */
/* With PGMCC, unfragmented ODATA also carry OPT_LENGTH and OPT_PGMCC_DATA (4 + 16). */
#define HDR_UNFRAGMENTED_PGMCC 44

struct pattern {
	uint64_t seed;
	uint32_t max_size; /* mixed: 1..max_size */
	uint32_t fixed_size; /* 0 = mixed */
};

struct opts {
	const char* network;
	bool udp;
	int ucast_port, mcast_port;
	int dport;
	int sport; /* 0 = random */
	uint64_t count;
	struct pattern pat;
	int rate; /* bytes/s, 0 = uncapped */
	int txw_sqns, rxw_sqns;
	int router_alert; /* -1 = library default */
	double linger; /* sender: seconds to stay up after the last message */
	double timeout; /* receiver: give up after this many seconds */
	int mtu;
	int hops;
	bool loop;
	bool any_start; /* receiver: accept any first index (late join) */
	int nak_bo_ivl_ms, nak_rpt_ivl_ms, nak_rdata_ivl_ms;
	int nak_data_retries, nak_ncf_retries;
	int spmr_expiry_ms;
	int ambient_spm_ms;
	int rcvbuf; /* receiver: socket receive buffer in bytes, 0 = the kernel's default */
	double send_delay; /* sender: pause before the first message */
	double interval; /* sender: pause between messages, seconds */
	bool verbose;
	bool send_only;
	bool pgmcc; /* PGM_USE_PGMCC (OpenPGM's PGMCC, both ends); fixed sizes only */
	/* --latency: stamped messages (index, CLOCK_MONOTONIC ns) instead of the pattern */
	bool latency;
	int pace; /* latency sender: messages per second */
	uint64_t skip; /* latency receiver: warm-up messages without a sample */
	const char* latency_out; /* latency receiver: file of samples (native i64 ns) */
};

struct sender_ctx {
	pgm_sock_t* sock;
	volatile int stop;
	bool verbose;
};

extern volatile sig_atomic_t g_signal;

void put_be64(uint8_t* p, uint64_t v);
uint64_t get_be64(const uint8_t* p);
void report_err(const char* what, pgm_error_t* err);
void pgm_wait(pgm_sock_t* sock, short events, int timeout_ms);
int remain_ms(pgm_sock_t* sock, int optname);
pgm_sock_t* open_socket(const struct opts* o, bool sender);
void* sender_recv_thread(void* arg);

/* latency.c */
int do_latency_send(const struct opts* o);
int do_latency_recv(const struct opts* o);

#endif
