//! Who a bundle is encrypted to: `--recipient age1…` flags, `--recipients
//! FILE` files and the admin profile's `recipients`, gathered once and then
//! asked per target.
//!
//! A recipients file holds one recipient per line; blank lines and lines
//! starting with `#` are skipped. A line is either `<target> <age1…>` (the
//! form `satchel-pki enroll` writes into an image's `recipients.txt`: the
//! recipient is for that target's bundles only) or a bare `age1…` (for
//! every bundle, as age's own `-R` files are). Anything else is an error
//! naming the file and line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use satchel_format::Recipient;
use satchel_names::Target;

use super::profile::Profile;
use super::UsageError;

/// Largest recipients file read, in bytes (about 200,000 enrollment lines).
pub const MAX_RECIPIENTS_FILE_BYTES: u64 = 16 << 20;

/// The recipients of a run: some for every bundle, some per target.
#[derive(Debug, Default)]
pub struct Recipients {
    every: Vec<Recipient>,
    by_target: BTreeMap<String, Vec<Recipient>>,
}

impl Recipients {
    /// Gathers `--recipient` strings, `--recipients` files and the
    /// profile's `recipients` (each an `age1…` or a file path).
    pub fn gather(flags: &[String], files: &[PathBuf], profile: &Profile) -> anyhow::Result<Self> {
        let mut r = Recipients::default();
        for s in flags {
            r.every
                .push(parse_one(s).map_err(|e| UsageError(format!("--recipient {s:?}: {e}")))?);
        }
        for f in files {
            r.read_file(f)?;
        }
        for s in &profile.recipients {
            if s.starts_with("age1") {
                let rcpt = parse_one(s).map_err(|e| {
                    UsageError(format!("{}: recipient {s:?}: {e}", profile.describe()))
                })?;
                r.every.push(rcpt);
            } else {
                let path = profile
                    .path_of(&Some(PathBuf::from(s)))
                    .unwrap_or_else(|| PathBuf::from(s));
                r.read_file(&path)
                    .with_context(|| format!("named by {}", profile.describe()))?;
            }
        }
        Ok(r)
    }

    /// Reads one recipients file.
    pub fn read_file(&mut self, path: &Path) -> anyhow::Result<()> {
        let text = satchel_names::file::read_bounded_text(path, MAX_RECIPIENTS_FILE_BYTES)
            .context("cannot read the recipients file")?;
        self.parse_text(&text, &path.display().to_string())
    }

    /// Parses a recipients file's text; `name` is for messages.
    pub fn parse_text(&mut self, text: &str, name: &str) -> anyhow::Result<()> {
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |what: String| UsageError(format!("{name}:{}: {what}", i + 1));
            let mut words = line.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some(r), None, _) => self.every.push(parse_one(r).map_err(at)?),
                (Some(t), Some(r), None) => {
                    let target: Target = t.parse().map_err(|e| {
                        at(format!(
                            "{t:?} is not a target (host/<mac> or site/<name>): {e}"
                        ))
                    })?;
                    let rcpt = parse_one(r).map_err(at)?;
                    self.by_target
                        .entry(target.to_string())
                        .or_default()
                        .push(rcpt);
                }
                _ => {
                    return Err(
                        at("expected \"<target> <age1…>\" or \"age1…\" on a line".into()).into(),
                    )
                }
            }
        }
        Ok(())
    }

    /// The recipients of `target`'s bundle: its own, then every bundle's.
    /// The flag says whether any was for this target itself.
    pub fn for_target(&self, target: &Target) -> (Vec<Recipient>, bool) {
        let own = self
            .by_target
            .get(&target.to_string())
            .cloned()
            .unwrap_or_default();
        let has_own = !own.is_empty();
        let mut all = own;
        all.extend(self.every.iter().cloned());
        (all, has_own)
    }
}

fn parse_one(s: &str) -> Result<Recipient, String> {
    Recipient::parse(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use satchel_format::Identities;

    #[test]
    fn enrollment_lines_are_per_target_and_bare_lines_for_every_bundle() {
        let node = Identities::generate().recipients()[0].to_string();
        let admin = Identities::generate().recipients()[0].to_string();
        let mut r = Recipients::default();
        r.parse_text(
            &format!("# an image\nhost/aa-bb-cc-dd-ee-01 {node}\n\n{admin}\n"),
            "r.txt",
        )
        .expect("parse");
        let host: Target = "host/aa-bb-cc-dd-ee-01".parse().expect("target");
        let other: Target = "host/aa-bb-cc-dd-ee-02".parse().expect("target");
        let (all, own) = r.for_target(&host);
        assert!(own);
        assert_eq!(all.len(), 2);
        let (all, own) = r.for_target(&other);
        assert!(!own);
        assert_eq!(all.len(), 1);
    }

    #[test]
    fn bad_lines_name_the_file_and_line() {
        let node = Identities::generate().recipients()[0].to_string();
        for (text, want) in [
            ("age1nope\n".to_string(), "r.txt:1"),
            (format!("\nhost/zz {node}\n"), "r.txt:2: \"host/zz\""),
            (
                format!("host/aa-bb-cc-dd-ee-01 {node} extra\n"),
                "r.txt:1: expected",
            ),
            (
                "host/aa-bb-cc-dd-ee-01 ssh-ed25519\n".to_string(),
                "r.txt:1",
            ),
        ] {
            let mut r = Recipients::default();
            let e = r.parse_text(&text, "r.txt").expect_err(&text);
            assert!(e.to_string().contains(want), "{e} for {text:?}");
        }
    }
}
