//! Authorization: one pure function, [`decide`], over (peer scope, route, facts).
//!
//! Invariants:
//! - Only [`Route::is_anonymous`] routes are reachable without a client
//!   certificate: the upload POST, `/v1/ca`, `/v1/crl`, `/healthz`.
//! - A host certificate acts for its own MAC only; the site URI it may carry
//!   only adds its site bundle.
//! - A site certificate reads its site bundle and the host bundles whose
//!   *signed manifest* names that site (`HostFacts::site`, taken from the
//!   stored, verified manifest — never from the request).
//! - Only admin certificates publish, delete, list, pull uploads and read
//!   inventory and audit.
//!
//! The TLS layer has already checked the chain, the CRL and the clientAuth
//! EKU; this module only reads the scope.

use satchel_names::{Mac, SiteName, Target};
use satchel_pki::Scope;

/// What a request asks for (already parsed from method and path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /v1/boot/{mac}`.
    Boot(Mac),
    /// `GET /v1/bundles/{kind}/{name}`.
    BundleGet(Target),
    /// `PUT /v1/bundles/{kind}/{name}`.
    BundlePut(Target),
    /// `DELETE /v1/bundles/{kind}/{name}`.
    BundleDelete(Target),
    /// `GET /v1/bundles`.
    BundleList,
    /// `GET /v1/bundles/{kind}/{name}/history`.
    BundleHistory(Target),
    /// `GET /v1/bundles/{kind}/{name}/history/{serial}`.
    BundleVersion(Target, u64),
    /// `POST /v1/uploads/{mac}`.
    UploadPost(Mac),
    /// `GET /v1/uploads`.
    UploadList,
    /// `GET /v1/uploads/{id}`.
    UploadGet,
    /// `DELETE /v1/uploads/{id}`.
    UploadDelete,
    /// `POST /v1/reports/{mac}`.
    ReportPost(Mac),
    /// `GET /v1/nodes`.
    Nodes,
    /// `GET /v1/audit`.
    Audit,
    /// `GET /ui/` (the page), `/ui/fragment` (its content), `/ui/app.js`,
    /// `/ui/style.css`.
    Ui(UiPart),
    /// `GET /v1/ca`.
    Ca,
    /// `GET /v1/crl`.
    Crl,
    /// `GET /healthz`.
    Health,
}

/// A part of the status page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UiPart {
    /// The whole page.
    Page,
    /// Its content, for the in-place refresh.
    Fragment,
    /// The script.
    Script,
    /// The style sheet.
    Style,
}

impl Route {
    /// Routes reachable without a client certificate.
    pub fn is_anonymous(&self) -> bool {
        matches!(
            self,
            Route::UploadPost(_) | Route::Ca | Route::Crl | Route::Health
        )
    }

    /// Admin-only routes (used for audit: every admin action is recorded).
    pub fn is_admin(&self) -> bool {
        matches!(
            self,
            Route::BundlePut(_)
                | Route::BundleDelete(_)
                | Route::BundleList
                | Route::BundleHistory(_)
                | Route::BundleVersion(..)
                | Route::UploadList
                | Route::UploadGet
                | Route::UploadDelete
                | Route::Nodes
                | Route::Audit
                | Route::Ui(_)
        )
    }

    /// The MAC whose host bundle the decision needs facts about, if any.
    pub fn host_of_interest(&self) -> Option<Mac> {
        match self {
            Route::Boot(m) | Route::ReportPost(m) => Some(*m),
            Route::BundleGet(Target::Host(m)) => Some(*m),
            _ => None,
        }
    }
}

/// What the store knows about the host bundle of [`Route::host_of_interest`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// A host bundle is published for the MAC.
    pub exists: bool,
    /// The site its signed manifest names.
    pub site: Option<SiteName>,
}

/// The outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// A client certificate is required (401).
    NeedCertificate,
    /// The certificate's scope does not allow it (403).
    Forbidden,
}

/// Decides whether `peer` (the client certificate's scope, `None` without
/// one) may perform `route`, given `facts` about the host bundle concerned.
pub fn decide(peer: Option<&Scope>, route: &Route, facts: &HostFacts) -> Decision {
    use Decision::*;
    let Some(scope) = peer else {
        return if route.is_anonymous() {
            Allow
        } else {
            NeedCertificate
        };
    };
    let allow = |b: bool| if b { Allow } else { Forbidden };
    match scope {
        Scope::Admin(_) => allow(!matches!(route, Route::ReportPost(_))),
        Scope::Host { mac, site } => match route {
            Route::Ca | Route::Crl | Route::Health => Allow,
            Route::Boot(m) | Route::ReportPost(m) | Route::UploadPost(m) => allow(m == mac),
            Route::BundleGet(Target::Host(m)) => allow(m == mac),
            Route::BundleGet(Target::Site(s)) => allow(site.as_ref() == Some(s)),
            _ => Forbidden,
        },
        Scope::Site(own) => {
            let names_own_site = facts.site.as_ref() == Some(own);
            match route {
                Route::Ca | Route::Crl | Route::Health | Route::UploadPost(_) => Allow,
                // A site-wide image learns its MAC at boot; the index only
                // lists the host bundle if it names this site.
                Route::Boot(_) => Allow,
                Route::BundleGet(Target::Site(s)) => allow(s == own),
                Route::BundleGet(Target::Host(_)) => allow(facts.exists && names_own_site),
                // A node of a site image reports for itself: allowed unless
                // the MAC belongs to another site's host bundle.
                Route::ReportPost(_) => allow(!facts.exists || names_own_site),
                _ => Forbidden,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use satchel_pki::AdminName;

    fn mac(n: u8) -> Mac {
        Mac::from_octets([2, 0, 0, 0, 0, n])
    }
    fn site(s: &str) -> SiteName {
        SiteName::parse(s).expect("site")
    }

    /// The peers of the matrix.
    fn peers() -> Vec<(&'static str, Option<Scope>)> {
        vec![
            ("anon", None),
            (
                "host1",
                Some(Scope::Host {
                    mac: mac(1),
                    site: None,
                }),
            ),
            (
                "host1@dc1",
                Some(Scope::Host {
                    mac: mac(1),
                    site: Some(site("dc1")),
                }),
            ),
            ("site-dc1", Some(Scope::Site(site("dc1")))),
            (
                "admin",
                Some(Scope::Admin(AdminName::parse("alice").expect("admin"))),
            ),
        ]
    }

    /// (route label, route, facts).
    fn routes() -> Vec<(&'static str, Route, HostFacts)> {
        let dc1 = HostFacts {
            exists: true,
            site: Some(site("dc1")),
        };
        let dc2 = HostFacts {
            exists: true,
            site: Some(site("dc2")),
        };
        let nosite = HostFacts {
            exists: true,
            site: None,
        };
        let none = HostFacts::default();
        let h = |n| Target::Host(mac(n));
        let s = |n: &str| Target::Site(site(n));
        vec![
            ("boot own", Route::Boot(mac(1)), dc1.clone()),
            ("boot other", Route::Boot(mac(2)), dc1.clone()),
            ("get host own", Route::BundleGet(h(1)), dc1.clone()),
            (
                "get host other names dc1",
                Route::BundleGet(h(2)),
                dc1.clone(),
            ),
            (
                "get host other names dc2",
                Route::BundleGet(h(2)),
                dc2.clone(),
            ),
            ("get host other no site", Route::BundleGet(h(2)), nosite),
            ("get host missing", Route::BundleGet(h(2)), none.clone()),
            ("get site dc1", Route::BundleGet(s("dc1")), none.clone()),
            ("get site dc2", Route::BundleGet(s("dc2")), none.clone()),
            ("put host own", Route::BundlePut(h(1)), none.clone()),
            ("put site dc1", Route::BundlePut(s("dc1")), none.clone()),
            ("delete host own", Route::BundleDelete(h(1)), none.clone()),
            (
                "delete site dc1",
                Route::BundleDelete(s("dc1")),
                none.clone(),
            ),
            ("list bundles", Route::BundleList, none.clone()),
            ("history host own", Route::BundleHistory(h(1)), dc1.clone()),
            (
                "history site dc1",
                Route::BundleHistory(s("dc1")),
                none.clone(),
            ),
            (
                "version host own",
                Route::BundleVersion(h(1), 3),
                dc1.clone(),
            ),
            (
                "version site dc1",
                Route::BundleVersion(s("dc1"), 3),
                none.clone(),
            ),
            ("upload own", Route::UploadPost(mac(1)), none.clone()),
            ("upload other", Route::UploadPost(mac(2)), none.clone()),
            ("list uploads", Route::UploadList, none.clone()),
            ("get upload", Route::UploadGet, none.clone()),
            ("delete upload", Route::UploadDelete, none.clone()),
            ("report own", Route::ReportPost(mac(1)), dc1.clone()),
            ("report other dc1", Route::ReportPost(mac(2)), dc1),
            ("report other dc2", Route::ReportPost(mac(2)), dc2),
            (
                "report other unbundled",
                Route::ReportPost(mac(2)),
                none.clone(),
            ),
            ("nodes", Route::Nodes, none.clone()),
            ("audit", Route::Audit, none.clone()),
            ("status page", Route::Ui(UiPart::Page), none.clone()),
            ("status script", Route::Ui(UiPart::Script), none.clone()),
            ("ca", Route::Ca, none.clone()),
            ("crl", Route::Crl, none.clone()),
            ("healthz", Route::Health, none),
        ]
    }

    #[test]
    fn full_matrix() {
        use Decision::{Allow as A, Forbidden as F, NeedCertificate as N};
        // Columns: anon, host1, host1@dc1, site-dc1, admin.
        let want: &[(&str, [Decision; 5])] = &[
            ("boot own", [N, A, A, A, A]),
            ("boot other", [N, F, F, A, A]),
            ("get host own", [N, A, A, A, A]),
            ("get host other names dc1", [N, F, F, A, A]),
            ("get host other names dc2", [N, F, F, F, A]),
            ("get host other no site", [N, F, F, F, A]),
            ("get host missing", [N, F, F, F, A]),
            ("get site dc1", [N, F, A, A, A]),
            ("get site dc2", [N, F, F, F, A]),
            ("put host own", [N, F, F, F, A]),
            ("put site dc1", [N, F, F, F, A]),
            ("delete host own", [N, F, F, F, A]),
            ("delete site dc1", [N, F, F, F, A]),
            ("list bundles", [N, F, F, F, A]),
            ("history host own", [N, F, F, F, A]),
            ("history site dc1", [N, F, F, F, A]),
            ("version host own", [N, F, F, F, A]),
            ("version site dc1", [N, F, F, F, A]),
            ("upload own", [A, A, A, A, A]),
            ("upload other", [A, F, F, A, A]),
            ("list uploads", [N, F, F, F, A]),
            ("get upload", [N, F, F, F, A]),
            ("delete upload", [N, F, F, F, A]),
            ("report own", [N, A, A, A, F]),
            ("report other dc1", [N, F, F, A, F]),
            ("report other dc2", [N, F, F, F, F]),
            ("report other unbundled", [N, F, F, A, F]),
            ("nodes", [N, F, F, F, A]),
            ("audit", [N, F, F, F, A]),
            ("status page", [N, F, F, F, A]),
            ("status script", [N, F, F, F, A]),
            ("ca", [A, A, A, A, A]),
            ("crl", [A, A, A, A, A]),
            ("healthz", [A, A, A, A, A]),
        ];
        let peers = peers();
        let routes = routes();
        assert_eq!(want.len(), routes.len(), "every route is in the table");
        for ((label, route, facts), (wlabel, row)) in routes.iter().zip(want) {
            assert_eq!(label, wlabel);
            for ((pname, peer), expected) in peers.iter().zip(row) {
                assert_eq!(
                    decide(peer.as_ref(), route, facts),
                    *expected,
                    "{pname} × {label}"
                );
            }
        }
    }

    #[test]
    fn anonymous_routes_are_exactly_the_public_ones() {
        for (label, route, facts) in routes() {
            let d = decide(None, &route, &facts);
            assert_eq!(d == Decision::Allow, route.is_anonymous(), "{label}");
        }
    }

    #[test]
    fn a_host_site_uri_never_widens_host_access() {
        // The host cert naming dc1 still cannot read another host that names dc1.
        let peer = Scope::Host {
            mac: mac(1),
            site: Some(site("dc1")),
        };
        let facts = HostFacts {
            exists: true,
            site: Some(site("dc1")),
        };
        for n in 2..=20 {
            let r = Route::BundleGet(Target::Host(mac(n)));
            assert_eq!(decide(Some(&peer), &r, &facts), Decision::Forbidden);
        }
    }
}
