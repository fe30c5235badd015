/* Computed room names; see roomname.h. */
#include "sync/roomname.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/ufold.h"

static bool nonempty(const char *s) { return s && s[0]; }

static const char *label_of(const struct roomname_hero *h)
{
    return nonempty(h->displayname) ? h->displayname : h->user_id;
}

/* Appends "A", "A and B", "A, B and C" (last separated by " and "). */
static void join_labels(struct buf *b, char **labels, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (i > 0) buf_puts(b, i == n - 1 ? " and " : ", ");
        buf_puts(b, labels[i]);
    }
}

char *roomname_compute(const char *name, const char *alias, const struct roomname_hero *heroes,
                       size_t n_heroes, int64_t joined, int64_t invited)
{
    if (nonempty(name)) return xstrdup(name);
    if (nonempty(alias)) return xstrdup(alias);

    if (n_heroes > ROOMNAME_MAX_HEROES) n_heroes = ROOMNAME_MAX_HEROES;
    int64_t others = joined + invited - 1;
    bool alone = others <= 0;
    /* With no heroes but other members the original produced
     * " and N others" (leading space, no names). Without anybody to name we
     * cannot say anything more useful, so we say "Empty Room" as in the
     * alone case - the same fallback the Matrix spec suggests for clients. */
    if (n_heroes == 0) return xstrdup("Empty Room");

    /* Disambiguate labels that collide with another hero's label or user ID:
     * only heroes showing a displayname get the " (<user_id>)" suffix, since a
     * bare user ID is already unique. */
    char *labels[ROOMNAME_MAX_HEROES];
    for (size_t i = 0; i < n_heroes; i++) {
        const char *li = label_of(&heroes[i]);
        bool clash = false;
        for (size_t j = 0; j < n_heroes && !clash; j++) {
            if (j == i) continue;
            clash = strcmp(li, label_of(&heroes[j])) == 0 || strcmp(li, heroes[j].user_id) == 0;
        }
        if (clash && nonempty(heroes[i].displayname))
            labels[i] = xasprintf("%s (%s)", heroes[i].displayname, heroes[i].user_id);
        else
            labels[i] = xstrdup(li);
    }

    struct buf b = BUF_INIT;
    if ((int64_t)n_heroes >= others) {
        if (n_heroes == 1) {
            /* Checked before the "alone" wrap: a single hero is never
             * "Empty Room (was X)" (matches the original). */
            buf_puts(&b, labels[0]);
        } else {
            if (alone) buf_puts(&b, "Empty Room (was ");
            join_labels(&b, labels, n_heroes);
            if (alone) buf_putc(&b, ')');
        }
    } else {
        if (joined + invited <= 1) buf_puts(&b, "Empty Room (was ");
        for (size_t i = 0; i < n_heroes; i++) {
            if (i) buf_puts(&b, ", ");
            buf_puts(&b, labels[i]);
        }
        /* "1 others" is kept for wire compatibility with the original. */
        buf_printf(&b, " and %lld others", (long long)(others - (int64_t)n_heroes));
        if (joined + invited <= 1) buf_putc(&b, ')');
    }
    for (size_t i = 0; i < n_heroes; i++) free(labels[i]);
    return buf_detach(&b, NULL);
}

static bool strip_char(unsigned char c) { return c && strchr("#!():_@", c) != NULL; }

char *roomname_sort_key(const char *name)
{
    if (!name) name = "";
    const unsigned char *s = (const unsigned char *)name;
    size_t a = 0, z = strlen(name);
    while (a < z && strip_char(s[a])) a++;
    while (z > a && strip_char(s[z - 1])) z--;
    char *core = xstrndup(name + a, z - a);
    char *key = ufold_sort_key(core);
    free(core);
    return key;
}
