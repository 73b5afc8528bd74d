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
    /// (`https://satchel.test/satchel/host/<mac>`, `https://satchel.test/satchel/admin/<name>`, …).
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
        let mut uris = vec![format!("https://satchel.test/satchel/host/{}", spec.mac)];
        if let Some(s) = &spec.site {
            uris.push(format!("https://satchel.test/satchel/site/{s}"));
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

/// The canonical listing of the tree under `root`, as `tests/boot/treehash.sh`
/// prints it: one line per entry below `root`, sorted by the bytes of the
/// relative path, `d <mode> - <path>`, `f <mode> <sha256> <path>`,
/// `l - <target> <path>` or `o <mode> - <path>`.
pub fn tree_listing(root: &Path) -> String {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::PermissionsExt;
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(Vec<u8>, String)>) {
        for e in std::fs::read_dir(dir).expect("read_dir") {
            let p = e.expect("dir entry").path();
            let rel = p.strip_prefix(root).expect("below root");
            let rel_s = rel.to_str().expect("utf-8 test paths").to_string();
            let md = std::fs::symlink_metadata(&p).expect("lstat");
            let mode = md.permissions().mode() & 0o7777;
            let line = if md.file_type().is_symlink() {
                let t = std::fs::read_link(&p).expect("readlink");
                format!("l - {} {rel_s}", t.display())
            } else if md.is_dir() {
                walk(root, &p, out);
                format!("d {mode:o} - {rel_s}")
            } else if md.is_file() {
                let h = hex::encode(Sha256::digest(std::fs::read(&p).expect("read")));
                format!("f {mode:o} {h} {rel_s}")
            } else {
                format!("o {mode:o} - {rel_s}")
            };
            out.push((rel_s.into_bytes(), line));
        }
    }
    let mut v = Vec::new();
    walk(root, root, &mut v);
    v.sort();
    v.into_iter().map(|(_, l)| l + "\n").collect()
}

/// Hex sha256 of a text.
pub fn sha256_hex(s: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// The tree hash of `root`: sha256 of its [`tree_listing`] (what
/// `tests/boot/treehash.sh` prints inside a booted guest).
pub fn tree_hash(root: &Path) -> String {
    sha256_hex(&tree_listing(root))
}

/// One member of a hand-made tar: a name, a type flag (`b'0'` file, `b'5'`
/// directory, `b'2'` symlink, `b'3'` character device, …), data and a link
/// target.
#[derive(Clone, Debug)]
pub struct RawEntry {
    /// The name, exactly as stored.
    pub name: String,
    /// The ustar type flag.
    pub typeflag: u8,
    /// File data.
    pub data: Vec<u8>,
    /// Link target.
    pub link: String,
}

impl RawEntry {
    /// A regular file.
    pub fn file(name: &str, data: &str) -> RawEntry {
        RawEntry {
            name: name.into(),
            typeflag: b'0',
            data: data.as_bytes().to_vec(),
            link: String::new(),
        }
    }

    /// Any other member, without data.
    pub fn special(name: &str, typeflag: u8, link: &str) -> RawEntry {
        RawEntry {
            name: name.into(),
            typeflag,
            data: Vec::new(),
            link: link.into(),
        }
    }
}

/// A ustar archive of `entries` written byte for byte, with no check at all
/// (so a test can seal what no well-behaved packer would), and the two
/// end-of-archive blocks.
pub fn ustar(entries: &[RawEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut h = [0u8; 512];
        let name = e.name.as_bytes();
        h[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
        let mode = if e.typeflag == b'5' { 0o755 } else { 0o644 };
        h[100..108].copy_from_slice(format!("{mode:07o}\0").as_bytes());
        h[108..116].copy_from_slice(b"0000000\0");
        h[116..124].copy_from_slice(b"0000000\0");
        h[124..136].copy_from_slice(format!("{:011o}\0", e.data.len()).as_bytes());
        h[136..148].copy_from_slice(format!("{:011o}\0", 1_700_000_000u64).as_bytes());
        h[156] = e.typeflag;
        let link = e.link.as_bytes();
        h[157..157 + link.len().min(100)].copy_from_slice(&link[..link.len().min(100)]);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(&e.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// Seals the folder `src` as serial 1 for `target` (valid from five minutes
/// ago for a day), signed by `key`, encrypted to `recipients`, into `out`;
/// returns the bundle's bytes.
pub fn seal_dir(
    target: &Target,
    src: &Path,
    recipients: Vec<Recipient>,
    key: &SigningKey,
    out: &Path,
) -> Vec<u8> {
    let now = OffsetDateTime::now_utc();
    seal_to_file(
        &SealParams {
            target: target.clone(),
            site: None,
            serial: 1,
            created: now - Duration::minutes(5),
            expires: now + Duration::days(1),
            policy: Policy::default(),
            recipients,
        },
        Source::Dir {
            path: src,
            keep_owners: false,
        },
        key,
        out,
        &AtomicU64::new(0),
    )
    .expect("seal");
    std::fs::read(out).expect("read bundle")
}

/// Seals the [`ustar`] of `entries` (unchecked: a hostile payload under a
/// valid signature) as a bundle for `target` with `serial`, naming `site`,
/// signed by `key`, encrypted to `recipients`; returns the bundle's bytes.
pub fn seal_raw(
    entries: &[RawEntry],
    target: &Target,
    site: Option<SiteName>,
    serial: u64,
    recipients: &[Recipient],
    key: &SigningKey,
    dir: &Path,
) -> Vec<u8> {
    let stem = format!("{}-{serial}", target.to_string().replace('/', "-"));
    let tar_path = dir.join(format!("payload-{stem}.tar"));
    std::fs::write(&tar_path, ustar(entries)).expect("write tar");
    let out = dir.join(format!("sealed-{stem}.bundle"));
    let now = OffsetDateTime::now_utc();
    seal_to_file(
        &SealParams {
            target: target.clone(),
            site,
            serial,
            created: now - Duration::minutes(5),
            expires: now + Duration::days(1),
            policy: Policy::default(),
            recipients: recipients.to_vec(),
        },
        Source::Tar {
            file: std::fs::File::open(&tar_path).expect("open tar"),
            entries: entries.len() as u64,
        },
        key,
        &out,
        &AtomicU64::new(0),
    )
    .expect("seal");
    std::fs::read(&out).expect("read bundle")
}

/// Makes a directory refuse every rename into or out of it, for root too:
/// the immutable attribute (`chattr +i`), or — for an unprivileged run,
/// which may not set it — no write permission. Undone on drop. A real
/// filesystem condition that makes a commit fail midway.
#[derive(Debug)]
pub struct Immutable(PathBuf);

impl Immutable {
    /// Locks `dir`. Panics (naming why) when running as root on a
    /// filesystem or in a container that does not allow the attribute.
    pub fn new(dir: &Path) -> Immutable {
        use rustix::fs::{ioctl_getflags, ioctl_setflags, IFlags};
        use std::os::fd::AsFd;
        let fd = std::fs::File::open(dir).expect("open the directory to lock");
        let set = ioctl_getflags(fd.as_fd())
            .and_then(|f| ioctl_setflags(fd.as_fd(), f | IFlags::IMMUTABLE));
        if let Err(e) = set {
            assert!(
                !rustix::process::geteuid().is_root(),
                "cannot make {} immutable as root ({e}): the filesystem lacks the attribute \
                 or the process lacks CAP_LINUX_IMMUTABLE",
                dir.display()
            );
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).expect("chmod");
        }
        Immutable(dir.to_path_buf())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        use rustix::fs::{ioctl_getflags, ioctl_setflags, IFlags};
        use std::os::fd::AsFd;
        use std::os::unix::fs::PermissionsExt;
        if let Ok(fd) = std::fs::File::open(&self.0) {
            if let Ok(f) = ioctl_getflags(fd.as_fd()) {
                let _ = ioctl_setflags(fd.as_fd(), f - IFlags::IMMUTABLE);
            }
        }
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o755));
    }
}
