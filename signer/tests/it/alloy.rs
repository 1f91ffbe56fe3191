//! HSM keys as alloy wallets: EIP-191, EIP-712 and transactions.

use alloy_consensus::{SignableTransaction, TxEip1559, TxLegacy, transaction::RlpEcdsaDecodableTx};
use alloy_network::TxSigner;
use alloy_primitives::{Address, TxKind, U256, address, bytes, eip191_hash_message};
use alloy_signer::Signer;
use alloy_sol_types::{Eip712Domain, SolStruct, eip712_domain, sol};
use custody_db::test_utils::Engine;
use custody_signer::{KeyClass, test_utils::TestKeyring};

use crate::assert_signed_by;

sol! {
    #[derive(Debug)]
    struct Mail {
        address to;
        string contents;
        uint256 nonce;
    }
}

fn domain() -> Eip712Domain {
    eip712_domain! {
        name: "Peruri",
        version: "1",
        chain_id: 1337,
        verifying_contract: address!("0x0000000071727De22E5E9d8BAf0edAc6f37da032"),
    }
}

#[tokio::test]
async fn eip191_and_eip712_recover_to_the_key() {
    let t = TestKeyring::new(Engine::Sqlite).await;
    t.keyring.create_user("u").await.unwrap();
    let signer = t.keyring.signer(KeyClass::User, "u").await.unwrap();
    let address = signer.address();

    let msg = b"peruri custody";
    let sig = signer.sign_message(msg).await.unwrap();
    assert_eq!(sig.recover_address_from_msg(msg).unwrap(), address);
    assert_signed_by(&sig, &eip191_hash_message(msg), address);

    let mail = Mail { to: Address::repeat_byte(1), contents: "hello".into(), nonce: U256::from(7) };
    let sig = signer.sign_typed_data(&mail, &domain()).await.unwrap();
    assert_signed_by(&sig, &mail.eip712_signing_hash(&domain()), address);
}

#[tokio::test]
async fn transactions_decode_and_recover_to_the_key() {
    let t = TestKeyring::new(Engine::Sqlite).await;
    t.keyring.create_infra("bundler").await.unwrap();
    let signer = t.keyring.signer(KeyClass::Infra, "bundler").await.unwrap().with_chain_id(Some(1337));
    let from = signer.address();

    let mut legacy = TxLegacy {
        chain_id: Some(1337),
        nonce: 3,
        gas_price: 0,
        gas_limit: 21_000,
        to: TxKind::Call(Address::repeat_byte(2)),
        value: U256::from(1),
        input: bytes!("c0ffee"),
    };
    let sig = signer.sign_transaction(&mut legacy).await.unwrap();
    let encoded = legacy.into_signed(sig);
    let mut buf = Vec::new();
    encoded.rlp_encode(&mut buf);
    let decoded = TxLegacy::rlp_decode_signed(&mut buf.as_slice()).unwrap();
    assert_eq!(decoded.recover_signer().unwrap(), from);
    assert_eq!(decoded.tx().chain_id, Some(1337));

    let mut eip1559 = TxEip1559 {
        chain_id: 1337,
        nonce: 4,
        gas_limit: 100_000,
        max_fee_per_gas: 0,
        max_priority_fee_per_gas: 0,
        to: TxKind::Call(Address::repeat_byte(3)),
        value: U256::ZERO,
        access_list: Default::default(),
        input: bytes!("12345678"),
    };
    let sig = signer.sign_transaction(&mut eip1559).await.unwrap();
    let signed = eip1559.into_signed(sig);
    let mut buf = Vec::new();
    signed.rlp_encode(&mut buf);
    let decoded = TxEip1559::rlp_decode_signed(&mut buf.as_slice()).unwrap();
    assert_eq!(decoded.recover_signer().unwrap(), from);

    // A transaction for another chain is refused, not signed.
    let mut other = TxEip1559 { chain_id: 1, ..decoded.tx().clone() };
    assert!(signer.sign_transaction(&mut other).await.is_err());
}
