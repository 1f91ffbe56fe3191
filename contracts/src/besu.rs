//! Besu network kit: a QBFT (default, Besu's recommendation for new private networks) or IBFT 2.0
//! genesis configured like production (2 s blocks, zero base fee, a generous block gas limit, Cancun from
//! genesis) whose alloc pre-installs the deterministic deployment proxy, and validator keys. The local
//! chains load the same alloc ([`default_alloc`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use alloy::primitives::{Address, B256, Bytes, U64, U256, hex};
use alloy::rlp::{BufMut, Encodable, Header};
use alloy::signers::local::PrivateKeySigner;
use serde::Serialize;
use serde_json::{Value, json};

use crate::deploy::{DETERMINISTIC_DEPLOYER, DETERMINISTIC_DEPLOYER_CODE};
use crate::error::RecordError;

/// Default chain id (the devnet and tests use the same).
pub const DEFAULT_CHAIN_ID: u64 = 1337;
/// Block gas limit of the production genesis; the local chain uses the same.
pub const BLOCK_GAS_LIMIT: u64 = 100_000_000;
/// Block period of the production chain.
pub const BLOCK_PERIOD_SECONDS: u64 = 2;
/// Validators of a new network by default: four, the fewest that tolerate one faulty validator.
pub const DEFAULT_VALIDATORS: usize = 4;
/// The BFT mixHash of QBFT and IBFT 2.0 ("ctical byzantine fault tolerance").
pub const IBFT2_MIX_HASH: B256 =
    alloy::primitives::b256!("0x63746963616c2062797a616e74696e65206661756c7420746f6c6572616e6365");

/// One account of a genesis alloc.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AllocAccount {
    pub balance: U256,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<Bytes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<U64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub storage: BTreeMap<B256, B256>,
}

/// The alloc every Peruri chain starts with: the deterministic deployment proxy's runtime code at its
/// canonical address (nonce 1, as after its presigned deployment).
pub fn default_alloc() -> BTreeMap<Address, AllocAccount> {
    BTreeMap::from([(
        DETERMINISTIC_DEPLOYER,
        AllocAccount { code: Some(DETERMINISTIC_DEPLOYER_CODE), nonce: Some(U64::from(1)), ..Default::default() },
    )])
}

/// The BFT consensus protocol of the network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Consensus {
    /// QBFT: what Besu recommends for new private networks.
    #[default]
    Qbft,
    /// IBFT 2.0: for existing networks.
    Ibft2,
}

impl Consensus {
    /// The genesis `config` key of its parameters.
    pub fn config_key(self) -> &'static str {
        match self {
            Self::Qbft => "qbft",
            Self::Ibft2 => "ibft2",
        }
    }

    /// The genesis extraData for `validators`.
    pub fn extra_data(self, validators: &[Address]) -> Bytes {
        match self {
            Self::Qbft => qbft_extra_data(validators),
            Self::Ibft2 => ibft2_extra_data(validators),
        }
    }
}

/// How many faulty validators a BFT network of `validators` tolerates: f with n ≥ 3f + 1.
pub fn faulty_tolerated(validators: usize) -> usize {
    validators.saturating_sub(1) / 3
}

/// What the genesis depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenesisConfig {
    /// QBFT or IBFT 2.0.
    pub consensus: Consensus,
    pub chain_id: u64,
    pub block_period_seconds: u64,
    pub epoch_length: u64,
    pub request_timeout_seconds: u64,
    pub block_gas_limit: u64,
    /// Initial validators (node addresses).
    pub validators: Vec<Address>,
    /// Genesis accounts; starts as [`default_alloc`].
    pub alloc: BTreeMap<Address, AllocAccount>,
}

impl GenesisConfig {
    /// Production defaults for `validators`.
    pub fn new(validators: Vec<Address>) -> Self {
        Self {
            consensus: Consensus::default(),
            chain_id: DEFAULT_CHAIN_ID,
            block_period_seconds: BLOCK_PERIOD_SECONDS,
            epoch_length: 30_000,
            request_timeout_seconds: 4,
            block_gas_limit: BLOCK_GAS_LIMIT,
            validators,
            alloc: default_alloc(),
        }
    }

    /// The Besu genesis file.
    pub fn to_json(&self) -> Value {
        let bft = json!({
            "blockperiodseconds": self.block_period_seconds,
            "epochlength": self.epoch_length,
            "requesttimeoutseconds": self.request_timeout_seconds,
        });
        let mut genesis = json!({
            "config": {
                "chainId": self.chain_id,
                "homesteadBlock": 0,
                "eip150Block": 0,
                "eip155Block": 0,
                "eip158Block": 0,
                "byzantiumBlock": 0,
                "constantinopleBlock": 0,
                "petersburgBlock": 0,
                "istanbulBlock": 0,
                "berlinBlock": 0,
                "londonBlock": 0,
                "shanghaiTime": 0,
                "cancunTime": 0,
                "zeroBaseFee": true,
            },
            "nonce": "0x0",
            "timestamp": "0x0",
            "gasLimit": format!("{:#x}", self.block_gas_limit),
            "difficulty": "0x1",
            "baseFeePerGas": "0x0",
            "mixHash": IBFT2_MIX_HASH,
            "coinbase": Address::ZERO,
            "extraData": self.consensus.extra_data(&self.validators),
            "alloc": self.alloc,
        });
        genesis["config"][self.consensus.config_key()] = bft;
        genesis
    }
}

/// QBFT genesis extraData: `RLP([vanity (32 zero bytes), [validators], vote (an empty list), round (the
/// integer 0), seals []])`, as Besu's `QbftExtraDataCodec` encodes a genesis.
pub fn qbft_extra_data(validators: &[Address]) -> Bytes {
    bft_extra_data(validators, |payload| {
        Header { list: true, payload_length: 0 }.encode(payload); // no vote
        0u64.encode(payload); // round 0, an RLP integer
    })
}

/// IBFT 2.0 genesis extraData: `RLP([vanity (32 zero bytes), [validators], vote (none), round (4 bytes), seals []])`,
/// what `besu rlp encode --type=IBFT_EXTRA_DATA` produces.
pub fn ibft2_extra_data(validators: &[Address]) -> Bytes {
    bft_extra_data(validators, |payload| {
        payload.put_u8(0x80); // no vote
        [0u8; 4].as_slice().encode(payload); // round 0, a 4-byte integer
    })
}

/// `RLP([vanity, [validators], vote and round as `vote_and_round` writes them, seals []])`.
fn bft_extra_data(validators: &[Address], vote_and_round: impl FnOnce(&mut Vec<u8>)) -> Bytes {
    let mut payload = Vec::new();
    [0u8; 32].as_slice().encode(&mut payload);
    let validator_len: usize = validators.iter().map(Encodable::length).sum();
    Header { list: true, payload_length: validator_len }.encode(&mut payload);
    for v in validators {
        v.encode(&mut payload);
    }
    vote_and_round(&mut payload);
    Header { list: true, payload_length: 0 }.encode(&mut payload); // no seals
    let mut out = Vec::with_capacity(payload.len() + 3);
    Header { list: true, payload_length: payload.len() }.encode(&mut out);
    out.extend_from_slice(&payload);
    out.into()
}

/// A validator node key (secp256k1). Its address is the IBFT 2.0 validator address, its public key the
/// enode id. For throw-away networks only: production validators make their own keys.
#[derive(Clone)]
pub struct ValidatorKey(PrivateKeySigner);

impl std::fmt::Debug for ValidatorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidatorKey").field("address", &self.address()).finish_non_exhaustive()
    }
}

impl ValidatorKey {
    /// A fresh random key.
    pub fn random() -> Self {
        Self(PrivateKeySigner::random())
    }

    /// The validator address.
    pub fn address(&self) -> Address {
        self.0.address()
    }

    /// The enode id: the uncompressed public key without its 0x04 prefix, 128 hex digits.
    pub fn enode_id(&self) -> String {
        let point = self.0.credential().verifying_key().to_encoded_point(false);
        hex::encode(&point.as_bytes()[1..])
    }

    /// Write Besu's `key` (private key, 0x-hex) and `key.pub` files into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), RecordError> {
        let io = |operation, path: &Path| {
            let path = path.to_owned();
            move |source| RecordError::Io { operation, path, source }
        };
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        let key = dir.join("key");
        // The private key is readable by its owner only.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&key)
            .map_err(io("create", &key))?;
        file.write_all(format!("0x{}", hex::encode(self.0.to_bytes())).as_bytes()).map_err(io("write", &key))?;
        let public = dir.join("key.pub");
        std::fs::write(&public, format!("0x{}", self.enode_id())).map_err(io("write", &public))?;
        Ok(())
    }
}

/// Write a network: `genesis.json` and, for each key, `validator-<i>/{key,key.pub}`.
pub fn write_network(dir: &Path, genesis: &GenesisConfig, keys: &[ValidatorKey]) -> Result<(), RecordError> {
    std::fs::create_dir_all(dir).map_err(|source| RecordError::Io {
        operation: "create",
        path: dir.to_owned(),
        source,
    })?;
    let path = dir.join("genesis.json");
    let json = serde_json::to_string_pretty(&genesis.to_json())
        .map_err(|source| RecordError::Json { path: path.clone(), source })?;
    std::fs::write(&path, json + "\n").map_err(|source| RecordError::Io { operation: "write", path, source })?;
    for (i, key) in keys.iter().enumerate() {
        key.write(&dir.join(format!("validator-{i}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use alloy::primitives::address;

    use super::*;

    #[test]
    fn extra_data_matches_besu_examples() {
        // From Besu's IBFT 2.0 documentation (one validator) ...
        assert_eq!(
            ibft2_extra_data(&[address!("0x9811ebc35d7b06b3fa8dc5809a1f9c52751e1deb")]).to_string(),
            "0xf83ea00000000000000000000000000000000000000000000000000000000000000000d5949811ebc35d7b06b3fa8dc5809a1f9c52751e1deb808400000000c0"
        );
        // ... and a four-validator network made with `besu rlp encode`.
        assert_eq!(
            ibft2_extra_data(&[
                address!("0xc98adee2e27b436582259500797fa6633f88367f"),
                address!("0x1a82f57f6a423b19cc1b47be00a9336386363caf"),
                address!("0x8e9a8b35a3f31344e596196a6911799d9dc49c94"),
                address!("0xdf536f1174a453f63f8a97ee30853b31cbbe913a"),
            ])
            .to_string(),
            "0xf87ea00000000000000000000000000000000000000000000000000000000000000000f85494c98adee2e27b436582259500797fa6633f88367f941a82f57f6a423b19cc1b47be00a9336386363caf948e9a8b35a3f31344e596196a6911799d9dc49c9494df536f1174a453f63f8a97ee30853b31cbbe913a808400000000c0"
        );
    }

    #[test]
    fn qbft_extra_data_is_what_besus_codec_writes() {
        // Besu's QbftExtraDataCodec: vanity, validators, vote as an empty list (c0), round as the RLP
        // integer 0 (80), seals as an empty list (c0).
        let one = address!("0x9811ebc35d7b06b3fa8dc5809a1f9c52751e1deb");
        assert_eq!(
            qbft_extra_data(&[one]).to_string(),
            format!("0xf83aa0{}d594{}c080c0", "00".repeat(32), hex::encode(one))
        );
        let four = [
            address!("0xc98adee2e27b436582259500797fa6633f88367f"),
            address!("0x1a82f57f6a423b19cc1b47be00a9336386363caf"),
            address!("0x8e9a8b35a3f31344e596196a6911799d9dc49c94"),
            address!("0xdf536f1174a453f63f8a97ee30853b31cbbe913a"),
        ];
        let validators: String = four.iter().map(|v| format!("94{}", hex::encode(v))).collect();
        assert_eq!(qbft_extra_data(&four).to_string(), format!("0xf87aa0{}f854{validators}c080c0", "00".repeat(32)));
    }

    #[test]
    fn what_a_network_tolerates() {
        let tolerated: Vec<_> = [1, 2, 3, 4, 5, 6, 7, 10].into_iter().map(faulty_tolerated).collect();
        assert_eq!(tolerated, [0, 0, 0, 1, 1, 1, 2, 3]);
        assert_eq!(faulty_tolerated(DEFAULT_VALIDATORS), 1);
    }

    #[test]
    fn an_ibft2_genesis_on_request() {
        let validators = vec![address!("0x9811ebc35d7b06b3fa8dc5809a1f9c52751e1deb")];
        let genesis = GenesisConfig { consensus: Consensus::Ibft2, ..GenesisConfig::new(validators.clone()) }.to_json();
        assert_eq!(genesis["config"]["ibft2"]["blockperiodseconds"], 2);
        assert!(genesis["config"].get("qbft").is_none());
        assert_eq!(genesis["extraData"], ibft2_extra_data(&validators).to_string());
    }

    #[test]
    fn genesis_fields() {
        let keys: Vec<_> = (0..DEFAULT_VALIDATORS).map(|_| ValidatorKey::random()).collect();
        let genesis = GenesisConfig::new(keys.iter().map(ValidatorKey::address).collect()).to_json();
        let config = &genesis["config"];
        assert_eq!(config["chainId"], 1337);
        assert_eq!(config["zeroBaseFee"], true);
        for milestone in ["berlinBlock", "londonBlock", "shanghaiTime", "cancunTime"] {
            assert_eq!(config[milestone], 0, "{milestone}");
        }
        assert_eq!(config["qbft"]["blockperiodseconds"], 2);
        assert_eq!(config["qbft"]["epochlength"], 30_000);
        assert_eq!(config["qbft"]["requesttimeoutseconds"], 4);
        assert!(config.get("ibft2").is_none(), "QBFT by default");
        assert_eq!(genesis["gasLimit"], "0x5f5e100");
        assert_eq!(genesis["difficulty"], "0x1");
        assert_eq!(genesis["baseFeePerGas"], "0x0");
        assert_eq!(genesis["mixHash"], "0x63746963616c2062797a616e74696e65206661756c7420746f6c6572616e6365");
        assert_eq!(genesis["coinbase"], "0x0000000000000000000000000000000000000000");
        let extra = genesis["extraData"].as_str().expect("extraData is a string");
        for key in &keys {
            assert!(extra.contains(&hex::encode(key.address())), "validator in extraData");
            assert_eq!(key.enode_id().len(), 128);
        }
        let alloc = genesis["alloc"].as_object().expect("alloc is an object");
        assert_eq!(alloc.len(), 1);
        let deployer = &alloc["0x4e59b44847b379578588920ca78fbf26c0b4956c"];
        assert_eq!(deployer["code"], DETERMINISTIC_DEPLOYER_CODE.to_string());
        assert_eq!(deployer["balance"], "0x0");
        assert_eq!(deployer["nonce"], "0x1");
    }

    #[test]
    fn writes_a_network() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys: Vec<_> = (0..3).map(|_| ValidatorKey::random()).collect();
        let genesis = GenesisConfig::new(keys.iter().map(ValidatorKey::address).collect());
        write_network(dir.path(), &genesis, &keys).expect("writes");
        let read: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("genesis.json")).expect("genesis written"))
                .expect("genesis is JSON");
        assert_eq!(read, genesis.to_json());
        for (i, key) in keys.iter().enumerate() {
            let secret = std::fs::read_to_string(dir.path().join(format!("validator-{i}/key"))).expect("key written");
            let signer: PrivateKeySigner = secret.trim_start_matches("0x").parse().expect("key parses");
            assert_eq!(signer.address(), key.address());
        }
    }
}
