//! Certificate scopes: what a client certificate may do, carried as SAN URIs.
//!
//! The form is `https://DOMAIN/satchel/KIND/NAME`, where DOMAIN is the
//! deployment's own domain (the one its CA was created for, [`Domain`]):
//! `https://example.net/satchel/host/aa-bb-cc-dd-ee-ff`,
//! `https://example.net/satchel/site/dc1`,
//! `https://example.net/satchel/admin/alice`. The authority is a fully
//! qualified domain name, as RFC 5280 §4.2.1.6 requires of a URI with an
//! authority, in a scheme every X.509 linter knows; the path says what the
//! certificate is, and reads the same in every deployment. Every NAME is made
//! of unreserved characters only (`[a-z0-9._-]`), so no URI has a
//! percent-encoded spelling. The scope is an identifier, not a locator:
//! nothing is ever fetched from it.
//!
//! The CA names the deployment's domain in its own certificate, as the SAN
//! URI `https://DOMAIN/satchel/ca` ([`ca_uri`]), and issues every scope URI
//! under it. The server trusts a certificate because the CA signed it, not
//! because of the name in it, so it does not compare domains; `satchel-pki
//! audit` flags a scope URI whose domain is not its CA's.
//!
//! Two older forms are refused ([`ScopeError::OldForm`]) and flagged by the
//! audit, with a hint to reissue: `satchel://KIND/NAME` (it put `host`,
//! `site` or `admin` where RFC 5280 wants a host name) and `satchel:KIND:NAME`
//! (conforming, but in a scheme linters do not know).
//!
//! Invariant: a certificate has exactly one scope. A host URI makes it
//! host-scoped (an accompanying site URI only names the site bundle it may
//! also fetch); a site URI alone makes it site-scoped; an admin URI alone
//! makes it admin-scoped. Any other combination, a scope URI ([`is_scope_uri`]:
//! `https`, any case, whose path starts `/satchel/`, any case) that is not in
//! the canonical form (lowercase, no port, userinfo, query or fragment, a
//! known KIND, a valid NAME), scope URIs naming different domains, or a
//! second URI of the same kind is refused, never guessed at.

use std::fmt;

use satchel_names::{Mac, SiteName};

/// URI scheme of every scope URI.
pub const SCHEME: &str = "https";

/// The path every scope URI's path starts with, after the domain.
pub const PATH_PREFIX: &str = "/satchel/";

/// The scheme of the two older, refused forms (`satchel://KIND/NAME` and
/// `satchel:KIND:NAME`).
pub const OLD_SCHEME: &str = "satchel";

/// The scope kinds, as URIs spell them.
pub const KINDS: [&str; 3] = ["host", "site", "admin"];

/// What the CA certificate's own URI ends with, after the domain.
pub const CA_PATH: &str = "/satchel/ca";

/// The deployment's domain: a fully qualified domain name in the preferred
/// name syntax (RFC 1034 §3.5), lowercase, two labels or more, at most 253
/// characters, no trailing dot, a last label that is not all digits (so it
/// cannot be read as an IPv4 address).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Domain(String);

impl Domain {
    /// Validates a domain given by a person: case is folded and one trailing
    /// dot dropped, then the rules above apply.
    pub fn parse(input: &str) -> Result<Domain, ScopeError> {
        let s = input
            .strip_suffix('.')
            .unwrap_or(input)
            .to_ascii_lowercase();
        Domain::parse_canonical(&s)
            .ok_or_else(|| ScopeError::Domain(input.chars().take(80).collect()))
    }

    /// The canonical spelling only, as in a certificate.
    fn parse_canonical(s: &str) -> Option<Domain> {
        let labels: Vec<&str> = s.split('.').collect();
        let ok = s.len() <= 253
            && labels.len() >= 2
            && labels.iter().all(|label| {
                let b = label.as_bytes();
                !b.is_empty()
                    && b.len() <= 63
                    && b.iter()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                    && b[0] != b'-'
                    && b[b.len() - 1] != b'-'
            })
            && labels
                .last()
                .is_some_and(|l| !l.bytes().all(|c| c.is_ascii_digit()));
        ok.then(|| Domain(s.to_string()))
    }

    /// The domain as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The SAN URI a CA certificate carries to name its deployment's domain.
pub fn ca_uri(domain: &Domain) -> String {
    format!("{SCHEME}://{domain}{CA_PATH}")
}

/// The domain a CA certificate's SAN URIs name ([`ca_uri`]), if exactly one.
pub fn domain_of_ca<'a, I: IntoIterator<Item = &'a str>>(uris: I) -> Option<Domain> {
    let mut found = uris.into_iter().filter_map(|u| {
        let (domain, path) = split_https(u)?;
        (path == CA_PATH).then(|| Domain::parse_canonical(domain))?
    });
    let first = found.next()?;
    found.next().is_none().then_some(first)
}

/// `https://AUTHORITY/PATH…` (scheme compared without regard to case, as
/// RFC 3986 §3.1 says) split into the authority and the rest, which starts
/// with `/`; `None` for anything else.
fn split_https(uri: &str) -> Option<(&str, &str)> {
    let prefix = "https://";
    let head = uri.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = &uri[prefix.len()..];
    let slash = rest.find('/')?;
    Some((&rest[..slash], &rest[slash..]))
}

/// Whether `uri` is a scope URI, canonical or not: `https` (any case) with a
/// path starting `/satchel/` (any case). Such a URI must be a valid scope URI.
pub fn is_scope_uri(uri: &str) -> bool {
    split_https(uri).is_some_and(|(_, path)| {
        path.get(..PATH_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(PATH_PREFIX))
    }) && !is_ca_uri(uri)
}

fn is_ca_uri(uri: &str) -> bool {
    split_https(uri).is_some_and(|(_, path)| path.eq_ignore_ascii_case(CA_PATH))
}

/// Whether `uri` has one of the older forms, `satchel://KIND/NAME` or
/// `satchel:KIND:NAME` (scheme in any case).
pub fn is_old_form(uri: &str) -> bool {
    uri.get(..OLD_SCHEME.len() + 1)
        .is_some_and(|p| p.eq_ignore_ascii_case("satchel:"))
}

/// The kind (`host`, `site`, `admin`) a scope URI claims, in the current or
/// an older form, valid or not; `None` for other URIs. The audit classifies
/// certificates with it, so an old or malformed scope URI still makes a
/// client certificate.
pub fn claimed_kind(uri: &str) -> Option<&'static str> {
    let rest = if is_scope_uri(uri) {
        split_https(uri).map(|(_, path)| &path[PATH_PREFIX.len()..])?
    } else if is_old_form(uri) {
        let r = &uri[OLD_SCHEME.len() + 1..];
        r.strip_prefix("//").unwrap_or(r)
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
    /// No scope URI at all.
    #[error(
        "certificate carries no scope URI (https://DOMAIN/satchel/KIND/NAME) in its subjectAltName"
    )]
    Missing,
    /// A scope URI that is not canonical, not one of host/site/admin, or
    /// whose name is invalid.
    #[error(
        "invalid scope URI {0:?}: the form is https://DOMAIN/satchel/host/MAC, …/site/NAME or …/admin/NAME, lowercase, nothing after NAME"
    )]
    Invalid(String),
    /// A URI of an older form, `satchel://KIND/NAME` or `satchel:KIND:NAME`.
    #[error(
        "scope URI {0:?} has an older form that is no longer accepted; reissue the certificate (it now carries https://DOMAIN/satchel/KIND/NAME)"
    )]
    OldForm(String),
    /// Two URIs of one kind, an admin URI beside a node URI, or scope URIs
    /// naming different domains.
    #[error("conflicting scope URIs: {0}")]
    Conflict(String),
    /// Not a fully qualified domain name.
    #[error(
        "{0:?} is not a fully qualified domain name (letters, digits and hyphens in two labels or more, e.g. example.net)"
    )]
    Domain(String),
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
            Err(ScopeError::Invalid(format!("admin name {s:?}")))
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

/// One parsed scope URI.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Host(Mac),
    Site(SiteName),
    Admin(AdminName),
}

fn parse_uri(uri: &str) -> Result<Option<(Domain, Part)>, ScopeError> {
    let shown = || uri.chars().take(128).collect::<String>();
    if is_old_form(uri) {
        return Err(ScopeError::OldForm(shown()));
    }
    if !is_scope_uri(uri) {
        return Ok(None);
    }
    let invalid = || ScopeError::Invalid(shown());
    // Canonical spelling only (lowercase scheme and path, a bare domain), so
    // one scope has one URI.
    let rest = uri.strip_prefix("https://").ok_or_else(invalid)?;
    let (domain, path) = rest.split_once('/').ok_or_else(invalid)?;
    let domain = Domain::parse_canonical(domain).ok_or_else(invalid)?;
    let path = path.strip_prefix("satchel/").ok_or_else(invalid)?;
    let (kind, name) = path.split_once('/').ok_or_else(invalid)?;
    let part = match kind {
        // Strict: the canonical MAC only, so one node has one URI spelling.
        "host" => {
            let mac = Mac::parse(name).map_err(|_| invalid())?;
            if mac.to_string() != name {
                return Err(invalid());
            }
            Part::Host(mac)
        }
        "site" => Part::Site(SiteName::parse(name).map_err(|_| invalid())?),
        "admin" => Part::Admin(AdminName::parse(name).map_err(|_| invalid())?),
        _ => return Err(invalid()),
    };
    Ok(Some((domain, part)))
}

impl Scope {
    /// Reads the scope from a certificate's SAN URIs. Other URIs are ignored.
    pub fn from_uris<'a, I: IntoIterator<Item = &'a str>>(uris: I) -> Result<Scope, ScopeError> {
        Self::from_uris_with_domain(uris).map(|(scope, _)| scope)
    }

    /// [`Scope::from_uris`], also giving the one domain its URIs name.
    pub fn from_uris_with_domain<'a, I: IntoIterator<Item = &'a str>>(
        uris: I,
    ) -> Result<(Scope, Domain), ScopeError> {
        let mut host = None;
        let mut site = None;
        let mut admin = None;
        let mut domain: Option<Domain> = None;
        fn set_once<T>(slot: &mut Option<T>, v: T, kind: &str) -> Result<(), ScopeError> {
            if slot.replace(v).is_some() {
                return Err(ScopeError::Conflict(format!("more than one {kind} URI")));
            }
            Ok(())
        }
        for uri in uris {
            let Some((d, part)) = parse_uri(uri)? else {
                continue;
            };
            match &domain {
                Some(seen) if *seen != d => {
                    return Err(ScopeError::Conflict(format!(
                        "scope URIs name two domains, {seen} and {d}"
                    )))
                }
                _ => domain = Some(d),
            }
            match part {
                Part::Host(m) => set_once(&mut host, m, "host")?,
                Part::Site(s) => set_once(&mut site, s, "site")?,
                Part::Admin(a) => set_once(&mut admin, a, "admin")?,
            }
        }
        let scope = match (host, site, admin) {
            (Some(mac), site, None) => Scope::Host { mac, site },
            (None, Some(site), None) => Scope::Site(site),
            (None, None, Some(a)) => Scope::Admin(a),
            (None, None, None) => return Err(ScopeError::Missing),
            _ => {
                return Err(ScopeError::Conflict(
                    "an admin URI cannot share a certificate with a host or site URI".into(),
                ))
            }
        };
        let domain = domain.ok_or(ScopeError::Missing)?;
        Ok((scope, domain))
    }

    /// The SAN URIs that express this scope under `domain`, in the order
    /// certificates carry them.
    pub fn uris(&self, domain: &Domain) -> Vec<String> {
        let uri = |kind: &str, name: &dyn fmt::Display| {
            format!("{SCHEME}://{domain}{PATH_PREFIX}{kind}/{name}")
        };
        match self {
            Scope::Host { mac, site } => {
                let mut v = vec![uri("host", mac)];
                if let Some(s) = site {
                    v.push(uri("site", s));
                }
                v
            }
            Scope::Site(s) => vec![uri("site", s)],
            Scope::Admin(a) => vec![uri("admin", a)],
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

    fn dom() -> Domain {
        Domain::parse("example.net").expect("domain")
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
            let uris = scope.uris(&dom());
            let back =
                Scope::from_uris_with_domain(uris.iter().map(String::as_str)).expect("parse");
            assert_eq!(back, (scope, dom()));
        }
    }

    #[test]
    fn uris_have_the_documented_form() {
        let scope = Scope::Host {
            mac: mac(),
            site: Some(SiteName::parse("dc1").expect("site")),
        };
        assert_eq!(
            scope.uris(&dom()),
            [
                "https://example.net/satchel/host/aa-bb-cc-dd-ee-ff",
                "https://example.net/satchel/site/dc1"
            ]
        );
        assert_eq!(
            Scope::Admin(AdminName::parse("alice").expect("admin")).uris(&dom()),
            ["https://example.net/satchel/admin/alice"]
        );
        assert_eq!(ca_uri(&dom()), "https://example.net/satchel/ca");
    }

    #[test]
    fn domains() {
        for (input, canonical) in [
            ("example.net", "example.net"),
            ("Boot.Example.NET.", "boot.example.net"),
            ("a-1.b2.test", "a-1.b2.test"),
            ("x.y", "x.y"),
        ] {
            assert_eq!(Domain::parse(input).expect(input).as_str(), canonical);
        }
        let long_label = "a".repeat(64);
        let too_long = format!("{}.net", vec!["a".repeat(63); 4].join("."));
        for bad in [
            "",
            ".",
            "localhost",
            "host",
            "example..net",
            ".example.net",
            "example.net..",
            "-a.net",
            "a-.net",
            "a_b.net",
            "exa mple.net",
            "192.0.2.1",
            "1.2",
            "[::1]",
            "example.net:443",
            "u@example.net",
            "ex\u{e9}mple.net",
            long_label.as_str(),
            too_long.as_str(),
        ] {
            assert!(Domain::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_ca_uri_names_the_domain_and_is_not_a_scope() {
        let ca = ca_uri(&dom());
        assert_eq!(domain_of_ca([ca.as_str()]), Some(dom()));
        assert_eq!(domain_of_ca(["https://example.net/satchel/cax"]), None);
        assert_eq!(
            domain_of_ca([ca.as_str(), "https://example.org/satchel/ca"]),
            None
        );
        assert_eq!(domain_of_ca(["https://localhost/satchel/ca"]), None);
        assert!(!is_scope_uri(&ca));
        assert_eq!(claimed_kind(&ca), None);
        assert_eq!(Scope::from_uris([ca.as_str()]), Err(ScopeError::Missing));
    }

    #[test]
    fn other_uris_are_ignored() {
        let s = Scope::from_uris([
            "https://example.test/",
            "https://example.net/satchelx/host/aa-bb-cc-dd-ee-ff",
            "urn:x:y",
            "https://example.net/satchel/site/dc1",
        ])
        .expect("ok");
        assert_eq!(s, Scope::Site(SiteName::parse("dc1").expect("site")));
    }

    #[test]
    fn the_old_forms_are_refused_with_a_reissue_hint() {
        for old in [
            &["satchel://host/aa-bb-cc-dd-ee-ff"][..],
            &["satchel://site/dc1"],
            &["satchel://admin/alice"],
            &["SATCHEL://admin/alice"],
            &["satchel:host:aa-bb-cc-dd-ee-ff"],
            &["satchel:site:dc1"],
            &["Satchel:admin:alice"],
            &["https://example.net/satchel/site/dc1", "satchel:site:dc1"],
        ] {
            let e = Scope::from_uris(old.iter().copied()).expect_err("old form");
            assert!(matches!(e, ScopeError::OldForm(_)), "{old:?}: {e:?}");
            assert!(e.to_string().contains("reissue"), "{e}");
        }
    }

    #[test]
    fn claimed_kinds() {
        assert_eq!(
            claimed_kind("https://example.net/satchel/host/aa-bb-cc-dd-ee-ff"),
            Some("host")
        );
        assert_eq!(claimed_kind("HTTPS://x/SATCHEL/ADMIN/x"), Some("admin"));
        assert_eq!(
            claimed_kind("https://localhost/satchel/site/a"),
            Some("site")
        );
        assert_eq!(claimed_kind("satchel:host:aa-bb-cc-dd-ee-ff"), Some("host"));
        assert_eq!(claimed_kind("satchel://site/dc1"), Some("site"));
        assert_eq!(claimed_kind("Satchel:ADMIN:x"), Some("admin"));
        assert_eq!(claimed_kind("https://example.net/satchel/hostx/a"), None);
        assert_eq!(claimed_kind("https://example.net/satchel/printer/a"), None);
        assert_eq!(claimed_kind("https://example.net/host/a"), None);
        assert_eq!(claimed_kind("satchel:printer:a"), None);
    }

    #[test]
    fn hostile_uris_are_refused() {
        let h = |rest: &str| format!("https://example.net/satchel/{rest}");
        let owned: Vec<Vec<String>> = vec![
            vec![],
            vec!["https://example.test/".into()],
            vec![h("host/AA-BB-CC-DD-EE-FF")],
            vec![h("host/aa:bb:cc:dd:ee:ff")],
            vec![h("host/aa-bb-cc-dd-ee-ff/extra")],
            vec![h("host/aa-bb-cc-dd-ee-ff?x")],
            vec![h("host/aa-bb-cc-dd-ee-ff#x")],
            vec![h("host/aa-bb-cc-dd-ee-%66f")],
            vec![h("host/")],
            vec![h("host")],
            vec![h("")],
            vec![h("HOST/aa-bb-cc-dd-ee-ff")],
            vec!["HTTPS://example.net/satchel/host/aa-bb-cc-dd-ee-ff".into()],
            vec!["https://example.net/SATCHEL/host/aa-bb-cc-dd-ee-ff".into()],
            vec!["https://Example.net/satchel/host/aa-bb-cc-dd-ee-ff".into()],
            vec!["https://example.net./satchel/host/aa-bb-cc-dd-ee-ff".into()],
            vec!["https://example.net:443/satchel/host/aa-bb-cc-dd-ee-ff".into()],
            vec!["https://u@example.net/satchel/host/aa-bb-cc-dd-ee-ff".into()],
            vec!["https://localhost/satchel/host/aa-bb-cc-dd-ee-ff".into()],
            vec!["https://192.0.2.1/satchel/host/aa-bb-cc-dd-ee-ff".into()],
            vec!["https:///satchel/host/aa-bb-cc-dd-ee-ff".into()],
            vec!["https://example.net//satchel/host/aa-bb-cc-dd-ee-ff".into()],
            vec![h("site/DC1")],
            vec![h("site/../dc1")],
            vec![h("site/dc1/..")],
            vec![h("admin/")],
            vec![h("admin/Alice")],
            vec![h("root/alice")],
            vec![h("ca")],
            vec![h("host/aa-bb-cc-dd-ee-ff"), h("host/aa-bb-cc-dd-ee-00")],
            vec![h("site/dc1"), h("site/dc2")],
            vec![h("admin/alice"), h("host/aa-bb-cc-dd-ee-ff")],
            vec![h("admin/alice"), h("site/dc1")],
            vec![h("admin/alice"), h("admin/bob")],
            vec![
                h("host/aa-bb-cc-dd-ee-ff"),
                "https://example.org/satchel/site/dc1".into(),
            ],
        ];
        for c in &owned {
            assert!(
                Scope::from_uris(c.iter().map(String::as_str)).is_err(),
                "{c:?}"
            );
        }
    }
}
