/* rules_net.c: networks to the keys tcpserver probes (docs/networks.md), and the
 * --cidr record set: placed by key class, ordered, deduplicated, written. */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include "cdb_int.h"
#include "iptext.h"
#include "rules_net.h"

__extension__ typedef unsigned __int128 u128;

static const unsigned char _net_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* -- parsing ----------------------------------------------------------------------- */

/* s[0..n) as an address into a (16 bytes; IPv4 in the first 4); return the family or 0. */
static int
_net_addr(const unsigned char *s, size_t n, unsigned char *a)
{
  char buf[64];
  if (n == 0 || n >= sizeof buf || memchr(s, 0, n))
    return 0;
  memcpy(buf, s, n);
  buf[n] = 0;
  memset(a, 0, 16);
  if (memchr(s, ':', n))
    return inet_pton(AF_INET6, buf, a) == 1 ? 6 : 0;
  return inet_pton(AF_INET, buf, a) == 1 ? 4 : 0;
}

static unsigned
_net_group(const unsigned char *a, unsigned g)
{
  return (unsigned)a[2 * g] << 8 | a[2 * g + 1];
}

/* Any bit of a[0..bytes) at or past bit len set? */
static int
_net_hostbits(const unsigned char *a, unsigned bytes, unsigned len)
{
  unsigned i;
  for (i = len / 8; i < bytes; ++i) {
    unsigned char keep = i == len / 8 ? (unsigned char)(0xff00 >> (len % 8)) : 0;
    if (a[i] & (unsigned char)~keep)
      return 1;
  }
  return 0;
}

static uint64_t
_net_pow2(unsigned e)
{
  return e >= 63 ? (uint64_t)1 << 63 : (uint64_t)1 << e;
}

int
rules_net_parse(const void *text, size_t n, int flags, struct rules_net *net)
{
  const unsigned char *s = text, *slash = memchr(s, '/', n);
  size_t alen = slash ? (size_t)(slash - s) : n, i;
  unsigned len = 0, bits, k;
  memset(net, 0, sizeof *net);
  if (!slash && !(flags & RULES_NET_PLAIN))
    return RULES_NET_NOTNET;
  if (!(net->family = _net_addr(s, alen, net->addr)))
    return RULES_NET_E_SYNTAX;
  bits = net->family == 4 ? 32 : 128;
  if (slash) {
    if (alen + 1 == n || n - alen - 1 > 3)
      return RULES_NET_E_SYNTAX;
    for (i = alen + 1; i < n; ++i) {
      if (s[i] < '0' || s[i] > '9')
        return RULES_NET_E_SYNTAX;
      len = len * 10 + (unsigned)(s[i] - '0');
    }
  } else
    len = bits;
  net->len = len;
  if (len > bits)
    return RULES_NET_E_LENGTH;
  if (len == 0)
    return RULES_NET_E_ZERO;
  if (_net_hostbits(net->addr, bits / 8, len)) {
    /* the network the admin probably meant, for the message */
    for (i = len / 8; i < bits / 8; ++i)
      net->addr[i] &= i == len / 8 ? (unsigned char)(0xff00 >> (len % 8)) : 0;
    return RULES_NET_E_HOSTBITS;
  }
  if (net->family == 6 && len >= 96 && memcmp(net->addr, _net_mapped, 12) == 0) {
    memmove(net->addr, net->addr + 12, 4);
    memset(net->addr + 4, 0, 12);
    net->family = 4;
    net->len = len -= 96;
    if (len == 0)
      return RULES_NET_E_ZERO;
  }
  if (net->family == 4) {
    k = (len + 7) / 8;
    net->keys = _net_pow2(8 * k - len);
    return RULES_NET_OK;
  }
  k = (len + 15) / 16;
  net->keys = _net_pow2(16 * k - len);
  if (k < 8) {
    unsigned g;
    for (g = 0; g + 1 < k; ++g)
      if (_net_group(net->addr, g) == 0) {
        net->zerogroup = g;
        return RULES_NET_E_INEXACT;
      }
    if (_net_group(net->addr, k - 1) == 0)
      ++net->keys; /* "g0:...::" beside "g0:...:0:" */
  } else if (_net_group(net->addr, 7) == 0) {
    char t[IP6_FMT];
    size_t m = ip6_fmt(t, net->addr);
    if (m >= 2 && t[m - 1] == ':')
      return RULES_NET_E_INEXACT_END;
  }
  return RULES_NET_OK;
}

int
rules_net_looks(const void *text, size_t n)
{
  struct rules_net net;
  int r = rules_net_parse(text, n, 0, &net);
  return r != RULES_NET_NOTNET && r != RULES_NET_E_SYNTAX;
}

/* -- key classes ---------------------------------------------------------------------
 *
 * A key that names an IP prefix in the form tcpserver prints has a class and an index:
 * IPv4 class c (1..4 octets): the octets as a number; IPv6 class k < 8 (groups):
 * 2 * the groups as a number + 1 for the "::" form; IPv6 class 8: the address.  The
 * order value `ord` puts the classes in the order they are written: IPv4 addresses,
 * then /24, /16, /8 keys; then IPv6 addresses, then 7 groups .. 1 group. */

#define ORD_V4(c) (4u - (c))
#define ORD_V6(k) (4u + 8u - (k))

/* A decimal octet, canonical (no leading zero), at s[*i..n). */
static int
_net_dec(const unsigned char *s, size_t n, size_t *i, unsigned *v)
{
  size_t j = *i;
  unsigned x = 0;
  while (j < n && s[j] >= '0' && s[j] <= '9' && j - *i < 3)
    x = x * 10 + (unsigned)(s[j++] - '0');
  if (j == *i || x > 255 || (s[*i] == '0' && j - *i > 1))
    return -1;
  *i = j;
  *v = x;
  return 0;
}

/* A hex group as tcpserver prints it (lower case, no leading zero) at s[*i..n). */
static int
_net_hex(const unsigned char *s, size_t n, size_t *i, unsigned *v)
{
  size_t j = *i;
  unsigned x = 0;
  for (; j < n && j - *i < 4; ++j) {
    unsigned char c = s[j];
    if (c >= '0' && c <= '9')
      x = x << 4 | (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f')
      x = x << 4 | (unsigned)(c - 'a' + 10);
    else
      break;
  }
  if (j == *i || (s[*i] == '0' && j - *i > 1))
    return -1;
  *i = j;
  *v = x;
  return 0;
}

/* The class (as ord) and index of key s[0..n), or -1 for a key of no class. */
static int
_net_keyclass(const unsigned char *s, size_t n, unsigned *ord, u128 *idx)
{
  size_t i = 0;
  unsigned v, c = 0;
  u128 x = 0;
  if (n == 0)
    return -1;
  if (!memchr(s, ':', n)) { /* IPv4: "a." .. "a.b.c." or "a.b.c.d" */
    for (;;) {
      if (_net_dec(s, n, &i, &v) < 0)
        return -1;
      x = x << 8 | v;
      ++c;
      if (i == n)
        break; /* no dot at the end: an address */
      if (s[i++] != '.')
        return -1;
      if (i == n) {
        if (c == 4)
          return -1;
        *ord = ORD_V4(c);
        *idx = x;
        return 0;
      }
      if (c == 4)
        return -1;
    }
    if (c != 4)
      return -1;
    *ord = ORD_V4(4);
    *idx = x;
    return 0;
  }
  if (s[n - 1] == ':') { /* IPv6 "g0:..:gk-1:" or "g0:..:gk-2::" */
    int dbl = n >= 2 && s[n - 2] == ':';
    size_t end = n - (size_t)(dbl ? 2 : 1);
    if (dbl && end && s[end - 1] == ':')
      return -1;
    while (i < end) {
      if (c && s[i++] != ':')
        return -1;
      if (_net_hex(s, end, &i, &v) < 0)
        return -1;
      x = x << 16 | v;
      ++c;
    }
    if (i != end || (!dbl && c == 0))
      return -1;
    if (dbl) {
      x <<= 16; /* the last group, 0 */
      ++c;
    }
    if (c > 7)
      return -1;
    *ord = ORD_V6(c);
    *idx = x << 1 | (u128)dbl;
    return 0;
  } else { /* an IPv6 address, as tcpserver prints it */
    unsigned char a[16];
    char t[IP6_FMT];
    if (_net_addr(s, n, a) != 6 || memcmp(a, _net_mapped, 12) == 0)
      return -1;
    if (ip6_fmt(t, a) != n || memcmp(t, s, n))
      return -1;
    for (i = 0; i < 16; ++i)
      x = x << 8 | a[i];
    *ord = ORD_V6(8);
    *idx = x;
    return 0;
  }
}

/* The text of key (ord, idx) into out (IP6_FMT bytes); its length, or 0 for the "::"
 * form of a last group that is not 0 (a key that does not exist). */
static size_t
_net_keytext(unsigned ord, u128 idx, char *out)
{
  static const char hex[] = "0123456789abcdef";
  size_t n = 0;
  unsigned i, c;
  if (ord < ORD_V6(8)) {
    c = 4 - ord;
    for (i = 0; i < c; ++i) {
      unsigned v = (unsigned)(idx >> (8 * (c - 1 - i))) & 255;
      if (i)
        out[n++] = '.';
      if (v >= 100)
        out[n++] = (char)('0' + v / 100);
      if (v >= 10)
        out[n++] = (char)('0' + v / 10 % 10);
      out[n++] = (char)('0' + v % 10);
    }
    if (c < 4)
      out[n++] = '.';
    return n;
  }
  if (ord == ORD_V6(8)) {
    unsigned char a[16];
    for (i = 0; i < 16; ++i)
      a[i] = (unsigned char)(idx >> (8 * (15 - i)));
    return ip6_fmt(out, a);
  } else {
    int dbl = (int)(idx & 1);
    u128 x = idx >> 1;
    c = 12 - ord;
    if (dbl && (x & 0xffff))
      return 0;
    for (i = 0; i < c; ++i) {
      unsigned v = (unsigned)(x >> (16 * (c - 1 - i))) & 0xffff, sh = 12;
      if (dbl && i == c - 1)
        break;
      if (i)
        out[n++] = ':';
      while (sh && !(v >> sh))
        sh -= 4;
      for (;; sh -= 4) {
        out[n++] = hex[(v >> sh) & 15];
        if (!sh)
          break;
      }
    }
    out[n++] = ':';
    if (dbl)
      out[n++] = ':';
    return n;
  }
}

/* -- the record set ------------------------------------------------------------------ */

struct rules_nitem {   /* an interval of key indices of one class, for one rule */
  u128 lo;             /* the first index; the last is lo + 2^sh - 1 */
  uint32_t rule;
  uint32_t data;       /* the rule's value in dbuf, kept here so that writing, which goes
                          in key order, need not visit the rules in a random order */
  uint8_t ord;
  uint8_t len;         /* the rank: the network's length (a classic key: its class's) */
  uint8_t sh;          /* the interval holds 2^sh indices (at most 2^16) */
};

static u128
_net_hi(const struct rules_nitem *it)
{
  return it->lo + (((u128)1 << it->sh) - 1);
}

struct rules_nrule {
  uint32_t data;       /* its value (or, for expand, its instruction text) in dbuf */
  uint32_t src;
  uint64_t line;
};

/* dbuf holds each distinct value once (nearly): its length (4 bytes), then its bytes. */
#define NET_VALCACHE 64

struct rules_nlit {    /* a key of no class */
  uint64_t key;        /* in kbuf */
  uint32_t klen;
  uint32_t rule;
};

struct rules_netset {
  struct rules_nitem *items;
  size_t nitems, citems;
  struct rules_nrule *rules;
  size_t nrules, crules;
  struct rules_nlit *lits;
  size_t nlits, clits;
  unsigned char *dbuf, *kbuf;
  size_t dlen, dcap, klen, kcap;
  uint64_t networks;
  uint32_t valcache[NET_VALCACHE]; /* offsets in dbuf of recent values, by a hash (+1; 0: none) */
};

static int
_net_grow(void *pp, size_t *cap, size_t need, size_t size)
{
  void **p = pp, *b;
  size_t n;
  if (need <= *cap)
    return 0;
  n = *cap ? *cap : 64;
  while (n < need) {
    if (n > SIZE_MAX / 2 / size)
      return errno = ENOMEM, -1;
    n *= 2;
  }
  if (!(b = realloc(*p, n * size)))
    return errno = ENOMEM, -1;
  *p = b;
  *cap = n;
  return 0;
}

int
rules_origin_add(struct rules_origin **o, size_t *n, size_t *cap, uint32_t src, uint64_t line)
{
  if (_net_grow(o, cap, *n + 1, sizeof **o) < 0)
    return -1;
  (*o)[*n].src = src;
  (*o)[*n].line = line;
  ++*n;
  return 0;
}

struct rules_netset *
rules_netset_new(void)
{
  struct rules_netset *s = calloc(1, sizeof *s);
  if (!s)
    errno = ENOMEM;
  return s;
}

void
rules_netset_free(struct rules_netset *s)
{
  if (!s)
    return;
  free(s->items);
  free(s->rules);
  free(s->lits);
  free(s->dbuf);
  free(s->kbuf);
  free(s);
}

uint64_t
rules_netset_networks(const struct rules_netset *s)
{
  return s->networks;
}

/* Is the value at dbuf offset off the bytes data[0..dlen)? */
static int
_net_sameval(const struct rules_netset *s, uint32_t off, const void *data, size_t dlen)
{
  return cdb_unpack(s->dbuf + off) == dlen && (!dlen || memcmp(s->dbuf + off + 4, data, dlen) == 0);
}

int
rules_netset_rule(struct rules_netset *s, const void *data, size_t dlen, uint32_t src, uint64_t line)
{
  struct rules_nrule *r;
  if (s->nrules >= UINT32_MAX || dlen >= UINT32_MAX)
    return errno = ENOMEM, -1;
  if (_net_grow(&s->rules, &s->crules, s->nrules + 1, sizeof *s->rules) < 0)
    return -1;
  r = &s->rules[s->nrules];
  if (s->nrules && _net_sameval(s, r[-1].data, data, dlen))
    r->data = r[-1].data; /* a list: every entry has the same value */
  else {
    const unsigned char *b = data;
    uint32_t h = 5381, *slot;
    size_t i;
    for (i = 0; i < dlen && i < 64; ++i)
      h = (h * 33) ^ b[i];
    slot = &s->valcache[(h ^ (uint32_t)dlen) % NET_VALCACHE];
    if (*slot && _net_sameval(s, *slot - 1, data, dlen))
      r->data = *slot - 1; /* the same value as an earlier rule: "deny", say */
    else {
      if (s->dlen + 4 + dlen >= UINT32_MAX)
        return errno = EFBIG, -1; /* more than 4 GiB of values could not fit in a cdb anyway */
      if (_net_grow(&s->dbuf, &s->dcap, s->dlen + 4 + dlen, 1) < 0)
        return -1;
      cdb_pack(s->dbuf + s->dlen, (uint32_t)dlen);
      if (dlen)
        memcpy(s->dbuf + s->dlen + 4, data, dlen);
      r->data = (uint32_t)s->dlen;
      *slot = r->data + 1;
      s->dlen += 4 + dlen;
    }
  }
  r->src = src;
  r->line = line;
  ++s->nrules;
  return 0;
}

static int
_net_item(struct rules_netset *s, unsigned ord, u128 lo, unsigned sh, unsigned len)
{
  struct rules_nitem *it;
  if (_net_grow(&s->items, &s->citems, s->nitems + 1, sizeof *s->items) < 0)
    return -1;
  it = &s->items[s->nitems++];
  it->lo = lo;
  it->sh = (uint8_t)sh;
  it->rule = (uint32_t)(s->nrules - 1);
  it->data = s->rules[s->nrules - 1].data;
  it->ord = (uint8_t)ord;
  it->len = (uint8_t)len;
  return 0;
}

int
rules_netset_key(struct rules_netset *s, const void *key, size_t klen)
{
  unsigned ord;
  u128 idx;
  struct rules_nlit *l;
  if (_net_keyclass(key, klen, &ord, &idx) == 0)
    return _net_item(s, ord, idx, 0, ord < ORD_V6(8) ? 8 * (4 - ord) : 16 * (12 - ord));
  if (klen >= UINT32_MAX)
    return errno = ENOMEM, -1;
  if (_net_grow(&s->lits, &s->clits, s->nlits + 1, sizeof *s->lits) < 0 ||
      _net_grow(&s->kbuf, &s->kcap, s->klen + klen, 1) < 0)
    return -1;
  l = &s->lits[s->nlits++];
  if (klen)
    memcpy(s->kbuf + s->klen, key, klen);
  l->key = s->klen;
  l->klen = (uint32_t)klen;
  l->rule = (uint32_t)(s->nrules - 1);
  s->klen += klen;
  return 0;
}

int
rules_netset_net(struct rules_netset *s, const struct rules_net *net)
{
  u128 a = 0;
  unsigned i, k;
  ++s->networks;
  if (net->family == 4) {
    for (i = 0; i < 4; ++i)
      a = a << 8 | net->addr[i];
    k = (net->len + 7) / 8;
    return _net_item(s, ORD_V4(k), a >> (32 - 8 * k), 8 * k - net->len, net->len);
  }
  for (i = 0; i < 16; ++i)
    a = a << 8 | net->addr[i];
  k = (net->len + 15) / 16;
  if (k == 8)
    return _net_item(s, ORD_V6(8), a, 128 - net->len, net->len);
  /* each group value has two indices: "...:v:" and "...::" */
  return _net_item(s, ORD_V6(k), a >> (128 - 16 * k) << 1, 16 * k - net->len + 1, net->len);
}

/* -- writing ------------------------------------------------------------------------- */

struct _net_out {
  struct rules_netset *s;
  struct cdb_make *m;
  int fd;                  /* text: tcprules lines to this fd */
  unsigned char *buf;
  size_t buflen;
  uint64_t keys;
  struct rules_origin *origin;
  size_t norigin, corigin;
  int want_origin;
};

#define NET_TEXTBUF (64 * 1024)

static int
_net_flush(struct _net_out *o)
{
  if (cdb_write_all(o->fd, o->buf, o->buflen) < 0)
    return -1;
  o->buflen = 0;
  return 0;
}

static int
_net_put(struct _net_out *o, const void *p, size_t len)
{
  const unsigned char *b = p;
  while (len) {
    size_t room = NET_TEXTBUF - o->buflen, n = len < room ? len : room;
    memcpy(o->buf + o->buflen, b, n);
    o->buflen += n;
    b += n;
    len -= n;
    if (o->buflen == NET_TEXTBUF && _net_flush(o) < 0)
      return -1;
  }
  return 0;
}

/* Would tcprules read "key:..." back as this key?  Not if it expands a range in it. */
static int
_net_textable(const unsigned char *k, size_t n)
{
  return !memchr(k, '-', n) || memchr(k, '=', n) || memchr(k, '@', n);
}

/* Write a record: key, the value at dbuf offset data, for rule. */
static int
_net_emit(struct _net_out *o, const void *key, size_t klen, uint32_t data, uint32_t rule)
{
  const unsigned char *d = o->s->dbuf + data + 4;
  uint32_t dlen = cdb_unpack(d - 4);
  if (o->fd < 0) {
    if (cdb_make_add(o->m, key, klen, d, dlen) < 0)
      return -1;
  } else {
    if (!_net_textable(key, klen))
      return errno = EDOM, -1;
    if (_net_put(o, key, klen) < 0 || _net_put(o, ":", 1) < 0 || _net_put(o, d, dlen) < 0 ||
        _net_put(o, "\n", 1) < 0)
      return -1;
  }
  if (o->want_origin &&
      rules_origin_add(&o->origin, &o->norigin, &o->corigin, o->s->rules[rule].src, o->s->rules[rule].line) < 0)
    return -1;
  ++o->keys;
  return 0;
}

/* The keys of indices lo..hi of the item's class, with its rule's value. */
static int
_net_emitrange(struct _net_out *o, const struct rules_nitem *it, u128 lo, u128 hi)
{
  char t[IP6_FMT];
  for (;;) {
    size_t n = _net_keytext(it->ord, lo, t);
    if (n && _net_emit(o, t, n, it->data, it->rule) < 0)
      return -1;
    if (lo == hi)
      return 0;
    ++lo;
  }
}

/* Sort the items by class, then first index, the larger of intervals that start together
 * first, then rule order: a stable LSD radix sort on the bytes of (ord, lo, 255 - sh),
 * skipping the bytes all items share.  Return 0 or -1 (ENOMEM). */
#define NET_DIGITS 18

static unsigned
_net_digit(const struct rules_nitem *it, unsigned d)
{
  if (d == 0)
    return 255u - it->sh;
  if (d <= 16)
    return (unsigned)(it->lo >> (8 * (d - 1))) & 255;
  return it->ord;
}

static int
_net_sort(struct rules_netset *s)
{
  size_t (*count)[256], i, n = s->nitems;
  struct rules_nitem *a = s->items, *b;
  unsigned d;
  if (n < 2)
    return 0;
  if (!(count = calloc(NET_DIGITS, sizeof *count)))
    return errno = ENOMEM, -1;
  if (!(b = malloc(n * sizeof *b))) {
    free(count);
    return errno = ENOMEM, -1;
  }
  for (i = 0; i < n; ++i)
    for (d = 0; d < NET_DIGITS; ++d)
      ++count[d][_net_digit(&a[i], d)];
  for (d = 0; d < NET_DIGITS; ++d) {
    size_t sum = 0, v;
    struct rules_nitem *t;
    if (count[d][_net_digit(&a[0], d)] == n)
      continue; /* every item has this byte */
    for (v = 0; v < 256; ++v) {
      size_t c = count[d][v];
      count[d][v] = sum;
      sum += c;
    }
    for (i = 0; i < n; ++i)
      b[count[d][_net_digit(&a[i], d)]++] = a[i];
    t = a;
    a = b;
    b = t;
  }
  s->items = a; /* the other array goes */
  free(b);
  free(count);
  return 0;
}

struct _net_lkey {
  const unsigned char *k;
  uint32_t klen;
  uint32_t i;
};

static int
_net_cmplit(const void *x, const void *y)
{
  const struct _net_lkey *a = x, *b = y;
  size_t n = a->klen < b->klen ? a->klen : b->klen;
  int c = n ? memcmp(a->k, b->k, n) : 0;
  if (c)
    return c;
  if (a->klen != b->klen)
    return a->klen < b->klen ? -1 : 1;
  return a->i < b->i ? -1 : a->i > b->i;
}

/* The first record of each key of no class, in rule order; the empty key (the
 * default rule) last: with `last` 0, every other key; with 1, the empty key. */
static int
_net_writelits(struct _net_out *o, unsigned char *dead, int last)
{
  struct rules_netset *s = o->s;
  size_t i;
  for (i = 0; i < s->nlits; ++i) {
    const struct rules_nlit *l = &s->lits[i];
    if (dead[i] || (l->klen == 0) != last)
      continue;
    if (_net_emit(o, l->klen ? s->kbuf + l->key : (const unsigned char *)"", l->klen, s->rules[l->rule].data,
                  l->rule) < 0)
      return -1;
  }
  return 0;
}

static unsigned char *
_net_deadlits(struct rules_netset *s)
{
  struct _net_lkey *k;
  unsigned char *dead = calloc(s->nlits + 1, 1);
  size_t i;
  if (!dead)
    return errno = ENOMEM, NULL;
  if (s->nlits < 2)
    return dead;
  if (!(k = malloc(s->nlits * sizeof *k))) {
    free(dead);
    return errno = ENOMEM, NULL;
  }
  for (i = 0; i < s->nlits; ++i) {
    k[i].k = s->lits[i].klen ? s->kbuf + s->lits[i].key : (const unsigned char *)"";
    k[i].klen = s->lits[i].klen;
    k[i].i = (uint32_t)i;
  }
  qsort(k, s->nlits, sizeof *k, _net_cmplit);
  for (i = 1; i < s->nlits; ++i)
    if (k[i].klen == k[i - 1].klen && (!k[i].klen || memcmp(k[i].k, k[i - 1].k, k[i].klen) == 0))
      dead[k[i].i] = 1;
  free(k);
  return dead;
}

struct _net_open {
  const struct rules_nitem *it;
  u128 hi;     /* its last index */
  u128 next;   /* its first index not yet written or given to an inner winner */
  int done;    /* next passed hi */
};

/* Write what the open interval top still owns, up to and including index end. */
static int
_net_upto(struct _net_out *o, struct _net_open *top, u128 end, int inclusive)
{
  if (top->done || top->next > end || (!inclusive && top->next == end))
    return 0;
  if (_net_emitrange(o, top->it, top->next, inclusive ? end : end - 1) < 0)
    return -1;
  return 0;
}

/* The items, sorted: for each key, the rule of the longest (then first) interval
 * that holds it.  Intervals of one class are nested or apart (aligned blocks). */
static int
_net_writeitems(struct _net_out *o)
{
  struct rules_netset *s = o->s;
  struct _net_open st[130];
  size_t i, depth = 0;
  if (_net_sort(s) < 0)
    return -1;
  for (i = 0; i <= s->nitems; ++i) {
    const struct rules_nitem *x = i < s->nitems ? &s->items[i] : NULL;
#if defined(__GNUC__)
    /* the items are in key order, their values in line order: fetch ahead */
    if (i + 8 < s->nitems)
      __builtin_prefetch(s->dbuf + s->items[i + 8].data);
#endif
    while (depth && (!x || x->ord != st[depth - 1].it->ord || st[depth - 1].hi < x->lo)) {
      struct _net_open *top = &st[--depth];
      if (_net_upto(o, top, top->hi, 1) < 0)
        return -1;
    }
    if (!x)
      break;
    if (depth) {
      struct _net_open *top = &st[depth - 1];
      if (x->len < top->it->len || (x->len == top->it->len && x->rule > top->it->rule))
        continue; /* x loses every key it has to top */
      if (_net_upto(o, top, x->lo, 0) < 0)
        return -1;
      if (_net_hi(x) == top->hi)
        top->done = 1;
      else
        top->next = _net_hi(x) + 1;
    }
    if (depth == sizeof st / sizeof *st)
      return errno = EOVERFLOW, -1; /* nesting is at most 129 deep (lengths 0..128) */
    st[depth].it = x;
    st[depth].hi = _net_hi(x);
    st[depth].next = x->lo;
    st[depth].done = 0;
    ++depth;
  }
  return 0;
}

int
rules_netset_write(struct rules_netset *s, struct cdb_make *m, int text_fd, uint64_t *keys,
                   struct rules_origin **origin, size_t *norigin)
{
  struct _net_out o;
  unsigned char *dead;
  int r = -1;
  memset(&o, 0, sizeof o);
  o.s = s;
  o.m = m;
  o.fd = text_fd;
  o.want_origin = origin != NULL;
  if (text_fd >= 0 && !(o.buf = malloc(NET_TEXTBUF)))
    return errno = ENOMEM, -1;
  if (!(dead = _net_deadlits(s)))
    goto out;
  if (_net_writelits(&o, dead, 0) < 0 || _net_writeitems(&o) < 0 || _net_writelits(&o, dead, 1) < 0)
    goto out;
  if (text_fd >= 0 && _net_flush(&o) < 0)
    goto out;
  r = 0;
out:
  free(dead);
  free(o.buf);
  *keys = o.keys;
  if (origin && r == 0) {
    *origin = o.origin;
    *norigin = o.norigin;
  } else
    free(o.origin);
  return r;
}
