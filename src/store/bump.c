/* Newest event per bump type; see bump.h. */
#include "store/bump.h"

#include <stdbool.h>
#include <string.h>

#include "store/db.h"

const char *const store_bump_types[STORE_N_BUMP] = {
    "m.room.create", "m.room.message", "m.room.encrypted", "m.sticker",
    "m.call.invite", "m.poll.start",   "m.beacon_info",
};

int store_bump_index(const char *type)
{
    for (int i = 0; type && i < STORE_N_BUMP; i++)
        if (!strcmp(store_bump_types[i], type)) return i;
    return -1;
}

int store_bump_is_default(const char *const *types, int n)
{
    bool seen[STORE_N_BUMP] = {false};
    for (int i = 0; i < n; i++) {
        int k = store_bump_index(types[i]);
        if (k < 0) return 0;
        seen[k] = true;
    }
    for (int k = 0; k < STORE_N_BUMP; k++)
        if (!seen[k]) return 0;
    return 1;
}

int64_t store_bump_ts(const struct store_bump *b, int64_t after_nid, int64_t pos)
{
    int64_t ts = 0;
    for (int k = 0; k < STORE_N_BUMP; k++) {
        if (b->nid[k] <= after_nid) continue;
        if (b->nid[k] > pos) return -1;
        if (b->ts[k] > ts) ts = b->ts[k];
    }
    return ts;
}

int store_bump_put(PGconn *c, char **err, const char *rooms, const char *types, const char *nids, const char *ts)
{
    const char *p[] = {rooms, types, nids, ts};
    return db_cmd(c, err,
                  "INSERT INTO syncv3_room_bump AS b (room_id, event_type, event_nid, ts) "
                  "SELECT DISTINCT ON (room_id, event_type) * FROM unnest($1::text[], $2::text[], $3::bigint[], "
                  "$4::bigint[]) AS u(room_id, event_type, event_nid, ts) ORDER BY room_id, event_type, event_nid DESC "
                  "ON CONFLICT (room_id, event_type) DO UPDATE SET event_nid = EXCLUDED.event_nid, ts = EXCLUDED.ts "
                  "WHERE EXCLUDED.event_nid > b.event_nid",
                  4, p);
}
