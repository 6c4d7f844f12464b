/* rules_parse.c: tcprules text to cdb records (docs/format.md; networks: docs/networks.md). */
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
  free(p->listval);
  free(p->origin);
  rules_netset_free(p->net);
  p->line = p->data = p->key = p->listval = NULL;
  p->linecap = p->datacap = p->keycap = p->listcap = 0;
  p->origin = NULL;
  p->norigin = p->corigin = 0;
  p->net = NULL;
}

int
rules_parser_cidr(struct rules_parser *p, int expand)
{
  if (!p->net && !(p->net = rules_netset_new()))
    return -1;
  p->expand = expand;
  return 0;
}

void
rules_parser_source(struct rules_parser *p, uint32_t src)
{
  p->src = src;
  p->lineno = 0;
  p->list = 0;
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
  p->err.src = p->src;
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
_rules_error(struct rules_line *l, int code, size_t column, size_t name, size_t namelen)
{
  l->code = code;
  l->column = column;
  l->name = name;
  l->namelen = namelen;
  return l->kind = RULES_LINE_ERROR;
}

/* The address a[0..n) of a rule: a range such as 1.2.3.4-7 (docs/format.md, "Ranges"), or a plain key. */
static int
_rules_range(const unsigned char *a, size_t n, struct rules_line *l)
{
  const unsigned char *dash;
  size_t d, lo, hi;
  if (!(dash = memchr(a, '-', n)) || memchr(a, '=', n) || memchr(a, '@', n))
    return l->kind;
  d = (size_t)(dash - a);
  for (lo = d; lo > 0 && a[lo - 1] != '.'; --lo)
    ;
  for (hi = d + 1; hi < n && a[hi] != '.'; ++hi)
    ;
  if (_rules_number(a + lo, d - lo, &l->bot) < 0)
    return _rules_error(l, RULES_E_RANGE, lo, 0, n);
  if (_rules_number(a + d + 1, hi - d - 1, &l->top) < 0)
    return _rules_error(l, RULES_E_RANGE, d + 1, 0, n);
  if (l->top > 255)
    l->top = 255;
  l->range = 1;
  l->rlo = lo;
  l->rdash = d;
  l->rhi = hi;
  return l->kind;
}

int
rules_item_next(const unsigned char *s, size_t n, size_t *pos, struct rules_item *it, int *code,
                size_t *column)
{
  const unsigned char *eq, *close;
  size_t i = *pos, comma = i;
  if (i >= n)
    return 0;
  if (s[i] != ',') {
    *code = it->delim ? RULES_E_AFTERVALUE : RULES_E_AFTERKEYWORD; /* after an item, or the keyword */
    *column = i;
    return -1;
  }
  if (!(eq = memchr(s + i, '=', n - i))) {
    *code = comma + 1 == n ? RULES_E_TRAILINGCOMMA : RULES_E_NOEQUALS;
    *column = comma;
    it->name = comma + 1;
    it->namelen = n - comma - 1;
    return -1;
  }
  it->comma = comma;
  it->name = comma + 1;
  it->namelen = (size_t)(eq - s) - it->name;
  i = (size_t)(eq - s) + 1;
  if (i >= n) {
    *code = RULES_E_NOVALUE;
    *column = i - 1;
    return -1;
  }
  it->delim = i;
  it->value = i + 1;
  if (!(close = memchr(s + it->value, s[i], n - it->value))) {
    *code = RULES_E_UNTERMINATED;
    *column = i;
    return -1;
  }
  it->valuelen = (size_t)(close - s) - it->value;
  *pos = (size_t)(close - s) + 1;
  return 1;
}

int
rules_line_parse(const unsigned char *s, size_t n, struct rules_line *l)
{
  const unsigned char *c, *end;
  struct rules_item it;
  size_t pos, column;
  int r, code;
  memset(l, 0, sizeof *l);
  if (n == 0)
    return l->kind = RULES_LINE_BLANK;
  if (s[0] == '#')
    return l->kind = RULES_LINE_COMMENT;
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n'))
    --n;
  l->len = n;
  end = s + n;
  if (!(c = memchr(s, ':', n)))
    return l->kind = RULES_LINE_SKIPPED;
  for (;;) {
    size_t rest = (size_t)(end - c) - 1;
    if (rest >= 4 && memcmp(c + 1, "deny", 4) == 0) {
      l->deny = 1;
      break;
    }
    if (rest >= 5 && memcmp(c + 1, "allow", 5) == 0)
      break;
    if (!(c = memchr(c + 1, ':', rest)))
      return _rules_error(l, RULES_E_NOKEYWORD, (size_t)((const unsigned char *)memchr(s, ':', n) - s), 0, 0);
  }
  l->kind = RULES_LINE_RULE;
  l->sep = (size_t)(c - s);
  l->items = pos = l->sep + 1 + (l->deny ? 4 : 5);
  l->datalen = l->deny ? 2 : 0;
  memset(&it, 0, sizeof it);
  while ((r = rules_item_next(s, n, &pos, &it, &code, &column)) > 0) {
    ++l->nitems;
    l->datalen += it.namelen + it.valuelen + 3; /* "+NAME=VALUE\0" */
  }
  if (r < 0)
    return _rules_error(l, code, column, code == RULES_E_AFTERKEYWORD ? 0 : it.name,
                        code == RULES_E_AFTERKEYWORD ? 0 : it.namelen);
  return _rules_range(s, l->sep, l);
}

size_t
rules_line_key(const unsigned char *s, const struct rules_line *l, uint64_t v, unsigned char *key)
{
  unsigned char digits[20];
  size_t k = 0, m = l->rlo;
  if (!l->range) {
    memcpy(key, s, l->sep);
    return l->sep;
  }
  memcpy(key, s, l->rlo);
  do
    digits[k++] = (unsigned char)('0' + v % 10);
  while ((v /= 10));
  while (k)
    key[m++] = digits[--k];
  memcpy(key + m, s + l->rhi, l->sep - l->rhi);
  return m + l->sep - l->rhi;
}

static int
_rules_add(struct rules_parser *p, const unsigned char *key, size_t klen, size_t dlen)
{
  if (p->net)
    return rules_netset_key(p->net, key, klen);
  if (cdb_make_add(p->out, key, klen, p->data, dlen) < 0)
    return -1;
  if (p->want_origin && rules_origin_add(&p->origin, &p->norigin, &p->corigin, p->src, p->lineno) < 0)
    return -1;
  ++p->keys;
  return 0;
}

static void
_rules_note(struct rules_parser *p, int kind, const unsigned char *text, size_t n, uint64_t keys)
{
  struct rules_note *e;
  if (p->nnotes[kind]++ >= RULES_NOTES)
    return;
  e = &p->notes[p->nkept++];
  e->line = p->lineno;
  e->src = p->src;
  e->kind = kind;
  e->keys = keys;
  e->textlen = n < RULES_NOTE_TEXT ? n : RULES_NOTE_TEXT;
  memcpy(e->text, text, e->textlen);
}

/* The network a[0..n) (at column col of the line s[0..len)) for the rule started last. */
static int
_rules_net(struct rules_parser *p, const unsigned char *s, size_t len, size_t col, size_t n, int flags)
{
  struct rules_net net;
  int r = rules_net_parse(s + col, n, flags, &net);
  if (r != RULES_NET_OK) {
    p->err.netcode = r == RULES_NET_NOTNET ? RULES_NET_E_SYNTAX : r;
    p->err.net = net;
    return _rules_fail(p, s, len, RULES_E_NETWORK, col, col, n);
  }
  ++p->networks;
  if (net.family == 6 && net.len % 16)
    _rules_note(p, RULES_NOTE_COSTLY, s + col, n, net.keys);
  return rules_netset_net(p->net, &net);
}

size_t
rules_line_data(const unsigned char *s, const struct rules_line *l, unsigned char *data)
{
  struct rules_item it;
  size_t pos = l->items, dlen = 0, column;
  int code;
  if (l->deny) {
    data[dlen++] = 'D';
    data[dlen++] = 0;
  }
  memset(&it, 0, sizeof it);
  while (rules_item_next(s, l->len, &pos, &it, &code, &column) > 0) {
    data[dlen++] = '+';
    memcpy(data + dlen, s + it.name, it.namelen);
    dlen += it.namelen;
    data[dlen++] = '=';
    memcpy(data + dlen, s + it.value, it.valuelen);
    dlen += it.valuelen;
    data[dlen++] = 0;
  }
  return dlen;
}

int
rules_line_network(const unsigned char *s, const struct rules_line *l)
{
  return memchr(s, '/', l->sep) && !memchr(s, '=', l->sep) && !memchr(s, '@', l->sep) && !l->range;
}

/* The cdb value of the rule line s (parsed as l) into *buf; its length, or -1 (ENOMEM). */
static long
_rules_value(unsigned char **buf, size_t *cap, const unsigned char *s, const struct rules_line *l)
{
  /* the data never outgrows the line: ",N=dVd" becomes "+N=V\0" */
  if (_rules_reserve(buf, cap, l->datalen + 1) < 0)
    return -1;
  return (long)rules_line_data(s, l, *buf);
}

/* Write the records of the rule line s (parsed as l): its value, then one record per key. */
static int
_rules_store(struct rules_parser *p, const unsigned char *s, const struct rules_line *l)
{
  long r = _rules_value(&p->data, &p->datacap, s, l);
  size_t dlen;
  uint64_t v;
  if (r < 0)
    return -1;
  dlen = (size_t)r;
  ++p->rules;
  if (p->net) {
    if (p->expand ? rules_netset_rule(p->net, s + l->sep + 1, l->len - l->sep - 1, p->src, p->lineno) < 0
                  : rules_netset_rule(p->net, p->data, dlen, p->src, p->lineno) < 0)
      return -1;
    if (rules_line_network(s, l))
      return _rules_net(p, s, l->len, 0, l->sep, 0);
  } else if (memchr(s, '/', l->sep) && rules_net_looks(s, l->sep))
    _rules_note(p, RULES_NOTE_NETKEY, s, l->sep, 0);
  if (!l->range)
    return _rules_add(p, s, l->sep, dlen);
  if (l->bot > l->top)
    return 0;
  if (_rules_reserve(&p->key, &p->keycap, l->sep + 3) < 0)
    return -1;
  for (v = l->bot; v <= l->top; ++v)
    if (_rules_add(p, p->key, rules_line_key(s, l, v, p->key), dlen) < 0)
      return -1;
  return 0;
}

/* One line s[0..n) of a list: an address or a network, maybe a comment. */
static int
_rules_listline(struct rules_parser *p, const unsigned char *s, size_t n)
{
  size_t a = 0, e = n, i;
  ++p->lineno;
  for (i = 0; i < n; ++i)
    if (s[i] == '#' || s[i] == ';') {
      e = i;
      break;
    }
  while (a < e && (s[a] == ' ' || s[a] == '\t' || s[a] == '\r'))
    ++a;
  while (e > a && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\r'))
    --e;
  if (a == e)
    return 0;
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n'))
    --n;
  ++p->rules;
  if (rules_netset_rule(p->net, p->listval, p->listlen, p->src, p->lineno) < 0)
    return -1;
  return _rules_net(p, s, n, a, e - a, RULES_NET_PLAIN);
}

int
rules_list_start(struct rules_parser *p, uint32_t src, const void *instruction, size_t len)
{
  struct rules_line l;
  long r;
  if (rules_parser_cidr(p, p->expand) < 0)
    return -1;
  rules_parser_source(p, src);
  p->list = 1;
  /* the instruction is checked as the rule ":" instruction */
  if (_rules_reserve(&p->key, &p->keycap, len + 2) < 0)
    return -1;
  p->key[0] = ':';
  memcpy(p->key + 1, instruction, len);
  if (rules_line_parse(p->key, len + 1, &l) != RULES_LINE_RULE || l.sep != 0 || l.len != len + 1) {
    if (l.kind != RULES_LINE_ERROR) {
      l.code = RULES_E_NOKEYWORD;
      l.column = 0;
      l.name = l.namelen = 0;
    }
    return _rules_fail(p, p->key, len + 1, l.code, l.column, l.name, l.namelen);
  }
  if (p->expand) {
    if (_rules_reserve(&p->listval, &p->listcap, len + 1) < 0)
      return -1;
    memcpy(p->listval, instruction, len);
    p->listlen = len;
    return 0;
  }
  if ((r = _rules_value(&p->listval, &p->listcap, p->key, &l)) < 0)
    return -1;
  p->listlen = (size_t)r;
  return 0;
}

int
rules_write(struct rules_parser *p, int text_fd)
{
  uint64_t keys = 0;
  int r;
  if (!p->net)
    return 0;
  free(p->origin);
  p->origin = NULL;
  p->norigin = 0;
  r = rules_netset_write(p->net, p->out, p->expand ? text_fd : -1, &keys, p->want_origin ? &p->origin : NULL,
                         &p->norigin);
  p->corigin = p->norigin; /* (the array is the writer's, of that size) */
  p->keys = keys;
  return r;
}

/* One line s[0..n), its newline removed. */
static int
_rules_line(struct rules_parser *p, const unsigned char *s, size_t n)
{
  struct rules_line l;
  if (p->list)
    return _rules_listline(p, s, n);
  ++p->lineno;
  switch (rules_line_parse(s, n, &l)) {
  case RULES_LINE_RULE:
    return _rules_store(p, s, &l);
  case RULES_LINE_ERROR:
    return _rules_fail(p, s, l.len, l.code, l.column, l.name, l.namelen);
  default:
    return 0;
  }
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
