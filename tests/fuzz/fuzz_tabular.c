/* The .npy and CSV readers. The first byte picks the reader and the target kind: even: .npy,
 * the rest split into a features file and a labels file at the position the next two bytes
 * give; odd: CSV, the rest one file, the label column chosen by the second byte among a
 * name, an index and the last column. Whatever loads must be self-consistent. */
#include "brisk/data.h"
#include "brisk/error.h"
#include "fuzz_util.h"

#include <math.h>
#include <stdlib.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const brisk_dataset *ds, int err, brisk_target_kind kind)
{
    if (err != BRISK_OK) {
        if (ds->x || ds->y || ds->xf || ds->yf || ds->n || ds->owned[0] || ds->owned[1])
            abort(); /* a failed load leaves nothing behind */
        return;
    }
    if (ds->n < 1 || ds->d < 1 || !ds->x == !ds->xf)
        abort();
    if (ds->rows && (int64_t)(ds->channels ? ds->channels : 1) * ds->rows * ds->cols != ds->d)
        abort();
    for (int64_t i = 0; ds->xf && i < ds->n * ds->d; i++)
        if (!isfinite(ds->xf[i]))
            abort();
    if (kind == BRISK_TARGET_CLASSES) {
        if (!ds->y || ds->targets || ds->classes < 1)
            abort();
        for (int64_t i = 0; i < ds->n; i++)
            if (ds->y[i] >= ds->classes)
                abort();
    } else {
        if (ds->y || ds->targets < 1 || !ds->yf)
            abort();
        for (int64_t i = 0; i < ds->n * ds->targets; i++)
            if (!isfinite(ds->yf[i]))
                abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    const brisk_target_kind kind = (data[0] >> 1) & 1 ? BRISK_TARGET_VALUES : BRISK_TARGET_CLASSES;
    brisk_dataset ds;
    char p1[64], p2[64];
    if (data[0] % 2 == 0) {
        const size_t rest = size - 3;
        const size_t cut = rest ? ((size_t)data[1] << 8 | data[2]) % (rest + 1) : 0;
        const int f1 = fuzz_memfile(data + 3, cut, p1), f2 = fuzz_memfile(data + 3 + cut, rest - cut, p2);
        if (f1 >= 0 && f2 >= 0) {
            const int err = brisk_dataset_load_npy(p1, p2, kind, &ds);
            check(&ds, err, kind);
            brisk_dataset_free(&ds);
            float *v = NULL;
            int nd;
            int64_t shape[4];
            if (brisk_npy_read(p1, &v, &nd, shape) == BRISK_OK && (!v || nd < 1 || nd > 4))
                abort();
            free(v);
        }
        if (f1 >= 0)
            close(f1);
        if (f2 >= 0)
            close(f2);
    } else {
        static const char *const columns[] = {"y", "0", "-1", "label"};
        const int f = fuzz_memfile(data + 2, size - 2, p1);
        if (f >= 0) {
            const int err = brisk_dataset_load_csv(p1, columns[data[1] % 4], kind, &ds);
            check(&ds, err, kind);
            brisk_dataset_free(&ds);
            close(f);
        }
    }
    return 0;
}
