/*
 * taskloop intrusive lists: a doubly-linked list whose links live inside the items, so
 * linking and unlinking never allocate and an item can leave from anywhere in O(1).
 * Header only; part of libtaskloop, used by the loop and the service runtime alike.
 *
 * Thread rules: none; a list belongs to whoever guards it.
 */
#ifndef TASKLOOP_LIST_H
#define TASKLOOP_LIST_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The link an item embeds; both NULL while it is in no list (or alone in one). */
typedef struct tl_link {
    struct tl_link *prev, *next;
} tl_link;

/* A list: first and last link, NULL when empty. A zeroed tl_list is empty. */
typedef struct tl_list {
    tl_link *head, *tail;
} tl_list;

/* The item that embeds link ptr as its member field. */
#define tl_list_item(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* True when the list holds nothing. */
static inline bool tl_list_empty(const tl_list *l)
{
    return l->head == NULL;
}

/* Adds n at the end of l. */
static inline void tl_list_push_back(tl_list *l, tl_link *n)
{
    n->next = NULL;
    n->prev = l->tail;
    if (l->tail)
        l->tail->next = n;
    else
        l->head = n;
    l->tail = n;
}

/* Adds n at the front of l. */
static inline void tl_list_push_front(tl_list *l, tl_link *n)
{
    n->prev = NULL;
    n->next = l->head;
    if (l->head)
        l->head->prev = n;
    else
        l->tail = n;
    l->head = n;
}

/* Takes n, which is in l, out of it; its links are NULL afterwards. */
static inline void tl_list_remove(tl_list *l, tl_link *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        l->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        l->tail = n->prev;
    n->prev = n->next = NULL;
}

/* Takes the first link out of l and returns it, or NULL when l is empty. */
static inline tl_link *tl_list_pop_front(tl_list *l)
{
    tl_link *n = l->head;
    if (n)
        tl_list_remove(l, n);
    return n;
}

#ifdef __cplusplus
}
#endif

#endif
