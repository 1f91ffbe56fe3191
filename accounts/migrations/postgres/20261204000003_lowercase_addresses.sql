-- Addresses are stored as lowercase 0x hex (custody_db::encode_address), as every crate stores them, so
-- that lookups by address and joins agree; the identity map used to store EIP-55 checksummed text.
UPDATE identity_map SET address = lower(address), owner = lower(owner) WHERE address IS NOT NULL;
