/* rules_parse.c: tcprules text to cdb records (docs/format.md). */
#include <errno.h>
#include <stdlib.h>
#include "cdb_int.h"
#include "rules_parse.h"

static int
_rules_reserve(unsigned char **buf, size_t *cap, size_t need)
{
  size_t n;
  unsigned char *b;
  if (need <= *cap)
    return 0;
  n = *cap ? *cap : 256;
  while (n < need) {
    if (n > SIZE_MAX / 2)
      return errno = ENOMEM, -1;
    n *= 2;
  }
  b = realloc(*buf, n);
  if (!b)
    return errno = ENOMEM, -1;
  *buf = b;
  *cap = n;
  return 0;
}

int
rules_parser_init(struct rules_parser *p, struct cdb_make *out)
{
  memset(p, 0, sizeof *p);
  p->out = out;
  p->maxline = RULES_MAX_LINE;
  return 0;
}

void
rules_parser_free(struct rules_parser *p)
{
  free(p->line);
  free(p->data);
  free(p->key);
  p->line = p->data = p->key = NULL;
  p->linecap = p->datacap = p->keycap = 0;
}

/* Report code at column of the trimmed line s[0..n); keep a copy of the line. */
static int
_rules_fail(struct rules_parser *p, const unsigned char *s, size_t n, int code, size_t column,
            size_t name, size_t namelen)
{
  if (s != p->line) {
    if (_rules_reserve(&p->line, &p->linecap, n + 1) < 0)
      return -1;
    memcpy(p->line, s, n);
  }
  p->err.lineno = p->lineno;
  p->err.code = code;
  p->err.column = column;
  p->err.name = name;
  p->err.namelen = namelen;
  p->err.line = p->line;
  p->err.linelen = n;
  return errno = EINVAL, -1;
}

/* A range bound: decimal digits (maybe none), then the end or a NUL.
 * The value wraps modulo 2^64 as tcprules' unsigned long does. */
static int
_rules_number(const unsigned char *s, size_t n, uint64_t *v)
{
  uint64_t x = 0;
  size_t i = 0;
  while (i < n && s[i] >= '0' && s[i] <= '9')
    x = x * 10 + (uint64_t)(s[i++] - '0');
  if (i < n && s[i] != 0)
    return -1;
  *v = x;
  return 0;
}

static int
_rules_add(struct rules_parser *p, const unsigned char *key, size_t klen, size_t dlen)
{
  if (cdb_make_add(p->out, key, klen, p->data, dlen) < 0)
    return -1;
  ++p->keys;
  return 0;
}

/* Store the rule for address a[0..n) (docs/format.md, "Ranges": 1.2.3.4-7). */
static int
_rules_store(struct rules_parser *p, const unsigned char *line, size_t linelen, size_t n, size_t dlen)
{
  const unsigned char *a = line, *dash;
  size_t d, l, r;
  uint64_t bot, top, v;
  if (!(dash = memchr(a, '-', n)) || memchr(a, '=', n) || memchr(a, '@', n))
    return _rules_add(p, a, n, dlen);
  d = (size_t)(dash - a);
  for (l = d; l > 0 && a[l - 1] != '.'; --l)
    ;
  for (r = d + 1; r < n && a[r] != '.'; ++r)
    ;
  if (_rules_number(a + l, d - l, &bot) < 0)
    return _rules_fail(p, line, linelen, RULES_E_RANGE, l, 0, n);
  if (_rules_number(a + d + 1, r - d - 1, &top) < 0)
    return _rules_fail(p, line, linelen, RULES_E_RANGE, d + 1, 0, n);
  if (top > 255)
    top = 255;
  if (bot > top)
    return 0;
  if (_rules_reserve(&p->key, &p->keycap, l + 3 + (n - r)) < 0)
    return -1;
  memcpy(p->key, a, l);
  for (v = bot; v <= top; ++v) {
    unsigned char digits[3];
    size_t k = 0, m = l;
    uint64_t x = v;
    do
      digits[k++] = (unsigned char)('0' + x % 10);
    while ((x /= 10));
    while (k)
      p->key[m++] = digits[--k];
    memcpy(p->key + m, a + r, n - r);
    if (_rules_add(p, p->key, m + n - r, dlen) < 0)
      return -1;
  }
  return 0;
}

/* One line s[0..n), its newline removed. */
static int
_rules_line(struct rules_parser *p, const unsigned char *s, size_t n)
{
  const unsigned char *c, *end;
  size_t sep, i, dlen = 0, pname = 0, pnamelen = 0;
  int deny = 0;
  ++p->lineno;
  if (n == 0 || s[0] == '#')
    return 0;
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n'))
    --n;
  end = s + n;
  if (!(c = memchr(s, ':', n)))
    return 0; /* no colon at all: tcprules skips the line */
  for (;;) {
    size_t rest = (size_t)(end - c) - 1;
    if (rest >= 4 && memcmp(c + 1, "deny", 4) == 0) {
      deny = 1;
      break;
    }
    if (rest >= 5 && memcmp(c + 1, "allow", 5) == 0)
      break;
    if (!(c = memchr(c + 1, ':', rest))) {
      c = memchr(s, ':', n);
      return _rules_fail(p, s, n, RULES_E_NOKEYWORD, (size_t)(c - s), 0, 0);
    }
  }
  sep = (size_t)(c - s);
  i = sep + 1 + (deny ? 4 : 5);
  /* the data never outgrows the line: ",N=dVd" becomes "+N=V\0" */
  if (_rules_reserve(&p->data, &p->datacap, n + 2) < 0)
    return -1;
  if (deny) {
    p->data[dlen++] = 'D';
    p->data[dlen++] = 0;
  }
  while (i < n) {
    const unsigned char *eq, *close;
    size_t comma = i, name, namelen, v;
    if (s[i] != ',')
      return _rules_fail(p, s, n, dlen > (size_t)(deny ? 2 : 0) ? RULES_E_AFTERVALUE : RULES_E_AFTERKEYWORD,
                         i, pname, pnamelen);
    if (!(eq = memchr(s + i, '=', n - i)))
      return _rules_fail(p, s, n, comma + 1 == n ? RULES_E_TRAILINGCOMMA : RULES_E_NOEQUALS, comma, comma + 1,
                         n - comma - 1);
    name = comma + 1;
    namelen = (size_t)(eq - s) - name;
    i = (size_t)(eq - s) + 1;
    if (i >= n)
      return _rules_fail(p, s, n, RULES_E_NOVALUE, i - 1, name, namelen);
    v = i + 1;
    if (!(close = memchr(s + v, s[i], n - v)))
      return _rules_fail(p, s, n, RULES_E_UNTERMINATED, i, name, namelen);
    p->data[dlen++] = '+';
    memcpy(p->data + dlen, s + name, namelen);
    dlen += namelen;
    p->data[dlen++] = '=';
    memcpy(p->data + dlen, s + v, (size_t)(close - s) - v);
    dlen += (size_t)(close - s) - v;
    p->data[dlen++] = 0;
    i = (size_t)(close - s) + 1;
    pname = name;
    pnamelen = namelen;
  }
  ++p->rules;
  return _rules_store(p, s, n, sep, dlen);
}

/* The line being read, of which s[0..n) is known, is longer than maxline. */
static int
_rules_toolong(struct rules_parser *p, const unsigned char *s, size_t n)
{
  ++p->lineno;
  return _rules_fail(p, s, n < p->maxline ? n : p->maxline, RULES_E_LONGLINE, p->maxline, 0, 0);
}

int
rules_feed(struct rules_parser *p, const void *text, size_t len)
{
  const unsigned char *t = text, *end = t + len;
  while (t < end) {
    const unsigned char *nl = memchr(t, '\n', (size_t)(end - t));
    size_t piece = (size_t)((nl ? nl : end) - t);
    int r;
    if (!nl || p->linelen) {
      /* a comment's first byte is all it takes to skip it: keep no more */
      size_t keep = (p->linelen ? p->line[0] : t[0]) == '#' ? !p->linelen : piece;
      int toolong = keep > p->maxline - p->linelen;
      if (toolong)
        keep = p->maxline - p->linelen; /* the error quotes the first maxline bytes */
      if (_rules_reserve(&p->line, &p->linecap, p->linelen + keep + 1) < 0)
        return -1;
      memcpy(p->line + p->linelen, t, keep);
      p->linelen += keep;
      if (toolong)
        return _rules_toolong(p, p->line, p->linelen);
      if (!nl)
        return 0;
      r = _rules_line(p, p->line, p->linelen);
      p->linelen = 0;
    } else if (piece > p->maxline && t[0] != '#')
      return _rules_toolong(p, t, piece);
    else
      r = _rules_line(p, t, piece);
    if (r < 0)
      return -1;
    t = nl + 1;
  }
  return 0;
}

int
rules_finish(struct rules_parser *p)
{
  int r = 0;
  if (p->linelen) {
    r = _rules_line(p, p->line, p->linelen);
    p->linelen = 0;
  }
  return r;
}
