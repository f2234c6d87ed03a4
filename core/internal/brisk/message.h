/* brisk/message.h (internal): one way to hand a warning line to a program. */
#ifndef BRISK_MESSAGE_H
#define BRISK_MESSAGE_H

/* A program's message callback: one line, without a newline. */
typedef void (*brisk_message_fn)(void *user, const char *line);

/* Formats a line and gives it to message(user, line), or, when message is NULL, prints
 * "brisk: <line>" on stderr (lines are cut at 2 KiB). */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
void brisk_message(brisk_message_fn message, void *user, const char *fmt, ...);

#endif
