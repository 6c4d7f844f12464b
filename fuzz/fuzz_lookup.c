/* fuzz_lookup.c: libFuzzer harness for tcpserver's rules lookup (csrc/rules_lookup.c).
 *
 * Input: a flags byte, then ip NUL host NUL info NUL, then the rest.
 *   flags bit 0: host present; bit 1: info present (present but empty counts);
 *   bit 2: the rest is a cdb image, any bytes (at least 2048 of them);
 *          otherwise it is rules text, compiled first (up to a bad line);
 *   bit 3: the rules_check_tcp*() variants judge the ip as IPv6 text;
 *   bit 4: the lookups run with the bitmap of the file's hashes (cdb_seen.c).
 * Properties beyond "no crash":
 * - rules_probe_next() tries exactly the keys of docs/lookup.md (v6 boundaries),
 *   in order, as a plain model builds them;
 * - rules_lookup() answers what searching those keys one by one answers: the
 *   first record of the first key present, 0 for none, -1 (EPROTO) when a
 *   search meets a corrupt file first; the deciding record has that key;
 * - rules_check(), rules_check_ip() and rules_check_many() agree with it;
 * - the rules_check_tcp*() variants agree too where ip_is_tcpserver_text() and
 *   host_is_tcpserver_text() accept the text, and refuse it (RULES_BAD_IP,
 *   RULES_BAD_HOST) where they do not; ip_is_tcpserver_text() accepts what
 *   ip_tcpserver_fmt() writes for the first 16 bytes of the rest;
 * - the bitmap of the file's hashes changes no answer. */
#include <errno.h>
#include "cdb.h"
#include "cdb_make.h"
#include "iptext.h"
#include "rules_lookup.h"
#include "rules_parse.h"
#include "fuzz_util.h"

#define CAP 512 /* longest ip, host, info used */

struct keys {
  unsigned char *arena;
  size_t used, n;
  size_t off[4 * CAP + 16], len[4 * CAP + 16];
};

static void
add(struct keys *k, const char *a, size_t al, const unsigned char *b, size_t bl)
{
  memcpy(k->arena + k->used, a, al);
  if (bl)
    memcpy(k->arena + k->used + al, b, bl);
  k->off[k->n] = k->used;
  k->len[k->n++] = al + bl;
  k->used += al + bl;
}

/* docs/lookup.md, "The lookup order": the keys tcpserver tries, in order. */
static void
model_keys(struct keys *k, const unsigned char *ip, size_t il, const unsigned char *host, size_t hl,
           const unsigned char *info, size_t nl)
{
  size_t i;
  unsigned char *tmp = malloc(nl + 2 + (il > hl ? il : hl) + 1);
  FZ_CHECK(tmp != NULL);
  if (info) {
    memcpy(tmp, info, nl);
    tmp[nl] = '@';
    memcpy(tmp + nl + 1, ip, il);
    add(k, "", 0, tmp, nl + 1 + il);
    if (host) {
      tmp[nl + 1] = '=';
      memcpy(tmp + nl + 2, host, hl);
      add(k, "", 0, tmp, nl + 2 + hl);
    }
  }
  add(k, "", 0, ip, il);
  if (host)
    add(k, "=", 1, host, hl);
  for (i = il; i > 0; --i)
    if (ip[i - 1] == '.' || ip[i - 1] == ':')
      add(k, "", 0, ip, i);
  if (host) {
    for (i = 0; i < hl; ++i)
      if (host[i] == '.')
        add(k, "=", 1, host + i, hl - i);
    add(k, "=", 1, NULL, 0);
  }
  add(k, "", 0, NULL, 0);
  free(tmp);
}

/* The next NUL-terminated field of [*p, end), at most CAP bytes used. */
static unsigned char *
field(const uint8_t **p, const uint8_t *end, size_t *len)
{
  const uint8_t *z = memchr(*p, 0, (size_t)(end - *p));
  size_t n = (size_t)((z ? z : end) - *p);
  unsigned char *s = malloc(n + 1);
  FZ_CHECK(s != NULL);
  memcpy(s, *p, n);
  s[n] = 0;
  *len = n > CAP ? CAP : n;
  s[*len] = 0;
  *p = z ? z + 1 : end;
  return s;
}

/* The cdb the lookups run on, in a buffer of its exact size; NULL if none. */
static unsigned char *
image(int raw, const uint8_t *p, size_t n, size_t *len)
{
  struct cdb_make mk;
  struct rules_parser rp;
  int fd;
  unsigned char *m;
  if (raw) {
    if (n < 2048)
      return NULL;
    *len = n;
    return fz_dup(p, n);
  }
  fd = fz_memfd();
  FZ_CHECK(cdb_make_start(&mk, fd) == 0);
  FZ_CHECK(rules_parser_init(&rp, &mk) == 0);
  if (rules_feed(&rp, p, n) == 0)
    rules_finish(&rp); /* a bad line: keep the rules before it */
  FZ_CHECK(cdb_make_finish(&mk) == 0);
  rules_parser_free(&rp);
  cdb_make_free(&mk);
  m = fz_slurp(fd, len);
  close(fd);
  return m;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  const uint8_t *p = data + 1, *end = data + size;
  unsigned char *ip, *host, *info, *m, *buf;
  size_t il, hl, nl, len, i, klen, seen_size;
  unsigned char *seen = NULL;
  const unsigned char *key;
  struct keys *k;
  struct rules_probe pr;
  struct cdb c;
  int64_t want = 0, got;
  int flags, r;
  if (size < 1)
    return 0;
  flags = data[0];
  ip = field(&p, end, &il);
  host = field(&p, end, &hl);
  info = field(&p, end, &nl);
  m = image(flags & 4, p, (size_t)(end - p), &len);
  if (!m)
    goto out;
  FZ_CHECK(cdb_init(&c, m, len) == 0);
  k = malloc(sizeof *k);
  FZ_CHECK(k != NULL);
  k->arena = malloc(8 * CAP + 64 + 2 * (size_t)(CAP + 2) * (CAP + 2)); /* ip prefixes, host suffixes */
  FZ_CHECK(k->arena != NULL);
  k->used = k->n = 0;
  model_keys(k, ip, il, flags & 1 ? host : NULL, hl, flags & 2 ? info : NULL, nl);

  /* the probe order */
  buf = malloc(rules_probe_bufsize(il, flags & 1 ? hl : 0, flags & 2 ? nl : 0));
  FZ_CHECK(buf != NULL);
  rules_probe_start(&pr, ip, il, flags & 1 ? host : NULL, hl, flags & 2 ? info : NULL, nl, buf);
  for (i = 0; rules_probe_next(&pr, &key, &klen); ++i) {
    FZ_CHECK(i < k->n);
    FZ_CHECK(klen == k->len[i] && memcmp(key, k->arena + k->off[i], klen) == 0);
  }
  FZ_CHECK(i == k->n);
  FZ_CHECK(rules_probe_next(&pr, &key, &klen) == 0);
  free(buf);

  /* the answer */
  for (i = 0; i < k->n; ++i) {
    uint32_t rpos;
    r = cdb_find(&c, k->arena + k->off[i], k->len[i], &rpos);
    if (r) {
      want = r < 0 ? -1 : (int64_t)rpos;
      break;
    }
  }
  /* with the bitmap of the file's hashes (flag 16) the answers stay the same */
  if (flags & 16 && (seen_size = cdb_seen_size(&c)) > 0) {
    FZ_CHECK((seen = malloc(seen_size)) != NULL);
    FZ_CHECK(cdb_seen_build(&c, seen, seen_size) == 0);
  }
  errno = 0;
  got = rules_lookup(&c, ip, il, flags & 1 ? host : NULL, hl, flags & 2 ? info : NULL, nl);
  FZ_CHECK(got == want);
  if (got < 0)
    FZ_CHECK(errno == EPROTO);
  if (got > 0) {
    uint32_t kpos, kl, dpos, dl;
    FZ_CHECK(cdb_record(&c, (uint32_t)got, &kpos, &kl, &dpos, &dl) == 0);
    FZ_CHECK(kl == k->len[i] && memcmp(m + kpos, k->arena + k->off[i], kl) == 0);
  }
  FZ_CHECK(rules_check(&c, (char *)ip, flags & 1 ? (char *)host : NULL, flags & 2 ? (char *)info : NULL) == got);
  if (!(flags & 3)) {
    /* "ip NUL ip": two answers, the same; room for one only: EINVAL */
    char *two = malloc(2 * il + 1);
    int64_t out[2];
    FZ_CHECK(two != NULL);
    memcpy(two, ip, il);
    two[il] = 0;
    memcpy(two + il + 1, ip, il);
    FZ_CHECK(rules_check_ip(&c, (char *)ip) == got);
    if (got >= 0) {
      FZ_CHECK(rules_check_many(&c, two, 2 * il + 1, out, 2) == 2);
      FZ_CHECK(out[0] == got && out[1] == got);
      FZ_CHECK(rules_check_many(&c, two, 2 * il + 1, out, 1) == -1 && errno == EINVAL);
    } else {
      FZ_CHECK(rules_check_many(&c, two, 2 * il + 1, out, 2) == -1 && errno == EPROTO);
    }
    free(two);
  }
  {
    int v6 = (flags & 8) != 0, okip = ip_is_tcpserver_text((char *)ip, il, v6);
    int okhost = !(flags & 1) || host_is_tcpserver_text((char *)host, hl);
    int64_t want_tcp = !okip ? RULES_BAD_IP : !okhost ? RULES_BAD_HOST : got, out[1];
    char text[IP6_FMT];
    FZ_CHECK(rules_check_tcp(&c, (char *)ip, flags & 1 ? (char *)host : NULL, flags & 2 ? (char *)info : NULL,
                             v6) == want_tcp);
    if (!(flags & 3)) {
      FZ_CHECK((v6 ? rules_check_tcpip6 : rules_check_tcpip)(&c, (char *)ip) == want_tcp);
      if (got >= 0) {
        FZ_CHECK(rules_check_many_tcp(&c, (char *)ip, il, out, 1, v6) == 1);
        FZ_CHECK(out[0] == want_tcp);
      }
    }
    if (len >= 16) {
      size_t tl = ip_tcpserver_fmt(text, m, v6);
      FZ_CHECK(ip_is_tcpserver_text(text, tl, v6));
    }
  }
  free(seen);
  free(k->arena);
  free(k);
  free(m);
out:
  free(ip);
  free(host);
  free(info);
  return 0;
}
