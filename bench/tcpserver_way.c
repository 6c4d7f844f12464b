/* tcpserver_way.c: rules lookups the way tcpserver's child does them, for the benchmarks.
 *
 * tcpserver opens the rules file anew for every connection: open, fstat + mmap
 * (djb's cdb_init), the probes, munmap (cdb_free), close.  This program does
 * exactly that for each address on its standard input (one per line), with
 * cdbrules' own C lookup (csrc/rules_lookup.c), so the time per line is what a
 * connection costs tcpserver before the program runs.
 *
 *   tcpserver_way MODE RULES.cdb < addresses
 *
 * MODE "lookup": one open+map+lookup+unmap+close per address, nothing printed.
 * MODE "print":  the same, printing per address the matched key, a tab and the
 *                rule's data in hex, or "-" when no rule matches (for checking
 *                the answers against the other peers, outside the timing).
 * MODE "none":   read the addresses only: the floor (process start, input).
 *
 * Exit 0; 111 on any system or format error (a message on stderr). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cdb.h"
#include "rules_lookup.h"

static void
_die(const char *what, const char *path)
{
  fprintf(stderr, "tcpserver_way: fatal: %s %s: %s\n", what, path, strerror(errno));
  exit(111);
}

/* One connection: the deciding record's position, 0 when none. */
static int64_t
_connection(const char *path, const char *ip, size_t iplen, int print)
{
  struct cdb c;
  struct stat st;
  void *map;
  int64_t pos;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    _die("unable to open", path);
  if (fstat(fd, &st) < 0)
    _die("unable to stat", path);
  map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED)
    _die("unable to map", path);
  if (cdb_init(&c, map, (size_t)st.st_size) < 0)
    _die("unable to read", path);
  pos = rules_lookup(&c, ip, iplen, NULL, 0, NULL, 0);
  if (pos < 0)
    _die("unable to read", path);
  if (print) {
    uint32_t kpos, klen, dpos, dlen, i;
    if (!pos) {
      fputs("-\n", stdout);
    } else {
      if (cdb_record(&c, (uint32_t)pos, &kpos, &klen, &dpos, &dlen) < 0)
        _die("unable to read", path);
      fwrite(c.map + kpos, 1, klen, stdout);
      putchar('\t');
      for (i = 0; i < dlen; ++i)
        printf("%02x", c.map[dpos + i]);
      putchar('\n');
    }
  }
  munmap(map, (size_t)st.st_size);
  close(fd);
  return pos;
}

int
main(int argc, char **argv)
{
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  int print, none;
  unsigned long long found = 0;
  if (argc < 3) {
    fputs("tcpserver_way: usage: tcpserver_way lookup|print|none rules.cdb < addresses\n", stderr);
    return 100;
  }
  print = !strcmp(argv[1], "print");
  none = !strcmp(argv[1], "none");
  while ((n = getline(&line, &cap, stdin)) > 0) {
    if (line[n - 1] == '\n')
      line[--n] = 0;
    if (!none && _connection(argv[2], line, (size_t)n, print) > 0)
      ++found;
  }
  free(line);
  if (ferror(stdin))
    _die("unable to read", "standard input");
  /* found is used so the lookups cannot be optimised away */
  return found == (unsigned long long)-1 ? 1 : 0;
}
