-- The chain this database belongs to (one row): its chain id and the number and hash of the deployment
-- block, recorded at the first start against a chain and checked at every later start.
CREATE TABLE IF NOT EXISTS chain_identity (
    id           SMALLINT PRIMARY KEY CHECK (id = 1),
    chain_id     BIGINT NOT NULL,
    block_number BIGINT NOT NULL,
    block_hash   TEXT NOT NULL,
    recorded_at  BIGINT NOT NULL
);
