-- syncv3 schema, version 1.
-- Every event is stored once (event_id unique) with a monotonically increasing
-- NID. Room state is a set of intervals: the row with end_nid IS NULL is the
-- current value of (room, type, state_key); "state at position P" is the row
-- with start_nid <= P < end_nid.

CREATE SEQUENCE syncv3_event_nids_seq;

CREATE TABLE syncv3_events (
    event_nid BIGINT PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    room_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    state_key TEXT,                 -- NULL for message events
    sender TEXT NOT NULL DEFAULT '',
    origin_server_ts BIGINT NOT NULL DEFAULT 0,
    is_state BOOLEAN NOT NULL,      -- came from a state block, never part of a timeline
    membership TEXT,                -- content.membership of member events
    prev_batch TEXT,                -- upstream prev_batch, on the first event of a timeline chunk
    missing_previous BOOLEAN NOT NULL DEFAULT FALSE, -- first event of a limited chunk
    event TEXT NOT NULL             -- the event's JSON as served
);
CREATE INDEX syncv3_events_timeline ON syncv3_events (room_id, event_nid) WHERE NOT is_state;
CREATE INDEX syncv3_events_membership ON syncv3_events (state_key, event_nid)
    WHERE event_type = 'm.room.member';

CREATE TABLE syncv3_room_state (
    room_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_nid BIGINT NOT NULL,      -- the state event
    start_nid BIGINT NOT NULL,      -- first position at which it is the state
    end_nid BIGINT,                 -- first position at which it no longer is; NULL = current
    membership TEXT                 -- for m.room.member: content.membership
);
CREATE UNIQUE INDEX syncv3_room_state_current ON syncv3_room_state (room_id, event_type, state_key)
    WHERE end_nid IS NULL;
CREATE INDEX syncv3_room_state_history ON syncv3_room_state (room_id, event_type, state_key, start_nid);
CREATE INDEX syncv3_room_state_user ON syncv3_room_state (state_key, room_id)
    WHERE event_type = 'm.room.member' AND end_nid IS NULL;

CREATE TABLE syncv3_rooms (
    room_id TEXT PRIMARY KEY,
    latest_nid BIGINT NOT NULL DEFAULT 0,     -- newest event stored for the room
    latest_ts BIGINT NOT NULL DEFAULT 0,      -- origin_server_ts of that event
    is_encrypted BOOLEAN NOT NULL DEFAULT FALSE,
    room_type TEXT,                           -- m.room.create content.type
    room_version TEXT,                        -- m.room.create content.room_version
    predecessor_room_id TEXT,
    upgraded_room_id TEXT,                    -- m.room.tombstone content.replacement_room
    name TEXT,                                -- m.room.name content.name
    canonical_alias TEXT,
    avatar TEXT,
    joined_count INT NOT NULL DEFAULT 0,
    invited_count INT NOT NULL DEFAULT 0
);

CREATE TABLE syncv3_invites (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    invite_state TEXT NOT NULL,               -- JSON array of stripped state events
    ts BIGINT NOT NULL DEFAULT 0,             -- when the invite was seen (ms)
    PRIMARY KEY (user_id, room_id)
);

CREATE TABLE syncv3_unread (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    notification_count BIGINT NOT NULL DEFAULT 0,
    highlight_count BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, room_id)
);

CREATE TABLE syncv3_account_data (
    id BIGSERIAL,                             -- bumped on every change: id order = recency
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,                    -- '' = global
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (user_id, room_id, type)
);

CREATE TABLE syncv3_receipts (
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,                  -- '' = unthreaded
    is_private BOOLEAN NOT NULL,              -- m.read.private
    event_id TEXT NOT NULL,
    ts BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, user_id, thread_id, is_private)
);

CREATE TABLE syncv3_typing (
    room_id TEXT PRIMARY KEY,
    event TEXT NOT NULL                       -- the latest m.typing EDU
);

CREATE TABLE syncv3_to_device_messages (
    position BIGSERIAL PRIMARY KEY,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    sender TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX syncv3_to_device_by_device ON syncv3_to_device_messages (user_id, device_id, position);

CREATE TABLE syncv3_to_device_ack_pos (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    unack_pos BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, device_id)
);

CREATE TABLE syncv3_device_data (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    otk_counts TEXT,                          -- JSON object, NULL = never reported
    fallback_types TEXT,                      -- JSON array, NULL = never reported
    changed SMALLINT NOT NULL DEFAULT 0,      -- bit 0: otk counts, bit 1: fallback types
    PRIMARY KEY (user_id, device_id)
) WITH (fillfactor = 90);

CREATE TABLE syncv3_device_list_updates (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    target_user_id TEXT NOT NULL,
    target_state SMALLINT NOT NULL,           -- 1 changed, 2 left
    bucket SMALLINT NOT NULL,                 -- 1 new, 2 sent
    PRIMARY KEY (user_id, device_id, target_user_id, bucket)
) WITH (fillfactor = 90);

CREATE TABLE syncv3_txns (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, event_id)
);

CREATE TABLE syncv3_sync2_devices (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    since TEXT NOT NULL DEFAULT '',           -- '' = never synced
    PRIMARY KEY (user_id, device_id)
);

CREATE TABLE syncv3_sync2_tokens (
    token_hash TEXT PRIMARY KEY,              -- hex SHA-256 of the token
    token_encrypted TEXT NOT NULL,            -- AES-256-GCM, see base/crypto.h
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    last_seen TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX syncv3_sync2_tokens_device ON syncv3_sync2_tokens (user_id, device_id, last_seen);
