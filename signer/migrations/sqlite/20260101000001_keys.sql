-- Key store: one row per key version. Private keys appear only wrapped (user keys).
CREATE TABLE IF NOT EXISTS keys (
    id          TEXT PRIMARY KEY,
    class       TEXT NOT NULL CHECK (class IN ('kek', 'pseudonym', 'infra', 'user')),
    name        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    backend     TEXT NOT NULL CHECK (backend IN ('pkcs11', 'kms')),
    backend_ref TEXT,
    public_key  BLOB,
    address     TEXT,
    wrapped     BLOB,
    kek_version INTEGER,
    state       TEXT NOT NULL CHECK (state IN ('active', 'retired', 'destroyed')),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (class, name, version)
);
CREATE INDEX IF NOT EXISTS keys_by_kek ON keys (kek_version) WHERE wrapped IS NOT NULL;
CREATE INDEX IF NOT EXISTS keys_by_address ON keys (address);
