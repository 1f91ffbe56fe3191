-- The worker looks for batches left unsettled (every receipt recorded, the batch still pending) on
-- every pass, and reads a batch's transactions when it settles it.
CREATE INDEX IF NOT EXISTS issuance_batches_pending ON issuance_batches (id) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS issuance_txs_by_batch ON issuance_txs (batch_id);
