/*
 * The registry: source types, sink schemes and handlers by name. Filled before a
 * service starts and read-only afterwards, so it needs no lock.
 */
#include <stdlib.h>
#include <string.h>
#include <taskloop/adapter.h>

typedef struct handler_entry {
    char *name;
    tl_handler_fn fn;
    void *user;
    tl_handler_hooks hooks;
    tl_handler_params params; /* params.params NULL: none declared */
} handler_entry;

struct tl_registry {
    const tl_source_ops **sources;
    size_t nsources;
    const tl_sink_ops **sinks;
    size_t nsinks;
    handler_entry *handlers;
    size_t nhandlers;
};

int tl_registry_new(tl_registry **out)
{
    *out = calloc(1, sizeof(tl_registry));
    return *out ? 0 : TL_ENOMEM;
}

void tl_registry_free(tl_registry *reg)
{
    if (!reg)
        return;
    for (size_t i = 0; i < reg->nhandlers; i++)
        free(reg->handlers[i].name);
    free(reg->handlers);
    free(reg->sources);
    free(reg->sinks);
    free(reg);
}

/* Appends item to a growable array of pointer-sized or struct items. */
static int grow(void **arr, size_t n, size_t size)
{
    void *p = realloc(*arr, (n + 1) * size);
    if (!p)
        return TL_ENOMEM;
    *arr = p;
    return 0;
}

int tl_registry_add_source(tl_registry *reg, const tl_source_ops *ops)
{
    if (!ops || !ops->type || tl_registry_source(reg, ops->type))
        return TL_EINVAL;
    if (grow((void **)&reg->sources, reg->nsources, sizeof(*reg->sources)))
        return TL_ENOMEM;
    reg->sources[reg->nsources++] = ops;
    return 0;
}

int tl_registry_add_sink(tl_registry *reg, const tl_sink_ops *ops)
{
    if (!ops || !ops->scheme || tl_registry_sink(reg, ops->scheme))
        return TL_EINVAL;
    if (grow((void **)&reg->sinks, reg->nsinks, sizeof(*reg->sinks)))
        return TL_ENOMEM;
    reg->sinks[reg->nsinks++] = ops;
    return 0;
}

const tl_source_ops *tl_registry_source(const tl_registry *reg, const char *type)
{
    for (size_t i = 0; type && i < reg->nsources; i++)
        if (strcmp(reg->sources[i]->type, type) == 0)
            return reg->sources[i];
    return NULL;
}

const tl_sink_ops *tl_registry_sink(const tl_registry *reg, const char *scheme)
{
    for (size_t i = 0; scheme && i < reg->nsinks; i++)
        if (strcmp(reg->sinks[i]->scheme, scheme) == 0)
            return reg->sinks[i];
    return NULL;
}

int tl_register_handler(tl_registry *reg, const char *name, tl_handler_fn fn, void *user)
{
    return tl_register_handler_hooks(reg, name, fn, user, NULL);
}

int tl_register_handler_hooks(tl_registry *reg, const char *name, tl_handler_fn fn, void *user,
                              const tl_handler_hooks *hooks)
{
    if (!name || !fn || tl_registry_handler(reg, name, NULL, NULL) == 0)
        return TL_EINVAL;
    if (grow((void **)&reg->handlers, reg->nhandlers, sizeof(*reg->handlers)))
        return TL_ENOMEM;
    char *copy = strdup(name);
    if (!copy)
        return TL_ENOMEM;
    reg->handlers[reg->nhandlers++] =
        (handler_entry){copy, fn, user, hooks ? *hooks : (tl_handler_hooks){0}, {0}};
    return 0;
}

/* The entry registered under name, or NULL. */
static handler_entry *find_handler(const tl_registry *reg, const char *name)
{
    for (size_t i = 0; name && i < reg->nhandlers; i++)
        if (strcmp(reg->handlers[i].name, name) == 0)
            return &reg->handlers[i];
    return NULL;
}

int tl_register_handler_params(tl_registry *reg, const char *name, const tl_handler_params *params)
{
    handler_entry *h = find_handler(reg, name);
    if (!h)
        return TL_ENOTFOUND;
    if (!params || !params->params)
        return TL_EINVAL;
    for (const tl_param *p = params->params; p->name; p++)
        if (p->type == TL_PARAM_LIST || p->type == TL_PARAM_MAP)
            return TL_EINVAL;
    h->params = *params;
    return 0;
}

const tl_handler_params *tl_registry_handler_params(const tl_registry *reg, const char *name)
{
    const handler_entry *h = find_handler(reg, name);
    return h && h->params.params ? &h->params : NULL;
}

int tl_registry_handler(const tl_registry *reg, const char *name, tl_handler_fn *fn, void **user)
{
    const handler_entry *h = find_handler(reg, name);
    if (!h)
        return TL_ENOTFOUND;
    if (fn)
        *fn = h->fn;
    if (user)
        *user = h->user;
    return 0;
}

int tl_registry_handler_hooks(const tl_registry *reg, const char *name, tl_handler_hooks *out)
{
    const handler_entry *h = find_handler(reg, name);
    *out = h ? h->hooks : (tl_handler_hooks){0};
    return h ? 0 : TL_ENOTFOUND;
}
