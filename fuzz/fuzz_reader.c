/* fuzz_reader.c: libFuzzer harness for the cdb reader (csrc/cdb_*.c).
 *
 * Each input is used twice:
 *
 * 1. As a cdb file, any bytes at all.  Iteration (cdb_seqnext, cdb_seqbatch,
 *    cdb_count) and search (cdb_findstart/findnext, cdb_find, cdb_get,
 *    cdb_record) must stay inside the buffer, end, and give exactly what a
 *    plain model of docs/format.md ("The cdb file", every read checked) gives:
 *    the same records, the same error at the same point.  Every record a
 *    search returns lies inside the file and has the key searched for.
 *    (That it is also a record iteration yields holds only for files whose
 *    slots point at record starts, which a hostile file need not do; djb's
 *    readers follow such a slot too.  Part 2 checks it on written files.)
 *
 * 2. As a list of records, "key<TAB>data" separated by newlines, written with
 *    cdb_make.  The file must have the size and the header docs/format.md gives,
 *    iteration must give back the records in order, and a search for each key
 *    must give every record with that key, earliest first, and nothing else. */
#include <errno.h>
#include "cdb.h"
#include "cdb_make.h"
#include "fuzz_util.h"

#define MAX_KEYS 64       /* keys searched for in part 1 */
#define MAX_RECORDS 512   /* records written in part 2 */

struct rec {
  uint32_t pos, klen, dlen;
};

/* ---- the model ------------------------------------------------------------ */

static uint32_t
model_hash(const unsigned char *k, size_t n)
{
  uint32_t h = 5381;
  size_t i;
  for (i = 0; i < n; ++i)
    h = (uint32_t)(h * 33u) ^ k[i];
  return h;
}

/* Records in file order; *err set when one does not fit before the tables. */
static size_t
model_iterate(const unsigned char *m, size_t size, struct rec *out, size_t max, int *err)
{
  uint64_t end = fz_u32(m), pos = 2048;
  size_t n = 0;
  if (end < 2048 || end > size)
    end = size;
  *err = 0;
  while (pos < end) {
    uint32_t kl, dl;
    if (pos + 8 > end) {
      *err = 1;
      break;
    }
    kl = fz_u32(m + pos);
    dl = fz_u32(m + pos + 4);
    if (pos + 8 + kl + dl > end) {
      *err = 1;
      break;
    }
    if (n < max)
      out[n] = (struct rec){(uint32_t)pos, kl, dl};
    ++n;
    pos += 8 + (uint64_t)kl + dl;
  }
  return n;
}

/* Every record of key, in search order; *err set when a read leaves the file. */
static size_t
model_find(const unsigned char *m, size_t size, const unsigned char *key, size_t klen, uint32_t *out,
           int *err)
{
  uint32_t h = model_hash(key, klen), tpos, n, s, i;
  size_t found = 0;
  *err = 0;
  tpos = fz_u32(m + (h & 255) * 8);
  n = fz_u32(m + (h & 255) * 8 + 4);
  if (!n)
    return 0;
  s = (h >> 8) % n;
  for (i = 0; i < n; ++i) {
    uint64_t at = tpos + (uint64_t)s * 8;
    uint32_t sh, rp;
    if (at + 8 > size)
      return *err = 1, found;
    sh = fz_u32(m + at);
    rp = fz_u32(m + at + 4);
    if (!rp)
      break;
    if (sh == h) {
      uint32_t kl, dl;
      if ((uint64_t)rp + 8 > size)
        return *err = 1, found;
      kl = fz_u32(m + rp);
      dl = fz_u32(m + rp + 4);
      if (kl == klen) {
        if ((uint64_t)rp + 8 + kl > size)
          return *err = 1, found;
        if (memcmp(m + rp + 8, key, klen) == 0) {
          if ((uint64_t)rp + 8 + kl + dl > size)
            return *err = 1, found;
          out[found++] = rp;
        }
      }
    }
    if (++s == n)
      s = 0;
  }
  return found;
}

/* ---- part 1: any bytes as a cdb file ------------------------------------- */

static void
check_search(const struct cdb *c, const unsigned char *m, size_t size, const unsigned char *key, size_t klen,
             uint32_t *want)
{
  struct cdb_find f;
  int err, r;
  size_t n = model_find(m, size, key, klen, want, &err), i = 0;
  uint32_t rpos = 0;
  uint64_t packed;
  FZ_CHECK(cdb_findstart(&f, c, key, klen) == 0);
  while ((r = cdb_findnext(&f)) > 0) {
    uint32_t kpos, kl, dpos, dl;
    FZ_CHECK(i < n);
    FZ_CHECK(f.rpos == want[i]);
    FZ_CHECK(cdb_record(c, f.rpos, &kpos, &kl, &dpos, &dl) == 0);
    FZ_CHECK(kl == klen && dpos == f.dpos && dl == f.dlen);
    FZ_CHECK((uint64_t)f.dpos + f.dlen <= size);
    FZ_CHECK(memcmp(m + kpos, key, klen) == 0);
    ++i;
  }
  FZ_CHECK(i == n);
  FZ_CHECK(r == (err ? -1 : 0));
  if (r < 0)
    FZ_CHECK(errno == EPROTO);
  r = cdb_find(c, key, klen, &rpos);
  packed = cdb_get(c, (const char *)key, klen);
  if (n) {
    FZ_CHECK(r == 1 && rpos == want[0]);
    FZ_CHECK(packed > 1 && packed >> 32 == want[0] + 8 + klen); /* (data start, data end) */
    FZ_CHECK((packed & 0xffffffffu) == want[0] + 8 + klen + fz_u32(m + want[0] + 4));
  } else if (err) {
    FZ_CHECK(r == -1 && packed == 1);
  } else {
    FZ_CHECK(r == 0 && packed == 0);
  }
}

static void
searches(const struct cdb *c, const unsigned char *m, size_t size, const struct rec *model, size_t n,
         uint32_t *want)
{
  size_t i;
  for (i = 0; i < n && i < MAX_KEYS; ++i)
    check_search(c, m, size, m + model[i].pos + 8, model[i].klen, want);
  check_search(c, m, size, (const unsigned char *)"", 0, want);
  for (i = 1; i <= 8 && i < size; ++i)
    check_search(c, m, size, m + size - i * 7 % size, i * 7 % size < 24 ? i * 7 % size : 24, want);
}

static void
fuzz_raw(const unsigned char *m, size_t size)
{
  struct cdb c;
  struct rec *model;
  uint32_t *want, pos, klen, dlen, out[9];
  size_t n, i, maxrec = size / 8 + 1, seen_size;
  int err, r;
  long long count;
  if (cdb_init(&c, m, size) < 0) {
    FZ_CHECK(size < 2048 && errno == EPROTO);
    return;
  }
  FZ_CHECK(size >= 2048);
  model = malloc(maxrec * sizeof *model);
  want = malloc(maxrec * sizeof *want);
  FZ_CHECK(model && want);
  n = model_iterate(m, size, model, maxrec, &err);
  FZ_CHECK(n < maxrec);

  /* cdb_seqnext gives the model's records, then the model's ending */
  pos = 2048;
  for (i = 0; (r = cdb_seqnext(&c, &pos, &klen, &dlen)) > 0; ++i) {
    FZ_CHECK(i < n);
    FZ_CHECK(klen == model[i].klen && dlen == model[i].dlen);
    FZ_CHECK(pos == model[i].pos + 8 + klen + dlen);
  }
  FZ_CHECK(i == n && r == (err ? -1 : 0));
  count = cdb_count(&c);
  FZ_CHECK(err ? count == -1 : count == (long long)n);

  /* cdb_seqbatch in batches of 1..3 agrees */
  {
    size_t max = 1 + size % 3;
    long got;
    pos = 2048;
    i = 0;
    while ((got = cdb_seqbatch(&c, &pos, out, max)) > 0) {
      long j;
      FZ_CHECK((size_t)got <= max);
      for (j = 0; j < got; ++j, ++i) {
        FZ_CHECK(i < n);
        FZ_CHECK(out[3 * j] == model[i].pos + 8 && out[3 * j + 1] == model[i].klen &&
                 out[3 * j + 2] == model[i].dlen);
      }
    }
    FZ_CHECK(got == (err ? -1 : 0));
    if (!err)
      FZ_CHECK(i == n);
  }

  /* searches: the keys of the first records, the empty key, and slices of the input;
   * then again with the bitmap of the file's hashes, which must change no answer */
  searches(&c, m, size, model, n, want);
  if ((seen_size = cdb_seen_size(&c)) > 0) {
    unsigned char *seen = malloc(seen_size);
    FZ_CHECK(seen != NULL);
    FZ_CHECK(cdb_seen_build(&c, seen, seen_size) == 0);
    searches(&c, m, size, model, n, want);
    free(seen);
  }
  free(model);
  free(want);
}

/* ---- part 2: records written by cdb_make -------------------------------- */

struct in {
  const unsigned char *k, *d;
  size_t kl, dl;
  uint32_t h;
};

static void
fuzz_written(const unsigned char *data, size_t size)
{
  struct in *recs = malloc(MAX_RECORDS * sizeof *recs);
  struct cdb_make mk;
  struct cdb c;
  size_t n = 0, i, j, len, seen_size;
  unsigned char *seen = NULL;
  uint64_t expect = 2048;
  uint32_t count[256] = {0}, want[MAX_RECORDS], pos, klen, dlen;
  const unsigned char *p = data, *end = data + size;
  unsigned char *m;
  int fd = fz_memfd();
  FZ_CHECK(recs != NULL);
  while (p < end && n < MAX_RECORDS) {
    const unsigned char *nl = memchr(p, '\n', (size_t)(end - p)), *e = nl ? nl : end;
    const unsigned char *tab = memchr(p, '\t', (size_t)(e - p));
    recs[n].k = p;
    recs[n].kl = (size_t)((tab ? tab : e) - p);
    recs[n].d = tab ? tab + 1 : e;
    recs[n].dl = (size_t)(e - recs[n].d);
    recs[n].h = model_hash(recs[n].k, recs[n].kl);
    expect += 24 + recs[n].kl + recs[n].dl;
    ++count[recs[n].h & 255];
    ++n;
    p = e + 1;
  }
  FZ_CHECK(cdb_make_start(&mk, fd) == 0);
  for (i = 0; i < n; ++i)
    FZ_CHECK(cdb_make_add(&mk, recs[i].k, recs[i].kl, recs[i].d, recs[i].dl) == 0);
  FZ_CHECK(cdb_make_finish(&mk) == 0);
  cdb_make_free(&mk);
  m = fz_slurp(fd, &len);
  close(fd);
  FZ_CHECK(len == expect);
  FZ_CHECK(cdb_init(&c, m, len) == 0);

  /* the header: running positions, two slots a record */
  pos = (uint32_t)(expect - 16 * n);
  for (i = 0; i < 256; ++i) {
    FZ_CHECK(fz_u32(m + 8 * i) == pos && fz_u32(m + 8 * i + 4) == 2 * count[i]);
    pos += 16 * count[i];
  }

  /* iteration gives back the records in order */
  pos = 2048;
  for (i = 0; i < n; ++i) {
    FZ_CHECK(cdb_seqnext(&c, &pos, &klen, &dlen) == 1);
    FZ_CHECK(klen == recs[i].kl && dlen == recs[i].dl);
    FZ_CHECK(memcmp(m + pos - dlen - klen, recs[i].k, klen) == 0);
    FZ_CHECK(memcmp(m + pos - dlen, recs[i].d, dlen) == 0);
    want[i] = pos - dlen - klen - 8;
  }
  FZ_CHECK(cdb_seqnext(&c, &pos, &klen, &dlen) == 0);
  FZ_CHECK(cdb_count(&c) == (long long)n);

  /* a search for each key yields exactly the records with that key, in order,
   * with the bitmap of the file's hashes (a written file's tables always fit) */
  seen_size = cdb_seen_size(&c);
  FZ_CHECK(seen_size > 0 || len < CDB_SEEN_MIN_SIZE || n == 0);
  if (seen_size > 0) {
    FZ_CHECK((seen = malloc(seen_size)) != NULL);
    FZ_CHECK(cdb_seen_build(&c, seen, seen_size) == 0);
  }
  for (i = 0; i < n; ++i) {
    struct cdb_find f;
    uint64_t g;
    FZ_CHECK(cdb_findstart(&f, &c, recs[i].k, recs[i].kl) == 0);
    for (j = 0; j < n; ++j) {
      if (recs[j].h != recs[i].h || recs[j].kl != recs[i].kl || memcmp(recs[j].k, recs[i].k, recs[i].kl))
        continue;
      FZ_CHECK(cdb_findnext(&f) == 1);
      FZ_CHECK(f.rpos == want[j]);
    }
    FZ_CHECK(cdb_findnext(&f) == 0);
    g = cdb_get(&c, (const char *)recs[i].k, recs[i].kl);
    for (j = 0; j < i; ++j) /* the first record with this key */
      if (recs[j].kl == recs[i].kl && memcmp(recs[j].k, recs[i].k, recs[i].kl) == 0)
        break;
    FZ_CHECK(g >> 32 == want[j] + 8 + recs[j].kl && (g & 0xffffffffu) == want[j] + 8 + recs[j].kl + recs[j].dl);
  }
  free(seen);
  free(m);
  free(recs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  fuzz_raw(data, size);
  fuzz_written(data, size);
  return 0;
}
