//! The admins' status page (`GET /ui/`): nodes with their staleness and
//! failures, bundles, the quarantine and the server's health, rendered on
//! the server from `server/ui/status.html` with minijinja.
//!
//! Invariants: every value reaches the page through the template engine
//! with HTML auto-escaping on (the template's name ends in `.html`), never
//! by string concatenation; a missing variable is an error, not an empty
//! string (`UndefinedBehavior::Strict`); the page carries no secret (no
//! key, no bundle or upload content). Routing and authorization (admin
//! certificates only) are the caller's.
//!
//! It does not read the store or the clock: [`render`] is pure over a
//! [`Snapshot`] the route assembles.

use std::sync::OnceLock;

use minijinja::{Environment, UndefinedBehavior};
use satchel_names::SiteName;
use serde::Serialize;

use crate::routes::reports::{NeverSeen, NodeView};
use crate::store::{BundleMeta, UploadMeta};

/// The page's template.
const TEMPLATE: &str = include_str!("../ui/status.html");
/// The script that refreshes the page in place.
pub const APP_JS: &str = include_str!("../ui/app.js");
/// The page's style sheet.
pub const STYLE_CSS: &str = include_str!("../ui/style.css");

/// Errors from reading the page's query or rendering it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UiError {
    /// A query parameter the page does not know or cannot read.
    #[error("{0}")]
    BadQuery(String),
    /// The template failed (a bug: it is checked in and tested).
    #[error("rendering the status page: {0}")]
    Render(#[from] minijinja::Error),
}

/// What the page is asked to show: `site=`, `stale=1`, `failed=1`, `page=`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Filters {
    /// Only nodes of this site.
    pub site: Option<String>,
    /// Only stale nodes.
    pub stale: bool,
    /// Only nodes whose last boot failed.
    pub failed: bool,
    /// Page number, from 1.
    #[serde(skip)]
    pub page: usize,
}

impl Filters {
    /// Parses the query string (without `?`); anything unknown or malformed
    /// is refused, so a mistyped filter is never silently ignored.
    pub fn parse(query: Option<&str>) -> Result<Filters, UiError> {
        let mut f = Filters {
            page: 1,
            ..Filters::default()
        };
        let bad = |m: String| UiError::BadQuery(m);
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let flag = |v: &str| match v {
                "1" | "on" | "true" => Ok(true),
                "" | "0" | "false" => Ok(false),
                _ => Err(bad(format!("{k} is 1 or 0"))),
            };
            match k {
                "site" if v.is_empty() => f.site = None,
                "site" => {
                    let s = SiteName::parse(v).map_err(|e| bad(format!("site: {e}")))?;
                    f.site = Some(s.to_string());
                }
                "stale" => f.stale = flag(v)?,
                "failed" => f.failed = flag(v)?,
                "page" => {
                    f.page = v
                        .parse()
                        .ok()
                        .filter(|p| *p >= 1)
                        .ok_or_else(|| bad("page is a number from 1".into()))?
                }
                _ => return Err(bad("known parameters: site, stale, failed, page".into())),
            }
        }
        Ok(f)
    }

    /// The query string of these filters (page aside), for page links.
    fn query(&self) -> String {
        let mut parts = Vec::new();
        if let Some(s) = &self.site {
            parts.push(format!("site={s}"));
        }
        if self.stale {
            parts.push("stale=1".into());
        }
        if self.failed {
            parts.push("failed=1".into());
        }
        parts.join("&")
    }

    fn admits(&self, n: &NodeView) -> bool {
        (!self.stale || n.stale)
            && (!self.failed || n.failed)
            && self
                .site
                .as_ref()
                .is_none_or(|s| n.site.as_ref() == Some(s))
    }
}

/// The server's health as the page shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Health {
    /// cRLNumber of the enforced CRL.
    pub crl_number: Option<u64>,
    /// Whether it is past its nextUpdate (still enforced).
    pub crl_stale: bool,
    /// Its nextUpdate (RFC 3339).
    pub crl_next_update: Option<String>,
    /// Whether the store answered.
    pub store_ok: bool,
    /// What the store said.
    pub store: String,
    /// Reports waiting to be forwarded.
    pub forward_backlog: u64,
    /// Uploads in the quarantine.
    pub quarantine_uploads: u64,
    /// Their bytes.
    pub quarantine_bytes: u64,
}

/// A published bundle, with whether it expires soon.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BundleRow {
    /// The stored metadata.
    #[serde(flatten)]
    pub meta: BundleMeta,
    /// Expires within the page's warning window.
    pub expiring_soon: bool,
}

/// Everything one rendering shows.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The server's name as the admin reached it.
    pub server: String,
    /// When (RFC 3339).
    pub generated: String,
    /// Health.
    pub health: Health,
    /// Every node, with staleness.
    pub nodes: Vec<NodeView>,
    /// Host bundles whose node never reported.
    pub never_seen: Vec<NeverSeen>,
    /// Published bundles.
    pub bundles: Vec<BundleRow>,
    /// The quarantine.
    pub uploads: Vec<UploadMeta>,
    /// Seconds between refreshes.
    pub refresh_secs: u64,
    /// Days before expiry a bundle is highlighted.
    pub expiring_days: u64,
    /// Most nodes on one page.
    pub page_nodes: usize,
}

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // The name ends in .html: minijinja escapes every value for HTML.
        if let Err(e) = env.add_template("status.html", TEMPLATE) {
            tracing::error!(error = %e, "the status page template does not compile");
        }
        env
    })
}

/// Renders the page (or, with `fragment`, only its content, for the
/// in-place refresh) for `filters`.
pub fn render(snap: &Snapshot, filters: &Filters, fragment: bool) -> Result<String, UiError> {
    let matched: Vec<&NodeView> = snap.nodes.iter().filter(|n| filters.admits(n)).collect();
    let per = snap.page_nodes.max(1);
    let pages = matched.len().div_ceil(per).max(1);
    let page = filters.page.clamp(1, pages);
    let ctx = Context {
        fragment,
        server: &snap.server,
        generated: &snap.generated,
        refresh_secs: snap.refresh_secs,
        expiring_days: snap.expiring_days,
        health: &snap.health,
        counts: Counts {
            nodes: snap.nodes.len(),
            stale: snap.nodes.iter().filter(|n| n.stale).count(),
            failed: snap.nodes.iter().filter(|n| n.failed).count(),
            never_seen: snap.never_seen.len(),
        },
        filters,
        query: filters.query(),
        nodes: matched
            .iter()
            .skip((page - 1) * per)
            .take(per)
            .copied()
            .collect(),
        matched: matched.len(),
        page,
        pages,
        never_seen: snap
            .never_seen
            .iter()
            .filter(|n| filters.site.is_none() || n.site == filters.site)
            .collect(),
        bundles: &snap.bundles,
        uploads: &snap.uploads,
    };
    let t = environment().get_template("status.html")?;
    Ok(t.render(minijinja::value::Serde(&ctx))?)
}

/// The template's variables.
#[derive(Serialize)]
struct Context<'a> {
    fragment: bool,
    server: &'a str,
    generated: &'a str,
    refresh_secs: u64,
    expiring_days: u64,
    health: &'a Health,
    counts: Counts,
    filters: &'a Filters,
    query: String,
    nodes: Vec<&'a NodeView>,
    matched: usize,
    page: usize,
    pages: usize,
    never_seen: Vec<&'a NeverSeen>,
    bundles: &'a [BundleRow],
    uploads: &'a [UploadMeta],
}

#[derive(Serialize)]
struct Counts {
    nodes: usize,
    stale: usize,
    failed: usize,
    never_seen: usize,
}

#[cfg(test)]
mod tests;
