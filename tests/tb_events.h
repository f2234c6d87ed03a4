/* A test-side reader of event files: walks the records of a file, checking both CRCs, and
 * decodes each one as a tensorboard.Event with protobuf-c. */
#ifndef BRISK_TB_EVENTS_H
#define BRISK_TB_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include "tb_event.pb-c.h"

typedef struct tb_file {
    Tensorboard__Event **events; /* decoded, in file order */
    size_t n;
    int status;        /* 0: clean end; else the brisk_tfrecord_next error at the tail */
    size_t good_bytes; /* offset just past the last complete record */
    size_t size;
} tb_file;

/* Reads the whole file. Returns 0, or -1 when it cannot be read or an Event does not decode
 * (the message is printed). A torn tail is not an error here: see status. */
int tb_file_read(const char *path, tb_file *out);
void tb_file_free(tb_file *f);

/* The event files (name contains "tfevents") in dir, sorted by name: *n paths, malloc'd. */
char **tb_list_event_files(const char *dir, size_t *n);
void tb_free_list(char **paths, size_t n);

/* The first Summary.Value with this tag in the file, and its event (NULL when none). */
const Tensorboard__Summary__Value *tb_find_value(const tb_file *f, const char *tag,
                                                 const Tensorboard__Event **event);

#endif
