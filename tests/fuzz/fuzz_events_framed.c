/* The event-file reader past the CRCs: the input is a list of records, each a 2-byte
 * little-endian length and that many bytes (the last one takes what is left), which the
 * harness frames with valid CRCs (brisk_tfrecord_frame); the first input byte cuts that many
 * bytes (mod 64) off the end, to tear the last record. Then the file is read as brisk-events
 * reads it: the framing, every record decoded as a tensorboard.Event, and every summary
 * value's fields visited. (fuzz_events feeds raw bytes, which rarely pass the CRCs.) */
#include "brisk/tfrecord.h"
#include "fuzz_util.h"
#include "tb_event.pb-c.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Touches what a reader looks at, so that a bad pointer or length shows under ASan. */
static size_t visit_value(const Tensorboard__Summary__Value *v)
{
    size_t sum = v->tag ? strlen(v->tag) : 0;
    if (v->metadata && v->metadata->plugin_data && v->metadata->plugin_data->plugin_name)
        sum += strlen(v->metadata->plugin_data->plugin_name) +
               v->metadata->plugin_data->content.len;
    switch (v->value_case) {
    case TENSORBOARD__SUMMARY__VALUE__VALUE_SIMPLE_VALUE: sum += v->simple_value > 0; break;
    case TENSORBOARD__SUMMARY__VALUE__VALUE_HISTO:
        for (size_t i = 0; i < v->histo->n_bucket_limit; i++)
            sum += v->histo->bucket_limit[i] > 0;
        for (size_t i = 0; i < v->histo->n_bucket; i++)
            sum += v->histo->bucket[i] > 0;
        break;
    case TENSORBOARD__SUMMARY__VALUE__VALUE_IMAGE:
        for (size_t i = 0; i < v->image->encoded_image_string.len; i++)
            sum += v->image->encoded_image_string.data[i];
        break;
    case TENSORBOARD__SUMMARY__VALUE__VALUE_TENSOR:
        for (size_t i = 0; i < v->tensor->n_string_val; i++)
            sum += v->tensor->string_val[i].len;
        for (size_t i = 0; i < v->tensor->n_float_val; i++)
            sum += v->tensor->float_val[i] > 0;
        if (v->tensor->tensor_shape)
            for (size_t i = 0; i < v->tensor->tensor_shape->n_dim; i++)
                sum += v->tensor->tensor_shape->dim[i] != NULL;
        break;
    default: break;
    }
    return sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t len;
    uint8_t *file = fuzz_framed_records(data, size, &len);
    if (!file)
        return 0;
    size_t off = 0, n, sum = 0;
    const uint8_t *rec;
    int rc;
    while ((rc = brisk_tfrecord_next(file, len, &off, &rec, &n)) == 1) {
        if (rec < file || rec + n > file + len || off > len)
            abort();
        Tensorboard__Event *ev = tensorboard__event__unpack(NULL, n, rec);
        if (!ev)
            continue;
        if (ev->source_metadata && ev->source_metadata->writer)
            sum += strlen(ev->source_metadata->writer);
        if (ev->what_case == TENSORBOARD__EVENT__WHAT_SESSION_LOG)
            sum += (size_t)ev->session_log->status;
        if (ev->what_case == TENSORBOARD__EVENT__WHAT_SUMMARY)
            for (size_t k = 0; k < ev->summary->n_value; k++) {
                if (!ev->summary->value[k])
                    abort();
                sum += visit_value(ev->summary->value[k]);
            }
        tensorboard__event__free_unpacked(ev, NULL);
    }
    /* A torn tail is reported as such, never as a clean end, and only when bytes are left. */
    if (rc == 0 && off != len)
        abort();
    free(file);
    return (int)(sum & 0);
}
