/*
 * Input to bindgen: the DPDK headers the binding uses, the CER shim, and
 * constants that DPDK defines through function-like macros (RTE_BIT64 and
 * friends), which bindgen cannot evaluate but clang can as initializers.
 * Not compiled into any object file.
 */
#include "shim.h"

/* Constants defined through function-like macros (RTE_BIT64 and friends)
 * that bindgen cannot evaluate; clang evaluates these initializers. */
static const uint64_t CER_ETH_RSS_IP = RTE_ETH_RSS_IP;
static const uint64_t CER_ETH_RSS_TCP = RTE_ETH_RSS_TCP;
static const uint64_t CER_ETH_RSS_UDP = RTE_ETH_RSS_UDP;
static const uint64_t CER_ETH_RX_OFFLOAD_RSS_HASH = RTE_ETH_RX_OFFLOAD_RSS_HASH;
static const uint64_t CER_MBUF_F_RX_RSS_HASH = RTE_MBUF_F_RX_RSS_HASH;
static const uint32_t CER_LCORE_ID_ANY = LCORE_ID_ANY;
static const uint32_t CER_ETH_NAME_MAX_LEN = RTE_ETH_NAME_MAX_LEN;
static const uint16_t CER_PKTMBUF_HEADROOM = RTE_PKTMBUF_HEADROOM;
static const uint32_t CER_MAX_ETHPORTS = RTE_MAX_ETHPORTS;
static const uint32_t CER_MAX_LCORE = RTE_MAX_LCORE;
static const uint32_t CER_MAX_QUEUES_PER_PORT = RTE_MAX_QUEUES_PER_PORT;
static const uint32_t CER_MEMPOOL_NAMESIZE = RTE_MEMPOOL_NAMESIZE;
