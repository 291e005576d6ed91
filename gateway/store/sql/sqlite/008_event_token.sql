-- Which of a source's tokens an event came with, masked (…3f9a): during a rotation the
-- console and `gateway events` show which senders still use the old one.
ALTER TABLE events ADD COLUMN token TEXT;
