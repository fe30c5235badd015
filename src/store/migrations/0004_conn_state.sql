-- MSC4186 connections kept across restarts (docs/behaviour.md, "Connections
-- across restarts"). One row per connection, replaced when a new connection
-- takes the same (user, device, conn_id): base tells the instances apart.
CREATE TABLE syncv3_conns (
    conn_nid BIGSERIAL PRIMARY KEY,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    conn_id TEXT NOT NULL,
    base BIGINT NOT NULL,        -- the connection's position base (its first pos - 1)
    pos BIGINT NOT NULL,         -- pos of the last response that changed what is stored
    view_pos BIGINT NOT NULL,    -- the stream position the connection's view reflected then
    format INT NOT NULL,         -- version of the serialised values below
    ext TEXT NOT NULL,           -- extension positions (serialised by sync/conn_persist)
    bytes BIGINT NOT NULL,       -- size of the stored rooms, for the per-connection cap
    updated_ms BIGINT NOT NULL,  -- wall clock of the last write (idle expiry)
    UNIQUE (user_id, device_id, conn_id)
);
CREATE INDEX syncv3_conns_updated ON syncv3_conns (updated_ms);

-- What each room was last sent as on the connection (serialised by sync/conn_persist).
CREATE TABLE syncv3_conn_rooms (
    conn_nid BIGINT NOT NULL REFERENCES syncv3_conns ON DELETE CASCADE,
    room_id TEXT NOT NULL,
    sent TEXT NOT NULL,
    PRIMARY KEY (conn_nid, room_id)
);
