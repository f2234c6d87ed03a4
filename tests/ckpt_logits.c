/* ckpt_logits: the logits a Brisk checkpoint's model gives for the first N test images, for
 * torch_load_test.py to compare with torch.nn.Sequential.load_state_dict of the same file.
 *
 * Usage: ckpt_logits CHECKPOINT DATA_DIR|synthetic|TOKEN_FILE N OUT
 * Writes OUT: int32 N, D, C, then N x D float32 inputs (normalised as brisk-train does, with
 * the mean and standard deviation of these N samples) and N x C float32 logits, evaluation
 * mode. A language model (a checkpoint of T positions) reads the first N windows of a token
 * file instead: D = T token ids, and C = T x the vocabulary, the logits of every position in
 * order. Exit 0, or 1 with a message. */
#include "brisk/checkpoint.h"
#include "brisk/data.h"
#include "brisk/error.h"
#include "brisk/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: ckpt_logits CHECKPOINT DATA_DIR|synthetic N OUT\n");
        return 1;
    }
    const int n = atoi(argv[3]);
    brisk_checkpoint *ck;
    if (n <= 0 || brisk_checkpoint_load(argv[1], &ck) < 0) {
        fprintf(stderr, "ckpt_logits: %s\n", n <= 0 ? "bad N" : brisk_error_detail());
        return 1;
    }
    const brisk_model *m = ck->layout;
    const int D = (int)brisk_shape_size(ck->model.input), T = brisk_model_positions(m);
    const int C = brisk_model_outputs(m) * T;
    brisk_dataset ds;
    const int rc = T > 1 ? brisk_dataset_load_tokens(argv[2], T, &ds)
                   : strcmp(argv[2], "synthetic")
                       ? brisk_dataset_load_dir(argv[2], "t10k", &ds)
                       : brisk_dataset_synthetic(n, D, C, 80.0f, 5, 0, &ds);
    if (rc < 0 || ds.d != D || ds.n < n) {
        fprintf(stderr, "ckpt_logits: %s\n", rc < 0 ? brisk_error_detail() : "data does not fit");
        return 1;
    }
    int32_t *idx = malloc(sizeof *idx * (size_t)n);
    float *x = malloc(sizeof *x * (size_t)n * (size_t)D);
    uint8_t *y = malloc((size_t)n);
    brisk_workspace *ws;
    if (!idx || !x || !y || brisk_workspace_create(m, n, &ws) < 0) {
        fprintf(stderr, "ckpt_logits: out of memory\n");
        return 1;
    }
    for (int i = 0; i < n; i++)
        idx[i] = i;
    float mean, std;
    if (T > 1) {
        brisk_dataset_gather_tokens(&ds, idx, n, x, NULL);
    } else {
        brisk_dataset_stats(&ds, idx, n, &mean, &std);
        brisk_dataset_gather(&ds, idx, n, &mean, &std, 1, x, y);
    }
    memcpy(brisk_workspace_input(ws), x, sizeof *x * (size_t)n * (size_t)D);
    brisk_model_forward(m, ck->params, ck->buffers, ws, n, BRISK_PASS_EVAL, NULL, NULL, NULL);
    const float *z = brisk_workspace_output(ws, brisk_model_num_layers(m) - 1);
    const int ld = brisk_workspace_ld(ws);
    FILE *f = fopen(argv[4], "wb");
    const int32_t hdr[3] = {n, D, C};
    int ok = f && fwrite(hdr, sizeof hdr, 1, f) == 1 &&
             fwrite(x, sizeof *x * (size_t)D, (size_t)n, f) == (size_t)n;
    for (int i = 0; ok && i < n * T; i++) /* columns: samples, or every position of each */
        for (int c = 0; ok && c < C / T; c++)
            ok = fwrite(&z[(size_t)c * ld + i], sizeof *z, 1, f) == 1;
    if (!f || fclose(f) != 0 || !ok) {
        fprintf(stderr, "ckpt_logits: cannot write %s\n", argv[4]);
        return 1;
    }
    brisk_workspace_destroy(ws);
    free(idx);
    free(x);
    free(y);
    brisk_dataset_free(&ds);
    brisk_checkpoint_free(ck);
    return 0;
}
