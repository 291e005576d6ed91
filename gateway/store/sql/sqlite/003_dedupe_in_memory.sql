-- The dedupe window is remembered by the ingest writer (gateway/store/recent.py): keys are no
-- longer looked up by key, so their index (a body hash: every insert on a random page) goes.
DROP INDEX events_dedupe;
