/* A closed-loop, in-kernel Binding load for benches/fastpath.sh: attached
 * (native XDP) to the client side of the lab's client veth, it turns every
 * STUN Binding success response from the server under test (source port
 * ctl[CTL_PORT]) back into a new 20-byte Binding request (RFC 8489 §6.1:
 * type 0x0001, no attributes, magic cookie, a transaction id one up from the
 * answered one) to the same server from the same client address, and
 * XDP_TXes it. Userspace seeds a window of requests; from then on each
 * answer costs the load side one XDP run and one veth hop, no syscall.
 *
 * ctl[CTL_MODE] = 1 stops the loop: answers then go up (XDP_PASS) to the
 * seeding sockets, which count what was still in flight. Counters are
 * per CPU (counts[]); the script sums them over the measured interval.
 *
 * IPv4 without options only; anything else passes untouched. The UDP
 * checksum is summed afresh (the 20-byte request is all there is). */

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define STUN_COOKIE 0x2112A442
#define REQ_LEN 20

enum { CTL_MODE, CTL_PORT, CTL_COUNT };
enum { C_REFLECTED, C_DRAINED, C_OTHER, C_COUNT };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, CTL_COUNT);
	__type(key, __u32);
	__type(value, __u32);
} ctl SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, C_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

static __always_inline void count(__u32 which)
{
	__u64 *v = bpf_map_lookup_elem(&counts, &which);
	if (v)
		*v += 1;
}

static __always_inline __u32 ctl_get(__u32 which)
{
	__u32 *v = bpf_map_lookup_elem(&ctl, &which);
	return v ? *v : 0;
}

static __always_inline __u16 fold(__u64 s)
{
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)s;
}

SEC("xdp")
int binding_reflector(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	__u8 *m = (void *)(udp + 1);
	if ((void *)(m + REQ_LEN) > end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5 ||
	    ip->protocol != IPPROTO_UDP || (ip->frag_off & bpf_htons(0x3fff)))
		return XDP_PASS;
	__u32 cookie;
	__builtin_memcpy(&cookie, m + 4, 4);
	if (udp->source != bpf_htons(ctl_get(CTL_PORT)) || m[0] != 0x01 || m[1] != 0x01 ||
	    cookie != bpf_htonl(STUN_COOKIE)) {
		count(C_OTHER);
		return XDP_PASS;
	}
	if (ctl_get(CTL_MODE)) {
		count(C_DRAINED);
		return XDP_PASS;
	}

	__u8 mac[ETH_ALEN];
	__builtin_memcpy(mac, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, mac, ETH_ALEN);
	__u32 a = ip->saddr;
	ip->saddr = ip->daddr;
	ip->daddr = a;
	ip->tot_len = bpf_htons(sizeof(*ip) + sizeof(*udp) + REQ_LEN);
	ip->ttl = 64;
	ip->check = 0;
	__u64 s = 0;
	__u16 *w = (__u16 *)ip;
#pragma unroll
	for (int i = 0; i < 10; i++)
		s += w[i];
	ip->check = ~fold(s);

	__u16 p = udp->source;
	udp->source = udp->dest;
	udp->dest = p;
	udp->len = bpf_htons(sizeof(*udp) + REQ_LEN);
	udp->check = 0;
	/* Binding request, no attributes, next transaction id. */
	m[0] = 0x00;
	m[1] = 0x01;
	m[2] = 0;
	m[3] = 0;
	__u32 t;
	__builtin_memcpy(&t, m + 16, 4);
	t = bpf_htonl(bpf_ntohl(t) + 1);
	__builtin_memcpy(m + 16, &t, 4);

	/* RFC 768 checksum: pseudo-header, UDP header, the request. */
	s = (ip->saddr & 0xffff) + (ip->saddr >> 16) + (ip->daddr & 0xffff) + (ip->daddr >> 16) +
	    bpf_htons(IPPROTO_UDP) + udp->len;
	w = (__u16 *)udp;
#pragma unroll
	for (int i = 0; i < (sizeof(*udp) + REQ_LEN) / 2; i++)
		s += w[i];
	__u16 check = ~fold(s);
	udp->check = check ? check : 0xffff;

	int delta = (int)(sizeof(*eth) + sizeof(*ip) + sizeof(*udp) + REQ_LEN) - (int)(end - data);
	if (delta < 0 && bpf_xdp_adjust_tail(ctx, delta))
		return XDP_DROP;
	count(C_REFLECTED);
	return XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";
