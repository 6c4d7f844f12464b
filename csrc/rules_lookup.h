/* rules_lookup.h: which rule tcpserver applies to a connection
 * (docs/lookup.md, "The lookup order").
 *
 * The keys are tried in tcpserver's order and the first record of the first
 * key present decides.  IP prefixes end at '.' or ':' (the IPv6 build's
 * boundaries, a superset of the IPv4 build's).  Nothing here writes to the
 * struct cdb, so lookups on one file may run in many threads at once. */
#ifndef CDBRULES_RULES_LOOKUP_H
#define CDBRULES_RULES_LOOKUP_H

#include <stddef.h>
#include <stdint.h>
#include "cdb.h"
#include "iptext.h"

/* IP prefixes up to this long get their hash from the one pass that hashes
 * the whole IP (a prefix's hash is a step of its IP's); longer ones, which
 * tcpserver never produces, are hashed on their own. */
#define RULES_PROBE_MEMO 64

/* The keys to try for one connection, one at a time.  host and info may be
 * NULL (absent); present but empty is not absent. */
struct rules_probe {
  uint32_t hash; /* cdb_hash() of the key rules_probe_next() last gave */
  const unsigned char *ip, *host, *info;
  size_t iplen, hostlen, infolen;
  unsigned char *buf; /* room for rules_probe_bufsize() bytes */
  int step;
  size_t at;
  uint32_t memo[RULES_PROBE_MEMO + 1]; /* memo[l]: the hash of the IP's first l bytes */
};

/* How much room the keys that join two parts (info@ip, =host ...) need. */
size_t rules_probe_bufsize(size_t iplen, size_t hostlen, size_t infolen);

void rules_probe_start(struct rules_probe *pr, const void *ip, size_t iplen, const void *host,
                       size_t hostlen, const void *info, size_t infolen, unsigned char *buf);

/* Set *key and *klen to the next key to try, pr->hash to its hash, and
 * return 1; 0 when all were tried. */
int rules_probe_next(struct rules_probe *pr, const unsigned char **key, size_t *klen);

/* The record that decides: its position (> 0), 0 when no key matches
 * (tcpserver then allows), -1 with errno EPROTO (corrupt file) or ENOMEM. */
int64_t rules_lookup(const struct cdb *c, const void *ip, size_t iplen, const void *host, size_t hostlen,
                     const void *info, size_t infolen);

/* rules_lookup() for NUL-terminated strings, host and info NULL when absent. */
int64_t rules_check(const struct cdb *c, const char *ip, const char *host, const char *info);

/* rules_check(c, ip, NULL, NULL): a connection with neither host nor info. */
int64_t rules_check_ip(const struct cdb *c, const char *ip);

/* rules_check_ip() for n addresses, NUL-separated in ips[0..len): set out[i]
 * for each.  Return n, or -1 with errno (EPROTO, or EINVAL when more than
 * max addresses are given). */
long rules_check_many(const struct cdb *c, const char *ips, size_t len, int64_t *out, size_t max);

/* What the rules_check_tcp*() functions return, nothing looked up, for
 * text tcpserver never passes (iptext.h): an ip it could not print, a
 * host it could not write. */
#define RULES_BAD_IP (-2)
#define RULES_BAD_HOST (-3)

/* rules_check() for a connection as tcpserver sees it: ip must pass
 * ip_is_tcpserver_text(forcev6) and a present host host_is_tcpserver_text();
 * info is the ident reply, any text.  RULES_BAD_IP or RULES_BAD_HOST if not. */
int64_t rules_check_tcp(const struct cdb *c, const char *ip, const char *host, const char *info, int forcev6);

/* rules_check_tcp(c, ip, NULL, NULL, 0) and (..., 1): one argument less to
 * pass from Python on the hot path. */
int64_t rules_check_tcpip(const struct cdb *c, const char *ip);
int64_t rules_check_tcpip6(const struct cdb *c, const char *ip);

/* rules_check_many() with each address checked as rules_check_tcp() does:
 * out[i] is RULES_BAD_IP for one tcpserver never passes. */
long rules_check_many_tcp(const struct cdb *c, const char *ips, size_t len, int64_t *out, size_t max,
                          int forcev6);

/* Check the whole file ahead of any lookup, as cdb_make lays it out: the
 * 256 hash tables follow one another in order from the end of the records
 * to the end of the file, and each slot names a record that fits.  A file
 * cut short, grown, or caught half rewritten in place (djb's writer puts
 * the header last: until then it is zeros) fails.  After 0, no lookup on
 * c can fail with EPROTO.  Return 0, -1 with errno EPROTO (or EBADF: no
 * map).  Work is bounded by the file size, whatever the file holds. */
int rules_verify(const struct cdb *c);

#endif
