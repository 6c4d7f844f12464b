/* rules_parse.h: the tcprules text format, streamed into a cdb.
 *
 * Feed the text in pieces of any size; each complete line is parsed and
 * its records are added to the cdb_make at once, so memory grows with the
 * number of records, not with the text.  The grammar is tcprules' (see
 * docs/format.md): the separator is the first ':' followed
 * by "allow" or "deny"; a line with no ':' at all is skipped; a line with
 * ':' but no such separator is an error, never a hang. */
#ifndef CDBRULES_RULES_PARSE_H
#define CDBRULES_RULES_PARSE_H

#include <stddef.h>
#include <stdint.h>
#include "cdb_make.h"
#include "rules_net.h"

/* What is wrong with a line; column says where, counted from 0. */
enum rules_errcode {
  RULES_OK = 0,
  RULES_E_NOKEYWORD,      /* ':' but none followed by allow or deny; column: the first ':' */
  RULES_E_AFTERKEYWORD,   /* neither ',' nor the end after allow/deny; column: that byte */
  RULES_E_NOEQUALS,       /* ",NAME" with no '='; column: the ',' */
  RULES_E_TRAILINGCOMMA,  /* ',' ends the line; column: the ',' */
  RULES_E_NOVALUE,        /* "NAME=" ends the line; column: the '=' */
  RULES_E_UNTERMINATED,   /* the value's delimiter never comes again; column: the opening delimiter */
  RULES_E_AFTERVALUE,     /* neither ',' nor the end after a value; column: that byte */
  RULES_E_RANGE,          /* a range bound is not a decimal number; column: the start of that bound */
  RULES_E_LONGLINE,       /* the line is longer than maxline bytes; column: maxline, line: its start */
  RULES_E_NETWORK         /* --cidr or a list: a network or address that cannot be used (netcode,
                             net say why); column, name, namelen: the address in the line */
};

/* The longest line accepted.  A rule tcpserver can use is far shorter: it puts the
 * rule's variables in the environment of a program it execs, and Linux refuses a
 * single environment string over 128 KiB.  The limit is there so that the wrong
 * input (/dev/zero, a binary file with no newline) is an error, not all of memory.
 * Comment lines are skipped as they stream in, so they may be of any length. */
#ifndef RULES_MAX_LINE
#define RULES_MAX_LINE ((size_t)64 << 20)
#endif

/* One line of rules text, parsed (rules_line_parse).  Columns count from 0 in the line
 * as given, its newline removed.  The streaming compiler parses every line with it, and
 * the linter reads the grammar through it, so both see the same lines. */
enum rules_kind {
  RULES_LINE_BLANK = 0,   /* exactly empty (the raw line was "\n") */
  RULES_LINE_COMMENT,     /* the first byte is '#' */
  RULES_LINE_SKIPPED,     /* no ':' at all: tcprules skips it without a word */
  RULES_LINE_RULE,        /* a rule: key, keyword, items */
  RULES_LINE_ERROR        /* tcprules rejects it: code, column, name */
};

struct rules_line {
  int kind;               /* enum rules_kind */
  size_t len;             /* the line with trailing spaces, tabs and newlines trimmed */
  size_t sep;             /* RULE: the separator ':'; the key (address) is s[0..sep) */
  int deny;               /* RULE: 1 for deny, 0 for allow */
  size_t items;           /* RULE: where the items start (just after the keyword) */
  size_t nitems;          /* RULE: how many ",NAME=dVALUEd" items */
  size_t datalen;         /* RULE: the bytes of the cdb value */
  int range;              /* RULE: the key is a range such as 1.2.3.4-7 (docs/format.md, "Ranges") */
  size_t rlo, rdash, rhi; /* range: the bottom bound is s[rlo..rdash), the top s[rdash+1..rhi) */
  uint64_t bot, top;      /* range: the bounds (top clamped to 255); bot > top: no key at all */
  int code;               /* ERROR: enum rules_errcode */
  size_t column;          /* ERROR: where */
  size_t name, namelen;   /* ERROR: as in struct rules_error */
};

/* One item ",NAME=dVALUEd" of a rule (rules_item_next). */
struct rules_item {
  size_t comma;           /* the ',' */
  size_t name, namelen;   /* NAME: everything between the ',' and the first '=' after it */
  size_t delim;           /* the delimiter d, just after the '=' */
  size_t value, valuelen; /* VALUE: between the two delimiters */
};

/* Parse the line s[0..n) (its newline removed) into *out; return out->kind.  Pure:
 * no allocation, no state, any bytes. */
int rules_line_parse(const unsigned char *s, size_t n, struct rules_line *out);

/* The next item of a rule line s[0..n) (n: the trimmed length), from *pos (start at
 * line->items).  Return 1 and advance *pos; 0 at the end of the line; -1 with *code,
 * *column and (for errors about a name) it->name, it->namelen set: for
 * RULES_E_AFTERVALUE those of the item before, left from the previous call (zero it
 * before the first call). */
int rules_item_next(const unsigned char *s, size_t n, size_t *pos, struct rules_item *it, int *code,
                    size_t *column);

/* The key for range value v of a RULE line s (v in line->bot..line->top), or the key
 * itself when the line is no range; written to key, which holds line->sep + 3 bytes.
 * Return its length. */
size_t rules_line_key(const unsigned char *s, const struct rules_line *line, uint64_t v, unsigned char *key);

/* The cdb value of a RULE line s ("D\0" for deny, then "+NAME=VALUE\0" per item), written
 * to data, which holds line->datalen bytes.  Return its length (line->datalen). */
size_t rules_line_data(const unsigned char *s, const struct rules_line *line, unsigned char *data);

/* Whether compile --cidr reads the address of the RULE line s as a network NET/LEN: it has a
 * '/' and is no range, =host or info@ key. */
int rules_line_network(const unsigned char *s, const struct rules_line *line);

struct rules_error {
  uint64_t lineno;          /* the line, counted from 1 */
  int code;                 /* enum rules_errcode */
  size_t column;            /* where in the line */
  size_t name;              /* the env item's name (for AFTERVALUE the item before; for */
  size_t namelen;           /* RANGE the address): its start and length (0, 0: none) */
  const unsigned char *line; /* the line with trailing blanks trimmed, as tcprules prints it */
  size_t linelen;
  uint32_t src;             /* the source (rules_parser_source, rules_list_start) */
  int netcode;              /* RULES_E_NETWORK: enum rules_netcode */
  struct rules_net net;     /* RULES_E_NETWORK: what rules_net_parse made of the address */
};

/* Things worth a word that are no error: a key that looks like a network in a file
 * compiled without --cidr (tcpserver never looks it up), and with --cidr an IPv6
 * network whose last group is partial (it costs 2^(16 - LEN mod 16) keys).  The
 * first RULES_NOTES of each kind are kept, all are counted. */
enum rules_notekind { RULES_NOTE_NETKEY = 0, RULES_NOTE_COSTLY, RULES_NOTE_KINDS };
#define RULES_NOTES 16
#define RULES_NOTE_TEXT 64
struct rules_note {
  uint64_t line;
  uint32_t src;
  int kind;
  uint64_t keys;                          /* COSTLY: the keys it makes */
  unsigned char text[RULES_NOTE_TEXT];    /* the key (its first RULES_NOTE_TEXT bytes) */
  size_t textlen;
};

struct rules_parser {
  struct cdb_make *out;
  unsigned char *line; /* a line that spans pieces */
  size_t linelen, linecap;
  unsigned char *data; /* the value of the rule being parsed */
  size_t datacap;
  unsigned char *key;  /* a key made by range expansion */
  size_t keycap;
  uint64_t lineno;     /* lines seen */
  uint64_t rules;      /* lines that were rules */
  uint64_t keys;       /* records written */
  size_t maxline;      /* RULES_MAX_LINE unless lowered (tests) */
  struct rules_error err;
  uint32_t src;        /* the source being read */
  struct rules_netset *net; /* --cidr (rules_parser_cidr): records collected, written by rules_write */
  int expand;          /* with net: keep each rule's instruction text instead of its value */
  int list;            /* the source is a list of networks (rules_list_start) */
  unsigned char *listval; /* a list's value (or instruction text) */
  size_t listlen, listcap;
  int want_origin;     /* set to 1 before feeding: origin[] gets each record's source and line */
  struct rules_origin *origin;
  size_t norigin, corigin;
  uint64_t networks;   /* networks read (--cidr) */
  uint64_t nnotes[RULES_NOTE_KINDS];
  size_t nkept;
  struct rules_note notes[RULES_NOTE_KINDS * RULES_NOTES];
};

/* Start parsing into out.  Return 0 or -1 (ENOMEM). */
int rules_parser_init(struct rules_parser *p, struct cdb_make *out);

/* Parse the next len bytes of text.  Return 0; -1 with errno EINVAL and
 * p->err filled for a rules error; -1 with another errno from the writer. */
int rules_feed(struct rules_parser *p, const void *text, size_t len);

/* The text has ended: parse a last line that had no newline.  As rules_feed. */
int rules_finish(struct rules_parser *p);

void rules_parser_free(struct rules_parser *p);

/* --cidr: a key NET/LEN is that network (rules_net.h); records are collected and
 * written, ordered and deduplicated, by rules_write().  With expand, rules_write()
 * writes tcprules text instead.  Call before feeding.  Return 0 or -1 (ENOMEM). */
int rules_parser_cidr(struct rules_parser *p, int expand);

/* The next source begins (counted from 0): line numbers start again.  Call after
 * rules_finish() of the one before. */
void rules_parser_source(struct rules_parser *p, uint32_t src);

/* The next source is a list (implies --cidr): one address or network a line, '#' or
 * ';' starts a comment, blanks around are ignored; each entry gets instruction
 * (the text after a rule's ':', such as deny or allow,RBLSMTPD="-..."), checked here:
 * -1 with errno EINVAL and p->err (line 0, the line ":" instruction) if it is bad. */
int rules_list_start(struct rules_parser *p, uint32_t src, const void *instruction, size_t len);

/* Every source has been read: with --cidr write the records (into the cdb, or with
 * expand as text to text_fd); else nothing.  Return 0 or -1 with errno; EDOM: a key
 * tcprules text cannot carry. */
int rules_write(struct rules_parser *p, int text_fd);

#endif
