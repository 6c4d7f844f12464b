/* iptext.h: addresses (and host names) as text, the way tcpserver puts them
 * in TCPREMOTEIP (and TCPREMOTEHOST).
 *
 * IPv6 uses the ucspi-tcp IPv6 patch's own format (docs/lookup.md):
 * lowercase hex without leading zeros; the longest run of zero groups,
 * even a run of one, becomes "::" (the first of equal runs); addresses in
 * ::ffff:0:0/96 end in a dotted quad.  No zone. */
#ifndef CDBRULES_IPTEXT_H
#define CDBRULES_IPTEXT_H

#include <stddef.h>

#define IP4_FMT 16 /* room for "255.255.255.255" and a NUL */
#define IP6_FMT 46 /* room for the longest IPv6 text and a NUL */

/* Write the text of ip into out, NUL-terminated; return its length. */
size_t ip4_fmt(char *out, const unsigned char ip[4]);
size_t ip6_fmt(char *out, const unsigned char ip[16]);

/* What tcpserver puts in TCPREMOTEIP for a client at ip (IPv6, an IPv4
 * client being ::ffff:a.b.c.d): the dotted quad for a v4-mapped address
 * unless forcev6 (tcpserver -6), else ip6_fmt().  Return the length. */
size_t ip_tcpserver_fmt(char *out, const unsigned char ip[16], int forcev6);

/* Whether s[0..len) is text tcpserver could put in TCPREMOTEIP: a dotted
 * quad as ip4_fmt() writes it (an IPv4 client; never with forcev6), or an
 * IPv6 address as ip6_fmt() writes it, ::ffff:a.b.c.d only with forcev6
 * (tcpserver -6; without it such a client is its dotted quad).  1 or 0. */
int ip_is_tcpserver_text(const char *s, size_t len, int forcev6);

/* Whether s[0..len) is a name as tcpserver writes TCPREMOTEHOST (djb's
 * dns_domain_todot): "." (the root), or labels of a-z 0-9 - _ and \ooo
 * escapes (three octal digits: any other byte, an upper-case letter having
 * been lowered) joined by single dots, with no trailing dot.  1 or 0. */
int host_is_tcpserver_text(const char *s, size_t len);

#endif
