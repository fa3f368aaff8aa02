/* Error names and the library version. */
#include <taskloop/taskloop.h>

const char *tl_strerror(int err)
{
    switch (err) {
    case TL_OK:
        return "success";
    case TL_EINVAL:
        return "invalid argument";
    case TL_ENOMEM:
        return "out of memory";
    case TL_ETIMEDOUT:
        return "timed out";
    case TL_ECANCELED:
        return "cancelled";
    case TL_EDONE:
        return "task already done";
    case TL_EBUSY:
        return "loop already running";
    case TL_ECLOSED:
        return "loop closed";
    case TL_EOF:
        return "end of iteration";
    case TL_EFAIL:
        return "handler failed";
    case TL_EIO:
        return "broker or socket error";
    case TL_ECONFIG:
        return "invalid configuration";
    case TL_ENOTFOUND:
        return "not found";
    case TL_EAGAIN:
        return "not ready, try again";
    case TL_ESYS:
        return "system call failed";
    default:
        return "unknown error";
    }
}

const char *tl_version(void)
{
    return TL_VERSION_STRING;
}
