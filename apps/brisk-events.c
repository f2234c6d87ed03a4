/* brisk-events: what TensorBoard will find in a log directory, without TensorBoard.
 *
 * Walks DIR (or reads FILE), checks every record's two CRCs, decodes every Event and prints,
 * per run (directory) and tag, the kind, the number of points, the step range and the last
 * value. Exit status 0 when every file reads cleanly (a torn last record, which TensorBoard
 * waits on, is reported but fine), 1 when a record is corrupt, 2 on a usage error.
 */
#define _GNU_SOURCE
#include "brisk/error.h"
#include "brisk/tfrecord.h"
#include "tb_event.pb-c.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct tag_stat {
    char run[PATH_MAX];
    char tag[256];
    char kind[32]; /* a copy: the plugin name lives in the decoded event */
    long long count, first_step, last_step;
    double last_value;
} tag_stat;

static tag_stat *tags;
static size_t n_tags, cap_tags;
static int bad;

static tag_stat *find_tag(const char *run, const char *tag, const char *kind)
{
    for (size_t i = 0; i < n_tags; i++)
        if (!strcmp(tags[i].run, run) && !strcmp(tags[i].tag, tag))
            return &tags[i];
    if (n_tags == cap_tags) {
        cap_tags = cap_tags ? 2 * cap_tags : 64;
        tag_stat *grown = realloc(tags, cap_tags * sizeof *tags);
        if (!grown) {
            fprintf(stderr, "brisk-events: out of memory\n");
            exit(1);
        }
        tags = grown;
    }
    tag_stat *t = &tags[n_tags++];
    memset(t, 0, sizeof *t);
    snprintf(t->run, sizeof t->run, "%s", run);
    snprintf(t->tag, sizeof t->tag, "%s", tag);
    snprintf(t->kind, sizeof t->kind, "%s", kind);
    return t;
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

static void read_file(const char *path, const char *run)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "brisk-events: cannot open %s\n", path);
        bad = 1;
        return;
    }
    fseek(f, 0, SEEK_END);
    const long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(size > 0 ? (size_t)size : 1);
    if (!buf || fread(buf, 1, (size_t)size, f) != (size_t)size) {
        fprintf(stderr, "brisk-events: cannot read %s\n", path);
        free(buf);
        fclose(f);
        bad = 1;
        return;
    }
    fclose(f);
    size_t off = 0, records = 0;
    const char *writer = "?";
    char writer_buf[64] = "?";
    long long start = -1;
    int rc;
    const uint8_t *data;
    size_t n;
    while ((rc = brisk_tfrecord_next(buf, (size_t)size, &off, &data, &n)) == 1) {
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

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void walk(const char *dir, const char *root)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "brisk-events: cannot open directory %s\n", dir);
        bad = 1;
        return;
    }
    char **names = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            char **grown = realloc(names, (n + 1) * sizeof *names);
            if (!grown)
                break;
            names = grown;
            names[n++] = strdup(e->d_name);
        }
    closedir(d);
    if (n)
        qsort(names, n, sizeof *names, cmp_str);
    const size_t root_len = strlen(root);
    const char *run = strlen(dir) > root_len ? dir + root_len + 1 : ".";
    for (size_t i = 0; i < n; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
            walk(path, root);
        else if (strstr(names[i], "tfevents"))
            read_file(path, run);
        free(names[i]);
    }
    free(names);
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fprintf(argc < 2 ? stderr : stdout,
                "Usage: brisk-events DIR|FILE...\n"
                "Checks every record of the TensorBoard event files under DIR (both CRCs, each\n"
                "Event decoded) and lists, per run and tag, the kind, the points, the step range\n"
                "and the last scalar value. Exit status 0 when everything reads cleanly, 1 when a\n"
                "record is corrupt.\n");
        return argc < 2 ? 2 : 0;
    }
    for (int i = 1; i < argc; i++) {
        struct stat st;
        char root[PATH_MAX];
        snprintf(root, sizeof root, "%s", argv[i]);
        size_t len = strlen(root);
        while (len > 1 && root[len - 1] == '/')
            root[--len] = '\0';
        if (stat(root, &st) != 0) {
            fprintf(stderr, "brisk-events: %s: no such file or directory\n", root);
            bad = 1;
        } else if (S_ISDIR(st.st_mode)) {
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
        printf("%-12s %-40s %-14s %7lld %17s", tags[i].run, tags[i].tag, tags[i].kind,
               tags[i].count, steps);
        if (!strcmp(tags[i].kind, "scalar"))
            printf(" %12.6g", tags[i].last_value);
        printf("\n");
    }
    free(tags);
    return bad;
}
