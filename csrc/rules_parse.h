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
  RULES_E_LONGLINE        /* the line is longer than maxline bytes; column: maxline, line: its start */
};

/* The longest line accepted.  A rule tcpserver can use is far shorter: it puts the
 * rule's variables in the environment of a program it execs, and Linux refuses a
 * single environment string over 128 KiB.  The limit is there so that the wrong
 * input (/dev/zero, a binary file with no newline) is an error, not all of memory.
 * Comment lines are skipped as they stream in, so they may be of any length. */
#ifndef RULES_MAX_LINE
#define RULES_MAX_LINE ((size_t)64 << 20)
#endif

struct rules_error {
  uint64_t lineno;          /* the line, counted from 1 */
  int code;                 /* enum rules_errcode */
  size_t column;            /* where in the line */
  size_t name;              /* the env item's name (for AFTERVALUE the item before; for */
  size_t namelen;           /* RANGE the address): its start and length (0, 0: none) */
  const unsigned char *line; /* the line with trailing blanks trimmed, as tcprules prints it */
  size_t linelen;
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
};

/* Start parsing into out.  Return 0 or -1 (ENOMEM). */
int rules_parser_init(struct rules_parser *p, struct cdb_make *out);

/* Parse the next len bytes of text.  Return 0; -1 with errno EINVAL and
 * p->err filled for a rules error; -1 with another errno from the writer. */
int rules_feed(struct rules_parser *p, const void *text, size_t len);

/* The text has ended: parse a last line that had no newline.  As rules_feed. */
int rules_finish(struct rules_parser *p);

void rules_parser_free(struct rules_parser *p);

#endif
