/* The layer interface's side of core (brisk/layer.h): the registry of layer kinds, built in
 * and registered, and what a layer's code may call: argument parsing and its tensors. Below
 * the model: nothing here knows brisk_model. */
#include "brisk/layer.h"

#include "brisk/error.h"
#include "core_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_REGISTERED 64

/* ---- Layer kinds ---------------------------------------------------------------------- */

static const brisk_layer_ops *const builtin_ops[] = {
    &brisk__dense_ops,   &brisk__conv_ops,    &brisk__maxpool_ops,    &brisk__avgpool_ops,
    &brisk__gap_ops,     &brisk__flatten_ops, &brisk__relu_ops,       &brisk__leaky_relu_ops,
    &brisk__gelu_ops,    &brisk__tanh_ops,    &brisk__sigmoid_ops,    &brisk__dropout_ops,
    &brisk__batchnorm_ops, &brisk__layernorm_ops, &brisk__res_ops, &brisk__embed_ops,
    &brisk__posembed_ops, &brisk__attention_ops,
};
#define N_BUILTIN (sizeof builtin_ops / sizeof builtin_ops[0])

static const brisk_layer_ops *registered[MAX_REGISTERED];
static int n_registered;
static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;

const brisk_layer_ops *brisk_layer_find(const char *kind)
{
    for (size_t i = 0; i < N_BUILTIN; i++)
        if (!strcmp(builtin_ops[i]->kind, kind))
            return builtin_ops[i];
    pthread_mutex_lock(&registry_mu);
    const brisk_layer_ops *found = NULL;
    for (int i = 0; i < n_registered && !found; i++)
        if (!strcmp(registered[i]->kind, kind))
            found = registered[i];
    pthread_mutex_unlock(&registry_mu);
    return found;
}

int brisk_layer_register(const brisk_layer_ops *ops)
{
    if (!ops || !ops->kind || !ops->kind[0] || !ops->parse || !ops->setup || !ops->forward ||
        !ops->backward || !ops->describe)
        return brisk_error_set(BRISK_EINVAL, "layer register: a layer needs a kind and parse, "
                               "setup, forward, backward and describe");
    for (const char *p = ops->kind; *p; p++)
        if (*p == ',' || *p == ':' || *p == ' ')
            return brisk_error_set(BRISK_EINVAL, "layer register: kind '%s' may not contain "
                                   "',', ':' or spaces", ops->kind);
    if (brisk_layer_find(ops->kind))
        return brisk_error_set(BRISK_EINVAL, "layer register: kind '%s' exists", ops->kind);
    pthread_mutex_lock(&registry_mu);
    int err = BRISK_OK;
    if (n_registered == MAX_REGISTERED)
        err = brisk_error_set(BRISK_EINVAL, "layer register: more than %d kinds",
                              MAX_REGISTERED);
    else
        registered[n_registered++] = ops;
    pthread_mutex_unlock(&registry_mu);
    return err;
}

int brisk__arg_int(const char *s, const char *prefix, long lo, long hi, long *v)
{
    const size_t np = prefix ? strlen(prefix) : 0;
    if (np && strncmp(s, prefix, np))
        return -1;
    char *end;
    errno = 0;
    const long x = strtol(s + np, &end, 10);
    if (end == s + np || *end || errno || x < lo || x > hi)
        return -1;
    *v = x;
    return 0;
}

int brisk__no_args(brisk_layer *l, int argc, const char *const *argv, char *err, size_t errlen)
{
    (void)argv;
    if (argc) {
        snprintf(err, errlen, "%s takes no arguments", l->ops->kind);
        return -1;
    }
    return 0;
}

/* ---- Layer tensors -------------------------------------------------------------------- */

int brisk_layer_add_tensor(brisk_layer *l, const char *suffix, int ndim, const int *shape,
                           brisk_tensor_init init, int fan_in, int fan_out, int buffer)
{
    if (l->n_tensors == BRISK_LAYER_MAX_TENSORS)
        return brisk_error_set(BRISK_EINVAL, "layer %d: more than %d tensors", l->index,
                               BRISK_LAYER_MAX_TENSORS);
    if (ndim < 0 || ndim > BRISK_MAX_DIMS)
        return brisk_error_set(BRISK_EINVAL, "layer %d: %d dimensions", l->index, ndim);
    brisk_tensor_view *v = &l->tensors[l->n_tensors];
    memset(v, 0, sizeof *v);
    snprintf(v->name, sizeof v->name, "%d.%s", l->index, suffix);
    v->ndim = ndim;
    size_t count = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 1)
            return brisk_error_set(BRISK_EINVAL, "layer %d: tensor %s has dimension %d",
                                   l->index, v->name, shape[d]);
        v->shape[d] = shape[d];
        count *= (size_t)shape[d];
        if (count > (size_t)1 << 36)
            return brisk_error_set(BRISK_EINVAL, "layer %d: tensor %s is too large",
                                   l->index, v->name);
    }
    v->count = count;
    v->rows = ndim ? shape[0] : 1;
    v->cols = ndim ? (int)(count / (size_t)shape[0]) : 1;
    v->layer = l->index;
    v->buffer = buffer;
    v->init = init;
    v->fan_in = fan_in;
    v->fan_out = fan_out;
    return l->n_tensors++;
}

const brisk_tensor_view *brisk_layer_tensor(const brisk_layer *l, int k)
{
    BRISK_ASSERT(k >= 0 && k < l->n_tensors);
    return &l->tensors[k];
}

float *brisk_layer_data(const brisk_layer *l, int k, const float *slab)
{
    return (float *)(uintptr_t)(slab + brisk_layer_tensor(l, k)->offset);
}
