/* The report's reader and writer (brisk/report.h) on any event file: the input is framed as
 * in fuzz_events_framed (fuzz_framed_records: valid CRCs, the last record torn), read by
 * lr_log_read with its own protobuf scanner, and rendered as the HTML report and as the
 * terminal plot (Unicode and ASCII). Checks that the HTML is whole (ends with </html>) and
 * holds no raw control byte, whatever the tags and texts were. */
#define _GNU_SOURCE
#include "brisk/logread.h"
#include "brisk/report.h"
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
    size_t len;
    uint8_t *file = fuzz_framed_records(data, size, &len);
    if (!file)
        return 0;
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
