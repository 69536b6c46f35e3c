/* server/negotiate.c — which protocol a new connection speaks: -B binary, -B ascii, or (auto) its first byte. */
#include "memkit/binary.h"
#include "server/ascii.h"
#include "server/proto_binary.h"

/* -B auto: memcached's rule, a first byte of 0x80 (the binary request magic) means binary for good. */
static ssize_t negotiate_execute(mk_conn *c, const char *in, size_t len)
{
    c->proto = (unsigned char)in[0] == MK_BIN_MAGIC_REQ ? &mk_protocol_binary : &mk_protocol_ascii;
    return c->proto->execute(c, in, len);
}

static void negotiate_complete_nread(mk_conn *c, mk_item *it, bool tail_ok)
{
    c->proto->complete_nread(c, it, tail_ok); /* (never: a data block follows a request, by then decided) */
}

/* Room for either protocol's state, since the connection turns into one of them. */
typedef union any_state {
    mk_ascii_state ascii;
    mk_bin_state binary;
} any_state;

static const mk_protocol mk_protocol_auto = {
    .name = "auto-negotiate",
    .execute = negotiate_execute,
    .complete_nread = negotiate_complete_nread,
    .state_size = sizeof(any_state),
};

const mk_protocol *mk_protocol_for(mk_proto_choice choice)
{
    switch (choice) {
    case MK_PROTO_ASCII: return &mk_protocol_ascii;
    case MK_PROTO_BINARY: return &mk_protocol_binary;
    default: return &mk_protocol_auto;
    }
}

const mk_protocol *mk_protocol_for_settings(const mk_settings *s)
{
    return s->auth_file ? &mk_protocol_ascii_auth : mk_protocol_for(s->protocol); /* (-Y implies -B ascii) */
}
