-- The newest timeline event of each type that moves a room up Element X's
-- room list (the fixed bump types of MSC4186), per room, so a new connection
-- sorts by it without looking up every room's events.
CREATE TABLE syncv3_room_bump (
    room_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    event_nid BIGINT NOT NULL,      -- the newest timeline event of this type
    ts BIGINT NOT NULL,             -- its origin_server_ts
    PRIMARY KEY (room_id, event_type)
);
INSERT INTO syncv3_room_bump (room_id, event_type, event_nid, ts)
SELECT DISTINCT ON (room_id, event_type) room_id, event_type, event_nid, origin_server_ts
FROM syncv3_events
WHERE NOT is_state AND event_type IN ('m.room.create', 'm.room.message', 'm.room.encrypted', 'm.sticker',
                                      'm.call.invite', 'm.poll.start', 'm.beacon_info')
ORDER BY room_id, event_type, event_nid DESC;
