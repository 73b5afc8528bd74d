//! A test PKI and node image: a CA (rcgen), server and node certificates,
//! a node's `satchel.toml` with its credentials, signing keys and real
//! bundles sealed by the bundle library.
//!
//! Certificates follow the production profiles where the server checks them
//! (clientAuth EKU and a `satchel:` scope URI for nodes, serverAuth for
//! servers); the odd ones a fault test needs (another CA, a name the SRV
//! target is not) are made on purpose by the same functions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use satchel_format::manifest::Policy;
use satchel_format::seal::{seal_to_file, SealParams, Source};
use satchel_format::{Identities, Mac, Recipient, SigningKey, SiteName, Target};
use satchel_pki::NodeConfig;
use time::{Duration, OffsetDateTime};

/// A PEM certificate and its PEM key.
#[derive(Clone)]
pub struct CertKey {
    /// Certificate, PEM.
    pub cert: String,
    /// PKCS#8 key, PEM.
    pub key: String,
}

impl std::fmt::Debug for CertKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CertKey(key elided)")
    }
}

/// A throwaway CA.
pub struct TestCa {
    /// The CA certificate, PEM.
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestCa")
    }
}

fn validity(p: &mut CertificateParams) {
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::hours(1);
    p.not_after = now + Duration::days(2);
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        p.distinguished_name = dn;
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut p);
        let cert = p.self_signed(&key).expect("self-sign");
        TestCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(p, key),
        }
    }

    fn leaf(&self, cn: &str, sans: Vec<SanType>, eku: ExtendedKeyUsagePurpose) -> CertKey {
        let key = KeyPair::generate().expect("leaf key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        p.distinguished_name = dn;
        p.subject_alt_names = sans;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![eku];
        validity(&mut p);
        let cert = p.signed_by(&key, &self.issuer).expect("sign");
        CertKey {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// A server certificate for these DNS names and IP addresses.
    pub fn server(&self, names: &[&str]) -> CertKey {
        let sans = names
            .iter()
            .map(|n| match n.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*n).try_into().expect("DNS name")),
            })
            .collect();
        self.leaf("satchel server", sans, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate carrying these scope URIs
    /// (`satchel:host:<mac>`, `satchel:admin:<name>`, …).
    pub fn client(&self, uris: &[String]) -> CertKey {
        let sans = uris
            .iter()
            .map(|u| SanType::URI(u.as_str().try_into().expect("URI")))
            .collect();
        self.leaf("satchel client", sans, ExtendedKeyUsagePurpose::ClientAuth)
    }
}

/// A node's boot image contents: `satchel.toml` and what it names.
pub struct NodeImage {
    /// Directory holding the config and credentials.
    pub dir: PathBuf,
    /// The `satchel.toml`.
    pub config_path: PathBuf,
    /// The config as written.
    pub config: NodeConfig,
    /// The node's MAC.
    pub mac: Mac,
    /// The admin signing key the image trusts.
    pub signer: SigningKey,
    /// The node's age identity.
    pub identity: Identities,
    /// The admins' identity (captures and bundles are encrypted to it too).
    pub admin: Identities,
}

impl std::fmt::Debug for NodeImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeImage").field("mac", &self.mac).finish()
    }
}

/// What a node image is made of.
#[derive(Clone, Debug)]
pub struct ImageSpec {
    /// The MAC (in the config, as a per-host image).
    pub mac: Mac,
    /// The site, if any.
    pub site: Option<SiteName>,
    /// SRV domain.
    pub domain: String,
    /// Fallback server `HOST:PORT`.
    pub server: Option<String>,
    /// Serial floors.
    pub floors: BTreeMap<String, u64>,
    /// Required targets.
    pub required: Vec<String>,
}

impl ImageSpec {
    /// A host-only image for `mac` under `domain`, requiring its host bundle.
    pub fn host(mac: &str, domain: &str) -> ImageSpec {
        let mac = Mac::parse(mac).expect("mac");
        ImageSpec {
            mac,
            site: None,
            domain: domain.into(),
            server: None,
            floors: BTreeMap::new(),
            required: vec![format!("host/{mac}")],
        }
    }
}

impl NodeImage {
    /// Writes an image into `dir`: CA cert, node cert (signed by `ca`),
    /// keys, identities, signer, and `satchel.toml`.
    pub fn create(dir: &Path, ca: &TestCa, spec: &ImageSpec) -> NodeImage {
        std::fs::create_dir_all(dir).expect("image dir");
        let mut uris = vec![format!("satchel:host:{}", spec.mac)];
        if let Some(s) = &spec.site {
            uris.push(format!("satchel:site:{s}"));
        }
        let node = ca.client(&uris);
        std::fs::write(dir.join("ca.crt"), &ca.cert_pem).expect("ca");
        std::fs::write(dir.join("node.crt"), &node.cert).expect("cert");
        std::fs::write(dir.join("node.key"), &node.key).expect("key");
        let signer = SigningKey::generate();
        std::fs::write(dir.join("signer.pub"), signer.verifying_key().to_pem()).expect("pub");
        let identity = Identities::generate();
        std::fs::write(
            dir.join("host.agekey"),
            identity.to_file_text("test").as_bytes(),
        )
        .expect("identity");
        let admin = Identities::generate();
        let config = NodeConfig {
            version: 1,
            mac: Some(spec.mac),
            site: spec.site.clone(),
            domain: spec.domain.clone(),
            server: spec.server.clone(),
            ca_cert: "ca.crt".into(),
            client_cert: "node.crt".into(),
            client_key: "node.key".into(),
            identities: vec!["host.agekey".into()],
            signers: vec!["signer.pub".into()],
            admin_recipients: admin.recipients().iter().map(|r| r.to_string()).collect(),
            clock_floor: OffsetDateTime::now_utc() - Duration::days(1),
            floors: spec.floors.clone(),
            required: spec.required.clone(),
        };
        let config_path = dir.join("satchel.toml");
        std::fs::write(&config_path, config.to_toml()).expect("config");
        NodeImage {
            dir: dir.to_path_buf(),
            config_path,
            config,
            mac: spec.mac,
            signer,
            identity,
            admin,
        }
    }

    /// Seals a real bundle of `files` (`(relative path, content)`) for
    /// `target`, signed by `key`, encrypted to this node and the admins.
    pub fn bundle_with(
        &self,
        target: &Target,
        serial: u64,
        files: &[(&str, &str)],
        expires: OffsetDateTime,
        key: &SigningKey,
        out: &Path,
    ) -> Vec<u8> {
        let src = tempfile::tempdir().expect("src");
        for (p, content) in files {
            let f = src.path().join(p);
            if let Some(parent) = f.parent() {
                std::fs::create_dir_all(parent).expect("mkdir");
            }
            std::fs::write(&f, content).expect("write");
        }
        let mut recipients: Vec<Recipient> = self.identity.recipients();
        recipients.extend(self.admin.recipients());
        let now = OffsetDateTime::now_utc();
        let params = SealParams {
            target: target.clone(),
            site: None,
            serial,
            created: (now - Duration::days(2)).min(expires - Duration::hours(1)),
            expires,
            policy: Policy::default(),
            recipients,
        };
        seal_to_file(
            &params,
            Source::Dir {
                path: src.path(),
                keep_owners: false,
            },
            key,
            out,
            &AtomicU64::new(0),
        )
        .expect("seal");
        std::fs::read(out).expect("read bundle")
    }

    /// A good bundle for this host: signed by the image's signer, valid a day.
    pub fn host_bundle(&self, serial: u64, files: &[(&str, &str)], out: &Path) -> Vec<u8> {
        let exp = OffsetDateTime::now_utc() + Duration::days(1);
        self.bundle_with(
            &Target::Host(self.mac),
            serial,
            files,
            exp,
            &self.signer,
            out,
        )
    }
}

/// Lists a directory tree as `(relative path, content or "<dir>")`, sorted:
/// what tests compare before and after a run.
pub fn tree(root: &Path) -> Vec<(String, String)> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p
                .strip_prefix(base)
                .map(|r| r.display().to_string())
                .unwrap_or_default();
            let ft = e.file_type().expect("file type");
            if ft.is_dir() {
                out.push((rel, "<dir>".into()));
                walk(base, &p, out);
            } else if ft.is_symlink() {
                let t = std::fs::read_link(&p).expect("link");
                out.push((rel, format!("-> {}", t.display())));
            } else {
                let c = std::fs::read(&p).expect("read");
                out.push((rel, String::from_utf8_lossy(&c).into_owned()));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}
