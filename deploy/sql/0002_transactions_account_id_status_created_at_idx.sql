-- edgeway migration 0002: composite index for the account transactions dashboard.
-- Serves WHERE account_id = ? AND status = ? AND created_at >= ? ORDER BY created_at DESC.
-- Built online, like 0001.
CREATE INDEX CONCURRENTLY IF NOT EXISTS transactions_account_id_status_created_at_idx
  ON transactions (account_id, status, created_at);
