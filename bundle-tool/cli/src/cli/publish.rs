//! `publish BUNDLE --server URL --cert C --key K --ca CA`: upload a signed
//! bundle with the admin certificate, to the route of the target its
//! manifest names (`PUT /v1/bundles/host/{mac}` or `/v1/bundles/site/{name}`).
//!
//! The bundle's container and payload hash are checked first (a truncated
//! or corrupt file is not sent); the signature, target, expiry and serial
//! are the server's to check. 409 (a serial not above the highest ever
//! published: rollback) and 413 (over the server's size limit) get their
//! own messages.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use hyper::Method;
use satchel_format::container::read_header;
use satchel_format::verify::verify_payload;
use satchel_names::Target;
use serde_json::json;

use super::print_json;
use super::uploads::ServerArgs;

/// Largest bundle sent (the server's own default limit is 32 MiB).
pub const MAX_PUBLISH_BYTES: u64 = 512 << 20;

/// Arguments of `publish`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The signed bundle.
    pub bundle: PathBuf,
    /// The server and credentials.
    #[command(flatten)]
    pub server: ServerArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// The route a bundle for `target` is published to.
pub fn route(target: &Target) -> String {
    match target {
        Target::Host(mac) => format!("/v1/bundles/host/{mac}"),
        Target::Site(site) => format!("/v1/bundles/site/{}", site.as_str()),
    }
}

/// Runs `publish`.
pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    let mut bytes = Vec::new();
    File::open(&a.bundle)
        .with_context(|| format!("cannot open {}", a.bundle.display()))?
        .take(MAX_PUBLISH_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", a.bundle.display()))?;
    if bytes.len() as u64 > MAX_PUBLISH_BYTES {
        anyhow::bail!("{} is over {MAX_PUBLISH_BYTES} bytes", a.bundle.display());
    }
    let (header, payload) = read_header(BufReader::new(&bytes[..]))
        .with_context(|| format!("{} is not a valid bundle", a.bundle.display()))?;
    verify_payload(&header.manifest, payload).with_context(|| {
        format!(
            "{}: the payload does not match its manifest",
            a.bundle.display()
        )
    })?;
    let m = &header.manifest;
    let path = route(&m.target);
    let size = bytes.len();
    let client = a.server.client()?;
    let r = client.request(Method::PUT, &path, Some(bytes))?;
    let answer: serde_json::Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|_| json!(String::from_utf8_lossy(&r.body).into_owned()));
    match r.status {
        s if (200..300).contains(&s) => {
            if a.json {
                print_json(&json!({ "published": a.bundle, "route": path, "status": s, "answer": answer }))?;
            } else {
                println!("published {} ({} serial {}, {size} bytes) to {}{path}: {s}", a.bundle.display(), m.target, m.serial, client.url());
                println!("{}", serde_json::to_string_pretty(&answer)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        409 => anyhow::bail!(
            "the server refused {} serial {}: a bundle with this serial or a higher one was already published for {} \
             (rollback protection); create it again with a higher --serial ({})",
            a.bundle.display(),
            m.serial,
            m.target,
            r.error_text()
        ),
        413 => anyhow::bail!(
            "the server refused {}: {size} bytes is over its bundle size limit (max_bundle_bytes in its config) ({})",
            a.bundle.display(),
            r.error_text()
        ),
        s => anyhow::bail!("the server refused {} with {s}: {}", a.bundle.display(), r.error_text()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use satchel_names::{Mac, SiteName};

    #[test]
    fn routes_follow_the_target() {
        let mac = Mac::parse("AA:BB:CC:DD:EE:FF").expect("mac");
        assert_eq!(
            route(&Target::Host(mac)),
            "/v1/bundles/host/aa-bb-cc-dd-ee-ff"
        );
        let site = SiteName::parse("dc1").expect("site");
        assert_eq!(route(&Target::Site(site)), "/v1/bundles/site/dc1");
    }
}
