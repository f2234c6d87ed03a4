/* llm.c's model files (brisk/llmc.h): the header's checks, then, when the header passes and
 * describes a small GPT, the load into that GPT's slab and the write back. A file that loads
 * must write back as the same bytes (after its header's padded vocabulary is made what Brisk
 * writes, a multiple of 128). */
#include "brisk/error.h"
#include "brisk/llmc.h"
#include "brisk/model.h"
#include "fuzz_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    const int fd = fuzz_memfile(data, size, path);
    if (fd < 0)
        return 0;
    brisk_llmc_header h;
    if (brisk_llmc_read_header(path, &h) == BRISK_OK && h.layers <= 2 && h.channels <= 64 &&
        h.vocab <= 512 && h.max_seq <= 64) {
        brisk_gpt_config g = {.seq_len = h.max_seq};
        brisk_llmc_gpt_config(&h, &g);
        brisk_model_config mc;
        brisk_model *m;
        if (brisk_model_config_gpt(&mc, &g) == BRISK_OK && brisk_model_create(&mc, &m) == BRISK_OK) {
            float *p = brisk_slab_alloc(m);
            if (!p || brisk_llmc_load(path, m, p) != BRISK_OK)
                abort(); /* a header that passes describes a file that loads */
            char out[80];
            snprintf(out, sizeof out, "/tmp/fuzz_llmc_%d.bin", (int)getpid());
            if (brisk_llmc_save(out, m, p) != BRISK_OK)
                abort();
            brisk_llmc_header back;
            if (brisk_llmc_read_header(out, &back) != BRISK_OK || back.layers != h.layers ||
                back.channels != h.channels || back.vocab != h.vocab)
                abort();
            unlink(out);
            brisk_slab_free(p);
            brisk_model_destroy(m);
        }
    } else if (!brisk_error_detail()[0]) {
        abort();
    }
    close(fd);
    return 0;
}
