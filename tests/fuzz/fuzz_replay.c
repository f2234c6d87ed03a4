/* A main for the fuzz harnesses in builds without libFuzzer: runs LLVMFuzzerTestOneInput once
 * on every file named on the command line (a folder: every file in it), so the default suite
 * compiles each harness and replays its committed corpus (seeds and past crashes) under the
 * build's sanitizers. Exit 0 when every input ran, 1 when one could not be read. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "fuzz_replay: %s: cannot open\n", path);
        return -1;
    }
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            uint8_t *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    int bad = ferror(f) || !buf;
    fclose(f);
    if (bad) {
        free(buf);
        fprintf(stderr, "fuzz_replay: %s: cannot read\n", path);
        return -1;
    }
    LLVMFuzzerTestOneInput(buf, n);
    free(buf);
    return 0;
}

int main(int argc, char **argv) {
    int runs = 0, failed = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            struct dirent **names;
            int k = scandir(argv[i], &names, NULL, alphasort);
            if (k < 0) {
                fprintf(stderr, "fuzz_replay: %s: cannot list\n", argv[i]);
                failed++;
                continue;
            }
            for (int j = 0; j < k; j++) {
                char path[4096];
                snprintf(path, sizeof path, "%s/%s", argv[i], names[j]->d_name);
                if (names[j]->d_name[0] != '.' && stat(path, &st) == 0 &&
                    S_ISREG(st.st_mode)) {
                    failed += replay_file(path) != 0;
                    runs++;
                }
                free(names[j]);
            }
            free(names);
        } else {
            failed += replay_file(argv[i]) != 0;
            runs++;
        }
    }
    printf("fuzz_replay: %d inputs, %d unreadable\n", runs, failed);
    return failed || runs == 0 ? 1 : 0;
}
