/* cdbrules_cdef.h: what the Python package sees of the C core.
 * The build reads this file as the cffi cdef; in API mode cffi checks every
 * declaration here against the real headers (cdb.h, cdb_make.h,
 * rules_parse.h, rules_lookup.h, iptext.h) when it compiles the extension.
 * Plain declarations only: cffi does not run the preprocessor. */

#define CDB_HEADER_SIZE ...
#define CDB_MAX_SIZE ...
#define CDB_RECORD_HEAD ...
#define IP4_FMT ...
#define IP6_FMT ...

struct cdb { ...; };
struct cdb_find { uint32_t rpos; uint32_t dpos; uint32_t dlen; ...; };
struct cdb_make { uint64_t limit; uint64_t records; int overlimit; ...; };

uint32_t cdb_hash(const void *key, size_t len);
int cdb_init(struct cdb *c, const void *map, size_t size);
int cdb_findstart(struct cdb_find *f, const struct cdb *c, const void *key, size_t klen);
int cdb_findnext(struct cdb_find *f);
int cdb_find(const struct cdb *c, const void *key, size_t klen, uint32_t *rpos);
uint64_t cdb_get(const struct cdb *c, const char *key, size_t klen);
int cdb_seqnext(const struct cdb *c, uint32_t *pos, uint32_t *klen, uint32_t *dlen);
long cdb_seqbatch(const struct cdb *c, uint32_t *pos, uint32_t *out, size_t max);
int cdb_record(const struct cdb *c, uint32_t rpos, uint32_t *kpos, uint32_t *klen, uint32_t *dpos,
               uint32_t *dlen);
uint64_t cdb_recspan(const struct cdb *c, uint32_t rpos);
long long cdb_count(const struct cdb *c);
size_t cdb_seen_size(const struct cdb *c);
int cdb_seen_build(struct cdb *c, unsigned char *bits, size_t nbytes);

int cdb_make_start(struct cdb_make *m, int fd);
int cdb_make_add(struct cdb_make *m, const void *key, size_t klen, const void *data, size_t dlen);
int cdb_make_finish(struct cdb_make *m);
void cdb_make_free(struct cdb_make *m);
int cdb_make_addbegin(struct cdb_make *m, size_t klen, size_t dlen);
int cdb_make_addbytes(struct cdb_make *m, const void *p, size_t len);
int cdb_make_addend(struct cdb_make *m, size_t klen, size_t dlen, uint32_t hash);

enum cdbmake_errcode {
  CDBMAKE_OK, CDBMAKE_E_END, CDBMAKE_E_PLUS, CDBMAKE_E_KLEN, CDBMAKE_E_DLEN, CDBMAKE_E_ARROW,
  CDBMAKE_E_NEWLINE, CDBMAKE_E_KHUGE, CDBMAKE_E_DHUGE
};
struct cdbmake_error { int code; uint64_t entry; uint64_t start; uint64_t offset; int byte; };
struct cdbmake_parser { uint64_t records; uint64_t offset; struct cdbmake_error err; ...; };
void cdbmake_parser_init(struct cdbmake_parser *p, struct cdb_make *out);
int cdbmake_feed(struct cdbmake_parser *p, const void *buf, size_t len, size_t *used);
int cdbmake_finish(struct cdbmake_parser *p);

#define CDB_DUMP_MINBUF ...
struct cdb_dump { uint32_t pos; uint64_t records; ...; };
void cdb_dump_start(struct cdb_dump *d, const struct cdb *c);
long cdb_dump_next(struct cdb_dump *d, unsigned char *buf, size_t cap);

#define CDB_STATS_BINS ...
struct cdb_stats { uint64_t records; uint64_t dist[11]; uint32_t pos; int truncated; };
int cdb_stats(const struct cdb *c, struct cdb_stats *st);

enum rules_errcode {
  RULES_OK, RULES_E_NOKEYWORD, RULES_E_AFTERKEYWORD, RULES_E_NOEQUALS, RULES_E_TRAILINGCOMMA,
  RULES_E_NOVALUE, RULES_E_UNTERMINATED, RULES_E_AFTERVALUE, RULES_E_RANGE, RULES_E_LONGLINE,
  RULES_E_NETWORK
};
#define RULES_MAX_LINE ...
enum rules_netcode {
  RULES_NET_OK, RULES_NET_NOTNET, RULES_NET_E_SYNTAX, RULES_NET_E_LENGTH, RULES_NET_E_ZERO,
  RULES_NET_E_HOSTBITS, RULES_NET_E_INEXACT, RULES_NET_E_INEXACT_END
};
#define RULES_NET_PLAIN ...
struct rules_net { int family; unsigned len; unsigned char addr[16]; uint64_t keys; unsigned zerogroup; };
int rules_net_parse(const void *s, size_t n, int flags, struct rules_net *net);
int rules_net_looks(const void *s, size_t n);
struct rules_origin { uint64_t line; uint32_t src; };
struct rules_error {
  uint64_t lineno;
  int code;
  size_t column;
  size_t name;
  size_t namelen;
  const unsigned char *line;
  size_t linelen;
  uint32_t src;
  int netcode;
  struct rules_net net;
};
enum rules_notekind { RULES_NOTE_NETKEY, RULES_NOTE_COSTLY, RULES_NOTE_KINDS };
#define RULES_NOTES ...
#define RULES_NOTE_TEXT ...
struct rules_note { uint64_t line; uint32_t src; int kind; uint64_t keys; unsigned char text[64]; size_t textlen; };
enum rules_kind {
  RULES_LINE_BLANK, RULES_LINE_COMMENT, RULES_LINE_SKIPPED, RULES_LINE_RULE, RULES_LINE_ERROR
};
struct rules_line {
  int kind;
  size_t len;
  size_t sep;
  int deny;
  size_t items;
  size_t nitems;
  size_t datalen;
  int range;
  size_t rlo, rdash, rhi;
  uint64_t bot, top;
  int code;
  size_t column;
  size_t name, namelen;
};
struct rules_item { size_t comma; size_t name, namelen; size_t delim; size_t value, valuelen; };
int rules_line_parse(const unsigned char *s, size_t n, struct rules_line *out);
int rules_item_next(const unsigned char *s, size_t n, size_t *pos, struct rules_item *it, int *code,
                    size_t *column);
size_t rules_line_key(const unsigned char *s, const struct rules_line *line, uint64_t v, unsigned char *key);
size_t rules_line_data(const unsigned char *s, const struct rules_line *line, unsigned char *data);
int rules_line_network(const unsigned char *s, const struct rules_line *line);
struct rules_parser {
  uint64_t lineno;
  uint64_t rules;
  uint64_t keys;
  size_t maxline;
  struct rules_error err;
  int want_origin;
  struct rules_origin *origin;
  size_t norigin;
  uint64_t networks;
  uint64_t nnotes[2];
  size_t nkept;
  struct rules_note notes[32];
  ...;
};
int rules_parser_init(struct rules_parser *p, struct cdb_make *out);
int rules_feed(struct rules_parser *p, const void *text, size_t len);
int rules_finish(struct rules_parser *p);
void rules_parser_free(struct rules_parser *p);
int rules_parser_cidr(struct rules_parser *p, int expand);
void rules_parser_source(struct rules_parser *p, uint32_t src);
int rules_list_start(struct rules_parser *p, uint32_t src, const void *instruction, size_t len);
int rules_write(struct rules_parser *p, int text_fd);

struct rules_probe { uint32_t hash; ...; };
size_t rules_probe_bufsize(size_t iplen, size_t hostlen, size_t infolen);
void rules_probe_start(struct rules_probe *pr, const void *ip, size_t iplen, const void *host,
                       size_t hostlen, const void *info, size_t infolen, unsigned char *buf);
int rules_probe_next(struct rules_probe *pr, const unsigned char **key, size_t *klen);
int64_t rules_lookup(const struct cdb *c, const void *ip, size_t iplen, const void *host, size_t hostlen,
                     const void *info, size_t infolen);
int64_t rules_check(const struct cdb *c, const char *ip, const char *host, const char *info);
int64_t rules_check_ip(const struct cdb *c, const char *ip);
long rules_check_many(const struct cdb *c, const char *ips, size_t len, int64_t *out, size_t max);
#define RULES_BAD_IP ...
#define RULES_BAD_HOST ...
int64_t rules_check_tcp(const struct cdb *c, const char *ip, const char *host, const char *info, int forcev6);
int64_t rules_check_tcpip(const struct cdb *c, const char *ip);
int64_t rules_check_tcpip6(const struct cdb *c, const char *ip);
long rules_check_many_tcp(const struct cdb *c, const char *ips, size_t len, int64_t *out, size_t max,
                          int forcev6);
int rules_verify(const struct cdb *c);

size_t ip4_fmt(char *out, const unsigned char ip[4]);
size_t ip6_fmt(char *out, const unsigned char ip[16]);
size_t ip_tcpserver_fmt(char *out, const unsigned char ip[16], int forcev6);
int ip_is_tcpserver_text(const char *s, size_t len, int forcev6);
int host_is_tcpserver_text(const char *s, size_t len);
