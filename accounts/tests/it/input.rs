//! Bad input: a clear typed error, nothing changed.

use custody_accounts::{Did, Error, MAX_USER_ID_CHARS};
use custody_db::test_utils::Engine;

use crate::setup::env;

async fn bad_user_ids_change_nothing(engine: Engine) {
    let env = env(engine).await;
    let long = "x".repeat(MAX_USER_ID_CHARS + 1);
    let cases = [
        ("", "empty"),
        (long.as_str(), "longer than 256"),
        ("alice\n", "control character"),
        ("al\0ice", "control character"),
        ("\u{1b}[31m", "control character"),
    ];
    for (user_id, reason) in cases {
        for result in [env.wallets.create(user_id).await.map(|_| ()), env.wallets.get(user_id).await.map(|_| ())] {
            match result {
                Err(error @ Error::InvalidUserId(_)) => {
                    let message = error.to_string();
                    assert!(message.contains(reason), "{user_id:?}: {message}");
                    assert!(user_id.is_empty() || !message.contains(user_id), "the user id is not echoed");
                }
                other => panic!("{user_id:?} gave {other:?}"),
            }
        }
    }
    assert!(env.user_keys().await.is_empty(), "no key was made");
    assert_eq!(env.rows().await, 0, "no row was written");

    // The longest valid id is accepted.
    let longest = "y".repeat(MAX_USER_ID_CHARS);
    assert!(env.wallets.create(&longest).await.unwrap().1);
}

custody_db::on_each_engine!(bad_user_ids_change_nothing: bad_user_ids_change_nothing_sqlite, bad_user_ids_change_nothing_postgres);

#[test]
fn malformed_dids_are_rejected() {
    for bad in [
        "",
        "did:peruri",
        "did:peruri:",
        "did:example:123456789abcdefghi",
        "did:peruri:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "did:peruri:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "did:peruri:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "did:peruri:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1",
        "did:peruri:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa#controller",
        "did:peruri:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa%20",
    ] {
        assert!(matches!(bad.parse::<Did>(), Err(Error::MalformedDid(_))), "{bad:?} is rejected");
    }
    assert!("did:peruri:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".parse::<Did>().is_ok());
}
