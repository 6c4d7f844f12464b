/* iptext.c: tcpserver's address text and host text (docs/lookup.md). */
#include <string.h>
#include "iptext.h"

static size_t
_ip_dec(char *out, unsigned v)
{
  char d[3];
  size_t n = 0, k = 0;
  do
    d[k++] = (char)('0' + v % 10);
  while ((v /= 10));
  while (k)
    out[n++] = d[--k];
  return n;
}

static size_t
_ip_hex(char *out, unsigned v)
{
  static const char digits[] = "0123456789abcdef";
  char d[4];
  size_t n = 0, k = 0;
  do
    d[k++] = digits[v & 15];
  while ((v >>= 4));
  while (k)
    out[n++] = d[--k];
  return n;
}

static size_t
_ip4_fmt(char *out, const unsigned char ip[4])
{
  size_t n = 0;
  int i;
  for (i = 0; i < 4; ++i) {
    if (i)
      out[n++] = '.';
    n += _ip_dec(out + n, ip[i]);
  }
  return n;
}

size_t
ip4_fmt(char *out, const unsigned char ip[4])
{
  size_t n = _ip4_fmt(out, ip);
  out[n] = 0;
  return n;
}

static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

size_t
ip6_fmt(char *out, const unsigned char ip[16])
{
  unsigned g[8];
  int i, groups = 8, best = -1, bestlen = 0;
  size_t n = 0;
  if (memcmp(ip, mapped, 12) == 0)
    groups = 6; /* ::ffff: then a dotted quad */
  for (i = 0; i < 8; ++i)
    g[i] = (unsigned)ip[2 * i] << 8 | ip[2 * i + 1];
  for (i = 0; i < groups;) {
    int j = i;
    while (j < groups && g[j] == 0)
      ++j;
    if (j - i > bestlen) {
      best = i;
      bestlen = j - i;
    }
    i = j > i ? j : i + 1;
  }
  for (i = 0; i < groups; ++i) {
    if (i == best) {
      out[n++] = ':';
      out[n++] = ':';
      i += bestlen - 1;
      continue;
    }
    if (i && i != best + bestlen)
      out[n++] = ':';
    n += _ip_hex(out + n, g[i]);
  }
  if (groups == 6) {
    if (best + bestlen != 6)
      out[n++] = ':';
    n += _ip4_fmt(out + n, ip + 12);
  }
  out[n] = 0;
  return n;
}

size_t
ip_tcpserver_fmt(char *out, const unsigned char ip[16], int forcev6)
{
  if (!forcev6 && memcmp(ip, mapped, 12) == 0)
    return ip4_fmt(out, ip + 12);
  return ip6_fmt(out, ip);
}

/* A dotted quad as ip4_fmt() writes it: 0..255 each, no leading zeros.
 * (On the lookup path for every address: one pass, no loop per part.) */
static int
_ip4_text(const char *s, size_t len, unsigned char ip[4])
{
  const char *p = s, *end = s + len;
  int part;
  for (part = 0; part < 4; ++part) {
    unsigned v;
    if (part && (p == end || *p++ != '.'))
      return 0;
    if (p == end || (unsigned)(*p - '0') > 9)
      return 0;
    v = (unsigned)(*p++ - '0');
    if (v && p != end && (unsigned)(*p - '0') <= 9) { /* no digit after a leading 0 */
      v = v * 10 + (unsigned)(*p++ - '0');
      if (p != end && (unsigned)(*p - '0') <= 9) {
        v = v * 10 + (unsigned)(*p++ - '0');
        if (v > 255)
          return 0;
      }
    }
    ip[part] = (unsigned char)v;
  }
  return p == end;
}

static int
_ip_hexval(char ch)
{
  if (ch >= '0' && ch <= '9')
    return ch - '0';
  if (ch >= 'a' && ch <= 'f')
    return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F')
    return ch - 'A' + 10;
  return -1;
}

/* Any IPv6 text (groups of 1-4 hex digits, one "::" at most, a dotted quad
 * at the end) into ip; ip_is_tcpserver_text() then compares the canonical
 * text, so this need not refuse what ip6_fmt() would write differently. */
static int
_ip6_parse(const char *s, size_t len, unsigned char ip[16])
{
  unsigned char head[16], tail[16];
  size_t nh = 0, nt = 0, i = 0;
  int gap = 0;
  if (len >= 2 && s[0] == ':' && s[1] == ':') {
    gap = 1;
    i = 2;
  }
  while (i < len) {
    unsigned v = 0;
    size_t start = i;
    unsigned char *out = gap ? tail : head;
    size_t *n = gap ? &nt : &nh;
    int d;
    while (i < len && i - start < 5 && (d = _ip_hexval(s[i])) >= 0) {
      v = v << 4 | (unsigned)d;
      ++i;
    }
    if (i < len && s[i] == '.') { /* the dotted quad ends it */
      if (*n + 4 > 16 || !_ip4_text(s + start, len - start, out + *n))
        return 0;
      *n += 4;
      i = len;
      break;
    }
    if (i == start || i - start > 4 || *n + 2 > 16)
      return 0;
    out[(*n)++] = (unsigned char)(v >> 8);
    out[(*n)++] = (unsigned char)v;
    if (i == len)
      break;
    if (s[i] != ':')
      return 0;
    ++i;
    if (i < len && s[i] == ':') {
      if (gap)
        return 0;
      gap = 1;
      ++i;
    } else if (i == len) {
      return 0; /* one trailing colon */
    }
  }
  if (gap ? nh + nt > 14 : nh != 16)
    return 0;
  memcpy(ip, head, nh);
  memset(ip + nh, 0, 16 - nh - nt);
  memcpy(ip + 16 - nt, tail, nt);
  return 1;
}

int
ip_is_tcpserver_text(const char *s, size_t len, int forcev6)
{
  unsigned char ip[16];
  char canon[IP6_FMT];
  if (len <= 15 && _ip4_text(s, len, ip))
    return !forcev6;
  if (len >= IP6_FMT || !_ip6_parse(s, len, ip))
    return 0;
  if (ip6_fmt(canon, ip) != len || memcmp(canon, s, len) != 0)
    return 0;
  return forcev6 || memcmp(ip, mapped, 12) != 0;
}

int
host_is_tcpserver_text(const char *s, size_t len)
{
  size_t i = 0, label = 0;
  if (len == 1 && s[0] == '.')
    return 1;
  while (i < len) {
    char ch = s[i];
    if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_') {
      ++i;
      ++label;
    } else if (ch == '\\') {
      if (len - i < 4 || s[i + 1] < '0' || s[i + 1] > '3' || s[i + 2] < '0' || s[i + 2] > '7' ||
          s[i + 3] < '0' || s[i + 3] > '7')
        return 0;
      i += 4;
      ++label;
    } else if (ch == '.' && label) {
      ++i;
      label = 0;
    } else {
      return 0;
    }
  }
  return label > 0;
}
