/* The event-file reader (what brisk-events and the tests do): TFRecord framing with both
 * CRCs, then every record decoded as a tensorboard.Event. */
#include "brisk/error.h"
#include "brisk/tfrecord.h"
#include "tb_event.pb-c.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0, n;
    const uint8_t *rec;
    int rc;
    while ((rc = brisk_tfrecord_next(data, size, &off, &rec, &n)) == 1) {
        if (rec < data || rec + n > data + size || off > size)
            abort();
        Tensorboard__Event *ev = tensorboard__event__unpack(NULL, n, rec);
        if (ev) {
            if (ev->what_case == TENSORBOARD__EVENT__WHAT_SUMMARY)
                for (size_t k = 0; k < ev->summary->n_value; k++)
                    if (!ev->summary->value[k])
                        abort();
            tensorboard__event__free_unpacked(ev, NULL);
        }
    }
    return 0;
}
