/* Look-ups in the parameters the config hands to an adapter, and message headers. */
#include <string.h>
#include <taskloop/adapter.h>

const tl_param_value *tl_params_get(const tl_params *p, const char *name)
{
    if (!p || !name)
        return NULL;
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->v[i].name, name) == 0)
            return &p->v[i];
    return NULL;
}

const char *tl_params_str(const tl_params *p, const char *name, const char *def)
{
    const tl_param_value *v = tl_params_get(p, name);
    return v && v->str ? v->str : def;
}

int64_t tl_params_num(const tl_params *p, const char *name, int64_t def)
{
    const tl_param_value *v = tl_params_get(p, name);
    if (!v ||
        !(v->type == TL_PARAM_INT || v->type == TL_PARAM_BOOL || v->type == TL_PARAM_DURATION))
        return def;
    return v->num;
}

const void *tl_msg_header(const tl_msg *msg, const char *name, size_t *len)
{
    for (size_t i = 0; i < msg->nheaders; i++) {
        if (strcmp(msg->headers[i].name, name) == 0) {
            if (len)
                *len = msg->headers[i].len;
            return msg->headers[i].value;
        }
    }
    return NULL;
}
