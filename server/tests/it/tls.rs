//! HTTPS with mutual TLS: a client without a certificate from the client CA is
//! refused at the handshake and never reaches the router.

use std::{path::Path, sync::Arc};

use custody_db::test_utils::Engine;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

use crate::service::Service;

/// A CA, and certificates it signs (PEM cert, PEM key).
struct Ca(CertifiedIssuer<'static, KeyPair>);

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        Self(CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap())
    }

    fn issue(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
        (params.signed_by(&key, &self.0).unwrap().pem(), key.serialize_pem())
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// GET `path` over TLS, presenting `identity` if given; the whole response, or the error.
async fn tls_get(
    port: u16,
    path: &str,
    server_ca: &str,
    identity: Option<&(String, String)>,
) -> Result<String, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(server_ca.as_bytes()).unwrap()).unwrap();
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = TlsConnector::from(Arc::new(config)).connect(name, tcp).await.map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    tls.read_to_end(&mut response).await.map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&response).into_owned();
    if text.starts_with("HTTP/") { Ok(text) } else { Err(format!("no HTTP answer: {text:?}")) }
}

/// The status line of GET /healthz over TLS.
async fn get_healthz(port: u16, server_ca: &str, identity: Option<&(String, String)>) -> Result<String, String> {
    let response = tls_get(port, "/healthz", server_ca, identity).await?;
    Ok(response.lines().next().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn mutual_tls_required_refuses_clients_without_a_ca_issued_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (server_ca, client_ca, rogue_ca) = (Ca::new("server CA"), Ca::new("client CA"), Ca::new("rogue CA"));
    let (cert, key) = server_ca.issue(&["localhost", "127.0.0.1"]);
    let extra = format!(
        "[server.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\nclient_ca_file = \"{}\"\n",
        write(dir.path(), "server.pem", &cert),
        write(dir.path(), "server.key", &key),
        write(dir.path(), "client-ca.pem", &client_ca.0.pem()),
    );
    let s = Service::start_with(Engine::Sqlite, &extra).await;
    let port: u16 = s.url.rsplit(':').next().unwrap().parse().unwrap();
    let server_ca_pem = server_ca.0.pem();

    let good = client_ca.issue(&["backend.app.test"]);
    assert_eq!(get_healthz(port, &server_ca_pem, Some(&good)).await.as_deref(), Ok("HTTP/1.1 200 OK"));

    let refused = get_healthz(port, &server_ca_pem, None).await;
    assert!(refused.is_err(), "no client certificate must be refused: {refused:?}");
    let rogue = rogue_ca.issue(&["backend.app.test"]);
    let refused = get_healthz(port, &server_ca_pem, Some(&rogue)).await;
    assert!(refused.is_err(), "a certificate from another CA must be refused: {refused:?}");

    // Plain HTTP to the TLS port gets no HTTP answer either.
    let plain = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());

    // The refusals are counted.
    let metrics = tls_get(port, "/metrics", &server_ca_pem, Some(&good)).await.unwrap();
    assert!(metrics.contains("custody_tls_handshake_failures_total"), "{metrics}");
    s.stop();
}

#[tokio::test]
async fn a_missing_certificate_file_refuses_to_start() {
    let s = Service::start(Engine::Sqlite).await;
    let bad = s.config.with_file_name("bad.toml");
    let text = std::fs::read_to_string(&s.config).unwrap()
        + "\n[server.tls]\ncert_file = \"/nonexistent/server.pem\"\nkey_file = \"/nonexistent/server.key\"\n";
    std::fs::write(&bad, text).unwrap();
    let out = s.cli(&["--config", bad.to_str().unwrap(), "serve"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("server.tls") && stderr.contains("/nonexistent/server.pem"), "{stderr}");
    s.stop();
}
