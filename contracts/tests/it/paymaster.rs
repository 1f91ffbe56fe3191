//! PeruriPaymaster: valid sponsorships pass; expired, early, wrong-signer and tampered ones do not.

use alloy::primitives::{Bytes, U256};
use alloy::providers::Provider;
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use custody_contracts::bindings::peruri_paymaster::PeruriPaymaster;
use custody_contracts::sponsorship::Sponsorship;
use custody_contracts::{EntryPointVersion, PackedUserOperation, UserOperation, account};

use crate::setup::{Env, env, user_op_event};

fn sponsorship(env: &Env, version: EntryPointVersion, valid_until: u64, valid_after: u64) -> Sponsorship {
    Sponsorship {
        paymaster: env.deployment.contracts.paymaster(version),
        verification_gas_limit: 100_000,
        post_op_gas_limit: 0,
        valid_until,
        valid_after,
    }
}

/// `op` sponsored by `s` (signed by `pm_signer`), then signed by `owner`.
fn sponsor(
    env: &Env,
    version: EntryPointVersion,
    op: &UserOperation,
    s: &Sponsorship,
    pm_signer: &PrivateKeySigner,
    owner: &PrivateKeySigner,
) -> PackedUserOperation {
    let mut op = op.clone();
    op.paymaster = Some(s.paymaster);
    op.paymaster_verification_gas_limit = Some(U256::from(s.verification_gas_limit));
    op.paymaster_post_op_gas_limit = Some(U256::from(s.post_op_gas_limit));
    op.paymaster_data = Some(Bytes::new());
    let stub = op.pack().unwrap();
    let signature = pm_signer.sign_hash_sync(&s.signing_digest(&stub, env.chain.chain_id())).unwrap().as_bytes();
    let packed_pmd = s.paymaster_and_data(&signature);
    op.paymaster_data = Some(packed_pmd.slice(52..));
    env.sign(version, &op, owner)
}

async fn now(env: &Env) -> u64 {
    env.provider.get_block_by_number(Default::default()).await.unwrap().unwrap().header.timestamp
}

/// A fresh owner's first operation (deploys its account).
async fn first_op(env: &Env, version: EntryPointVersion) -> (PrivateKeySigner, UserOperation) {
    let owner = PrivateKeySigner::random();
    let sender = env.account_address(version, owner.address()).await;
    let op = env
        .op(
            version,
            sender,
            Some(owner.address()),
            account::execute(crate::setup::random_address(), U256::ZERO, Bytes::new()),
        )
        .await;
    (owner, op)
}

#[tokio::test]
async fn valid_sponsorship_is_accepted_and_matches_get_hash() {
    let env = env().await;
    let signer = env.operator().clone();
    for version in EntryPointVersion::ALL {
        let (owner, op) = first_op(&env, version).await;
        let now = now(&env).await;
        let s = sponsorship(&env, version, now + 3600, now - 10);
        let packed = sponsor(&env, version, &op, &s, &signer, &owner);
        // Offline hash = on-chain getHash.
        let paymaster = PeruriPaymaster::new(s.paymaster, env.provider.clone());
        let onchain = paymaster
            .getHash(
                packed.clone().into_paymaster(),
                s.valid_until.try_into().unwrap(),
                s.valid_after.try_into().unwrap(),
            )
            .call()
            .await
            .unwrap();
        assert_eq!(s.hash(&packed, env.chain.chain_id()), onchain);
        let receipt = env.handle_ops(version, vec![packed]).await.expect("sponsored op");
        let event = user_op_event(&receipt);
        assert!(event.success);
        assert_eq!(event.paymaster, s.paymaster, "{version}: the paymaster sponsored it");
    }
}

#[tokio::test]
async fn invalid_sponsorships_are_rejected() {
    let env = env().await;
    let signer = env.operator().clone();
    for version in EntryPointVersion::ALL {
        let (owner, op) = first_op(&env, version).await;
        let now = now(&env).await;
        // Expired.
        let s = sponsorship(&env, version, now - 1, 0);
        let err =
            env.handle_ops(version, vec![sponsor(&env, version, &op, &s, &signer, &owner)]).await.err().expect("fails");
        assert!(err.starts_with("AA32"), "{version} expired: {err}");
        // Not yet valid.
        let s = sponsorship(&env, version, now + 7200, now + 3600);
        let err =
            env.handle_ops(version, vec![sponsor(&env, version, &op, &s, &signer, &owner)]).await.err().expect("fails");
        assert!(err.starts_with("AA32"), "{version} not yet valid: {err}");
        // Without an end: validUntil = 0 would mean "forever" to the EntryPoint; the paymaster reverts.
        let s = sponsorship(&env, version, 0, 0);
        let err =
            env.handle_ops(version, vec![sponsor(&env, version, &op, &s, &signer, &owner)]).await.err().expect("fails");
        assert!(err.starts_with("AA33"), "{version} unbounded: {err}");
        // Signed by someone outside the signer set.
        let s = sponsorship(&env, version, now + 3600, 0);
        let err = env
            .handle_ops(version, vec![sponsor(&env, version, &op, &s, &PrivateKeySigner::random(), &owner)])
            .await
            .err()
            .expect("fails");
        assert!(err.starts_with("AA34"), "{version} wrong signer: {err}");
        // Tampered after sponsorship (call data changed, re-signed by the owner).
        let mut tampered = sponsor(&env, version, &op, &s, &signer, &owner);
        let mut unpacked = UserOperation::try_from(&tampered).unwrap();
        unpacked.call_data = account::execute(crate::setup::random_address(), U256::from(1), Bytes::new());
        tampered = env.sign(version, &unpacked, &owner);
        let err = env.handle_ops(version, vec![tampered]).await.err().expect("fails");
        assert!(err.starts_with("AA34"), "{version} tampered: {err}");
        // Tampered validity window.
        let mut window = sponsor(&env, version, &op, &s, &signer, &owner);
        let mut unpacked = UserOperation::try_from(&window).unwrap();
        let mut data = unpacked.paymaster_data.clone().unwrap().to_vec();
        data[5] = 1; // validUntil
        unpacked.paymaster_data = Some(data.into());
        window = env.sign(version, &unpacked, &owner);
        let err = env.handle_ops(version, vec![window]).await.err().expect("fails");
        assert!(err.starts_with("AA34"), "{version} tampered window: {err}");
        // Malformed paymaster data reverts validation.
        let mut short = op.clone();
        short.paymaster = Some(s.paymaster);
        short.paymaster_verification_gas_limit = Some(U256::from(100_000));
        short.paymaster_post_op_gas_limit = Some(U256::ZERO);
        short.paymaster_data = Some(Bytes::from(vec![0u8; 12]));
        let err = env.handle_ops(version, vec![env.sign(version, &short, &owner)]).await.err().expect("fails");
        assert!(err.starts_with("AA33"), "{version} malformed: {err}");
    }
}

#[tokio::test]
async fn rotated_out_signer_stops_working() {
    let env = env().await;
    let old = env.operator().clone();
    let new = PrivateKeySigner::random();
    for version in EntryPointVersion::ALL {
        let paymaster = PeruriPaymaster::new(env.deployment.contracts.paymaster(version), env.provider.clone());
        // Overlap: both signers valid.
        paymaster.addSigner(new.address()).send().await.unwrap().get_receipt().await.unwrap();
        assert!(paymaster.isSigner(new.address()).call().await.unwrap());
        let (owner, op) = first_op(&env, version).await;
        let s = sponsorship(&env, version, now(&env).await + 3600, 0);
        env.handle_ops(version, vec![sponsor(&env, version, &op, &s, &new, &owner)]).await.expect("new signer");
        // Retire the old signer.
        paymaster.removeSigner(old.address()).send().await.unwrap().get_receipt().await.unwrap();
        let (owner, op) = first_op(&env, version).await;
        let err =
            env.handle_ops(version, vec![sponsor(&env, version, &op, &s, &old, &owner)]).await.err().expect("fails");
        assert!(err.starts_with("AA34"), "{version}: {err}");
        env.handle_ops(version, vec![sponsor(&env, version, &op, &s, &new, &owner)]).await.expect("new signer");
        // Only the owner manages the set.
        let stranger =
            env.chain.provider_with(alloy::network::EthereumWallet::new(env.chain.dev_accounts()[5].clone()));
        let err = PeruriPaymaster::new(*paymaster.address(), stranger)
            .addSigner(crate::setup::random_address())
            .call()
            .await
            .err()
            .expect("fails");
        assert!(err.as_decoded_error::<PeruriPaymaster::OwnableUnauthorizedAccount>().is_some(), "{err}");
    }
}

/// Ownership moves in two steps and is never renounced (that would lock the deposit and signer set).
#[tokio::test]
async fn ownership_moves_in_two_steps_and_is_never_renounced() {
    let env = env().await;
    let next = env.chain.dev_accounts()[6].clone();
    let next_provider = env.chain.provider_with(alloy::network::EthereumWallet::new(next.clone()));
    for version in EntryPointVersion::ALL {
        let paymaster = PeruriPaymaster::new(env.deployment.contracts.paymaster(version), env.provider.clone());
        let current = paymaster.owner().call().await.unwrap();
        let err = paymaster.renounceOwnership().call().await.err().expect("refused");
        assert!(err.as_decoded_error::<PeruriPaymaster::RenounceDisabled>().is_some(), "{version}: {err}");
        paymaster.transferOwnership(next.address()).send().await.unwrap().get_receipt().await.unwrap();
        assert_eq!(paymaster.owner().call().await.unwrap(), current, "{version}: not moved before acceptance");
        assert_eq!(paymaster.pendingOwner().call().await.unwrap(), next.address());
        let as_next = PeruriPaymaster::new(*paymaster.address(), next_provider.clone());
        as_next.acceptOwnership().send().await.unwrap().get_receipt().await.unwrap();
        assert_eq!(paymaster.owner().call().await.unwrap(), next.address(), "{version}");
    }
}

/// Each paymaster is staked at deployment with the configured stake and unstake delay (ERC-7562 lets a
/// staked paymaster read its own storage: its signer set), and a deployment without the stake reverts.
#[tokio::test]
async fn paymasters_are_staked_at_deployment() {
    use custody_contracts::entry_point::IEntryPointSimulations;
    let env = env().await;
    for version in EntryPointVersion::ALL {
        let ep = IEntryPointSimulations::new(version.address(), env.provider.clone());
        let info = ep.getDepositInfo(env.deployment.contracts.paymaster(version)).call().await.unwrap();
        assert!(info.staked, "{version}");
        assert_eq!(U256::from(info.stake), env.config.paymaster_stake_wei, "{version}");
        assert_eq!(info.unstakeDelaySec, env.config.paymaster_unstake_delay_secs, "{version}");
    }
    let unstaked = custody_contracts::DeployConfig { paymaster_stake_wei: U256::ZERO, ..env.config.clone() };
    let deployer = env.chain.provider_with(alloy::network::EthereumWallet::new(env.operator().clone()));
    let (name, _, code) = unstaked.init_codes().into_iter().find(|(n, ..)| *n == "PeruriPaymasterV07").unwrap();
    let salt = alloy::primitives::B256::repeat_byte(7);
    let refused = custody_contracts::deploy::deploy_deterministic(&deployer, name, (salt, U256::ZERO), &code).await;
    assert!(refused.is_err(), "a paymaster without stake does not deploy");
}

trait IntoPaymasterOp {
    fn into_paymaster(self) -> custody_contracts::bindings::peruri_paymaster::PeruriPaymaster::PackedUserOperation;
}

impl IntoPaymasterOp for PackedUserOperation {
    fn into_paymaster(self) -> custody_contracts::bindings::peruri_paymaster::PeruriPaymaster::PackedUserOperation {
        custody_contracts::bindings::peruri_paymaster::PeruriPaymaster::PackedUserOperation {
            sender: self.sender,
            nonce: self.nonce,
            initCode: self.initCode,
            callData: self.callData,
            accountGasLimits: self.accountGasLimits,
            preVerificationGas: self.preVerificationGas,
            gasFees: self.gasFees,
            paymasterAndData: self.paymasterAndData,
            signature: self.signature,
        }
    }
}
