//! The boot index (`GET /v1/boot/{mac}`): which bundles to fetch, in apply
//! order (site, then host).
//!
//! Parsing is strict about what the fetcher relies on and refuses anything
//! it would have to guess: a target that is not one this image applies, a
//! duplicate target, a size over the limit, a URL that is not a path on the
//! same server, a malformed hash. The index is a hint that says *where*;
//! the signed manifest inside each bundle is what is trusted.

use satchel_names::Target;
use serde::Deserialize;

use crate::settings::MAX_INDEX_ENTRIES;

/// Longest bundle URL path accepted.
pub const MAX_URL_CHARS: usize = 512;

/// One bundle of the index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Whose bundle (`site/<name>` or `host/<mac>`).
    pub target: Target,
    /// Its serial (the manifest's is what is checked).
    pub serial: u64,
    /// sha256 of the raw bundle file, lowercase hex.
    pub sha256: [u8; 32],
    /// Size of the raw bundle file in bytes.
    pub size: u64,
    /// Absolute path on the same server to GET it from.
    pub url: String,
}

#[derive(Deserialize)]
struct RawEntry {
    target: String,
    serial: u64,
    sha256: String,
    size: u64,
    url: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawIndex {
    Wrapped { bundles: Vec<RawEntry> },
    Bare(Vec<RawEntry>),
}

/// Errors of the index.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum IndexError {
    /// Not the JSON shape expected.
    #[error("boot index is not valid JSON of the expected shape: {0}")]
    Json(String),
    /// More entries than [`MAX_INDEX_ENTRIES`].
    #[error("boot index lists {0} bundles, more than the {MAX_INDEX_ENTRIES} accepted")]
    TooMany(usize),
    /// A field value that cannot be used.
    #[error("boot index entry {index}: {reason}")]
    Bad {
        /// 0-based entry.
        index: usize,
        /// What is wrong.
        reason: String,
    },
}

/// Parses the index and keeps the entries for `mine` (the targets this
/// image applies), in `mine`'s order. Entries for other targets are refused:
/// a server that lists them is misbehaving.
pub fn parse(body: &[u8], mine: &[Target], max_size: u64) -> Result<Vec<Entry>, IndexError> {
    let raw: RawIndex =
        serde_json::from_slice(body).map_err(|e| IndexError::Json(e.to_string()))?;
    let raw = match raw {
        RawIndex::Wrapped { bundles } => bundles,
        RawIndex::Bare(v) => v,
    };
    if raw.len() > MAX_INDEX_ENTRIES {
        return Err(IndexError::TooMany(raw.len()));
    }
    let mut out: Vec<Entry> = Vec::new();
    for (index, r) in raw.into_iter().enumerate() {
        let bad = |reason: String| IndexError::Bad { index, reason };
        let target: Target = r.target.parse().map_err(|e| bad(format!("target: {e}")))?;
        if target.to_string() != r.target {
            return Err(bad(format!(
                "target {:?} is not canonical",
                short(&r.target)
            )));
        }
        if !mine.contains(&target) {
            return Err(bad(format!("target {target} is not one this node applies")));
        }
        if out.iter().any(|e| e.target == target) {
            return Err(bad(format!("target {target} is listed twice")));
        }
        let mut sha256 = [0u8; 32];
        if r.sha256.len() != 64
            || !r
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            || hex::decode_to_slice(&r.sha256, &mut sha256).is_err()
        {
            return Err(bad(format!(
                "sha256 {:?} is not 64 lowercase hex digits",
                short(&r.sha256)
            )));
        }
        if r.size == 0 || r.size > max_size {
            return Err(bad(format!("size {} is not within 1..={max_size}", r.size)));
        }
        if !r.url.starts_with("/v1/")
            || r.url.len() > MAX_URL_CHARS
            || r.url.contains("..")
            || !r.url.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(bad(format!(
                "url {:?} is not a /v1/ path on this server",
                short(&r.url)
            )));
        }
        out.push(Entry {
            target,
            serial: r.serial,
            sha256,
            size: r.size,
            url: r.url,
        });
    }
    out.sort_by_key(|e| mine.iter().position(|t| *t == e.target));
    Ok(out)
}

fn short(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn mine() -> Vec<Target> {
        vec![
            "site/dc1".parse().unwrap(),
            "host/aa-bb-cc-dd-ee-ff".parse().unwrap(),
        ]
    }

    fn entry(target: &str, url: &str) -> String {
        format!(r#"{{"target":"{target}","serial":3,"sha256":"{H}","size":100,"url":"{url}"}}"#)
    }

    #[test]
    fn parses_both_shapes_and_orders_site_first() {
        let host = entry(
            "host/aa-bb-cc-dd-ee-ff",
            "/v1/bundles/host/aa-bb-cc-dd-ee-ff",
        );
        let site = entry("site/dc1", "/v1/bundles/site/dc1");
        let wrapped = format!(r#"{{"bundles":[{host},{site}],"extra":1}}"#);
        let v = parse(wrapped.as_bytes(), &mine(), 1000).expect("ok");
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].target.to_string(), "site/dc1");
        let bare = format!("[{host}]");
        assert_eq!(parse(bare.as_bytes(), &mine(), 1000).expect("ok").len(), 1);
        assert!(parse(b"[]", &mine(), 1000).expect("ok").is_empty());
    }

    #[test]
    fn hostile_indexes_are_refused() {
        let host = |t: &str, url: &str| format!("[{}]", entry(t, url));
        let u = "/v1/bundles/host/aa-bb-cc-dd-ee-ff";
        let many = format!(
            "[{}]",
            vec![entry("site/dc1", "/v1/x"); MAX_INDEX_ENTRIES + 1].join(",")
        );
        let cases = vec![
            "".to_string(),
            "{".to_string(),
            "null".to_string(),
            r#"{"bundles":{}}"#.to_string(),
            host("host/11-22-33-44-55-66", u),
            host("host/AA-BB-CC-DD-EE-FF", u),
            host("site/dc2", u),
            host("nope/x", u),
            host("host/aa-bb-cc-dd-ee-ff", "https://elsewhere.test/v1/x"),
            host("host/aa-bb-cc-dd-ee-ff", "/v1/../../etc/passwd"),
            host("host/aa-bb-cc-dd-ee-ff", "/v1/a b"),
            host("host/aa-bb-cc-dd-ee-ff", "//evil.test/v1/"),
            format!(
                "[{},{}]",
                entry("site/dc1", "/v1/a"),
                entry("site/dc1", "/v1/b")
            ),
            host("host/aa-bb-cc-dd-ee-ff", u).replace(H, &H.to_uppercase()),
            host("host/aa-bb-cc-dd-ee-ff", u).replace(H, &H[..62]),
            host("host/aa-bb-cc-dd-ee-ff", u).replace(H, &format!("{}zz", &H[..62])),
            host("host/aa-bb-cc-dd-ee-ff", u).replace("\"size\":100", "\"size\":0"),
            host("host/aa-bb-cc-dd-ee-ff", u).replace("\"size\":100", "\"size\":1001"),
            host("host/aa-bb-cc-dd-ee-ff", u).replace("\"size\":100", "\"size\":-1"),
            host("host/aa-bb-cc-dd-ee-ff", u).replace("\"serial\":3", "\"serial\":\"3\""),
            host(
                "host/aa-bb-cc-dd-ee-ff",
                &format!("/v1/{}", "a".repeat(MAX_URL_CHARS)),
            ),
            many,
        ];
        for (i, c) in cases.iter().enumerate() {
            assert!(
                parse(c.as_bytes(), &mine(), 1000).is_err(),
                "case {i} accepted: {c}"
            );
        }
    }
}
