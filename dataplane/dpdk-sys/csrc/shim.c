/*
 * CER shim over DPDK 22.11 static inline functions: one exported function
 * per inline helper the Rust binding needs. See shim.h.
 */
#include <stddef.h>

#include "shim.h"

unsigned int cer_lcore_id(void)
{
	return rte_lcore_id();
}

uint64_t cer_rdtsc(void)
{
	return rte_rdtsc();
}

uint64_t cer_get_tsc_cycles(void)
{
	return rte_get_tsc_cycles();
}

uint64_t cer_get_tsc_hz(void)
{
	return rte_get_tsc_hz();
}

void cer_prefetch0(const void *p)
{
	rte_prefetch0(p);
}

int cer_errno(void)
{
	return rte_errno;
}

void cer_set_errno(int value)
{
	rte_errno = value;
}

uint16_t cer_eth_rx_burst(uint16_t port_id, uint16_t queue_id,
			  struct rte_mbuf **rx_pkts, uint16_t nb_pkts)
{
	return rte_eth_rx_burst(port_id, queue_id, rx_pkts, nb_pkts);
}

uint16_t cer_eth_tx_burst(uint16_t port_id, uint16_t queue_id,
			  struct rte_mbuf **tx_pkts, uint16_t nb_pkts)
{
	return rte_eth_tx_burst(port_id, queue_id, tx_pkts, nb_pkts);
}

struct rte_mbuf *cer_pktmbuf_alloc(struct rte_mempool *mp)
{
	return rte_pktmbuf_alloc(mp);
}

int cer_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs,
			   unsigned int count)
{
	return rte_pktmbuf_alloc_bulk(mp, mbufs, count);
}

void cer_pktmbuf_free(struct rte_mbuf *m)
{
	rte_pktmbuf_free(m);
}

void cer_pktmbuf_free_bulk(struct rte_mbuf **mbufs, unsigned int count)
{
	rte_pktmbuf_free_bulk(mbufs, count);
}

struct rte_mbuf *cer_pktmbuf_clone(struct rte_mbuf *m, struct rte_mempool *mp)
{
	return rte_pktmbuf_clone(m, mp);
}

struct rte_mbuf *cer_pktmbuf_copy(const struct rte_mbuf *m,
				  struct rte_mempool *mp)
{
	return rte_pktmbuf_copy(m, mp, 0, UINT32_MAX);
}

char *cer_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_prepend(m, len);
}

char *cer_pktmbuf_append(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_append(m, len);
}

char *cer_pktmbuf_adj(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_adj(m, len);
}

int cer_pktmbuf_trim(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_trim(m, len);
}

void *cer_pktmbuf_mtod(const struct rte_mbuf *m)
{
	return rte_pktmbuf_mtod(m, void *);
}

uint16_t cer_pktmbuf_data_len(const struct rte_mbuf *m)
{
	return rte_pktmbuf_data_len(m);
}

uint32_t cer_pktmbuf_pkt_len(const struct rte_mbuf *m)
{
	return rte_pktmbuf_pkt_len(m);
}

uint16_t cer_pktmbuf_nb_segs(const struct rte_mbuf *m)
{
	return m->nb_segs;
}

uint16_t cer_pktmbuf_port(const struct rte_mbuf *m)
{
	return m->port;
}

uint32_t cer_pktmbuf_rss_hash(const struct rte_mbuf *m)
{
	return m->hash.rss;
}

uint64_t cer_pktmbuf_ol_flags(const struct rte_mbuf *m)
{
	return m->ol_flags;
}

uint16_t cer_pktmbuf_headroom(const struct rte_mbuf *m)
{
	return rte_pktmbuf_headroom(m);
}

uint16_t cer_pktmbuf_tailroom(const struct rte_mbuf *m)
{
	return rte_pktmbuf_tailroom(m);
}

uint16_t cer_pktmbuf_refcnt(const struct rte_mbuf *m)
{
	return rte_mbuf_refcnt_read(m);
}

int cer_pktmbuf_is_contiguous(const struct rte_mbuf *m)
{
	return rte_pktmbuf_is_contiguous(m);
}

struct cer_mbuf_layout cer_mbuf_layout(void)
{
	struct cer_mbuf_layout l = {
		.size = sizeof(struct rte_mbuf),
		.off_buf_addr = offsetof(struct rte_mbuf, buf_addr),
		.off_data_off = offsetof(struct rte_mbuf, data_off),
		.off_refcnt = offsetof(struct rte_mbuf, refcnt),
		.off_nb_segs = offsetof(struct rte_mbuf, nb_segs),
		.off_port = offsetof(struct rte_mbuf, port),
		.off_ol_flags = offsetof(struct rte_mbuf, ol_flags),
		.off_pkt_len = offsetof(struct rte_mbuf, pkt_len),
		.off_data_len = offsetof(struct rte_mbuf, data_len),
		.off_hash_rss = offsetof(struct rte_mbuf, hash.rss),
		.off_buf_len = offsetof(struct rte_mbuf, buf_len),
		.off_pool = offsetof(struct rte_mbuf, pool),
		.off_next = offsetof(struct rte_mbuf, next),
	};
	return l;
}
