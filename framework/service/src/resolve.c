/*
 * The parsed document made what the schema reads: duplicate keys reported, aliases
 * replaced by copies of what they name, merge keys ("<<: *base") applied.
 *
 * libfyaml does all three itself, but compares every key of a mapping with every other
 * one (12,000 keys cost seconds) and copies aliases without limit (a few hundred bytes
 * of nested aliases, the "billion laughs", expand to gigabytes). Here it takes time
 * linear in the document, with hash tables, and an alias is refused, at its place,
 * before its copy would take the nodes it adds past TL_CONFIG_MAX_ALIAS_NODES or the
 * document deeper than MAX_DEPTH. Anchors are read from the document's list once, and
 * taken off: libfyaml's per-node anchor lookups walk that list every time.
 *
 * An alias names the last node defined with its anchor before it, in document order
 * (YAML's rule); one inside the node it names is a cycle and refused. Merge keys follow
 * YAML 1.1: a mapping's own keys win over merged ones, and earlier sources over later
 * ones; the merged pairs come after the mapping's own.
 *
 * In the loader's chain: called by config.c; calls only loader.c.
 */
#include <libfyaml.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config_int.h"
#include "hash.h"

/* libfyaml's own limit on nesting, kept once aliases are expanded. */
#define MAX_DEPTH 64

/* ---------------------------------------------------------------- hash tables */

/* An entry keyed by bytes, or by the pointer itself when len is SIZE_MAX. */
typedef struct entry {
    const void *key;
    size_t len;
    void *value;
} entry;

typedef struct table {
    entry *slots; /* NULL key: free */
    size_t cap, n;
} table;

static uint64_t hash_of(const void *key, size_t len)
{
    return len == SIZE_MAX ? tl__hash_bytes(TL_HASH_SEED, &key, sizeof(key))
                           : tl__hash_bytes(TL_HASH_SEED, key, len);
}

static bool same(const entry *e, const void *key, size_t len)
{
    return e->len == len && (len == SIZE_MAX ? e->key == key : memcmp(e->key, key, len) == 0);
}

/* The entry for key, or the free slot where it would go. */
static entry *slot_of(const table *t, const void *key, size_t len)
{
    size_t i = (size_t)hash_of(key, len) & (t->cap - 1);
    while (t->slots[i].key && !same(&t->slots[i], key, len))
        i = (i + 1) & (t->cap - 1);
    return &t->slots[i];
}

/* An empty table with room for n entries at half load; false when out of memory. */
static bool table_init(table *t, size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n + 2)
        cap *= 2;
    *t = (table){calloc(cap, sizeof(entry)), cap, 0};
    return t->slots != NULL;
}

static bool table_grow(table *t)
{
    table bigger;
    if (!table_init(&bigger, t->cap))
        return false;
    for (size_t i = 0; i < t->cap; i++)
        if (t->slots[i].key)
            *slot_of(&bigger, t->slots[i].key, t->slots[i].len) = t->slots[i];
    bigger.n = t->n;
    free(t->slots);
    *t = bigger;
    return true;
}

static void *table_get(const table *t, const void *key, size_t len)
{
    return slot_of(t, key, len)->value;
}

/* Sets key to value; false when out of memory. */
static bool table_put(table *t, const void *key, size_t len, void *value)
{
    if (2 * (t->n + 1) > t->cap && !table_grow(t))
        return false;
    entry *e = slot_of(t, key, len);
    t->n += e->key == NULL;
    *e = (entry){key, len, value};
    return true;
}

/* ---------------------------------------------------------------- the walk */

typedef struct resolver {
    tl_config_loader *ld;
    struct fy_document *doc;
    table anchor_of;                     /* node -> its anchor's name (a NUL-ended copy) */
    table defined;                       /* anchor name -> the node it names so far */
    struct fy_node *path[MAX_DEPTH + 1]; /* the nodes being resolved, root first */
    size_t depth;
    size_t added; /* nodes copies added so far */
    bool failed;
} resolver;

/* The text of a scalar node (not NUL-ended). */
static const char *text_of(struct fy_node *n, size_t *len)
{
    const char *s = fy_node_get_scalar(n, len);
    return s ? s : (*len = 0, "");
}

static bool is_alias(struct fy_node *n)
{
    return n && fy_node_get_type(n) == FYNT_SCALAR && fy_node_get_style(n) == FYNS_ALIAS;
}

static bool is_merge_key(struct fy_node *k)
{
    size_t len;
    if (!k || fy_node_get_type(k) != FYNT_SCALAR || fy_node_get_style(k) != FYNS_PLAIN)
        return false;
    const char *s = text_of(k, &len);
    return len == 2 && s[0] == '<' && s[1] == '<';
}

static void oom(resolver *r)
{
    r->ld->oom = true;
    r->failed = true;
}

/*
 * Fills anchor_of from the document's list of anchors (at most TL_CONFIG_MAX_ANCHORS,
 * by document.c's first pass), then takes them off the nodes: copies of anchored
 * nodes would each add one more to the list, and libfyaml frees a document in the
 * square of that list's length.
 */
static bool read_anchors(resolver *r)
{
    struct fy_node *nodes[TL_CONFIG_MAX_ANCHORS];
    size_t n = 0;
    void *it = NULL;
    struct fy_anchor *a;
    while ((a = fy_document_anchor_iterate(r->doc, &it)) && n < TL_CONFIG_MAX_ANCHORS) {
        size_t len;
        const char *name = fy_anchor_get_text(a, &len);
        char *copy = name ? tl_config_strndup(r->ld, name, len) : NULL;
        nodes[n++] = fy_anchor_node(a);
        if (!copy || !table_put(&r->anchor_of, nodes[n - 1], SIZE_MAX, copy))
            return false;
    }
    for (size_t i = 0; i < n; i++)
        fy_node_remove_anchor(nodes[i]);
    return true;
}

/*
 * Counts the nodes of n and its depth, stopping once the count passes limit (what is
 * left of the budget): a walk of at most limit + 1 nodes, however big n is.
 */
static size_t count(struct fy_node *n, size_t limit, size_t *depth)
{
    size_t total = 1, d = 0, sub;
    void *it = NULL;
    *depth = 1;
    if (fy_node_get_type(n) == FYNT_SEQUENCE) {
        struct fy_node *item;
        while (total <= limit && (item = fy_node_sequence_iterate(n, &it))) {
            total += count(item, limit - total, &sub);
            d = sub > d ? sub : d;
        }
    } else if (fy_node_get_type(n) == FYNT_MAPPING) {
        struct fy_node_pair *p;
        while (total <= limit && (p = fy_node_mapping_iterate(n, &it))) {
            total += count(fy_node_pair_key(p), limit - total, &sub);
            d = sub > d ? sub : d;
            if (total <= limit)
                total += count(fy_node_pair_value(p), limit - total, &sub);
            d = sub > d ? sub : d;
        }
    }
    *depth += d;
    return total;
}

/* A copy of target, whose place is where the copy goes (at r->depth); NULL after a
 * refusal, reported at `at` as about "*name". */
static struct fy_node *copy_within_bounds(resolver *r, struct fy_node *target, struct fy_node *at,
                                          const char *name, size_t name_len)
{
    tl_config_pos p = tl_config_node_pos(r->ld, at);
    size_t depth, left = TL_CONFIG_MAX_ALIAS_NODES - r->added;
    size_t n = count(target, left, &depth);
    if (n > left) {
        tl_config_report(r->ld, p, "",
                         "alias '*%.*s' expands the document past %d added nodes; refused",
                         (int)name_len, name, TL_CONFIG_MAX_ALIAS_NODES);
        r->failed = true;
        return NULL;
    }
    if (r->depth + depth > MAX_DEPTH) {
        tl_config_report(r->ld, p, "", "alias '*%.*s' nests the document deeper than %d levels",
                         (int)name_len, name, MAX_DEPTH);
        r->failed = true;
        return NULL;
    }
    struct fy_node *copy = fy_node_copy(r->doc, target);
    if (!copy)
        oom(r);
    r->added += n;
    return copy;
}

/* The node alias names, already resolved; NULL after a report. */
static struct fy_node *target_of(resolver *r, struct fy_node *alias, size_t *len, const char **name)
{
    *name = text_of(alias, len);
    struct fy_node *t = table_get(&r->defined, *name, *len);
    bool cycle = false;
    for (size_t i = 0; t && i < r->depth; i++)
        cycle = cycle || r->path[i] == t;
    if (t && !cycle)
        return t;
    tl_config_report(r->ld, tl_config_node_pos(r->ld, alias), "", "alias '*%.*s': %s", (int)*len,
                     *name,
                     cycle ? "it names a node that contains it" : "no anchor comes before it");
    r->failed = true;
    return NULL;
}

static struct fy_node *resolve(resolver *r, struct fy_node *n);

/* Puts the resolved items back in order where any changed; the replaced aliases go. */
static void resolve_sequence(resolver *r, struct fy_node *seq)
{
    size_t n = (size_t)fy_node_sequence_item_count(seq), i = 0;
    struct fy_node **items = calloc(n + 1, sizeof(*items)), *item;
    if (!items) {
        oom(r);
        return;
    }
    bool changed = false;
    void *it = NULL;
    while ((item = fy_node_sequence_iterate(seq, &it)) && i < n) {
        items[i] = resolve(r, item);
        changed = changed || items[i] != item;
        i++;
    }
    /* Taking items from the head costs libfyaml no search of the list. */
    bool rebuild = changed && !r->failed;
    it = NULL;
    for (size_t k = 0; changed && k < i; k++) {
        if (!rebuild) { /* the sequence stays as it is: drop the copies made for it */
            item = fy_node_sequence_iterate(seq, &it);
            if (items[k] != item)
                fy_node_free(items[k]);
            continue;
        }
        void *head = NULL;
        item = fy_node_sequence_remove(seq, fy_node_sequence_iterate(seq, &head));
        if (items[k] != item)
            fy_node_free(item);
        if (fy_node_sequence_append(seq, items[k]) != 0)
            oom(r);
    }
    free(items);
}

/* Copies the pairs of the mapping source names that keys does not hold yet. */
static void merge_from(resolver *r, struct fy_node *map, struct fy_node *alias, table *keys)
{
    size_t len = 0;
    const char *name = "";
    struct fy_node *src = is_alias(alias) ? target_of(r, alias, &len, &name) : NULL;
    if (!r->failed && (!src || fy_node_get_type(src) != FYNT_MAPPING)) {
        tl_config_report(r->ld, tl_config_node_pos(r->ld, alias), "",
                         "a merge key '<<' takes an alias to a mapping, or a list of them");
        r->failed = true;
    }
    void *it = NULL;
    struct fy_node_pair *p;
    while (!r->failed && (p = fy_node_mapping_iterate(src, &it))) {
        size_t klen;
        const char *k = text_of(fy_node_pair_key(p), &klen);
        if (fy_node_get_type(fy_node_pair_key(p)) != FYNT_SCALAR || table_get(keys, k, klen))
            continue;
        struct fy_node *kc = copy_within_bounds(r, fy_node_pair_key(p), alias, name, len);
        struct fy_node *vc =
            kc ? copy_within_bounds(r, fy_node_pair_value(p), alias, name, len) : NULL;
        if (!vc || fy_node_mapping_append(map, kc, vc) != 0 || !table_put(keys, k, klen, p)) {
            fy_node_free(kc);
            fy_node_free(vc);
            r->failed = true;
        }
    }
}

/* Reports duplicate keys into keys (text -> pair); false when out of memory. */
static bool find_duplicates(resolver *r, struct fy_node *map, table *keys)
{
    void *it = NULL;
    struct fy_node_pair *p;
    while ((p = fy_node_mapping_iterate(map, &it))) {
        struct fy_node *k = fy_node_pair_key(p);
        if (!k || fy_node_get_type(k) != FYNT_SCALAR || is_alias(k))
            continue; /* not a name: the schema refuses it */
        size_t len;
        const char *s = text_of(k, &len);
        if (table_get(keys, s, len)) {
            tl_config_report(r->ld, tl_config_node_pos(r->ld, k), "", "duplicate key");
            r->failed = true;
        } else if (!table_put(keys, s, len, p)) {
            return false;
        }
    }
    return true;
}

static void resolve_mapping(resolver *r, struct fy_node *map)
{
    table keys;
    if (!table_init(&keys, (size_t)fy_node_mapping_item_count(map)) ||
        !find_duplicates(r, map, &keys)) {
        free(keys.slots);
        oom(r);
        return;
    }
    struct fy_node_pair *p, *merge = NULL;
    void *it = NULL;
    while ((p = fy_node_mapping_iterate(map, &it))) {
        struct fy_node *v = fy_node_pair_value(p);
        if (is_merge_key(fy_node_pair_key(p))) {
            merge = p;
            continue;
        }
        struct fy_node *rv = v ? resolve(r, v) : NULL;
        if (rv && rv != v && fy_node_pair_set_value(p, rv) != 0)
            oom(r);
    }
    struct fy_node *from = merge ? fy_node_pair_value(merge) : NULL;
    if (from && fy_node_get_type(from) == FYNT_SEQUENCE) {
        struct fy_node *item;
        it = NULL;
        while (!r->failed && (item = fy_node_sequence_iterate(from, &it)))
            merge_from(r, map, item, &keys);
    } else if (merge) {
        merge_from(r, map, from, &keys);
    }
    free(keys.slots);
    if (merge && !r->failed)
        fy_node_free(fy_node_mapping_remove_by_key(map, fy_node_pair_key(merge)));
}

/* Resolves n in place; returns what replaces it (a copy, for an alias), or n. */
static struct fy_node *resolve(resolver *r, struct fy_node *n)
{
    if (r->failed)
        return n;
    if (is_alias(n)) {
        size_t len;
        const char *name;
        struct fy_node *t = target_of(r, n, &len, &name);
        struct fy_node *copy = t ? copy_within_bounds(r, t, n, name, len) : NULL;
        return copy ? copy : n;
    }
    const char *anchor = table_get(&r->anchor_of, n, SIZE_MAX);
    if (anchor && !table_put(&r->defined, anchor, strlen(anchor), n)) {
        oom(r);
        return n;
    }
    enum fy_node_type type = fy_node_get_type(n);
    if (type == FYNT_SCALAR || r->depth == MAX_DEPTH)
        return n;
    r->path[r->depth++] = n;
    if (type == FYNT_SEQUENCE)
        resolve_sequence(r, n);
    else
        resolve_mapping(r, n);
    r->depth--;
    return n;
}

bool tl_config_resolve(tl_config_loader *ld, struct fy_document *doc)
{
    resolver *r = calloc(1, sizeof(*r));
    if (!r) {
        ld->oom = true;
        return false;
    }
    *r = (resolver){.ld = ld, .doc = doc};
    struct fy_node *root = fy_document_root(doc);
    if (!table_init(&r->anchor_of, 64) || !table_init(&r->defined, 64) || !read_anchors(r))
        oom(r);
    else if (root && resolve(r, root) != root)
        r->failed = true; /* a document that is only an alias names nothing before it */
    bool ok = !r->failed;
    free(r->anchor_of.slots);
    free(r->defined.slots);
    free(r);
    return ok;
}
