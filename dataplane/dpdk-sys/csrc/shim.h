/*
 * CER shim over DPDK 22.11 static inline functions.
 *
 * DPDK implements its fast path (burst I/O, mbuf alloc/free, lcore id,
 * rte_errno) as `static inline` functions and per-thread variables, which
 * have no symbol to link against from Rust. Each `cer_*` function below is
 * a real, exported function that calls the inline one. This header is also
 * fed to bindgen, so the Rust declarations always match these definitions.
 */
#ifndef CER_DPDK_SHIM_H
#define CER_DPDK_SHIM_H

#include <stdint.h>

#include <rte_config.h>
#include <rte_common.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_cycles.h>
#include <rte_prefetch.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_ethdev.h>
#include <rte_dev.h>
#include <rte_pdump.h>

/* lcores and time */
unsigned int cer_lcore_id(void);
uint64_t cer_rdtsc(void);
uint64_t cer_get_tsc_cycles(void);
uint64_t cer_get_tsc_hz(void);
void cer_prefetch0(const void *p);

/* rte_errno is a per-lcore (thread-local) variable. */
int cer_errno(void);
void cer_set_errno(int value);

/* ethdev fast path */
uint16_t cer_eth_rx_burst(uint16_t port_id, uint16_t queue_id,
			  struct rte_mbuf **rx_pkts, uint16_t nb_pkts);
uint16_t cer_eth_tx_burst(uint16_t port_id, uint16_t queue_id,
			  struct rte_mbuf **tx_pkts, uint16_t nb_pkts);

/* mbuf allocation and release */
struct rte_mbuf *cer_pktmbuf_alloc(struct rte_mempool *mp);
int cer_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs,
			   unsigned int count);
void cer_pktmbuf_free(struct rte_mbuf *m);
void cer_pktmbuf_free_bulk(struct rte_mbuf **mbufs, unsigned int count);
struct rte_mbuf *cer_pktmbuf_clone(struct rte_mbuf *m, struct rte_mempool *mp);
struct rte_mbuf *cer_pktmbuf_copy(const struct rte_mbuf *m,
				  struct rte_mempool *mp);

/* mbuf data area edits (NULL / -1 when there is not enough room) */
char *cer_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len);
char *cer_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
char *cer_pktmbuf_adj(struct rte_mbuf *m, uint16_t len);
int cer_pktmbuf_trim(struct rte_mbuf *m, uint16_t len);

/* mbuf field getters: the reference implementation the Rust side's direct
 * field reads are tested against. */
void *cer_pktmbuf_mtod(const struct rte_mbuf *m);
uint16_t cer_pktmbuf_data_len(const struct rte_mbuf *m);
uint32_t cer_pktmbuf_pkt_len(const struct rte_mbuf *m);
uint16_t cer_pktmbuf_nb_segs(const struct rte_mbuf *m);
uint16_t cer_pktmbuf_port(const struct rte_mbuf *m);
uint32_t cer_pktmbuf_rss_hash(const struct rte_mbuf *m);
uint64_t cer_pktmbuf_ol_flags(const struct rte_mbuf *m);
uint16_t cer_pktmbuf_headroom(const struct rte_mbuf *m);
uint16_t cer_pktmbuf_tailroom(const struct rte_mbuf *m);
uint16_t cer_pktmbuf_refcnt(const struct rte_mbuf *m);
int cer_pktmbuf_is_contiguous(const struct rte_mbuf *m);

/* Layout facts the Rust side relies on, computed by the C compiler. */
struct cer_mbuf_layout {
	uint32_t size;
	uint32_t off_buf_addr;
	uint32_t off_data_off;
	uint32_t off_refcnt;
	uint32_t off_nb_segs;
	uint32_t off_port;
	uint32_t off_ol_flags;
	uint32_t off_pkt_len;
	uint32_t off_data_len;
	uint32_t off_hash_rss;
	uint32_t off_buf_len;
	uint32_t off_pool;
	uint32_t off_next;
};
struct cer_mbuf_layout cer_mbuf_layout(void);

#endif /* CER_DPDK_SHIM_H */
