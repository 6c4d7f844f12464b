/* rules_lookup.c: tcpserver's probe order (docs/lookup.md) in one call. */
#include <errno.h>
#include <stdlib.h>
#include "cdb_int.h"
#include "rules_lookup.h"

enum { STEP_INFO_IP, STEP_INFO_HOST, STEP_IP, STEP_HOST, STEP_PREFIX, STEP_SUFFIX, STEP_EQ, STEP_EMPTY, STEP_DONE };

size_t
rules_probe_bufsize(size_t iplen, size_t hostlen, size_t infolen)
{
  size_t a = infolen + 1 + iplen, b = infolen + 2 + hostlen;
  return (a > b ? a : b) + 1;
}

void
rules_probe_start(struct rules_probe *pr, const void *ip, size_t iplen, const void *host, size_t hostlen,
                  const void *info, size_t infolen, unsigned char *buf)
{
  pr->ip = ip;
  pr->iplen = iplen;
  pr->host = host;
  pr->hostlen = host ? hostlen : 0;
  pr->info = info;
  pr->infolen = info ? infolen : 0;
  pr->buf = buf;
  pr->step = pr->info ? STEP_INFO_IP : STEP_IP;
  pr->at = 0;
}

/* Hash the IP, keeping the hash of every prefix the memo has room for. */
static uint32_t
_rules_hash_ip(struct rules_probe *pr)
{
  uint32_t h = CDB_HASH_START;
  size_t i;
  pr->memo[0] = h;
  for (i = 0; i < pr->iplen; ++i) {
    h = cdb_hash_step(h, pr->ip[i]);
    if (i < RULES_PROBE_MEMO)
      pr->memo[i + 1] = h;
  }
  return h;
}

/* What _rules_next() gave: no key, a key, a key with its hash set already. */
enum { NEXT_DONE, NEXT_KEY, NEXT_HASHED };

static int
_rules_next(struct rules_probe *pr, const unsigned char **key, size_t *klen)
{
  for (;;)
    switch (pr->step) {
    case STEP_INFO_IP: /* info@ip */
      memcpy(pr->buf, pr->info, pr->infolen);
      pr->buf[pr->infolen] = '@';
      memcpy(pr->buf + pr->infolen + 1, pr->ip, pr->iplen);
      *key = pr->buf;
      *klen = pr->infolen + 1 + pr->iplen;
      pr->step = pr->host ? STEP_INFO_HOST : STEP_IP;
      return NEXT_KEY;
    case STEP_INFO_HOST: /* info@=host */
      memcpy(pr->buf + pr->infolen + 1, "=", 1);
      memcpy(pr->buf + pr->infolen + 2, pr->host, pr->hostlen);
      *key = pr->buf;
      *klen = pr->infolen + 2 + pr->hostlen;
      pr->step = STEP_IP;
      return NEXT_KEY;
    case STEP_IP:
      *key = pr->ip;
      *klen = pr->iplen;
      pr->hash = _rules_hash_ip(pr);
      pr->step = pr->host ? STEP_HOST : STEP_PREFIX;
      pr->at = pr->iplen;
      return NEXT_HASHED;
    case STEP_HOST: /* =host */
      pr->buf[0] = '=';
      memcpy(pr->buf + 1, pr->host, pr->hostlen);
      *key = pr->buf;
      *klen = 1 + pr->hostlen;
      pr->step = STEP_PREFIX;
      return NEXT_KEY;
    case STEP_PREFIX: /* ip prefixes ending at '.' or ':', longest first */
      while (pr->at > 0) {
        size_t l = pr->at--;
        if (pr->ip[l - 1] == '.' || pr->ip[l - 1] == ':') {
          *key = pr->ip;
          *klen = l;
          pr->hash = l <= RULES_PROBE_MEMO ? pr->memo[l] : cdb_hash(pr->ip, l);
          return NEXT_HASHED;
        }
      }
      pr->step = pr->host ? STEP_SUFFIX : STEP_EMPTY;
      pr->at = 0;
      break;
    case STEP_SUFFIX: /* =.suffix of host, longest first */
      while (pr->at < pr->hostlen) {
        size_t i = pr->at++;
        if (pr->host[i] == '.') {
          pr->buf[0] = '=';
          memcpy(pr->buf + 1, pr->host + i, pr->hostlen - i);
          *key = pr->buf;
          *klen = 1 + pr->hostlen - i;
          return NEXT_KEY;
        }
      }
      pr->step = STEP_EQ;
      break;
    case STEP_EQ:
      *key = (const unsigned char *)"=";
      *klen = 1;
      pr->step = STEP_EMPTY;
      return NEXT_KEY;
    case STEP_EMPTY:
      *key = (const unsigned char *)"";
      *klen = 0;
      pr->step = STEP_DONE;
      return NEXT_KEY;
    default:
      return NEXT_DONE;
    }
}

int
rules_probe_next(struct rules_probe *pr, const unsigned char **key, size_t *klen)
{
  int r = _rules_next(pr, key, klen);
  if (r == NEXT_KEY)
    pr->hash = cdb_hash(*key, *klen);
  return r != NEXT_DONE;
}

/* Search one key: 1 when it decides (*result: its first record, or -1 on a
 * corrupt file), 0 when it is absent and the next key must be tried. */
static int
_rules_try(const struct cdb *c, const unsigned char *key, size_t klen, uint32_t hash, int64_t *result)
{
  struct cdb_find f;
  int r = cdb_findstart_hash(&f, c, key, klen, hash);
  if (!r)
    r = cdb_findnext(&f);
  if (!r)
    return 0;
  *result = r < 0 ? -1 : (int64_t)f.rpos;
  return 1;
}

/* Ask for the slot where a search for hash starts, ahead of the search. */
static inline void
_rules_prefetch(const struct cdb *c, uint32_t hash)
{
#if defined(__GNUC__)
  const unsigned char *h = c->map + (hash & 255) * 8;
  uint32_t tpos = cdb_unpack(h), slots = cdb_unpack(h + 4);
  if (slots && cdb_seen(c, hash)) {
    uint64_t s = (uint64_t)tpos + (uint64_t)((hash >> 8) % slots) * 8;
    if (s + 8 <= c->size)
      __builtin_prefetch(c->map + s);
  }
#else
  (void)c;
  (void)hash;
#endif
}

#define RULES_IP_PROBES 48
#ifndef RULES_PREFETCH_SIZE /* the fuzz build lowers it, to reach both paths */
#define RULES_PREFETCH_SIZE (4u << 20) /* smaller files stay in the caches: no gain there */
#endif

/* A connection with neither host nor info (the common case): its keys (the IP,
 * its prefixes, "") all point into ip, so they are listed first and the slot
 * of every one is requested from memory before the searches, which need them
 * one after another, run.  On a file larger than the caches the memory
 * latency of the probes then overlaps instead of adding up (a file that fits
 * in the caches gains nothing and takes the general path).  An IP with more
 * boundaries than the list holds takes the general path too. */
static int
_rules_lookup_ip(const struct cdb *c, const void *ip, size_t iplen, int64_t *result)
{
  struct rules_probe pr;
  const unsigned char *keys[RULES_IP_PROBES];
  size_t lens[RULES_IP_PROBES], n = 0, i;
  uint32_t hashes[RULES_IP_PROBES];
  rules_probe_start(&pr, ip, iplen, NULL, 0, NULL, 0, NULL);
  while (rules_probe_next(&pr, &keys[n], &lens[n])) {
    hashes[n] = pr.hash;
    _rules_prefetch(c, pr.hash);
    if (++n == RULES_IP_PROBES)
      return 0;
  }
  *result = 0;
  for (i = 0; i < n && !_rules_try(c, keys[i], lens[i], hashes[i], result); ++i)
    ;
  return 1;
}

int64_t
rules_lookup(const struct cdb *c, const void *ip, size_t iplen, const void *host, size_t hostlen,
             const void *info, size_t infolen)
{
  unsigned char small[512], *buf = small;
  struct rules_probe pr;
  const unsigned char *key;
  size_t klen, need = rules_probe_bufsize(iplen, host ? hostlen : 0, info ? infolen : 0);
  int64_t result = 0;
  if (!host && !info && c->size > RULES_PREFETCH_SIZE && _rules_lookup_ip(c, ip, iplen, &result))
    return result;
  if ((host || info) && need > sizeof small && !(buf = malloc(need)))
    return errno = ENOMEM, -1;
  rules_probe_start(&pr, ip, iplen, host, hostlen, info, infolen, buf);
  while (rules_probe_next(&pr, &key, &klen) && !_rules_try(c, key, klen, pr.hash, &result))
    ;
  if (buf != small)
    free(buf);
  return result;
}

int64_t
rules_check(const struct cdb *c, const char *ip, const char *host, const char *info)
{
  return rules_lookup(c, ip, strlen(ip), host, host ? strlen(host) : 0, info, info ? strlen(info) : 0);
}

int64_t
rules_check_ip(const struct cdb *c, const char *ip)
{
  return rules_lookup(c, ip, strlen(ip), NULL, 0, NULL, 0);
}

int64_t
rules_check_tcp(const struct cdb *c, const char *ip, const char *host, const char *info, int forcev6)
{
  size_t iplen = strlen(ip), hostlen = host ? strlen(host) : 0;
  if (!c->map) /* closed: say so before judging the text */
    return errno = EBADF, -1;
  if (!ip_is_tcpserver_text(ip, iplen, forcev6))
    return RULES_BAD_IP;
  if (host && !host_is_tcpserver_text(host, hostlen))
    return RULES_BAD_HOST;
  return rules_lookup(c, ip, iplen, host, hostlen, info, info ? strlen(info) : 0);
}

int64_t
rules_check_tcpip(const struct cdb *c, const char *ip)
{
  return rules_check_tcp(c, ip, NULL, NULL, 0);
}

int64_t
rules_check_tcpip6(const struct cdb *c, const char *ip)
{
  return rules_check_tcp(c, ip, NULL, NULL, 1);
}

/* rules_check_many() and rules_check_many_tcp(): check is -1 for the former
 * (no address refused), else forcev6. */
static long
_rules_many(const struct cdb *c, const char *ips, size_t len, int64_t *out, size_t max, int check)
{
  const char *p = ips, *end = ips + len;
  size_t n = 0;
  if (!c->map)
    return errno = EBADF, -1;
  for (;;) {
    const char *z = memchr(p, 0, (size_t)(end - p));
    size_t l = z ? (size_t)(z - p) : (size_t)(end - p);
    if (n == max)
      return errno = EINVAL, -1;
    if (check >= 0 && !ip_is_tcpserver_text(p, l, check))
      out[n++] = RULES_BAD_IP;
    else if ((out[n++] = rules_lookup(c, p, l, NULL, 0, NULL, 0)) < 0)
      return -1;
    if (!z)
      return (long)n;
    p = z + 1;
  }
}

long
rules_check_many(const struct cdb *c, const char *ips, size_t len, int64_t *out, size_t max)
{
  return _rules_many(c, ips, len, out, max, -1);
}

long
rules_check_many_tcp(const struct cdb *c, const char *ips, size_t len, int64_t *out, size_t max, int forcev6)
{
  return _rules_many(c, ips, len, out, max, forcev6 ? 1 : 0);
}

int
rules_verify(const struct cdb *c)
{
  uint64_t at;
  unsigned b;
  if (!c->map)
    return errno = EBADF, -1;
  at = cdb_unpack(c->map); /* table 0 starts where the records end */
  if (at < CDB_HEADER_SIZE)
    return errno = EPROTO, -1;
  for (b = 0; b < 256; ++b) {
    uint32_t tpos = cdb_unpack(c->map + b * 8), slots = cdb_unpack(c->map + b * 8 + 4), i;
    if (tpos != at || at + (uint64_t)slots * 8 > c->size)
      return errno = EPROTO, -1;
    at += (uint64_t)slots * 8;
    for (i = 0; i < slots; ++i) {
      uint32_t rpos = cdb_unpack(c->map + tpos + (size_t)i * 8 + 4), kpos, klen, dpos, dlen;
      if (rpos && cdb_record(c, rpos, &kpos, &klen, &dpos, &dlen) < 0)
        return -1;
    }
  }
  return at == c->size ? 0 : (errno = EPROTO, -1);
}
