//! Bad input gives a typed, clear error, never a panic, and changes nothing.

use custody_db::test_utils::Engine;
use custody_signer::{
    Error, Hsm, KeyClass, Pkcs11Config,
    test_utils::{TestHsm, TestKeyring},
};
use secrecy::{ExposeSecret, SecretString};

#[tokio::test]
async fn unknown_key_and_wrong_digest_length() {
    let t = TestKeyring::new(Engine::Sqlite).await;
    let err = t.keyring.signer(KeyClass::Infra, "nope").await.unwrap_err();
    assert!(matches!(err, Error::KeyNotFound(_)), "{err:?}");
    let err = t.keyring.signer(KeyClass::User, "secret-user-id").await.unwrap_err();
    assert!(!err.to_string().contains("secret-user-id"), "user ids are not echoed: {err}");

    t.keyring.create_infra("k").await.unwrap();
    let signer = t.keyring.signer(KeyClass::Infra, "k").await.unwrap();
    for len in [0, 31, 33, 64] {
        let err = signer.sign_digest_slice(&vec![1u8; len]).await.unwrap_err();
        assert!(matches!(err, Error::DigestLength(l) if l == len), "{err:?}");
    }
    // Duplicate creation is refused and leaves one key.
    assert!(matches!(t.keyring.create_infra("k").await.unwrap_err(), Error::KeyExists(_)));
    t.keyring.create_user("u").await.unwrap();
    assert!(matches!(t.keyring.create_user("u").await.unwrap_err(), Error::KeyExists(_)));
    assert_eq!(t.keyring.list(Some(KeyClass::Infra)).await.unwrap().len(), 1);
    assert_eq!(t.keyring.list(Some(KeyClass::User)).await.unwrap().len(), 1);
    assert_eq!(t.hsm.hsm.token_private_key_labels().await.unwrap().len(), 1);
}

#[tokio::test]
async fn wrong_pin_is_refused_at_connect() {
    // The first login of the process: a logged-in token would accept any session.
    let softhsm = custody_signer::test_utils::SoftHsm::fresh("pin-test").unwrap();
    softhsm.activate();
    let mut config = TestHsm::config_for(&softhsm);
    let right = config.pin.expose_secret().to_owned();
    config.pin = SecretString::from("000000");
    let err = Hsm::connect(config).await.unwrap_err();
    assert!(matches!(err, Error::PinIncorrect), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(!text.contains("000000") && !text.contains(&right), "PINs never appear in errors: {text}");
}

#[tokio::test]
async fn missing_module_and_unknown_token() {
    let err = Hsm::connect(Pkcs11Config::new("/nonexistent/libsofthsm2.so", "t", "1234".into())).await.unwrap_err();
    assert!(matches!(err, Error::ModuleMissing(_)), "{err:?}");
    assert!(err.to_string().contains("apt-get install softhsm2"), "{err}");

    let t = TestHsm::new().await;
    let mut config = TestHsm::config_for(&t.softhsm);
    config.token_label = "no-such-token".into();
    assert!(matches!(Hsm::connect(config).await.unwrap_err(), Error::TokenNotFound(_)));
}

#[tokio::test]
async fn corrupted_rows_are_typed_errors() {
    let t = TestKeyring::new(Engine::Sqlite).await;
    let user = t.keyring.create_user("victim").await.unwrap();
    let pool = t.keyring.store().pool().clone();

    // An address that does not match the stored public key.
    sqlx::query("UPDATE keys SET address = '0x000000000000000000000000000000000000dEaD' WHERE id = $1")
        .bind(&user.id)
        .execute(&pool)
        .await
        .unwrap();
    let err = t.keyring.signer(KeyClass::User, "victim").await.unwrap_err();
    assert!(matches!(err, Error::CorruptRow { what, .. } if what.starts_with("address")), "{err:?}");

    // A public key that is not a curve point.
    sqlx::query("UPDATE keys SET address = NULL, public_key = $1 WHERE id = $2")
        .bind(vec![4u8; 65])
        .bind(&user.id)
        .execute(&pool)
        .await
        .unwrap();
    let err = t.keyring.signer(KeyClass::User, "victim").await.unwrap_err();
    assert!(matches!(err, Error::CorruptRow { what: "public_key", .. }), "{err:?}");

    // A wrapped blob that was tampered with.
    let other = t.keyring.create_user("other").await.unwrap();
    let mut blob = other.wrapped.clone().unwrap();
    blob[5] ^= 0xff;
    sqlx::query("UPDATE keys SET wrapped = $1 WHERE id = $2").bind(blob).bind(&other.id).execute(&pool).await.unwrap();
    // The key made at creation is still unwrapped in the cache; a restart would empty it.
    assert!(t.hsm.hsm.evict_unwrapped().await.unwrap() >= 1);
    let signer = t.keyring.signer(KeyClass::User, "other").await.unwrap();
    let err = signer.sign_digest(&crate::digest(1)).await.unwrap_err();
    assert!(matches!(err, Error::Unwrap { .. }), "{err:?}");
}
