//! The sponsorship service: ERC-7677 JSON-RPC, policies, budgets and paymaster signatures from the
//! HSM. It signs through `custody-signer` and sends nothing itself: the bundler carries its operations.
//!
//! ```text
//!  POST /paymaster (app role) ─► rpc: pm_getPaymasterStubData ─► policy::check ─► budget (dry run)
//!                                     │                        ─► stub paymasterData, gas limits
//!                                     ├ pm_getPaymasterData ───► policy::check ─► budget::reserve
//!                                     │                        ─► Sponsorship digest signed in the HSM
//!                                     └ pm_sponsorUserOperation ─► stub ─► Estimate (the bundler's) ─► data
//!  Settler (task) ─► UserOperationEvent(paymaster = PeruriPaymaster) ─► budget::settle (gas used)
//!                 ─► signatures expired unused ─► budget::release_expired
//! ```
//!
//! A sponsorship is valid for `validity_secs` (never unbounded). Its budget is reserved when it is
//! signed, counted with its gas limits until its receipt settles it at its gas used. Tables:
//! `paymaster/migrations` (one SQL for both dialects), applied through `custody_db::migrate`.

pub mod budget;
pub mod config;
mod error;
pub mod policies;
pub mod policy;
pub mod rpc;
mod settle;
mod usage;

use alloy::primitives::{Address, Bytes, U256};
use custody_contracts::sponsorship::Sponsorship;
use custody_contracts::{Deployment, EntryPointVersion, UserOperation};
use custody_signer::EthSigner;

pub use budget::{Budget, SponsorshipRow, Stale, sponsorship_id};
pub use config::{Limit, PaymasterConfig, PolicyConfig, Reset, Scope};
pub use error::Error;
pub use policies::{PolicyRecord, raises};
pub use policy::Denial;
pub use settle::Settler;

/// The stub's signature: a real one (key 1 over the zero hash), so that over any other digest it still
/// recovers, to an address that signs for no one, and gas estimation pays for the same recovery and
/// signer lookup as the final signature. (One that fails to recover skips the lookup and under-estimates.)
const STUB_SIGNATURE: [u8; 65] = alloy::primitives::hex!(
    "a0b37f8fba683cc68f6574cd43b39f0343a50008bf6ccea9d13231d9e7e2e1e411edc8d307254296264aebfc3dc76cd8b668373a072fd64665b50000e9fcce521c"
);

/// Gas limits an estimator found for an operation (ERC-7769 `eth_estimateUserOperationGas`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GasLimits {
    /// `preVerificationGas`.
    pub pre_verification_gas: U256,
    /// `verificationGasLimit`.
    pub verification_gas_limit: U256,
    /// `callGasLimit`.
    pub call_gas_limit: U256,
    /// `paymasterVerificationGasLimit`, when estimated.
    pub paymaster_verification_gas_limit: Option<U256>,
}

/// Estimates an operation's gas (the bundler's estimator, in the server) for `pm_sponsorUserOperation`.
#[async_trait::async_trait]
pub trait Estimate: Send + Sync + std::fmt::Debug {
    /// The gas limits of `op` (carrying stub paymaster fields) on `version`'s EntryPoint; an error
    /// is the reason, for the caller.
    async fn estimate(&self, op: &UserOperation, version: EntryPointVersion) -> Result<GasLimits, String>;
}

/// Which of ERC-7677's two calls asks for the paymaster fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// `pm_getPaymasterStubData`: refuses now what the final call would refuse, reserves nothing, and
    /// answers a stub signature that recovers (so gas estimation is not short).
    Stub,
    /// `pm_getPaymasterData`: the budget reserved and the sponsorship signed in the HSM.
    Final,
}

/// What a stub or final answer carries (ERC-7677, v0.7 and v0.8 fields).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sponsored {
    /// PeruriPaymaster for the operation's EntryPoint.
    pub paymaster: Address,
    /// `validUntil ‖ validAfter ‖ signature`.
    pub paymaster_data: Bytes,
    /// The paymaster gas limits signed over.
    pub verification_gas_limit: u64,
    /// The postOp gas limit signed over.
    pub post_op_gas_limit: u64,
    /// Last second the signature is valid.
    pub valid_until: u64,
}

/// The paymaster: configuration, its HSM key and the budget book.
#[derive(Clone, Debug)]
pub struct Paymaster {
    config: PaymasterConfig,
    signer: EthSigner,
    chain_id: u64,
    paymasters: [(EntryPointVersion, Address); 2],
    budget: Budget,
    /// Set by the [`Settler`]: a deposit is below `min_deposit_wei`.
    deposit_low: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Gas estimation for `pm_sponsorUserOperation`.
    estimator: Option<std::sync::Arc<dyn Estimate>>,
}

impl Paymaster {
    /// The paymaster of `deployment` on `chain_id`, signing with `signer` (one of PeruriPaymaster's
    /// signers), its budgets in `budget`.
    pub fn new(
        config: PaymasterConfig,
        signer: EthSigner,
        deployment: &Deployment,
        budget: Budget,
    ) -> Result<Self, Error> {
        config.validate()?;
        let paymasters = EntryPointVersion::ALL.map(|v| (v, deployment.contracts.paymaster(v)));
        Ok(Self {
            config,
            signer,
            chain_id: deployment.chain_id,
            paymasters,
            budget,
            deposit_low: Default::default(),
            estimator: None,
        })
    }

    /// With gas estimation for `pm_sponsorUserOperation`.
    #[must_use]
    pub fn with_estimator(mut self, estimator: std::sync::Arc<dyn Estimate>) -> Self {
        self.estimator = Some(estimator);
        self
    }

    /// Whether a PeruriPaymaster deposit was below `min_deposit_wei` at the settler's last look.
    pub fn deposit_low(&self) -> bool {
        self.deposit_low.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The budget book (officers list sponsorships from it).
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// The configuration.
    pub fn config(&self) -> &PaymasterConfig {
        &self.config
    }

    /// The chain the paymaster signs for.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// PeruriPaymaster for `version`.
    pub fn paymaster(&self, version: EntryPointVersion) -> Address {
        self.paymasters.iter().find(|(v, _)| *v == version).map_or(Address::ZERO, |(_, a)| *a)
    }

    /// The operation with this paymaster's fields: the request's paymaster gas limits where it set
    /// them (a bundler's estimate), else the configured ones.
    fn with_paymaster(&self, op: &UserOperation, version: EntryPointVersion) -> (UserOperation, u64, u64) {
        let limit = |v: Option<U256>, default: u64| v.filter(|v| !v.is_zero()).map_or(default, |v| v.saturating_to());
        let verification = limit(op.paymaster_verification_gas_limit, self.config.verification_gas_limit);
        let post_op = limit(op.paymaster_post_op_gas_limit, self.config.post_op_gas_limit);
        let mut op = op.clone();
        op.paymaster = Some(self.paymaster(version));
        op.paymaster_verification_gas_limit = Some(U256::from(verification));
        op.paymaster_post_op_gas_limit = Some(U256::from(post_op));
        op.paymaster_data = Some(Bytes::new());
        (op, verification, post_op)
    }

    /// The operation with the paymaster's fields, the verification gas limit within its maximum.
    fn admit(
        &self,
        op: &UserOperation,
        version: EntryPointVersion,
        policy: &str,
    ) -> Result<(UserOperation, u64, u64), Denial> {
        let (op, verification, post_op) = self.with_paymaster(op, version);
        if verification > self.config.max_verification_gas_limit {
            let max = self.config.max_verification_gas_limit;
            return Err(Denial::new(policy, "paymaster_gas", format!("paymasterVerificationGasLimit over {max}")));
        }
        Ok((op, verification, post_op))
    }

    /// The paymaster fields of `op` at `step` under `policy` (the default one when `None`): the stored
    /// policy's rules and budget, then for [`Step::Stub`] the stub signature (nothing reserved), for
    /// [`Step::Final`] the budget reserved and the sponsorship signed in the HSM.
    pub async fn fields(
        &self,
        step: Step,
        op: &UserOperation,
        version: EntryPointVersion,
        policy: Option<&str>,
        now: u64,
    ) -> Result<Result<Sponsored, Denial>, Error> {
        let signed = step == Step::Final;
        let policy = policy.unwrap_or(&self.config.default_policy);
        let (op, verification, post_op) = match self.admit(op, version, policy) {
            Ok(admitted) => admitted,
            Err(denial) => return Ok(Err(denial)),
        };
        let sponsorship = self.sponsorship(version, verification, post_op, now);
        let id = sponsorship_id(version, op.sender, op.nonce);
        let key = (id.as_str(), version, op.sender, op.nonce);
        let booked = if signed {
            self.budget.reserve((policy, &op, now), key, op.max_gas(), sponsorship.valid_until).await?
        } else {
            self.budget.check((policy, &op, now), key, op.max_gas()).await?
        };
        let policy = match booked {
            Ok(policy) => policy,
            Err(denial) => {
                metrics::counter!("custody_paymaster_denials_total", "rule" => denial.rule).increment(1);
                return Ok(Err(denial));
            }
        };
        if !signed {
            return Ok(Ok(self.answer(&sponsorship, &STUB_SIGNATURE)));
        }
        let packed = op.pack().map_err(|_| Error::Config("the operation does not pack".to_owned()))?;
        let digest = sponsorship.signing_digest(&packed, self.chain_id);
        let signature = self.signer.sign_digest(&digest).await?;
        metrics::counter!("custody_paymaster_sponsorships_total", "policy" => policy).increment(1);
        Ok(Ok(self.answer(&sponsorship, &signature.as_bytes())))
    }

    /// `pm_sponsorUserOperation`: the stub, the operation's gas estimated with it, then the final data
    /// over the estimated operation. Returns the operation with its gas and paymaster fields filled.
    pub async fn sponsor(
        &self,
        op: &UserOperation,
        version: EntryPointVersion,
        policy: Option<&str>,
        now: u64,
    ) -> Result<Result<Result<UserOperation, String>, Denial>, Error> {
        let Some(estimator) = &self.estimator else {
            return Ok(Ok(Err("pm_sponsorUserOperation needs the bundler's gas estimation here".to_owned())));
        };
        let stub = match self.fields(Step::Stub, op, version, policy, now).await? {
            Ok(stub) => stub,
            Err(denial) => return Ok(Err(denial)),
        };
        let mut op = op.clone();
        op.paymaster = Some(stub.paymaster);
        op.paymaster_verification_gas_limit = Some(U256::from(stub.verification_gas_limit));
        op.paymaster_post_op_gas_limit = Some(U256::from(stub.post_op_gas_limit));
        op.paymaster_data = Some(stub.paymaster_data);
        let gas = match estimator.estimate(&op, version).await {
            Ok(gas) => gas,
            Err(reason) => return Ok(Ok(Err(reason))),
        };
        op.pre_verification_gas = gas.pre_verification_gas;
        op.verification_gas_limit = gas.verification_gas_limit;
        op.call_gas_limit = gas.call_gas_limit;
        if let Some(pm) = gas.paymaster_verification_gas_limit {
            op.paymaster_verification_gas_limit = Some(pm.max(U256::from(stub.verification_gas_limit)));
        }
        match self.fields(Step::Final, &op, version, policy, now).await? {
            Ok(data) => {
                op.paymaster_data = Some(data.paymaster_data);
                Ok(Ok(Ok(op)))
            }
            Err(denial) => Ok(Err(denial)),
        }
    }

    fn sponsorship(&self, version: EntryPointVersion, verification: u64, post_op: u64, now: u64) -> Sponsorship {
        Sponsorship {
            paymaster: self.paymaster(version),
            verification_gas_limit: u128::from(verification),
            post_op_gas_limit: u128::from(post_op),
            valid_until: now + self.config.validity_secs,
            valid_after: 0,
        }
    }

    fn answer(&self, s: &Sponsorship, signature: &[u8; 65]) -> Sponsored {
        let data = s.paymaster_and_data(signature);
        Sponsored {
            paymaster: s.paymaster,
            paymaster_data: data.slice(custody_contracts::userop::PAYMASTER_DATA_OFFSET..),
            verification_gas_limit: u64::try_from(s.verification_gas_limit).unwrap_or(u64::MAX),
            post_op_gas_limit: u64::try_from(s.post_op_gas_limit).unwrap_or(u64::MAX),
            valid_until: s.valid_until,
        }
    }
}
