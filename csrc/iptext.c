/* iptext.c: tcpserver's address text (docs/lookup.md). */
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
