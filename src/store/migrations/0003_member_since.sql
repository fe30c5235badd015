-- Heroes in a stable order. For an m.room.member row whose membership is join
-- or invite: the position at which the member's current run of join/invite
-- rows began (an invite followed by a join, or a displayname or avatar change,
-- keeps it; a leave ends the run). NULL for every other row. Heroes are the
-- earliest members by this position.
ALTER TABLE syncv3_room_state ADD COLUMN member_since BIGINT;
UPDATE syncv3_room_state s SET member_since = (
    SELECT min(p.start_nid) FROM syncv3_room_state p
    WHERE p.room_id = s.room_id AND p.event_type = s.event_type AND p.state_key = s.state_key
      AND p.start_nid <= s.start_nid
      AND p.start_nid > COALESCE((SELECT max(q.start_nid) FROM syncv3_room_state q
          WHERE q.room_id = s.room_id AND q.event_type = s.event_type AND q.state_key = s.state_key
            AND q.start_nid < s.start_nid AND COALESCE(q.membership, '') NOT IN ('join', 'invite')), 0))
WHERE s.event_type = 'm.room.member' AND s.end_nid IS NULL AND s.membership IN ('join', 'invite');
