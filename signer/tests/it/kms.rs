//! The AWS KMS backend against the moto server.

use custody_db::test_utils::{Engine, TestDb};
use custody_signer::{Backend, Error, KeyBackend, KeyClass, KeyStore, Keyring, test_utils::MotoKms};

use crate::{assert_signed_by, digest};

async fn keyring(moto: &MotoKms) -> (Keyring, TestDb) {
    let db = TestDb::new(Engine::Sqlite).await;
    let ring =
        Keyring::open(Backend::Kms(moto.client().await), KeyStore::connect(&db.url).await.unwrap()).await.unwrap();
    (ring, db)
}

#[tokio::test]
async fn kms_keys_sign_with_low_s_and_recover() {
    let moto = MotoKms::start();
    let (ring, _db) = keyring(&moto).await;
    let infra = ring.create_infra("paymaster").await.unwrap();
    let user = ring.create_user("kms-user").await.unwrap();
    assert!(infra.backend_ref.is_some() && infra.wrapped.is_none());

    let kms = moto.client().await;
    let raw_key = kms.key(infra.backend_ref.as_deref().unwrap()).await.unwrap();
    let mut high = 0;
    let signer = ring.signer(KeyClass::Infra, "paymaster").await.unwrap();
    for i in 0..60 {
        let d = digest(i);
        // The DER signature KMS returns, before normalisation.
        if raw_key.sign_digest(&d).await.unwrap().normalize_s().is_some() {
            high += 1;
        }
        assert_signed_by(&signer.sign_digest(&d).await.unwrap(), &d, infra.address().unwrap());
    }
    assert!(high > 5, "KMS returns high-s signatures too ({high}/60)");

    let signer = ring.signer(KeyClass::User, "kms-user").await.unwrap();
    assert_signed_by(&signer.sign_digest(&digest(1)).await.unwrap(), &digest(1), user.address().unwrap());
}

#[tokio::test]
async fn a_key_of_the_wrong_spec_is_refused() {
    let moto = MotoKms::start();
    let kms = moto.client().await;
    let sdk = aws_sdk_kms::Client::new(
        &aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&moto.url)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_kms::config::Credentials::new("testing", "testing", None, None, "test"))
            .load()
            .await,
    );
    let p256 = sdk
        .create_key()
        .key_spec(aws_sdk_kms::types::KeySpec::EccNistP256)
        .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
        .send()
        .await
        .unwrap();
    let id = p256.key_metadata().unwrap().key_id().to_owned();
    let err = kms.key(&id).await.unwrap_err();
    assert!(matches!(&err, Error::KmsKeySpec { spec, .. } if spec == "ECC_NIST_P256"), "{err:?}");

    let err = kms.key("00000000-0000-0000-0000-000000000000").await.unwrap_err();
    assert!(matches!(err, Error::Kms { op: "GetPublicKey", .. }), "{err:?}");
}

#[tokio::test]
async fn a_backend_that_signs_the_wrong_message_is_caught() {
    // Stock moto ignores MessageType=DIGEST and signs SHA-256(digest): every
    // signature it returns is valid ECDSA, but not over our digest.
    let moto = MotoKms::start_stock();
    let (ring, _db) = keyring(&moto).await;
    ring.create_infra("anchor").await.unwrap();
    let signer = ring.signer(KeyClass::Infra, "anchor").await.unwrap();
    let err = signer.sign_digest(&digest(3)).await.unwrap_err();
    assert!(matches!(err, Error::SignatureMismatch { backend: "kms", .. }), "{err:?}");
}
