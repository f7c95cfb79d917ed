-- Receipts of ingested event batches, written in the same transaction as the batch's events
-- (events/ingest.py). A web process confirms a shipped batch by finding its receipt: one row per
-- batch of up to a thousand events, rather than looking up every event of it in the log.
-- Receipts older than a day are deleted by partition maintenance; a batch shipped again after
-- that is ignored by the log event by event, and gets a new receipt.
CREATE TABLE event_batch_receipts (
    batch_id    text PRIMARY KEY CHECK (length(batch_id) <= 200),
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX event_batch_receipts_received_at ON event_batch_receipts (received_at);
