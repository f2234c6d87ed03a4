/* The IDX reader (plain and gzip): the input is an images file and a labels file, split at
 * the position its first two bytes give. Whatever loads must be self-consistent. */
#include "brisk/data.h"
#include "brisk/error.h"
#include "fuzz_util.h"

#include <stdlib.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    const size_t cut = 2 + (((size_t)data[0] << 8 | data[1]) % (size - 1));
    char ip[64], lp[64];
    const int fi = fuzz_memfile(data + 2, cut - 2, ip), fl = fuzz_memfile(data + cut, size - cut, lp);
    if (fi >= 0 && fl >= 0) {
        brisk_dataset ds;
        if (brisk_idx_load(ip, lp, &ds) == BRISK_OK) {
            if (ds.n < 1 || ds.d < 1 || ds.d != ds.rows * ds.cols || !ds.x || !ds.y)
                abort();
            for (int64_t i = 0; i < ds.n; i++)
                if (ds.y[i] >= ds.classes)
                    abort();
            brisk_dataset_free(&ds);
        } else if (ds.x || ds.y || ds.n) {
            abort(); /* a failed load leaves nothing behind */
        }
    }
    if (fi >= 0)
        close(fi);
    if (fl >= 0)
        close(fl);
    return 0;
}
