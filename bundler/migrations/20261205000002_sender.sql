-- Bundle transactions moved to the transaction sender (sender_txs, sender_attempts, sender_nonces).
-- Operations submitted in a bundle the old tables tracked go back to the mempool: they are simulated
-- again, and one whose bundle was mined meanwhile fails there with its nonce used (AA25), as a
-- duplicate would. Upgrade with an empty mempool (debug_bundler_dumpMempool) to avoid even that.
UPDATE bundler_user_ops SET status = 'pending', tx_hash = NULL WHERE status = 'submitted';
DROP TABLE IF EXISTS bundler_txs;
DROP TABLE IF EXISTS bundler_nonces;
