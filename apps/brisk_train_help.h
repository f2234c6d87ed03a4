/* brisk-train's --help text. */
#ifndef BRISK_TRAIN_HELP_H
#define BRISK_TRAIN_HELP_H

#include <stdio.h>

/* Prints the usage, every flag with its default, to f. */
void brisk_train_usage(FILE *f);

#endif
