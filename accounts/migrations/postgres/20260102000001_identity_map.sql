-- Identity map: user_id ⇄ did:peruri ⇄ smart-account address ⇄ owner key version (DESIGN.md §3).
-- A row is 'pending' while its creator makes the owner key (claim + claimed_at: who and since when),
-- then 'ready' with every account column set. Booleans are 0/1 integers (the sqlx Any driver).
CREATE TABLE IF NOT EXISTS identity_map (
    user_id           TEXT PRIMARY KEY,
    did               TEXT NOT NULL,
    state             TEXT NOT NULL CHECK (state IN ('pending', 'ready')),
    address           TEXT,
    owner             TEXT,
    owner_key_id      TEXT REFERENCES keys (id),
    owner_key_version BIGINT,
    custody           TEXT NOT NULL DEFAULT 'custodial' CHECK (custody IN ('custodial', 'self')),
    deployed          BIGINT NOT NULL DEFAULT 0 CHECK (deployed IN (0, 1)),
    deactivated       BIGINT NOT NULL DEFAULT 0 CHECK (deactivated IN (0, 1)),
    claim             TEXT,
    claimed_at        BIGINT,
    created_at        BIGINT NOT NULL,
    CHECK (state = 'pending' OR (address IS NOT NULL AND owner IS NOT NULL
                                 AND owner_key_id IS NOT NULL AND owner_key_version IS NOT NULL))
);
CREATE UNIQUE INDEX IF NOT EXISTS identity_map_by_did ON identity_map (did);
CREATE UNIQUE INDEX IF NOT EXISTS identity_map_by_address ON identity_map (address);
