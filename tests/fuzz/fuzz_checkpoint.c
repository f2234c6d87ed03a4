/* The checkpoint loader on any bytes; with FIX_CRCS, on bytes whose two CRCs have been made
 * right, so that the fuzzer reaches the header's validation. */
#include "brisk/checkpoint.h"
#include "brisk/error.h"
#include "fuzz_util.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *b = malloc(size ? size : 1);
    if (!b)
        return 0;
    memcpy(b, data, size);
#ifdef FIX_CRCS
    fuzz_fix_checkpoint_crcs(b, size);
#endif
    char path[64];
    const int fd = fuzz_memfile(b, size, path);
    free(b);
    if (fd < 0)
        return 0;
    brisk_checkpoint *c = NULL;
    if (brisk_checkpoint_load(path, &c) == BRISK_OK) {
        if (!c || !c->params || !c->opt_m || !c->opt_v || c->pos.epoch < 0 ||
            c->pos.train.correct > c->pos.train.count)
            abort();
        brisk_checkpoint_free(c);
    } else if (c) {
        abort(); /* never partly loaded */
    }
    close(fd);
    return 0;
}
