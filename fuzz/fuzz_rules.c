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
 *   if there is none, the outcome is the same as without the limit. */
#include <errno.h>
#include "cdb.h"
#include "cdb_make.h"
#include "rules_parse.h"
#include "fuzz_util.h"

struct outcome {
  int rc, err;                  /* rules_feed/finish/cdb_make_finish result, errno */
  struct rules_error e;         /* e.line points into line below */
  unsigned char *line;          /* a copy of the error line */
  uint64_t lineno, rules, keys;
  unsigned char *file;          /* the cdb written, on success */
  size_t len;
};

/* Parse text[0..n) fed in pieces (step 0: whole) into a file of at most limit bytes,
 * with lines of at most maxline bytes. */
static void
parse_max(const unsigned char *text, size_t n, const unsigned char *steps, size_t nsteps, uint64_t limit,
          size_t maxline, struct outcome *o)
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
    o->rc = cdb_make_finish(&mk);
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

/* The file is a cdb the reader can walk and search. */
static void
valid(const struct outcome *o)
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
    FZ_CHECK(found <= start);
    FZ_CHECK(fz_u32(o->file + found) == klen && memcmp(o->file + found + 8, key, klen) == 0);
    FZ_CHECK(dlen == 0 || val[dlen - 1] == 0);
    FZ_CHECK(dlen == 0 || val[0] == 'D' || val[0] == '+');
    ++records;
    bytes += 24 + (uint64_t)klen + dlen;
  }
  FZ_CHECK(r == 0);
  FZ_CHECK(records == o->keys && bytes == o->len);
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
