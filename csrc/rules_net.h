/* rules_net.h: networks (--cidr) as keys the real tcpserver looks up.
 *
 * A network NET/LEN means every address in it.  tcpserver only probes the
 * printed address and its prefixes that end in '.' or ':' (docs/lookup.md), so a
 * network becomes the set of such keys that matches exactly its addresses
 * (docs/networks.md):
 *
 * - IPv4: the first k = ceil(LEN/8) octets, the last of them taking each
 *   value the network allows: "a.b.X." for k < 4, the address for k = 4;
 * - IPv6: k = ceil(LEN/16) groups; for each value v of the last one,
 *   "g0:...:v:", and when v = 0 also "g0:...::" ("::" alone for k = 1);
 *   exact only when g0 .. g(k-2) are all non-zero (else the printed "::"
 *   can stand for one zero group or several).  k = 8: the printed
 *   addresses, exact unless one ends in "::" (then it is also a prefix);
 * - ::ffff:a.b.c.d/LEN (LEN >= 96) is the IPv4 network of LEN - 96.
 *
 * A rules set in --cidr mode (struct rules_netset) collects every record
 * first.  Keys that name an IP prefix in the form tcpserver prints (those
 * a network makes, and classic keys written that way: "1.2.3.", "1.2.3.4",
 * "2001:db8:") are placed, per key class, as intervals of key indices
 * ranked by length, then rule order; each key is written once, for the
 * rule that wins it (longest network, then first line).  Every other key
 * (hosts, info@, anything else) keeps its first record, in rule order.
 * A later record under a key is unreachable (a cdb lookup returns the
 * first), so dropping it changes no answer. */
#ifndef CDBRULES_RULES_NET_H
#define CDBRULES_RULES_NET_H

#include <stddef.h>
#include <stdint.h>
#include "cdb_make.h"

/* What rules_net_parse() makes of a text. */
enum rules_netcode {
  RULES_NET_OK = 0,
  RULES_NET_NOTNET,    /* no '/' (and plain addresses not asked for) */
  RULES_NET_E_SYNTAX,  /* not ADDRESS/LENGTH with a decimal LENGTH */
  RULES_NET_E_LENGTH,  /* LENGTH past 32 (IPv4) or 128 (IPv6) */
  RULES_NET_E_ZERO,    /* /0: the default rule ':' says that */
  RULES_NET_E_HOSTBITS, /* bits set past LENGTH; fix: the network's own address */
  RULES_NET_E_INEXACT, /* IPv6: a zero group before the last group of the prefix */
  RULES_NET_E_INEXACT_END /* IPv6: an address whose printed form ends in "::" */
};

struct rules_net {
  int family;               /* 4 or 6 (a ::ffff: network becomes 4) */
  unsigned len;             /* the length, in the family's own bits */
  unsigned char addr[16];   /* IPv4 in the first 4 */
  uint64_t keys;            /* how many keys it makes (capped at 2^63) */
  unsigned zerogroup;       /* E_INEXACT: the first zero group, counted from 0 */
};

#define RULES_NET_PLAIN 1 /* an address with no /LEN is the one address */

/* Parse s[0..n) as NET/LEN (or, with RULES_NET_PLAIN, an address alone).
 * Return an enum rules_netcode; net is filled as far as the text goes
 * (family, len, addr after the host bits are known, keys when OK). */
int rules_net_parse(const void *s, size_t n, int flags, struct rules_net *net);

/* Does s[0..n) look like a network someone meant (an address, '/', digits)?
 * The warning for a network key compiled without --cidr. */
int rules_net_looks(const void *s, size_t n);

/* Where a record came from: the source (counted from 0) and the line. */
struct rules_origin {
  uint64_t line;
  uint32_t src;
};

/* Append (src, line) to the array *o of *n entries (room for *cap).  Return 0 or -1 (ENOMEM). */
int rules_origin_add(struct rules_origin **o, size_t *n, size_t *cap, uint32_t src, uint64_t line);

struct rules_netset;

struct rules_netset *rules_netset_new(void);
void rules_netset_free(struct rules_netset *s);

/* Start a rule: its data (copied unless it is the same bytes as the last
 * rule's, the case of a list) and where it came from.  Return 0 or -1 (ENOMEM). */
int rules_netset_rule(struct rules_netset *s, const void *data, size_t dlen, uint32_t src, uint64_t line);

/* Add a key, or a network, of the rule started last.  Return 0 or -1 (ENOMEM). */
int rules_netset_key(struct rules_netset *s, const void *key, size_t klen);
int rules_netset_net(struct rules_netset *s, const struct rules_net *net);

/* How many networks were added (classic keys not counted). */
uint64_t rules_netset_networks(const struct rules_netset *s);

/* Order, deduplicate and write every record: into the cdb (text: NULL), or
 * as tcprules text lines "KEY:INSTRUCTION\n" to the fd text_fd.  If origin
 * is not NULL it is set to a malloc'ed array of the records' origins
 * (*norigin of them; the caller frees it).  Sets *keys to the records
 * written.  Return 0, or -1 with errno (ENOMEM, or the writer's); EDOM for
 * a key that tcprules text cannot carry (a range left in a key). */
int rules_netset_write(struct rules_netset *s, struct cdb_make *m, int text_fd, uint64_t *keys,
                       struct rules_origin **origin, size_t *norigin);

#endif
