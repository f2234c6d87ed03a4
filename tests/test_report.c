/* brisk/report.h and the reader under it (brisk/logread.h): logs written by Brisk's logger
 * read back as TensorBoard shows them (the purge rule of a resumed run, a torn tail, hparams,
 * histogram bands), the report's refusals, its determinism, the terminal plot, and the live
 * report the logging thread refreshes. The browser checks are in report_test.py. */
#define _GNU_SOURCE
#include "brisk/error.h"
#include "brisk/logger.h"
#include "brisk/logread.h"
#include "brisk/report.h"
#include "test_util.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* A whole file as a NUL-terminated string (test_read_file's bytes are not). */
static uint8_t *read_text(const char *path, size_t *len)
{
    uint8_t *b = test_read_file(path, len);
    uint8_t *t = realloc(b, *len + 1);
    assert_non_null(t);
    t[*len] = '\0';
    return t;
}

static char *path_in(const char *dir, const char *name)
{
    char *p = NULL;
    assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
    return p;
}

/* One process's logs: runs "" (hparams), train and validation; `loss` at steps first..last in
 * both, with value base + step in train and base - step in validation; a histogram and a text in train. */
static void write_logs(const char *logdir, int64_t first, int64_t last, double base)
{
    brisk_logger *lg;
    assert_int_equal(brisk_logger_create(&(brisk_logger_config){.logdir = logdir}, &lg), 0);
    int root, train, val;
    assert_int_equal(brisk_logger_add_run(lg, "", first, &root), 0);
    assert_int_equal(brisk_logger_add_run(lg, "train", first, &train), 0);
    assert_int_equal(brisk_logger_add_run(lg, "validation", first, &val), 0);
    brisk_log_producer *p;
    assert_int_equal(brisk_logger_producer(lg, &p), 0);
    const brisk_hparam hp[] = {{"lr", BRISK_HPARAM_NUMBER, 0.001, NULL, 0},
                               {"model", BRISK_HPARAM_STRING, 0, "mlp <b>", 0},
                               {"bn", BRISK_HPARAM_BOOL, 0, NULL, 1}};
    const brisk_metric m[] = {{"validation", "loss"}};
    if (first <= 1)
        assert_int_equal(brisk_log_hparams(p, root, hp, 3, m, 1), 0);
    float x[1000];
    for (int i = 0; i < 1000; i++)
        x[i] = (float)i / 999.0f; /* uniform on [0, 1] */
    for (int64_t s = first; s <= last; s++) {
        assert_int_equal(brisk_log_scalar(p, train, "loss", s, base + (double)s), 0);
        assert_int_equal(brisk_log_scalar(p, val, "loss", s, base - (double)s), 0);
    }
    assert_int_equal(brisk_log_histogram(p, train, "weights", last, x, 1000), 0);
    assert_int_equal(brisk_log_text(p, train, "note", last, "a <note> & \x01 more"), 0);
    assert_int_equal(brisk_log_hparams_end(p, root, BRISK_SESSION_SUCCESS), 0);
    assert_int_equal(brisk_logger_close(lg), 0);
    brisk_logger_destroy(lg);
}

static const lr_run *run_of(const lr_log *log, const char *name)
{
    for (size_t i = 0; i < log->n_runs; i++)
        if (!strcmp(log->runs[i].name, name))
            return &log->runs[i];
    return NULL;
}

static void test_read_back_with_purge(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    write_logs(dir, 1, 10, 100);
    sleep(1); /* the second process's files are named after a later second */
    write_logs(dir, 6, 12, 200); /* resumed at step 6: steps 6..10 of the first are replaced */
    lr_log log;
    assert_int_equal(lr_log_read(dir, 0, &log), 0);
    assert_int_equal(log.n_problems, 0);
    assert_int_equal(log.n_runs, 3);
    const lr_run *train = run_of(&log, "train"), *root = run_of(&log, ".");
    assert_non_null(train);
    assert_non_null(root);
    assert_int_equal(train->n_files, 2);
    const lr_scalars *s = lr_run_scalars(train, "loss");
    assert_non_null(s);
    assert_int_equal(s->n, 12);
    for (size_t i = 0; i < s->n; i++) {
        assert_int_equal(lr_step(s, i), (int64_t)i + 1);
        assert_close(s->value[i], (i < 5 ? 100.0 : 200.0) + (double)(i + 1), 0, 0);
    }
    assert_null(lr_run_scalars(train, "los"));
    /* hparams: numbers as the shortest text that reads back, strings, bools; the metric. */
    assert_int_equal(root->n_hparams, 3);
    assert_string_equal(root->hparams[0].name, "lr");
    assert_string_equal(root->hparams[0].text, "0.001");
    assert_true(root->hparams[0].is_number);
    assert_string_equal(root->hparams[1].text, "mlp <b>");
    assert_string_equal(root->hparams[2].text, "true");
    assert_int_equal(root->n_metrics, 1);
    assert_string_equal(root->metrics[0], "validation\tloss");
    assert_int_equal(root->session_status, 1);
    /* Histogram bands of a uniform [0, 1]: increasing, min 0, median near 0.5, max 1. */
    assert_int_equal(train->n_hists, 1);
    assert_int_equal(train->hists[0].n, 2); /* step 10, then 12 */
    const lr_hist_point *h = &train->hists[0].p[1];
    assert_int_equal(h->step, 12);
    assert_close(h->q[0], 0, 0, 1e-9);
    assert_close(h->q[LR_BANDS - 1], 1, 0, 1e-6);
    assert_close(h->q[4], 0.5, 0, 0.06);
    for (int k = 1; k < LR_BANDS; k++)
        assert_true(h->q[k] >= h->q[k - 1]);
    assert_int_equal(train->n_texts, 1);
    assert_int_equal(train->texts[0].step, 12);
    lr_log_free(&log);
    test_rmdir(dir);
}

/* How a series keeps its steps: not at all while they keep one stride, as 32-bit offsets from
 * the first once it breaks, whole once one lies more than 2^32 - 1 past the first; the purge
 * rule and the values hold through each change. */
typedef struct series_case {
    const char *tag;
    int n;
    int64_t steps[8];
    int want_n;
    int64_t want_steps[8];
    float want_values[8];
    char form; /* 's' stride, 'd' offsets, 'w' whole */
} series_case;

static void test_series_step_forms(void **state)
{
    (void)state;
    const int64_t far = (int64_t)1 << 40;
    static const series_case cases[] = {
        {"stride", 4, {100, 110, 120, 130}, 4, {100, 110, 120, 130}, {1, 2, 3, 4}, 's'},
        {"one", 1, {-7}, 1, {-7}, {1}, 's'},
        {"broken", 5, {10, 20, 30, 35, 36}, 5, {10, 20, 30, 35, 36}, {1, 2, 3, 4, 5}, 'd'},
        /* a restart at 20 drops 20 and 30; the stride of what is left is 5, then 2 */
        {"purged", 6, {10, 20, 30, 20, 25, 27}, 4, {10, 20, 25, 27}, {1, 4, 5, 6}, 'd'},
        {"restart", 4, {5, 6, 7, 1}, 1, {1}, {4}, 's'},
        {"far", 7, {-3, 5, 0, 1, 5, 6, 0}, 4, {-3, 5, 6, 0}, {1, 5, 6, 7}, 'w'},
        {"far-stride", 3, {0, 0, 0}, 3, {0, 0, 0}, {1, 2, 3}, 's'},
    };
    series_case c[sizeof cases / sizeof *cases];
    memcpy(c, cases, sizeof c);
    /* far: -3, 5, far, far + 1, then a restart at 5 and 6, then 4 * far */
    c[5].steps[2] = far, c[5].steps[3] = far + 1, c[5].steps[6] = 4 * far;
    c[5].want_steps[3] = 4 * far;
    /* far-stride: 0, far, 2 * far keep one stride however far apart */
    c[6].steps[1] = far, c[6].steps[2] = 2 * far;
    c[6].want_steps[1] = far, c[6].want_steps[2] = 2 * far;
    const size_t nc = sizeof c / sizeof *c;
    char *dir = test_mkdtemp();
    brisk_logger *lg;
    assert_int_equal(brisk_logger_create(&(brisk_logger_config){.logdir = dir}, &lg), 0);
    int train;
    assert_int_equal(brisk_logger_add_run(lg, "train", 0, &train), 0);
    brisk_log_producer *p;
    assert_int_equal(brisk_logger_producer(lg, &p), 0);
    for (int i = 0; i < 8; i++) /* interleaved, as a trainer logs its tags */
        for (size_t k = 0; k < nc; k++)
            if (i < c[k].n)
                assert_int_equal(brisk_log_scalar(p, train, c[k].tag, c[k].steps[i], i + 1), 0);
    assert_int_equal(brisk_logger_close(lg), 0);
    brisk_logger_destroy(lg);
    lr_log log;
    assert_int_equal(lr_log_read(dir, 1, &log), 0);
    assert_int_equal(log.n_problems, 0);
    for (size_t k = 0; k < nc; k++) {
        const lr_scalars *s = lr_run_scalars(run_of(&log, "train"), c[k].tag);
        assert_non_null(s);
        assert_int_equal(s->n, c[k].want_n);
        for (int i = 0; i < c[k].want_n; i++) {
            assert_int_equal(lr_step(s, (size_t)i), c[k].want_steps[i]);
            assert_true(s->value[i] == c[k].want_values[i]);
        }
        assert_int_equal(s->wide != NULL, c[k].form == 'w');
        assert_int_equal(s->dstep != NULL, c[k].form == 'd');
    }
    lr_log_free(&log);
    test_rmdir(dir);
}

static void test_torn_and_damaged_files(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    write_logs(dir, 1, 30, 0);
    char *tdir = path_in(dir, "train");
    lr_log log;
    assert_int_equal(lr_log_read(dir, 1, &log), 0);
    const lr_run *train = run_of(&log, "train");
    assert_non_null(train);
    assert_non_null(strstr(train->files[0], "/train/events.out.tfevents."));
    char *file = strdup(train->files[0]);
    lr_log_free(&log);
    /* Torn: the last record cut short; everything before it is read, no problem. */
    struct stat st;
    assert_int_equal(stat(file, &st), 0);
    assert_int_equal(truncate(file, st.st_size - 5), 0);
    assert_int_equal(lr_log_read(dir, 1, &log), 0);
    assert_int_equal(log.n_problems, 0);
    assert_true(run_of(&log, "train")->torn);
    assert_int_equal(lr_run_scalars(run_of(&log, "train"), "loss")->n, 30);
    lr_log_free(&log);
    /* Damaged: a flipped byte in the middle; named, the records before it kept. */
    size_t len;
    uint8_t *b = test_read_file(file, &len);
    b[len / 2] ^= 0x40;
    FILE *f = fopen(file, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, len, f), len);
    fclose(f);
    free(b);
    assert_int_equal(lr_log_read(dir, 1, &log), 0);
    assert_int_equal(log.n_problems, 1);
    assert_non_null(strstr(log.problems[0], file));
    assert_non_null(strstr(log.problems[0], "CRC"));
    const lr_scalars *s = lr_run_scalars(run_of(&log, "train"), "loss");
    assert_non_null(s);
    assert_true(s->n > 0 && s->n < 30);
    lr_log_free(&log);
    /* A FIFO named like an event file is refused, not waited on. */
    char *fifo = path_in(tdir, "events.out.tfevents.fifo");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_int_equal(lr_log_read(dir, 1, &log), 0);
    int named = 0;
    for (size_t i = 0; i < log.n_problems; i++)
        named |= strstr(log.problems[i], "events.out.tfevents.fifo") != NULL;
    assert_true(named);
    lr_log_free(&log);
    free(fifo);
    free(file);
    free(tdir);
    test_rmdir(dir);
}

static void test_report_refusals_and_determinism(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    write_logs(dir, 1, 40, 0);
    char *out = path_in(dir, "r.html"), *out2 = path_in(dir, "r2.html");
    assert_brisk_error(brisk_report_write(NULL, out, NULL), BRISK_EINVAL, "log directory");
    assert_brisk_error(brisk_report_write(dir, "", NULL), BRISK_EINVAL, "output path");
    assert_brisk_error(brisk_report_write("/no/such/logs", out, NULL), BRISK_ENOENT,
                       "/no/such/logs");
    assert_brisk_error(brisk_report_write(dir, "/no/such/dir/r.html", NULL), BRISK_EIO,
                       "/no/such/dir");
    assert_brisk_error(brisk_report_write(dir, dir, NULL), BRISK_EIO, "directory");
    assert_brisk_error(brisk_report_write(dir, "/dev/null", NULL), BRISK_EIO, "/dev/null");
    /* Same bytes for one reading thread or several. */
    assert_int_equal(brisk_report_write(dir, out, &(brisk_report_options){.threads = 1}), 0);
    assert_int_equal(brisk_report_write(dir, out2, &(brisk_report_options){.threads = 4}), 0);
    size_t n1, n2;
    uint8_t *a = read_text(out, &n1), *b = read_text(out2, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(a, b, n1);
    /* Escaped text; no network reference; the chart of the overlaid tag. */
    const char *html = (const char *)a;
    assert_non_null(strstr(html, "mlp &lt;b&gt;"));
    assert_null(strstr(html, "<note>"));
    assert_non_null(strstr(html, "a &lt;note&gt; &amp;  more"));
    const char *remote[] = {"src=\"http", "href=\"http", "url(http", "@import", "src=\"//"};
    for (size_t i = 0; i < sizeof remote / sizeof *remote; i++)
        assert_null(strstr(html, remote[i]));
    assert_non_null(strstr(html, "data-tag=\"loss\""));
    assert_non_null(strstr(html, "</html>\n"));
    free(a);
    free(b);
    free(out);
    free(out2);
    test_rmdir(dir);
}

static void test_plot(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    write_logs(dir, 1, 50, 0);
    char *txt = path_in(dir, "plot.txt");
    FILE *f = fopen(txt, "w+");
    assert_non_null(f);
    const char *want[] = {"loss"};
    assert_int_equal(brisk_report_plot(dir, f, &(brisk_plot_options){
                                                   .tags = want, .n_tags = 1, .width = 50,
                                                   .height = 8, .ascii = 1}),
                     0);
    rewind(f);
    char line[512];
    int rows = 0, train = 0, val = 0;
    while (fgets(line, sizeof line, f)) {
        assert_true(strlen(line) <= 51); /* the width, and the newline */
        if (strlen(line) < 12 || (line[11] != '|' && line[11] != '+') || strstr(line, "--"))
            continue; /* the title, the axis, the legend */
        rows++;
        train += strchr(line + 12, '*') != NULL;
        val += strchr(line + 12, 'o') != NULL;
    }
    assert_int_equal(rows, 8);
    assert_true(train >= 4 && val >= 4); /* rising and falling lines cross the rows */
    fclose(f);
    /* Braille, and an unknown tag named with the tags there are. */
    f = fopen(txt, "w+");
    assert_int_equal(brisk_report_plot(dir, f, &(brisk_plot_options){.width = 60}), 0);
    rewind(f);
    size_t n = fread(line, 1, sizeof line - 1, f);
    line[n] = '\0';
    assert_non_null(strstr(line, "\xe2\xa0")); /* U+28xx: braille */
    fclose(f);
    const char *bad[] = {"nope"};
    assert_brisk_error(brisk_report_plot(dir, stdout, &(brisk_plot_options){.tags = bad,
                                                                             .n_tags = 1}),
                       BRISK_ENOENT, "nope", "loss");
    assert_brisk_error(brisk_report_plot(dir, stdout, &(brisk_plot_options){.width = -1}),
                       BRISK_EINVAL, "width");
    free(txt);
    test_rmdir(dir);
}

static int told_missing;
static void on_message(void *user, const char *line)
{
    (void)user;
    if (strstr(line, "/no/such/dir") && strstr(line, "report"))
        told_missing++;
}

/* The logging thread refreshes the report when asked, with the records pushed before. */
/* brisk_fit's validation of the weights' moving average, <run>/validation_ema, belongs to its
 * run's group: the train run's colour, dotted in the report, '+' in the ASCII plot. */
static void test_moving_average_run(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    brisk_logger *lg;
    assert_int_equal(brisk_logger_create(&(brisk_logger_config){.logdir = dir}, &lg), 0);
    int runs[3];
    const char *names[3] = {"train", "validation", "validation_ema"};
    for (int k = 0; k < 3; k++)
        assert_int_equal(brisk_logger_add_run(lg, names[k], 1, &runs[k]), 0);
    brisk_log_producer *p;
    assert_int_equal(brisk_logger_producer(lg, &p), 0);
    for (int s = 1; s <= 20; s++)
        for (int k = 0; k < 3; k++)
            assert_int_equal(brisk_log_scalar(p, runs[k], "epoch_loss", s, 1.0 / (s + k)), 0);
    assert_int_equal(brisk_logger_close(lg), 0);
    brisk_logger_destroy(lg);
    char *html = path_in(dir, "r.html");
    assert_int_equal(brisk_report_write(dir, html, NULL), 0);
    size_t len;
    char *t = (char *)read_text(html, &len);
    const char *train = strstr(t, "data-run=\"train\""), *ema = strstr(t, "data-run=\"validation_ema\"");
    assert_non_null(train);
    assert_non_null(ema);
    const char *tc = strstr(train, "stroke=\"#"), *ec = strstr(ema, "stroke=\"#");
    assert_true(tc && ec && !strncmp(tc, ec, 16)); /* the same colour */
    const char *end = strchr(ema, '>');
    assert_non_null(end);
    const char *dash = strstr(ema, "stroke-dasharray=\"1.5 3\"");
    assert_true(dash && dash < end); /* dotted */
    free(t);
    FILE *f = tmpfile();
    assert_non_null(f);
    assert_int_equal(brisk_report_plot(dir, f, &(brisk_plot_options){.width = 60, .height = 8,
                                                                     .ascii = 1}),
                     0);
    rewind(f);
    char buf[8192];
    const size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    assert_non_null(strstr(buf, "+ validation_ema"));
    fclose(f);
    free(html);
    test_rmdir(dir);
}

static void test_live_report(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    brisk_logger *lg;
    assert_int_equal(brisk_logger_create(&(brisk_logger_config){.logdir = dir,
                                                                .message = on_message},
                                         &lg),
                     0);
    int train;
    assert_int_equal(brisk_logger_add_run(lg, "train", 1, &train), 0);
    brisk_log_producer *p;
    assert_int_equal(brisk_logger_producer(lg, &p), 0);
    for (int s = 1; s <= 20; s++)
        assert_int_equal(brisk_log_scalar(p, train, "live_loss", s, 1.0 / s), 0);
    assert_int_equal(brisk_log_report(p, NULL), 0);
    char *other = path_in(dir, "elsewhere.html");
    assert_int_equal(brisk_log_report(p, other), 0);
    assert_int_equal(brisk_logger_flush(lg), 0); /* the request was consumed */
    char *html = path_in(dir, "report.html");
    size_t n;
    uint8_t *b = read_text(html, &n);
    assert_non_null(strstr((const char *)b, "data-tag=\"live_loss\""));
    assert_non_null(strstr((const char *)b, "20,0.05"));
    free(b);
    b = read_text(other, &n);
    assert_non_null(strstr((const char *)b, "live_loss"));
    free(b);
    /* A report that cannot be written is told once, and the logs go on. */
    assert_int_equal(brisk_log_report(p, "/no/such/dir/report.html"), 0);
    assert_int_equal(brisk_log_report(p, "/no/such/dir/report.html"), 0);
    assert_int_equal(brisk_log_scalar(p, train, "live_loss", 21, 0.01), 0);
    assert_int_equal(brisk_logger_close(lg), 0);
    assert_int_equal(told_missing, 1);
    brisk_logger_destroy(lg);
    assert_int_equal(brisk_log_report(NULL, NULL), BRISK_EINVAL);
    free(other);
    free(html);
    test_rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_back_with_purge),
        cmocka_unit_test(test_series_step_forms),
        cmocka_unit_test(test_torn_and_damaged_files),
        cmocka_unit_test(test_report_refusals_and_determinism),
        cmocka_unit_test(test_plot),
        cmocka_unit_test(test_moving_average_run),
        cmocka_unit_test(test_live_report),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
