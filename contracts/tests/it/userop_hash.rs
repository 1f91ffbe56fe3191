//! Differential: the userOpHash computed in Rust equals `EntryPoint.getUserOpHash`, v0.7 and v0.8.

use alloy::primitives::{Address, Bytes, U256};
use custody_contracts::deploy::deploy_entry_points;
use custody_contracts::test_utils::{LocalChain, LocalChainConfig};
use custody_contracts::{EntryPointVersion, IEntryPoint, PackedUserOperation, UserOperation};
use rand::Rng;

fn random_bytes(rng: &mut impl Rng, max: usize) -> Bytes {
    let len = rng.gen_range(0..=max);
    (0..len).map(|_| rng.r#gen::<u8>()).collect::<Vec<u8>>().into()
}

fn random_op(rng: &mut impl Rng) -> PackedUserOperation {
    let init_code = if rng.gen_bool(0.5) { Bytes::new() } else { random_bytes(rng, 200) };
    // Avoid the v0.8 EIP-7702 marker (its hash depends on the sender's delegation).
    let init_code =
        if init_code.len() >= 2 && init_code[0] == 0x77 && init_code[1] == 0x02 { Bytes::new() } else { init_code };
    PackedUserOperation {
        sender: crate::setup::random_address(),
        nonce: U256::from_be_bytes(rng.r#gen::<[u8; 32]>()),
        initCode: init_code,
        callData: random_bytes(rng, 300),
        accountGasLimits: crate::setup::random_b256(),
        preVerificationGas: U256::from_be_bytes(rng.r#gen::<[u8; 32]>()),
        gasFees: crate::setup::random_b256(),
        paymasterAndData: random_bytes(rng, 150),
        signature: random_bytes(rng, 100),
    }
}

#[tokio::test]
async fn rust_user_op_hash_equals_entry_point() {
    // A chain id other than the default, so that the chain id really is hashed.
    let chain = LocalChain::start_with(LocalChainConfig { chain_id: 80_001, ..Default::default() })
        .await
        .expect("local chain starts");
    let provider = chain.provider();
    deploy_entry_points(&provider).await.expect("EntryPoints deploy");
    let mut rng = rand::thread_rng();
    let mut ops: Vec<PackedUserOperation> = (0..100).map(|_| random_op(&mut rng)).collect();
    // And a realistic one, through the JSON form.
    let json = serde_json::json!({
        "sender": "0x1111111111111111111111111111111111111111",
        "nonce": "0x1",
        "factory": "0x2222222222222222222222222222222222222222",
        "factoryData": "0xdeadbeef",
        "callData": "0xb61d27f6",
        "callGasLimit": "0x186a0",
        "verificationGasLimit": "0x30d40",
        "preVerificationGas": "0xc350",
        "maxFeePerGas": "0x0",
        "maxPriorityFeePerGas": "0x0",
        "signature": "0x"
    });
    ops.push(serde_json::from_value::<UserOperation>(json).unwrap().pack().unwrap());
    for version in EntryPointVersion::ALL {
        let entry_point = IEntryPoint::new(version.address(), provider.clone());
        for (i, op) in ops.iter().enumerate() {
            let onchain = entry_point.getUserOpHash(op.clone()).call().await.expect("getUserOpHash");
            let offline = op.hash(version, version.address(), chain.chain_id());
            assert_eq!(offline, onchain, "{version} op {i}: {op:?}");
            // The hash binds the chain and the EntryPoint.
            assert_ne!(op.hash(version, version.address(), 1), onchain);
            assert_ne!(op.hash(version, Address::ZERO, chain.chain_id()), onchain);
        }
    }
}
