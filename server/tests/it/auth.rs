//! Authentication and authorisation: JWT negatives and the role matrix.

use base64::Engine as _;
use custody_db::test_utils::Engine;
use serde_json::json;

use crate::service::{Service, claims, token, token_with};

fn b64(v: &serde_json::Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test]
async fn jwt_negatives_are_refused_with_401() {
    let s = Service::start(Engine::Sqlite).await;
    let path = "/v1/admin/audit";
    let (status, body) = s.get(path, None).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthorized");

    let good = claims("auditor-1", &["auditor"]);
    // alg none: an unsigned token.
    let none = format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(&good));
    // HS256 "signed" with the ES256 public key as the HMAC secret (key confusion).
    let public = std::fs::read(crate::service::key_path("es256-public.pem")).unwrap();
    let confused = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &good,
        &jsonwebtoken::EncodingKey::from_secret(&public),
    )
    .unwrap();
    let mut expired = good.clone();
    expired["exp"] = json!(1_000_000);
    expired["nbf"] = json!(999_000);
    let mut early = good.clone();
    early["nbf"] = json!(good["iat"].as_i64().unwrap() + 3600);
    let mut wrong_iss = good.clone();
    wrong_iss["iss"] = json!("https://evil.test");
    let mut wrong_aud = good.clone();
    wrong_aud["aud"] = json!("someone-else");
    let mut no_exp = good.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    // Signed by the ES256 key but claiming the RSA key's kid.
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("rs".into());
    let wrong_kid = jsonwebtoken::encode(
        &header,
        &good,
        &jsonwebtoken::EncodingKey::from_ec_pem(&std::fs::read(crate::service::key_path("es256-private.pem")).unwrap())
            .unwrap(),
    )
    .unwrap();
    let tampered = {
        let t = token_with("es", &good);
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        parts[1] = b64(&claims("auditor-1", &["auditor", "officer"]));
        parts.join(".")
    };

    for (name, token, expect) in [
        ("alg none", none, "malformed"),
        ("HS256 with the public key", confused, "not accepted"),
        ("expired", token_with("es", &expired), "expired"),
        ("not yet valid", token_with("es", &early), "not yet valid"),
        ("wrong issuer", token_with("es", &wrong_iss), "issuer"),
        ("wrong audience", token_with("es", &wrong_aud), "audience"),
        ("no exp", token_with("es", &no_exp), "claim"),
        ("kid of another key", wrong_kid, "not accepted"),
        ("tampered payload", tampered, "signature"),
        ("garbage", "abc.def.ghi".to_owned(), "malformed"),
    ] {
        let (status, body) = s.get(path, Some(&token)).await;
        assert_eq!(status, 401, "{name}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(expect), "{name}: {message}");
    }
    // The three accepted families.
    for kid in ["es", "rs", "ed"] {
        let (status, body) = s.get(path, Some(&token_with(kid, &good))).await;
        assert_eq!(status, 200, "{kid}: {body}");
    }
}

#[tokio::test]
async fn role_matrix_for_the_audit_trail() {
    let s = Service::start(Engine::Sqlite).await;
    for (roles, expected) in [
        (vec!["auditor"], 200),
        (vec!["app"], 403),
        (vec!["officer"], 403),
        (vec!["user"], 403),
        (vec![], 403),
        (vec!["app", "auditor"], 200),
    ] {
        let (status, body) = s.get("/v1/admin/audit", Some(&token("x", &roles))).await;
        assert_eq!(status, expected, "{roles:?}: {body}");
        if expected == 403 {
            assert_eq!(body["error"]["code"], "forbidden");
        }
    }
    let (status, body) = s.get("/v1/admin/audit?limit=0", Some(&token("x", &["auditor"]))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_query")));
    let (status, body) = s.get("/v1/admin/audit?bogus=1", Some(&token("x", &["auditor"]))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_query")));
}

#[tokio::test]
async fn health_readiness_metrics_and_unknown_paths() {
    let s = Service::start(Engine::Sqlite).await;
    assert_eq!(s.get("/healthz", None).await, (200, json!({"status": "ok"})));
    let (status, body) = s.get("/readyz", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"], json!({"database": "ok", "hsm": "ok", "chain": "ok"}));
    let metrics = s.http.get(format!("{}/metrics", s.url)).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    let (status, body) = s.get("/nope", None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
    let resp = s.http.get(format!("{}/healthz", s.url)).send().await.unwrap();
    assert_eq!(resp.headers()["x-request-id"].len(), 32, "every answer carries a request id");
    s.stop();
}
