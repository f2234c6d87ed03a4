/* The report's reader and writer (brisk/report.h) on any event file: the input is framed as
 * in fuzz_events_framed (records with valid CRCs, the last one torn by the first byte), read by
 * lr_log_read with its own protobuf scanner, and rendered as the HTML report and as the
 * terminal plot (Unicode and ASCII). Checks that the HTML is whole (ends with </html>) and
 * holds no raw control byte, whatever the tags and texts were. */
#define _GNU_SOURCE
#include "brisk/logread.h"
#include "brisk/report.h"
#include "brisk/tfrecord.h"
#include "fuzz_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void quiet(void *user, const char *line)
{
    (void)user;
    (void)line;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const size_t tear = data[0] % 64;
    size_t in = 1, cap = size * 2 + 64, len = 0;
    uint8_t *file = malloc(cap);
    if (!file)
        return 0;
    while (in < size) {
        size_t n = size - in;
        if (n >= 2) {
            const size_t want = (size_t)data[in] | (size_t)data[in + 1] << 8;
            in += 2;
            n = want < size - in ? want : size - in;
        } else {
            in = size;
            n = 0;
        }
        if (len + n + BRISK_TFRECORD_OVERHEAD > cap)
            break;
        len += brisk_tfrecord_frame(data + in, n, file + len);
        in += n;
    }
    len = tear < len ? len - tear : 0;
    char path[64];
    const int fd = fuzz_memfile(file, len, path);
    free(file);
    if (fd < 0)
        return 0;
    const brisk_report_options opt = {.threads = 1, .message = quiet};
    char *html;
    size_t n;
    if (lr_report_html(path, &opt, &html, &n) == 0) {
        if (n < 8 || strcmp(html + n - 8, "</html>\n"))
            abort();
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)html[i] < 0x20 && html[i] != '\n' && html[i] != '\t')
                abort();
        free(html);
    }
    FILE *out = fopen("/dev/null", "w");
    if (out) {
        const brisk_plot_options plot = {.width = 60, .height = 6, .threads = 1,
                                         .message = quiet};
        brisk_report_plot(path, out, &plot);
        const brisk_plot_options ascii = {.width = 40, .height = 4, .ascii = 1, .color = 1,
                                          .threads = 1, .message = quiet};
        brisk_report_plot(path, out, &ascii);
        fclose(out);
    }
    close(fd);
    return 0;
}
