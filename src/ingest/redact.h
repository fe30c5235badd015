/* The Matrix redaction algorithm: what is left of an event once it has been
 * redacted, following the rules of the room's version. Pure functions on
 * JSON, no database.
 *
 * Kept, for every room version: the top-level keys event_id, type, room_id,
 * sender, state_key, content, hashes, signatures, depth, prev_events,
 * auth_events, origin_server_ts (plus origin, membership and prev_state
 * before v11). Everything else goes, `unsigned` included (bundled relations,
 * prev_content, age, ...): the redacted copy gets a fresh `unsigned` holding
 * only `redacted_because`. Content keys kept per event type:
 *
 *   m.room.member             membership; join_authorised_via_users_server
 *                             from v9; third_party_invite.signed from v11
 *   m.room.create             creator; all content from v11
 *   m.room.join_rules         join_rule; allow from v8
 *   m.room.power_levels       ban, events, events_default, kick, redact,
 *                             state_default, users, users_default; invite
 *                             from v11
 *   m.room.history_visibility history_visibility
 *   m.room.aliases            aliases, up to v5 only
 *   m.room.redaction          redacts, from v11
 *
 * Room versions are decimal strings; versions above 11 follow the v11 rules,
 * and anything unknown (a missing version, "org.example.custom") the v1
 * rules. */
#ifndef SYNCV3_INGEST_REDACT_H
#define SYNCV3_INGEST_REDACT_H

#include <jansson.h>

/* The rules a room version string selects: 1..11 (an unknown version is 1,
 * newer numbered versions are 11). */
int redact_rules_version(const char *room_version);

/* Redacts ev (an event object) in place by the rules of room_version and sets
 * unsigned to {"redacted_because": because} ({} when because is NULL). The
 * reference to because is stolen. Returns 0, or -1 (nothing changed, because
 * released) when ev is not an object. */
int redact_event(json_t *ev, const char *room_version, json_t *because);

/* The same on JSON text: returns the redacted event as compact JSON (heap,
 * the caller frees) with the redaction event (redaction_json, may be NULL)
 * as unsigned.redacted_because, or NULL when event_json is not a JSON
 * object. An unparsable redaction_json is left out. */
char *redact_json(const char *event_json, const char *room_version, const char *redaction_json);

#endif
