use std::sync::Arc;

use alloy_primitives::B256;
use cryptoki::object::ObjectClass;
use custody_db::test_utils::Engine;
use custody_signer::{Backend, Error, KeyClass, KeyState, KeyStore, Keyring, test_utils::TestKeyring};

use crate::{assert_signed_by, digest};

#[tokio::test]
async fn infra_key_signs_and_normalises_high_s() {
    let t = TestKeyring::new(Engine::Sqlite).await;
    let record = t.keyring.create_infra("bundler-1").await.unwrap();
    let address = record.address().unwrap();
    let signer = t.keyring.signer(KeyClass::Infra, "bundler-1").await.unwrap();
    assert_eq!(alloy_signer::Signer::address(&signer), address);

    let label = record.backend_ref.clone().unwrap();
    let mut high_from_device = 0;
    for i in 0..200 {
        let d = digest(i);
        // What the device returns, before the core normalises it.
        let raw = t.hsm.hsm.sign_raw(&label, &d).await.unwrap();
        if raw.normalize_s().is_some() {
            high_from_device += 1;
        }
        let sig = signer.sign_digest(&d).await.unwrap();
        assert_signed_by(&sig, &d, address);
    }
    // About half of the device's signatures are high-s; all of ours are low-s.
    assert!(high_from_device > 50, "expected the device to return high-s often, got {high_from_device}/200");
}

#[tokio::test]
async fn user_key_is_wrapped_and_signs_after_cold_unwrap() {
    let t = TestKeyring::new(Engine::Sqlite).await;
    let record = t.keyring.create_user("user-42").await.unwrap();
    let blob = record.wrapped.clone().expect("user keys are stored wrapped");
    assert!((40..=200).contains(&blob.len()), "AES-KWP blob of a secp256k1 key, got {} bytes", blob.len());
    assert_eq!(record.kek_version, Some(1));
    let address = record.address().unwrap();

    // Warm: the session object made at creation.
    let signer = t.keyring.signer(KeyClass::User, "user-42").await.unwrap();
    assert_signed_by(&signer.sign_digest(&digest(1)).await.unwrap(), &digest(1), address);

    // Cold: with the cache emptied (as after a restart) the key is unwrapped from its blob.
    assert_eq!(t.hsm.hsm.evict_unwrapped().await.unwrap(), 1);
    let cold =
        Keyring::open(Backend::Pkcs11(t.hsm.hsm.clone()), KeyStore::connect(&t.db.url).await.unwrap()).await.unwrap();
    let other = cold.create_user("user-43").await.unwrap();
    assert_ne!(other.address(), record.address());
    for i in 0..20 {
        let signer = cold.signer(KeyClass::User, "user-42").await.unwrap();
        assert_signed_by(&signer.sign_digest(&digest(i)).await.unwrap(), &digest(i), address);
    }
}

#[tokio::test]
async fn every_key_class_exists_with_the_right_protection() {
    let t = TestKeyring::new(Engine::Sqlite).await;
    let infra = t.keyring.create_infra("paymaster").await.unwrap();
    for i in 0..5 {
        t.keyring.create_user(&format!("u{i}")).await.unwrap();
    }
    let hsm = &t.hsm.hsm;

    let label = infra.backend_ref.clone().unwrap();
    let facts = hsm.object_facts(ObjectClass::PRIVATE_KEY, &label).await.unwrap();
    assert_eq!(facts.len(), 1);
    let f = &facts[0];
    assert!(f.token && f.sensitive && !f.extractable && !f.value_readable, "infra key facts: {f:?}");

    let kek = hsm.object_facts(ObjectClass::SECRET_KEY, "kek-v1").await.unwrap();
    assert_eq!(kek.len(), 1);
    assert!(kek[0].token && kek[0].sensitive && !kek[0].extractable && !kek[0].value_readable, "KEK: {:?}", kek[0]);
    let hmac = hsm.object_facts(ObjectClass::SECRET_KEY, "pseudonym-v1").await.unwrap();
    assert!(hmac[0].sensitive && !hmac[0].extractable && !hmac[0].value_readable);

    // No user private key is a persistent token object: only the infrastructure key is.
    let persistent = hsm.token_private_key_labels().await.unwrap();
    assert_eq!(persistent, vec![label]);

    // Pseudonyms: deterministic per input, different across inputs, 32 bytes.
    let a = t.keyring.pseudonym(b"user-1").await.unwrap();
    assert_eq!(a, t.keyring.pseudonym(b"user-1").await.unwrap());
    assert_ne!(a, t.keyring.pseudonym(b"user-2").await.unwrap());
}

#[tokio::test]
async fn blob_is_useless_without_its_kek_and_corruption_is_a_clear_error() {
    let t = TestKeyring::new(Engine::Sqlite).await;
    let record = t.keyring.create_user("alice").await.unwrap();
    let blob = record.wrapped.clone().unwrap();
    let hsm = t.hsm.hsm.clone();
    let public = record.public_key.unwrap();
    let sign_with = |blob: Vec<u8>, kek: &'static str, id: &'static str| {
        let key = custody_signer::WrappedKey::new(hsm.clone(), id, kek, &blob, public);
        custody_signer::EthSigner::new(Arc::new(key), id, KeyClass::User)
    };

    // Under another KEK the blob does not unwrap.
    hsm.ensure_kek("kek-other").await.unwrap();
    let err = sign_with(blob.clone(), "kek-other", "k1").sign_digest(&digest(0)).await.unwrap_err();
    assert!(matches!(err, Error::Unwrap { .. }), "got {err:?}");

    // A flipped bit is detected by the key wrap's integrity check.
    let mut corrupt = blob.clone();
    corrupt[10] ^= 1;
    let err = sign_with(corrupt, "kek-v1", "k2").sign_digest(&digest(0)).await.unwrap_err();
    assert!(matches!(err, Error::Unwrap { .. }), "got {err:?}");
    assert!(err.to_string().contains("corrupt"), "message names the cause: {err}");

    // A truncated blob too.
    let err = sign_with(blob[..blob.len() - 8].to_vec(), "kek-v1", "k3").sign_digest(&digest(0)).await.unwrap_err();
    assert!(matches!(err, Error::Unwrap { .. }), "got {err:?}");

    // The intact blob still works.
    let sig = sign_with(blob, "kek-v1", "k4").sign_digest(&digest(0)).await.unwrap();
    assert_signed_by(&sig, &digest(0), record.address().unwrap());
}

#[tokio::test]
async fn kek_rotation_rewraps_every_blob_and_keeps_addresses() {
    let t = TestKeyring::new(Engine::Sqlite).await;
    let mut users = Vec::new();
    for i in 0..30 {
        users.push(t.keyring.create_user(&format!("user-{i}")).await.unwrap());
    }
    let (version, rewrapped) = t.keyring.rotate_kek().await.unwrap();
    assert_eq!((version, rewrapped), (2, 30));
    assert_eq!(t.keyring.current_kek().await.unwrap(), 2);
    // Idempotent: running again creates KEK v3 and re-wraps again, never loses a key.
    for user in &users {
        let stored = t.keyring.store().active(KeyClass::User, &user.name).await.unwrap().unwrap();
        assert_eq!(stored.kek_version, Some(2));
        assert_ne!(stored.wrapped, user.wrapped);
        let signer = t.keyring.signer_for(&stored).await.unwrap();
        let d = digest(7);
        assert_signed_by(&signer.sign_digest(&d).await.unwrap(), &d, user.address().unwrap());
    }
    let keks = t.keyring.list(Some(KeyClass::Kek)).await.unwrap();
    let states: Vec<_> = keks.iter().map(|k| (k.version, k.state)).collect();
    assert!(states.contains(&(1, KeyState::Retired)) && states.contains(&(2, KeyState::Active)), "{states:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_signing_from_many_tasks() {
    let t = TestKeyring::new(Engine::Sqlite).await;
    t.keyring.create_infra("issuer").await.unwrap();
    for i in 0..8 {
        t.keyring.create_user(&format!("c{i}")).await.unwrap();
    }
    let mut tasks = Vec::new();
    for task in 0..32u64 {
        let ring = t.keyring.clone();
        tasks.push(tokio::spawn(async move {
            let (class, name) = if task % 2 == 0 {
                (KeyClass::Infra, "issuer".to_owned())
            } else {
                (KeyClass::User, format!("c{}", task % 8))
            };
            let signer = ring.signer(class, &name).await.unwrap();
            let address = alloy_signer::Signer::address(&signer);
            for i in 0..25 {
                let d = digest(task * 1000 + i);
                assert_signed_by(&signer.sign_digest(&d).await.unwrap(), &d, address);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test]
#[allow(unsafe_code)]
async fn a_lost_session_recovers() {
    let t = TestKeyring::new(Engine::Sqlite).await;
    let infra = t.keyring.create_infra("anchor").await.unwrap();
    let user = t.keyring.create_user("bob").await.unwrap();
    let infra_signer = t.keyring.signer(KeyClass::Infra, "anchor").await.unwrap();
    let user_signer = t.keyring.signer(KeyClass::User, "bob").await.unwrap();
    let d = digest(1);
    infra_signer.sign_digest(&d).await.unwrap();
    user_signer.sign_digest(&d).await.unwrap();

    // Close every session of this application behind the pool's back, as a
    // device reset would (C_CloseAllSessions through the module's own entry point).
    let module = t.hsm.softhsm.module().to_path_buf();
    let slot = t.hsm.hsm.slot_id();
    unsafe {
        let lib = cryptoki_sys::Pkcs11::new(module).unwrap();
        let rv = lib.C_CloseAllSessions(slot as cryptoki_sys::CK_SLOT_ID);
        assert_eq!(rv, cryptoki_sys::CKR_OK);
    }

    // Both key kinds sign again: the pool reopens, logs in, and re-unwraps.
    let d = digest(2);
    assert_signed_by(&infra_signer.sign_digest(&d).await.unwrap(), &d, infra.address().unwrap());
    assert_signed_by(&user_signer.sign_digest(&d).await.unwrap(), &d, user.address().unwrap());
}

#[tokio::test]
async fn a_signature_from_the_wrong_key_is_withheld() {
    let t = TestKeyring::new(Engine::Sqlite).await;
    let a = t.keyring.create_infra("a").await.unwrap();
    let b = t.keyring.create_infra("b").await.unwrap();
    // Key a's HSM object, but b's public key: the device's answer cannot verify.
    let key =
        custody_signer::TokenKey::new(t.hsm.hsm.clone(), a.backend_ref.as_deref().unwrap(), b.public_key.unwrap());
    let signer = custody_signer::EthSigner::new(Arc::new(key), &b.id, KeyClass::Infra);
    let err = signer.sign_digest(&B256::repeat_byte(9)).await.unwrap_err();
    assert!(matches!(err, Error::SignatureMismatch { backend: "pkcs11", .. }), "got {err:?}");
}
