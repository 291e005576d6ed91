-- Traces (gateway/tracing.py): the W3C traceparent of a delivery's event at ingest, so each
-- attempt's span joins that event's trace, whichever process or replica makes it. NULL with traces off.
ALTER TABLE deliveries ADD COLUMN trace TEXT;
