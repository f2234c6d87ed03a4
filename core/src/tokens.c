/* Token data: a stream of token ids cut into windows of T + 1 (inputs and next-token
 * targets), read from text (bytes), NumPy .npy arrays or llm.c's token files. */
#include "brisk/data.h"
#include "brisk/error.h"
#include "brisk/fsutil.h"
#include "core_internal.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LLMC_TOKENS_MAGIC 20240520
#define LLMC_TOKENS_VERSION 1
#define LLMC_HEADER_BYTES 1024
#define GPT2_VOCAB 50257
#define MAX_SEQ_LEN 65536
#define MAX_TOKENS ((int64_t)INT32_MAX) /* windows are indexed by int32 */

static int check_stream(const char *what, const int32_t *tokens, int64_t n_tokens, int seq_len,
                        int *vocab)
{
    if (seq_len < 1 || seq_len > MAX_SEQ_LEN)
        return brisk_error_set(BRISK_EINVAL, "%s: sequence length %d is not in 1..%d", what,
                               seq_len, MAX_SEQ_LEN);
    if (n_tokens < (int64_t)seq_len + 1)
        return brisk_error_set(BRISK_EINVAL, "%s: %lld token%s, fewer than one window of "
                               "%d + 1 (the sequence length and the next token)", what,
                               (long long)n_tokens, n_tokens == 1 ? "" : "s", seq_len);
    if (n_tokens > MAX_TOKENS)
        return brisk_error_set(BRISK_EINVAL, "%s: %lld tokens, over the limit of %lld", what,
                               (long long)n_tokens, (long long)MAX_TOKENS);
    int top = -1;
    for (int64_t i = 0; i < n_tokens; i++) {
        if (tokens[i] < 0 || (*vocab > 0 && tokens[i] >= *vocab))
            return brisk_error_set(BRISK_EINVAL, "%s: token %lld is %d, outside the vocabulary "
                                   "0..%d", what, (long long)i, tokens[i],
                                   *vocab > 0 ? *vocab - 1 : INT32_MAX);
        top = tokens[i] > top ? tokens[i] : top;
    }
    if (*vocab <= 0)
        *vocab = top + 1;
    return BRISK_OK;
}

static void fill(brisk_dataset *out, const int32_t *tokens, int64_t n_tokens, int seq_len,
                 int vocab)
{
    out->tokens = tokens;
    out->n_tokens = n_tokens;
    out->seq_len = seq_len;
    out->n = (n_tokens - 1) / seq_len;
    out->d = seq_len;
    out->classes = vocab;
}

int brisk_dataset_tokens(const int32_t *tokens, int64_t n_tokens, int seq_len, int vocab,
                         brisk_dataset *out)
{
    if (!out)
        return brisk_error_set(BRISK_EINVAL, "dataset_tokens: out is NULL");
    memset(out, 0, sizeof *out);
    if (!tokens || vocab < 0)
        return brisk_error_set(BRISK_EINVAL, "dataset_tokens: tokens %s, vocab %d",
                               tokens ? "given" : "NULL", vocab);
    int err = check_stream("dataset_tokens", tokens, n_tokens, seq_len, &vocab);
    if (err < 0)
        return err;
    fill(out, tokens, n_tokens, seq_len, vocab);
    out->borrowed = 1;
    return BRISK_OK;
}

/* llm.c's token file, already in memory (size bytes): header then uint16 ids. */
static int parse_llmc(const char *path, const unsigned char *b, uint64_t size, int32_t **out,
                      int64_t *n, int *vocab)
{
    if (size < LLMC_HEADER_BYTES)
        return brisk_error_set(BRISK_ETRUNCATED, "%s: %llu bytes, shorter than the 1024-byte "
                               "header of llm.c's token files", path, (unsigned long long)size);
    int32_t h[3];
    memcpy(h, b, sizeof h);
    if (h[1] != LLMC_TOKENS_VERSION)
        return brisk_error_set(BRISK_EFORMAT, "%s: llm.c token file version %d (header[1]); "
                               "Brisk reads version %d", path, h[1], LLMC_TOKENS_VERSION);
    const uint64_t have = (size - LLMC_HEADER_BYTES) / 2;
    if (h[2] < 0 || (uint64_t)h[2] != have || (size - LLMC_HEADER_BYTES) % 2)
        return brisk_error_set((uint64_t)h[2] > have && h[2] > 0 ? BRISK_ETRUNCATED
                                                                 : BRISK_EFORMAT,
                               "%s: the header's token count (header[2]) is %d, the file holds "
                               "%llu bytes of uint16 tokens after its header (%llu tokens)",
                               path, h[2], (unsigned long long)(size - LLMC_HEADER_BYTES),
                               (unsigned long long)have);
    int32_t *t = malloc((size_t)(h[2] ? h[2] : 1) * sizeof *t);
    if (!t)
        return brisk_error_set(BRISK_ENOMEM, "%s: out of memory for %d tokens", path, h[2]);
    int top = 0;
    for (int32_t i = 0; i < h[2]; i++) {
        uint16_t v;
        memcpy(&v, b + LLMC_HEADER_BYTES + 2 * (size_t)i, 2);
        t[i] = v;
        top = v > top ? v : top;
    }
    *out = t;
    *n = h[2];
    *vocab = top < 256 ? top + 1 : top < GPT2_VOCAB ? GPT2_VOCAB : top + 1;
    return BRISK_OK;
}

int brisk_dataset_load_tokens(const char *path, int seq_len, brisk_dataset *out)
{
    if (!out)
        return brisk_error_set(BRISK_EINVAL, "dataset_load_tokens: out is NULL");
    memset(out, 0, sizeof *out);
    if (!path)
        return brisk_error_set(BRISK_EINVAL, "dataset_load_tokens: path is NULL");
    if (seq_len < 1 || seq_len > MAX_SEQ_LEN)
        return brisk_error_set(BRISK_EINVAL, "%s: sequence length %d is not in 1..%d", path,
                               seq_len, MAX_SEQ_LEN);
    char *data = NULL;
    uint64_t size = 0;
    int err = brisk_file_read_all(path, (uint64_t)MAX_TOKENS * 2 + LLMC_HEADER_BYTES, &data,
                                  &size);
    if (err < 0)
        return err;
    int32_t *tokens = NULL;
    int64_t n = 0;
    int vocab = 0;
    int32_t magic = 0;
    if (size >= 4)
        memcpy(&magic, data, 4);
    if (size >= 6 && !memcmp(data, "\x93NUMPY", 6)) {
        free(data);
        data = NULL;
        err = brisk__npy_read_ids(path, 1 << 24, &tokens, &n);
    } else if (magic == LLMC_TOKENS_MAGIC) {
        err = parse_llmc(path, (const unsigned char *)data, size, &tokens, &n, &vocab);
    } else if (size == 0) {
        err = brisk_error_set(BRISK_EEMPTY, "%s: the file is empty", path);
    } else if (!(tokens = malloc((size_t)size * sizeof *tokens))) {
        err = brisk_error_set(BRISK_ENOMEM, "%s: out of memory for %llu tokens", path,
                              (unsigned long long)size);
    } else { /* text: a token per byte */
        for (uint64_t i = 0; i < size; i++)
            tokens[i] = (unsigned char)data[i];
        n = (int64_t)size;
        vocab = 256;
        out->bytes_per_token = 1;
    }
    free(data);
    if (err == BRISK_OK)
        err = check_stream(path, tokens, n, seq_len, &vocab);
    if (err < 0) {
        free(tokens);
        return err;
    }
    const double bpt = out->bytes_per_token;
    fill(out, tokens, n, seq_len, vocab);
    out->bytes_per_token = bpt;
    out->owned[0] = tokens;
    return BRISK_OK;
}

void brisk_dataset_gather_tokens(const brisk_dataset *ds, const int32_t *idx, int n,
                                 float *x_out, int32_t *targets_out)
{
    const int T = ds->seq_len;
    for (int i = 0; i < n; i++) {
        const int32_t *w = ds->tokens + (size_t)idx[i] * (size_t)T;
        for (int t = 0; t < T; t++)
            x_out[(size_t)i * T + t] = (float)w[t];
        if (targets_out)
            memcpy(targets_out + (size_t)i * T, w + 1, (size_t)T * sizeof *targets_out);
    }
}
