/* ternd's kernel fast path (issue 14): relays ChannelData for bound channels
 * both ways and answers plain Binding requests, all in XDP. Everything else,
 * and anything this program is unsure of, goes up with XDP_PASS: the
 * userspace path stays complete and authoritative. The driver mirrors the
 * core's channel bindings into the maps (maps.h) and reads the counters back.
 *
 * Limits of this first version: no IP options, no IPv6 extension headers,
 * no VLAN tags, no fragments; ChannelData padding of at most 3 bytes; the
 * next hop comes from bpf_fib_lookup, which needs forwarding enabled on the
 * interface (else XDP_PASS); on loopback a local destination is handed to
 * the stack already rewritten, with its UDP checksum summed afresh (local
 * senders leave it to an offload; payloads up to 2 KiB there). Elsewhere UDP
 * checksums are updated incrementally, so a datagram that arrived corrupted
 * leaves corrupted (and is dropped by its receiver), and senders must put
 * full checksums on the wire (a local veth: `ethtool -K IF tx off`); an
 * IPv4 datagram without a checksum leaves without one. */

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "maps.h"

#define MAX_ENTRIES 65536
#define STUN_COOKIE 0x2112A442
#define FINGERPRINT_XOR 0x5354554e
#define LOOPBACK_IFINDEX 1
#define AF_INET 2
#define AF_INET6 10

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_ENTRIES);
	__type(key, struct cd_key);
	__type(value, struct to_peer_val);
} to_peer SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_ENTRIES);
	__type(key, struct peer_key);
	__type(value, struct to_client_val);
} to_client SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, MAX_ENTRIES);
	__type(key, __u64);
	__type(value, struct traffic);
} traffic SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct listener_key);
	__type(value, __u8);
} listeners SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

/* Room to copy a payload into, to sum it (loopback only: see payload_sum). */
#define SCRATCH 2048
struct scratch {
	__u8 b[SCRATCH];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch SEC(".maps");

/* One parsed Ethernet/IP/UDP datagram. */
struct flow {
	__u8 src[16];
	__u8 dst[16];
	__u16 sport;
	__u16 dport;
	__u16 udp_len; /* host order */
	__u16 check;   /* as on the wire */
};

static __always_inline void count(__u32 which)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &which);
	if (v)
		*v += 1;
}

static __always_inline void count_traffic(__u64 key, __u32 len, int to_client_dir)
{
	/* The driver creates the entry with the first channel and removes it
	 * with the allocation: a datagram in flight then is not counted to the
	 * next allocation that gets the same relay id. */
	struct traffic *t = bpf_map_lookup_elem(&traffic, &key);
	if (!t)
		return;
	if (to_client_dir) {
		t->to_client_bytes += len;
		t->to_client_packets += 1;
	} else {
		t->to_peer_bytes += len;
		t->to_peer_packets += 1;
	}
}

/* One's-complement helpers. Words are summed as loaded (network order), so
 * every sum here is of network-order words and stored back as is. */
static __always_inline __u16 fold(__u64 s)
{
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)s;
}

static __always_inline __u32 sum_words(const void *p, int bytes)
{
	const __u16 *w = p;
	__u32 s = 0;
#pragma unroll
	for (int i = 0; i < 8; i++)
		if (i < bytes / 2)
			s += w[i];
	return s;
}

/* The checksum after removing words summing to `removed` and adding words
 * summing to `added` (RFC 1624 eqn. 3). */
static __always_inline __u16 csum_replace(__u16 check, __u64 removed, __u64 added)
{
	__u64 acc = (__u16)~check;
	acc += (__u16)~fold(removed);
	acc += fold(added);
	__u16 out = ~fold(acc);
	return out ? out : 0xffff;
}

static __always_inline __u16 ipv4_csum(struct iphdr *ip)
{
	ip->check = 0;
	__u64 s = sum_words(ip, 16) + sum_words((__u8 *)ip + 16, 4);
	return ~fold(s);
}

/* A STUN message being answered, big enough for the largest answer. */
struct stun_buf {
	__u8 b[52];
};

/* CRC-32 (ISO-HDLC, as FINGERPRINT uses: RFC 8489 §14.7) of the first `n`
 * bytes. A global function, so the verifier checks it once. */
__noinline __u32 stun_crc32(struct stun_buf *buf, __u32 n)
{
	__u32 crc = 0xffffffff;
	if (!buf)
		return 0;
	for (__u32 i = 0; i < 52 && i < n; i++) {
		crc ^= buf->b[i];
#pragma unroll
		for (int j = 0; j < 8; j++)
			crc = (crc >> 1) ^ (0xEDB88320 & -(crc & 1));
	}
	return ~crc;
}

/* One's-complement sum of the first `len` bytes of `s`, zero-padded to an
 * even length by the caller. A global function: verified once. */
__noinline __u32 sum_scratch(struct scratch *s, __u32 len)
{
	__u32 sum = 0;
	if (!s)
		return 0;
	for (__u32 i = 0; i < SCRATCH / 2; i++) {
		if (2 * i >= len)
			break;
		sum += *(__u16 *)(s->b + ((2 * i) & (SCRATCH - 2)));
	}
	return sum;
}

/* The sum of `len` payload bytes at packet offset `off`; -1 if too long. */
static __always_inline int payload_sum(struct xdp_md *ctx, __u32 off, __u32 len, __u64 *sum)
{
	__u32 zero = 0;
	*sum = 0;
	if (len == 0)
		return 0;
	struct scratch *s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s || len < 1 || len > SCRATCH - 2)
		return -1;
	if (bpf_xdp_load_bytes(ctx, off, s->b, len))
		return -1;
	s->b[len & (SCRATCH - 1)] = 0;
	*sum = sum_scratch(s, len);
	return 0;
}

/* Where the next hop is: fills the MACs and returns the action, or -1 for
 * "leave it to the stack" (checked before the packet is touched), or 0 for
 * "rewrite, then XDP_PASS" (a local destination reached through loopback). */
static __always_inline int next_hop(struct xdp_md *ctx, int v6, const __u8 *src, const __u8 *dst,
				    __u16 sport, __u16 dport, __u32 tot_len, __u8 *smac, __u8 *dmac,
				    __u32 *ifindex)
{
	struct bpf_fib_lookup p = {};
	p.family = v6 ? AF_INET6 : AF_INET;
	p.l4_protocol = IPPROTO_UDP;
	p.sport = sport;
	p.dport = dport;
	p.tot_len = tot_len;
	p.ifindex = ctx->ingress_ifindex;
	if (v6) {
		__builtin_memcpy(p.ipv6_src, src, 16);
		__builtin_memcpy(p.ipv6_dst, dst, 16);
	} else {
		__builtin_memcpy(&p.ipv4_src, src, 4);
		__builtin_memcpy(&p.ipv4_dst, dst, 4);
	}
	long rc = bpf_fib_lookup(ctx, &p, sizeof(p), 0);
	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		__builtin_memcpy(smac, p.smac, ETH_ALEN);
		__builtin_memcpy(dmac, p.dmac, ETH_ALEN);
		*ifindex = p.ifindex;
		return p.ifindex == ctx->ingress_ifindex ? XDP_TX : XDP_REDIRECT;
	}
	if (rc == BPF_FIB_LKUP_RET_NOT_FWDED && ctx->ingress_ifindex == LOOPBACK_IFINDEX)
		return 0;
	return -1;
}

/* Parses Ethernet, IP (no options, no extension headers, no fragments) and
 * UDP; returns the IP header length or 0 to pass. */
static __always_inline int parse(struct xdp_md *ctx, int v6, struct flow *f)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 l3len = v6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr);
	struct udphdr *udp = data + sizeof(struct ethhdr) + l3len;
	if ((void *)(udp + 1) > end)
		return 0;
	__u32 ip_total;
	if (v6) {
		struct ipv6hdr *ip6 = data + sizeof(struct ethhdr);
		if (ip6->nexthdr != IPPROTO_UDP)
			return 0;
		__builtin_memcpy(f->src, &ip6->saddr, 16);
		__builtin_memcpy(f->dst, &ip6->daddr, 16);
		ip_total = l3len + bpf_ntohs(ip6->payload_len);
	} else {
		struct iphdr *ip = data + sizeof(struct ethhdr);
		if (ip->ihl != 5 || ip->protocol != IPPROTO_UDP || (ip->frag_off & bpf_htons(0x3fff)))
			return 0;
		__builtin_memset(f->src, 0, 16);
		__builtin_memset(f->dst, 0, 16);
		__builtin_memcpy(f->src, &ip->saddr, 4);
		__builtin_memcpy(f->dst, &ip->daddr, 4);
		ip_total = bpf_ntohs(ip->tot_len);
	}
	f->sport = udp->source;
	f->dport = udp->dest;
	f->udp_len = bpf_ntohs(udp->len);
	f->check = udp->check;
	/* The IP and UDP lengths must agree and fit the frame (which may carry
	 * Ethernet padding after them). */
	if (f->udp_len < sizeof(struct udphdr) || ip_total != l3len + f->udp_len ||
	    data + sizeof(struct ethhdr) + ip_total > end)
		return 0;
	return l3len;
}

/* Sum of the pseudo-header addresses and the two length fields. */
static __always_inline __u64 pseudo_sum(int v6, const __u8 *src, const __u8 *dst, __u16 udp_len_be)
{
	int n = v6 ? 16 : 4;
	return (__u64)sum_words(src, n) + sum_words(dst, n) + 2 * (__u64)udp_len_be;
}

/* Writes new IP and UDP headers (and MACs) at the front of the packet: a
 * relayed datagram (or a Binding response) is a new packet from our own
 * address, so it keeps only the sender's DSCP/ECN and, over IPv4, its DF
 * bit (RFC 8656 §14: DONT-FRAGMENT semantics), and nothing that names the
 * sender's flow:
 * - IPv4 identification: a fresh random value per packet. Copying it would
 *   hand the peer the client's ID sequence (fingerprinting, and counting
 *   the client's traffic); a counter would leak our own packet rate (RFC
 *   7739 §5) and, per CPU, collide across CPUs. Unique enough for
 *   reassembly of non-atomic datagrams (RFC 6864 §4), like Linux's own
 *   hashed per-destination counters; any value will do for atomic ones.
 * - IPv6 flow label: zero, "not labelled" (RFC 6437 §3 lets a source leave
 *   it so). A hash of the relay's flow, as Linux's auto flow labels give
 *   the userspace path's socket, is keyed by a boot secret we cannot
 *   reproduce here, so the two paths would differ anyway; zero needs no
 *   state or key and cannot leak the sender's label. */
static __always_inline int write_headers(struct xdp_md *ctx, int v6, struct ethhdr *eth, void *iph,
					 const __u8 *src, const __u8 *dst, __u16 sport, __u16 dport,
					 __u16 udp_len, __u16 check)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 l3len = v6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr);
	struct udphdr *udp = data + sizeof(struct ethhdr) + l3len;
	if ((void *)(udp + 1) > end)
		return -1;
	__builtin_memcpy(data, eth, sizeof(struct ethhdr));
	if (v6) {
		struct ipv6hdr *ip6 = data + sizeof(struct ethhdr);
		__builtin_memcpy(ip6, iph, sizeof(struct ipv6hdr));
		__builtin_memcpy(&ip6->saddr, src, 16);
		__builtin_memcpy(&ip6->daddr, dst, 16);
		ip6->payload_len = bpf_htons(udp_len);
		ip6->hop_limit = 64;
		/* The low nibble of flow_lbl[0] and the rest are the label. */
		ip6->flow_lbl[0] &= 0xf0;
		ip6->flow_lbl[1] = 0;
		ip6->flow_lbl[2] = 0;
	} else {
		struct iphdr *ip = data + sizeof(struct ethhdr);
		__builtin_memcpy(ip, iph, sizeof(struct iphdr));
		__builtin_memcpy(&ip->saddr, src, 4);
		__builtin_memcpy(&ip->daddr, dst, 4);
		ip->tot_len = bpf_htons(sizeof(struct iphdr) + udp_len);
		ip->ttl = 64;
		ip->id = (__u16)bpf_get_prandom_u32();
		ip->check = ipv4_csum(ip);
	}
	udp->source = sport;
	udp->dest = dport;
	udp->len = bpf_htons(udp_len);
	udp->check = check;
	return 0;
}

/* Copies the Ethernet and IP headers out of the packet, before it moves. */
static __always_inline int copy_headers(struct xdp_md *ctx, int v6, struct ethhdr *eth, __u8 *iph)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	if (v6) {
		if (data + sizeof(struct ethhdr) + sizeof(struct ipv6hdr) > end)
			return -1;
		__builtin_memcpy(iph, data + sizeof(struct ethhdr), sizeof(struct ipv6hdr));
	} else {
		if (data + sizeof(struct ethhdr) + sizeof(struct iphdr) > end)
			return -1;
		__builtin_memcpy(iph, data + sizeof(struct ethhdr), sizeof(struct iphdr));
	}
	__builtin_memcpy(eth, data, sizeof(struct ethhdr));
	return 0;
}

static __always_inline int finish(struct xdp_md *ctx, int action, __u32 ifindex)
{
	if (action == XDP_REDIRECT)
		return bpf_redirect(ifindex, 0);
	if (action == 0)
		return XDP_PASS;
	return action;
}

/* RFC 8656 §12.4 for a bound channel: ChannelData from the client becomes
 * a UDP datagram from the relay port to the peer (header and padding cut). */
static __noinline int client_to_peer(struct xdp_md *ctx, int v6, int l3len, struct flow *f)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u8 *cd = data + sizeof(struct ethhdr) + l3len + sizeof(struct udphdr);
	if ((void *)(cd + 4) > end)
		return XDP_PASS;
	__u32 ulen = f->udp_len - sizeof(struct udphdr);
	__u32 len = ((__u32)cd[2] << 8) | cd[3];
	if (ulen < 4 + len || ulen - 4 - len > 3)
		return XDP_PASS;
	struct cd_key k = {};
	__builtin_memcpy(k.client, f->src, 16);
	__builtin_memcpy(k.server, f->dst, 16);
	k.client_port = f->sport;
	k.server_port = f->dport;
	__builtin_memcpy(&k.channel, cd, 2);
	k.family = v6 ? 6 : 4;
	struct to_peer_val *v = bpf_map_lookup_elem(&to_peer, &k);
	if (!v || bpf_ktime_get_ns() >= v->expires_ns)
		return XDP_PASS;
	if (v6 && f->check == 0)
		return XDP_PASS;
	struct to_peer_val val = *v;
	__u16 out_len = sizeof(struct udphdr) + len;
	__u8 smac[ETH_ALEN], dmac[ETH_ALEN];
	__u32 ifindex = 0;
	int action = next_hop(ctx, v6, val.relay, val.peer, val.relay_port, val.peer_port, l3len + out_len,
			      smac, dmac, &ifindex);
	if (action < 0)
		return XDP_PASS;

	/* The checksum: the payload keeps its word alignment (the cut is 4
	 * bytes), so only the headers, the ChannelData header and the last
	 * word with the padding change. */
	__u16 check = 0;
	if (f->check && action == 0) {
		/* Handed to the local stack: a sender on this host may have left
		 * only the pseudo-header sum in the field (CHECKSUM_PARTIAL, which
		 * loopback cannot turn off), so sum the payload afresh. */
		__u64 ps;
		if (payload_sum(ctx, sizeof(struct ethhdr) + l3len + sizeof(struct udphdr) + 4, len, &ps))
			return XDP_PASS;
		__u64 sum = pseudo_sum(v6, val.relay, val.peer, bpf_htons(out_len)) + bpf_htons(IPPROTO_UDP) +
			    val.relay_port + val.peer_port + ps;
		check = ~fold(sum);
		if (!check)
			check = 0xffff;
	} else if (f->check) {
		__u32 k4 = 4 + len;
		__u32 tail = k4 & ~1u;
		__u8 in[4] = {}, outw[2] = {};
		__u32 n = ulen - tail;
		if (n > 4)
			return XDP_PASS;
		if (n > 0 && bpf_xdp_load_bytes(ctx, sizeof(struct ethhdr) + l3len + sizeof(struct udphdr) + tail,
						in, n))
			return XDP_PASS;
		if (k4 & 1)
			outw[0] = in[0];
		__u64 removed = pseudo_sum(v6, f->src, f->dst, bpf_htons(f->udp_len)) + f->sport + f->dport +
				sum_words(cd, 4) + sum_words(in, 4);
		__u64 added = pseudo_sum(v6, val.relay, val.peer, bpf_htons(out_len)) + val.relay_port +
			      val.peer_port + sum_words(outw, 2);
		check = csum_replace(f->check, removed, added);
	}

	struct ethhdr eth;
	__u8 iph[sizeof(struct ipv6hdr)];
	if (copy_headers(ctx, v6, &eth, iph))
		return XDP_PASS;
	if (action != 0) {
		__builtin_memcpy(eth.h_source, smac, ETH_ALEN);
		__builtin_memcpy(eth.h_dest, dmac, ETH_ALEN);
	}
	__u32 frame = (__u32)(end - data);
	__u32 want = sizeof(struct ethhdr) + l3len + out_len;
	if (bpf_xdp_adjust_head(ctx, 4))
		return XDP_PASS;
	/* The frame lost 4 bytes in front; cut padding and any trailer. */
	int shrink = (int)(frame - 4) - (int)want;
	if (shrink > 0 && bpf_xdp_adjust_tail(ctx, -shrink))
		return XDP_DROP;
	if (write_headers(ctx, v6, &eth, iph, val.relay, val.peer, val.relay_port, val.peer_port, out_len, check))
		return XDP_DROP;
	count_traffic(val.counter, len, 0);
	count(STAT_TO_PEER);
	return finish(ctx, action, ifindex);
}

/* RFC 8656 §12.5 for a bound channel: a UDP datagram from the peer becomes
 * ChannelData to the client (no padding over UDP). */
static __noinline int peer_to_client(struct xdp_md *ctx, int v6, int l3len, struct flow *f)
{
	struct peer_key k = {};
	__builtin_memcpy(k.peer, f->src, 16);
	__builtin_memcpy(k.relay, f->dst, 16);
	k.peer_port = f->sport;
	k.relay_port = f->dport;
	k.family = v6 ? 6 : 4;
	struct to_client_val *v = bpf_map_lookup_elem(&to_client, &k);
	if (!v || bpf_ktime_get_ns() >= v->expires_ns)
		return XDP_PASS;
	if (v6 && f->check == 0)
		return XDP_PASS;
	struct to_client_val val = *v;
	__u32 len = f->udp_len - sizeof(struct udphdr);
	__u16 out_len = sizeof(struct udphdr) + 4 + len;
	__u8 smac[ETH_ALEN], dmac[ETH_ALEN];
	__u32 ifindex = 0;
	int action = next_hop(ctx, v6, val.server, val.client, val.server_port, val.client_port,
			      l3len + out_len, smac, dmac, &ifindex);
	if (action < 0)
		return XDP_PASS;
	__u16 cd[2] = {val.channel, bpf_htons(len)};
	__u16 check = 0;
	if (f->check && action == 0) {
		/* As in client_to_peer: sum afresh for the local stack. */
		__u64 ps;
		if (payload_sum(ctx, sizeof(struct ethhdr) + l3len + sizeof(struct udphdr), len, &ps))
			return XDP_PASS;
		__u64 sum = pseudo_sum(v6, val.server, val.client, bpf_htons(out_len)) + bpf_htons(IPPROTO_UDP) +
			    val.server_port + val.client_port + cd[0] + cd[1] + ps;
		check = ~fold(sum);
		if (!check)
			check = 0xffff;
	} else if (f->check) {
		__u64 removed = pseudo_sum(v6, f->src, f->dst, bpf_htons(f->udp_len)) + f->sport + f->dport;
		__u64 added = pseudo_sum(v6, val.server, val.client, bpf_htons(out_len)) + val.server_port +
			      val.client_port + cd[0] + cd[1];
		check = csum_replace(f->check, removed, added);
	}
	void *data = (void *)(long)ctx->data;
	struct ethhdr eth;
	__u8 iph[sizeof(struct ipv6hdr)];
	if (copy_headers(ctx, v6, &eth, iph))
		return XDP_PASS;
	if (action != 0) {
		__builtin_memcpy(eth.h_source, smac, ETH_ALEN);
		__builtin_memcpy(eth.h_dest, dmac, ETH_ALEN);
	}
	if (bpf_xdp_adjust_head(ctx, -4))
		return XDP_PASS;
	if (write_headers(ctx, v6, &eth, iph, val.server, val.client, val.server_port, val.client_port, out_len,
			  check))
		return XDP_DROP;
	data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u16 *p = data + sizeof(struct ethhdr) + l3len + sizeof(struct udphdr);
	if ((void *)(p + 2) > end)
		return XDP_DROP;
	p[0] = cd[0];
	p[1] = cd[1];
	count_traffic(val.counter, len, 1);
	count(STAT_TO_CLIENT);
	return finish(ctx, action, ifindex);
}

/* RFC 8489 §6.3.1 for the simplest request: a Binding with no attributes
 * but an optional FINGERPRINT, on a listener port, answered in place with
 * XOR-MAPPED-ADDRESS (and FINGERPRINT if the request had one). Stateless. */
static __noinline int binding(struct xdp_md *ctx, int v6, int l3len, struct flow *f)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u8 *m = data + sizeof(struct ethhdr) + l3len + sizeof(struct udphdr);
	if ((void *)(m + 20) > end)
		return XDP_PASS;
	__u32 ulen = f->udp_len - sizeof(struct udphdr);
	__u16 mlen = ((__u16)m[2] << 8) | m[3];
	__u32 cookie;
	__builtin_memcpy(&cookie, m + 4, 4);
	if (m[0] != 0 || m[1] != 1 || cookie != bpf_htonl(STUN_COOKIE) || (mlen != 0 && mlen != 8) ||
	    ulen != 20 + mlen)
		return XDP_PASS;
	struct listener_key lk = {};
	__builtin_memcpy(lk.addr, f->dst, 16);
	lk.port = f->dport;
	lk.family = v6 ? 6 : 4;
	if (!bpf_map_lookup_elem(&listeners, &lk)) {
		__builtin_memset(lk.addr, 0, 16);
		if (!bpf_map_lookup_elem(&listeners, &lk))
			return XDP_PASS;
	}
	struct stun_buf rb = {};
	__u8 *r = rb.b;
	__builtin_memcpy(r, m, 20);
	int fp = mlen == 8;
	if (fp) {
		__u8 *a = m + 20;
		if ((void *)(a + 8) > end)
			return XDP_PASS;
		__u32 want;
		__builtin_memcpy(&want, a + 4, 4);
		if (a[0] != 0x80 || a[1] != 0x28 || a[2] != 0 || a[3] != 4 ||
		    bpf_ntohl(want) != (stun_crc32(&rb, 20) ^ FINGERPRINT_XOR))
			return XDP_PASS;
	}
	/* Response header: Binding success, same transaction. */
	int xma = v6 ? 24 : 12;
	int rlen = 20 + xma + (fp ? 8 : 0);
	r[0] = 0x01;
	r[1] = 0x01;
	r[2] = 0;
	r[3] = rlen - 20;
	/* XOR-MAPPED-ADDRESS (RFC 8489 §14.2). */
	r[20] = 0x00;
	r[21] = 0x20;
	r[22] = 0;
	r[23] = xma - 4;
	r[24] = 0;
	r[25] = v6 ? 2 : 1;
	__u8 *sp = (__u8 *)&f->sport;
	r[26] = sp[0] ^ 0x21;
	r[27] = sp[1] ^ 0x12;
#pragma unroll
	for (int i = 0; i < 16; i++)
		if (i < (v6 ? 16 : 4))
			r[28 + i] = f->src[i] ^ r[4 + i];
	if (fp) {
		int at = 20 + xma;
		__u32 crc = bpf_htonl(stun_crc32(&rb, at) ^ FINGERPRINT_XOR);
		if (at == 32) {
			r[32] = 0x80, r[33] = 0x28, r[34] = 0, r[35] = 4;
			__builtin_memcpy(r + 36, &crc, 4);
		} else {
			r[44] = 0x80, r[45] = 0x28, r[46] = 0, r[47] = 4;
			__builtin_memcpy(r + 48, &crc, 4);
		}
	}
	__u16 out_len = sizeof(struct udphdr) + rlen;
	__u64 s = pseudo_sum(v6, f->dst, f->src, bpf_htons(out_len)) + bpf_htons(IPPROTO_UDP) + f->sport +
		  f->dport;
#pragma unroll
	for (int i = 0; i < 52; i += 2)
		if (i < rlen)
			s += *(__u16 *)(r + i);
	__u16 check = ~fold(s);
	if (!check)
		check = 0xffff;

	struct ethhdr eth;
	__u8 iph[sizeof(struct ipv6hdr)];
	if (copy_headers(ctx, v6, &eth, iph))
		return XDP_PASS;
	__u8 mac[ETH_ALEN];
	__builtin_memcpy(mac, eth.h_source, ETH_ALEN);
	__builtin_memcpy(eth.h_source, eth.h_dest, ETH_ALEN);
	__builtin_memcpy(eth.h_dest, mac, ETH_ALEN);
	/* Grow at the front (XDP guarantees 256 bytes of headroom; tailroom is
	 * up to the driver), cut any Ethernet trailer at the back. */
	int delta = (int)(sizeof(struct ethhdr) + l3len + out_len) - (int)(end - data);
	if (delta > 0 && bpf_xdp_adjust_head(ctx, -delta))
		return XDP_PASS;
	if (delta < 0 && bpf_xdp_adjust_tail(ctx, delta))
		return XDP_PASS;
	struct flow g = *f;
	if (write_headers(ctx, v6, &eth, iph, g.dst, g.src, g.dport, g.sport, out_len, check))
		return XDP_DROP;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	__u8 *o = data + sizeof(struct ethhdr) + l3len + sizeof(struct udphdr);
	if ((void *)(o + 52) <= end) {
		__builtin_memcpy(o, r, 52);
	} else if ((void *)(o + 44) <= end) {
		__builtin_memcpy(o, r, 44);
	} else if ((void *)(o + 40) <= end) {
		__builtin_memcpy(o, r, 40);
	} else if ((void *)(o + 32) <= end) {
		__builtin_memcpy(o, r, 32);
	} else {
		return XDP_DROP;
	}
	count(STAT_BINDING);
	return XDP_TX;
}

static __noinline int handle(struct xdp_md *ctx, int v6)
{
	struct flow f;
	int l3len = parse(ctx, v6, &f);
	if (!l3len)
		return XDP_PASS;
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u8 *payload = data + sizeof(struct ethhdr) + l3len + sizeof(struct udphdr);
	if ((void *)(payload + 1) > end)
		return peer_to_client(ctx, v6, l3len, &f);
	/* RFC 7983 demultiplexing: 0..3 is STUN, 64..79 ChannelData (RFC 8656
	 * §12); a peer's datagram may start with anything. */
	int rc = -1;
	if (payload[0] == 0)
		rc = binding(ctx, v6, l3len, &f);
	else if (payload[0] >= 0x40 && payload[0] <= 0x7f)
		rc = client_to_peer(ctx, v6, l3len, &f);
	if (rc == XDP_PASS || rc < 0)
		rc = peer_to_client(ctx, v6, l3len, &f);
	if (rc == XDP_PASS)
		count(STAT_PASS);
	return rc;
}

SEC("xdp")
int ternd_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		return handle(ctx, 0);
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		return handle(ctx, 1);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
