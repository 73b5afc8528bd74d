//! `keygen signing` and `keygen identity`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use satchel_format::keys::write_secret_file;
use satchel_format::manifest::format_time;
use satchel_format::{Identities, SigningKey};
use serde_json::json;

use super::print_json;

/// What to generate.
#[derive(Debug, clap::Subcommand)]
pub enum Keygen {
    /// An ed25519 signing key: PREFIX.key (PKCS#8 PEM, 0600) and PREFIX.pub (SPKI PEM).
    Signing {
        /// Path prefix of the two files.
        #[arg(long, value_name = "PREFIX")]
        out: PathBuf,
    },
    /// An age X25519 identity (0600), as age-keygen writes it.
    Identity {
        /// The identity file to create.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

/// Runs `keygen`.
pub fn run(k: &Keygen) -> anyhow::Result<ExitCode> {
    match k {
        Keygen::Signing { out } => {
            let key = SigningKey::generate();
            let (secret, public) = key
                .write_pair(out)
                .with_context(|| format!("cannot write the key pair {}.key/.pub", out.display()))?;
            if super::json_output() {
                print_json(&json!({
                    "key_id": key.key_id().to_string(),
                    "secret_key": secret,
                    "public_key": public,
                }))?;
            } else {
                println!("key id:     {}", key.key_id());
                println!("secret key: {} (keep it offline)", secret.display());
                println!(
                    "public key: {} (give it to nodes as a trusted key)",
                    public.display()
                );
            }
        }
        Keygen::Identity { out } => {
            let id = Identities::generate();
            let created = format_time(time::OffsetDateTime::now_utc());
            write_secret_file(out, id.to_file_text(&created).as_bytes())
                .with_context(|| format!("cannot write the identity {}", out.display()))?;
            let recipient = id.recipients()[0].to_string();
            if super::json_output() {
                print_json(&json!({ "recipient": recipient, "identity": out }))?;
            } else {
                println!("{recipient}");
                eprintln!(
                    "identity written to {} (0600); the line above is its recipient",
                    out.display()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
