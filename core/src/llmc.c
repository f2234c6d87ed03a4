/* llm.c's GPT-2 model files (brisk/llmc.h): the header, and the parameters mapped onto the
 * tensors of a Brisk GPT by walking its layers. */
#include "brisk/llmc.h"

#include "brisk/error.h"
#include "brisk/fsutil.h"
#include "core_internal.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LLMC_MAGIC 20240326
#define LLMC_VERSION 3
#define HEADER_INTS 256
#define MAX_L 16

int brisk_llmc_read_header(const char *path, brisk_llmc_header *h)
{
    if (!path || !h)
        return brisk_error_set(BRISK_EINVAL, "llmc_read_header: NULL argument");
    memset(h, 0, sizeof *h);
    FILE *f;
    uint64_t size;
    int err = brisk_file_open(path, 0, &f, &size);
    if (err < 0)
        return err;
    int32_t hd[HEADER_INTS];
    const size_t got = fread(hd, sizeof hd[0], HEADER_INTS, f);
    fclose(f);
    if (got != HEADER_INTS)
        return brisk_error_set(BRISK_ETRUNCATED, "%s: %llu bytes, shorter than the 1024-byte "
                               "header of llm.c's model files", path, (unsigned long long)size);
    if (hd[0] != LLMC_MAGIC)
        return brisk_error_set(BRISK_EFORMAT, "%s: magic %d (header[0]) is not llm.c's model "
                               "magic %d", path, hd[0], LLMC_MAGIC);
    if (hd[1] != LLMC_VERSION)
        return brisk_error_set(BRISK_EFORMAT, "%s: version %d (header[1]); Brisk reads llm.c's "
                               "version %d (fp32 parameters)", path, hd[1], LLMC_VERSION);
    static const char *const names[] = {"maxT", "V", "L", "NH", "C", "Vp"};
    static const int hi[] = {1 << 20, 65536, MAX_L, 8192, 8192, 65536};
    for (int i = 0; i < 6; i++)
        if (hd[2 + i] < 1 || hd[2 + i] > hi[i])
            return brisk_error_set(BRISK_EFORMAT, "%s: %s (header[%d]) is %d, outside 1..%d",
                                   path, names[i], 2 + i, hd[2 + i], hi[i]);
    const int maxT = hd[2], V = hd[3], L = hd[4], NH = hd[5], C = hd[6], Vp = hd[7];
    if (C % NH || Vp < V)
        return brisk_error_set(BRISK_EFORMAT, "%s: %s", path, C % NH
                               ? "C (header[6]) does not split into NH (header[5]) heads"
                               : "Vp (header[7]) is smaller than V (header[3])");
    const uint64_t count = (uint64_t)Vp * C + (uint64_t)maxT * C +
                           (uint64_t)L * (12ull * C * C + 13ull * C) + 2ull * C;
    if (size != HEADER_INTS * 4 + count * 4)
        return brisk_error_set(size < HEADER_INTS * 4 + count * 4 ? BRISK_ETRUNCATED
                                                                  : BRISK_EFORMAT,
                               "%s: the header's sizes (maxT %d, V %d, Vp %d, L %d, C %d) need "
                               "%llu parameters (%llu bytes in all), the file has %llu bytes",
                               path, maxT, V, Vp, L, C, (unsigned long long)count,
                               (unsigned long long)(HEADER_INTS * 4 + count * 4),
                               (unsigned long long)size);
    *h = (brisk_llmc_header){maxT, V, L, NH, C, Vp};
    return BRISK_OK;
}

void brisk_llmc_gpt_config(const brisk_llmc_header *h, brisk_gpt_config *g)
{
    g->layers = h->layers;
    g->channels = h->channels;
    g->heads = h->heads;
    g->vocab = h->vocab;
    g->max_seq = h->max_seq;
}

/* The tensors of a GPT, found by walking its layers: the embeddings, then per block its two
 * layernorms, its attention and its two dense layers, then the final layernorm. */
typedef struct gpt_views {
    int L, C, H, V, maxT;
    const brisk_tensor_view *wte, *wpe, *lnfw, *lnfb;
    const brisk_tensor_view *ln1w[MAX_L], *ln1b[MAX_L], *qkvw[MAX_L], *qkvb[MAX_L],
        *projw[MAX_L], *projb[MAX_L], *ln2w[MAX_L], *ln2b[MAX_L], *fcw[MAX_L], *fcb[MAX_L],
        *fcprojw[MAX_L], *fcprojb[MAX_L];
} gpt_views;

static int not_gpt(const char *what, const char *why)
{
    return brisk_error_set(BRISK_EMISMATCH, "%s: the model is not a gpt preset's (%s)", what,
                           why);
}

static int gpt_walk(const brisk_model *m, const char *what, gpt_views *g)
{
    memset(g, 0, sizeof *g);
    const int n = brisk_model_num_layers(m);
    int norms = 0, denses = 0, heads_seen = 0, tied = 0;
    for (int i = 0; i < n; i++) {
        if (brisk_model_layer(m, i)->ops == &brisk__attention_ops)
            g->L++;
    }
    if (g->L < 1 || g->L > MAX_L)
        return not_gpt(what, "it has no attention layers, or more than 16");
    for (int i = 0; i < n; i++) {
        /* The built-in layers themselves (their ops tables), not kinds of the same name. */
        const brisk_layer *l = brisk_model_layer(m, i);
        const brisk_layer_ops *ops = l->ops;
        if (ops == &brisk__embed_ops && !g->wte) {
            g->wte = &l->tensors[0];
        } else if (ops == &brisk__posembed_ops && !g->wpe) {
            g->wpe = &l->tensors[0];
        } else if (ops == &brisk__layernorm_ops) {
            const int b = norms / 2;
            if (norms == 2 * g->L) {
                g->lnfw = &l->tensors[0];
                g->lnfb = &l->tensors[1];
            } else if (norms < 2 * g->L) {
                *(norms % 2 ? &g->ln2w[b] : &g->ln1w[b]) = &l->tensors[0];
                *(norms % 2 ? &g->ln2b[b] : &g->ln1b[b]) = &l->tensors[1];
            }
            norms++;
        } else if (ops == &brisk__attention_ops && l->n_tensors == 4) {
            g->qkvw[heads_seen] = &l->tensors[0];
            g->qkvb[heads_seen] = &l->tensors[1];
            g->projw[heads_seen] = &l->tensors[2];
            g->projb[heads_seen] = &l->tensors[3];
            g->H = (int)l->args[0];
            heads_seen++;
        } else if (ops == &brisk__dense_ops && l->tied) {
            tied += !l->n_tensors; /* the head: the embedding's table, no bias */
        } else if (ops == &brisk__dense_ops && l->n_tensors == 2 && denses < 2 * g->L) {
            const int b = denses / 2;
            *(denses % 2 ? &g->fcprojw[b] : &g->fcw[b]) = &l->tensors[0];
            *(denses % 2 ? &g->fcprojb[b] : &g->fcb[b]) = &l->tensors[1];
            denses++;
        } else if (ops != &brisk__res_ops && ops != &brisk__dropout_ops &&
                   ops != &brisk__gelu_ops) {
            return not_gpt(what, "a layer other than embed, posembed, layernorm, attention, "
                                 "dense, gelu, res and dropout");
        }
    }
    if (!g->wte || !g->wpe || norms != 2 * g->L + 1 || denses != 2 * g->L || tied != 1)
        return not_gpt(what, "not the embeddings, two layernorms and two dense layers a block, "
                             "a final layernorm and a head tied to the embedding");
    g->V = g->wte->shape[0];
    g->C = g->wte->shape[1];
    g->maxT = g->wpe->shape[0];
    for (int b = 0; b < g->L; b++)
        if (g->qkvw[b]->shape[0] != 3 * g->C || g->fcw[b]->shape[0] != 4 * g->C ||
            g->fcprojw[b]->shape[1] != 4 * g->C)
            return not_gpt(what, "a block's widths are not 3C, 4C and C");
    return BRISK_OK;
}

/* The file's tensors, in order: where each goes (the views of every layer for the per-layer
 * kinds), and its size per layer. */
typedef struct llmc_part {
    const brisk_tensor_view *const *per_layer; /* L views, or NULL for one view */
    const brisk_tensor_view *one;
    size_t count; /* floats per layer (or in all) in the file */
} llmc_part;

static int parts_of(const gpt_views *g, int Vp, llmc_part *p)
{
    const size_t C = (size_t)g->C;
    int k = 0;
    p[k++] = (llmc_part){NULL, g->wte, (size_t)Vp * C};
    p[k++] = (llmc_part){NULL, g->wpe, (size_t)g->maxT * C};
    p[k++] = (llmc_part){g->ln1w, NULL, C};
    p[k++] = (llmc_part){g->ln1b, NULL, C};
    p[k++] = (llmc_part){g->qkvw, NULL, 3 * C * C};
    p[k++] = (llmc_part){g->qkvb, NULL, 3 * C};
    p[k++] = (llmc_part){g->projw, NULL, C * C};
    p[k++] = (llmc_part){g->projb, NULL, C};
    p[k++] = (llmc_part){g->ln2w, NULL, C};
    p[k++] = (llmc_part){g->ln2b, NULL, C};
    p[k++] = (llmc_part){g->fcw, NULL, 4 * C * C};
    p[k++] = (llmc_part){g->fcb, NULL, 4 * C};
    p[k++] = (llmc_part){g->fcprojw, NULL, 4 * C * C};
    p[k++] = (llmc_part){g->fcprojb, NULL, C};
    p[k++] = (llmc_part){NULL, g->lnfw, C};
    p[k++] = (llmc_part){NULL, g->lnfb, C};
    return k;
}

int brisk_llmc_load(const char *path, const brisk_model *m, float *params)
{
    if (!path || !m || !params)
        return brisk_error_set(BRISK_EINVAL, "llmc_load: NULL argument");
    brisk_llmc_header h;
    gpt_views g;
    int err = brisk_llmc_read_header(path, &h);
    if (err < 0 || (err = gpt_walk(m, path, &g)) < 0)
        return err;
    if (g.L != h.layers || g.C != h.channels || g.H != h.heads || g.V != h.vocab ||
        g.maxT != h.max_seq)
        return brisk_error_set(BRISK_EMISMATCH, "%s holds a GPT of L %d, C %d, NH %d, V %d, "
                               "maxT %d; the model is L %d, C %d, %d heads, V %d, maxT %d",
                               path, h.layers, h.channels, h.heads, h.vocab, h.max_seq, g.L,
                               g.C, g.H, g.V, g.maxT);
    FILE *f;
    uint64_t size;
    if ((err = brisk_file_open(path, 0, &f, &size)) < 0)
        return err;
    llmc_part parts[16];
    const int np = parts_of(&g, h.padded_vocab, parts);
    int bad = fseek(f, HEADER_INTS * 4, SEEK_SET) != 0;
    for (int i = 0; i < np && !bad; i++)
        for (int l = 0; l < (parts[i].per_layer ? g.L : 1) && !bad; l++) {
            const brisk_tensor_view *v = parts[i].per_layer ? parts[i].per_layer[l] : parts[i].one;
            float *dst = params + v->offset;
            /* wte: the V rows the model has, then skip the padding rows */
            bad = fread(dst, sizeof(float), v->count, f) != v->count ||
                  (parts[i].count > v->count &&
                   fseek(f, (long)((parts[i].count - v->count) * sizeof(float)), SEEK_CUR) != 0);
        }
    fclose(f);
    if (bad)
        return brisk_error_set(BRISK_EIO, "%s: read error (the file changed while read?)", path);
    return BRISK_OK;
}

int brisk_llmc_save(const char *path, const brisk_model *m, const float *params)
{
    if (!path || !m || !params)
        return brisk_error_set(BRISK_EINVAL, "llmc_save: NULL argument");
    gpt_views g;
    int err = gpt_walk(m, path, &g);
    if (err < 0)
        return err;
    const int Vp = (g.V + 127) / 128 * 128;
    int32_t hd[HEADER_INTS] = {LLMC_MAGIC, LLMC_VERSION, g.maxT, g.V, g.L, g.H, g.C, Vp};
    brisk_outfile o;
    if ((err = brisk_outfile_open(&o, path)) < 0)
        return err;
    int bad = fwrite(hd, sizeof hd, 1, o.fp) != 1;
    llmc_part parts[16];
    const int np = parts_of(&g, Vp, parts);
    static const float zeros[256];
    for (int i = 0; i < np && !bad; i++)
        for (int l = 0; l < (parts[i].per_layer ? g.L : 1) && !bad; l++) {
            const brisk_tensor_view *v = parts[i].per_layer ? parts[i].per_layer[l] : parts[i].one;
            bad = fwrite(params + v->offset, sizeof(float), v->count, o.fp) != v->count;
            for (size_t z = v->count; z < parts[i].count && !bad;) { /* wte's padding rows */
                const size_t w = parts[i].count - z < 256 ? parts[i].count - z : 256;
                bad = fwrite(zeros, sizeof(float), w, o.fp) != w;
                z += w;
            }
        }
    if (bad) {
        brisk_outfile_abort(&o);
        return brisk_error_set(BRISK_EIO, "%s: write error", path);
    }
    return brisk_outfile_commit(&o);
}
