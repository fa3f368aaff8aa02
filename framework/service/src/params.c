/* Look-ups in the parameters the config hands to an adapter, and message headers. */
#include <stdio.h>
#include <string.h>
#include <taskloop/config.h>

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

void tl_param_bounds(const tl_param *def, const tl_param_range *ranges, int64_t *min, int64_t *max)
{
    *min = 0;
    *max = def->type == TL_PARAM_DURATION ? TL_CONFIG_MAX_DURATION_MS : TL_PARAM_INT_MAX;
    for (size_t i = 0; ranges && ranges[i].name; i++)
        if (strcmp(ranges[i].name, def->name) == 0) {
            *min = ranges[i].min;
            *max = ranges[i].max;
        }
}

int tl_params_check_ranges(const tl_param *schema, const tl_param_range *ranges, const tl_params *p,
                           char *err, size_t errlen)
{
    for (size_t i = 0; schema && schema[i].name; i++) {
        const tl_param *def = &schema[i];
        const tl_param_value *v = tl_params_get(p, def->name);
        if (!v || v->type != def->type ||
            (def->type != TL_PARAM_INT && def->type != TL_PARAM_DURATION))
            continue;
        int64_t min, max;
        tl_param_bounds(def, ranges, &min, &max);
        if (v->num >= min && v->num <= max)
            continue;
        const char *unit = def->type == TL_PARAM_DURATION ? "ms" : "";
        if (err && errlen)
            snprintf(err, errlen, "%s: %lld%s is out of range (%lld%s to %lld%s)", def->name,
                     (long long)v->num, unit, (long long)min, unit, (long long)max, unit);
        return TL_ECONFIG;
    }
    return 0;
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
