//! The paymaster against real parts: its key on SoftHSM2, SQLite and PostgreSQL, a local chain with the
//! EntryPoints v0.7 and v0.8 and PeruriPaymaster. A sponsored operation is carried on-chain and settled;
//! each rule refuses what it should; budgets hold under concurrency; expired signatures are released
//! and refused on-chain.

#![allow(clippy::unwrap_used, missing_debug_implementations)]

use alloy::primitives::{Address, Bytes, FixedBytes, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolEvent;
use custody_contracts::bindings::peruri_paymaster::PeruriPaymaster;
use custody_contracts::test_utils::{LocalChain, LocalChainConfig};
use custody_contracts::test_utils::{peruri_account, random_address, user_op, user_op_event};
use custody_contracts::{DeployConfig, Deployment, EntryPointVersion, UserOperation, account};
use custody_db::test_utils::Engine;
use custody_paymaster::{Budget, Denial, Limit, Paymaster, PaymasterConfig, PolicyConfig, Reset, Scope, Settler, Step};
use custody_signer::KeyClass;
use custody_signer::test_utils::TestKeyring;
use serde_json::{Value, json};

struct Env {
    chain: LocalChain,
    deployment: Deployment,
    keys: TestKeyring,
    provider: DynProvider,
}

async fn env(engine: Engine) -> Env {
    env_on(engine, LocalChainConfig::default()).await
}

async fn env_on(engine: Engine, chain: LocalChainConfig) -> Env {
    let chain = LocalChain::start_with(chain).await.unwrap();
    let keys = TestKeyring::new(engine).await;
    keys.keyring.create_infra("paymaster").await.unwrap();
    let signer = keys.keyring.signer(KeyClass::Infra, "paymaster").await.unwrap();
    let config = DeployConfig {
        paymaster_signers: vec![signer.address()],
        ..DeployConfig::single_operator(chain.dev_accounts()[0].address())
    };
    let deployment = chain.deploy(&config).await.unwrap();
    let provider = chain.provider();
    Env { chain, deployment, keys, provider }
}

/// One policy, `default`, with `limits` and any target.
fn config(policy: PolicyConfig) -> PaymasterConfig {
    PaymasterConfig { default_policy: policy.id.clone(), policies: vec![policy], ..Default::default() }
}

fn policy(limits: Vec<Limit>) -> PolicyConfig {
    PolicyConfig { id: "default".to_owned(), limits, ..Default::default() }
}

impl Env {
    async fn paymaster(&self, config: PaymasterConfig) -> Paymaster {
        let budget = Budget::open(self.keys.db.pool().await, &config.policies).await.unwrap();
        let signer = self.keys.keyring.signer(KeyClass::Infra, &config.key).await.unwrap();
        Paymaster::new(config, signer, &self.deployment, budget).unwrap()
    }

    /// A fresh owner's first operation (deploys its account), calling `target` with `data`.
    fn op(&self, version: EntryPointVersion, target: Address, data: Bytes) -> (PrivateKeySigner, UserOperation) {
        let owner = PrivateKeySigner::random();
        let sender = peruri_account(&self.deployment, version, owner.address());
        let call = account::execute(target, U256::ZERO, data);
        let op = user_op(&self.deployment, version, sender, U256::ZERO, Some(owner.address()), call);
        (owner, op)
    }

    async fn now(&self) -> u64 {
        self.provider.get_block_by_number(Default::default()).await.unwrap().unwrap().header.timestamp
    }
}

/// The stub's fields, then the final data, on `op` (as a client does).
async fn sponsor(pm: &Paymaster, version: EntryPointVersion, op: &mut UserOperation, now: u64) {
    let stub = pm.fields(Step::Stub, op, version, None, now).await.unwrap().unwrap();
    op.paymaster = Some(stub.paymaster);
    op.paymaster_verification_gas_limit = Some(U256::from(stub.verification_gas_limit));
    op.paymaster_post_op_gas_limit = Some(U256::from(stub.post_op_gas_limit));
    op.paymaster_data = Some(stub.paymaster_data);
    let data = pm.fields(Step::Final, op, version, None, now).await.unwrap().unwrap();
    assert_eq!(data.paymaster, stub.paymaster);
    op.paymaster_data = Some(data.paymaster_data);
}

async fn denied(pm: &Paymaster, version: EntryPointVersion, op: &UserOperation, now: u64) -> Denial {
    let stub = pm.fields(Step::Stub, op, version, None, now).await.unwrap();
    let denial = stub.expect_err("the stub refuses");
    assert_eq!(
        pm.fields(Step::Final, op, version, None, now).await.unwrap().expect_err("the final call refuses"),
        denial
    );
    denial
}

#[tokio::test]
async fn a_sponsored_operation_is_included_with_peruri_paymaster_and_settled() {
    let env = env(Engine::Sqlite).await;
    let pm = env.paymaster(config(policy(vec![]))).await;
    let settler = Settler::new(&pm, env.provider.clone());
    settler.step().await.unwrap(); // starts following at the current block
    for version in EntryPointVersion::ALL {
        let (owner, mut op) = env.op(version, random_address(), Bytes::new());
        sponsor(&pm, version, &mut op, env.now().await).await;
        let packed = env.chain.sign_user_op(version, &op, &owner);
        let receipt = env.chain.handle_ops(version, vec![packed], &env.chain.dev_accounts()[0]).await.unwrap();
        let event = user_op_event(&receipt);
        assert!(event.success, "{version}");
        assert_eq!(event.paymaster, env.deployment.contracts.paymaster(version), "{version}");
    }
    settler.step().await.unwrap();
    let rows = pm.budget().list("default", 10).await.unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        assert_eq!(row.status, "settled", "{row:?}");
        assert!(row.gas_used.unwrap() > 0 && row.gas_used.unwrap() < row.max_gas, "{row:?}");
        assert!(row.tx_hash.is_some());
    }
}

/// Rotation of the paymaster key with operations in flight: the new key is added to PeruriPaymaster's
/// signer set, signing switches to it, and the old one is removed only after the overlap; an operation
/// the old key sponsored before the switch is still included, and after the removal the old key's
/// sponsorships are refused on-chain.
#[tokio::test]
async fn the_paymaster_key_rotates_without_failing_operations_in_flight() {
    let env = env(Engine::Sqlite).await;
    env.keys.keyring.create_infra("paymaster-2").await.unwrap();
    let old = env.paymaster(config(policy(vec![]))).await;
    let new = env.paymaster(PaymasterConfig { key: "paymaster-2".to_owned(), ..config(policy(vec![])) }).await;
    let new_key = env.keys.keyring.signer(KeyClass::Infra, "paymaster-2").await.unwrap().address();
    let dev = &env.chain.dev_accounts()[0];
    let admin = env.chain.provider_with(alloy::network::EthereumWallet::from(dev.clone()));
    for version in EntryPointVersion::ALL {
        let contract = PeruriPaymaster::new(env.deployment.contracts.paymaster(version), admin.clone());
        let (owner1, mut in_flight) = env.op(version, random_address(), Bytes::new());
        sponsor(&old, version, &mut in_flight, env.now().await).await;
        // 1. Add the new signer; 2. switch signing to it (the service restarted with key = "paymaster-2").
        assert!(contract.addSigner(new_key).send().await.unwrap().get_receipt().await.unwrap().status());
        let (owner2, mut after) = env.op(version, random_address(), Bytes::new());
        sponsor(&new, version, &mut after, env.now().await).await;
        let ops = vec![
            env.chain.sign_user_op(version, &in_flight, &owner1),
            env.chain.sign_user_op(version, &after, &owner2),
        ];
        let receipt = env.chain.handle_ops(version, ops, dev).await.unwrap();
        let events: Vec<bool> = receipt
            .inner
            .logs()
            .iter()
            .filter_map(|l| custody_contracts::IEntryPoint::UserOperationEvent::decode_log_data(l.data()).ok())
            .map(|e| e.success)
            .collect();
        assert_eq!(events, vec![true, true], "{version}: the in-flight and the new operation are both included");
        // 3. After the overlap (every old sponsorship expired or included), remove the old signer.
        let old_key = env.keys.keyring.signer(KeyClass::Infra, "paymaster").await.unwrap().address();
        assert!(contract.removeSigner(old_key).send().await.unwrap().get_receipt().await.unwrap().status());
        let (owner3, mut late) = env.op(version, random_address(), Bytes::new());
        sponsor(&old, version, &mut late, env.now().await).await;
        let refused = env.chain.handle_ops(version, vec![env.chain.sign_user_op(version, &late, &owner3)], dev).await;
        assert!(refused.unwrap_err().starts_with("AA34"), "{version}: the old key is out");
        let (owner4, mut fine) = env.op(version, random_address(), Bytes::new());
        sponsor(&new, version, &mut fine, env.now().await).await;
        env.chain.handle_ops(version, vec![env.chain.sign_user_op(version, &fine, &owner4)], dev).await.unwrap();
    }
}

/// Where gas costs money: the account holds nothing, PeruriPaymaster's EntryPoint deposit pays.
#[tokio::test]
async fn on_a_chain_that_charges_gas_the_deposit_pays() {
    let env = env_on(Engine::Sqlite, LocalChainConfig { initial_base_fee: 1_000_000_000, ..Default::default() }).await;
    let min = 10u128.pow(17);
    let pm = env.paymaster(PaymasterConfig { min_deposit_wei: min, ..config(policy(vec![])) }).await;
    let settler = Settler::new(&pm, env.provider.clone());
    settler.step().await.unwrap();
    assert!(pm.deposit_low(), "no deposit yet: readiness warns");
    let dev = &env.chain.dev_accounts()[0];
    let funded = env.chain.provider_with(alloy::network::EthereumWallet::from(dev.clone()));
    for version in EntryPointVersion::ALL {
        let paymaster = PeruriPaymaster::new(env.deployment.contracts.paymaster(version), funded.clone());
        let deposit = U256::from(10u64).pow(U256::from(18));
        assert!(paymaster.deposit().value(deposit).send().await.unwrap().get_receipt().await.unwrap().status());
        let (owner, mut op) = env.op(version, random_address(), Bytes::new());
        op.max_fee_per_gas = U256::from(10_000_000_000u64);
        op.max_priority_fee_per_gas = U256::from(1_000_000_000u64);
        sponsor(&pm, version, &mut op, env.now().await).await;
        let packed = env.chain.sign_user_op(version, &op, &owner);
        let receipt = env.chain.handle_ops(version, vec![packed], dev).await.unwrap();
        let event = user_op_event(&receipt);
        assert!(event.success && event.actualGasCost > U256::ZERO, "{version}: {event:?}");
        assert_eq!(paymaster.getDeposit().call().await.unwrap(), deposit - event.actualGasCost, "{version}");
        assert_eq!(
            env.provider.get_balance(op.sender).await.unwrap(),
            U256::ZERO,
            "{version}: the account paid nothing"
        );
    }
    settler.step().await.unwrap();
    assert!(!pm.deposit_low(), "both deposits above {min} wei");
}

#[tokio::test]
async fn each_rule_refuses_what_it_should_with_its_name() {
    let env = env(Engine::Sqlite).await;
    let version = EntryPointVersion::V07;
    let token = env.deployment.contracts.peruri_token;
    let selector = FixedBytes::<4>::from([0xa9, 0x05, 0x9c, 0xbb]); // transfer(address,uint256)
    let blocked = env.op(version, token, Bytes::from(vec![0xa9, 0x05, 0x9c, 0xbb])).1;
    let rules = PolicyConfig {
        targets: vec![token],
        selectors: vec![selector],
        senders_block: vec![blocked.sender],
        self_selectors: vec![FixedBytes::from([0xa6, 0xf9, 0xda, 0xe1])], // changeOwner(address)
        limits: vec![Limit { scope: Scope::Operation, max_gas: Some(800_000), max_ops: None, reset: Reset::Never }],
        ..policy(vec![])
    };
    let pm = env.paymaster(config(rules.clone())).await;
    let now = env.now().await;
    let transfer = Bytes::from(vec![0xa9, 0x05, 0x9c, 0xbb]);
    let rule = |d: Denial| d.rule;

    assert!(
        pm.fields(Step::Stub, &env.op(version, token, transfer.clone()).1, version, None, now).await.unwrap().is_ok()
    );
    assert_eq!(rule(denied(&pm, version, &blocked, now).await), "sender_blocked");
    // The account's own owner change passes on `self_selectors`; another call of itself does not.
    let mut rotation = env.op(version, token, transfer.clone()).1;
    rotation.call_data = account::change_owner(rotation.sender, random_address());
    assert!(pm.fields(Step::Stub, &rotation, version, None, now).await.unwrap().is_ok());
    let upgrade = account::execute(rotation.sender, U256::ZERO, Bytes::from(vec![0x4f, 0x1e, 0xf2, 0x86]));
    let self_call = UserOperation { call_data: upgrade, ..rotation };
    assert_eq!(rule(denied(&pm, version, &self_call, now).await), "target_not_allowed");
    let other = env.op(version, random_address(), transfer.clone()).1;
    assert_eq!(rule(denied(&pm, version, &other, now).await), "target_not_allowed");
    let approve = env.op(version, token, Bytes::from(vec![0x09, 0x5e, 0xa7, 0xb3])).1;
    assert_eq!(rule(denied(&pm, version, &approve, now).await), "selector_not_allowed");
    let odd = UserOperation { call_data: Bytes::from(vec![1, 2, 3, 4]), ..approve.clone() };
    assert_eq!(rule(denied(&pm, version, &odd, now).await), "call_not_understood");
    let heavy = UserOperation { call_gas_limit: U256::from(1_000_000), ..env.op(version, token, transfer.clone()).1 };
    assert_eq!(rule(denied(&pm, version, &heavy, now).await), "operation_gas");

    let allow_only = PolicyConfig { senders_allow: vec![random_address()], ..policy(vec![]) };
    let pm = env.paymaster(config(allow_only)).await;
    assert_eq!(rule(denied(&pm, version, &other, now).await), "sender_not_allowed");
    let later = PolicyConfig { not_before: Some(now + 3600), ..policy(vec![]) };
    let pm = env.paymaster(config(later)).await;
    assert_eq!(rule(denied(&pm, version, &other, now).await), "not_started");
    let over = PolicyConfig { not_after: Some(now - 1), ..policy(vec![]) };
    let pm = env.paymaster(config(over)).await;
    assert_eq!(rule(denied(&pm, version, &other, now).await), "ended");
    let unknown = pm.fields(Step::Stub, &other, version, Some("nope"), now).await.unwrap().unwrap_err();
    assert_eq!(unknown.rule, "unknown_policy");
}

async fn concurrent_requests_never_overspend(engine: Engine) {
    let env = env(engine).await;
    let global = Limit { scope: Scope::Global, max_gas: None, max_ops: Some(10), reset: Reset::Daily };
    let pm = env.paymaster(config(policy(vec![global]))).await;
    let now = env.now().await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let (pm, op) = (pm.clone(), env.op(EntryPointVersion::V08, random_address(), Bytes::new()).1);
        tasks.spawn(async move { pm.fields(Step::Final, &op, EntryPointVersion::V08, None, now).await.unwrap() });
    }
    let answers = tasks.join_all().await;
    let granted = answers.iter().filter(|a| a.is_ok()).count();
    assert_eq!(granted, 10, "exactly the budget");
    assert!(answers.iter().filter_map(|a| a.as_ref().err()).all(|d| d.rule == "global_ops"));
    assert_eq!(pm.budget().list("default", 200).await.unwrap().len(), 10);
}

custody_db::on_each_engine!(concurrent_requests_never_overspend: sqlite_100_concurrent_requests_against_a_budget_of_10_sponsor_10, postgres_100_concurrent_requests_against_a_budget_of_10_sponsor_10);

/// A sender budget of 1 operation: the same operation asked again replaces its reservation; an expired,
/// unused one is released (the budget is free again) and refused on-chain (AA32).
#[tokio::test]
async fn an_expired_sponsorship_is_released_and_refused_on_chain() {
    let env = env(Engine::Sqlite).await;
    let per_sender = Limit { scope: Scope::Sender, max_gas: None, max_ops: Some(1), reset: Reset::Never };
    let pm = env.paymaster(PaymasterConfig { validity_secs: 5, ..config(policy(vec![per_sender])) }).await;
    let settler = Settler::new(&pm, env.provider.clone());
    settler.step().await.unwrap();
    let version = EntryPointVersion::V08;
    let (owner, mut op) = env.op(version, random_address(), Bytes::new());
    let now = env.now().await;
    sponsor(&pm, version, &mut op, now).await;
    assert!(
        pm.fields(Step::Final, &op, version, None, now).await.unwrap().is_ok(),
        "the same operation again: replaced"
    );
    let second = UserOperation { nonce: U256::from(1), ..op.clone() };
    assert_eq!(pm.fields(Step::Final, &second, version, None, now).await.unwrap().unwrap_err().rule, "sender_ops");

    env.chain.set_next_block_timestamp(now + 60).await.unwrap();
    env.chain.mine().await.unwrap();
    settler.step().await.unwrap();
    assert_eq!(pm.budget().list("default", 10).await.unwrap()[0].status, "released");
    let packed = env.chain.sign_user_op(version, &op, &owner);
    let refused = env.chain.handle_ops(version, vec![packed], &env.chain.dev_accounts()[0]).await.unwrap_err();
    assert!(refused.starts_with("AA32"), "{refused}");
    assert!(
        pm.fields(Step::Final, &second, version, None, now + 60).await.unwrap().is_ok(),
        "the budget is free again"
    );
}

/// A gas budget counts an operation's gas limits while it is reserved and its gas used once settled.
#[tokio::test]
async fn settling_returns_the_unused_gas_to_the_budget() {
    let env = env(Engine::Sqlite).await;
    let version = EntryPointVersion::V08;
    let (_, first) = env.op(version, random_address(), Bytes::new());
    let (_, second) = env.op(version, random_address(), Bytes::new());
    let pm = env.paymaster(config(policy(vec![]))).await;
    let limits = pm.fields(Step::Stub, &first, version, None, 0).await.unwrap().unwrap();
    let op_gas = first.max_gas() + limits.verification_gas_limit + limits.post_op_gas_limit;
    let global = Limit { scope: Scope::Global, max_gas: Some(op_gas * 3 / 2), max_ops: None, reset: Reset::Monthly };
    let pm = env.paymaster(config(policy(vec![global]))).await;
    let now = env.now().await;
    assert!(pm.fields(Step::Final, &first, version, None, now).await.unwrap().is_ok());
    assert_eq!(pm.fields(Step::Final, &second, version, None, now).await.unwrap().unwrap_err().rule, "global_gas");
    let id = custody_paymaster::sponsorship_id(version, first.sender, first.nonce);
    assert!(pm.budget().settle(&id, 100_000, Default::default(), Default::default()).await.unwrap());
    assert!(pm.fields(Step::Final, &second, version, None, now).await.unwrap().is_ok(), "the unused gas came back");
}

async fn rpc(pm: &Paymaster, method: &str, params: Value) -> Value {
    let request = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    custody_paymaster::rpc::handle(pm, request).await.unwrap()
}

#[tokio::test]
async fn the_rpc_speaks_erc_7677() {
    let env = env(Engine::Sqlite).await;
    let blocked = env.op(EntryPointVersion::V07, random_address(), Bytes::new()).1;
    let pm = env.paymaster(config(PolicyConfig { senders_block: vec![blocked.sender], ..policy(vec![]) })).await;
    let chain_id = format!("{:#x}", env.chain.chain_id());
    let (_, op) = env.op(EntryPointVersion::V07, random_address(), Bytes::new());
    // What a client sends before gas estimation: no gas fields at all.
    let request = json!({"sender": op.sender, "nonce": "0x0", "callData": op.call_data, "signature": "0x"});
    let ep = EntryPointVersion::V07.address();
    let stub = rpc(&pm, "pm_getPaymasterStubData", json!([request, ep, chain_id, {}])).await;
    let result = &stub["result"];
    assert_eq!(result["paymaster"], json!(env.deployment.contracts.paymaster(EntryPointVersion::V07)), "{stub}");
    assert_eq!(result["isFinal"], json!(false));
    assert_eq!(result["sponsor"]["name"], json!("Peruri"));
    assert!(result["paymasterVerificationGasLimit"].is_string() && result["paymasterPostOpGasLimit"].is_string());
    assert_eq!(result["paymasterData"].as_str().unwrap().len(), 2 + 2 * (6 + 6 + 65));
    let data = rpc(&pm, "pm_getPaymasterData", json!([request, ep, chain_id, null])).await;
    assert!(data["result"]["paymasterData"].is_string() && data["result"].get("isFinal").is_none(), "{data}");

    let refused = json!({"sender": blocked.sender, "nonce": "0x0", "callData": "0x"});
    let denied = rpc(&pm, "pm_getPaymasterStubData", json!([refused, ep, chain_id, {"policyId": "default"}])).await;
    assert_eq!(denied["error"]["code"], json!(custody_paymaster::rpc::SPONSORSHIP_DENIED), "{denied}");
    assert_eq!(denied["error"]["data"], json!({"policyId": "default", "rule": "sender_blocked"}));
    let wrong_chain = rpc(&pm, "pm_getPaymasterStubData", json!([request, ep, "0x1", {}])).await;
    assert_eq!(wrong_chain["error"]["code"], json!(-32602), "{wrong_chain}");
    let wrong_ep = rpc(&pm, "pm_getPaymasterStubData", json!([request, random_address(), chain_id, {}])).await;
    assert_eq!(wrong_ep["error"]["code"], json!(-32602), "{wrong_ep}");
    assert_eq!(rpc(&pm, "pm_nope", json!([])).await["error"]["code"], json!(-32601));
}

/// Officers' changes bind the next request; a counted limit added mid-period counts what the period
/// already sponsored, and the sponsorships it counted move it when released; a change against a stale
/// version is refused; the configuration applies again only when it was edited.
async fn policy_changes_bind_the_next_request(engine: Engine) {
    let env = env(engine).await;
    let version = EntryPointVersion::V08;
    let pm = env.paymaster(config(policy(vec![]))).await;
    let now = env.now().await;
    let fresh = || env.op(version, random_address(), Bytes::new()).1;
    for _ in 0..3 {
        assert!(pm.fields(Step::Final, &fresh(), version, None, now).await.unwrap().is_ok());
    }
    let first = pm.budget().policy("default").await.unwrap().unwrap();
    assert_eq!((first.version, first.updated_by.as_str()), (1, "config"));

    let daily = Limit { scope: Scope::Global, max_gas: None, max_ops: Some(4), reset: Reset::Daily };
    let limited = policy(vec![daily]);
    let stale = pm.budget().put_policy(&limited, "officer:o", Some(0)).await.unwrap();
    assert_eq!(stale, Err(custody_paymaster::Stale { current: 1 }));
    assert!(pm.budget().put_policy(&limited, "config", None).await.is_err(), "only the configuration is `config`");
    let invalid = policy(vec![Limit { max_ops: None, ..daily }]);
    assert!(pm.budget().put_policy(&invalid, "officer:o", None).await.is_err());
    let stored = pm.budget().put_policy(&limited, "officer:o", Some(1)).await.unwrap().unwrap();
    assert_eq!((stored.version, stored.updated_by.as_str()), (2, "officer:o"));

    // Today's three count: one more fits, the fifth does not.
    assert!(pm.fields(Step::Final, &fresh(), version, None, now).await.unwrap().is_ok());
    let fifth = fresh();
    assert_eq!(pm.fields(Step::Final, &fifth, version, None, now).await.unwrap().unwrap_err().rule, "global_ops");
    // The four expire unused: released from the counter, including the three counted into it later.
    assert_eq!(pm.budget().release_expired(u64::MAX / 2).await.unwrap(), 4);
    for _ in 0..4 {
        assert!(pm.fields(Step::Final, &fresh(), version, None, now).await.unwrap().is_ok());
    }
    assert_eq!(pm.fields(Step::Final, &fifth, version, None, now).await.unwrap().unwrap_err().rule, "global_ops");

    // The same configuration again keeps the officer's version; an edited one applies.
    let again = env.paymaster(config(policy(vec![]))).await;
    assert_eq!(again.budget().policy("default").await.unwrap().unwrap().version, 2);
    assert_eq!(again.fields(Step::Stub, &fifth, version, None, now).await.unwrap().unwrap_err().rule, "global_ops");
    let edited = PolicyConfig { senders_block: vec![fifth.sender], ..policy(vec![]) };
    let edited_pm = env.paymaster(config(edited.clone())).await;
    let record = edited_pm.budget().policy("default").await.unwrap().unwrap();
    assert_eq!((record.version, record.updated_by.as_str(), &record.policy), (3, "config", &edited));
    assert_eq!(
        edited_pm.fields(Step::Stub, &fifth, version, None, now).await.unwrap().unwrap_err().rule,
        "sender_blocked"
    );
}

custody_db::on_each_engine!(policy_changes_bind_the_next_request: sqlite_policy_changes_bind_the_next_request, postgres_policy_changes_bind_the_next_request);
