-- A dead letter's payload exactly as received, when its text cannot be stored as `text`
-- (PostgreSQL refuses NUL characters): `payload` then holds a readable copy with U+FFFD in their
-- place, and `payload_bytes` the UTF-8 bytes. NULL when `payload` is already exact.
ALTER TABLE dead_letters ADD COLUMN payload_bytes bytea;
