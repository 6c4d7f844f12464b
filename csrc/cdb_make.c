/* cdb_make.c: write a cdb file exactly as djb's cdb_make does:
 * records in insertion order from offset 2048, then for each bucket
 * 0..255 a table of 2 * count slots filled in insertion order with linear
 * probing from (hash >> 8) % slots, then the header. */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>
#include "cdb.h"
#include "cdb_make.h"
#include "cdb_int.h"

#define CDB_MAKE_BUFSIZE (128 * 1024)
#define CDB_MAKE_CHUNK_MAX 8192

/* A bucket's records as (hash, position) pairs, in insertion order. */
struct cdb_make_chunk {
  struct cdb_make_chunk *next;
  uint32_t n, cap;
  uint32_t ent[]; /* 2 * cap: hash, position */
};

int
cdb_write_all(int fd, const void *buf, size_t len)
{
  const unsigned char *p = buf;
  while (len) {
    ssize_t w = write(fd, p, len);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    if (w == 0)
      return errno = EIO, -1;
    p += w;
    len -= (size_t)w;
  }
  return 0;
}

static int
_cdb_make_flush(struct cdb_make *m)
{
  if (m->buflen && cdb_write_all(m->fd, m->buf, m->buflen) < 0)
    return -1;
  m->buflen = 0;
  return 0;
}

/* Append len bytes to the output: the slow case, when the buffer is full. */
static int
_cdb_make_putslow(struct cdb_make *m, const unsigned char *p, size_t len)
{
  if (_cdb_make_flush(m) < 0)
    return -1;
  if (len >= CDB_MAKE_BUFSIZE) /* large pieces go straight out */
    return cdb_write_all(m->fd, p, len);
  memcpy(m->buf, p, len);
  m->buflen = len;
  return 0;
}

/* Append len bytes to the output. */
static inline int
_cdb_make_put(struct cdb_make *m, const void *data, size_t len)
{
  if (unlikely(m->buflen + len > CDB_MAKE_BUFSIZE))
    return _cdb_make_putslow(m, data, len);
  memcpy(m->buf + m->buflen, data, len);
  m->buflen += len;
  return 0;
}

int
cdb_make_start(struct cdb_make *m, int fd)
{
  memset(m, 0, sizeof *m);
  m->fd = fd;
  m->pos = CDB_HEADER_SIZE;
  m->limit = CDB_MAX_SIZE;
  m->buf = malloc(CDB_MAKE_BUFSIZE);
  if (!m->buf)
    return errno = ENOMEM, -1;
  if (lseek(fd, CDB_HEADER_SIZE, SEEK_SET) < 0) {
    cdb_make_free(m);
    return -1;
  }
  return 0;
}

static int
_cdb_make_remember(struct cdb_make *m, uint32_t hash, uint32_t pos)
{
  unsigned b = hash & 255;
  struct cdb_make_chunk *t = m->tail[b];
  if (!t || t->n == t->cap) {
    uint32_t cap = t ? t->cap * 2 : 16;
    struct cdb_make_chunk *c;
    if (cap > CDB_MAKE_CHUNK_MAX)
      cap = CDB_MAKE_CHUNK_MAX;
    c = malloc(sizeof *c + (size_t)cap * 2 * sizeof(uint32_t));
    if (!c)
      return errno = ENOMEM, -1;
    c->next = NULL;
    c->n = 0;
    c->cap = cap;
    if (t)
      t->next = c;
    else
      m->head[b] = c;
    m->tail[b] = t = c;
  }
  t->ent[2 * t->n] = hash;
  t->ent[2 * t->n + 1] = pos;
  ++t->n;
  ++m->count[b];
  return 0;
}

int
cdb_make_addbegin(struct cdb_make *m, size_t klen, size_t dlen)
{
  unsigned char h[8];
  /* the record and, at the end, its two slots must fit under the limit */
  if (klen > m->limit || dlen > m->limit ||
      m->pos + 8 + (uint64_t)klen + (uint64_t)dlen + 16 * (m->records + 1) > m->limit) {
    m->overlimit = 1;
    return errno = EFBIG, -1;
  }
  cdb_pack(h, (uint32_t)klen);
  cdb_pack(h + 4, (uint32_t)dlen);
  return _cdb_make_put(m, h, 8);
}

int
cdb_make_addbytes(struct cdb_make *m, const void *p, size_t len)
{
  return _cdb_make_put(m, p, len);
}

int
cdb_make_addend(struct cdb_make *m, size_t klen, size_t dlen, uint32_t hash)
{
  if (_cdb_make_remember(m, hash, (uint32_t)m->pos) < 0)
    return -1;
  m->pos += 8 + (uint64_t)klen + (uint64_t)dlen;
  ++m->records;
  return 0;
}

int
cdb_make_add(struct cdb_make *m, const void *key, size_t klen, const void *data, size_t dlen)
{
  if (likely(m->buflen + 8 + klen + dlen <= CDB_MAKE_BUFSIZE) && klen <= m->limit && dlen <= m->limit) {
    /* the common case: the whole record fits in the buffer */
    unsigned char *b = m->buf + m->buflen;
    if (m->pos + 8 + (uint64_t)klen + (uint64_t)dlen + 16 * (m->records + 1) > m->limit) {
      m->overlimit = 1;
      return errno = EFBIG, -1;
    }
    cdb_pack(b, (uint32_t)klen);
    cdb_pack(b + 4, (uint32_t)dlen);
    memcpy(b + 8, key, klen);
    memcpy(b + 8 + klen, data, dlen);
    m->buflen += 8 + klen + dlen;
  } else if (cdb_make_addbegin(m, klen, dlen) < 0 || _cdb_make_put(m, key, klen) < 0 ||
             _cdb_make_put(m, data, dlen) < 0)
    return -1;
  return cdb_make_addend(m, klen, dlen, cdb_hash(key, klen));
}

int
cdb_make_finish(struct cdb_make *m)
{
  unsigned char header[CDB_HEADER_SIZE], *table;
  uint32_t most = 0, *slots;
  unsigned b;
  for (b = 0; b < 256; ++b)
    if (m->count[b] > most)
      most = m->count[b];
  /* one bucket's table at a time: positions to place the records, then its bytes */
  slots = malloc(((size_t)most * 2 + 1) * 2 * sizeof(uint32_t));
  table = malloc(((size_t)most * 2 + 1) * 8);
  if (!slots || !table) {
    free(slots);
    free(table);
    return errno = ENOMEM, -1;
  }
  for (b = 0; b < 256; ++b) {
    uint32_t n = m->count[b] * 2, i;
    struct cdb_make_chunk *c;
    cdb_pack(header + b * 8, (uint32_t)m->pos);
    cdb_pack(header + b * 8 + 4, n);
    if (!n)
      continue;
    memset(slots, 0, (size_t)n * 2 * sizeof(uint32_t));
    for (c = m->head[b]; c; c = c->next)
      for (i = 0; i < c->n; ++i) {
        uint32_t hash = c->ent[2 * i], s = (hash >> 8) % n;
        while (slots[2 * s + 1]) /* a position of 0 marks a free slot */
          if (++s == n)
            s = 0;
        slots[2 * s] = hash;
        slots[2 * s + 1] = c->ent[2 * i + 1];
      }
    for (i = 0; i < 2 * n; ++i)
      cdb_pack(table + 4 * i, slots[i]);
    if (_cdb_make_put(m, table, (size_t)n * 8) < 0) {
      free(slots);
      free(table);
      return -1;
    }
    m->pos += (uint64_t)n * 8;
  }
  free(slots);
  free(table);
  if (m->pos > m->limit) { /* cannot happen: cdb_make_add reserved the slots */
    m->overlimit = 1;
    return errno = EFBIG, -1;
  }
  if (_cdb_make_flush(m) < 0)
    return -1;
  if (lseek(m->fd, 0, SEEK_SET) < 0)
    return -1;
  return cdb_write_all(m->fd, header, sizeof header);
}

void
cdb_make_free(struct cdb_make *m)
{
  unsigned b;
  for (b = 0; b < 256; ++b) {
    struct cdb_make_chunk *c = m->head[b];
    while (c) {
      struct cdb_make_chunk *next = c->next;
      free(c);
      c = next;
    }
    m->head[b] = m->tail[b] = NULL;
    m->count[b] = 0;
  }
  free(m->buf);
  m->buf = NULL;
}
