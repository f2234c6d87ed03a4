/* brisk/llmc.h: llm.c's GPT-2 model files (train_gpt2.c's gpt2_*.bin), read into and written
 * from a Brisk GPT (the gpt preset, brisk_model_config_gpt), so that Brisk and llm.c can
 * train the same model from the same weights.
 *
 * The format: int32 header[256] = {20240326, 3, maxT, V, L, NH, C, Vp, 0, ...}, then the
 * float32 parameters, each kind for every layer before the next kind: wte (Vp, C), wpe
 * (maxT, C), ln1w (L, C), ln1b (L, C), qkvw (L, 3C, C), qkvb (L, 3C), attprojw (L, C, C),
 * attprojb (L, C), ln2w (L, C), ln2b (L, C), fcw (L, 4C, C), fcb (L, 4C), fcprojw (L, C, 4C),
 * fcprojb (L, C), lnfw (C), lnfb (C). Rows V..Vp-1 of wte pad the vocabulary (llm.c's own
 * writer leaves them zero); Brisk's table has the V rows that tokens use.
 */
#ifndef BRISK_LLMC_H
#define BRISK_LLMC_H

#include "brisk/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct brisk_llmc_header {
    int max_seq, vocab, layers, heads, channels, padded_vocab;
} brisk_llmc_header;

/* Reads and checks a file's header: the magic, the version, every size in range, and the
 * file's size against the parameters the header implies. Errors name the file and the
 * field. */
int brisk_llmc_read_header(const char *path, brisk_llmc_header *h);

/* The GPT a header describes (g's dropout is kept; its sequence length must be set, at most
 * max_seq): fills g's layers, channels, heads, vocab and max_seq. */
void brisk_llmc_gpt_config(const brisk_llmc_header *h, brisk_gpt_config *g);

/* Reads the parameters of path into params (a slab of m, brisk_slab_alloc), m being the GPT
 * the file describes (a gpt preset of its sizes, with or without dropout): every tensor of m
 * gets its llm.c counterpart. BRISK_EMISMATCH (naming the tensor or size) when m is another
 * model; format errors as brisk_llmc_read_header. */
int brisk_llmc_load(const char *path, const brisk_model *m, float *params);

/* Writes m's parameters as an llm.c model file (the vocabulary padded to a multiple of 128
 * with zero rows, as llm.c pads GPT-2's 50257 to 50304), through a temporary file renamed
 * into place. BRISK_EMISMATCH when m is not a gpt preset's model. */
int brisk_llmc_save(const char *path, const brisk_model *m, const float *params);

#ifdef __cplusplus
}
#endif

#endif
