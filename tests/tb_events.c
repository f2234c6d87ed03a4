#include "tb_events.h"

#include "brisk/error.h"
#include "brisk/tfrecord.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int tb_file_read(const char *path, tb_file *out)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "tb_file_read: cannot open %s\n", path);
        return -1;
    }
    fseek(f, 0, SEEK_END);
    const long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(size > 0 ? (size_t)size : 1);
    if (!buf || fread(buf, 1, (size_t)size, f) != (size_t)size) {
        fclose(f);
        free(buf);
        return -1;
    }
    fclose(f);
    out->size = (size_t)size;
    size_t off = 0, cap = 0;
    for (;;) {
        const uint8_t *data;
        size_t n;
        int rc = brisk_tfrecord_next(buf, (size_t)size, &off, &data, &n);
        if (rc <= 0) {
            out->status = rc;
            if (rc < 0)
                fprintf(stderr, "%s: %s\n", path, brisk_error_detail());
            break;
        }
        Tensorboard__Event *ev = tensorboard__event__unpack(NULL, n, data);
        if (!ev) {
            fprintf(stderr, "%s: record ending at %zu is not an Event\n", path, off);
            free(buf);
            tb_file_free(out);
            return -1;
        }
        if (out->n == cap) {
            cap = cap ? 2 * cap : 64;
            out->events = realloc(out->events, cap * sizeof *out->events);
        }
        out->events[out->n++] = ev;
        out->good_bytes = off;
    }
    free(buf);
    return 0;
}

void tb_file_free(tb_file *f)
{
    for (size_t i = 0; i < f->n; i++)
        tensorboard__event__free_unpacked(f->events[i], NULL);
    free(f->events);
    memset(f, 0, sizeof *f);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

char **tb_list_event_files(const char *dir, size_t *n)
{
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return NULL;
    char **paths = NULL;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strstr(e->d_name, "tfevents"))
            continue;
        paths = realloc(paths, (*n + 1) * sizeof *paths);
        const size_t len = strlen(dir) + strlen(e->d_name) + 2;
        paths[*n] = malloc(len);
        snprintf(paths[*n], len, "%s/%s", dir, e->d_name);
        (*n)++;
    }
    closedir(d);
    if (*n)
        qsort(paths, *n, sizeof *paths, cmp_str);
    return paths;
}

void tb_free_list(char **paths, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(paths[i]);
    free(paths);
}

const Tensorboard__Summary__Value *tb_find_value(const tb_file *f, const char *tag,
                                                 const Tensorboard__Event **event)
{
    for (size_t i = 0; i < f->n; i++) {
        const Tensorboard__Event *ev = f->events[i];
        if (ev->what_case != TENSORBOARD__EVENT__WHAT_SUMMARY)
            continue;
        for (size_t k = 0; k < ev->summary->n_value; k++)
            if (strcmp(ev->summary->value[k]->tag, tag) == 0) {
                if (event)
                    *event = ev;
                return ev->summary->value[k];
            }
    }
    return NULL;
}
