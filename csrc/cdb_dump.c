/* cdb_dump.c: cdbdump's output into a caller's buffer, every read checked. */
#include <errno.h>
#include "cdb_dump.h"
#include "cdb_int.h"

enum { _D_HEAD, _D_KEY, _D_ARROW, _D_DATA, _D_NL, _D_END, _D_DONE, _D_SHORT };

/* cdbdump copies key and data in pieces of this size; when the file ends
 * inside one, the piece is not written. */
#define _DUMP_PIECE 1024u

void
cdb_dump_start(struct cdb_dump *d, const struct cdb *c)
{
  memset(d, 0, sizeof *d);
  d->cdb = c;
  d->eod = cdb_unpack(c->map);
  d->pos = CDB_HEADER_SIZE;
  d->state = _D_HEAD;
}

static size_t
_dump_u32(unsigned char *out, uint32_t v)
{
  unsigned char tmp[10];
  size_t n = 0, i;
  do
    tmp[n++] = (unsigned char)('0' + v % 10);
  while (v /= 10);
  for (i = 0; i < n; ++i)
    out[i] = tmp[n - 1 - i];
  return n;
}

/* Set up the copy of len bytes at from: as many whole pieces as the file holds. */
static void
_dump_span(struct cdb_dump *d, uint32_t from, uint32_t len)
{
  uint32_t have = d->cdb->size - from; /* from <= size: the bytes before it were there */
  d->from = from;
  d->done = 0;
  d->cut = have < len;
  d->upto = d->cut ? have - have % _DUMP_PIECE : len;
}

long
cdb_dump_next(struct cdb_dump *d, unsigned char *buf, size_t cap)
{
  const struct cdb *c = d->cdb;
  size_t n = 0;
  for (;;)
    switch (d->state) {
    case _D_HEAD:
      if (d->pos >= d->eod) {
        d->state = _D_END;
        break;
      }
      if (c->size - d->pos < 8) {
        d->state = _D_SHORT;
        break;
      }
      if (cap - n < CDB_DUMP_MINBUF)
        return (long)n;
      d->klen = cdb_unpack(c->map + d->pos);
      d->dlen = cdb_unpack(c->map + d->pos + 4);
      buf[n++] = '+';
      n += _dump_u32(buf + n, d->klen);
      buf[n++] = ',';
      n += _dump_u32(buf + n, d->dlen);
      buf[n++] = ':';
      _dump_span(d, d->pos + 8, d->klen);
      d->state = _D_KEY;
      break;
    case _D_KEY:
    case _D_DATA: {
      size_t k = d->upto - d->done;
      if (k > cap - n)
        k = cap - n;
      memcpy(buf + n, c->map + d->from + d->done, k);
      n += k;
      d->done += (uint32_t)k;
      if (d->done < d->upto)
        return (long)n; /* buf is full */
      if (d->cut)
        d->state = _D_SHORT;
      else
        d->state = d->state == _D_KEY ? _D_ARROW : _D_NL;
      break;
    }
    case _D_ARROW:
      if (cap - n < 2)
        return (long)n;
      buf[n++] = '-';
      buf[n++] = '>';
      _dump_span(d, d->pos + 8 + d->klen, d->dlen);
      d->state = _D_DATA;
      break;
    case _D_NL:
      if (cap - n < 1)
        return (long)n;
      buf[n++] = '\n';
      d->pos += 8 + d->klen + d->dlen; /* all inside the file: no overflow */
      ++d->records;
      d->state = _D_HEAD;
      break;
    case _D_END:
      if (cap - n < 1)
        return (long)n;
      buf[n++] = '\n';
      d->state = _D_DONE;
      break;
    case _D_DONE:
      return (long)n;
    default: /* _D_SHORT */
      if (n)
        return (long)n;
      return errno = EPROTO, -1;
    }
}
