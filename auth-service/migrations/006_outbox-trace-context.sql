-- Up Migration
-- The W3C traceparent of the request that wrote an outbox message (NULL when
-- tracing is off): its delivery, later and perhaps from another replica, is
-- traced as a child of that request, so an account's purge shows in the
-- trace of its deletion.
ALTER TABLE outbox ADD COLUMN trace_context text NULL;
