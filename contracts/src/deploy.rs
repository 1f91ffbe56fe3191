//! Deterministic deployment: the deterministic deployment proxy, the canonical EntryPoints, and our
//! contracts at CREATE2 addresses that depend only on the [`DeployConfig`], so the same configuration
//! gives the same addresses on every chain.

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, B256, Bytes, U256, address, bytes, keccak256};
use alloy::providers::Provider;
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolConstructor;
use serde::{Deserialize, Serialize};
use tracing::{debug, info};

use crate::bindings::{
    peruri_account_factory_v07::PeruriAccountFactoryV07, peruri_account_factory_v08::PeruriAccountFactoryV08,
    peruri_badge::PeruriBadge, peruri_log::PeruriLog, peruri_paymaster::PeruriPaymaster, peruri_token::PeruriToken,
};
use crate::deployment::{Contracts, Deployment};
use crate::entry_point::EntryPointVersion;
use crate::error::DeployError;

/// The deterministic deployment proxy (Arachnid), the same address on every chain that has it.
pub const DETERMINISTIC_DEPLOYER: Address = address!("0x4e59b44847b379578588920ca78fbf26c0b4956c");

/// Runtime code of the deterministic deployment proxy: calldata is `salt (32) ‖ init code`, it CREATE2s and
/// returns the 20-byte address (reverts on failure).
pub const DETERMINISTIC_DEPLOYER_CODE: Bytes = bytes!(
    "0x7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffe03601600081602082378035828234f58015156039578182fd5b8082525050506014600cf3"
);

/// The address the deterministic deployment proxy gives `init_code` under `salt`.
pub fn create2_address(salt: B256, init_code: &[u8]) -> Address {
    DETERMINISTIC_DEPLOYER.create2(salt, keccak256(init_code))
}

/// What decides our contracts' addresses: the same configuration gives the same addresses everywhere.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeployConfig {
    /// CREATE2 salt of our contracts (the EntryPoints use their canonical salts).
    pub salt: B256,
    /// DEFAULT_ADMIN_ROLE of PTKN, PBADGE and PLOG; owner of the paymasters.
    pub admin: Address,
    /// ISSUER_ROLE of PTKN and PBADGE.
    pub issuer: Address,
    /// ANCHOR_ROLE of PLOG.
    pub anchorer: Address,
    /// Initial paymaster signer set (both paymasters).
    pub paymaster_signers: Vec<Address>,
    /// ERC-1155 URI of PBADGE (`{id}` substituted by clients).
    pub badge_uri: String,
    /// Seconds between `beginDefaultAdminTransfer` and its acceptance on PTKN, PBADGE and PLOG.
    #[serde(default = "default_admin_delay")]
    pub admin_delay_secs: u64,
    /// Each paymaster's EntryPoint stake, sent with its deployment (ERC-7562 MIN_STAKE_VALUE: 1 ETH).
    #[serde(default = "default_stake")]
    pub paymaster_stake_wei: U256,
    /// Each paymaster's unstake delay (ERC-7562 MIN_UNSTAKE_DELAY: 86,400 s).
    #[serde(default = "default_unstake_delay")]
    pub paymaster_unstake_delay_secs: u32,
}

fn default_admin_delay() -> u64 {
    86_400
}

fn default_stake() -> U256 {
    U256::from(10u64.pow(18))
}

fn default_unstake_delay() -> u32 {
    86_400
}

impl DeployConfig {
    /// The default salt, `keccak256("peruri-custody")`.
    pub fn default_salt() -> B256 {
        keccak256("peruri-custody")
    }

    /// A configuration where one address holds every role (devnet, tests).
    pub fn single_operator(operator: Address) -> Self {
        Self {
            salt: Self::default_salt(),
            admin: operator,
            issuer: operator,
            anchorer: operator,
            paymaster_signers: vec![operator],
            badge_uri: "https://peruri.invalid/badge/{id}.json".to_owned(),
            admin_delay_secs: default_admin_delay(),
            paymaster_stake_wei: default_stake(),
            paymaster_unstake_delay_secs: default_unstake_delay(),
        }
    }

    /// The value sent with a contract's deployment: each paymaster's stake, nothing for the others.
    pub fn value_of(&self, name: &str) -> U256 {
        if name.starts_with("PeruriPaymaster") { self.paymaster_stake_wei } else { U256::ZERO }
    }

    /// Every contract to deploy with its init code, in deployment order (EntryPoints first).
    pub fn init_codes(&self) -> Vec<(&'static str, B256, Bytes)> {
        let ep07 = EntryPointVersion::V07.address();
        let ep08 = EntryPointVersion::V08.address();
        let with_args = |code: &Bytes, args: Vec<u8>| -> Bytes { [code.as_ref(), &args].concat().into() };
        let delay = alloy::primitives::Uint::<48, 1>::saturating_from(self.admin_delay_secs);
        let paymaster = |ep: Address| {
            with_args(
                &PeruriPaymaster::BYTECODE,
                PeruriPaymaster::constructorCall {
                    anEntryPoint: ep,
                    initialOwner: self.admin,
                    signers: self.paymaster_signers.clone(),
                    unstakeDelaySec: self.paymaster_unstake_delay_secs,
                }
                .abi_encode(),
            )
        };
        vec![
            ("EntryPointV07", EntryPointVersion::V07.salt(), EntryPointVersion::V07.init_code()),
            ("EntryPointV08", EntryPointVersion::V08.salt(), EntryPointVersion::V08.init_code()),
            (
                "PeruriAccountFactoryV07",
                self.salt,
                with_args(
                    &PeruriAccountFactoryV07::BYTECODE,
                    PeruriAccountFactoryV07::constructorCall { anEntryPoint: ep07 }.abi_encode(),
                ),
            ),
            (
                "PeruriAccountFactoryV08",
                self.salt,
                with_args(
                    &PeruriAccountFactoryV08::BYTECODE,
                    PeruriAccountFactoryV08::constructorCall { anEntryPoint: ep08 }.abi_encode(),
                ),
            ),
            ("PeruriPaymasterV07", self.salt, paymaster(ep07)),
            ("PeruriPaymasterV08", self.salt, paymaster(ep08)),
            (
                "PeruriToken",
                self.salt,
                with_args(
                    &PeruriToken::BYTECODE,
                    PeruriToken::constructorCall { adminDelay: delay, admin: self.admin, issuer: self.issuer }
                        .abi_encode(),
                ),
            ),
            (
                "PeruriBadge",
                self.salt,
                with_args(
                    &PeruriBadge::BYTECODE,
                    PeruriBadge::constructorCall {
                        adminDelay: delay,
                        admin: self.admin,
                        issuer: self.issuer,
                        uri_: self.badge_uri.clone(),
                    }
                    .abi_encode(),
                ),
            ),
            (
                "PeruriLog",
                self.salt,
                with_args(
                    &PeruriLog::BYTECODE,
                    PeruriLog::constructorCall { adminDelay: delay, admin: self.admin, anchorer: self.anchorer }
                        .abi_encode(),
                ),
            ),
        ]
    }

    /// The addresses this configuration deploys to, computed offline.
    pub fn addresses(&self) -> Contracts {
        let codes = self.init_codes();
        let at = |name: &str| {
            codes
                .iter()
                .find(|(n, _, _)| *n == name)
                .map(|(_, salt, code)| create2_address(*salt, code))
                .unwrap_or_default()
        };
        let factory_v07 = at("PeruriAccountFactoryV07");
        let factory_v08 = at("PeruriAccountFactoryV08");
        Contracts {
            deterministic_deployer: DETERMINISTIC_DEPLOYER,
            entry_point_v07: at("EntryPointV07"),
            entry_point_v08: at("EntryPointV08"),
            peruri_account_factory_v07: factory_v07,
            // The factory's constructor creates the logic (nonce 1), then the dispatcher (nonce 2) the
            // clones delegate to.
            peruri_account_v07: factory_v07.create(2),
            peruri_account_factory_v08: factory_v08,
            peruri_account_v08: factory_v08.create(2),
            peruri_paymaster_v07: at("PeruriPaymasterV07"),
            peruri_paymaster_v08: at("PeruriPaymasterV08"),
            peruri_token: at("PeruriToken"),
            peruri_badge: at("PeruriBadge"),
            peruri_log: at("PeruriLog"),
        }
    }
}

/// Deploy `init_code` through the deterministic deployment proxy under `salt` with `value` (which the proxy
/// passes on to the constructor), unless it is already there. Returns its address.
pub async fn deploy_deterministic<P: Provider>(
    provider: &P,
    name: &'static str,
    (salt, value): (B256, U256),
    init_code: &[u8],
) -> Result<Address, DeployError> {
    let address = create2_address(salt, init_code);
    let code =
        provider.get_code_at(address).await.map_err(|source| DeployError::Rpc { operation: "eth_getCode", source })?;
    if !code.is_empty() {
        debug!(name, %address, "already deployed");
        return Ok(address);
    }
    let input: Bytes = [salt.as_slice(), init_code].concat().into();
    let tx = TransactionRequest::default().with_to(DETERMINISTIC_DEPLOYER).with_input(input).with_value(value);
    let receipt = provider
        .send_transaction(tx)
        .await
        .map_err(|source| DeployError::Rpc { operation: "eth_sendTransaction", source })?
        .get_receipt()
        .await
        .map_err(|source| DeployError::Pending { operation: "deployment receipt", source })?;
    let code =
        provider.get_code_at(address).await.map_err(|source| DeployError::Rpc { operation: "eth_getCode", source })?;
    if !receipt.status() || code.is_empty() {
        return Err(DeployError::NotDeployed { name, address });
    }
    info!(name, %address, gas_used = receipt.gas_used, "deployed");
    Ok(address)
}

/// Deploy the canonical EntryPoints (v0.7, v0.8) at their canonical addresses.
pub async fn deploy_entry_points<P: Provider>(provider: &P) -> Result<(), DeployError> {
    require_deployer(provider).await?;
    for version in EntryPointVersion::ALL {
        let name = match version {
            EntryPointVersion::V07 => "EntryPointV07",
            EntryPointVersion::V08 => "EntryPointV08",
        };
        let actual = deploy_deterministic(provider, name, (version.salt(), U256::ZERO), &version.init_code()).await?;
        if actual != version.address() {
            return Err(DeployError::WrongAddress { name, expected: version.address(), actual });
        }
    }
    Ok(())
}

/// Deploy the EntryPoints and all our contracts (each only if missing) and return the deployment record.
pub async fn deploy<P: Provider>(provider: &P, config: &DeployConfig) -> Result<Deployment, DeployError> {
    require_deployer(provider).await?;
    deploy_entry_points(provider).await?;
    for (name, salt, init_code) in config.init_codes().into_iter().skip(EntryPointVersion::ALL.len()) {
        deploy_deterministic(provider, name, (salt, config.value_of(name)), &init_code).await?;
    }
    let contracts = config.addresses();
    for (name, address) in
        [("PeruriAccountV07", contracts.peruri_account_v07), ("PeruriAccountV08", contracts.peruri_account_v08)]
    {
        let code = provider
            .get_code_at(address)
            .await
            .map_err(|source| DeployError::Rpc { operation: "eth_getCode", source })?;
        if code.is_empty() {
            return Err(DeployError::NotDeployed { name, address });
        }
    }
    let chain_id =
        provider.get_chain_id().await.map_err(|source| DeployError::Rpc { operation: "eth_chainId", source })?;
    let block = provider
        .get_block_number()
        .await
        .map_err(|source| DeployError::Rpc { operation: "eth_blockNumber", source })?;
    Ok(Deployment { chain_id, block, contracts })
}

async fn require_deployer<P: Provider>(provider: &P) -> Result<(), DeployError> {
    let code = provider
        .get_code_at(DETERMINISTIC_DEPLOYER)
        .await
        .map_err(|source| DeployError::Rpc { operation: "eth_getCode", source })?;
    if code.is_empty() {
        return Err(DeployError::NoDeployer(DETERMINISTIC_DEPLOYER));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_depend_on_the_config_only() {
        let a = DeployConfig::single_operator(address!("0x00000000000000000000000000000000000000aa"));
        let b = DeployConfig::single_operator(address!("0x00000000000000000000000000000000000000bb"));
        assert_eq!(a.addresses(), a.clone().addresses());
        let (aa, bb) = (a.addresses(), b.addresses());
        assert_eq!(aa.entry_point_v07, bb.entry_point_v07, "EntryPoints are canonical");
        assert_eq!(aa.peruri_account_factory_v07, bb.peruri_account_factory_v07, "factories take no config");
        assert_ne!(aa.peruri_token, bb.peruri_token);
        assert_ne!(aa.peruri_paymaster_v07, aa.peruri_paymaster_v08);
        let salted = DeployConfig { salt: B256::repeat_byte(1), ..a };
        assert_ne!(salted.addresses().peruri_account_factory_v07, aa.peruri_account_factory_v07);
    }
}
