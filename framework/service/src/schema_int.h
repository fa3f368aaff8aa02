/*
 * What the schema files share: the node vocabulary of schema_nodes.c (paths, node
 * kinds, lookups, typed fields) and the sections schema.c hands on to
 * schema_adapters.c and schema_routes.c. Private to schema*.c.
 *
 * Every function here reports what is wrong (tl_config_report) and lets the caller
 * carry on, so one run lists all the problems of a file.
 */
#ifndef TL_SCHEMA_INT_H
#define TL_SCHEMA_INT_H

#include <libfyaml.h>

#include "config_int.h"

/* Room for a path in messages (sources.orders.brokers, routes[0].timeout). */
#define PATH_LEN 256
/* Room for a reason given by a value parser. */
#define WHY_LEN 512

/* ---------------------------------------------------------------- schema_nodes.c */

/* dst (PATH_LEN bytes) = "parent.key", or "key" at the top; a path cut short ends in "...". */
void tl_schema_join(char *dst, const char *parent, const char *key);

/* dst (PATH_LEN bytes) = "parent[i]", cut short as tl_schema_join. */
void tl_schema_join_index(char *dst, const char *parent, size_t i);

/* Where n starts, or fallback when it has no place (NULL, an empty block collection). */
tl_config_pos tl_schema_pos_or(tl_config_loader *ld, struct fy_node *n, tl_config_pos fallback);

/* True for NULL and a plain empty, "~" or "null" scalar: what `key:` alone gives. */
bool tl_schema_is_null(struct fy_node *n);

/* What n is, for messages: "nothing", "a mapping", "a list" or "a scalar". */
const char *tl_schema_kind(struct fy_node *n);

/* True when n is of type t; otherwise reports "expected WHAT, got KIND" at n. */
bool tl_schema_expect_kind(tl_config_loader *ld, struct fy_node *n, enum fy_node_type t,
                           const char *path, const char *what);

/*
 * The interpolated text of a scalar value, owned by the config; NULL after an error (a
 * NUL character, a bad ${...}). key is the key it is the value of (NULL: none); when its
 * name says secret, an error never quotes the value.
 */
char *tl_schema_scalar(tl_config_loader *ld, struct fy_node *n, const char *path, const char *key,
                       const char *what);

/*
 * How messages may quote text, the value of node n under key: as written in the file
 * when it came from ${VAR} (the message names the variable, never what it held), masked
 * when key names a secret, else text itself (the same pointer).
 */
const char *tl_schema_shown(tl_config_loader *ld, struct fy_node *n, const char *key,
                            const char *text);

/*
 * Reports why at p under path: an adapter's check found fault with value, the text of
 * node n under key. Wherever why quotes value, it shows what tl_schema_shown gives
 * instead (the ${VAR} as written, or the mask of a secret).
 */
void tl_schema_report_value(tl_config_loader *ld, tl_config_pos p, const char *path,
                            struct fy_node *n, const char *key, const char *value, const char *why);

/* Why an empty value (text, quoted as shown) is refused, into why. */
void tl_schema_empty_why(const char *text, const char *shown, char *why, size_t whylen);

/* A mapping key as written (keys are names, so not interpolated); NULL if reported. */
char *tl_schema_key_text(tl_config_loader *ld, struct fy_node_pair *pair, const char *path);

/* The number of items of a mapping or a list; 0 for anything else. */
size_t tl_schema_count_of(struct fy_node *n);

/* The value node of map[key], or NULL; tl_schema_lookup_key tells whether the key is there. */
struct fy_node *tl_schema_lookup(struct fy_node *map, const char *key);

/* The key node of map[key], or NULL when absent: tells a present `key:` from none. */
struct fy_node *tl_schema_lookup_key(struct fy_node *map, const char *key);

/* Reports key (node k, under path) as unknown, with the nearest of known if close. */
void tl_schema_unknown_key(tl_config_loader *ld, struct fy_node *k, const char *path,
                           const char *key, const char *const *known);

/* Reports every key of map that is not in known (NULL-ended). */
void tl_schema_check_keys(tl_config_loader *ld, struct fy_node *map, const char *path,
                          const char *const *known);

/* Reports at `at` each of keys (NULL-ended) that map lacks. */
void tl_schema_require(tl_config_loader *ld, struct fy_node *map, tl_config_pos at,
                       const char *path, const char *const *keys);

/* The non-empty string map[key], owned by the config; NULL when absent or reported. */
char *tl_schema_get_str(tl_config_loader *ld, struct fy_node *map, const char *path,
                        const char *key);

/* Sets *out to the integer map[key] within [min, max]; false when absent or reported. */
bool tl_schema_get_int(tl_config_loader *ld, struct fy_node *map, const char *path, const char *key,
                       int64_t min, int64_t max, int64_t *out);

/* As tl_schema_get_int, also taking the word `word` for word_value ("auto"). */
bool tl_schema_get_int_or(tl_config_loader *ld, struct fy_node *map, const char *path,
                          const char *key, int64_t min, int64_t max, const char *word,
                          int64_t word_value, int64_t *out);

/* Sets *out to the boolean map[key]; false when absent or reported. */
bool tl_schema_get_bool(tl_config_loader *ld, struct fy_node *map, const char *path,
                        const char *key, bool *out);

/* Sets *out to the duration map[key] in ms (positive: more than 0); false as above. */
bool tl_schema_get_duration(tl_config_loader *ld, struct fy_node *map, const char *path,
                            const char *key, bool positive, int64_t *out);

/* Sets *out to the size map[key] in bytes ("512MiB"), at least min; false when absent
 * or reported. */
bool tl_schema_get_size(tl_config_loader *ld, struct fy_node *map, const char *path,
                        const char *key, int64_t min, int64_t *out);

/* The index of map[key] among names (NULL-ended); def when absent or reported. */
int tl_schema_get_enum(tl_config_loader *ld, struct fy_node *map, const char *path, const char *key,
                       const char *const *names, int def);

/* The mapping map[key], or NULL when absent, null, or not a mapping (reported). */
struct fy_node *tl_schema_get_map(tl_config_loader *ld, struct fy_node *map, const char *path,
                                  const char *key);

/*
 * With plugins checked but not opened (no_plugin_code), notes at p that the `what`
 * called name, registered by nothing, is taken to come from them, and returns true;
 * false when no plugin was skipped, so that the caller reports an error.
 */
bool tl_schema_from_plugins(tl_config_loader *ld, tl_config_pos p, const char *path,
                            const char *what, const char *name);

/* A mapping of names to scalars (route params, librdkafka properties), in file order,
 * into *out (owned by the config); false only when out of memory. */
bool tl_schema_load_kvs(tl_config_loader *ld, struct fy_node *map, const char *path,
                        const tl_kv **out, size_t *n);

/* ---------------------------------------------------------------- schema_admin.c */

/* Checks admin.token or admin.token_file of the admin section map (reading the file)
 * and sets ld->cfg->admin_token. */
void tl_schema_load_admin_token(tl_config_loader *ld, struct fy_node *map);

/* ---------------------------------------------------------------- schema_adapters.c */

/* Checks root's sources against the registered source types and their parameters;
 * sets ld->sources_ok once they are a mapping worth checking routes against. */
void tl_schema_load_sources(tl_config_loader *ld, struct fy_node *root);

/* Checks root's sinks against the registered sink schemes and their parameters. */
void tl_schema_load_sinks(tl_config_loader *ld, struct fy_node *root);

/* Runs the sink's check op (if any) on a target's address, the text of node n at p. */
void tl_schema_check_address(tl_config_loader *ld, const tl_sink_ops *ops, struct fy_node *n,
                             tl_config_pos p, const char *path, const char *address);

/* Checks a route's params (the kv pairs loaded from map, NULL when it has none; at is
 * the route's place) against what its handler declared (tl_register_handler_params);
 * the handler's own check runs only when the route so far, and its params, are clean. */
void tl_schema_check_handler_params(tl_config_loader *ld, struct fy_node *map, tl_config_pos at,
                                    const char *path, const char *handler,
                                    const tl_handler_params *decl, const tl_config_route *r,
                                    bool route_clean);

/* ---------------------------------------------------------------- schema_routes.c */

/* Checks root's routes: source, handler, ordering, timeout, on_stall, on_error, params. */
void tl_schema_load_routes(tl_config_loader *ld, struct fy_node *root);

/* Reports each source no route reads from, once sources and routes checked clean. */
void tl_schema_check_sources_routed(tl_config_loader *ld);

#endif
