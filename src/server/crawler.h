/* server/crawler.h — "lru_crawler ..." and "stats cachedump": key dumps for operators' tools (memcdump, memcached-tool). */
#ifndef MK_SERVER_CRAWLER_H
#define MK_SERVER_CRAWLER_H

#include "memkit/proto.h"
#include "server/conn.h"

/*
 * Reply on c to "lru_crawler <args>" as memcached 1.6.18 does: "metadump all|hash|<id,...>" writes
 * one "key=... exp=... la=... cas=... fetch=... cls=... size=...\n" line per live item and END;
 * "crawl", "tocrawl", "sleep", "enable", "disable" are checked and answered OK (memkitd reclaims
 * expired items as it goes: there is no crawler to start or pace); anything else is ERROR.
 */
void mk_lru_crawler_command(mk_conn *c, mk_str args);

/* Reply on c to "stats cachedump <class> <limit>" (args: the words after "stats"): "ITEM key [n b; exp s]"
 * for the live items of that class, at most limit (0: all, up to 2 MB of lines), then END. */
void mk_cachedump_command(mk_conn *c, mk_str args);

/*
 * Reply on c to "slabs <args>" as memcached 1.6.18 does: "automove 0|1|2" and "automove ratio R" are
 * recorded (stats settings shows them) and answered OK, though memkitd has no slab pages to move (its
 * memory goes where the items are, docs/storage.md); "reassign SRC DST" is checked as memcached checks
 * it and answered "NOSPARE source class has no spare pages", which is always true here.
 */
void mk_slabs_command(mk_conn *c, mk_str args);

/* A key as memcached writes it in dumps and logs: bytes other than letters, digits and -._~ as %XX.
 * out holds 3n+1 bytes; returns the length written (NUL-terminated). */
size_t mk_uri_encode(const char *p, size_t n, char *out);

#endif
