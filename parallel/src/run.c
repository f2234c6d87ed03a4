/* A training run owned by the library (brisk/run.h): opening or resuming it, its directories
 * and locks, its data, its logs around brisk_fit, and evaluating its checkpoint. */
#define _GNU_SOURCE /* strdup, realpath */
#include "brisk/run.h"

#include "brisk/ckptdir.h"
#include "brisk/error.h"
#include "brisk/fsutil.h"
#include "brisk/gemm.h"
#include "brisk/llmc.h"
#include "brisk/message.h"
#include "brisk/tblog.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef BRISK_VERSION
#define BRISK_VERSION "?"
#endif

struct brisk_run {
    brisk_run_config cfg;
    brisk_comm *comm;
    int rank, nproc;
    int evaluate_only;          /* opened to evaluate or predict: no locks, logs or claims */
    void (*message)(void *user, const char *line);
    void *user;
    brisk_checkpoint *ck;       /* the checkpoint resumed (or evaluated) */
    char *ck_path;
    brisk_lock *locks[2];
    int log_enabled;
    int recipe_warmup;          /* a new run's warmup is its preset's */
    /* The data (brisk_run_load). */
    int data_ready;
    brisk_dataset own_train, own_test;
    const brisk_dataset *train, *test; /* the run's or the program's */
    int has_test;
    int32_t *order;             /* n_train training indices, then the validation ones */
    int64_t n_train, n_val, steps_per_epoch;
    int32_t *test_idx;
    brisk_trainer_config tcfg;
    int norm_count;
    float *norm;                /* means then stds */
    char source[BRISK_RUN_PATH_MAX + 32];
    brisk_trainer *t;
};

#define say(r, ...) brisk_message((r)->message, (r)->user, __VA_ARGS__)

static int is_shorthand(const char *model)
{
    return model[0] && strspn(model, "0123456789-") == strlen(model);
}

static int is_none(const char *s)
{
    return !strcmp(s, "none");
}

/* ---- Opening: settings, the checkpoint to resume, directories -------------------------- */

int brisk_run_checkpoint_path(const char *target, char *path, size_t size)
{
    if (!target || !path || size == 0)
        return brisk_error_set(BRISK_EINVAL, "run_checkpoint_path: NULL argument");
    struct stat st;
    if (stat(target, &st) != 0)
        return brisk_error_set(errno == ENOENT ? BRISK_ENOENT : BRISK_EIO, "%s: %s", target,
                               strerror(errno));
    if (!S_ISDIR(st.st_mode)) {
        const int w = snprintf(path, size, "%s", target);
        return w >= 0 && (size_t)w < size
                   ? BRISK_OK
                   : brisk_error_set(BRISK_EINVAL, "%s: the path is too long", target);
    }
    /* A run directory: its marker names the run, its checkpoints are in checkpoints/. */
    char dir[PATH_MAX], marker[PATH_MAX], run[BRISK_RUN_ID_MAX] = "";
    snprintf(dir, sizeof dir, "%s", target);
    snprintf(marker, sizeof marker, "%s/brisk-run", target);
    char *text;
    uint64_t len;
    if (brisk_file_read_all(marker, 4096, &text, &len) == BRISK_OK) {
        snprintf(run, sizeof run, "%.*s", (int)strcspn(text, "\r\n"), text);
        free(text);
        snprintf(dir, sizeof dir, "%s/checkpoints", target);
        if (!brisk_run_id_valid(run))
            run[0] = '\0';
    }
    return brisk_ckpt_newest(dir, run[0] ? run : NULL, path, size);
}

/* Resolves what to resume into a checkpoint file (malloc'd), or an error naming it. */
static int resume_target(const char *target, char **out)
{
    *out = NULL;
    char *path = malloc(PATH_MAX);
    if (!path)
        return brisk_error_set(BRISK_ENOMEM, "out of memory");
    const int err = brisk_run_checkpoint_path(target, path, PATH_MAX);
    if (err < 0) {
        free(path);
        return err;
    }
    *out = path;
    return BRISK_OK;
}

/* Splits "name=value" and sets it on c. */
static int apply_setting(brisk_run_config *c, const char *nv)
{
    const char *eq = nv ? strchr(nv, '=') : NULL;
    if (!eq || eq == nv)
        return brisk_error_set(BRISK_EINVAL, "%s: a setting is name=value", nv ? nv : "(null)");
    char name[64];
    snprintf(name, sizeof name, "%.*s", (int)(eq - nv), nv);
    return brisk_run_config_set(c, name, eq + 1);
}

static int given(const brisk_run_options *o, const char *name)
{
    const size_t n = strlen(name);
    for (int i = 0; i < o->n_settings; i++)
        if (!strncmp(o->settings[i], name, n) && o->settings[i][n] == '=')
            return 1;
    return 0;
}

/* A resume: the checkpoint's settings, then the user's, of which only some may differ. */
static int resume_settings(brisk_run *r, const brisk_run_options *o)
{
    int err = brisk_run_config_from_json(&r->cfg, r->ck->config, r->ck_path);
    if (err < 0)
        return err;
    const brisk_run_config saved = r->cfg;
    r->cfg.threads = 0; /* not part of what was trained: every core, unless given */
    for (int i = 0; i < o->n_settings; i++) {
        brisk_run_config next = r->cfg;
        if ((err = apply_setting(&next, o->settings[i])) < 0)
            return err;
        char name[64], was[BRISK_RUN_PATH_MAX], now[BRISK_RUN_PATH_MAX];
        snprintf(name, sizeof name, "%.*s", (int)strcspn(o->settings[i], "="), o->settings[i]);
        brisk_run_config_get(&saved, name, was, sizeof was);
        brisk_run_config_get(&next, name, now, sizeof now);
        const brisk_run_setting *s = brisk_run_setting_find(name);
        if (strcmp(was, now) && !s->may_change_on_resume)
            return brisk_error_set(BRISK_EINVAL, "%s: cannot change when resuming: %s was "
                                   "trained with %s %s, not %s (start a new run to change it)",
                                   name, r->ck_path, name, was[0] ? was : "''", now);
        if (!strcmp(name, "epochs") && next.epochs != saved.epochs &&
            !strcmp(saved.schedule, "cosine"))
            say(r, "the cosine schedule spans all epochs, so with epochs %d instead of %d the "
                   "rest of this run differs from an uninterrupted run of either length",
                next.epochs, saved.epochs);
        r->cfg = next;
    }
    return BRISK_OK;
}

/* A new run: the defaults (or the program's), the user's settings, a preset's recipe for
 * what they leave out. */
static int new_settings(brisk_run *r, const brisk_run_options *o)
{
    r->cfg = o->config ? *o->config : brisk_run_config_defaults();
    for (int i = 0; i < o->n_settings; i++) {
        const int err = apply_setting(&r->cfg, o->settings[i]);
        if (err < 0)
            return err;
    }
    brisk_preset_recipe recipe;
    if (!o->config && brisk_model_preset_recipe(r->cfg.model, &recipe) == BRISK_OK) {
        if (!given(o, "epochs"))
            r->cfg.epochs = recipe.epochs;
        if (recipe.lr > 0 && !given(o, "lr"))
            r->cfg.lr = recipe.lr;
        if (recipe.min_lr > 0 && !given(o, "min-lr"))
            r->cfg.min_lr = recipe.min_lr;
        if (recipe.beta2 > 0 && !given(o, "beta2"))
            r->cfg.beta2 = recipe.beta2;
        if (recipe.clip_norm > 0 && !given(o, "clip-norm"))
            r->cfg.clip_norm = recipe.clip_norm;
        if (recipe.warmup > 0 && !given(o, "warmup")) {
            r->cfg.warmup = recipe.warmup;
            r->recipe_warmup = 1;
        }
        if (recipe.batch > 0 && !given(o, "batch"))
            r->cfg.batch = recipe.batch;
        if (recipe.micro_batch > 0 && !given(o, "micro-batch"))
            r->cfg.micro_batch = recipe.micro_batch;
        if (recipe.augment[0] && !given(o, "augment"))
            snprintf(r->cfg.augment, sizeof r->cfg.augment, "%s", recipe.augment);
        if (recipe.ema > 0 && !given(o, "ema"))
            r->cfg.ema = recipe.ema;
        if (recipe.label_smoothing > 0 && !given(o, "label-smoothing"))
            r->cfg.label_smoothing = recipe.label_smoothing;
        if (recipe.decay_matrices_only && !given(o, "decay"))
            snprintf(r->cfg.decay, sizeof r->cfg.decay, "matrices");
        if (!given(o, "optimizer"))
            snprintf(r->cfg.optimizer, sizeof r->cfg.optimizer, "%s",
                     brisk_optim_name(recipe.optimizer));
        if (!strcmp(r->cfg.optimizer, brisk_optim_name(recipe.optimizer)) &&
            !given(o, "weight-decay"))
            r->cfg.weight_decay = recipe.weight_decay;
    }
    if (r->cfg.run[0])
        return brisk_error_set(BRISK_EINVAL, "run: a new run makes its own id (resume a run "
                               "to continue it)");
    return BRISK_OK;
}

static int is_gpt(const char *model)
{
    return !strncmp(model, "gpt", 3) && (!model[3] || model[3] == ':');
}

/* Combinations that cannot work. */
static int check_settings(const brisk_run_config *c)
{
    const int policies = c->early_stop || c->keep_best || c->plateau;
    if (policies && !strncmp(c->monitor, "val_", 4) && c->val_split == 0)
        return brisk_error_set(BRISK_EINVAL, "monitor: %s needs validation samples, and "
                               "val-split is 0 (watch train_loss or train_accuracy instead)",
                               c->monitor);
    if (c->keep_best && is_none(c->checkpoint_dir))
        return brisk_error_set(BRISK_EINVAL, "keep-best: needs checkpoints, and checkpoint-dir "
                               "is none");
    if (is_gpt(c->model) && c->seq_len < 1)
        return brisk_error_set(BRISK_EINVAL, "seq-len: the gpt preset trains on token data: "
                               "give --seq-len T with a text, .npy or llm.c token file as data");
    if (c->seq_len > 0 && !strcmp(c->data, "synthetic"))
        return brisk_error_set(BRISK_EINVAL, "seq-len: token data come from a file (text, a "
                               ".npy of ids, llm.c's token file), not synthetic");
    const size_t n = strlen(c->data);
    const int npy = n > 4 && !strcmp(c->data + n - 4, ".npy") && c->seq_len < 1;
    if (npy && !c->labels[0])
        return brisk_error_set(BRISK_EINVAL, "labels: a .npy data set needs the .npy file of "
                               "its labels (labels=FILE)");
    if (c->test[0] && npy && !c->test_labels[0])
        return brisk_error_set(BRISK_EINVAL, "test-labels: a .npy test set needs the .npy file "
                               "of its labels (test-labels=FILE)");
    return BRISK_OK;
}

/* A directory name for the model: the shorthand or preset as it is, a layer list with every
 * run of other characters than letters, digits, '.' and '-' turned into one '-', at most 48
 * characters. */
static void model_slug(const char *model, char *out, size_t size)
{
    size_t n = 0;
    for (const char *p = model; *p && n + 1 < size && n < 48; p++) {
        const int ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                       (*p >= '0' && *p <= '9') || *p == '.' || *p == '-';
        if (ok)
            out[n++] = *p;
        else if (n > 0 && out[n - 1] != '-')
            out[n++] = '-';
    }
    while (n > 0 && out[n - 1] == '-')
        n--;
    out[n] = 0;
    if (!n)
        snprintf(out, size, "model");
}

/* A log directory belongs to one run: its marker file (brisk-run) holds the run's id. A
 * directory whose marker names another run, or that holds event files without a marker (an
 * earlier version's, another program's), is refused. */
static int claim_logdir(const char *dir, const char *run)
{
    char marker[BRISK_RUN_PATH_MAX + 32], other[BRISK_RUN_ID_MAX + 2] = "";
    snprintf(marker, sizeof marker, "%s/brisk-run", dir);
    char *text;
    uint64_t size;
    const int err = brisk_file_read_all(marker, 4096, &text, &size);
    if (err == BRISK_OK) {
        snprintf(other, sizeof other, "%.*s", (int)strcspn(text, "\r\n"), text);
        free(text);
        if (!strcmp(other, run))
            return BRISK_OK;
        if (!other[0])
            snprintf(other, sizeof other, "unnamed");
    } else if (err != BRISK_ENOENT) {
        return brisk_error_set(err, "logdir: %s", brisk_error_detail());
    } else if (brisk_log_dir_has_events(dir)) {
        snprintf(other, sizeof other, "unnamed");
    } else { /* a new directory: this run's */
        brisk_outfile f;
        int e = brisk_outfile_open(&f, marker);
        if (e == BRISK_OK && fprintf(f.fp, "%s\n", run) < 0) {
            brisk_outfile_abort(&f);
            e = brisk_error_set(BRISK_EIO, "cannot write %s", marker);
        } else if (e == BRISK_OK) {
            e = brisk_outfile_commit(&f);
        }
        return e < 0 ? brisk_error_set(e, "logdir: %s", brisk_error_detail()) : BRISK_OK;
    }
    return brisk_error_set(BRISK_EMISMATCH, "logdir: %s holds the logs of another run (%s); "
                           "TensorBoard would merge the two. Choose a new directory%s", dir,
                           other, strcmp(other, "unnamed") ? ", or resume that run" : "");
}

/* Makes dir and takes the lock at path. */
static int take_lock(const char *name, const char *dir, const char *path, brisk_lock **lock)
{
    int err = brisk_make_dirs(dir);
    if (err == BRISK_OK && (err = brisk_lock_take(path, lock)) == BRISK_OK)
        return BRISK_OK;
    if (err == BRISK_EBUSY)
        return brisk_error_set(err, "%s: %s: another process is writing this run: %s; wait for "
                               "it to end (or stop it) first", name, dir, brisk_error_detail());
    return brisk_error_set(err, "%s: %s", name, brisk_error_detail());
}

/* Rank 0: one live writer, the log directory's claim, torn records cut, dead processes'
 * temporary checkpoints removed. */
static int claim(brisk_run *r)
{
    const brisk_run_config *c = &r->cfg;
    char path[BRISK_RUN_PATH_MAX + 128];
    int err = BRISK_OK;
    if (r->log_enabled) {
        snprintf(path, sizeof path, "%s/brisk.lock", c->logdir);
        if ((err = take_lock("logdir", c->logdir, path, &r->locks[0])) < 0 ||
            (err = claim_logdir(c->logdir, c->run)) < 0)
            return err;
        if (r->ck && brisk_log_repair(c->logdir, r->message, r->user) < 0)
            return brisk_error_set(BRISK_EIO, "logdir: %s", brisk_error_detail());
    }
    if (!is_none(c->checkpoint_dir)) {
        char inside[PATH_MAX + 16];
        snprintf(inside, sizeof inside, "%s/checkpoints", c->logdir);
        if (!r->log_enabled || strcmp(c->checkpoint_dir, inside)) {
            /* A checkpoint directory of its own (several runs may share one): the run's lock
             * there. */
            snprintf(path, sizeof path, "%s/ckpt-%s.lock", c->checkpoint_dir, c->run);
            if ((err = take_lock("checkpoint-dir", c->checkpoint_dir, path, &r->locks[1])) < 0)
                return err;
        } else if ((err = brisk_make_dirs(c->checkpoint_dir)) < 0) {
            return brisk_error_set(err, "checkpoint-dir: %s", brisk_error_detail());
        }
        brisk_ckpt_clean_temps(c->checkpoint_dir);
    }
    return BRISK_OK;
}

int brisk_run_open(const brisk_run_options *o, brisk_run **out)
{
    if (!o || !out)
        return brisk_error_set(BRISK_EINVAL, "run_open: NULL argument");
    *out = NULL;
    if (o->n_settings < 0 || (o->n_settings > 0 && !o->settings))
        return brisk_error_set(BRISK_EINVAL, "run_open: %d settings", o->n_settings);
    brisk_run *r = calloc(1, sizeof *r);
    if (!r)
        return brisk_error_set(BRISK_ENOMEM, "run_open: out of memory");
    r->comm = o->comm;
    r->rank = brisk_comm_rank(o->comm);
    r->nproc = brisk_comm_size(o->comm);
    r->message = o->message;
    r->user = o->user;
    int err = BRISK_OK;
    if (o->resume) {
        if ((err = resume_target(o->resume, &r->ck_path)) == BRISK_OK &&
            (err = brisk_checkpoint_load(r->ck_path, &r->ck)) == BRISK_OK) {
            if (!r->ck->config)
                err = brisk_error_set(BRISK_EFORMAT, "%s: the checkpoint records no settings "
                                      "(brisk.config): it was not written by a run (brisk-train"
                                      " or brisk_run); load it with brisk_checkpoint_load or "
                                      "predict with brisk_predictor_open", r->ck_path);
            else
                err = resume_settings(r, o);
        }
    } else {
        err = new_settings(r, o);
    }
    brisk_run_config *c = &r->cfg;
    if (err == BRISK_OK)
        err = check_settings(c);
    if (err < 0)
        goto fail;
    if (c->weight_decay < 0) /* the optimizer's own default */
        c->weight_decay =
            brisk_optim_defaults((brisk_optim_kind)brisk_optim_parse(c->optimizer)).weight_decay;
    /* A new run gets its id (every rank rank 0's); logs/<model>-<id> and checkpoints inside
     * it by default. */
    if (!c->run[0]) {
        char id[BRISK_RUN_ID_MAX];
        brisk_run_id(id);
        brisk_comm_bcast_bytes(r->comm, id, sizeof id);
        snprintf(c->run, sizeof c->run, "%s", id);
    }
    if (!c->logdir[0]) {
        char slug[64];
        model_slug(c->model, slug, sizeof slug);
        snprintf(c->logdir, sizeof c->logdir, "logs/%s-%s", slug, c->run);
    }
    if (!c->checkpoint_dir[0]) {
        if (is_none(c->logdir))
            snprintf(c->checkpoint_dir, sizeof c->checkpoint_dir, "none");
        else if ((size_t)snprintf(c->checkpoint_dir, sizeof c->checkpoint_dir, "%s/checkpoints",
                                  c->logdir) >= sizeof c->checkpoint_dir) {
            err = brisk_error_set(BRISK_EINVAL, "logdir: the path is too long");
            goto fail;
        }
    }
    r->log_enabled = !is_none(c->logdir);
    err = r->rank == 0 ? claim(r) : BRISK_OK;
    if (r->nproc > 1 && brisk_comm_any(r->comm, err < 0) && err == BRISK_OK)
        err = brisk_error_set(BRISK_EIO, "rank 0 could not open the run");
    if (err < 0)
        goto fail;
    *out = r;
    return BRISK_OK;
fail:
    brisk_run_close(r);
    return err;
}

const brisk_run_config *brisk_run_get_config(const brisk_run *r) { return &r->cfg; }
const brisk_checkpoint *brisk_run_resumed(const brisk_run *r) { return r->ck; }
const char *brisk_run_resumed_path(const brisk_run *r) { return r->ck_path; }
brisk_trainer *brisk_run_trainer(brisk_run *r) { return r->t; }

/* ---- Data and the trainer ---------------------------------------------------------------- */

static int ends_with(const char *s, const char *suffix)
{
    const size_t n = strlen(s), k = strlen(suffix);
    return n > k && !strcmp(s + n - k, suffix);
}

/* One data set (the training set, or the test set) from a path of the run's kinds. */
static int load_set(const brisk_run_config *c, const char *path, const char *labels,
                    brisk_dataset *out)
{
    const brisk_target_kind kind = !strcmp(c->loss, "mse") ? BRISK_TARGET_VALUES
                                                           : BRISK_TARGET_CLASSES;
    if (ends_with(path, ".npy"))
        return brisk_dataset_load_npy(path, labels, kind, out);
    if (ends_with(path, ".csv")) {
        if (!c->label[0])
            return brisk_error_set(BRISK_EINVAL, "label: a CSV data set needs its label column "
                                   "(label=NAME or a 0-based index)");
        return brisk_dataset_load_csv(path, c->label, kind, out);
    }
    return brisk_error_set(BRISK_EINVAL, "data: %s is neither a directory of MNIST-format files,"
                           " a .npy nor a .csv file", path);
}

/* The model configuration for samples of this shape (vocab: token data's vocabulary, 0 for
 * other data). */
static int model_config(const brisk_run_config *c, brisk_shape input, int vocab,
                        brisk_model_config *mc)
{
    memset(mc, 0, sizeof *mc);
    int err;
    if (is_gpt(c->model)) {
        brisk_gpt_config g = {0};
        if (input.rank != 2 || vocab < 1)
            return brisk_error_set(BRISK_EINVAL, "model: the gpt preset trains on token data: "
                                   "give seq-len (and a text, .npy or llm.c token file)");
        if ((err = brisk_gpt_parse(c->model, &g)) == BRISK_OK) {
            g.vocab = vocab < 2 ? 2 : vocab;
            g.seq_len = input.w;
            if (c->init_from[0]) { /* the file's sizes */
                brisk_llmc_header h;
                const brisk_gpt_config asked = g;
                if ((err = brisk_llmc_read_header(c->init_from, &h)) < 0)
                    return brisk_error_set(err, "init-from: %s", brisk_error_detail());
                brisk_llmc_gpt_config(&h, &g);
                if (strcmp(c->model, "gpt") &&
                    (asked.layers != g.layers || asked.channels != g.channels ||
                     asked.heads != g.heads))
                    return brisk_error_set(BRISK_EINVAL, "model: %s, but %s holds L %d, C %d, "
                                           "%d heads (give --model gpt to take its sizes)",
                                           c->model, c->init_from, g.layers, g.channels,
                                           g.heads);
                if (g.vocab < vocab || g.max_seq < input.w)
                    return brisk_error_set(BRISK_EINVAL, "init-from: %s has a vocabulary of %d "
                                           "and %d positions; the data needs %d and %d",
                                           c->init_from, g.vocab, g.max_seq, vocab, input.w);
            }
            err = brisk_model_config_gpt(mc, &g);
        }
    } else if (c->init_from[0]) {
        return brisk_error_set(BRISK_EINVAL, "init-from: llm.c's model files hold GPTs: give "
                               "--model gpt");
    } else if (is_shorthand(c->model)) {
        err = brisk_model_config_mlp(mc, c->model, (brisk_act)brisk_act_parse(c->act));
    } else {
        const brisk_run_config d = brisk_run_config_defaults();
        if (strcmp(c->act, d.act))
            return brisk_error_set(BRISK_EINVAL, "act: applies to the shorthand of widths "
                                   "(784-256-10) only; put the activations in the layer list");
        err = brisk_model_config_set(mc, c->model, input);
    }
    if (err < 0) {
        const char *d = brisk_error_detail();
        return brisk_error_set(err, "model: %s", strncmp(d, "model: ", 7) ? d : d + 7);
    }
    if (is_gpt(c->model) && strcmp(c->loss, "ce"))
        return brisk_error_set(BRISK_EINVAL, "loss: the gpt preset's loss is ce, not %s",
                               c->loss);
    mc->loss = (brisk_loss)brisk_loss_parse(c->loss);
    if (c->label_smoothing != 0 && mc->loss != BRISK_LOSS_SOFTMAX_CE)
        return brisk_error_set(BRISK_EINVAL, "label-smoothing: only the ce loss has labels to "
                               "smooth (the loss is %s)", c->loss);
    mc->label_smoothing = (float)c->label_smoothing;
    mc->precision = strcmp(c->precision, "bf16") ? BRISK_GEMM_FP32 : BRISK_GEMM_BF16;
    if (!is_gpt(c->model) || strcmp(c->init, "auto")) /* the preset's own: gpt2 */
        mc->init = !strcmp(c->init, "he")       ? BRISK_INIT_HE
                   : !strcmp(c->init, "glorot") ? BRISK_INIT_GLOROT
                   : !strcmp(c->init, "gpt2")   ? BRISK_INIT_GPT2
                                                : BRISK_INIT_AUTO;
    return BRISK_OK;
}

/* The model's output width (builds it: an error names the layer that does not fit). */
static int model_outputs(const brisk_model_config *mc, int *outputs)
{
    brisk_model *m;
    const int err = brisk_model_create(mc, &m);
    if (err < 0) {
        const char *d = brisk_error_detail();
        return brisk_error_set(err, "model: %s", strncmp(d, "model: ", 7) ? d : d + 7);
    }
    *outputs = brisk_model_outputs(m);
    brisk_model_destroy(m);
    return BRISK_OK;
}

static brisk_shape data_shape(const brisk_dataset *ds)
{
    if (ds->tokens)
        return brisk_shape_seq(1, ds->seq_len);
    const int ch = ds->channels > 0 ? ds->channels : 1;
    return ds->rows > 0 && ds->cols > 0 && (int64_t)ch * ds->rows * ds->cols == ds->d
               ? brisk_shape_img(ch, ds->rows, ds->cols)
               : brisk_shape_vec(ds->d);
}

/* The run's own data: synthetic, an MNIST-format directory, or .npy / CSV files. */
static int load_own_data(brisk_run *r)
{
    const brisk_run_config *c = &r->cfg;
    int err;
    if (!strcmp(c->data, "synthetic")) {
        /* Shaped by the model: the shorthand's input width, else 28 x 28 images. */
        brisk_model_config mc;
        brisk_shape shape = brisk_shape_img(1, 28, 28);
        if (is_shorthand(c->model)) {
            if ((err = model_config(c, brisk_shape_vec(1), 0, &mc)) < 0)
                return err;
            shape = mc.input;
        }
        int C;
        if ((err = model_config(c, shape, 0, &mc)) < 0 || (err = model_outputs(&mc, &C)) < 0)
            return err;
        const int classes = C < 2 ? 2 : C > 256 ? 256 : C, D = (int)brisk_shape_size(shape);
        if ((err = brisk_dataset_synthetic(c->synthetic_n, D, classes, (float)c->noise, c->seed,
                                           0, &r->own_train)) < 0 ||
            (err = brisk_dataset_synthetic(c->synthetic_test_n, D, classes, (float)c->noise,
                                           c->seed, c->synthetic_n, &r->own_test)) < 0)
            return err;
        if (shape.rank == 3) {
            r->own_train.rows = r->own_test.rows = shape.h;
            r->own_train.cols = r->own_test.cols = shape.w;
        }
        r->has_test = 1;
        snprintf(r->source, sizeof r->source, "synthetic");
        return BRISK_OK;
    }
    struct stat st;
    if (c->seq_len > 0) { /* a token stream, and maybe another for the test set */
        if ((err = brisk_dataset_load_tokens(c->data, c->seq_len, &r->own_train)) < 0 ||
            (c->test[0] &&
             (err = brisk_dataset_load_tokens(c->test, c->seq_len, &r->own_test)) < 0))
            return err;
        r->has_test = c->test[0] != '\0';
    } else if (stat(c->data, &st) == 0 && S_ISDIR(st.st_mode)) {
        if ((err = brisk_dataset_load_dir(c->data, "train", &r->own_train)) < 0 ||
            (err = brisk_dataset_load_dir(c->data, "t10k", &r->own_test)) < 0) {
            if (err == BRISK_ENOENT && !strcmp(c->data, BRISK_RUN_DEFAULT_DATA))
                return brisk_error_set(err, "%s; Fashion-MNIST is not installed: install "
                                       "Debian's dataset-fashion-mnist, or give other data",
                                       brisk_error_detail());
            return err;
        }
        r->has_test = 1;
    } else if (ends_with(c->data, ".npy") || ends_with(c->data, ".csv")) {
        if ((err = load_set(c, c->data, c->labels, &r->own_train)) < 0)
            return err;
        if (c->test[0] && (err = load_set(c, c->test, c->test_labels, &r->own_test)) < 0)
            return err;
        r->has_test = c->test[0] != '\0';
    } else if (stat(c->data, &st) != 0) {
        return brisk_error_set(BRISK_ENOENT, "%s: %s (expected a directory with "
                               "train-images-idx3-ubyte[.gz] and the other MNIST-format files,"
                               " a .npy or a .csv file, or synthetic)", c->data,
                               strerror(errno));
    } else {
        return brisk_error_set(BRISK_EINVAL, "data: %s is neither a directory of MNIST-format "
                               "files, a .npy nor a .csv file", c->data);
    }
    snprintf(r->source, sizeof r->source, "%s", c->data);
    return BRISK_OK;
}

/* The samples of an optimizer step: accumulate batches of batch. */
static int step_batch(const brisk_run_config *c)
{
    return c->batch * (c->accumulate > 1 ? c->accumulate : 1);
}

/* The trainer's configuration from the settings and the data. */
static int trainer_config(brisk_run *r)
{
    const brisk_run_config *c = &r->cfg;
    brisk_trainer_config *t = &r->tcfg;
    memset(t, 0, sizeof *t);
    int err = model_config(c, data_shape(r->train), r->train->tokens ? r->train->classes : 0,
                           &t->model), C;
    if (err < 0 || (err = model_outputs(&t->model, &C)) < 0)
        return err;
    if (!r->train->tokens != (t->model.input.rank != 2))
        return brisk_error_set(BRISK_EINVAL, r->train->tokens
                               ? "model: token data (seq-len) need a language model: the gpt "
                                 "preset, or a layer list that starts with embed:V:C"
                               : "model: a language model needs token data (seq-len)");
    const int D = (int)brisk_shape_size(t->model.input);
    if (D != r->train->d)
        return brisk_error_set(BRISK_EINVAL, "model: input width %d does not match the data's "
                               "%d features per sample", D, r->train->d);
    const int classes = r->train->targets ? r->train->targets : r->train->classes;
    if (r->train->targets ? C != classes
                          : t->model.loss == BRISK_LOSS_SOFTMAX_CE
                                ? C < classes
                                : !(C == classes || (C == 1 && classes == 2)))
        return brisk_error_set(BRISK_EINVAL, "model: output width %d does not fit the data's %d "
                               "%s", C, classes, r->train->targets ? "targets" : "classes");
    t->optim = brisk_optim_defaults((brisk_optim_kind)brisk_optim_parse(c->optimizer));
    t->optim.weight_decay = (float)c->weight_decay;
    t->optim.beta2 = c->beta2;
    t->decay_matrices_only = !strcmp(c->decay, "matrices");
    t->optim.momentum = (float)c->momentum;
    t->schedule.kind = (brisk_schedule_kind)brisk_schedule_parse(c->schedule);
    t->schedule.lr = (float)c->lr;
    t->schedule.step_size = (int64_t)c->step_size * r->steps_per_epoch;
    t->schedule.gamma = (float)c->gamma;
    t->schedule.warmup = c->warmup;
    t->schedule.total = (int64_t)c->epochs * r->steps_per_epoch;
    t->schedule.min_lr = (float)c->min_lr;
    t->clip_norm = (float)c->clip_norm;
    t->batch = step_batch(c);
    t->accumulate = c->accumulate;
    t->ema_decay = c->ema;
    t->mixup = c->mixup;
    t->cutmix = c->cutmix;
    if (c->mixup > 0 && c->cutmix > 0)
        return brisk_error_set(BRISK_EINVAL, "cutmix: and mixup together: choose one");
    if (c->cutmix > 0 && (t->model.loss != BRISK_LOSS_SOFTMAX_CE || r->train->tokens ||
                          r->train->targets || t->model.input.rank != 3))
        return brisk_error_set(BRISK_EINVAL, "cutmix: it pastes a box of one image into another "
                               "and mixes their class labels, so it needs images, the ce loss "
                               "and class labels");
    if (c->mixup > 0 && (t->model.loss != BRISK_LOSS_SOFTMAX_CE || r->train->tokens ||
                         r->train->targets))
        return brisk_error_set(BRISK_EINVAL, "mixup: it mixes class labels, so it needs the ce "
                               "loss and class-labelled samples (not %s)",
                               r->train->tokens    ? "token data"
                               : r->train->targets ? "regression targets"
                                                   : "another loss");
    if ((err = brisk_augment_parse(c->augment, &t->augment)) < 0) /* its shape: the trainer */
        return err;
    t->micro_batch = c->micro_batch;
    t->threads = c->threads;
    t->seed = c->seed;
    t->comm = r->comm;
    t->inference = r->evaluate_only;
    /* Processes on one machine share its cores: by default each takes its part. */
    if (t->threads <= 0 && brisk_comm_local_size(r->comm) > 1) {
        t->threads = brisk_cpu_count() / brisk_comm_local_size(r->comm);
        t->threads = t->threads > 0 ? t->threads : 1;
    }
    if (t->threads > brisk_cpu_count())
        say(r, "threads: %d is more than the %d CPUs this process may use: threads will wait "
            "for each other (slower, same results)", t->threads, brisk_cpu_count());
    return BRISK_OK;
}

/* The normalisation: the checkpoint's when it records one; else from the training part, one
 * mean and std for images (and uint8 data), one per feature for other vectors. */
static int choose_norm(brisk_run *r)
{
    if (r->ck && r->ck->pos.norm_count) {
        r->norm_count = r->ck->pos.norm_count;
        if (!(r->norm = malloc(2 * (size_t)r->norm_count * sizeof *r->norm)))
            return brisk_error_set(BRISK_ENOMEM, "run: out of memory");
        memcpy(r->norm, r->ck->pos.norm_mean, (size_t)r->norm_count * sizeof *r->norm);
        memcpy(r->norm + r->norm_count, r->ck->pos.norm_std,
               (size_t)r->norm_count * sizeof *r->norm);
        return BRISK_OK;
    }
    const brisk_dataset *ds = r->train;
    if (ds->tokens) { /* token ids: no normalisation */
        r->norm_count = 0;
        return BRISK_OK;
    }
    const int per_feature = !ds->x && !(ds->rows > 0 && ds->cols > 0);
    r->norm_count = per_feature ? ds->d : 1;
    if (!(r->norm = malloc(2 * (size_t)r->norm_count * sizeof *r->norm)))
        return brisk_error_set(BRISK_ENOMEM, "run: out of memory");
    const int64_t n = r->n_train ? r->n_train : ds->n;
    if (!per_feature) {
        brisk_dataset_stats(ds, r->order, n, r->norm, r->norm + 1);
        return BRISK_OK;
    }
    return brisk_dataset_feature_stats(ds, r->order, n, r->norm, r->norm + r->norm_count);
}

/* The position a checkpoint records must be one these settings can reach: its step is the
 * epochs and batches done, its partial metrics count those batches, its seed is the run's. */
static int check_position(const brisk_run *r)
{
    const brisk_ckpt_position *p = &r->ck->pos;
    const int64_t want = p->epoch * r->steps_per_epoch + p->batch;
    const char *what = NULL;
    if (p->seed != r->cfg.seed)
        what = "its seed differs from the seed in its settings";
    else if (p->batch >= r->steps_per_epoch)
        what = "its batch is past the end of an epoch";
    else if (p->steps_done != want)
        what = "its step is not the epochs and batches done";
    else if (p->train.count != p->batch * step_batch(&r->cfg))
        what = "its partial metrics do not count the batches done";
    if (!what)
        return BRISK_OK;
    return brisk_error_set(BRISK_EFORMAT, "%s: the position in the checkpoint (epoch %lld, "
                           "batch %lld, step %lld, seed %llu) does not fit its settings (%lld "
                           "batches of %d per epoch, seed %llu): %s; the file is damaged or was "
                           "edited (or the data changed)", r->ck_path, (long long)p->epoch,
                           (long long)p->batch, (long long)p->steps_done,
                           (unsigned long long)p->seed, (long long)r->steps_per_epoch,
                           step_batch(&r->cfg), (unsigned long long)r->cfg.seed, what);
}

/* Copies the checkpoint's state into the trainer; refuses one of another model. */
static int restore(brisk_run *r)
{
    const brisk_model *m = brisk_trainer_model(r->t);
    const brisk_model_config *mc = brisk_model_get_config(m);
    char want[BRISK_MODEL_SPEC_MAX], have[BRISK_MODEL_SPEC_MAX];
    brisk_model_describe(m, want, sizeof want);
    brisk_model_describe(r->ck->layout, have, sizeof have);
    if (strcmp(want, have) || r->ck->model.loss != mc->loss ||
        r->ck->model.label_smoothing != mc->label_smoothing ||
        r->ck->model.precision != mc->precision ||
        brisk_shape_size(r->ck->model.input) != brisk_shape_size(mc->input))
        return brisk_error_set(BRISK_EMISMATCH, "%s holds another model (%s, loss %s, %s) "
                               "than the settings give (%s, loss %s, %s)", r->ck_path, have,
                               brisk_loss_name(r->ck->model.loss),
                               r->ck->model.precision ? "bf16" : "fp32", want,
                               brisk_loss_name(mc->loss), mc->precision ? "bf16" : "fp32");
    /* Evaluating or predicting: the moving average's weights, when the file has them. */
    const int ema = r->evaluate_only && r->ck->ema_params;
    brisk_trainer_load_state(r->t, ema ? r->ck->ema_params : r->ck->params, r->ck->opt_m,
                             r->ck->opt_v, ema ? r->ck->ema_buffers : r->ck->buffers,
                             r->ck->pos.steps_done);
    if (!r->evaluate_only && r->ck->ema_params && brisk_trainer_ema_params(r->t))
        return brisk_trainer_load_ema(r->t, r->ck->ema_params, r->ck->ema_buffers);
    return BRISK_OK;
}

/* Data, split and the trainer's configuration (no trainer yet). */
static int prepare(brisk_run *r, const brisk_dataset *train, const brisk_dataset *test)
{
    if (r->data_ready)
        return BRISK_OK;
    int err;
    if (train) {
        r->train = train;
        r->test = test;
        r->has_test = test != NULL;
        snprintf(r->source, sizeof r->source, "the program's data");
    } else {
        if ((err = load_own_data(r)) < 0)
            return err;
        r->train = &r->own_train;
        r->test = r->has_test ? &r->own_test : NULL;
    }
    if (r->test && r->test->d != r->train->d)
        return brisk_error_set(BRISK_EMISMATCH, "%s: the test samples have %d features, the "
                               "training samples %d", r->source, r->test->d, r->train->d);
    if (r->train->tokens) { /* the stream's end, in one piece */
        const int64_t n = r->train->n, n_val = (int64_t)llround((double)n * r->cfg.val_split);
        if (!(r->order = malloc((size_t)(n ? n : 1) * sizeof *r->order)))
            return brisk_error_set(BRISK_ENOMEM, "run: out of memory");
        for (int64_t i = 0; i < n; i++)
            r->order[i] = (int32_t)i;
        r->n_train = n - n_val;
    } else if ((err = brisk_split(r->train->n, r->cfg.val_split, r->cfg.seed, &r->order,
                                  &r->n_train)) < 0) {
        return err;
    }
    if (r->n_train < 1)
        return brisk_error_set(BRISK_EINVAL, "val-split: %g leaves no training samples of %lld",
                               r->cfg.val_split, (long long)r->train->n);
    r->n_val = r->train->n - r->n_train;
    if ((int64_t)r->cfg.batch * (r->cfg.accumulate > 1 ? r->cfg.accumulate : 1) > (1 << 24))
        return brisk_error_set(BRISK_EINVAL, "accumulate: %d batches of %d is more than %d "
                               "samples per step", r->cfg.accumulate, r->cfg.batch, 1 << 24);
    if (r->cfg.accumulate > 1 && r->cfg.micro_batch < r->cfg.batch &&
        r->cfg.batch % r->cfg.micro_batch)
        return brisk_error_set(BRISK_EINVAL, "accumulate: a batch of %d is not a whole number of "
                               "micro-batches of %d, so its %d batches per step would not split "
                               "into the micro-shards of one batch of %d: give a micro-batch that "
                               "divides %d", r->cfg.batch, r->cfg.micro_batch,
                               r->cfg.accumulate, step_batch(&r->cfg), r->cfg.batch);
    r->steps_per_epoch = (r->n_train + step_batch(&r->cfg) - 1) / step_batch(&r->cfg);
    /* A preset's warmup is sized for the data it was made for: on fewer steps it takes a
     * tenth of them at most (and the settings saved say so). */
    const long long steps = (long long)r->cfg.epochs * r->steps_per_epoch;
    if (r->recipe_warmup && r->cfg.warmup > steps / 10)
        r->cfg.warmup = steps / 10;
    if ((err = trainer_config(r)) < 0)
        return err;
    /* The test labels must fit the model's outputs too: said now, not after training. */
    int C;
    char name[BRISK_RUN_PATH_MAX + 64];
    snprintf(name, sizeof name, "%s", r->cfg.test[0] ? r->cfg.test : r->source);
    if (!train && !r->cfg.test[0] && strcmp(r->cfg.data, "synthetic")) { /* a directory's */
        snprintf(name, sizeof name, "%s/t10k-labels-idx1-ubyte", r->cfg.data);
        if (access(name, F_OK) != 0)
            strncat(name, ".gz", sizeof name - strlen(name) - 1);
    }
    if (r->test && ((err = model_outputs(&r->tcfg.model, &C)) < 0 ||
                    (err = brisk_dataset_check_labels(r->test, C, name)) < 0))
        return err;
    if (r->test) {
        if (!(r->test_idx = malloc((size_t)(r->test->n ? r->test->n : 1) * sizeof *r->test_idx)))
            return brisk_error_set(BRISK_ENOMEM, "run: out of memory");
        for (int64_t i = 0; i < r->test->n; i++)
            r->test_idx[i] = (int32_t)i;
    }
    if ((err = choose_norm(r)) < 0)
        return err;
    r->data_ready = 1;
    return BRISK_OK;
}

int brisk_run_load(brisk_run *r, const brisk_dataset *train, const brisk_dataset *test)
{
    if (!r)
        return brisk_error_set(BRISK_EINVAL, "run_load: NULL run");
    if (r->t)
        return BRISK_OK;
    int err = prepare(r, train, test);
    if (err < 0)
        return err;
    if ((err = brisk_trainer_create(&r->tcfg, &r->t)) < 0 ||
        (err = brisk_trainer_set_norm(r->t, r->norm_count ? r->norm : NULL,
                                      r->norm_count ? r->norm + r->norm_count : NULL,
                                      r->norm_count)) < 0)
        return err;
    if (r->cfg.init_from[0] && !r->ck && !r->evaluate_only &&
        (err = brisk_llmc_load(r->cfg.init_from, brisk_trainer_model(r->t),
                               brisk_trainer_params(r->t))) < 0)
        return brisk_error_set(err, "init-from: %s", brisk_error_detail());
    const int shards = brisk_trainer_num_shards(r->t, r->cfg.batch);
    if (shards < r->nproc && r->rank == 0 && !r->evaluate_only)
        say(r, "a batch of %d is %d micro-shard%s of %d, fewer than the %d processes: %d of "
               "them will have no work; give micro-batch %d or less (the micro-batch, not the "
               "number of processes, decides the results)", r->cfg.batch, shards,
            shards == 1 ? "" : "s", brisk_trainer_micro_batch(r->t), r->nproc,
            r->nproc - shards, r->cfg.batch / r->nproc > 0 ? r->cfg.batch / r->nproc : 1);
    if (r->ck) {
        /* Evaluating or predicting may use other data than the run's: its batches say nothing
         * of the checkpoint's position. */
        if (!r->evaluate_only && (err = check_position(r)) < 0)
            return err;
        if ((err = restore(r)) < 0)
            return err;
    }
    return BRISK_OK;
}

void brisk_run_get_data(const brisk_run *r, brisk_run_data *out)
{
    memset(out, 0, sizeof *out);
    out->train = r->train;
    out->test = r->test;
    out->n_train = r->n_train;
    out->n_val = r->n_val;
    out->n_test = r->test ? r->test->n : 0;
    out->source = r->source;
}

int brisk_run_describe_model(brisk_run *r, char *buf, size_t size, size_t *memory_bytes)
{
    int err = prepare(r, NULL, NULL);
    if (err < 0)
        return err;
    brisk_model *m;
    if ((err = brisk_model_create(&r->tcfg.model, &m)) < 0)
        return err;
    brisk_model_summary_batch(m, r->tcfg.micro_batch > 0 && r->tcfg.micro_batch < r->tcfg.batch
                                     ? r->tcfg.micro_batch : r->tcfg.batch, buf, size);
    brisk_model_destroy(m);
    if (memory_bytes)
        *memory_bytes = brisk_trainer_memory_bytes(&r->tcfg);
    return BRISK_OK;
}

/* ---- Training ------------------------------------------------------------------------- */

/* The text summary: every setting and the build, as a Markdown table. */
static void log_settings(brisk_run *r, brisk_tb *tb, int64_t step)
{
    char *text = malloc(16384), plan[256];
    if (!text)
        return;
    size_t at = 0;
    brisk_trainer_describe_plan(r->t, step_batch(&r->cfg), plan, sizeof plan);
    at += (size_t)snprintf(text + at, 16384 - at,
                           "| setting | value |\n|---|---|\n| brisk | %s |\n| threads | %d |\n"
                           "| micro-batch | %d |\n| a batch | %s |\n| matrix kernel | %s |\n"
                           "| parameters | %zu |\n",
                           BRISK_VERSION, brisk_trainer_threads(r->t),
                           brisk_trainer_micro_batch(r->t), plan, brisk_gemm_isa(),
                           brisk_model_num_params(brisk_trainer_model(r->t)));
    int n;
    const brisk_run_setting *s = brisk_run_settings(&n);
    for (int i = 0; i < n && at < 16000; i++) {
        char v[BRISK_RUN_PATH_MAX];
        brisk_run_config_get(&r->cfg, s[i].name, v, sizeof v);
        if (s[i].type == BRISK_SETTING_REAL)
            snprintf(v, sizeof v, "%g", atof(v));
        at += (size_t)snprintf(text + at, 16384 - at, "| %s | %s |\n", s[i].name, v);
    }
    brisk_log_text(tb->p, tb->train, "config", step, text);
    free(text);
}

/* Flushes and closes the logs (brisk_fit ended the hparams session, if it ended). Returns
 * BRISK_OK or the logger's error (into res->logs_error). */
static int close_logs(brisk_tb *tb, brisk_run_result *res)
{
    if (!tb->lg)
        return BRISK_OK;
    if (tb->failed && !res->logs_error[0])
        snprintf(res->logs_error, sizeof res->logs_error, "%s", tb->error);
    const int err = brisk_tb_close(tb, &res->logging_cpu_seconds);
    if (err < 0 && !res->logs_error[0])
        snprintf(res->logs_error, sizeof res->logs_error, "%s", brisk_error_detail());
    return err;
}

/* The caller's callbacks, passed on, with the run's own look at every epoch. */
typedef struct run_hooks {
    brisk_run *r;
    const brisk_fit_config *cb; /* NULL: none */
    int warned_steal;
} run_hooks;

/* An epoch of at least STEAL_MIN_SECONDS whose steal is over STEAL_WARN is worth a warning
 * (once a run): a hypervisor that runs other guests on this machine's CPUs slows every step
 * and makes step times noisy. */
#define STEAL_WARN 0.10
#define STEAL_MIN_SECONDS 2.0

static int hook_step(void *user, const brisk_fit_progress *p)
{
    const run_hooks *h = user;
    return h->cb && h->cb->on_step ? h->cb->on_step(h->cb->user, p) : 0;
}

static int hook_epoch(void *user, const brisk_fit_progress *p)
{
    run_hooks *h = user;
    if (h->r->rank == 0 && !h->warned_steal && p->steal > STEAL_WARN &&
        p->epoch_seconds >= STEAL_MIN_SECONDS) {
        h->warned_steal = 1;
        brisk_message(h->r->message, h->r->user,
                      "steal: the hypervisor gave %.0f%% of this machine's CPU time to other "
                      "guests during epoch %lld: every step is slower and its time noisier "
                      "(the results do not change)", 100 * p->steal, (long long)p->epoch);
    }
    return h->cb && h->cb->on_epoch ? h->cb->on_epoch(h->cb->user, p) : 0;
}

static void hook_test(void *user, const brisk_fit_progress *p)
{
    const run_hooks *h = user;
    if (h->cb && h->cb->on_test)
        h->cb->on_test(h->cb->user, p);
}

int brisk_run_train(brisk_run *r, const brisk_fit_config *cb, brisk_run_result *res)
{
    if (!r || !res)
        return brisk_error_set(BRISK_EINVAL, "run_train: NULL argument");
    memset(res, 0, sizeof *res);
    if (r->evaluate_only)
        return brisk_error_set(BRISK_ESTATE, "run_train: the run was opened to evaluate");
    int err = brisk_run_load(r, NULL, NULL);
    if (err < 0)
        return err;
    const brisk_run_config *c = &r->cfg;
    brisk_tb tb;
    memset(&tb, 0, sizeof tb);
    char *settings = brisk_run_config_to_json(c);
    if (!settings)
        return brisk_error_set(BRISK_ENOMEM, "run: out of memory");
    if (r->log_enabled && r->rank == 0) {
        /* START at the first step this process logs: whatever an earlier process logged at a
         * later step (after the checkpoint resumed, or on a timeline abandoned by a resume
         * from an older one) is purged. */
        const int64_t first = brisk_trainer_steps_done(r->t) + 1;
        if ((err = brisk_tb_open(&tb, c->logdir, first, brisk_tb_ring_bytes(r->t))) < 0) {
            free(settings);
            return brisk_error_set(err, "logdir: cannot open the TensorBoard logs: %s",
                                   brisk_error_detail());
        }
        log_settings(r, &tb, first);
    }
    brisk_fit_config fc = brisk_fit_defaults();
    run_hooks hooks = {r, cb, 0};
    fc.stop = cb ? cb->stop : NULL;
    fc.user = &hooks;
    fc.on_step = cb && cb->on_step ? hook_step : NULL;
    fc.on_epoch = hook_epoch;
    fc.on_test = cb && cb->on_test ? hook_test : NULL;
    fc.epochs = c->epochs;
    fc.in_order = c->in_order;
    fc.n_samples = c->samples;
    fc.sample_gen = (brisk_generate_config){.tokens = c->sample_tokens, .temperature = 0.8,
                                            .seed = c->seed};
    fc.seed = c->seed;
    if (r->ck)
        fc.start = r->ck->pos;
    fc.tb = tb.lg ? &tb : NULL;
    fc.log_every = c->log_every;
    fc.histogram_every = r->log_enabled ? c->histogram_every : 0;
    fc.report = r->log_enabled && c->report;
    fc.checkpoint_dir = is_none(c->checkpoint_dir) ? NULL : c->checkpoint_dir;
    fc.run_id = c->run;
    fc.keep = c->keep;
    fc.config_json = settings;
    const brisk_hparam hp[] = {{.name = "model", .type = BRISK_HPARAM_STRING, .string = c->model},
                               {.name = "act", .type = BRISK_HPARAM_STRING, .string = c->act}};
    fc.hparams = hp;
    fc.n_hparams = 2;
    const brisk_fit_metric metric = (brisk_fit_metric)brisk_fit_metric_parse(c->monitor);
    fc.early_stop = (brisk_fit_policy){c->early_stop, c->min_delta, metric};
    fc.keep_best = c->keep_best;
    fc.best_metric = metric;
    fc.best_min_delta = c->min_delta;
    fc.plateau = (brisk_fit_policy){c->plateau, c->min_delta, metric};
    fc.plateau_factor = (float)c->plateau_factor;
    fc.plateau_min_lr = (float)c->plateau_min_lr;
    if (r->test) {
        fc.test = r->test;
        fc.test_idx = r->test_idx;
        fc.n_test = r->test->n;
    }
    res->already_finished = r->ck && r->ck->pos.epoch >= c->epochs && r->ck->pos.batch == 0;
    err = brisk_fit(r->t, r->train, r->order, r->n_train, r->order + r->n_train, r->n_val, &fc,
                    &res->fit);
    free(settings);
    if (err < 0) { /* its detail says it all, a failure of the logs included */
        char detail[1024];
        snprintf(detail, sizeof detail, "%s", brisk_error_detail());
        close_logs(&tb, res);
        res->logs_error[0] = '\0';
        return brisk_error_set(err, "%s", detail);
    }
    res->checksum = brisk_model_checksum(brisk_trainer_model(r->t), brisk_trainer_params(r->t));
    if (brisk_trainer_ema_params(r->t))
        res->ema_checksum = brisk_model_checksum(brisk_trainer_model(r->t),
                                                 brisk_trainer_ema_params(r->t));
    if (res->fit.end == BRISK_FIT_STOPPED) { /* the session goes on after a resume */
        const int e = close_logs(&tb, res);
        return e < 0 ? brisk_error_set(e, "%s", res->logs_error) : BRISK_OK;
    }
    /* brisk_fit evaluated and logged the test set before its last checkpoint; a run resumed
     * after it had finished trains nothing: its test metrics (logged then) are evaluated. */
    res->test = res->fit.test;
    res->test_ema = res->fit.test_ema;
    res->tested = res->fit.tested;
    if (!res->tested && r->test) {
        if ((err = brisk_trainer_evaluate(r->t, r->test, r->test_idx, r->test->n,
                                          &res->test)) < 0 ||
            (brisk_trainer_ema_params(r->t) &&
             (err = brisk_trainer_evaluate_ema(r->t, r->test, r->test_idx, r->test->n,
                                               &res->test_ema)) < 0)) {
            char detail[1024];
            snprintf(detail, sizeof detail, "%s", brisk_error_detail());
            close_logs(&tb, res);
            return brisk_error_set(err, "%s", detail);
        }
        res->tested = 1;
    }
    const int e = close_logs(&tb, res);
    return e < 0 ? brisk_error_set(e, "the TensorBoard logs are incomplete: %s",
                                   res->logs_error)
                 : BRISK_OK;
}

int brisk_run_lr_find(brisk_run *r, const brisk_lr_find_config *cfg, brisk_lr_find_result *res)
{
    if (!r || !cfg || !res)
        return brisk_error_set(BRISK_EINVAL, "run_lr_find: NULL argument");
    memset(res, 0, sizeof *res);
    if (r->evaluate_only || r->ck)
        return brisk_error_set(BRISK_ESTATE, "lr-find: a range test starts a new run (not a "
                               "resume or a checkpoint opened to evaluate)");
    int err = brisk_run_load(r, NULL, NULL);
    if (err < 0)
        return err;
    brisk_tb tb;
    memset(&tb, 0, sizeof tb);
    if (r->log_enabled && r->rank == 0) {
        if ((err = brisk_tb_open(&tb, r->cfg.logdir, 1, brisk_tb_ring_bytes(r->t))) < 0)
            return brisk_error_set(err, "logdir: cannot open the TensorBoard logs: %s",
                                   brisk_error_detail());
        log_settings(r, &tb, 1);
    }
    brisk_lr_find_config c = *cfg;
    c.tb = tb.lg ? &tb : NULL;
    err = brisk_lr_find(r->t, r->train, r->order, r->n_train, &c, res);
    char detail[1024];
    snprintf(detail, sizeof detail, "%s", err < 0 ? brisk_error_detail() : "");
    brisk_run_result logs;
    memset(&logs, 0, sizeof logs);
    const int e = close_logs(&tb, &logs);
    if (err < 0)
        return brisk_error_set(err, "%s", detail);
    return e < 0 ? brisk_error_set(e, "the TensorBoard logs are incomplete: %s", logs.logs_error)
                 : BRISK_OK;
}

/* ---- Evaluating a run's checkpoint ------------------------------------------------------ */

int brisk_run_open_checkpoint(const char *checkpoint, const char *const *settings,
                              int n_settings, brisk_comm *comm, brisk_run **out)
{
    if (!checkpoint || !out)
        return brisk_error_set(BRISK_EINVAL, "run_open_checkpoint: NULL argument");
    *out = NULL;
    brisk_run *r = calloc(1, sizeof *r);
    if (!r)
        return brisk_error_set(BRISK_ENOMEM, "run: out of memory");
    r->comm = comm;
    r->rank = brisk_comm_rank(comm);
    r->nproc = brisk_comm_size(comm);
    r->evaluate_only = 1;
    brisk_run_options o = {.settings = settings, .n_settings = n_settings};
    int err;
    if (!(r->ck_path = malloc(PATH_MAX)))
        err = brisk_error_set(BRISK_ENOMEM, "run: out of memory");
    else if ((err = brisk_run_checkpoint_path(checkpoint, r->ck_path, PATH_MAX)) == BRISK_OK &&
             (err = brisk_checkpoint_load(r->ck_path, &r->ck)) == BRISK_OK) {
        if (!r->ck->config)
            err = brisk_error_set(BRISK_EFORMAT, "%s: the checkpoint records no settings "
                                  "(brisk.config): evaluate it on other data with "
                                  "brisk_predictor_open (brisk-train --predict --input)",
                                  r->ck_path);
        else
            err = resume_settings(r, &o);
    }
    if (err < 0) {
        brisk_run_close(r);
        return err;
    }
    if (r->cfg.weight_decay < 0)
        r->cfg.weight_decay = 0; /* not used: evaluation only */
    snprintf(r->cfg.logdir, sizeof r->cfg.logdir, "none");
    snprintf(r->cfg.checkpoint_dir, sizeof r->cfg.checkpoint_dir, "none");
    *out = r;
    return BRISK_OK;
}

int brisk_run_evaluate(brisk_run *r, const char *path, brisk_metrics *out)
{
    if (!r || !out)
        return brisk_error_set(BRISK_EINVAL, "run_evaluate: NULL argument");
    memset(out, 0, sizeof *out);
    int err = brisk_run_load(r, NULL, NULL);
    if (err < 0)
        return err;
    if (!r->test)
        return brisk_error_set(BRISK_EINVAL, "test: the run has no test set (give test=FILE)");
    if (!path)
        return brisk_trainer_evaluate(r->t, r->test, r->test_idx, r->test->n, out);
    const int C = brisk_model_outputs(brisk_trainer_model(r->t));
    float *v = malloc(sizeof *v * (size_t)(r->test->n ? r->test->n : 1) * (size_t)C);
    if (!v)
        return brisk_error_set(BRISK_ENOMEM, "out of memory for %lld predictions",
                               (long long)r->test->n);
    err = brisk_trainer_predict(r->t, r->test, r->test_idx, r->test->n, v, out);
    if (err == BRISK_OK && r->rank == 0)
        err = brisk_predictor_write(path, v, r->test->n, C, r->tcfg.model.loss);
    free(v);
    return err;
}

void brisk_run_close(brisk_run *r)
{
    if (!r)
        return;
    brisk_trainer_destroy(r->t);
    brisk_lock_release(r->locks[0]);
    brisk_lock_release(r->locks[1]);
    brisk_checkpoint_free(r->ck);
    free(r->ck_path);
    brisk_dataset_free(&r->own_train);
    brisk_dataset_free(&r->own_test);
    free(r->order);
    free(r->test_idx);
    free(r->norm);
    free(r);
}
