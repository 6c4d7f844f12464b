/* cdbmake_parse.c: cdbmake's "+KLEN,DLEN:KEY->DATA\n" lines, streamed into a cdb. */
#include <errno.h>
#include "cdb.h"
#include "cdb_int.h"
#include "cdbmake_parse.h"

/* Where the parser is: what it expects next. */
enum {
  _S_START, /* '+' for a record, or the closing '\n' */
  _S_KLEN,  /* key length digits, then ',' */
  _S_DLEN,  /* data length digits, then ':' */
  _S_KEY,   /* key bytes */
  _S_DASH,  /* '-' */
  _S_GT,    /* '>' */
  _S_DATA,  /* data bytes */
  _S_NL,    /* '\n' */
  _S_DONE   /* the closing empty line has been read */
};

/* cdbmake stops when a length that is already past this gets another digit. */
#define _CDBMAKE_NUM_MAX 429496720u

void
cdbmake_parser_init(struct cdbmake_parser *p, struct cdb_make *out)
{
  memset(p, 0, sizeof *p);
  p->out = out;
  p->state = _S_START;
}

static int
_cdbmake_fail(struct cdbmake_parser *p, int code, uint64_t offset, int byte)
{
  p->err.code = code;
  p->err.entry = p->records + 1;
  p->err.start = p->start;
  p->err.offset = offset;
  p->err.byte = byte;
  return errno = EINVAL, -1;
}

/* The writer failed: keep its errno, say where. */
static int
_cdbmake_wfail(struct cdbmake_parser *p, uint64_t offset)
{
  int e = errno;
  p->err.code = CDBMAKE_OK;
  p->err.entry = p->records + 1;
  p->err.start = p->start;
  p->err.offset = offset;
  p->err.byte = -1;
  return errno = e, -1;
}

int
cdbmake_feed(struct cdbmake_parser *p, const void *buf, size_t len, size_t *used)
{
  const unsigned char *s = buf, *q = s, *end = s + len;
  int r = 0;
#define AT ((uint64_t)(p->offset + (uint64_t)(q - s)))
  while (q < end) {
    switch (p->state) {
    case _S_START:
      if (*q == '\n') {
        ++q;
        p->state = _S_DONE;
        continue;
      }
      if (*q != '+') {
        p->start = AT;
        r = _cdbmake_fail(p, CDBMAKE_E_PLUS, AT, *q);
        goto out;
      }
      p->start = AT;
      p->num = 0;
      p->state = _S_KLEN;
      ++q;
      break;
    case _S_KLEN:
    case _S_DLEN:
      while (q < end && *q >= '0' && *q <= '9') {
        if (p->num > _CDBMAKE_NUM_MAX) {
          r = _cdbmake_fail(p, p->state == _S_KLEN ? CDBMAKE_E_KHUGE : CDBMAKE_E_DHUGE, AT, *q);
          goto out;
        }
        p->num = p->num * 10 + (uint64_t)(*q++ - '0');
      }
      if (q == end)
        break;
      if (p->state == _S_KLEN) {
        if (*q != ',') {
          r = _cdbmake_fail(p, CDBMAKE_E_KLEN, AT, *q);
          goto out;
        }
        p->klen = (uint32_t)p->num;
        p->num = 0;
        p->state = _S_DLEN;
        ++q;
        break;
      }
      if (*q != ':') {
        r = _cdbmake_fail(p, CDBMAKE_E_DLEN, AT, *q);
        goto out;
      }
      p->dlen = (uint32_t)p->num;
      ++q;
      if (cdb_make_addbegin(p->out, p->klen, p->dlen) < 0) {
        r = _cdbmake_wfail(p, AT);
        goto out;
      }
      p->hash = CDB_HASH_START;
      p->left = p->klen;
      p->state = p->left ? _S_KEY : _S_DASH;
      break;
    case _S_KEY:
    case _S_DATA: { /* the next bytes of the key (hashed too) or the data, into the writer */
      size_t n = (size_t)(end - q);
      if (n > p->left)
        n = p->left;
      if (p->state == _S_KEY) {
        uint32_t h = p->hash;
        const unsigned char *k, *e;
        for (k = q, e = q + n; k < e; ++k)
          h = cdb_hash_step(h, *k);
        p->hash = h;
      }
      if (cdb_make_addbytes(p->out, q, n) < 0) {
        r = _cdbmake_wfail(p, AT);
        goto out;
      }
      q += n;
      p->left -= (uint32_t)n;
      if (!p->left)
        p->state = p->state == _S_KEY ? _S_DASH : _S_NL;
      break;
    }
    case _S_DASH:
    case _S_GT:
      if (*q != (p->state == _S_DASH ? '-' : '>')) {
        r = _cdbmake_fail(p, CDBMAKE_E_ARROW, AT, *q);
        goto out;
      }
      ++q;
      if (p->state == _S_DASH) {
        p->state = _S_GT;
        break;
      }
      p->left = p->dlen;
      p->state = p->left ? _S_DATA : _S_NL;
      break;
    case _S_NL:
      if (*q != '\n') {
        r = _cdbmake_fail(p, CDBMAKE_E_NEWLINE, AT, *q);
        goto out;
      }
      ++q;
      if (cdb_make_addend(p->out, p->klen, p->dlen, p->hash) < 0) {
        r = _cdbmake_wfail(p, AT);
        goto out;
      }
      ++p->records;
      p->state = _S_START;
      break;
    default: /* _S_DONE */
      goto out;
    }
  }
out:
#undef AT
  p->offset += (uint64_t)(q - s);
  *used = (size_t)(q - s);
  if (r == 0 && p->state == _S_DONE)
    return 1;
  return r;
}

int
cdbmake_finish(struct cdbmake_parser *p)
{
  if (p->state == _S_DONE)
    return 0;
  if (p->state == _S_START)
    p->start = p->offset;
  return _cdbmake_fail(p, CDBMAKE_E_END, p->offset, -1);
}
