//! PeruriAccount through real UserOperations.

use alloy::primitives::{Address, Bytes, U256, keccak256};
use alloy::providers::Provider;
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{SolCall, SolEvent};
use custody_contracts::bindings::peruri_account_factory_v07::PeruriAccountFactoryV07;
use custody_contracts::bindings::peruri_account_v08::PeruriAccountV08;
use custody_contracts::bindings::peruri_badge::PeruriBadge;
use custody_contracts::{EntryPointVersion, IEntryPoint, account};

use crate::setup::{env, user_op_event};

/// Deploy the account of a fresh owner with a first UserOperation that also sends 1 wei.
async fn deploy_account(env: &crate::setup::Env, version: EntryPointVersion) -> (PrivateKeySigner, Address) {
    let owner = PrivateKeySigner::random();
    let sender = env.account_address(version, owner.address()).await;
    assert!(env.provider.get_code_at(sender).await.unwrap().is_empty(), "counterfactual");
    env.chain.set_balance(sender, U256::from(1_000)).await.unwrap();
    let recipient = crate::setup::random_address();
    let op =
        env.op(version, sender, Some(owner.address()), account::execute(recipient, U256::from(1), Bytes::new())).await;
    let receipt = env.handle_ops(version, vec![env.sign(version, &op, &owner)]).await.expect("first op succeeds");
    let event = user_op_event(&receipt);
    assert!(event.success, "{version}: call succeeded");
    assert_eq!(event.sender, sender);
    let deployed = receipt
        .inner
        .logs()
        .iter()
        .find_map(|log| IEntryPoint::AccountDeployed::decode_log_data(log.data()).ok())
        .expect("AccountDeployed");
    assert_eq!(deployed.sender, sender);
    assert_eq!(deployed.factory, env.deployment.contracts.account_factory(version));
    assert_eq!(env.provider.get_code_at(sender).await.unwrap().len(), 65, "ERC-1167 clone with the owner argument");
    assert_eq!(env.provider.get_balance(recipient).await.unwrap(), U256::from(1));
    let acct = PeruriAccountV08::new(sender, env.provider.clone());
    assert_eq!(acct.owner().call().await.unwrap(), owner.address());
    assert_eq!(acct.entryPoint().call().await.unwrap(), version.address());
    (owner, sender)
}

#[tokio::test]
async fn first_op_deploys_the_account_and_executes() {
    let env = env().await;
    for version in EntryPointVersion::ALL {
        let (owner, sender) = deploy_account(&env, version).await;
        // A second op (no initCode) with a batch.
        let calls = [
            (crate::setup::random_address(), U256::from(2), Bytes::new()),
            (crate::setup::random_address(), U256::from(3), Bytes::new()),
        ];
        let op = env.op(version, sender, None, account::execute_batch(calls.clone())).await;
        assert_eq!(op.nonce, U256::from(1));
        let receipt = env.handle_ops(version, vec![env.sign(version, &op, &owner)]).await.expect("batch op");
        assert!(user_op_event(&receipt).success);
        for (to, value, _) in calls {
            assert_eq!(env.provider.get_balance(to).await.unwrap(), value);
        }
        // A signature by someone else is refused.
        let op = env.op(version, sender, None, Bytes::new()).await;
        let err = env
            .handle_ops(version, vec![env.sign(version, &op, &PrivateKeySigner::random())])
            .await
            .err()
            .expect("fails");
        assert!(err.starts_with("AA24"), "{version}: {err}");
    }
}

#[tokio::test]
async fn owner_rotation_keeps_the_address() {
    let env = env().await;
    for version in EntryPointVersion::ALL {
        let (old, sender) = deploy_account(&env, version).await;
        let new = PrivateKeySigner::random();
        let op = env.op(version, sender, None, account::change_owner(sender, new.address())).await;
        let receipt = env.handle_ops(version, vec![env.sign(version, &op, &old)]).await.expect("rotation");
        assert!(user_op_event(&receipt).success, "{version}: rotation succeeded");
        let acct = PeruriAccountV08::new(sender, env.provider.clone());
        assert_eq!(acct.owner().call().await.unwrap(), new.address());
        assert_eq!(env.account_address(version, old.address()).await, sender, "address unchanged");

        // The old owner stops working; the new one works.
        let op = env.op(version, sender, None, Bytes::new()).await;
        let err = env.handle_ops(version, vec![env.sign(version, &op, &old)]).await.err().expect("fails");
        assert!(err.starts_with("AA24"), "{version}: {err}");
        let receipt = env.handle_ops(version, vec![env.sign(version, &op, &new)]).await.expect("new owner");
        assert!(user_op_event(&receipt).success);

        // Nobody else can rotate: not the owner directly, not anyone.
        let err = acct.changeOwner(crate::setup::random_address()).call().await.err().expect("fails");
        assert!(err.as_decoded_error::<PeruriAccountV08::NotFromSelf>().is_some(), "{err}");
        // A rotation to zero fails inside the op (the call reverts, the op is included).
        let op = env.op(version, sender, None, account::change_owner(sender, Address::ZERO)).await;
        let receipt = env.handle_ops(version, vec![env.sign(version, &op, &new)]).await.expect("included");
        assert!(!user_op_event(&receipt).success);
        assert_eq!(acct.owner().call().await.unwrap(), new.address());
    }
}

/// UUPS over ERC-1967: an account upgrades itself only, through a UserOperation signed by its owner; it
/// then runs the new logic with its address, owner and nonce kept (and `data` delegated to it); a direct
/// call, and an upgrade to code that is no upgradeable logic (an EOA, another account), are refused.
#[tokio::test]
async fn an_account_upgrades_itself_through_its_owner_only() {
    const SLOT: alloy::primitives::B256 =
        alloy::primitives::b256!("0x360894a13ba1a3210667c828492db98dca3e2076cc3735a920a3ca505d382bbc");
    let env = env().await;
    for version in EntryPointVersion::ALL {
        let (owner, sender) = deploy_account(&env, version).await;
        let (_, other_account) = deploy_account(&env, version).await;
        let acct = PeruriAccountV08::new(sender, env.provider.clone());
        let c = &env.deployment.contracts;
        let factory = PeruriAccountFactoryV07::new(c.account_factory(version), env.provider.clone());
        assert_eq!(factory.accountLogic().call().await.unwrap(), c.account_logic(version));
        assert_eq!(acct.implementation().call().await.unwrap(), c.account_logic(version), "{version}");
        assert_eq!(env.provider.get_storage_at(sender, SLOT.into()).await.unwrap(), U256::ZERO, "no write at deploy");

        // A new logic (the same code, deployed again: what a fix or a new EntryPoint version would bring).
        let operator = env.chain.provider_with(alloy::network::EthereumWallet::new(env.operator().clone()));
        let logic = match version {
            EntryPointVersion::V07 => {
                *custody_contracts::bindings::peruri_account_v07::PeruriAccountV07::deploy(&operator, version.address())
                    .await
                    .unwrap()
                    .address()
            }
            EntryPointVersion::V08 => *PeruriAccountV08::deploy(&operator, version.address()).await.unwrap().address(),
        };

        // Refused: a direct call (even by the owner's address), an EOA, another account.
        let err = acct.upgradeToAndCall(logic, Bytes::new()).call().await.err().expect("fails");
        assert!(err.as_decoded_error::<PeruriAccountV08::NotFromSelf>().is_some(), "{version}: {err}");
        for bad in [crate::setup::random_address(), other_account] {
            let op = env.op(version, sender, None, account::upgrade(sender, bad, Bytes::new())).await;
            let receipt = env.handle_ops(version, vec![env.sign(version, &op, &owner)]).await.expect("included");
            assert!(!user_op_event(&receipt).success, "{version}: no upgrade to {bad}");
            assert_eq!(acct.implementation().call().await.unwrap(), c.account_logic(version));
        }

        // The owner upgrades, rotating the owner in the same call (data delegated to the new logic).
        let new_owner = PrivateKeySigner::random();
        let rotate = PeruriAccountV08::changeOwnerCall { newOwner: new_owner.address() };
        let op = env.op(version, sender, None, account::upgrade(sender, logic, rotate.abi_encode().into())).await;
        let receipt = env.handle_ops(version, vec![env.sign(version, &op, &owner)]).await.expect("upgrade");
        assert!(user_op_event(&receipt).success, "{version}: upgraded");
        let upgraded = receipt
            .inner
            .logs()
            .iter()
            .find_map(|log| PeruriAccountV08::Upgraded::decode_log_data(log.data()).ok())
            .expect("ERC-1967 Upgraded");
        assert_eq!(upgraded.implementation, logic);
        assert_eq!(acct.implementation().call().await.unwrap(), logic, "{version}");
        let slot = env.provider.get_storage_at(sender, SLOT.into()).await.unwrap();
        assert_eq!(Address::from_word(slot.into()), logic, "{version}: the ERC-1967 slot");
        assert_eq!(acct.owner().call().await.unwrap(), new_owner.address());
        assert_eq!(env.account_address(version, owner.address()).await, sender, "address unchanged");

        // It keeps working under the new logic and the new owner, with the next nonce.
        let op = env.op(version, sender, None, Bytes::new()).await;
        assert_eq!(op.nonce, U256::from(4), "{version}");
        let receipt = env.handle_ops(version, vec![env.sign(version, &op, &new_owner)]).await.expect("runs");
        assert!(user_op_event(&receipt).success);
    }
}

#[tokio::test]
async fn erc1271_accepts_the_owner_only() {
    let env = env().await;
    for version in EntryPointVersion::ALL {
        let (owner, sender) = deploy_account(&env, version).await;
        let acct = PeruriAccountV08::new(sender, env.provider.clone());
        let hash = keccak256("hello peruri");
        let digest = account::replay_safe_hash(sender, env.chain.chain_id(), hash);
        assert_eq!(acct.replaySafeHash(hash).call().await.unwrap(), digest);
        let good = Bytes::from(owner.sign_hash_sync(&digest).unwrap().as_bytes().to_vec());
        assert_eq!(acct.isValidSignature(hash, good).call().await.unwrap().0, [0x16, 0x26, 0xba, 0x7e]);
        let other = Bytes::from(PrivateKeySigner::random().sign_hash_sync(&digest).unwrap().as_bytes().to_vec());
        assert_eq!(acct.isValidSignature(hash, other).call().await.unwrap().0, [0xff; 4]);
        // A signature of the bare hash (replayable on another account of the same owner) is refused.
        let bare = Bytes::from(owner.sign_hash_sync(&hash).unwrap().as_bytes().to_vec());
        assert_eq!(acct.isValidSignature(hash, bare).call().await.unwrap().0, [0xff; 4]);
        assert_eq!(acct.isValidSignature(hash, Bytes::from(vec![1u8; 10])).call().await.unwrap().0, [0xff; 4]);
        // Interfaces: ERC-165, ERC-721 and ERC-1155 receivers, ERC-1271.
        for id in
            [[0x01, 0xff, 0xc9, 0xa7], [0x15, 0x0b, 0x7a, 0x02], [0x4e, 0x23, 0x12, 0xe0], [0x16, 0x26, 0xba, 0x7e]]
        {
            assert!(acct.supportsInterface(id.into()).call().await.unwrap());
        }
        // Receiver hook: a PBADGE can be minted to the deployed account.
        let badge = PeruriBadge::new(env.deployment.contracts.peruri_badge, env.provider.clone());
        badge.mint(sender, U256::from(7)).send().await.unwrap().get_receipt().await.unwrap();
        assert_eq!(badge.balanceOf(sender, U256::from(7)).call().await.unwrap(), U256::from(1));
    }
}

#[tokio::test]
async fn anyone_deploys_an_account_for_its_owner_and_the_account_refuses_direct_calls() {
    let env = env().await;
    for version in EntryPointVersion::ALL {
        let factory =
            PeruriAccountFactoryV07::new(env.deployment.contracts.account_factory(version), env.provider.clone());
        // Anyone may deploy an account (an ERC-6492 verifier does): it is always the owner's.
        let owner = crate::setup::random_address();
        factory.createAccount(owner, U256::ZERO).send().await.unwrap().get_receipt().await.unwrap();
        let deployed = env.account_address(version, owner).await;
        let acct = PeruriAccountV08::new(deployed, env.provider.clone());
        assert_eq!(acct.owner().call().await.unwrap(), owner, "{version}: deployed for its owner");

        let (_, sender) = deploy_account(&env, version).await;
        let acct = PeruriAccountV08::new(sender, env.provider.clone());
        let err =
            acct.execute(crate::setup::random_address(), U256::ZERO, Bytes::new()).call().await.err().expect("fails");
        assert!(err.as_decoded_error::<PeruriAccountV08::NotFromEntryPoint>().is_some(), "{err}");
        // The implementation itself has no owner: nothing validates against it.
        let implementation =
            PeruriAccountV08::new(env.deployment.contracts.account_implementation(version), env.provider.clone());
        assert_eq!(implementation.owner().call().await.unwrap(), Address::ZERO);
    }
}
