-- Addresses are stored as lowercase 0x hex (custody_db::encode_address), as every crate stores them, so
-- that equality and indexes agree; the key store used to store EIP-55 checksummed text.
UPDATE keys SET address = lower(address) WHERE address IS NOT NULL;
