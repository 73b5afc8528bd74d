//! `demo [--dir DIR]`: the whole offline flow on sample data — keys, a
//! sample tree, a bundle, its verification and its opening over a small
//! "node root" — printing each step and the equivalent command.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;

use anyhow::Context;
use satchel_format::keys::write_secret_file;
use satchel_format::manifest::{format_time, Policy};
use satchel_format::open::{open_into, verify_file};
use satchel_format::seal::{seal_to_file, SealParams, Source};
use satchel_format::verify::Checks;
use satchel_format::{Identities, Mac, SigningKey, SiteName, Target};
use time::OffsetDateTime;

use super::manifest_lines;

/// Arguments of `demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to put the demo's files (created; must be empty if it exists).
    /// Default: a new directory under the system's temporary directory.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// The demo node's MAC.
const DEMO_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

fn step(n: u32, what: &str, cmd: &str) {
    println!("\n{n}. {what}\n   $ {cmd}");
}

/// Runs `demo`.
pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    let dir = match &a.dir {
        Some(d) => {
            fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
            if fs::read_dir(d)?.next().is_some() {
                return Err(
                    super::UsageError(format!("--dir {} is not empty", d.display())).into(),
                );
            }
            d.clone()
        }
        None => tempfile::Builder::new()
            .prefix("satchel-demo-")
            .tempdir()
            .context("cannot create a temporary directory")?
            .keep(),
    };
    let p = |rel: &str| dir.join(rel);
    println!("satchel demo in {}", dir.display());

    fs::create_dir(p("keys"))?;
    step(
        1,
        "an admin signing key",
        "satchel-bundle keygen signing --out keys/admin",
    );
    let admin = SigningKey::generate();
    admin.write_pair(&p("keys/admin"))?;
    println!("   key id {}", admin.key_id());

    step(
        2,
        "age identities for the node and the admin",
        "satchel-bundle keygen identity --out keys/node.age",
    );
    let created = format_time(OffsetDateTime::now_utc());
    let node_id = Identities::generate();
    write_secret_file(
        &p("keys/node.age"),
        node_id.to_file_text(&created).as_bytes(),
    )?;
    let admin_id = Identities::generate();
    write_secret_file(
        &p("keys/admin.age"),
        admin_id.to_file_text(&created).as_bytes(),
    )?;
    let node_r = node_id.recipients().remove(0);
    let admin_r = admin_id.recipients().remove(0);
    println!("   node  {node_r}\n   admin {admin_r}");

    step(3, "a sample configuration tree", "find tree");
    sample_tree(&p("tree"))?;
    for line in walk(&p("tree"))? {
        println!("   {line}");
    }

    let mac = Mac::from_octets(DEMO_MAC);
    let out = p("node.bundle");
    step(
        4,
        "a host bundle for the node, encrypted to the node and the admin, signed",
        &format!(
            "satchel-bundle create --mac {mac} --site demo --serial 1 --expires 30d \\\n       --sign-key keys/admin.key --recipient {node_r} --recipient {admin_r} \\\n       --from-dir tree -o node.bundle"
        ),
    );
    let now = OffsetDateTime::now_utc();
    let params = SealParams {
        target: Target::Host(mac),
        site: Some(SiteName::parse("demo")?),
        serial: 1,
        created: now,
        expires: now + time::Duration::days(30),
        policy: Policy::default(),
        recipients: vec![node_r, admin_r],
    };
    let counter = AtomicU64::new(0);
    let source = Source::Dir {
        path: &p("tree"),
        keep_owners: false,
    };
    let sealed = seal_to_file(&params, source, &admin, &out, &counter)?;
    println!("   {} bytes", sealed.bundle_size);
    for line in manifest_lines(&sealed.manifest) {
        println!("   {line}");
    }

    step(
        5,
        "verify it as the node would",
        &format!("satchel-bundle verify node.bundle --trust keys/admin.pub --mac {mac}"),
    );
    let mut checks = Checks::new(vec![admin.verifying_key()]);
    checks.target = Some(Target::Host(mac));
    checks.serial_floor = 1;
    let v = verify_file(&out, &checks)?;
    println!("   valid, signed by {}", v.signer());

    step(
        6,
        "a bundle for another node is refused",
        "satchel-bundle verify node.bundle --trust keys/admin.pub --mac 52:54:00:00:00:01",
    );
    let mut other = checks.clone();
    other.target = Some(Target::Host(Mac::from_octets([0x52, 0x54, 0, 0, 0, 1])));
    match verify_file(&out, &other) {
        Err(e) => println!("   refused: {e}"),
        Ok(_) => anyhow::bail!("a bundle for another node was accepted"),
    }

    step(7, "open it over a node root (all or nothing)", "satchel-bundle open node.bundle --identity keys/node.age --trust keys/admin.pub --into root");
    fs::create_dir_all(p("root/etc"))?;
    fs::write(p("root/etc/hostname"), "localhost\n")?;
    fs::write(p("root/etc/old.conf"), "stale\n")?;
    let (_, applied) = open_into(
        &out,
        &checks,
        &node_id,
        &p("root"),
        &Default::default(),
        &counter,
    )?;
    println!("   {} entries applied", applied.summary.entries.len());
    for line in super::changes_lines(&applied.changes) {
        println!("   {line}");
    }
    println!("   the node root now holds:");
    for line in walk(&p("root"))? {
        println!("   {line}");
    }
    println!(
        "\nEverything is in {}; inspect the bundle with standard tools as FORMAT.md shows.",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn sample_tree(root: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(root.join("etc/satchel"))?;
    fs::create_dir_all(root.join("etc/ssh/sshd_config.d"))?;
    fs::write(root.join("etc/hostname"), "node-12\n")?;
    fs::write(root.join("etc/satchel/role"), "compute\n")?;
    fs::write(
        root.join("etc/ssh/sshd_config.d/10-satchel.conf"),
        "PasswordAuthentication no\n",
    )?;
    fs::write(root.join("etc/.wh.old.conf"), "")?;
    symlink("satchel/role", root.join("etc/role"))?;
    for (f, mode) in [
        ("etc", 0o755),
        ("etc/satchel", 0o755),
        ("etc/ssh", 0o755),
        ("etc/ssh/sshd_config.d", 0o755),
        ("etc/hostname", 0o644),
        ("etc/satchel/role", 0o644),
        ("etc/ssh/sshd_config.d/10-satchel.conf", 0o600),
        ("etc/.wh.old.conf", 0o644),
    ] {
        fs::set_permissions(root.join(f), fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// `mode path [-> target]` lines, sorted.
fn walk(root: &Path) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d)? {
            let e = e?;
            let path = e.path();
            let meta = fs::symlink_metadata(&path)?;
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .display()
                .to_string();
            if meta.file_type().is_symlink() {
                out.push(format!(
                    "l      {rel} -> {}",
                    fs::read_link(&path)?.display()
                ));
            } else if meta.is_dir() {
                out.push(format!(
                    "d {:04o} {rel}/",
                    meta.permissions().mode() & 0o7777
                ));
                stack.push(path);
            } else {
                out.push(format!(
                    "- {:04o} {rel} ({} bytes)",
                    meta.permissions().mode() & 0o7777,
                    meta.len()
                ));
            }
        }
    }
    out.sort_by(|a, b| a[7..].cmp(&b[7..]));
    Ok(out)
}
