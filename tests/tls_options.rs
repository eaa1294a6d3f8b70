//! TLS options over real wss:// connections: expired and wrong-host certificates, the server
//! name (SNI + verification) override, the host-name-only switch, mutual TLS against an
//! OpenSSL server that demands a client certificate, CAs from memory, and bad inputs refused
//! at the setters. Every certificate is generated here by rcgen.

mod common;

use common::*;
use openssl::pkey::PKey;
use openssl::ssl::{NameType, SslAcceptor, SslMethod, SslVerifyMode};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::X509;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::ffi::c_char;
use std::ptr::null;
use std::sync::Arc;
use std::time::Duration;
use wsclient::ffi::tls_options::*;

// ------------------------------------------------------------------------------------------
// Certificates
// ------------------------------------------------------------------------------------------

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Ca {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(p, key),
    }
}

struct Leaf {
    cert_pem: String,
    key_pem: String,
}

#[derive(Clone, Copy, PartialEq)]
enum Use {
    Server,
    Client,
}

fn leaf(ca: &Ca, cn: &str, sans: &[&str], usage: Use, expired: bool) -> Leaf {
    let mut p =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.use_authority_key_identifier_extension = true;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![match usage {
        Use::Server => ExtendedKeyUsagePurpose::ServerAuth,
        Use::Client => ExtendedKeyUsagePurpose::ClientAuth,
    }];
    if expired {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &ca.issuer).unwrap();
    Leaf {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

fn write_temp(name: &str, text: &str) -> String {
    let p = temp_path(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}

// ------------------------------------------------------------------------------------------
// An OpenSSL wss echo server that records SNI and the client certificate it saw
// ------------------------------------------------------------------------------------------

struct TlsServer {
    raw: RawServer,
    log: Arc<ServerLog>,
}

impl TlsServer {
    /// `client_ca`: demand a client certificate signed by it (handshake fails without one).
    fn start(server: &Leaf, client_ca: Option<&Ca>) -> TlsServer {
        let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
        b.set_private_key(&PKey::private_key_from_pem(server.key_pem.as_bytes()).unwrap())
            .unwrap();
        b.set_certificate(&X509::from_pem(server.cert_pem.as_bytes()).unwrap())
            .unwrap();
        if let Some(ca) = client_ca {
            let ca = X509::from_pem(ca.pem.as_bytes()).unwrap();
            let mut store = X509StoreBuilder::new().unwrap();
            store.add_cert(ca.clone()).unwrap();
            b.set_verify_cert_store(store.build()).unwrap();
            b.add_client_ca(&ca).unwrap();
            b.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
        }
        let acceptor = Arc::new(b.build());
        let log = Arc::new(ServerLog::default());
        let log2 = Arc::clone(&log);
        let raw = RawServer::start(move |tcp| {
            let tls = match acceptor.accept(tcp) {
                Ok(s) => s,
                Err(e) => return log2.update(|d| d.tls_errors.push(e.to_string())),
            };
            let sni = tls.ssl().servername(NameType::HOST_NAME).map(str::to_owned);
            let peer = tls.ssl().peer_certificate().map(|c| {
                c.subject_name()
                    .entries()
                    .map(|e| e.data().to_string().unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join(",")
            });
            log2.update(|d| {
                d.notes.push(format!(
                    "sni={sni:?} peer={}",
                    peer.as_deref().unwrap_or("-")
                ))
            });
            let stream: Box<dyn Stream> = Box::new(tls);
            match tungstenite::accept(stream) {
                Ok(ws) => echo_loop(ws, &log2),
                Err(e) => log2.update(|d| d.tls_errors.push(format!("ws: {e}"))),
            }
        });
        TlsServer { raw, log }
    }

    fn url(&self) -> String {
        format!("wss://127.0.0.1:{}/", self.raw.port)
    }

    fn url_host(&self, host: &str) -> String {
        format!("wss://{host}:{}/", self.raw.port)
    }

    /// The note of the first TLS session the server accepted (waits for it).
    fn first_session(&self) -> String {
        assert!(
            self.log.wait(WAIT, |d| !d.notes.is_empty()),
            "the server completed no TLS handshake; errors: {:?}",
            self.log.snapshot().tls_errors
        );
        self.log.snapshot().notes[0].clone()
    }
}

fn add_ca_pem(cfg: &Cfg, pem: &str) -> wsc_status {
    unsafe { wsc_config_add_ca_pem(cfg.raw(), pem.as_ptr(), pem.len()) }
}

fn set_server_name(cfg: &Cfg, name: &str) -> wsc_status {
    let n = cstr(name);
    unsafe { wsc_config_set_tls_server_name(cfg.raw(), n.as_ptr()) }
}

fn set_client_cert_files(cfg: &Cfg, cert: &str, key: &str) -> wsc_status {
    let (c, k) = (cstr(cert), cstr(key));
    unsafe { wsc_config_set_client_cert(cfg.raw(), c.as_ptr(), k.as_ptr()) }
}

fn set_client_cert_pem(cfg: &Cfg, cert: &str, key: &str) -> wsc_status {
    unsafe {
        wsc_config_set_client_cert_pem(
            cfg.raw(),
            cert.as_ptr(),
            cert.len(),
            key.as_ptr(),
            key.len(),
        )
    }
}

#[track_caller]
fn echo_once(c: &TestClient, text: &str) {
    assert_ok(c.send_text(text), "send_text");
    let (ev, _) = c.wait_for(WSC_EVENT_TEXT, WAIT);
    assert_eq!(ev.text(), text);
    assert_ok(c.close(1000, None), "close");
    let events = c.until_close(WAIT);
    assert_eq!(final_close(&events).close_code, 1000, "{events:?}");
}

/// Connects and expects ERROR then CLOSE; returns the ERROR.
#[track_caller]
fn expect_failure(url: &str, cfg: &Cfg) -> OwnedEvent {
    let c = TestClient::start(url, Some(cfg), false);
    let events = c.until_close(Duration::from_secs(10));
    assert_eq!(events.len(), 2, "ERROR then CLOSE: {events:?}");
    assert_eq!(events[0].ty, WSC_EVENT_ERROR, "{events:?}");
    assert!(of_type(&events, WSC_EVENT_OPEN).is_empty());
    assert_eq!(final_close(&events).close_code, 1006);
    events[0].clone()
}

// ------------------------------------------------------------------------------------------
// Server certificates: expired, wrong host, server name override
// ------------------------------------------------------------------------------------------

#[test]
fn an_expired_server_certificate_fails_with_a_message_about_expiry() {
    let ca = ca("expiry CA");
    let server = TlsServer::start(
        &leaf(
            &ca,
            "localhost",
            &["localhost", "127.0.0.1"],
            Use::Server,
            true,
        ),
        None,
    );
    let cfg = Cfg::new();
    assert_ok(add_ca_pem(&cfg, &ca.pem), "add_ca_pem");
    let err = expect_failure(&server.url_host("localhost"), &cfg);
    assert_status(err.status, WSC_ERR_TLS, &err.text());
    assert!(err.text().contains("expired"), "{:?}", err.text());
    assert!(server.log.snapshot().requests.is_empty());
}

#[test]
fn a_certificate_for_another_host_fails_and_the_server_name_override_accepts_it() {
    let ca = ca("name CA");
    let server = TlsServer::start(
        &leaf(
            &ca,
            "ws.example.test",
            &["ws.example.test"],
            Use::Server,
            false,
        ),
        None,
    );
    // Connecting by IP address: the certificate does not name 127.0.0.1.
    let cfg = Cfg::new();
    assert_ok(add_ca_pem(&cfg, &ca.pem), "add_ca_pem");
    let err = expect_failure(&server.url(), &cfg);
    assert_status(err.status, WSC_ERR_TLS, &err.text());
    assert!(err.text().contains("127.0.0.1"), "{:?}", err.text());

    // Same server, same URL, verified against the certificate's name, which is sent as SNI.
    assert_ok(
        set_server_name(&cfg, "ws.example.test"),
        "set_tls_server_name",
    );
    let (c, _) = TestClient::open(&server.url(), Some(&cfg), false);
    echo_once(&c, "verified as ws.example.test");
    let sessions = server.log.snapshot().notes;
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert!(
        sessions[0].contains("sni=Some(\"ws.example.test\")"),
        "{sessions:?}"
    );
}

#[test]
fn the_server_name_override_keeps_verification_on() {
    let ca = ca("name CA 2");
    let server = TlsServer::start(
        &leaf(
            &ca,
            "ws.example.test",
            &["ws.example.test"],
            Use::Server,
            false,
        ),
        None,
    );
    let cfg = Cfg::new();
    assert_ok(add_ca_pem(&cfg, &ca.pem), "add_ca_pem");
    assert_ok(
        set_server_name(&cfg, "other.example.test"),
        "set_tls_server_name",
    );
    let err = expect_failure(&server.url(), &cfg);
    assert_status(err.status, WSC_ERR_TLS, &err.text());
    assert!(
        err.text().contains("other.example.test"),
        "the message names the name checked: {:?}",
        err.text()
    );
    // An untrusted CA fails even when the name matches.
    let cfg = Cfg::new();
    assert_ok(
        set_server_name(&cfg, "ws.example.test"),
        "set_tls_server_name",
    );
    let err = expect_failure(&server.url(), &cfg);
    assert_status(err.status, WSC_ERR_TLS, &err.text());
}

#[test]
fn host_name_check_off_still_verifies_the_chain() {
    let ca = ca("hostname CA");
    let server = TlsServer::start(
        &leaf(
            &ca,
            "elsewhere.test",
            &["elsewhere.test"],
            Use::Server,
            false,
        ),
        None,
    );
    let cfg = Cfg::new();
    assert_ok(add_ca_pem(&cfg, &ca.pem), "add_ca_pem");
    assert_ok(
        unsafe { wsc_config_set_tls_verify_hostname(cfg.raw(), false) },
        "verify_hostname(false)",
    );
    let (c, _) = TestClient::open(&server.url(), Some(&cfg), true);
    echo_once(&c, "any name");

    let untrusted = Cfg::new();
    assert_ok(
        unsafe { wsc_config_set_tls_verify_hostname(untrusted.raw(), false) },
        "verify_hostname(false)",
    );
    let err = expect_failure(&server.url(), &untrusted);
    assert_status(err.status, WSC_ERR_TLS, &err.text());

    // And back on: the name is checked again.
    assert_ok(
        unsafe { wsc_config_set_tls_verify_hostname(cfg.raw(), true) },
        "verify_hostname(true)",
    );
    let err = expect_failure(&server.url(), &cfg);
    assert_status(err.status, WSC_ERR_TLS, &err.text());
}

// ------------------------------------------------------------------------------------------
// Mutual TLS
// ------------------------------------------------------------------------------------------

struct Mtls {
    server: TlsServer,
    server_ca: Ca,
    client_ca: Ca,
}

fn mtls() -> Mtls {
    let server_ca = ca("server CA");
    let client_ca = ca("client CA");
    let server = TlsServer::start(
        &leaf(&server_ca, "localhost", &["localhost"], Use::Server, false),
        Some(&client_ca),
    );
    Mtls {
        server,
        server_ca,
        client_ca,
    }
}

impl Mtls {
    fn cfg(&self) -> Cfg {
        let cfg = Cfg::new();
        assert_ok(add_ca_pem(&cfg, &self.server_ca.pem), "add_ca_pem");
        cfg
    }
    fn url(&self) -> String {
        self.server.url_host("localhost")
    }
}

#[test]
fn a_server_demanding_a_client_certificate_refuses_a_client_without_one() {
    let m = mtls();
    let err = expect_failure(&m.url(), &m.cfg());
    assert_status(err.status, WSC_ERR_TLS, &err.text());
    let msg = err.text();
    assert!(
        msg.contains("certificate") && msg.contains("wsc_config_set_client_cert"),
        "the message points at the client certificate: {msg:?}"
    );
    assert!(
        m.server.log.wait(WAIT, |d| !d.tls_errors.is_empty()),
        "the server refused the handshake"
    );
    assert!(m.server.log.snapshot().messages == 0);
}

#[test]
fn mutual_tls_with_a_client_certificate_from_files_and_from_memory() {
    let m = mtls();
    let alice = leaf(
        &m.client_ca,
        "alice",
        &["alice.client.test"],
        Use::Client,
        false,
    );
    let bob = leaf(
        &m.client_ca,
        "bob",
        &["bob.client.test"],
        Use::Client,
        false,
    );

    let from_files = m.cfg();
    let cert = write_temp("alice.pem", &alice.cert_pem);
    let key = write_temp("alice.key", &alice.key_pem);
    assert_ok(
        set_client_cert_files(&from_files, &cert, &key),
        "set_client_cert",
    );
    let (c, _) = TestClient::open(&m.url(), Some(&from_files), false);
    echo_once(&c, "hello from alice");

    // A second config with another identity and otherwise equal settings: the connector
    // cache must not hand it alice's certificate.
    let from_memory = m.cfg();
    assert_ok(
        set_client_cert_pem(&from_memory, &bob.cert_pem, &bob.key_pem),
        "set_client_cert_pem",
    );
    let (c, _) = TestClient::open(&m.url(), Some(&from_memory), true);
    echo_once(&c, "hello from bob");

    // Certificate and key in one file.
    let both = write_temp("carol.pem", &format!("{}{}", bob.cert_pem, bob.key_pem));
    let one_file = m.cfg();
    assert_ok(set_client_cert_files(&one_file, &both, &both), "one file");
    let (c, _) = TestClient::open(&m.url(), Some(&one_file), false);
    echo_once(&c, "one file");

    let notes = m.server.log.snapshot().notes;
    assert_eq!(notes.len(), 3, "{notes:?}");
    assert!(notes[0].contains("peer=alice"), "{notes:?}");
    assert!(notes[1].contains("peer=bob"), "{notes:?}");
    assert!(notes[2].contains("peer=bob"), "{notes:?}");
    assert!(notes[0].contains("sni=Some(\"localhost\")"), "{notes:?}");
}

#[test]
fn a_client_certificate_from_an_untrusted_ca_is_refused_by_the_server() {
    let m = mtls();
    let stranger = leaf(
        &ca("stranger CA"),
        "mallory",
        &["m.test"],
        Use::Client,
        false,
    );
    let cfg = m.cfg();
    assert_ok(
        set_client_cert_pem(&cfg, &stranger.cert_pem, &stranger.key_pem),
        "set_client_cert_pem",
    );
    let err = expect_failure(&m.url(), &cfg);
    assert_status(err.status, WSC_ERR_TLS, &err.text());
}

#[test]
fn a_refused_client_certificate_leaves_the_previous_one_in_place() {
    let m = mtls();
    let alice = leaf(&m.client_ca, "alice", &["a.test"], Use::Client, false);
    let cfg = m.cfg();
    assert_ok(
        set_client_cert_pem(&cfg, &alice.cert_pem, &alice.key_pem),
        "alice",
    );
    assert_status(
        set_client_cert_pem(&cfg, &alice.cert_pem, "garbage"),
        WSC_ERR_TLS,
        "bad key",
    );
    let (c, _) = TestClient::open(&m.url(), Some(&cfg), false);
    echo_once(&c, "still alice");
    assert!(m.server.first_session().contains("peer=alice"));
}

// ------------------------------------------------------------------------------------------
// CA from memory
// ------------------------------------------------------------------------------------------

#[test]
fn a_ca_from_memory_works_like_the_ca_file() {
    let m = localhost_tls();
    let server = WsServer::echo_with(ServerOptions {
        tls: Some(m.acceptor()),
        ..Default::default()
    });
    let cfg = Cfg::new();
    // Another CA first, in the same buffer: every certificate in it is trusted.
    let both = format!("{}{}", ca("unrelated").pem, m.ca_pem);
    assert_ok(add_ca_pem(&cfg, &both), "add_ca_pem");
    let (c, _) = TestClient::open(&server.url_host("localhost"), Some(&cfg), false);
    echo_once(&c, "trusted from memory");

    // Without it the same server is refused.
    let err = expect_failure(&server.url_host("localhost"), &Cfg::new());
    assert_status(err.status, WSC_ERR_TLS, &err.text());
}

// ------------------------------------------------------------------------------------------
// Bad input at the setters
// ------------------------------------------------------------------------------------------

#[track_caller]
fn refused(st: wsc_status, expected: wsc_status, what: &str, needle: &str) {
    assert_status(st, expected, what);
    let e = last_error();
    assert!(
        e.contains(needle),
        "{what}: {e:?} should mention {needle:?}"
    );
}

#[test]
fn bad_pem_is_refused_at_the_setter() {
    let cfg = Cfg::new();
    refused(
        add_ca_pem(&cfg, "not a certificate"),
        WSC_ERR_TLS,
        "ca garbage",
        "CA",
    );
    refused(add_ca_pem(&cfg, ""), WSC_ERR_TLS, "ca empty", "CA");
    let broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    assert_status(add_ca_pem(&cfg, broken), WSC_ERR_TLS, "ca broken base64");

    let ca = ca("setter CA");
    let good = leaf(&ca, "c", &["c.test"], Use::Client, false);
    let other = leaf(&ca, "d", &["d.test"], Use::Client, false);
    refused(
        set_client_cert_pem(&cfg, "garbage", &good.key_pem),
        WSC_ERR_TLS,
        "cert garbage",
        "certificate",
    );
    refused(
        set_client_cert_pem(&cfg, &good.cert_pem, "garbage"),
        WSC_ERR_TLS,
        "key garbage",
        "PKCS#8",
    );
    refused(
        set_client_cert_pem(&cfg, &good.cert_pem, &other.key_pem),
        WSC_ERR_TLS,
        "key of another certificate",
        "cannot be used together",
    );
    let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
    let pkcs1 = String::from_utf8(rsa.private_key_to_pem().unwrap()).unwrap();
    assert!(pkcs1.contains("BEGIN RSA PRIVATE KEY"));
    refused(
        set_client_cert_pem(&cfg, &good.cert_pem, &pkcs1),
        WSC_ERR_TLS,
        "PKCS#1 key",
        "openssl pkcs8 -topk8",
    );
    let group = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap();
    let ec = openssl::ec::EcKey::generate(&group).unwrap();
    let sec1 = String::from_utf8(ec.private_key_to_pem().unwrap()).unwrap();
    refused(
        set_client_cert_pem(&cfg, &good.cert_pem, &sec1),
        WSC_ERR_TLS,
        "SEC1 key",
        "SEC1",
    );
    let missing = temp_path("missing.pem");
    let missing = missing.to_str().unwrap();
    let key = write_temp("good.key", &good.key_pem);
    refused(
        set_client_cert_files(&cfg, missing, &key),
        WSC_ERR_TLS,
        "missing cert file",
        "cannot read",
    );
    let cert = write_temp("good.pem", &good.cert_pem);
    refused(
        set_client_cert_files(&cfg, &cert, missing),
        WSC_ERR_TLS,
        "missing key file",
        "cannot read",
    );
    assert_ok(set_client_cert_files(&cfg, &cert, &key), "the good pair");
    refused(
        set_server_name(&cfg, "bad name\r\n"),
        WSC_ERR_INVALID_ARGUMENT,
        "server name",
        "server name",
    );
    refused(
        set_server_name(&cfg, ""),
        WSC_ERR_INVALID_ARGUMENT,
        "empty",
        "server name",
    );
}

#[test]
fn null_arguments_are_refused() {
    let cfg = Cfg::new();
    let s = cstr("x");
    let n: *const c_char = null();
    let b = b"x";
    let nullcfg = std::ptr::null_mut();
    type Case<'a> = (&'a str, Box<dyn Fn() -> wsc_status + 'a>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "client_cert cfg",
            Box::new(|| unsafe { wsc_config_set_client_cert(nullcfg, s.as_ptr(), s.as_ptr()) }),
            "cfg",
        ),
        (
            "client_cert cert",
            Box::new(|| unsafe { wsc_config_set_client_cert(cfg.raw(), n, s.as_ptr()) }),
            "cert_pem_path",
        ),
        (
            "client_cert key",
            Box::new(|| unsafe { wsc_config_set_client_cert(cfg.raw(), s.as_ptr(), n) }),
            "key_pem_path",
        ),
        (
            "client_cert_pem cfg",
            Box::new(|| unsafe {
                wsc_config_set_client_cert_pem(nullcfg, b.as_ptr(), 1, b.as_ptr(), 1)
            }),
            "cfg",
        ),
        (
            "client_cert_pem cert",
            Box::new(|| unsafe {
                wsc_config_set_client_cert_pem(cfg.raw(), null(), 0, b.as_ptr(), 1)
            }),
            "cert_pem",
        ),
        (
            "client_cert_pem key",
            Box::new(|| unsafe {
                wsc_config_set_client_cert_pem(cfg.raw(), b.as_ptr(), 1, null(), 5)
            }),
            "key_pem",
        ),
        (
            "add_ca_pem cfg",
            Box::new(|| unsafe { wsc_config_add_ca_pem(nullcfg, b.as_ptr(), 1) }),
            "cfg",
        ),
        (
            "add_ca_pem pem",
            Box::new(|| unsafe { wsc_config_add_ca_pem(cfg.raw(), null(), 0) }),
            "pem",
        ),
        (
            "server_name cfg",
            Box::new(|| unsafe { wsc_config_set_tls_server_name(nullcfg, s.as_ptr()) }),
            "cfg",
        ),
        (
            "server_name name",
            Box::new(|| unsafe { wsc_config_set_tls_server_name(cfg.raw(), n) }),
            "name",
        ),
        (
            "verify_hostname cfg",
            Box::new(|| unsafe { wsc_config_set_tls_verify_hostname(nullcfg, true) }),
            "cfg",
        ),
    ];
    for (what, call, needle) in cases {
        refused(call(), WSC_ERR_INVALID_ARGUMENT, what, needle);
    }
}
