/* fuzz_rules.c: libFuzzer harness for the rules parser (csrc/rules_parse.c).
 *
 * The input is rules text, any bytes.  Properties beyond "no crash":
 *
 * - it ends: libFuzzer's -timeout turns a hang (the IPv6 tcprules' bug)
 *   into a finding;
 * - feeding the text whole or in pieces of 1..13 bytes gives the same result:
 *   the same file byte for byte, or the same error at the same line and column;
 * - a success gives a valid cdb of the size docs/format.md gives, whose records the
 *   reader iterates (as many as the parser counted) and finds by key (the
 *   first of equal keys first); every value is empty or ends in a NUL;
 * - the line count is the text's, and an error names a line of the text as it
 *   is (trailing blanks trimmed), with column and name inside it; the text
 *   before that line parses, and that line alone fails the same way;
 * - the size limit is exact: with m->limit at the file's size the same file
 *   comes out, one byte less fails with EFBIG and no rules error;
 * - the line limit is exact: with p->maxline lowered to L, whole or in pieces,
 *   the first line longer than L that is not a comment fails with
 *   RULES_E_LONGLINE quoting its first L bytes, unless an earlier line failed;
 *   if there is none, the outcome is the same as without the limit.
 *
 * The same text compiled with --cidr (rules_parser_cidr, rules_write):
 *
 * - whole and in pieces: the same outcome;
 * - a rules error is the one of the classic compile at the same line, or a
 *   network error (RULES_E_NETWORK) on an earlier line, or where the classic
 *   compile succeeds; a network error names a line whose address has a '/';
 * - a success is a valid cdb in which every key occurs once;
 * - with no network in the text, its records are the first record of each
 *   key of the classic file, and no other;
 * - the IPv4 model, when every network is written a.b.c.d/LEN: each key of
 *   the form tcpserver probes ("a.", "a.b.", "a.b.c.", "a.b.c.d") holds the
 *   value of the rule with the longest network holding it (a classic key
 *   "a.b.c." being a /24), then the first line; and every key of every
 *   network is in the file. */
#include <errno.h>
#include <arpa/inet.h>
#include "cdb.h"
#include "cdb_make.h"
#include "rules_parse.h"
#include "fuzz_util.h"

struct outcome {
  int rc, err;                  /* rules_feed/finish/cdb_make_finish result, errno */
  struct rules_error e;         /* e.line points into line below */
  unsigned char *line;          /* a copy of the error line */
  uint64_t lineno, rules, keys, networks;
  unsigned char *file;          /* the cdb written, on success */
  size_t len;
};

/* Parse text[0..n) fed in pieces (step 0: whole) into a file of at most limit bytes,
 * with lines of at most maxline bytes. */
static void
parse_mode(const unsigned char *text, size_t n, const unsigned char *steps, size_t nsteps, uint64_t limit,
           size_t maxline, int cidr, struct outcome *o)
{
  struct cdb_make mk;
  struct rules_parser p;
  size_t at = 0, k = 0;
  int fd = fz_memfd();
  memset(o, 0, sizeof *o);
  FZ_CHECK(cdb_make_start(&mk, fd) == 0);
  mk.limit = limit;
  FZ_CHECK(rules_parser_init(&p, &mk) == 0);
  FZ_CHECK(p.maxline == RULES_MAX_LINE);
  p.maxline = maxline;
  if (cidr)
    FZ_CHECK(rules_parser_cidr(&p, 0) == 0);
  o->rc = 0;
  while (at < n && o->rc == 0) {
    size_t piece = nsteps ? 1 + steps[k++ % nsteps] % 13 : n;
    if (piece > n - at)
      piece = n - at;
    o->rc = rules_feed(&p, text + at, piece);
    at += piece;
  }
  if (o->rc == 0)
    o->rc = rules_finish(&p);
  if (o->rc == 0)
    o->rc = rules_write(&p, -1);
  if (o->rc == 0)
    o->rc = cdb_make_finish(&mk);
  o->networks = p.networks;
  o->err = o->rc ? errno : 0;
  o->e = p.err;
  o->lineno = p.lineno;
  o->rules = p.rules;
  o->keys = p.keys;
  if (o->rc && p.err.code)
    o->line = fz_dup(p.err.line, p.err.linelen);
  o->e.line = o->line;
  if (o->rc == 0)
    o->file = fz_slurp(fd, &o->len);
  rules_parser_free(&p);
  cdb_make_free(&mk);
  close(fd);
}

static void
parse_max(const unsigned char *text, size_t n, const unsigned char *steps, size_t nsteps, uint64_t limit,
          size_t maxline, struct outcome *o)
{
  parse_mode(text, n, steps, nsteps, limit, maxline, 0, o);
}

static void
parse(const unsigned char *text, size_t n, const unsigned char *steps, size_t nsteps, uint64_t limit,
      struct outcome *o)
{
  parse_max(text, n, steps, nsteps, limit, RULES_MAX_LINE, o);
}

static void
done(struct outcome *o)
{
  free(o->line);
  free(o->file);
}

static void
same(const struct outcome *a, const struct outcome *b)
{
  FZ_CHECK(a->rc == b->rc && a->err == b->err);
  FZ_CHECK(a->e.code == b->e.code);
  FZ_CHECK(a->lineno == b->lineno && a->rules == b->rules && a->keys == b->keys);
  if (a->e.code) {
    FZ_CHECK(a->e.lineno == b->e.lineno && a->e.column == b->e.column);
    FZ_CHECK(a->e.name == b->e.name && a->e.namelen == b->e.namelen);
    FZ_CHECK(a->e.linelen == b->e.linelen && memcmp(a->line, b->line, a->e.linelen) == 0);
  }
  if (a->rc == 0)
    FZ_CHECK(a->len == b->len && memcmp(a->file, b->file, a->len) == 0);
}

/* The file is a cdb the reader can walk and search (with unique, every key once). */
static void
valid_keys(const struct outcome *o, int unique)
{
  struct cdb c;
  uint32_t pos = 2048, klen, dlen, start;
  uint64_t records = 0, bytes = 2048;
  int r;
  FZ_CHECK(cdb_init(&c, o->file, o->len) == 0);
  for (start = pos; (r = cdb_seqnext(&c, &pos, &klen, &dlen)) > 0; start = pos) {
    const unsigned char *key = o->file + start + 8, *val = key + klen;
    uint32_t found;
    FZ_CHECK(cdb_find(&c, key, klen, &found) == 1);
    FZ_CHECK(unique ? found == start : found <= start);
    FZ_CHECK(fz_u32(o->file + found) == klen && memcmp(o->file + found + 8, key, klen) == 0);
    FZ_CHECK(dlen == 0 || val[dlen - 1] == 0);
    FZ_CHECK(dlen == 0 || val[0] == 'D' || val[0] == '+');
    ++records;
    bytes += 24 + (uint64_t)klen + dlen;
  }
  FZ_CHECK(r == 0);
  FZ_CHECK(records == o->keys && bytes == o->len);
}

static void
valid(const struct outcome *o)
{
  valid_keys(o, 0);
}

/* -- the --cidr model ---------------------------------------------------------------- */

/* A canonical IPv4 key ("a.", .., "a.b.c.d"): its octet count and value, or 0. */
static int
v4key(const unsigned char *k, size_t n, uint32_t *value)
{
  size_t i = 0;
  int c = 0;
  uint32_t v = 0;
  while (i < n) {
    unsigned x = 0;
    size_t d = i;
    while (i < n && k[i] >= '0' && k[i] <= '9' && i - d < 3)
      x = x * 10 + (unsigned)(k[i++] - '0');
    if (i == d || x > 255 || (k[d] == '0' && i - d > 1) || c == 4)
      return 0;
    v = v << 8 | x;
    ++c;
    if (i == n)
      break;
    if (k[i++] != '.')
      return 0;
    if (i == n && c < 4) {
      *value = v;
      return c;
    }
  }
  if (c != 4 || (n && k[n - 1] == '.'))
    return 0;
  *value = v;
  return 4;
}

/* An IPv4 network "a.b.c.d/LEN" (canonical address, no host bits, LEN 1..32). */
static int
v4net(const unsigned char *k, size_t n, uint32_t *addr, unsigned *len)
{
  const unsigned char *slash = memchr(k, '/', n);
  size_t a, i;
  uint32_t v;
  unsigned l = 0;
  if (!slash)
    return 0;
  a = (size_t)(slash - k);
  if (v4key(k, a, &v) != 4 || a + 1 == n || n - a - 1 > 2)
    return 0;
  for (i = a + 1; i < n; ++i) {
    if (k[i] < '0' || k[i] > '9')
      return 0;
    l = l * 10 + (unsigned)(k[i] - '0');
  }
  if (l == 0 || l > 32 || (l < 32 && (v & (0xffffffffu >> l))))
    return 0;
  *addr = v;
  *len = l;
  return 1;
}

/* The value the classic compile stores for the rule line s[0..n) alone (its first record). */
static size_t
rule_value(const unsigned char *s, size_t n, unsigned char *out)
{
  struct outcome o;
  size_t klen, dlen;
  parse(s, n, NULL, 0, CDB_MAX_SIZE, &o);
  FZ_CHECK(o.rc == 0 && o.len >= 2048 + 8);
  klen = fz_u32(o.file + 2048);
  dlen = fz_u32(o.file + 2052);
  memcpy(out, o.file + 2048 + 8 + klen, dlen);
  done(&o);
  return dlen;
}

struct model_line {
  const unsigned char *s;
  size_t n;           /* the line's length */
  struct rules_line l;
  int net;            /* 1: an IPv4 network */
  uint32_t addr;
  unsigned len;
};

/* The lines of text that are rules; 0 when the model does not cover the text (a
 * network it does not parse itself). */
static size_t
model_lines(const unsigned char *text, size_t n, struct model_line *ml, size_t max)
{
  size_t at = 0, k = 0;
  while (at < n && k < max) {
    const unsigned char *nl = memchr(text + at, '\n', n - at);
    size_t len = (nl ? (size_t)(nl - text) : n) - at;
    struct model_line *m = &ml[k];
    if (rules_line_parse(text + at, len, &m->l) == RULES_LINE_RULE) {
      const unsigned char *s = text + at;
      size_t sep = m->l.sep;
      m->s = s;
      m->n = len;
      m->net = 0;
      if (memchr(s, '/', sep) && !memchr(s, '=', sep) && !memchr(s, '@', sep) && !m->l.range) {
        if (!v4net(s, sep, &m->addr, &m->len))
          return 0;
        m->net = 1;
      }
      ++k;
    }
    at += len + 1;
  }
  return k < max ? k : 0;
}

#define MODEL_LINES 512

static void
cidr_model(const unsigned char *text, size_t n, const struct outcome *c)
{
  struct model_line *ml = calloc(MODEL_LINES, sizeof *ml);
  unsigned char *want = malloc(n + 2), *mk = malloc(n + 3), key[16];
  struct cdb db;
  uint32_t pos = 2048, klen, dlen, start;
  size_t nl, i;
  FZ_CHECK(ml && want && mk);
  nl = model_lines(text, n, ml, MODEL_LINES);
  FZ_CHECK(cdb_init(&db, c->file, c->len) == 0);
  for (start = pos; nl && cdb_seqnext(&db, &pos, &klen, &dlen) > 0; start = pos) {
    const unsigned char *k = c->file + start + 8;
    uint32_t v;
    int cls = v4key(k, klen, &v), best = -1, bestlen = -1;
    if (!cls)
      continue;
    for (i = 0; i < nl; ++i) {
      const struct model_line *m = &ml[i];
      int len = -1;
      if (m->net) {
        unsigned c8 = 8 * (unsigned)cls;
        if (m->len <= c8 && m->len > c8 - 8 && (m->addr >> (32 - c8)) >> (c8 - m->len) == v >> (c8 - m->len))
          len = (int)m->len;
      } else {
        uint64_t r;
        for (r = m->l.range ? m->l.bot : 0; m->l.range ? r <= m->l.top : r == 0; ++r) {
          size_t mlen = rules_line_key(m->s, &m->l, r, mk); /* mk: room for any line's key */
          if (mlen == klen && memcmp(mk, k, klen) == 0)
            len = 8 * cls;
        }
      }
      if (len > bestlen) {
        best = (int)i;
        bestlen = len;
      }
    }
    FZ_CHECK(best >= 0);
    FZ_CHECK(rule_value(ml[best].s, ml[best].n, want) == dlen && memcmp(want, k + klen, dlen) == 0);
  }
  /* every key of every network is there */
  for (i = 0; i < nl; ++i) {
    const struct model_line *m = &ml[i];
    unsigned cls = (m->len + 7) / 8, j, count;
    uint32_t first;
    if (!m->net)
      continue;
    count = 1u << (8 * cls - m->len);
    first = m->addr >> (32 - 8 * cls);
    for (j = 0; j < count; ++j) {
      uint32_t v = first + j, f;
      size_t kn = 0;
      unsigned o;
      for (o = 0; o < cls; ++o)
        kn += (size_t)sprintf((char *)key + kn, o + 1 < cls || cls < 4 ? "%u." : "%u",
                              (unsigned)(v >> (8 * (cls - 1 - o))) & 255);
      FZ_CHECK(cdb_find(&db, key, kn, &f) == 1);
    }
  }
  free(ml);
  free(want);
  free(mk);
}

/* With no network in the text, --cidr keeps the first record of every key. */
static void
cidr_dedup(const struct outcome *whole, const struct outcome *c)
{
  struct cdb w, d;
  uint32_t pos = 2048, klen, dlen, start, firsts = 0;
  FZ_CHECK(cdb_init(&w, whole->file, whole->len) == 0 && cdb_init(&d, c->file, c->len) == 0);
  for (start = pos; cdb_seqnext(&w, &pos, &klen, &dlen) > 0; start = pos) {
    const unsigned char *k = whole->file + start + 8;
    uint32_t found, mine;
    FZ_CHECK(cdb_find(&w, k, klen, &found) == 1);
    if (found != start)
      continue;
    ++firsts;
    FZ_CHECK(cdb_find(&d, k, klen, &mine) == 1);
    FZ_CHECK(fz_u32(c->file + mine + 4) == dlen && memcmp(c->file + mine + 8 + klen, k + klen, dlen) == 0);
  }
  FZ_CHECK(firsts == c->keys);
}

static void
cidr_checks(const unsigned char *data, size_t size, const struct outcome *whole)
{
  struct outcome c, cp;
  parse_mode(data, size, NULL, 0, CDB_MAX_SIZE, RULES_MAX_LINE, 1, &c);
  parse_mode(data, size, data, size, CDB_MAX_SIZE, RULES_MAX_LINE, 1, &cp);
  same(&c, &cp);
  done(&cp);
  if (c.rc == 0) {
    FZ_CHECK(whole->rc == 0 || whole->e.code == RULES_E_LONGLINE);
    valid_keys(&c, 1);
    if (whole->rc == 0 && c.networks == 0)
      cidr_dedup(whole, &c);
    cidr_model(data, size, &c);
  } else {
    FZ_CHECK(c.e.code != 0 && c.err == EINVAL);
    if (c.e.code == RULES_E_NETWORK) {
      FZ_CHECK(whole->rc == 0 || whole->e.lineno > c.e.lineno);
      FZ_CHECK(c.e.namelen && memchr(c.line + c.e.name, '/', c.e.namelen));
    } else
      FZ_CHECK(whole->rc && whole->e.lineno == c.e.lineno && whole->e.code == c.e.code);
  }
  done(&c);
}

/* Line number lineno (from 1) of text, trailing spaces, tabs and newlines trimmed. */
static size_t
nth_line(const unsigned char *text, size_t n, uint64_t lineno, size_t *len)
{
  size_t at = 0, e;
  uint64_t l;
  for (l = 1; l < lineno; ++l) {
    const unsigned char *nl = memchr(text + at, '\n', n - at);
    FZ_CHECK(nl != NULL);
    at = (size_t)(nl - text) + 1;
  }
  for (e = at; e < n && text[e] != '\n'; ++e)
    ;
  while (e > at && (text[e - 1] == ' ' || text[e - 1] == '\t'))
    --e;
  *len = e - at;
  return at;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct outcome whole, pieces;
  uint64_t lines = 0;
  size_t i;
  for (i = 0; i < size; ++i)
    lines += data[i] == '\n';
  if (size && data[size - 1] != '\n')
    ++lines;

  parse(data, size, NULL, 0, CDB_MAX_SIZE, &whole);
  parse(data, size, data, size, CDB_MAX_SIZE, &pieces);
  same(&whole, &pieces);
  done(&pieces);
  cidr_checks(data, size, &whole);

  FZ_CHECK(whole.rules <= whole.lineno && whole.keys <= 256 * whole.rules);
  if (whole.rc == 0) {
    struct outcome limited;
    FZ_CHECK(whole.lineno == lines);
    valid(&whole);
    parse(data, size, NULL, 0, whole.len, &limited);
    same(&whole, &limited);
    done(&limited);
    parse(data, size, NULL, 0, whole.len - 1, &limited);
    FZ_CHECK(limited.rc == -1 && limited.err == EFBIG && limited.e.code == 0);
    done(&limited);
  } else {
    struct outcome before, alone;
    size_t at, len;
    FZ_CHECK(whole.e.code != 0 && whole.err == EINVAL);
    FZ_CHECK(whole.e.lineno >= 1 && whole.e.lineno == whole.lineno && whole.e.lineno <= lines);
    at = nth_line(data, size, whole.e.lineno, &len);
    FZ_CHECK(whole.e.linelen == len && memcmp(whole.line, data + at, len) == 0);
    FZ_CHECK(whole.e.column <= len && whole.e.name + whole.e.namelen <= len);
    parse(data, at, NULL, 0, CDB_MAX_SIZE, &before);
    FZ_CHECK(before.rc == 0 && before.lineno == whole.e.lineno - 1);
    done(&before);
    parse(data + at, len, NULL, 0, CDB_MAX_SIZE, &alone);
    FZ_CHECK(alone.rc == -1 && alone.e.code == whole.e.code && alone.e.lineno == 1);
    FZ_CHECK(alone.e.column == whole.e.column && alone.e.name == whole.e.name);
    done(&alone);
  }
  if (size) {
    /* the first line over maxline bytes (its newline not counted) that is not a comment */
    size_t maxline = 1 + data[0] % 64, at = 0, len = 0;
    uint64_t l, longline = 0;
    struct outcome limited[2];
    int k;
    for (l = 1; at < size && !longline; ++l) {
      const unsigned char *nl = memchr(data + at, '\n', size - at);
      len = (nl ? (size_t)(nl - data) : size) - at;
      if (len > maxline && data[at] != '#')
        longline = l;
      else
        at += len + 1;
    }
    parse_max(data, size, NULL, 0, CDB_MAX_SIZE, maxline, &limited[0]);
    parse_max(data, size, data, size, CDB_MAX_SIZE, maxline, &limited[1]);
    for (k = 0; k < 2; ++k) {
      const struct outcome *o = &limited[k];
      if (!longline || (whole.rc && whole.e.lineno < longline)) {
        same(&whole, o);
        continue;
      }
      FZ_CHECK(o->rc == -1 && o->err == EINVAL && o->e.code == RULES_E_LONGLINE);
      FZ_CHECK(o->e.lineno == longline && o->lineno == longline && o->e.column == maxline);
      FZ_CHECK(o->e.linelen == maxline && memcmp(o->line, data + at, maxline) == 0);
    }
    done(&limited[0]);
    done(&limited[1]);
  }
  done(&whole);
  return 0;
}
