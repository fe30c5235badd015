#include "ingest/redact.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/jsonx.h"

/* The newest rules this file knows; later versions redact the same way. */
#define NEWEST_RULES 11

static bool in_list(const char *s, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(s, *list) == 0) return true;
    return false;
}

int redact_rules_version(const char *room_version)
{
    if (!room_version || !*room_version) return 1;
    char *end;
    long n = strtol(room_version, &end, 10);
    if (*end || n < 1) return 1; /* unknown versions: the v1 rules */
    return n > NEWEST_RULES ? NEWEST_RULES : (int)n;
}

/* Deletes every key of o that is not in keep. */
static void keep_only(json_t *o, const char *const *keep)
{
    const char *key;
    json_t *val;
    void *tmp;
    json_object_foreach_safe(o, tmp, key, val)
    {
        if (!in_list(key, keep)) json_object_del(o, key);
    }
}

/* The content keys an event type keeps under version ver; NULL = all. */
static const char *const *content_keys(const char *type, int ver)
{
    static const char *const member[] = {"membership", NULL};
    static const char *const member_v9[] = {"membership", "join_authorised_via_users_server", NULL};
    static const char *const member_v11[] = {"membership", "join_authorised_via_users_server",
                                             "third_party_invite", NULL};
    static const char *const create[] = {"creator", NULL};
    static const char *const join_rules[] = {"join_rule", NULL};
    static const char *const join_rules_v8[] = {"join_rule", "allow", NULL};
    static const char *const power[] = {"ban",   "events",        "events_default", "kick",
                                        "redact", "state_default", "users",          "users_default",
                                        NULL};
    static const char *const power_v11[] = {"ban",    "events",        "events_default", "invite",
                                            "kick",   "redact",        "state_default",  "users",
                                            "users_default", NULL};
    static const char *const history[] = {"history_visibility", NULL};
    static const char *const aliases[] = {"aliases", NULL};
    static const char *const redaction_v11[] = {"redacts", NULL};
    static const char *const none[] = {NULL};
    if (strcmp(type, "m.room.member") == 0) return ver >= 11 ? member_v11 : ver >= 9 ? member_v9 : member;
    if (strcmp(type, "m.room.create") == 0) return ver >= 11 ? NULL : create;
    if (strcmp(type, "m.room.join_rules") == 0) return ver >= 8 ? join_rules_v8 : join_rules;
    if (strcmp(type, "m.room.power_levels") == 0) return ver >= 11 ? power_v11 : power;
    if (strcmp(type, "m.room.history_visibility") == 0) return history;
    if (strcmp(type, "m.room.aliases") == 0 && ver <= 5) return aliases;
    if (strcmp(type, "m.room.redaction") == 0 && ver >= 11) return redaction_v11;
    return none;
}

int redact_event(json_t *ev, const char *room_version, json_t *because)
{
    if (!json_is_object(ev)) {
        json_decref(because);
        return -1;
    }
    static const char *const top_v1[] = {"event_id", "type",        "room_id",    "sender",      "state_key",
                                         "content",  "hashes",      "signatures", "depth",       "prev_events",
                                         "prev_state", "auth_events", "origin",   "origin_server_ts",
                                         "membership", NULL};
    static const char *const top_v11[] = {"event_id", "type",       "room_id", "sender",      "state_key",
                                          "content",  "hashes",     "signatures", "depth",    "prev_events",
                                          "auth_events", "origin_server_ts", NULL};
    int ver = redact_rules_version(room_version);
    keep_only(ev, ver >= 11 ? top_v11 : top_v1);
    json_t *type_j = json_object_get(ev, "type");
    const char *type = json_is_string(type_j) ? json_string_value(type_j) : "";
    json_t *content = json_object_get(ev, "content");
    if (!json_is_object(content)) {
        content = json_object();
        json_object_set_new(ev, "content", content);
    }
    const char *const *keep = content_keys(type, ver);
    if (keep) keep_only(content, keep);
    if (ver >= 11 && strcmp(type, "m.room.member") == 0) {
        /* Of a third-party invite only its signed block survives. */
        json_t *tpi = json_object_get(content, "third_party_invite");
        if (json_is_object(tpi)) {
            static const char *const signed_only[] = {"signed", NULL};
            keep_only(tpi, signed_only);
        } else if (tpi) {
            json_object_del(content, "third_party_invite");
        }
    }
    json_t *uns = json_object();
    if (because) json_object_set_new(uns, "redacted_because", because);
    json_object_set_new(ev, "unsigned", uns);
    return 0;
}

char *redact_json(const char *event_json, const char *room_version, const char *redaction_json)
{
    json_error_t jerr;
    json_t *ev = jsonx_loadb(event_json, strlen(event_json), 0, &jerr);
    if (!json_is_object(ev)) {
        json_decref(ev);
        return NULL;
    }
    json_t *because = redaction_json ? jsonx_loadb(redaction_json, strlen(redaction_json), 0, &jerr) : NULL;
    redact_event(ev, room_version, because);
    char *out = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(ev);
    return out;
}
