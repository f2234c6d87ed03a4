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
#ifdef FIX_CRCS
    const int fix = 1;
#else
    const int fix = 0;
#endif
    char path[64];
    const int fd = fuzz_checkpoint_file(data, size, fix, path);
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
