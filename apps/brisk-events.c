/* brisk-events: what TensorBoard will find in a log directory, without TensorBoard.
 *
 * brisk-events DIR|FILE...: walks DIR (or reads FILE), checks every record's two CRCs, decodes
 * every Event and prints, per run (directory) and tag, the kind, the number of points, the
 * step range and the last value. Exit status 0 when every file reads cleanly (a torn last
 * record, which TensorBoard waits on, is reported but fine), 1 when a record is corrupt, 2 on
 * a usage error.
 *
 * brisk-events report LOGDIR [-o FILE]: the curves as one self-contained HTML file.
 * brisk-events plot LOGDIR [--tag TAG]...: the curves in the terminal.
 * Both are brisk/report.h; this file only parses their flags.
 */
#define _GNU_SOURCE
#include "brisk/error.h"
#include "brisk/fsutil.h"
#include "brisk/report.h"
#include "brisk/tfrecord.h"
#include "tb_event.pb-c.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* One (run, tag): kept in order of first appearance, found through a hash table, so that a
 * directory with many tags costs linear time. Run names are interned (a run has many tags). */
typedef struct tag_stat {
    int run;           /* index into runs */
    char *tag;         /* owned */
    char kind[32];     /* a copy: the plugin name lives in the decoded event */
    long long count, first_step, last_step;
    double last_value;
} tag_stat;

static tag_stat *tags;
static size_t n_tags, cap_tags;
static size_t *table; /* open addressing: index + 1 into tags, 0 empty; size a power of 2 */
static size_t table_size;
static char **runs;
static size_t n_runs;
static int bad;

static void *checked(void *p)
{
    if (!p) {
        fprintf(stderr, "brisk-events: out of memory\n");
        exit(1);
    }
    return p;
}

static int run_index(const char *run)
{
    for (size_t i = 0; i < n_runs; i++) /* few runs: a list is fine */
        if (!strcmp(runs[i], run))
            return (int)i;
    runs = checked(realloc(runs, (n_runs + 1) * sizeof *runs));
    runs[n_runs] = checked(strdup(run));
    return (int)n_runs++;
}

static uint64_t hash_key(int run, const char *tag)
{
    uint64_t h = 0xcbf29ce484222325ull ^ (uint64_t)run;
    for (const unsigned char *p = (const unsigned char *)tag; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    return h;
}

static void table_insert(size_t idx)
{
    size_t i = hash_key(tags[idx].run, tags[idx].tag) & (table_size - 1);
    while (table[i])
        i = (i + 1) & (table_size - 1);
    table[i] = idx + 1;
}

static tag_stat *find_tag(const char *run_name, const char *tag, const char *kind)
{
    const int run = run_index(run_name);
    if (table_size) {
        for (size_t i = hash_key(run, tag) & (table_size - 1); table[i];
             i = (i + 1) & (table_size - 1)) {
            tag_stat *t = &tags[table[i] - 1];
            if (t->run == run && !strcmp(t->tag, tag))
                return t;
        }
    }
    if (n_tags == cap_tags) {
        cap_tags = cap_tags ? 2 * cap_tags : 64;
        tags = checked(realloc(tags, cap_tags * sizeof *tags));
    }
    if (2 * (n_tags + 1) > table_size) { /* keep the table at most half full */
        free(table);
        table_size = table_size ? 2 * table_size : 256;
        table = checked(calloc(table_size, sizeof *table));
        for (size_t i = 0; i < n_tags; i++)
            table_insert(i);
    }
    tag_stat *t = &tags[n_tags];
    memset(t, 0, sizeof *t);
    t->run = run;
    t->tag = checked(strdup(tag));
    snprintf(t->kind, sizeof t->kind, "%s", kind);
    table_insert(n_tags++);
    return t;
}

/* Files and directories already read, by device and inode: a symlink loop, or a file reached
 * by two paths, is read once. */
typedef struct seen_id {
    dev_t dev;
    ino_t ino;
} seen_id;
static seen_id *seen;
static size_t n_seen;

static int first_visit(const struct stat *st)
{
    for (size_t i = 0; i < n_seen; i++)
        if (seen[i].dev == st->st_dev && seen[i].ino == st->st_ino)
            return 0;
    seen = checked(realloc(seen, (n_seen + 1) * sizeof *seen));
    seen[n_seen++] = (seen_id){st->st_dev, st->st_ino};
    return 1;
}

static const char *value_kind(const Tensorboard__Summary__Value *v)
{
    switch (v->value_case) {
    case TENSORBOARD__SUMMARY__VALUE__VALUE_SIMPLE_VALUE: return "scalar";
    case TENSORBOARD__SUMMARY__VALUE__VALUE_HISTO: return "histogram";
    case TENSORBOARD__SUMMARY__VALUE__VALUE_IMAGE: return "image";
    case TENSORBOARD__SUMMARY__VALUE__VALUE_TENSOR:
        return v->metadata && v->metadata->plugin_data ? v->metadata->plugin_data->plugin_name
                                                        : "tensor";
    default: return "other";
    }
}

/* Reads a whole regular file (brisk_file_read_all: anything else, a FIFO, a device, a pipe
 * on stdin, is refused without blocking). */
static uint8_t *load_file(const char *path, size_t *size)
{
    char *buf;
    uint64_t n;
    if (brisk_file_read_all(path, 0, &buf, &n) < 0) {
        fprintf(stderr, "brisk-events: %s: skipped\n", brisk_error_detail());
        return NULL;
    }
    *size = (size_t)n;
    return (uint8_t *)buf;
}

static void read_file(const char *path, const char *run)
{
    size_t size;
    uint8_t *buf = load_file(path, &size);
    if (!buf) {
        bad = 1;
        return;
    }
    size_t off = 0, records = 0;
    const char *writer = "?";
    char writer_buf[64] = "?";
    long long start = -1;
    int rc;
    const uint8_t *data;
    size_t n;
    while ((rc = brisk_tfrecord_next(buf, size, &off, &data, &n)) == 1) {
        records++;
        Tensorboard__Event *ev = tensorboard__event__unpack(NULL, n, data);
        if (!ev) {
            printf("%s: record %zu (ending at byte %zu) is not a tensorboard.Event\n", path,
                   records, off);
            bad = 1;
            break;
        }
        if (ev->source_metadata && ev->source_metadata->writer) {
            snprintf(writer_buf, sizeof writer_buf, "%s", ev->source_metadata->writer);
            writer = writer_buf;
        }
        if (ev->what_case == TENSORBOARD__EVENT__WHAT_SESSION_LOG && start < 0 &&
            ev->session_log->status == TENSORBOARD__SESSION_LOG__SESSION_STATUS__START)
            start = (long long)ev->step;
        if (ev->what_case == TENSORBOARD__EVENT__WHAT_SUMMARY)
            for (size_t k = 0; k < ev->summary->n_value; k++) {
                const Tensorboard__Summary__Value *v = ev->summary->value[k];
                tag_stat *t = find_tag(run, v->tag, value_kind(v));
                if (t->count == 0 || ev->step < t->first_step)
                    t->first_step = ev->step;
                t->last_step = ev->step;
                if (v->value_case == TENSORBOARD__SUMMARY__VALUE__VALUE_SIMPLE_VALUE)
                    t->last_value = v->simple_value;
                t->count++;
            }
        tensorboard__event__free_unpacked(ev, NULL);
    }
    printf("%s: %zu records, writer %s, START at step %lld%s\n", path, records, writer, start,
           rc == 0 ? "" : rc == BRISK_ETRUNCATED ? " (torn last record: TensorBoard waits on it)"
                                                 : "");
    if (rc < 0 && rc != BRISK_ETRUNCATED) {
        printf("  CORRUPT: %s\n", brisk_error_detail());
        bad = 1;
    }
    free(buf);
}

static void walk(const char *dir, const char *root)
{
    char **names;
    size_t n;
    if (brisk_dir_names(dir, &names, &n) < 0) {
        fprintf(stderr, "brisk-events: %s\n", brisk_error_detail());
        bad = 1;
        return;
    }
    const size_t root_len = strlen(root);
    const char *run = strlen(dir) > root_len ? dir + root_len + 1 : ".";
    for (size_t i = 0; i < n; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        struct stat st;
        /* Symlinks are followed (as TensorBoard does), but each directory and file is read
         * once, whatever the paths to it. */
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
            if (first_visit(&st))
                walk(path, root);
        } else if (strstr(names[i], "tfevents")) {
            if (stat(path, &st) != 0 || first_visit(&st))
                read_file(path, run);
        }
    }
    brisk_dir_names_free(names, n);
}

static const char usage[] =
    "Usage: brisk-events DIR|FILE...\n"
    "       brisk-events report LOGDIR [-o FILE] [--title TEXT]\n"
    "       brisk-events plot LOGDIR [--tag TAG]... [--width N] [--height N] [--ascii]\n"
    "                                [--color|--no-color]\n"
    "\n"
    "Without a command: checks every record of the TensorBoard event files under DIR (both\n"
    "CRCs, each Event decoded) and lists, per run and tag, the kind, the points, the step range\n"
    "and the last scalar value. Exit status 0 when everything reads cleanly, 1 when a record is\n"
    "corrupt.\n"
    "\n"
    "report: writes the curves of LOGDIR as one self-contained HTML file (no network; charts\n"
    "  are inline SVG and readable with scripts off): a chart per scalar tag with train and\n"
    "  validation overlaid, each run in its colour; the runs' hyperparameters and final\n"
    "  metrics; histograms as distribution bands; the last images and texts.\n"
    "  -o FILE       where to write it (default LOGDIR/report.html), replaced atomically\n"
    "  --title TEXT  the page's title (default LOGDIR)\n"
    "plot: draws the curves in the terminal.\n"
    "  --tag TAG     a scalar tag to draw (repeatable; default: the tags that train and\n"
    "                validation share, else every scalar tag, at most 8)\n"
    "  --width N     characters per line (default $COLUMNS, else 80)\n"
    "  --height N    rows per chart (default 12)\n"
    "  --ascii       plain ASCII marks (default when stdout is not a terminal or the locale\n"
    "                is not UTF-8): * train, o validation\n"
    "  --color, --no-color  ANSI colours (default: when stdout is a terminal)\n"
    "\n"
    "Both read event files as TensorBoard does: in name order, a resumed run's repeated steps\n"
    "replace the old ones, a file still being written up to its last whole record. A file that\n"
    "cannot be read is named on stderr and the rest is still shown; exit status 1 then.\n"
    "A log directory named report or plot: write ./report.\n";

static int problems;
static void count_problem(void *user, const char *line)
{
    (void)user;
    fprintf(stderr, "brisk-events: %s\n", line);
    problems = 1;
}

static int usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "brisk-events: %s%s\n(brisk-events --help: the usage)\n", what, arg);
    return 2;
}

static int parse_count(const char *flag, const char *arg, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    const long v = arg ? strtol(arg, &end, 10) : 0;
    if (!arg || errno || end == arg || *end || v < lo || v > hi) {
        fprintf(stderr, "brisk-events: %s: '%s' is not a whole number in %d..%d\n", flag,
                arg ? arg : "", lo, hi);
        return 0;
    }
    *out = (int)v;
    return 1;
}

static int cmd_report(int argc, char **argv)
{
    const char *dir = NULL, *out = NULL, *title = NULL;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "-o") || !strcmp(argv[i], "--out") || !strcmp(argv[i], "--title")) {
            if (i + 1 >= argc)
                return usage_error(argv[i], " needs a value");
            if (argv[i][1] == '-' && argv[i][2] == 't')
                title = argv[++i];
            else
                out = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return usage_error("report: unknown flag ", argv[i]);
        } else if (dir) {
            return usage_error("report: one LOGDIR only; a second: ", argv[i]);
        } else {
            dir = argv[i];
        }
    }
    if (!dir)
        return usage_error("report: LOGDIR is missing", "");
    char path[PATH_MAX];
    if (!out) {
        struct stat st;
        if (stat(dir, &st) == 0 && !S_ISDIR(st.st_mode))
            {
            fprintf(stderr, "brisk-events: report: %s is a file: name the output with -o\n", dir);
            return 2;
        }
        if (snprintf(path, sizeof path, "%s/report.html", dir) >= (int)sizeof path)
            return usage_error("report: the path is too long: ", dir);
        out = path;
    }
    const brisk_report_options opt = {.title = title, .message = count_problem};
    if (brisk_report_write(dir, out, &opt) < 0) {
        fprintf(stderr, "brisk-events: %s\n", brisk_error_detail());
        return 1;
    }
    printf("%s\n", out);
    return problems;
}

static int cmd_plot(int argc, char **argv)
{
    const char *dir = NULL;
    const char **want = calloc((size_t)argc, sizeof *want);
    brisk_plot_options opt = {.tags = want, .message = count_problem};
    const char *lang = getenv("LC_ALL");
    if (!lang || !*lang)
        lang = getenv("LC_CTYPE");
    if (!lang || !*lang)
        lang = getenv("LANG");
    const int utf8 = lang && (strstr(lang, "UTF-8") || strstr(lang, "utf8") || strstr(lang, "UTF8") ||
                              strstr(lang, "utf-8"));
    opt.color = isatty(STDOUT_FILENO) && !getenv("NO_COLOR");
    opt.ascii = !isatty(STDOUT_FILENO) || !utf8;
    int rc = 0;
    checked(want);
    for (int i = 2; i < argc && !rc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--tag") || !strcmp(a, "--width") || !strcmp(a, "--height")) {
            if (i + 1 >= argc) {
                rc = usage_error(a, " needs a value");
                break;
            }
            const char *v = argv[++i];
            if (a[2] == 't')
                want[opt.n_tags++] = v;
            else if (a[2] == 'w' ? !parse_count(a, v, 30, 10000, &opt.width)
                                 : !parse_count(a, v, 3, 1000, &opt.height))
                rc = 2;
        } else if (!strcmp(a, "--ascii")) {
            opt.ascii = 1;
        } else if (!strcmp(a, "--unicode")) {
            opt.ascii = 0;
        } else if (!strcmp(a, "--color")) {
            opt.color = 1;
        } else if (!strcmp(a, "--no-color")) {
            opt.color = 0;
        } else if (a[0] == '-' && a[1]) {
            rc = usage_error("plot: unknown flag ", a);
        } else if (dir) {
            rc = usage_error("plot: one LOGDIR only; a second: ", a);
        } else {
            dir = a;
        }
    }
    if (!rc && !dir)
        rc = usage_error("plot: LOGDIR is missing", "");
    if (!rc && brisk_report_plot(dir, stdout, &opt) < 0) {
        fprintf(stderr, "brisk-events: %s\n", brisk_error_detail());
        rc = 1;
    }
    free(want);
    return rc ? rc : problems;
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "report"))
        return cmd_report(argc, argv);
    if (!strcmp(argv[1], "plot"))
        return cmd_plot(argc, argv);
    for (int i = 1; i < argc; i++) {
        struct stat st;
        char root[PATH_MAX];
        snprintf(root, sizeof root, "%s", argv[i]);
        size_t len = strlen(root);
        while (len > 1 && root[len - 1] == '/')
            root[--len] = '\0';
        if (stat(root, &st) != 0) {
            fprintf(stderr, "brisk-events: %s: %s\n", root, strerror(errno));
            bad = 1;
        } else if (S_ISDIR(st.st_mode)) {
            if (first_visit(&st))
                walk(root, root);
        } else {
            read_file(root, ".");
        }
    }
    printf("\n%-12s %-40s %-14s %7s %17s %12s\n", "run", "tag", "kind", "points", "steps",
           "last value");
    for (size_t i = 0; i < n_tags; i++) {
        char steps[48];
        snprintf(steps, sizeof steps, "%lld..%lld", tags[i].first_step, tags[i].last_step);
        printf("%-12s %-40s %-14s %7lld %17s", runs[tags[i].run], tags[i].tag, tags[i].kind,
               tags[i].count, steps);
        if (!strcmp(tags[i].kind, "scalar"))
            printf(" %12.6g", tags[i].last_value);
        printf("\n");
        free(tags[i].tag);
    }
    for (size_t i = 0; i < n_runs; i++)
        free(runs[i]);
    free(runs);
    free(tags);
    free(table);
    free(seen);
    return bad;
}
