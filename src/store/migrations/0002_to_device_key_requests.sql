-- Pairing room-key requests with their cancellations. For a stored
-- m.room_key_request with action "request": the JSON array
-- [sender, requesting_device_id, request_id]; NULL for every other message.
-- A cancellation that arrives while its request is still undelivered (position
-- above syncv3_to_device_ack_pos.unack_pos, the highest position ever sent to
-- a client) removes the request and is not stored. Messages stored before this
-- version have no key and are delivered as they are.
ALTER TABLE syncv3_to_device_messages ADD COLUMN key_request TEXT;
