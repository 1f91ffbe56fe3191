//! Signing benchmark: each figure beside its baseline measured in the same run.
//!
//! ```text
//! cargo bench -p custody-signer --bench sign [-- --iters N]
//! ```
//!
//! Baselines are raw `cryptoki` calls on one session with cached handles: C_Sign
//! for signatures, C_GenerateKeyPair + C_WrapKey for key creation. Needs SoftHSM2.

#![allow(clippy::unwrap_used, clippy::print_stdout, unreachable_pub, missing_debug_implementations)]

use std::time::{Duration, Instant};

use alloy_primitives::{B256, keccak256};
use cryptoki::{
    context::{CInitializeArgs, CInitializeFlags, Pkcs11},
    mechanism::Mechanism,
    object::{Attribute, KeyType, ObjectClass},
    session::{Session, UserType},
};
use custody_db::test_utils::{Engine, TestDb};
use custody_signer::{Backend, KeyClass, KeyStore, Keyring, test_utils::TestHsm};
use secrecy::ExposeSecret;

const SECP256K1: [u8; 7] = [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a];

fn digest(i: usize) -> B256 {
    keccak256(i.to_be_bytes())
}

/// Operations per second of `n` runs of `f`.
fn rate(n: usize, mut f: impl FnMut(usize)) -> f64 {
    let start = Instant::now();
    for i in 0..n {
        f(i);
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).saturating_sub(1).min(sorted.len() - 1)]
}

fn raw_session(t: &TestHsm) -> Session {
    // The same module is already initialised by the keyring: this is the raw API on it.
    let ctx = Pkcs11::new(t.softhsm.module()).unwrap();
    let _ = ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    let slot = ctx
        .get_slots_with_initialized_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label() == t.softhsm.label())
        .unwrap();
    let session = ctx.open_rw_session(slot).unwrap();
    let _ = session.login(UserType::User, Some(&t.softhsm.user_pin().expose_secret().to_owned().into()));
    session
}

fn find(session: &Session, class: ObjectClass, label: &str) -> cryptoki::object::ObjectHandle {
    session.find_objects(&[Attribute::Class(class), Attribute::Label(label.as_bytes().to_vec())]).unwrap()[0]
}

fn line(what: &str, ours: f64, base: f64, unit: &str) {
    println!("| {what:<46} | {ours:>10.0} {unit} | {base:>10.0} {unit} | {:>5.2}× |", ours / base);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let iters: usize =
        std::env::args().skip_while(|a| a != "--iters").nth(1).and_then(|n| n.parse().ok()).unwrap_or(2000);
    let t = TestHsm::new().await;
    let db = TestDb::new(Engine::Sqlite).await;
    let ring = Keyring::open(Backend::Pkcs11(t.hsm.clone()), KeyStore::connect(&db.url).await.unwrap()).await.unwrap();
    let infra = ring.create_infra("bench").await.unwrap();
    ring.create_user("warm").await.unwrap();

    let session = raw_session(&t);
    let infra_handle = find(&session, ObjectClass::PRIVATE_KEY, infra.backend_ref.as_deref().unwrap());
    let kek = find(&session, ObjectClass::SECRET_KEY, "kek-v1");

    println!("SoftHSM2 {iters} iterations per figure, {} cores\n", std::thread::available_parallelism().unwrap());
    println!("| {:<46} | {:>15} | {:>15} | ratio |", "path", "ours", "baseline");
    println!("|{:-<48}|{:-<17}|{:-<17}|-------|", "", "", "");

    // 1. Signatures, one at a time.
    let raw_sign = rate(iters, |i| {
        session.sign(&Mechanism::Ecdsa, infra_handle, digest(i).as_slice()).unwrap();
    });
    let infra_signer = ring.signer(KeyClass::Infra, "bench").await.unwrap();
    let start = Instant::now();
    for i in 0..iters {
        infra_signer.sign_digest(&digest(i)).await.unwrap();
    }
    let full_infra = iters as f64 / start.elapsed().as_secs_f64();
    line("infra key: full path vs raw C_Sign", full_infra, raw_sign, "sig/s");

    let user_signer = ring.signer(KeyClass::User, "warm").await.unwrap();
    let start = Instant::now();
    for i in 0..iters {
        user_signer.sign_digest(&digest(i)).await.unwrap();
    }
    let full_user = iters as f64 / start.elapsed().as_secs_f64();
    line("user key, cached unwrap: full path vs C_Sign", full_user, raw_sign, "sig/s");

    // What the check costs: one k256 verification of the same shape.
    let sk = k256::ecdsa::SigningKey::from_bytes(&[7u8; 32].into()).unwrap();
    let sigs: Vec<(B256, k256::ecdsa::Signature)> = (0..iters)
        .map(|i| {
            let d = digest(i);
            (d, k256::ecdsa::signature::hazmat::PrehashSigner::sign_prehash(&sk, d.as_slice()).unwrap())
        })
        .collect();
    let verify = rate(iters, |i| {
        k256::ecdsa::signature::hazmat::PrehashVerifier::verify_prehash(
            sk.verifying_key(),
            sigs[i].0.as_slice(),
            &sigs[i].1,
        )
        .unwrap();
    });
    println!(
        "| {:<46} | {verify:>10.0} op/s  | (reference: the check alone, {:.0} µs) |",
        "k256 verification",
        1e6 / verify
    );

    // 2. Cold unwraps: a different user each time, cache emptied first.
    let cold_n = (iters / 4).max(50);
    let mut users = Vec::with_capacity(cold_n);
    for i in 0..cold_n {
        users.push(ring.create_user(&format!("cold-{i}")).await.unwrap());
    }
    t.hsm.evict_unwrapped().await.unwrap();
    let mut signers = Vec::with_capacity(cold_n);
    for u in &users {
        signers.push(ring.signer_for(u).await.unwrap());
    }
    let start = Instant::now();
    for (i, s) in signers.iter().enumerate() {
        s.sign_digest(&digest(i)).await.unwrap();
    }
    let cold = cold_n as f64 / start.elapsed().as_secs_f64();
    let raw_cold = rate(cold_n, |i| {
        let blob = users[i].wrapped.as_deref().unwrap();
        let template = [
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::KeyType(KeyType::EC),
            Attribute::Token(false),
            Attribute::Sensitive(true),
            Attribute::Sign(true),
        ];
        let h = session.unwrap_key(&Mechanism::AesKeyWrapPad, kek, blob, &template).unwrap();
        session.sign(&Mechanism::Ecdsa, h, digest(i).as_slice()).unwrap();
        session.destroy_object(h).unwrap();
    });
    line("user key, cold: full path vs raw unwrap+sign", cold, raw_cold, "sig/s");
    line("user key, cold: full path vs raw C_Sign", cold, raw_sign, "sig/s");

    // 3. Key creation: generate + wrap + store vs raw generate + wrap.
    let create_n = (iters / 4).max(50);
    let raw_create = rate(create_n, |_| {
        let public = [Attribute::Token(false), Attribute::Verify(true), Attribute::EcParams(SECP256K1.to_vec())];
        let private = [
            Attribute::Token(false),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(true),
            Attribute::Sign(true),
        ];
        let (pubh, privh) = session.generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private).unwrap();
        session.get_attributes(pubh, &[cryptoki::object::AttributeType::EcPoint]).unwrap();
        session.wrap_key(&Mechanism::AesKeyWrapPad, kek, privh).unwrap();
        session.destroy_object(pubh).unwrap();
        session.destroy_object(privh).unwrap();
    });
    let start = Instant::now();
    for i in 0..create_n {
        ring.create_user(&format!("new-{i}")).await.unwrap();
    }
    let create = create_n as f64 / start.elapsed().as_secs_f64();
    line("user key creation (+ store, SQLite) vs raw gen+wrap", create, raw_create, "key/s");
    let start = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..4 {
        let ring = ring.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..create_n / 4 {
                ring.create_user(&format!("par-{task}-{i}")).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let par_create = (create_n / 4 * 4) as f64 / start.elapsed().as_secs_f64();
    line("user key creation, 4 concurrent vs raw gen+wrap", par_create, raw_create, "key/s");

    // 4. Two concurrent signers: throughput and latency percentiles.
    let per_task = iters / 2;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..2usize {
        let signer = if task == 0 { infra_signer.clone() } else { user_signer.clone() };
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_task);
            for i in 0..per_task {
                let t0 = Instant::now();
                signer.sign_digest(&digest(task * per_task + i)).await.unwrap();
                lat.push(t0.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for task in tasks {
        lat.extend(task.await.unwrap());
    }
    let concurrent = lat.len() as f64 / start.elapsed().as_secs_f64();
    line("two concurrent signers vs raw C_Sign (1 thread)", concurrent, raw_sign, "sig/s");
    lat.sort();
    println!(
        "\nlatency with two concurrent signers: p50 {:?}, p99 {:?}, max {:?}",
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        lat[lat.len() - 1]
    );
}
