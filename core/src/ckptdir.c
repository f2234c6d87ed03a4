#define _GNU_SOURCE /* getrandom */
#include "brisk/ckptdir.h"

#include "brisk/error.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define PREFIX "ckpt-"
#define STEP "-step"
#define SUFFIX ".safetensors"
#define TEMP ".tmp."

void brisk_run_id(char *id)
{
    uint32_t r = 0;
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r) {
        /* No entropy source: the time's nanoseconds and the pid still differ between runs. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        r = (uint32_t)ts.tv_nsec * 2654435761u ^ (uint32_t)getpid() * 40503u;
    }
    const time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
    snprintf(id, BRISK_RUN_ID_MAX, "%s-%06x", stamp, (unsigned)(r & 0xffffff));
}

int brisk_run_id_valid(const char *id)
{
    const size_t n = id ? strlen(id) : 0;
    if (n == 0 || n >= BRISK_RUN_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z') ||
              (id[i] >= '0' && id[i] <= '9') || id[i] == '-' || id[i] == '_'))
            return 0;
    return 1;
}

int brisk_ckpt_path(char *path, size_t size, const char *dir, const char *run, int64_t step)
{
    if (!brisk_run_id_valid(run))
        return brisk_error_set(BRISK_EINVAL, "checkpoint: run id '%s' is not valid",
                               run ? run : "(null)");
    const int n = snprintf(path, size, "%s/" PREFIX "%s" STEP "%010" PRId64 SUFFIX, dir, run,
                           step);
    if (n < 0 || (size_t)n >= size)
        return brisk_error_set(BRISK_EINVAL, "checkpoint: the path in %s is too long", dir);
    return BRISK_OK;
}

/* Parses ckpt-<run>-step<digits>.safetensors; the run id is what lies between the prefix
 * and the last "-step" (a run id may contain "-"). */
static int parse_name(const char *name, brisk_ckpt_entry *e)
{
    const size_t n = strlen(name), np = strlen(PREFIX), ns = strlen(SUFFIX);
    if (n <= np + ns || strncmp(name, PREFIX, np) || strcmp(name + n - ns, SUFFIX) ||
        n >= sizeof e->name)
        return 0;
    const char *step = NULL;
    for (const char *p = name + np; (p = strstr(p, STEP)) && p < name + n - ns; p++)
        step = p;
    if (!step || step == name + np)
        return 0;
    const size_t rl = (size_t)(step - (name + np));
    if (rl >= sizeof e->run)
        return 0;
    memcpy(e->run, name + np, rl);
    e->run[rl] = '\0';
    const char *d = step + strlen(STEP);
    if (d == name + n - ns || !brisk_run_id_valid(e->run))
        return 0;
    int64_t v = 0;
    for (; d < name + n - ns; d++) {
        if (*d < '0' || *d > '9' || v > (INT64_MAX - 9) / 10)
            return 0;
        v = v * 10 + (*d - '0');
    }
    e->step = v;
    snprintf(e->name, sizeof e->name, "%s", name);
    return 1;
}

static int cmp_entries(const void *a, const void *b)
{
    const brisk_ckpt_entry *x = a, *y = b;
    const int c = strcmp(x->run, y->run);
    if (c)
        return c;
    return (x->step > y->step) - (x->step < y->step);
}

int brisk_ckpt_list(const char *dir, const char *run, brisk_ckpt_entry **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? BRISK_OK
                               : brisk_error_set(BRISK_EIO, "cannot read directory %s: %s", dir,
                                                 strerror(errno));
    size_t cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        brisk_ckpt_entry e;
        if (!parse_name(de->d_name, &e) || (run && strcmp(run, e.run)))
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            brisk_ckpt_entry *grown = realloc(*out, cap * sizeof *grown);
            if (!grown) {
                closedir(d);
                free(*out);
                *out = NULL;
                *n = 0;
                return brisk_error_set(BRISK_ENOMEM, "out of memory listing %s", dir);
            }
            *out = grown;
        }
        (*out)[(*n)++] = e;
    }
    closedir(d);
    if (*n)
        qsort(*out, *n, sizeof **out, cmp_entries);
    return BRISK_OK;
}

int brisk_ckpt_prune(const char *dir, const char *run, int keep, int64_t step)
{
    if (keep < 1 || !brisk_run_id_valid(run))
        return brisk_error_set(BRISK_EINVAL, "checkpoint pruning: keep %d (>= 1) or run id '%s'",
                               keep, run ? run : "(null)");
    brisk_ckpt_entry *e;
    size_t n;
    int err = brisk_ckpt_list(dir, run, &e, &n);
    if (err < 0)
        return err;
    /* The timeline that led here: this run's checkpoints up to this step, oldest first. */
    size_t upto = 0;
    while (upto < n && e[upto].step <= step)
        upto++;
    int removed = 0;
    for (size_t i = 0; i + (size_t)keep < upto; i++) {
        if (e[i].step == step)
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e[i].name);
        if (unlink(path) != 0 && errno != ENOENT) {
            err = brisk_error_set(BRISK_EIO, "cannot remove old checkpoint %s: %s", path,
                                  strerror(errno));
            break;
        }
        removed++;
    }
    free(e);
    return err < 0 ? err : removed;
}

int brisk_ckpt_newest(const char *dir, const char *run, char *path, size_t size)
{
    brisk_ckpt_entry *e;
    size_t n;
    int err = brisk_ckpt_list(dir, run, &e, &n);
    if (err < 0)
        return err;
    if (n == 0) {
        free(e);
        return brisk_error_set(BRISK_ENOENT, "no checkpoint (ckpt-*-step*.safetensors)%s%s in "
                               "%s", run ? " of run " : "", run ? run : "", dir);
    }
    size_t runs = 1;
    for (size_t i = 1; i < n; i++)
        runs += strcmp(e[i].run, e[i - 1].run) != 0;
    if (runs > 1) {
        /* Sorted by run, then step: each run's newest is its last entry. */
        char list[3072];
        size_t at = 0;
        for (size_t i = 0; i < n && at < sizeof list; i++)
            if (i + 1 == n || strcmp(e[i].run, e[i + 1].run))
                at += (size_t)snprintf(list + at, sizeof list - at, "\n  run %s: --resume=%s/%s",
                                       e[i].run, dir, e[i].name);
        free(e);
        return brisk_error_set(BRISK_EMISMATCH, "%s holds the checkpoints of %zu runs; name the "
                               "one to continue:%s", dir, runs, list);
    }
    const int w = snprintf(path, size, "%s/%s", dir, e[n - 1].name);
    free(e);
    if (w < 0 || (size_t)w >= size)
        return brisk_error_set(BRISK_EINVAL, "the path in %s is too long", dir);
    return BRISK_OK;
}

void brisk_host_tag(char *buf, size_t size)
{
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) != 0 || !host[0])
        snprintf(host, sizeof host, "localhost");
    snprintf(buf, size, "%s", host);
    for (char *p = buf; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '_' || *p == '-'))
            *p = '_';
}

int brisk_ckpt_clean_temps(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    char host[256], mark[300];
    brisk_host_tag(host, sizeof host);
    snprintf(mark, sizeof mark, SUFFIX TEMP "%s.", host);
    int removed = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *at = strstr(de->d_name, mark);
        if (strncmp(de->d_name, PREFIX, strlen(PREFIX)) || !at)
            continue;
        char *end;
        errno = 0;
        const long pid = strtol(at + strlen(mark), &end, 10);
        if (*end || errno || pid <= 0 || pid == (long)getpid())
            continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue; /* alive, or not ours to judge */
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        removed += unlink(path) == 0;
    }
    closedir(d);
    return removed;
}
