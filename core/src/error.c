#include "brisk/error.h"
#include "brisk/message.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char brisk__detail[1024];

const char *brisk_strerror(int err)
{
    switch (err) {
    case BRISK_OK:
        return "success";
#define BRISK__ERR_CASE(name, value, text) case BRISK_##name: return text;
        BRISK_ERRNO_MAP(BRISK__ERR_CASE)
#undef BRISK__ERR_CASE
    }
    return "unknown error";
}

const char *brisk_error_detail(void)
{
    return brisk__detail;
}

int brisk_error_set(int err, const char *fmt, ...)
{
    /* Through a copy: callers often wrap the previous detail ("%s", brisk_error_detail()),
     * and formatting a buffer into itself would garble it. */
    char buf[sizeof brisk__detail];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    memcpy(brisk__detail, buf, sizeof buf);
    return err;
}

void brisk_message(brisk_message_fn message, void *user, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (message)
        message(user, line);
    else
        fprintf(stderr, "brisk: %s\n", line);
}
