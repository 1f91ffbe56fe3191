//! Bundler configuration (the server embeds it as `[bundler]` in its TOML).

use alloy::primitives::{Address, U256};
use custody_contracts::EntryPointVersion;
use serde::{Deserialize, Serialize};

/// How bundles are triggered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BundlingMode {
    /// A bundle per new block (and per `min_bundle_interval_ms` within a block) whenever the mempool
    /// is not empty.
    #[default]
    Auto,
    /// Only on `debug_bundler_sendBundleNow`.
    Manual,
}

/// The chain's hardfork, as its genesis configures it: simulation runs under its rules, and it
/// decides whether EIP-7702 operations can exist.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hardfork {
    /// Cancun (Besu's `cancunTime`): no EIP-7702.
    #[default]
    Cancun,
    /// Prague (`pragueTime`): EIP-7702 set-code transactions exist.
    Prague,
}

impl Hardfork {
    /// Whether accounts can carry an EIP-7702 delegation on this chain.
    pub const fn has_eip7702(self) -> bool {
        matches!(self, Self::Prague)
    }

    /// The last core precompile (0x01 up to it): 0x0a on Cancun (KZG point evaluation), 0x11 on Prague
    /// (BLS12-381).
    pub const fn last_core_precompile(self) -> u64 {
        // Prague adds BLS12-381 (EIP-2537, 0x0b–0x11) to Cancun's 0x01–0x0a.
        if matches!(self, Self::Prague) { 0x11 } else { 0x0a }
    }

    /// Its name in the configuration.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Cancun => "cancun",
            Self::Prague => "prague",
        }
    }
}

/// Bundler settings; every field has a default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BundlerConfig {
    /// EntryPoint versions served (canonical addresses).
    pub entry_points: Vec<EntryPointVersion>,
    /// Names of the infrastructure keys (key class `infra`) that sign bundles; each sends in parallel
    /// with its own persisted nonce.
    pub keys: Vec<String>,
    /// Who receives the operations' gas payments; default: the key that sent the bundle.
    pub beneficiary: Option<Address>,
    /// Serve the `debug_bundler_*` methods (the devnet enables them).
    pub debug_methods: bool,
    /// Start-up bundling mode.
    pub bundling_mode: BundlingMode,
    /// How often the builders look for a new block, in milliseconds.
    pub poll_interval_ms: u64,
    /// A key sends one bundle per new block, and a further one within the same block once this many
    /// milliseconds passed since its last, so an operation arriving mid-block makes the next block
    /// (zero: strictly one bundle per block).
    pub min_bundle_interval_ms: u64,
    /// Most operations in one bundle.
    pub max_bundle_ops: usize,
    /// Most gas (sum of the operations' limits) in one bundle.
    pub max_bundle_gas: u64,
    /// Blocks after which an unmined bundle transaction is bumped (re-sent with higher fees, or
    /// re-broadcast on a zero-fee chain).
    pub stuck_after_blocks: u64,
    /// Bumps before the transaction is cancelled (a zero-value self-transfer at its nonce) and its
    /// operations go back to the mempool.
    pub max_bumps: u32,
    /// How far back `eth_getUserOperationReceipt` searches logs for operations this bundler did not send.
    pub receipt_lookback_blocks: u64,
    /// Entities (e.g. Peruri's own factory and paymaster) exempt from reputation and mempool count
    /// limits, so bulk enrolment is not throttled. Paymaster deposits are still checked.
    pub trusted_entities: Vec<Address>,
    /// When not empty, only operations sponsored by one of these paymasters are accepted (-32501):
    /// on a zero-gas chain sponsorship is the authorisation. The server fills in Peruri's paymasters
    /// when `require_sponsorship` is on.
    pub sponsors: Vec<Address>,
    /// Accept only operations sponsored by Peruri's paymasters (the server adds them to `sponsors`).
    pub require_sponsorship: bool,
    /// The chain's hardfork (`cancun` or `prague`).
    pub hardfork: Hardfork,
    /// Stake (wei, a decimal or 0x string) for an entity to count as staked (ERC-7562 `MIN_STAKE_VALUE`;
    /// the reference value 1 ETH is the default).
    pub min_stake_wei: U256,
    /// Unstake delay (seconds) for an entity to count as staked (`MIN_UNSTAKE_DELAY`, default one day).
    pub min_unstake_delay_secs: u64,
}

impl Default for BundlerConfig {
    fn default() -> Self {
        Self {
            entry_points: EntryPointVersion::ALL.to_vec(),
            keys: vec!["bundler".to_owned()],
            beneficiary: None,
            debug_methods: false,
            bundling_mode: BundlingMode::Auto,
            poll_interval_ms: 250,
            min_bundle_interval_ms: 500,
            max_bundle_ops: 64,
            max_bundle_gas: 25_000_000,
            stuck_after_blocks: 5,
            max_bumps: 3,
            receipt_lookback_blocks: 10_000,
            trusted_entities: Vec::new(),
            sponsors: Vec::new(),
            require_sponsorship: false,
            hardfork: Hardfork::Cancun,
            min_stake_wei: U256::from(10u64.pow(18)),
            min_unstake_delay_secs: 86_400,
        }
    }
}

impl BundlerConfig {
    /// Refuses settings the bundler cannot run with.
    pub fn validate(&self) -> Result<(), crate::BundlerError> {
        let fail = |m: &str| Err(crate::BundlerError::Config(m.to_owned()));
        if self.entry_points.is_empty() {
            return fail("entry_points is empty");
        }
        if self.keys.is_empty() {
            return fail("keys is empty: at least one bundler key is needed");
        }
        if self.max_bundle_ops == 0 || self.max_bundle_gas == 0 || self.poll_interval_ms == 0 {
            return fail("max_bundle_ops, max_bundle_gas and poll_interval_ms must be positive");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_toml_shape_and_refuses_unknown_fields() {
        let config: BundlerConfig =
            serde_json::from_value(serde_json::json!({"debug_methods": true, "bundling_mode": "manual"}))
                .expect("parses");
        assert!(config.debug_methods);
        assert_eq!(config.bundling_mode, BundlingMode::Manual);
        assert_eq!(config.entry_points, EntryPointVersion::ALL.to_vec());
        assert!(serde_json::from_value::<BundlerConfig>(serde_json::json!({"debug": true})).is_err());
        assert!(BundlerConfig { keys: vec![], ..config }.validate().is_err());
        let staking: BundlerConfig = serde_json::from_value(
            serde_json::json!({"hardfork": "prague", "min_stake_wei": "1000", "min_unstake_delay_secs": 2}),
        )
        .expect("parses");
        assert!(staking.hardfork.has_eip7702());
        assert_eq!((staking.min_stake_wei, staking.min_unstake_delay_secs), (U256::from(1000), 2));
        assert!(serde_json::from_value::<BundlerConfig>(serde_json::json!({"hardfork": "osaka"})).is_err());
    }
}
