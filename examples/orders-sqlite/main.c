/*
 * Orders from Kafka into SQLite: a service built on tl_service_main that registers one
 * handler, `orders.insert`, with lifecycle hooks.
 *
 *   init         once per route, when the service is built: opens (creating it if need
 *                be) the database named by the route param `db`, makes the table and
 *                closes it again; a path that cannot be opened fails the start, naming
 *                the path and SQLite's reason
 *   thread_init  on each worker thread: opens that thread's own connection
 *   thread_fini  closes it
 *   fini         frees what init made
 *
 * The handler reads a JSON order such as {"id":"o-1","customer":"c-7","amount":12.5}
 * (jansson) and inserts it with INSERT OR IGNORE on the order id, so that a message
 * delivered twice (a replay, a redelivery after a crash) adds nothing: the database
 * holds each order once. A payload that is not a JSON object with a string "id" fails
 * the attempt; the route's on_error retries it and then dead-letters it.
 *
 *   orders-sqlite run examples/orders-sqlite/orders.yaml
 *
 * After the summary it prints `orders inserted N, already there M, failed attempts F`.
 *
 * Thread rules: the handler runs on many workers at once, each with the connection its
 * thread_init opened (a thread-local); SQLite's WAL mode lets them write in turn while
 * busy_timeout makes one wait for another. The counters are atomics.
 */
#include <jansson.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <taskloop/kafka.h>
#include <taskloop/program.h>

/* How long a connection waits for another's write before the attempt fails. */
#define BUSY_TIMEOUT_MS 5000

typedef struct orders_counts {
    atomic_ulong inserted, duplicate, failed;
} orders_counts;

/* What init makes for a route: where its database is. */
typedef struct orders_db {
    char *path;
} orders_db;

/* The connection of this worker thread, for the route whose state it was opened for. */
static _Thread_local sqlite3 *thread_db;
static _Thread_local const orders_db *thread_db_of;

static const char schema[] = "PRAGMA journal_mode=WAL;"
                             "CREATE TABLE IF NOT EXISTS orders ("
                             " id TEXT PRIMARY KEY,"
                             " customer TEXT,"
                             " amount REAL,"
                             " body TEXT NOT NULL)";

/* Opens path read-write (creating it when create is true) with the busy timeout;
 * NULL with SQLite's reason in err. */
static sqlite3 *open_db(const char *path, bool create, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0);
    int rc = sqlite3_open_v2(path, &db, flags, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "cannot open database '%s': %s", path,
                 db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
    /* In WAL mode NORMAL syncs at checkpoints, not at every insert: an fsync per order
     * would hold every writer behind it and the 2s timeout would stall them. A crash
     * of the process loses nothing; an OS crash or power loss may lose the last inserts
     * (their offsets may be committed): choose FULL where that matters. */
    if (sqlite3_exec(db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "database '%s': %s", path, sqlite3_errmsg(db));
        sqlite3_close(db);
        return NULL;
    }
    return db;
}

static int orders_init(void *user, const tl_kv *params, size_t nparams, void **state, char *err,
                       size_t errlen)
{
    (void)user;
    const char *path = NULL;
    for (size_t i = 0; i < nparams; i++)
        if (strcmp(params[i].key, "db") == 0)
            path = params[i].value;
    if (!path || !*path) {
        snprintf(err, errlen, "params.db: the database file is required");
        return TL_EINVAL;
    }
    sqlite3 *db = open_db(path, true, err, errlen);
    if (!db)
        return TL_EFAIL;
    char *why = NULL;
    if (sqlite3_exec(db, schema, NULL, NULL, &why) != SQLITE_OK) {
        snprintf(err, errlen, "database '%s': %s", path, why ? why : "cannot create the table");
        sqlite3_free(why);
        sqlite3_close(db);
        return TL_EFAIL;
    }
    sqlite3_close(db);
    orders_db *st = calloc(1, sizeof(*st));
    if (!st || !(st->path = strdup(path))) {
        free(st);
        snprintf(err, errlen, "out of memory");
        return TL_ENOMEM;
    }
    *state = st;
    return 0;
}

/* A worker that cannot open its connection leaves it NULL: its attempts then fail
 * (and are retried, then dead-lettered) rather than the process going down. */
static void orders_thread_init(void *user, void *state)
{
    (void)user;
    char err[256];
    thread_db = open_db(((orders_db *)state)->path, false, err, sizeof(err));
    thread_db_of = state;
    if (!thread_db)
        tl_program_note("orders-sqlite: %s", err);
}

static void orders_thread_fini(void *user, void *state)
{
    (void)user, (void)state;
    sqlite3_close(thread_db);
    thread_db = NULL;
    thread_db_of = NULL;
}

static void orders_fini(void *user, void *state)
{
    (void)user;
    orders_db *st = state;
    free(st->path);
    free(st);
}

/* Fails the attempt with text, and counts it. */
static int refuse(tl_task *task, orders_counts *c, const char *text)
{
    atomic_fetch_add(&c->failed, 1);
    tl_task_set_error_text(task, text);
    return TL_EFAIL;
}

/* Inserts the order unless its id is there already; the SQLite result code. */
static int insert(const char *id, json_t *order, const tl_msg *msg, bool *added)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(thread_db,
                                "INSERT OR IGNORE INTO orders (id, customer, amount, body)"
                                " VALUES (?1, ?2, ?3, ?4)",
                                -1, &st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    json_t *customer = json_object_get(order, "customer");
    json_t *amount = json_object_get(order, "amount");
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    if (json_is_string(customer))
        sqlite3_bind_text(st, 2, json_string_value(customer), -1, SQLITE_TRANSIENT);
    if (json_is_number(amount))
        sqlite3_bind_double(st, 3, json_number_value(amount));
    sqlite3_bind_text(st, 4, msg->payload, (int)msg->len, SQLITE_TRANSIENT);
    rc = sqlite3_step(st);
    *added = rc == SQLITE_DONE && sqlite3_changes(thread_db) == 1;
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int orders_insert(tl_task *task, const tl_msg *msg, void *user)
{
    orders_counts *c = user;
    if (!thread_db || thread_db_of != tl_handler_state(task))
        return refuse(task, c, "no database connection on this worker");
    json_error_t jerr;
    json_t *order = json_loadb(msg->payload, msg->len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *id = order ? json_object_get(order, "id") : NULL;
    if (!json_is_object(order) || !json_is_string(id) || json_string_length(id) == 0) {
        char text[200];
        snprintf(text, sizeof(text), "not an order: %s",
                 order ? "a JSON object with a string \"id\" is needed" : jerr.text);
        json_decref(order);
        return refuse(task, c, text);
    }
    bool added = false;
    int rc = insert(json_string_value(id), order, msg, &added);
    json_decref(order);
    if (rc != SQLITE_OK) {
        char text[200];
        snprintf(text, sizeof(text), "insert failed: %s", sqlite3_errmsg(thread_db));
        return refuse(task, c, text);
    }
    atomic_fetch_add(added ? &c->inserted : &c->duplicate, 1);
    return 0;
}

/* True when the command line ran the service (`run`, not asking for help). */
static bool ran(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "run") != 0)
        return false;
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return false;
    return true;
}

int main(int argc, char **argv)
{
    static orders_counts counts;
    static const tl_handler_hooks hooks = {.init = orders_init,
                                           .thread_init = orders_thread_init,
                                           .thread_fini = orders_thread_fini,
                                           .fini = orders_fini};
    /* `taskloop check`-style checking of the route's params: db is required, nothing
     * else is taken (init still refuses an empty one). */
    static const tl_param params[] = {
        {"db", TL_PARAM_STRING, true, false, "the SQLite database file"},
        {NULL, 0, false, false, NULL}};
    static const tl_handler_params declared = {params, NULL, NULL};
    static const tl_main_opts opts = {
        .name = "orders-sqlite",
        .about = "Inserts JSON orders from Kafka into SQLite, each order once (handler\n"
                 "orders.insert; route param db: the database file).\n"};
    tl_registry *reg = NULL;
    if (tl_registry_new(&reg) != 0)
        return 1;
    int rc = 1;
    if (tl_kafka_register(reg) != 0 ||
        tl_register_handler_hooks(reg, "orders.insert", orders_insert, &counts, &hooks) != 0 ||
        tl_register_handler_params(reg, "orders.insert", &declared) != 0) {
        fprintf(stderr, "orders-sqlite: cannot register the adapter and the handler\n");
    } else {
        rc = tl_service_main(argc, argv, reg, &opts);
        if (ran(argc, argv))
            printf("orders inserted %lu, already there %lu, failed attempts %lu\n",
                   atomic_load(&counts.inserted), atomic_load(&counts.duplicate),
                   atomic_load(&counts.failed));
    }
    tl_registry_free(reg);
    return rc;
}
