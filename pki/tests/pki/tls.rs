//! Real TLS over 127.0.0.1 with configurations from `satchel_pki::tls`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rustls::{ClientConnection, ServerConnection, StreamOwned};
use rustls_pki_types::{CertificateRevocationListDer, ServerName};
use satchel_pki::ca::{Ca, Issued, Reason};
use satchel_pki::crl::{CrlWatcher, LoadedCrl};
use satchel_pki::identity::{AuthError, PeerIdentity};
use satchel_pki::scope::Scope;
use satchel_pki::tls::{client_config, server_config, TlsOptions};
use time::{Duration as TimeDuration, OffsetDateTime};

use crate::harness::{issue_set, mac, site, test_ca};

/// Socket timeout: a stuck handshake fails the test instead of hanging it.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

type ServerResult = Result<(Option<Vec<u8>>, Option<Vec<u8>>), String>;

fn rustls_error(e: &std::io::Error) -> String {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(r) => format!("{r:?}"),
        None => format!("{e:?}"),
    }
}

/// Accepts one connection; returns the client's certificate and ALPN.
fn serve_once(cfg: rustls::ServerConfig) -> (std::net::SocketAddr, JoinHandle<ServerResult>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let h = std::thread::spawn(move || {
        // Accept with a deadline, so a client that never connects cannot hang the test.
        listener.set_nonblocking(true).unwrap();
        let deadline = std::time::Instant::now() + IO_TIMEOUT;
        let sock = loop {
            match listener.accept() {
                Ok((sock, _)) => break sock,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if std::time::Instant::now() > deadline {
                        return Err("no client connected".into());
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(e.to_string()),
            }
        };
        sock.set_nonblocking(false).unwrap();
        sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        sock.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        let conn = ServerConnection::new(Arc::new(cfg)).map_err(|e| e.to_string())?;
        let mut tls = StreamOwned::new(conn, sock);
        let mut buf = [0u8; 5];
        tls.read_exact(&mut buf).map_err(|e| rustls_error(&e))?;
        let peer = tls
            .conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.as_ref().to_vec());
        let alpn = tls.conn.alpn_protocol().map(<[u8]>::to_vec);
        tls.write_all(b"ok").map_err(|e| rustls_error(&e))?;
        tls.flush().map_err(|e| rustls_error(&e))?;
        tls.conn.send_close_notify();
        let _ = tls.flush();
        Ok((peer, alpn))
    });
    (addr, h)
}

fn connect(addr: std::net::SocketAddr, cfg: rustls::ClientConfig) -> Result<(), String> {
    let sock = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    sock.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(Arc::new(cfg), name).map_err(|e| e.to_string())?;
    let mut tls = StreamOwned::new(conn, sock);
    tls.write_all(b"hello").map_err(|e| rustls_error(&e))?;
    tls.flush().map_err(|e| rustls_error(&e))?;
    let mut buf = [0u8; 2];
    tls.read_exact(&mut buf).map_err(|e| rustls_error(&e))?;
    if &buf != b"ok" {
        return Err("bad reply".into());
    }
    Ok(())
}

fn server_cfg(
    ca: &Ca,
    server: &Issued,
    crls: &[CertificateRevocationListDer<'static>],
) -> rustls::ServerConfig {
    server_config(
        server.cert_pem.as_bytes(),
        server.key_pem.expose().as_bytes(),
        ca.cert_pem().as_bytes(),
        crls,
        &TlsOptions::default(),
    )
    .unwrap()
}

fn client_cfg(ca: &Ca, client: Option<&Issued>) -> rustls::ClientConfig {
    client_config(
        ca.cert_pem().as_bytes(),
        client.map(|c| (c.cert_pem.as_bytes(), c.key_pem.expose().as_bytes())),
    )
    .unwrap()
}

/// Runs one handshake; returns the server's result and the client's.
fn handshake(
    ca: &Ca,
    server: &Issued,
    crls: &[CertificateRevocationListDer<'static>],
    client: rustls::ClientConfig,
) -> (ServerResult, Result<(), String>) {
    let (addr, h) = serve_once(server_cfg(ca, server, crls));
    let c = connect(addr, client);
    (h.join().unwrap(), c)
}

#[test]
fn issued_certificates_handshake_and_identify() {
    let (_tmp, ca) = test_ca();
    let set = issue_set(&ca);
    let crl = LoadedCrl::parse(ca.crl(None).unwrap().pem.as_bytes()).unwrap();
    let crls = [crl.der.clone()];
    for (client, want) in [
        (
            &set.host,
            Scope::Host {
                mac: mac("aa-bb-cc-dd-ee-ff"),
                site: Some(site("dc1")),
            },
        ),
        (&set.site, Scope::Site(site("dc1"))),
        (&set.admin, Scope::Admin(crate::harness::admin("alice"))),
    ] {
        let (s, c) = handshake(&ca, &set.server, &crls, client_cfg(&ca, Some(client)));
        c.unwrap();
        let (peer, alpn) = s.unwrap();
        assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
        let id = PeerIdentity::from_cert_der(&peer.unwrap()).unwrap();
        assert_eq!(id.scope, want);
        assert_eq!(id.serial_hex, client.serial_hex);
        assert_eq!(id.not_after, client.not_after);
        assert_eq!(id.sha256_fingerprint_hex.len(), 64);
    }
    // Anonymous clients reach the server (uploads), with no identity.
    let (s, c) = handshake(&ca, &set.server, &crls, client_cfg(&ca, None));
    c.unwrap();
    assert_eq!(s.unwrap().0, None);
}

#[test]
fn the_server_picks_aes_128_gcm_whatever_the_client_prefers() {
    let (_tmp, ca) = test_ca();
    let set = issue_set(&ca);
    let crl = LoadedCrl::parse(ca.crl(None).unwrap().pem.as_bytes()).unwrap();
    let (addr, h) = serve_once(server_cfg(&ca, &set.server, &[crl.der]));
    // A client on ring's defaults, which list AES-256-GCM first.
    let mut roots = rustls::RootCertStore::empty();
    for c in satchel_pki::tls::parse_certs(ca.cert_pem().as_bytes(), "CA").unwrap() {
        roots.add(c).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    assert_eq!(
        cfg.crypto_provider().cipher_suites[0].suite(),
        rustls::CipherSuite::TLS13_AES_256_GCM_SHA384
    );
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(Arc::new(cfg), name).unwrap();
    let mut tls = StreamOwned::new(conn, sock);
    tls.write_all(b"hello").unwrap();
    let mut buf = [0u8; 2];
    tls.read_exact(&mut buf).unwrap();
    assert_eq!(
        tls.conn.negotiated_cipher_suite().map(|s| s.suite()),
        Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
    );
    h.join().unwrap().unwrap();
}

#[test]
fn revoked_client_is_refused_even_when_the_crl_is_stale() {
    let (_tmp, ca) = test_ca();
    let set = issue_set(&ca);
    ca.revoke(&set.host.serial_hex, Reason::KeyCompromise)
        .unwrap();
    // A CRL whose nextUpdate passed two days ago is still enforced.
    let old = OffsetDateTime::now_utc() - TimeDuration::days(3);
    let stale = LoadedCrl::parse(&ca.crl_at(Some(1), old).unwrap().der).unwrap();
    assert!(stale.is_stale(OffsetDateTime::now_utc()));
    assert!(stale.is_revoked(&set.host.serial_hex));
    let fresh = LoadedCrl::parse(ca.crl(None).unwrap().pem.as_bytes()).unwrap();
    assert!(!fresh.is_stale(OffsetDateTime::now_utc()));
    fresh.verify_issued_by(ca.cert_der()).unwrap();
    for crl in [&stale, &fresh] {
        let crls = [crl.der.clone()];
        let (s, c) = handshake(&ca, &set.server, &crls, client_cfg(&ca, Some(&set.host)));
        let e = s.unwrap_err();
        assert!(e.contains("Revoked"), "{e}");
        assert!(c.is_err());
        // Others still get in.
        let (s, c) = handshake(&ca, &set.server, &crls, client_cfg(&ca, Some(&set.site)));
        c.unwrap();
        s.unwrap();
    }
}

#[test]
fn server_certificate_as_client_certificate_is_refused() {
    let (_tmp, ca) = test_ca();
    let set = issue_set(&ca);
    let (s, c) = handshake(&ca, &set.server, &[], client_cfg(&ca, Some(&set.server)));
    let e = s.unwrap_err();
    assert!(e.contains("Purpose"), "{e}");
    assert!(c.is_err());
    // And our second gate refuses it too.
    assert_eq!(
        PeerIdentity::from_cert_der(set.server.cert_der.as_ref()),
        Err(AuthError::NotClientAuth)
    );
}

/// A certificate signed by our CA with the given EKUs (none when empty).
pub fn crafted(
    ca: &Ca,
    ekus: Vec<rcgen::ExtendedKeyUsagePurpose>,
    uris: &[&str],
) -> (String, String, Vec<u8>) {
    let ca_key_pem = std::fs::read_to_string(ca.dir().join("ca.key")).unwrap();
    let ca_key = rcgen::KeyPair::from_pem(&ca_key_pem).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_der(ca.cert_der(), ca_key).unwrap();
    let mut p = rcgen::CertificateParams::default();
    p.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x42; 16]));
    p.not_before = OffsetDateTime::now_utc() - TimeDuration::hours(1);
    p.not_after = OffsetDateTime::now_utc() + TimeDuration::days(1);
    p.is_ca = rcgen::IsCa::ExplicitNoCa;
    p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = ekus;
    p.use_authority_key_identifier_extension = true;
    for u in uris {
        p.subject_alt_names
            .push(rcgen::SanType::URI((*u).to_string().try_into().unwrap()));
    }
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &issuer).unwrap();
    (cert.pem(), key.serialize_pem(), cert.der().to_vec())
}

#[test]
fn client_certificate_without_client_auth_eku_is_refused_by_authorization() {
    let (_tmp, ca) = test_ca();
    let set = issue_set(&ca);
    let (pem, key, der) = crafted(
        &ca,
        vec![],
        &["https://satchel.test/satchel/host/aa-bb-cc-dd-ee-ff"],
    );
    // rustls-webpki lets it through the handshake…
    let client = client_config(
        ca.cert_pem().as_bytes(),
        Some((pem.as_bytes(), key.as_bytes())),
    )
    .unwrap();
    let (s, c) = handshake(&ca, &set.server, &[], client);
    c.unwrap();
    let peer = s.unwrap().0.unwrap();
    assert_eq!(peer, der);
    // …and the authorization input refuses it.
    assert_eq!(
        PeerIdentity::from_cert_der(&peer),
        Err(AuthError::NoExtendedKeyUsage)
    );

    // Other crafted certificates the second gate refuses.
    let (_, _, server_only) = crafted(
        &ca,
        vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth],
        &["https://satchel.test/satchel/host/aa-bb-cc-dd-ee-ff"],
    );
    assert_eq!(
        PeerIdentity::from_cert_der(&server_only),
        Err(AuthError::NotClientAuth)
    );
    let client_auth = || vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    for uris in [
        &[][..],
        &["https://example.test/"][..],
        &["https://satchel.test/satchel/host/AA-BB-CC-DD-EE-FF"][..],
        // The old form, refused: its authority is not a host name.
        &["satchel://host/aa-bb-cc-dd-ee-ff"][..],
        &["satchel://admin/alice"][..],
        &[
            "https://satchel.test/satchel/admin/alice",
            "https://satchel.test/satchel/site/dc1",
        ][..],
        &[
            "https://satchel.test/satchel/site/dc1",
            "https://satchel.test/satchel/site/dc2",
        ][..],
    ] {
        let (_, _, der) = crafted(&ca, client_auth(), uris);
        assert!(
            matches!(PeerIdentity::from_cert_der(&der), Err(AuthError::Scope(_))),
            "{uris:?}"
        );
    }
    // Trailing bytes after a good certificate.
    let mut padded = set.host.cert_der.as_ref().to_vec();
    padded.push(0);
    assert!(matches!(
        PeerIdentity::from_cert_der(&padded),
        Err(AuthError::Malformed(_))
    ));
    // The CA certificate itself.
    assert!(PeerIdentity::from_cert_der(ca.cert_der().as_ref()).is_err());
}

#[test]
fn only_our_ca_is_trusted_and_foreign_crls_fail_closed() {
    let (_tmp, ca) = test_ca();
    let set = issue_set(&ca);
    let (_tmp2, other) = crate::harness::test_ca_named("Other CA");
    let other_set = issue_set(&other);
    // A client that trusts only `ca` refuses a server from `other`.
    let (addr, h) = serve_once(server_cfg(&other, &other_set.server, &[]));
    let e = connect(addr, client_cfg(&ca, None)).unwrap_err();
    assert!(e.contains("UnknownIssuer"), "{e}");
    let _ = h.join();
    // A client certificate from `other` is refused by our server.
    let (s, _) = handshake(
        &ca,
        &set.server,
        &[],
        client_cfg(&ca, Some(&other_set.host)),
    );
    assert!(s.unwrap_err().contains("UnknownIssuer"));
    // A look-alike CA with our CA's name: its certificates fail the signature check.
    let (_tmp3, twin) = test_ca();
    let twin_host = issue_set(&twin).host;
    let (s, _) = handshake(&ca, &set.server, &[], client_cfg(&ca, Some(&twin_host)));
    assert!(s.unwrap_err().contains("BadSignature"));
    // With only a CRL from another CA, revocation status is unknown: refused.
    let foreign = LoadedCrl::parse(&other.crl(None).unwrap().der).unwrap();
    assert!(foreign.verify_issued_by(ca.cert_der()).is_err());
    let (s, _) = handshake(
        &ca,
        &set.server,
        std::slice::from_ref(&foreign.der),
        client_cfg(&ca, Some(&set.host)),
    );
    let e = s.unwrap_err();
    assert!(e.contains("UnknownRevocationStatus"), "{e}");
}

#[test]
fn tls12_only_when_allowed_and_bad_material_is_refused() {
    let (_tmp, ca) = test_ca();
    let set = issue_set(&ca);
    let cfg = server_config(
        set.server.cert_pem.as_bytes(),
        set.server.key_pem.expose().as_bytes(),
        ca.cert_pem().as_bytes(),
        &[],
        &TlsOptions { allow_tls12: true },
    )
    .unwrap();
    assert_eq!(
        cfg.alpn_protocols,
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    );
    // A key that does not match the certificate.
    assert!(server_config(
        set.server.cert_pem.as_bytes(),
        set.host.key_pem.expose().as_bytes(),
        ca.cert_pem().as_bytes(),
        &[],
        &TlsOptions::default(),
    )
    .is_err());
    // A CRL that is not DER.
    assert!(server_config(
        set.server.cert_pem.as_bytes(),
        set.server.key_pem.expose().as_bytes(),
        ca.cert_pem().as_bytes(),
        &[CertificateRevocationListDer::from(vec![0x30, 0x00])],
        &TlsOptions::default(),
    )
    .is_err());
}

#[test]
fn crl_watcher_reports_each_new_crl_once() {
    let (tmp, ca) = test_ca();
    let set = issue_set(&ca);
    let path = tmp.path().join("served.crl");
    let publish = |bytes: &[u8]| satchel_pki::ca::replace_public(&path, bytes).unwrap();
    publish(ca.crl(None).unwrap().pem.as_bytes());
    let mut w = CrlWatcher::new(&path);
    let first = w.poll().unwrap().unwrap();
    assert_eq!(first.number, Some(1));
    assert!(first.revoked.is_empty());
    assert_eq!(w.poll().unwrap(), None);
    // Same content rewritten with a later mtime (set, not waited for): the
    // watcher rereads it and sees nothing new.
    publish(&std::fs::read(&path).unwrap());
    let later = std::time::SystemTime::now() + Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(later)
        .unwrap();
    assert_eq!(w.poll().unwrap(), None);
    // A new CRL in DER: reported.
    ca.revoke(&set.admin.serial_hex, Reason::Superseded)
        .unwrap();
    publish(&ca.crl(None).unwrap().der);
    let second = w.poll().unwrap().unwrap();
    assert_eq!(second.number, Some(2));
    assert!(second.is_revoked(&set.admin.serial_hex));
    // A damaged file: an error once, then nothing until it changes again.
    publish(b"-----BEGIN X509 CRL-----\ngarbage\n-----END X509 CRL-----\n");
    assert!(w.poll().is_err());
    assert_eq!(w.poll().unwrap(), None);
    publish(ca.crl(None).unwrap().pem.as_bytes());
    assert_eq!(w.poll().unwrap().unwrap().number, Some(3));
    // load_crl reads PEM and DER alike.
    let der_path = tmp.path().join("x.der");
    std::fs::write(&der_path, &second.der).unwrap();
    assert_eq!(satchel_pki::crl::load_crl(&der_path).unwrap(), second);
}
