/* The token readers (brisk_dataset_load_tokens: llm.c's token files, .npy arrays of ids, text)
 * and the window gather. The first byte picks the window length (1..32); the rest is the file.
 * Whatever loads must be self-consistent: every id within the vocabulary, the windows counted
 * right, each gathered window the stream's tokens; a failed load leaves nothing behind. */
#include "brisk/data.h"
#include "brisk/error.h"
#include "fuzz_util.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const int T = 1 + data[0] % 32;
    char path[64];
    const int fd = fuzz_memfile(data + 1, size - 1, path);
    if (fd < 0)
        return 0;
    brisk_dataset ds;
    const int err = brisk_dataset_load_tokens(path, T, &ds);
    if (err != BRISK_OK) {
        if (ds.tokens || ds.n || ds.owned[0] || !brisk_error_detail()[0])
            abort();
    } else {
        if (!ds.tokens || ds.seq_len != T || ds.n != (ds.n_tokens - 1) / T || ds.n < 1 ||
            ds.classes < 1 || ds.d != T)
            abort();
        for (int64_t i = 0; i < ds.n_tokens; i++)
            if (ds.tokens[i] < 0 || ds.tokens[i] >= ds.classes)
                abort();
        float *x = malloc((size_t)T * sizeof *x);
        int32_t *y = malloc((size_t)T * sizeof *y);
        const int32_t last = (int32_t)(ds.n - 1);
        if (!x || !y)
            abort();
        brisk_dataset_gather_tokens(&ds, &last, 1, x, y);
        for (int t = 0; t < T; t++)
            if (x[t] != (float)ds.tokens[(size_t)last * T + t] ||
                y[t] != ds.tokens[(size_t)last * T + t + 1])
                abort();
        free(x);
        free(y);
    }
    brisk_dataset_free(&ds);
    close(fd);
    return 0;
}
