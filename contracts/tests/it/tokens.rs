//! PTKN, PBADGE and PLOG.

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, U256, keccak256};
use alloy::providers::{DynProvider, Provider};
use alloy::sol_types::SolValue;
use custody_contracts::DeployConfig;
use custody_contracts::bindings::peruri_badge::PeruriBadge;
use custody_contracts::bindings::peruri_log::PeruriLog;
use custody_contracts::bindings::peruri_token::PeruriToken;
use custody_contracts::test_utils::LocalChain;

use crate::setup::{Env, env_with};

/// Roles on separate dev accounts: admin 0, issuer 1, anchorer 2; 3 is nobody.
async fn env_with_roles() -> Env {
    let chain = LocalChain::start().await.expect("local chain starts");
    let d = chain.dev_accounts();
    let config = DeployConfig {
        admin: d[0].address(),
        issuer: d[1].address(),
        anchorer: d[2].address(),
        ..DeployConfig::single_operator(d[0].address())
    };
    env_with(chain, config).await
}

fn as_account(env: &Env, i: usize) -> DynProvider {
    env.chain.provider_with(EthereumWallet::new(env.chain.dev_accounts()[i].clone()))
}

#[tokio::test]
async fn ptkn_minted_by_the_issuer_only_burned_by_its_holder_only_and_batch_ids_once() {
    let env = env_with_roles().await;
    let address = env.deployment.contracts.peruri_token;
    let issuer = PeruriToken::new(address, as_account(&env, 1));
    let nobody = PeruriToken::new(address, as_account(&env, 3));
    let (holder, alice) = (PeruriToken::new(address, as_account(&env, 4)), env.chain.dev_accounts()[4].address());

    assert_eq!(issuer.symbol().call().await.unwrap(), "PTKN");
    issuer.mint(alice, U256::from(100)).send().await.unwrap().get_receipt().await.unwrap();
    holder.burn(U256::from(30)).send().await.unwrap().get_receipt().await.unwrap();
    assert_eq!(issuer.balanceOf(alice).call().await.unwrap(), U256::from(70));
    // Neither the issuer nor the admin can take the holder's tokens: burnFrom needs the holder's allowance,
    // and the issuer's burn(address,uint256) of old is gone.
    for who in [1, 0] {
        let token = PeruriToken::new(address, as_account(&env, who));
        let err = token.burnFrom(alice, U256::from(1)).call().await.err().expect("no allowance");
        assert!(err.as_decoded_error::<PeruriToken::ERC20InsufficientAllowance>().is_some(), "{err}");
        let old = [&keccak256("burn(address,uint256)")[..4], &(alice, U256::from(1)).abi_encode()].concat();
        let call = alloy::rpc::types::TransactionRequest::default()
            .from(env.chain.dev_accounts()[who].address())
            .to(address)
            .input(old.into());
        assert!(env.provider.call(call).await.is_err(), "no burn(from, amount) for account {who}");
    }
    assert_eq!(issuer.balanceOf(alice).call().await.unwrap(), U256::from(70));
    for err in [
        nobody.mint(alice, U256::from(1)).call().await.err().expect("fails"),
        nobody
            .batchMint(crate::setup::random_b256(), vec![alice], vec![U256::from(1)])
            .call()
            .await
            .err()
            .expect("fails"),
    ] {
        assert!(err.as_decoded_error::<PeruriToken::AccessControlUnauthorizedAccount>().is_some(), "{err}");
    }

    let batch = crate::setup::random_b256();
    let recipients: Vec<Address> = (0..5).map(|_| crate::setup::random_address()).collect();
    let amounts: Vec<U256> = (1..=5).map(U256::from).collect();
    issuer.batchMint(batch, recipients.clone(), amounts.clone()).send().await.unwrap().get_receipt().await.unwrap();
    for (r, a) in recipients.iter().zip(&amounts) {
        assert_eq!(issuer.balanceOf(*r).call().await.unwrap(), *a);
    }
    assert!(issuer.batchUsed(batch).call().await.unwrap());
    let err = issuer.batchMint(batch, recipients, amounts).call().await.err().expect("fails");
    assert!(err.as_decoded_error::<PeruriToken::BatchAlreadyUsed>().is_some(), "{err}");
    let err = issuer.batchMint(crate::setup::random_b256(), vec![alice], vec![]).call().await.err().expect("fails");
    assert!(err.as_decoded_error::<PeruriToken::LengthMismatch>().is_some(), "{err}");

    // The admin rotates the issuer role.
    let admin = PeruriToken::new(address, as_account(&env, 0));
    let role = admin.ISSUER_ROLE().call().await.unwrap();
    admin.grantRole(role, env.chain.dev_accounts()[3].address()).send().await.unwrap().get_receipt().await.unwrap();
    admin.revokeRole(role, env.chain.dev_accounts()[1].address()).send().await.unwrap().get_receipt().await.unwrap();
    nobody.mint(alice, U256::from(1)).send().await.unwrap().get_receipt().await.unwrap();
    assert!(issuer.mint(alice, U256::from(1)).call().await.is_err());
}

#[tokio::test]
async fn pbadge_is_soulbound() {
    let env = env_with_roles().await;
    let address = env.deployment.contracts.peruri_badge;
    let issuer = PeruriBadge::new(address, as_account(&env, 1));
    let holder_index = 4;
    let holder_address = env.chain.dev_accounts()[holder_index].address();
    let holder = PeruriBadge::new(address, as_account(&env, holder_index));
    let id = U256::from(202_601);

    let batch = crate::setup::random_b256();
    issuer
        .batchMint(batch, vec![holder_address, crate::setup::random_address()], vec![id, id])
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert_eq!(holder.balanceOf(holder_address, id).call().await.unwrap(), U256::from(1));
    assert!(holder.locked(id).call().await.unwrap());
    assert!(holder.supportsInterface([0xb4, 0x5a, 0x3c, 0x0e].into()).call().await.unwrap(), "ERC-5192 advertised");
    // One badge per holder and id: a second mint is refused, a batch skips the holder (and a repeat within it).
    let err = issuer.mint(holder_address, id).call().await.err().expect("fails");
    assert!(err.as_decoded_error::<PeruriBadge::AlreadyHeld>().is_some(), "{err}");
    let newcomer = crate::setup::random_address();
    let again = crate::setup::random_b256();
    let call = issuer.batchMint(again, vec![holder_address, newcomer, newcomer], vec![id, id, id]);
    assert!(call.send().await.unwrap().get_receipt().await.unwrap().status());
    assert_eq!(holder.balanceOf(holder_address, id).call().await.unwrap(), U256::from(1), "still one");
    assert_eq!(holder.balanceOf(newcomer, id).call().await.unwrap(), U256::from(1), "one, not two");
    let err =
        issuer.batchMint(batch, vec![crate::setup::random_address()], vec![id]).call().await.err().expect("fails");
    assert!(err.as_decoded_error::<PeruriBadge::BatchAlreadyUsed>().is_some(), "{err}");

    // Every transfer and approval path reverts, for the holder and for the issuer alike.
    let other = crate::setup::random_address();
    for badge in [&holder, &issuer] {
        let errs = [
            badge
                .safeTransferFrom(holder_address, other, id, U256::from(1), Default::default())
                .call()
                .await
                .err()
                .expect("fails"),
            badge
                .safeBatchTransferFrom(holder_address, other, vec![id], vec![U256::from(1)], Default::default())
                .call()
                .await
                .err()
                .expect("fails"),
            badge.setApprovalForAll(other, true).call().await.err().expect("fails"),
            badge.setApprovalForAll(other, false).call().await.err().expect("fails"),
        ];
        for err in errs {
            assert!(err.as_decoded_error::<PeruriBadge::Soulbound>().is_some(), "{err}");
        }
    }
    assert!(!holder.isApprovedForAll(holder_address, other).call().await.unwrap());

    // Revocation: the issuer burns; nobody else can.
    let err = holder.revoke(holder_address, id).call().await.err().expect("fails");
    assert!(err.as_decoded_error::<PeruriBadge::AccessControlUnauthorizedAccount>().is_some(), "{err}");
    issuer.revoke(holder_address, id).send().await.unwrap().get_receipt().await.unwrap();
    assert_eq!(holder.balanceOf(holder_address, id).call().await.unwrap(), U256::ZERO);
    let err = holder.mint(holder_address, id).call().await.err().expect("fails");
    assert!(err.as_decoded_error::<PeruriBadge::AccessControlUnauthorizedAccount>().is_some(), "{err}");
}

/// OpenZeppelin StandardMerkleTree: leaves keccak256(keccak256(abi.encode(values))), sorted, sorted pairs.
struct StandardMerkleTree {
    tree: Vec<B256>,
}

fn hash_pair(a: B256, b: B256) -> B256 {
    if a < b {
        keccak256([a.as_slice(), b.as_slice()].concat())
    } else {
        keccak256([b.as_slice(), a.as_slice()].concat())
    }
}

impl StandardMerkleTree {
    fn leaf(account: Address, amount: U256) -> B256 {
        keccak256(keccak256((account, amount).abi_encode()))
    }

    fn new(mut leaves: Vec<B256>) -> Self {
        leaves.sort();
        let n = leaves.len();
        let mut tree = vec![B256::ZERO; 2 * n - 1];
        for (i, leaf) in leaves.iter().enumerate() {
            tree[2 * n - 2 - i] = *leaf;
        }
        for i in (0..n - 1).rev() {
            tree[i] = hash_pair(tree[2 * i + 1], tree[2 * i + 2]);
        }
        Self { tree }
    }

    fn root(&self) -> B256 {
        self.tree[0]
    }

    fn proof(&self, leaf: B256) -> Vec<B256> {
        let mut i = self.tree.iter().rposition(|x| *x == leaf).unwrap();
        let mut proof = Vec::new();
        while i > 0 {
            let sibling = if i % 2 == 1 { i + 1 } else { i - 1 };
            proof.push(self.tree[sibling]);
            i = (i - 1) / 2;
        }
        proof
    }
}

#[tokio::test]
async fn plog_anchors_once_and_verifies_proofs() {
    let env = env_with_roles().await;
    let address = env.deployment.contracts.peruri_log;
    let anchorer = PeruriLog::new(address, as_account(&env, 2));
    let nobody = PeruriLog::new(address, as_account(&env, 3));

    let leaves: Vec<B256> =
        (0..7u64).map(|i| StandardMerkleTree::leaf(crate::setup::random_address(), U256::from(i))).collect();
    let tree = StandardMerkleTree::new(leaves.clone());
    let batch = crate::setup::random_b256();
    let uri = "https://peruri.invalid/batches/1.json".to_owned();

    let err = nobody.anchor(batch, tree.root(), 7, uri.clone()).call().await.err().expect("fails");
    assert!(err.as_decoded_error::<PeruriLog::AccessControlUnauthorizedAccount>().is_some(), "{err}");
    let receipt =
        anchorer.anchor(batch, tree.root(), 7, uri.clone()).send().await.unwrap().get_receipt().await.unwrap();
    let event = receipt.decoded_log::<PeruriLog::BatchAnchored>().expect("BatchAnchored");
    assert_eq!((event.batchId, event.root, event.leafCount, event.uri.clone()), (batch, tree.root(), 7, uri.clone()));
    let stored = anchorer.getBatch(batch).call().await.unwrap();
    assert_eq!((stored.root, stored.leafCount, stored.uri), (tree.root(), 7, uri.clone()));

    let err = anchorer.anchor(batch, crate::setup::random_b256(), 1, uri).call().await.err().expect("fails");
    assert!(err.as_decoded_error::<PeruriLog::BatchAlreadyAnchored>().is_some(), "{err}");

    for leaf in &leaves {
        assert!(anchorer.verify(batch, tree.proof(*leaf), *leaf).call().await.unwrap());
    }
    let stranger = StandardMerkleTree::leaf(crate::setup::random_address(), U256::from(1));
    assert!(!anchorer.verify(batch, tree.proof(leaves[0]), stranger).call().await.unwrap());
    assert!(!anchorer.verify(crate::setup::random_b256(), tree.proof(leaves[0]), leaves[0]).call().await.unwrap());
    // A single-leaf batch: the root is the leaf, the proof empty.
    let single = crate::setup::random_b256();
    let one = StandardMerkleTree::new(vec![leaves[0]]);
    anchorer.anchor(single, one.root(), 1, String::new()).send().await.unwrap().get_receipt().await.unwrap();
    assert!(anchorer.verify(single, vec![], leaves[0]).call().await.unwrap());
}

/// `verify` takes a hashed leaf, so an inner node with a shortened proof passes it; `verifyActivity` hashes
/// the activity's values itself, so only a real activity passes, and other values are refused.
#[tokio::test]
async fn plog_verifies_an_activity_from_its_values_and_never_an_inner_node() {
    let env = env_with_roles().await;
    let anchorer = PeruriLog::new(env.deployment.contracts.peruri_log, as_account(&env, 2));
    let activities: Vec<(B256, String, u64)> =
        (1..=4u8).map(|i| (B256::repeat_byte(i), "attendance".to_owned(), 1_700_000_000 + u64::from(i))).collect();
    let leaves: Vec<B256> = activities
        .iter()
        .map(|(id, kind, at)| keccak256(keccak256((*id, kind.clone(), *at).abi_encode_params())))
        .collect();
    let tree = StandardMerkleTree::new(leaves.clone());
    let batch = crate::setup::random_b256();
    anchorer.anchor(batch, tree.root(), 4, String::new()).send().await.unwrap().get_receipt().await.unwrap();

    for ((id, kind, at), leaf) in activities.iter().zip(&leaves) {
        let proof = tree.proof(*leaf);
        assert!(anchorer.verifyActivity(batch, proof.clone(), *id, kind.clone(), *at).call().await.unwrap());
        let other_kind = anchorer.verifyActivity(batch, proof.clone(), *id, "milestone".to_owned(), *at);
        assert!(!other_kind.call().await.unwrap(), "another type");
        assert!(
            !anchorer.verifyActivity(batch, proof, *id, kind.clone(), at + 1).call().await.unwrap(),
            "another time"
        );
    }
    // Four leaves: a leaf's proof is [sibling, uncle]; the pair's node with [uncle] passes bare `verify`.
    let proof = tree.proof(leaves[0]);
    let inner = hash_pair(leaves[0], proof[0]);
    assert!(anchorer.verify(batch, proof[1..].to_vec(), inner).call().await.unwrap(), "the weakness verify has");
    let as_activity = anchorer.verifyActivity(batch, proof[1..].to_vec(), inner, String::new(), 0);
    assert!(!as_activity.call().await.unwrap(), "no activity's values hash to an inner node");
}

/// PTKN, PBADGE and PLOG: the admin is never zero, moves only in two steps after the delay, and can only
/// be renounced the same way; no plain grant or revoke of the admin role.
#[tokio::test]
async fn admin_roles_move_in_two_steps_after_the_delay_and_are_never_zero() {
    let chain = LocalChain::start().await.expect("local chain starts");
    let d: Vec<Address> = chain.dev_accounts().iter().map(|a| a.address()).collect();
    chain.deploy(&DeployConfig::single_operator(d[0])).await.expect("deploys");
    let deployer = chain.provider_with(EthereumWallet::new(chain.dev_accounts()[0].clone()));
    let zero = DeployConfig { admin: Address::ZERO, ..DeployConfig::single_operator(d[1]) };
    for (name, salt, code) in zero.init_codes() {
        if ["PeruriToken", "PeruriBadge", "PeruriLog"].contains(&name) {
            let refused = custody_contracts::deploy::deploy_deterministic(&deployer, name, (salt, U256::ZERO), &code);
            assert!(refused.await.is_err(), "{name} with a zero admin is refused");
            let at = custody_contracts::deploy::create2_address(salt, &code);
            assert!(deployer.get_code_at(at).await.unwrap().is_empty(), "{name}");
        }
    }

    let config = DeployConfig { admin_delay_secs: 3_600, ..DeployConfig::single_operator(d[0]) };
    let env = env_with(chain, config).await;
    let c = env.deployment.contracts;
    for (name, address) in [("PTKN", c.peruri_token), ("PBADGE", c.peruri_badge), ("PLOG", c.peruri_log)] {
        // One ABI for the three: AccessControlDefaultAdminRules is the same code in each.
        let admin = PeruriToken::new(address, as_account(&env, 0));
        let next = PeruriToken::new(address, as_account(&env, 5));
        let role = admin.DEFAULT_ADMIN_ROLE().call().await.unwrap();
        assert_eq!(admin.defaultAdmin().call().await.unwrap(), d[0], "{name}");
        assert_eq!(admin.defaultAdminDelay().call().await.unwrap().to::<u64>(), 3_600, "{name}");
        let err = admin.grantRole(role, d[5]).call().await.err().expect("no plain grant");
        assert!(
            err.as_decoded_error::<PeruriToken::AccessControlEnforcedDefaultAdminRules>().is_some(),
            "{name}: {err}"
        );
        let err = admin.renounceRole(role, d[0]).call().await.err().expect("no renounce without a schedule");
        assert!(
            err.as_decoded_error::<PeruriToken::AccessControlEnforcedDefaultAdminDelay>().is_some(),
            "{name}: {err}"
        );

        admin.beginDefaultAdminTransfer(d[5]).send().await.unwrap().get_receipt().await.unwrap();
        let err = next.acceptDefaultAdminTransfer().call().await.err().expect("not before the delay");
        assert!(
            err.as_decoded_error::<PeruriToken::AccessControlEnforcedDefaultAdminDelay>().is_some(),
            "{name}: {err}"
        );
        let pending = admin.pendingDefaultAdmin().call().await.unwrap();
        assert_eq!(pending.newAdmin, d[5], "{name}");
        env.chain.set_next_block_timestamp(pending.schedule.to::<u64>() + 1).await.unwrap();
        next.acceptDefaultAdminTransfer().send().await.unwrap().get_receipt().await.unwrap();
        assert_eq!(admin.defaultAdmin().call().await.unwrap(), d[5], "{name}");
        assert!(!admin.hasRole(role, d[0]).call().await.unwrap(), "{name}: the old admin is out");
    }
}
