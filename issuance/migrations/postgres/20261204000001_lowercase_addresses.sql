-- Addresses are stored as lowercase 0x hex (custody_db::encode_address), as every crate stores them, so
-- that equality, primary keys and joins agree; issuance used to store EIP-55 checksummed text.
UPDATE issuance_txs SET target = lower(target), sender = lower(sender);
UPDATE issuance_nonces SET sender = lower(sender);
UPDATE token_balance_cache SET account = lower(account);
UPDATE badge_index SET account = lower(account);
