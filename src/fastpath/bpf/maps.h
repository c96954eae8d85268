/* The maps ternd's XDP program shares with its driver (src/fastpath/maps.rs
 * mirrors every struct here, field for field). Addresses and ports are in
 * network byte order, as on the wire; an IPv4 address fills the first 4
 * bytes of `addr` and leaves the rest zero. */
#ifndef TERND_MAPS_H
#define TERND_MAPS_H

#include <linux/types.h>

/* Channel bindings seen from the client: ChannelData from `client` to the
 * listener `server` on channel `channel`. */
struct cd_key {
	__u8 client[16];
	__u8 server[16];
	__u16 client_port;
	__u16 server_port;
	__u16 channel;
	__u8 family; /* 4 or 6 */
	__u8 pad;
};

struct to_peer_val {
	__u8 relay[16];
	__u8 peer[16];
	__u16 relay_port;
	__u16 peer_port;
	__u32 pad;
	/* CLOCK_MONOTONIC ns after which the kernel stops (channel, permission
	 * or allocation ran out): userspace decides then. */
	__u64 expires_ns;
	/* Key of this allocation's relay in `traffic`. */
	__u64 counter;
};

/* The same bindings seen from the peer: UDP from `peer` to relay `relay`. */
struct peer_key {
	__u8 peer[16];
	__u8 relay[16];
	__u16 peer_port;
	__u16 relay_port;
	__u8 family;
	__u8 pad[3];
};

struct to_client_val {
	__u8 client[16];
	__u8 server[16];
	__u16 client_port;
	__u16 server_port;
	__u16 channel;
	__u16 pad;
	__u64 expires_ns;
	__u64 counter;
};

/* Bytes (payload only, as the core counts them) and packets relayed. */
struct traffic {
	__u64 to_peer_bytes;
	__u64 to_peer_packets;
	__u64 to_client_bytes;
	__u64 to_client_packets;
};

/* A UDP listener that answers Binding requests: address (all zero for a
 * wildcard listener) and port. */
struct listener_key {
	__u8 addr[16];
	__u16 port;
	__u8 family;
	__u8 pad;
};

/* Indexes of the per-CPU `stats` array. */
enum stat {
	STAT_BINDING = 0,
	STAT_TO_PEER = 1,
	STAT_TO_CLIENT = 2,
	STAT_PASS = 3,
	STAT_COUNT = 4,
};

#endif
