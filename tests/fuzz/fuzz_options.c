/* tests/fuzz/fuzz_options.c — libFuzzer target for memkitd's command-line parser: NUL-separated arguments in, a valid configuration or a clean refusal out. */
#include "server/options.h"

#include <stdlib.h>
#include <string.h>

static void must(int cond)
{
    if (!cond)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    enum { MAXARGS = 32 };
    char *buf = malloc(size + 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    char *argv[MAXARGS + 2];
    int argc = 0;
    argv[argc++] = "memkitd";
    for (size_t at = 0; at <= size && argc <= MAXARGS;) { /* arguments are the NUL-separated pieces */
        argv[argc++] = buf + at;
        at += strlen(buf + at) + 1;
    }
    argv[argc] = NULL;

    char *outs = NULL, *errs = NULL;
    size_t nout = 0, nerr = 0;
    FILE *out = open_memstream(&outs, &nout), *err = open_memstream(&errs, &nerr);
    if (!out || !err)
        abort();
    mk_settings s;
    mk_settings_init(&s);
    int status = -1;
    mk_opt_result r = mk_options_parse(&s, argc, argv, out, err, &status);
    fclose(out);
    fclose(err);
    if (r == MK_OPT_RUN) {
        /* whatever is accepted is a configuration the server can start with */
        must(s.port >= 0 && s.port <= 65535);
        must(s.threads >= 1 && s.maxconns >= 1 && s.reqs_per_event >= 1 && s.backlog >= 1);
        must(s.item_size_max >= 1024 && s.item_size_max <= (size_t)1 << 30);
        must(s.maxbytes > 0);
        must(s.nlisten >= 0 && s.nlisten <= MK_MAX_LISTEN);
        must(s.hashpower == 0 || (s.hashpower >= 12 && s.hashpower <= 32));
        must(s.idle_timeout >= 0);
    } else {
        must(status == 0 || status == 1);
        if (status == 1) /* refused: said why, on whole lines */
            must(nerr > 0 && errs[nerr - 1] == '\n');
        else /* -h / -V */
            must(nout > 0);
    }
    free(outs);
    free(errs);
    free(buf);
    return 0;
}
