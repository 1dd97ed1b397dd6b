-- edgeway migration 0001: composite index for the per-user event dashboards.
-- Serves WHERE user_id = ? AND event_type = ? ORDER BY "timestamp" DESC, and (by its user_id prefix)
-- per-user time windows. Built online: `edgeway agent db indexes` runs it outside a transaction with
-- lock and statement timeouts, and drops and rebuilds it if a failed build left it INVALID.
CREATE INDEX CONCURRENTLY IF NOT EXISTS user_events_user_id_event_type_timestamp_idx
  ON user_events (user_id, event_type, "timestamp");
