//! Certificate scopes: what a client certificate may do, carried as SAN URIs.
//!
//! The form is `satchel:KIND:NAME` — `satchel:host:aa-bb-cc-dd-ee-ff`,
//! `satchel:site:dc1`, `satchel:admin:alice`: a URI without an authority
//! (RFC 3986 `scheme ":" path-rootless`), so RFC 5280 §4.2.1.6's rule that an
//! authority must be a fully qualified domain name or an IP address does not
//! apply, and the scope reads the same in every deployment. Every NAME is made
//! of unreserved characters only (`[a-z0-9._-]`), so no URI has a
//! percent-encoded spelling. The old form `satchel://KIND/NAME` put `host`,
//! `site` or `admin` where RFC 5280 wants a host name; it is refused
//! ([`ScopeError::OldForm`]) and `satchel-pki audit` flags it.
//!
//! Invariant: a certificate has exactly one scope. A host URI makes it
//! host-scoped (an accompanying site URI only names the site bundle it may
//! also fetch); a site URI alone makes it site-scoped; an admin URI alone
//! makes it admin-scoped. Any other combination, an unknown or non-canonical
//! `satchel:` URI (the scheme compared without regard to case) or a second
//! URI of the same kind is refused, never guessed at.

use std::fmt;

use satchel_names::{Mac, SiteName};

/// URI scheme of every scope URI.
pub const SCHEME: &str = "satchel";

/// What every scope URI starts with: the scheme and its colon.
pub const PREFIX: &str = "satchel:";

/// What the old, refused form started with (an authority naming the kind).
pub const OLD_PREFIX: &str = "satchel://";

/// The scope kinds, as URIs spell them.
pub const KINDS: [&str; 3] = ["host", "site", "admin"];

/// Whether `uri` is in the `satchel` scheme (compared without regard to case,
/// as RFC 3986 §3.1 says): such a URI must be a valid scope URI.
pub fn is_scope_uri(uri: &str) -> bool {
    uri.get(..PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(PREFIX))
}

/// Whether `uri` has the old form `satchel://…` (any case).
pub fn is_old_form(uri: &str) -> bool {
    uri.get(..OLD_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(OLD_PREFIX))
}

/// The kind (`host`, `site`, `admin`) a `satchel` URI claims, in the current
/// or the old form, valid or not; `None` for other URIs. The audit classifies
/// certificates with it, so an old or malformed scope URI still makes a
/// client certificate.
pub fn claimed_kind(uri: &str) -> Option<&'static str> {
    let rest = if is_old_form(uri) {
        &uri[OLD_PREFIX.len()..]
    } else if is_scope_uri(uri) {
        &uri[PREFIX.len()..]
    } else {
        return None;
    };
    KINDS.into_iter().find(|k| {
        rest.get(..k.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(k))
            && matches!(rest.as_bytes().get(k.len()), Some(b':' | b'/'))
    })
}

/// Errors from reading a scope out of SAN URIs.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScopeError {
    /// No `satchel:` URI at all.
    #[error("certificate carries no satchel: scope URI in its subjectAltName")]
    Missing,
    /// A `satchel:` URI that is not one of host/site/admin or whose name is invalid.
    #[error("invalid scope URI {0:?}")]
    Invalid(String),
    /// A URI of the old form `satchel://KIND/NAME`, whose authority is not a
    /// host name (RFC 5280 §4.2.1.6).
    #[error(
        "scope URI {0:?} has the old satchel://KIND/NAME form; reissue the certificate (it now carries satchel:KIND:NAME)"
    )]
    OldForm(String),
    /// Two URIs of one kind, or an admin URI beside a node URI.
    #[error("conflicting scope URIs: {0}")]
    Conflict(String),
}

/// What a certificate is allowed to act as.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// One node; `site` is the site it belongs to, if any.
    Host {
        /// The node's MAC.
        mac: Mac,
        /// The site whose bundle the node also applies.
        site: Option<SiteName>,
    },
    /// Every node of one site.
    Site(SiteName),
    /// An administrator.
    Admin(AdminName),
}

/// An administrator's name: `[a-z0-9][a-z0-9._-]{0,62}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AdminName(String);

impl AdminName {
    /// Validates an admin name.
    pub fn parse(s: &str) -> Result<Self, ScopeError> {
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 63
            && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
            && b.iter().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')
            });
        if ok {
            Ok(AdminName(s.to_string()))
        } else {
            Err(ScopeError::Invalid(format!("{PREFIX}admin:{s}")))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AdminName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One parsed `satchel:` URI.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Host(Mac),
    Site(SiteName),
    Admin(AdminName),
}

fn parse_uri(uri: &str) -> Result<Option<Part>, ScopeError> {
    let shown = || uri.chars().take(128).collect::<String>();
    if is_old_form(uri) {
        return Err(ScopeError::OldForm(shown()));
    }
    if !is_scope_uri(uri) {
        return Ok(None);
    }
    let invalid = || ScopeError::Invalid(shown());
    // Canonical spelling only: a lowercase scheme, so one scope has one URI.
    let rest = uri.strip_prefix(PREFIX).ok_or_else(invalid)?;
    let (kind, name) = rest.split_once(':').ok_or_else(invalid)?;
    match kind {
        // Strict: the canonical MAC only, so one node has one URI spelling.
        "host" => {
            let mac = Mac::parse(name).map_err(|_| invalid())?;
            if mac.to_string() != name {
                return Err(invalid());
            }
            Ok(Some(Part::Host(mac)))
        }
        "site" => Ok(Some(Part::Site(
            SiteName::parse(name).map_err(|_| invalid())?,
        ))),
        "admin" => Ok(Some(Part::Admin(AdminName::parse(name)?))),
        _ => Err(invalid()),
    }
}

impl Scope {
    /// Reads the scope from a certificate's SAN URIs. URIs of other schemes
    /// are ignored.
    pub fn from_uris<'a, I: IntoIterator<Item = &'a str>>(uris: I) -> Result<Scope, ScopeError> {
        let mut host = None;
        let mut site = None;
        let mut admin = None;
        fn set_once<T>(slot: &mut Option<T>, v: T, kind: &str) -> Result<(), ScopeError> {
            if slot.replace(v).is_some() {
                return Err(ScopeError::Conflict(format!("more than one {kind} URI")));
            }
            Ok(())
        }
        for uri in uris {
            match parse_uri(uri)? {
                None => {}
                Some(Part::Host(m)) => set_once(&mut host, m, "host")?,
                Some(Part::Site(s)) => set_once(&mut site, s, "site")?,
                Some(Part::Admin(a)) => set_once(&mut admin, a, "admin")?,
            }
        }
        match (host, site, admin) {
            (Some(mac), site, None) => Ok(Scope::Host { mac, site }),
            (None, Some(site), None) => Ok(Scope::Site(site)),
            (None, None, Some(a)) => Ok(Scope::Admin(a)),
            (None, None, None) => Err(ScopeError::Missing),
            _ => Err(ScopeError::Conflict(
                "an admin URI cannot share a certificate with a host or site URI".into(),
            )),
        }
    }

    /// The SAN URIs that express this scope, in the order certificates carry them.
    pub fn uris(&self) -> Vec<String> {
        match self {
            Scope::Host { mac, site } => {
                let mut v = vec![format!("{PREFIX}host:{mac}")];
                if let Some(s) = site {
                    v.push(format!("{PREFIX}site:{s}"));
                }
                v
            }
            Scope::Site(s) => vec![format!("{PREFIX}site:{s}")],
            Scope::Admin(a) => vec![format!("{PREFIX}admin:{a}")],
        }
    }

    /// A short label for logs and the audit trail: `host/<mac>`, `site/<name>`, `admin/<name>`.
    pub fn label(&self) -> String {
        match self {
            Scope::Host { mac, .. } => format!("host/{mac}"),
            Scope::Site(s) => format!("site/{s}"),
            Scope::Admin(a) => format!("admin/{a}"),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac() -> Mac {
        Mac::parse("aa-bb-cc-dd-ee-ff").expect("mac")
    }

    #[test]
    fn round_trip() {
        let site = SiteName::parse("dc1").expect("site");
        for scope in [
            Scope::Host {
                mac: mac(),
                site: None,
            },
            Scope::Host {
                mac: mac(),
                site: Some(site.clone()),
            },
            Scope::Site(site),
            Scope::Admin(AdminName::parse("alice").expect("admin")),
        ] {
            let uris = scope.uris();
            let back = Scope::from_uris(uris.iter().map(String::as_str)).expect("parse");
            assert_eq!(back, scope);
        }
    }

    #[test]
    fn uris_have_the_documented_form() {
        let scope = Scope::Host {
            mac: mac(),
            site: Some(SiteName::parse("dc1").expect("site")),
        };
        assert_eq!(
            scope.uris(),
            ["satchel:host:aa-bb-cc-dd-ee-ff", "satchel:site:dc1"]
        );
        assert_eq!(
            Scope::Admin(AdminName::parse("alice").expect("admin")).uris(),
            ["satchel:admin:alice"]
        );
    }

    #[test]
    fn other_schemes_are_ignored() {
        let s = Scope::from_uris(["https://example.test/", "satchel:site:dc1"]).expect("ok");
        assert_eq!(s, Scope::Site(SiteName::parse("dc1").expect("site")));
    }

    #[test]
    fn the_old_form_is_refused_with_a_reissue_hint() {
        for old in [
            &["satchel://host/aa-bb-cc-dd-ee-ff"][..],
            &["satchel://site/dc1"],
            &["satchel://admin/alice"],
            &["SATCHEL://admin/alice"],
            &["satchel:site:dc1", "satchel://site/dc1"],
        ] {
            let e = Scope::from_uris(old.iter().copied()).expect_err("old form");
            assert!(matches!(e, ScopeError::OldForm(_)), "{old:?}: {e:?}");
            assert!(e.to_string().contains("reissue"), "{e}");
        }
    }

    #[test]
    fn claimed_kinds() {
        assert_eq!(claimed_kind("satchel:host:aa-bb-cc-dd-ee-ff"), Some("host"));
        assert_eq!(claimed_kind("satchel://site/dc1"), Some("site"));
        assert_eq!(claimed_kind("Satchel:ADMIN:x"), Some("admin"));
        assert_eq!(claimed_kind("satchel:hostx:a"), None);
        assert_eq!(claimed_kind("satchel:printer:a"), None);
        assert_eq!(claimed_kind("https://example.net/host/a"), None);
    }

    #[test]
    fn hostile_uris_are_refused() {
        let cases: &[&[&str]] = &[
            &[],
            &["https://example.test/"],
            &["satchel:host:AA-BB-CC-DD-EE-FF"],
            &["satchel:host:aa:bb:cc:dd:ee:ff"],
            &["satchel:host:aa-bb-cc-dd-ee-ff:extra"],
            &["satchel:host:aa-bb-cc-dd-ee-ff/extra"],
            &["satchel:host:aa-bb-cc-dd-ee-%66f"],
            &["satchel:host:"],
            &["satchel:host/aa-bb-cc-dd-ee-ff"],
            &["SATCHEL:host:aa-bb-cc-dd-ee-ff"],
            &["satchel:HOST:aa-bb-cc-dd-ee-ff"],
            &["satchel:site:DC1"],
            &["satchel:site:../dc1"],
            &["satchel:admin:"],
            &["satchel:admin:Alice"],
            &["satchel:root:alice"],
            &["satchel:host"],
            &["satchel:"],
            &[
                "satchel:host:aa-bb-cc-dd-ee-ff",
                "satchel:host:aa-bb-cc-dd-ee-00",
            ],
            &["satchel:site:dc1", "satchel:site:dc2"],
            &["satchel:admin:alice", "satchel:host:aa-bb-cc-dd-ee-ff"],
            &["satchel:admin:alice", "satchel:site:dc1"],
            &["satchel:admin:alice", "satchel:admin:bob"],
        ];
        for c in cases {
            assert!(Scope::from_uris(c.iter().copied()).is_err(), "{c:?}");
        }
    }
}
