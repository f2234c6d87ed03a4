#include "brisk/error.h"

#include <stdarg.h>

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
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(brisk__detail, sizeof brisk__detail, fmt, ap);
    va_end(ap);
    return err;
}
