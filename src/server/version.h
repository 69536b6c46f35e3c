/* server/version.h — memkitd's version and the memcached version it is compatible with. */
#ifndef MK_SERVER_VERSION_H
#define MK_SERVER_VERSION_H

#define MK_VERSION "0.1.0"
/* The "version" command's reply: memcached's numbering first, so clients that parse
 * major.minor.micro to choose features (libmemcached does) see 1.6.18. */
#define MK_WIRE_VERSION "1.6.18-memkit-" MK_VERSION

#endif
