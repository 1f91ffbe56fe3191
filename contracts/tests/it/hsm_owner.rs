//! Accounts owned by HSM keys: a wrapped user key signs the UserOperation and an
//! infrastructure key on the token sends the bundle, through the signing core.

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::Provider;
use custody_contracts::bindings::peruri_account_v08::PeruriAccountV08;
use custody_contracts::userop::signing_digest;
use custody_contracts::{EntryPointVersion, IEntryPoint, account};
use custody_db::test_utils::Engine;
use custody_signer::KeyClass;
use custody_signer::test_utils::TestKeyring;

use crate::setup::{env, random_address, user_op_event};

#[tokio::test]
async fn an_hsm_user_key_owns_the_account_and_an_hsm_bundler_key_sends() {
    let env = env().await;
    let keys = TestKeyring::new(Engine::Sqlite).await;
    keys.keyring.create_user("alice").await.unwrap();
    keys.keyring.create_infra("bundler").await.unwrap();
    let owner = keys.keyring.signer(KeyClass::User, "alice").await.unwrap();
    let bundler = keys.keyring.signer(KeyClass::Infra, "bundler").await.unwrap();
    let bundler_address = bundler.address();
    env.chain.set_balance(bundler_address, U256::from(10u64.pow(18))).await.unwrap();
    let via_bundler = env.chain.provider_with(EthereumWallet::from(bundler));

    for version in EntryPointVersion::ALL {
        let sender = env.account_address(version, owner.address()).await;
        let recipient: Address = random_address();
        env.chain.set_balance(sender, U256::from(10)).await.unwrap();
        let op = env
            .op(version, sender, Some(owner.address()), account::execute(recipient, U256::from(1), Bytes::new()))
            .await;
        let mut packed = op.pack().unwrap();
        let hash = packed.hash(version, version.address(), env.chain.chain_id());
        let signature = owner.sign_digest(&signing_digest(version, hash)).await.unwrap();
        packed.signature = Bytes::from(signature.as_bytes().to_vec());

        let entry_point = IEntryPoint::new(version.address(), via_bundler.clone());
        let receipt =
            entry_point.handleOps(vec![packed], bundler_address).send().await.unwrap().get_receipt().await.unwrap();
        assert!(receipt.status(), "{version}: handleOps");
        assert_eq!(receipt.from, bundler_address, "the HSM bundler key sent the bundle");
        assert!(user_op_event(&receipt).success, "{version}: the HSM-signed operation executed");
        assert_eq!(env.provider.get_balance(recipient).await.unwrap(), U256::from(1));
        let acct = PeruriAccountV08::new(sender, env.provider.clone());
        assert_eq!(acct.owner().call().await.unwrap(), owner.address());
    }
}
