//! `create --template DIR --inventory FILE --out-dir DIR`: one signed,
//! encrypted host bundle per inventory row.
//!
//! - The inventory is CSV (a header line, then one row per node) or TOML
//!   (`[[node]]` tables). `mac` is required, `site` optional; every other
//!   column or key is a variable. Column names must be identifiers, MACs
//!   unique.
//! - Under the template directory, files ending in `.j2` are rendered with
//!   minijinja (Jinja syntax: `trim_blocks` on and the trailing newline
//!   kept, as Ansible renders templates; no HTML escaping) and stored
//!   without the suffix; other files, directories and symlinks are copied.
//!   Permission bits come from the template; owners are `0:0`; every entry
//!   has one mtime (`SOURCE_DATE_EPOCH`, else 0), so the same template,
//!   inventory and serial give byte-identical payload tars.
//! - A variable a template uses and the row lacks is an error naming the
//!   template file, its line and the inventory row: never an empty string.
//!   Every row is rendered once as a check before any bundle is written.
//! - Each row's recipients: its own target's lines of the `--recipients`
//!   files (an enrollment's `recipients.txt`) or a `recipient` column,
//!   plus the recipients for every bundle (`--recipient`, bare lines, the
//!   profile's). A row with none of its own is an error.
//! - `--enable`: each row's rendered tree gets its own links
//!   ([`satchel_bundle::units`]); the check renders every row into a
//!   temporary directory to compute them before any bundle is written.
//! - Output: `OUT_DIR/host-<mac>.bundle`, replaced by rename.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::Context;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use satchel_format::manifest::Policy;
use satchel_format::seal::{seal_to_file, SealParams, Source};
use satchel_format::{Mac, Recipient, SigningKey};
use satchel_names::{SiteName, Target};
use serde_json::Value;
use time::OffsetDateTime;

use super::recipients::Recipients;
use super::UsageError;

/// Largest inventory file read, in bytes.
pub const MAX_INVENTORY_BYTES: u64 = 64 << 20;
/// Most rows in one inventory.
pub const MAX_INVENTORY_ROWS: usize = 100_000;
/// Most bytes of template files in one template directory.
pub const MAX_TEMPLATE_BYTES: u64 = 256 << 20;
/// Most entries in one template directory.
pub const MAX_TEMPLATE_ENTRIES: usize = 10_000;
/// The suffix of files rendered rather than copied.
pub const TEMPLATE_SUFFIX: &str = ".j2";

/// One node of the inventory.
#[derive(Clone, Debug)]
pub struct Row {
    /// Where it is, for messages: `inventory.csv row 12`.
    pub place: String,
    /// The node.
    pub mac: Mac,
    /// Its site, if the row names one.
    pub site: Option<SiteName>,
    /// Recipients of the `recipient` column (space separated).
    pub recipients: Vec<Recipient>,
    /// Every column, `mac` and `site` included, as template variables.
    pub vars: BTreeMap<String, Value>,
}

impl Row {
    /// The row's target.
    pub fn target(&self) -> Target {
        Target::Host(self.mac)
    }
}

/// Reads an inventory: `.csv` or `.toml`, by the file's name.
pub fn read_inventory(path: &Path) -> anyhow::Result<Vec<Row>> {
    let text = satchel_names::file::read_bounded_text(path, MAX_INVENTORY_BYTES)
        .context("cannot read the inventory")?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext.to_ascii_lowercase().as_str() {
        "csv" => parse_csv(&text, &name),
        "toml" => parse_toml(&text, &name),
        _ => Err(UsageError(format!(
            "the inventory {} must be a .csv or a .toml file",
            path.display()
        ))
        .into()),
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses a CSV inventory's text (`name` for messages).
pub fn parse_csv(text: &str, name: &str) -> anyhow::Result<Vec<Row>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .with_context(|| format!("{name}: cannot read the header line"))?
        .clone();
    let mut seen = BTreeSet::new();
    for h in &headers {
        if !is_identifier(h) {
            return Err(UsageError(format!(
                "{name}: column {h:?} is not a variable name (letters, digits and _, not first a digit)"
            ))
            .into());
        }
        if !seen.insert(h.to_string()) {
            return Err(UsageError(format!("{name}: column {h:?} appears twice")).into());
        }
    }
    if !seen.contains("mac") {
        return Err(UsageError(format!("{name}: no \"mac\" column")).into());
    }
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.with_context(|| format!("{name}: cannot read row {}", i + 1))?;
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        let place = format!("{name} line {line}");
        let mut vars = BTreeMap::new();
        for (h, v) in headers.iter().zip(record.iter()) {
            vars.insert(h.to_string(), Value::String(v.to_string()));
        }
        rows.push(row(place, vars)?);
        if rows.len() > MAX_INVENTORY_ROWS {
            return Err(UsageError(format!("{name}: more than {MAX_INVENTORY_ROWS} rows")).into());
        }
    }
    check_unique(&rows)?;
    Ok(rows)
}

/// Parses a TOML inventory's text: `[[node]]` tables.
pub fn parse_toml(text: &str, name: &str) -> anyhow::Result<Vec<Row>> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inventory {
        #[serde(default)]
        node: Vec<BTreeMap<String, Value>>,
    }
    let inv: Inventory =
        toml::from_str(text).with_context(|| format!("{name} is not a valid TOML inventory"))?;
    if inv.node.len() > MAX_INVENTORY_ROWS {
        return Err(UsageError(format!("{name}: more than {MAX_INVENTORY_ROWS} nodes")).into());
    }
    let mut rows = Vec::new();
    for (i, vars) in inv.node.into_iter().enumerate() {
        let place = format!("{name} [[node]] {}", i + 1);
        if let Some(bad) = vars.keys().find(|k| !is_identifier(k)) {
            return Err(UsageError(format!("{place}: {bad:?} is not a variable name")).into());
        }
        rows.push(row(place, vars)?);
    }
    check_unique(&rows)?;
    Ok(rows)
}

fn row(place: String, mut vars: BTreeMap<String, Value>) -> anyhow::Result<Row> {
    let text_of = |v: Option<&Value>| -> Option<String> {
        match v {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        }
    };
    let mac_text =
        text_of(vars.get("mac")).ok_or_else(|| UsageError(format!("{place}: no mac")))?;
    let mac = Mac::parse(&mac_text).map_err(|e| UsageError(format!("{place}: {e}")))?;
    let site = match text_of(vars.get("site")) {
        Some(s) => Some(SiteName::parse(&s).map_err(|e| UsageError(format!("{place}: {e}")))?),
        None => None,
    };
    let mut recipients = Vec::new();
    if let Some(r) = text_of(vars.get("recipient")) {
        for word in r.split_whitespace() {
            recipients.push(
                Recipient::parse(word)
                    .map_err(|e| UsageError(format!("{place}: recipient {word:?}: {e}")))?,
            );
        }
    }
    // Templates see the canonical forms.
    vars.insert("mac".into(), Value::String(mac.to_string()));
    if let Some(s) = &site {
        vars.insert("site".into(), Value::String(s.to_string()));
    }
    Ok(Row {
        place,
        mac,
        site,
        recipients,
        vars,
    })
}

fn check_unique(rows: &[Row]) -> anyhow::Result<()> {
    let mut seen: BTreeMap<Mac, &str> = BTreeMap::new();
    for r in rows {
        if let Some(first) = seen.insert(r.mac, &r.place) {
            return Err(
                UsageError(format!("{}: mac {} is already at {first}", r.place, r.mac)).into(),
            );
        }
    }
    Ok(())
}

/// One entry of the template directory.
#[derive(Debug)]
enum Item {
    Dir {
        out: String,
        mode: u32,
    },
    Copy {
        out: String,
        mode: u32,
        bytes: Vec<u8>,
    },
    Render {
        out: String,
        mode: u32,
        name: String,
    },
    Link {
        out: String,
        target: PathBuf,
    },
}

/// A loaded template directory.
#[derive(Debug)]
pub struct Template {
    root: PathBuf,
    items: Vec<Item>,
    env: Environment<'static>,
}

impl Template {
    /// Reads every file under `root` (sorted; `.j2` files compiled).
    pub fn load(root: &Path) -> anyhow::Result<Template> {
        let meta = std::fs::metadata(root)
            .with_context(|| format!("cannot read the template {}", root.display()))?;
        if !meta.is_dir() {
            return Err(UsageError(format!(
                "the template {} is not a directory",
                root.display()
            ))
            .into());
        }
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .keep_trailing_newline(true)
                .build()
                .context("template syntax")?,
        );
        let mut t = Template {
            root: root.to_path_buf(),
            items: Vec::new(),
            env,
        };
        let mut bytes = 0u64;
        t.walk(root, "", &mut bytes)?;
        let mut outs = BTreeSet::new();
        for item in &t.items {
            let out = match item {
                Item::Dir { out, .. }
                | Item::Copy { out, .. }
                | Item::Render { out, .. }
                | Item::Link { out, .. } => out,
            };
            if !outs.insert(out.clone()) {
                return Err(UsageError(format!(
                    "the template {} has both {out} and {out}{TEMPLATE_SUFFIX}: keep one",
                    root.display()
                ))
                .into());
            }
        }
        Ok(t)
    }

    fn walk(&mut self, dir: &Path, rel: &str, bytes: &mut u64) -> anyhow::Result<()> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot list {}", dir.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .with_context(|| format!("cannot list {}", dir.display()))?;
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let name = name
                .to_str()
                .ok_or_else(|| UsageError(format!("{}: name is not UTF-8", path.display())))?;
            let relname = format!("{rel}{name}");
            if self.items.len() >= MAX_TEMPLATE_ENTRIES {
                anyhow::bail!(
                    "the template {} has more than {MAX_TEMPLATE_ENTRIES} entries",
                    self.root.display()
                );
            }
            let meta = std::fs::symlink_metadata(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let mode = meta.permissions().mode() & 0o7777;
            let ft = meta.file_type();
            if ft.is_dir() {
                self.items.push(Item::Dir {
                    out: relname.clone(),
                    mode,
                });
                self.walk(&path, &format!("{relname}/"), bytes)?;
            } else if ft.is_symlink() {
                let target = std::fs::read_link(&path)
                    .with_context(|| format!("cannot read the link {}", path.display()))?;
                self.items.push(Item::Link {
                    out: relname,
                    target,
                });
            } else if ft.is_file() {
                *bytes += meta.len();
                if *bytes > MAX_TEMPLATE_BYTES {
                    anyhow::bail!(
                        "the template {} holds more than {MAX_TEMPLATE_BYTES} bytes",
                        self.root.display()
                    );
                }
                let content = std::fs::read(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                match relname.strip_suffix(TEMPLATE_SUFFIX) {
                    Some(out) if !out.ends_with('/') && !out.is_empty() => {
                        let source = String::from_utf8(content).map_err(|_| {
                            UsageError(format!("{}: a template must be UTF-8 text", path.display()))
                        })?;
                        self.env
                            .add_template_owned(relname.clone(), source)
                            .map_err(|e| UsageError(describe(&self.root, &e, None)))?;
                        self.items.push(Item::Render {
                            out: out.to_string(),
                            mode,
                            name: relname,
                        });
                    }
                    _ => self.items.push(Item::Copy {
                        out: relname,
                        mode,
                        bytes: content,
                    }),
                }
            } else {
                return Err(UsageError(format!(
                    "{}: a template holds files, directories and symlinks only",
                    path.display()
                ))
                .into());
            }
        }
        Ok(())
    }

    /// Renders every `.j2` file for `row`, in order (a check, or the content
    /// to write). Errors name the template file, line and row.
    fn rendered(&self, row: &Row) -> anyhow::Result<Vec<String>> {
        let ctx = minijinja::Value::from(minijinja::value::Serde(&row.vars));
        let mut out = Vec::new();
        for item in &self.items {
            if let Item::Render { name, .. } = item {
                let t = self
                    .env
                    .get_template(name)
                    .map_err(|e| UsageError(describe(&self.root, &e, Some(row))))?;
                out.push(
                    t.render(&ctx)
                        .map_err(|e| UsageError(describe(&self.root, &e, Some(row))))?,
                );
            }
        }
        Ok(out)
    }

    /// Writes the row's tree into the empty directory `dir`.
    fn write(&self, row: &Row, dir: &Path) -> anyhow::Result<()> {
        let mut rendered = self.rendered(row)?.into_iter();
        let mut dirs = Vec::new();
        for item in &self.items {
            match item {
                Item::Dir { out, mode } => {
                    let p = dir.join(out);
                    std::fs::create_dir(&p)
                        .with_context(|| format!("cannot create {}", p.display()))?;
                    dirs.push((p, *mode));
                }
                Item::Copy { out, mode, bytes } => write_file(&dir.join(out), bytes, *mode)?,
                Item::Render { out, mode, .. } => {
                    let text = rendered.next().unwrap_or_default();
                    write_file(&dir.join(out), text.as_bytes(), *mode)?;
                }
                Item::Link { out, target } => {
                    let p = dir.join(out);
                    std::os::unix::fs::symlink(target, &p)
                        .with_context(|| format!("cannot create the link {}", p.display()))?;
                }
            }
        }
        // Directory modes last (deepest first), so that a read-only one was
        // still writable while it was filled.
        for (p, mode) in dirs.iter().rev() {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(*mode))
                .with_context(|| format!("cannot set the mode of {}", p.display()))?;
        }
        Ok(())
    }
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", path.display()))
}

/// A template error as `DIR/FILE:LINE: what (ROW, mac M)`.
fn describe(root: &Path, e: &minijinja::Error, row: Option<&Row>) -> String {
    let file = e.name().unwrap_or("?");
    let line = e.line().map(|l| format!(":{l}")).unwrap_or_default();
    let what = match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    };
    let at = row
        .map(|r| format!(" (inventory {}, mac {})", r.place, r.mac))
        .unwrap_or_default();
    format!("{}/{file}{line}: {what}{at}", root.display())
}

/// The serial each bundle gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SerialChoice {
    /// This serial for every bundle.
    Fixed(u64),
    /// One above the highest known per target.
    Auto,
}

impl std::str::FromStr for SerialChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "auto" {
            return Ok(SerialChoice::Auto);
        }
        s.parse::<u64>()
            .map(SerialChoice::Fixed)
            .map_err(|_| format!("{s:?} is not a serial (a number, or \"auto\")"))
    }
}

/// The file a row's bundle is written to.
pub fn bundle_name(mac: &Mac) -> String {
    format!("host-{mac}.bundle")
}

/// The highest serial of each target among the bundles already in `dir`
/// (files that are not bundles are skipped).
pub fn local_serials(dir: &Path) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    for e in rd {
        let path = e?.path();
        if path.extension().and_then(|x| x.to_str()) != Some("bundle") {
            continue;
        }
        let Ok(f) = std::fs::File::open(&path) else {
            continue;
        };
        if let Ok((h, _)) = satchel_format::container::read_header(std::io::BufReader::new(f)) {
            let t = h.manifest.target.to_string();
            let s = out.entry(t).or_insert(0);
            *s = (*s).max(h.manifest.serial);
        }
    }
    Ok(out)
}

/// What one run makes.
#[derive(Debug)]
pub struct Job<'a> {
    /// The template.
    pub template: &'a Template,
    /// The rows.
    pub rows: &'a [Row],
    /// Where bundles go.
    pub out_dir: &'a Path,
    /// Serial per target.
    pub serials: BTreeMap<String, u64>,
    /// Creation and expiry.
    pub created: OffsetDateTime,
    /// Expiry.
    pub expires: OffsetDateTime,
    /// Overlay policy.
    pub policy: Policy,
    /// Who can decrypt.
    pub recipients: &'a Recipients,
    /// The signing key.
    pub key: &'a SigningKey,
    /// The mtime of every entry.
    pub mtime: u64,
    /// The units `--enable` asks for (empty: none).
    pub enable: &'a [satchel_bundle::units::Request],
}

/// One bundle written.
#[derive(Debug, serde::Serialize)]
pub struct Written {
    /// Target.
    pub target: String,
    /// The file.
    pub bundle: PathBuf,
    /// Serial.
    pub serial: u64,
    /// Bundle size.
    pub size: u64,
    /// Payload sha256 (hex).
    pub payload_sha256: String,
}

impl Job<'_> {
    /// The recipients of one row, or an error when it has none of its own.
    fn recipients_of(&self, row: &Row) -> anyhow::Result<Vec<Recipient>> {
        let (mut all, own) = self.recipients.for_target(&row.target());
        if !own && row.recipients.is_empty() {
            return Err(UsageError(format!(
                "{}: no recipient for {}: add its enrollment's recipients.txt with \
                 --recipients FILE or a \"recipient\" column",
                row.place,
                row.target()
            ))
            .into());
        }
        all.extend(row.recipients.iter().cloned());
        Ok(all)
    }

    /// Checks every row (recipients, rendering, and with `--enable` the
    /// links, from the row rendered into a temporary directory) without
    /// writing any bundle.
    pub fn check(&self) -> anyhow::Result<()> {
        for row in self.rows {
            self.recipients_of(row)?;
            self.template.rendered(row)?;
            if !self.enable.is_empty() {
                let stage = self.stage()?;
                self.template.write(row, stage.path())?;
                self.links(row, stage.path())?;
            }
        }
        Ok(())
    }

    fn stage(&self) -> anyhow::Result<tempfile::TempDir> {
        tempfile::Builder::new()
            .prefix(".satchel-render-")
            .tempdir_in(self.out_dir)
            .with_context(|| {
                format!(
                    "cannot make a staging directory in {}",
                    self.out_dir.display()
                )
            })
    }

    /// The links `--enable` adds to one row's rendered tree.
    fn links(&self, row: &Row, dir: &Path) -> anyhow::Result<Vec<satchel_format::pack::PackLink>> {
        let (links, _) = super::create::enable_links(self.enable, dir)
            .with_context(|| format!("--enable for {} ({})", row.target(), row.place))?;
        Ok(links)
    }

    /// Writes every row's bundle on `threads` threads; `done` counts them.
    pub fn run(&self, threads: usize, done: &AtomicU64) -> anyhow::Result<Vec<Written>> {
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<Option<anyhow::Result<Written>>>> =
            Mutex::new((0..self.rows.len()).map(|_| None).collect());
        std::thread::scope(|s| {
            for _ in 0..threads.max(1) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(row) = self.rows.get(i) else { break };
                    let r = self.one(row);
                    let failed = r.is_err();
                    if let Ok(mut all) = results.lock() {
                        all[i] = Some(r);
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                    if failed {
                        // Stop handing out rows; the others finish theirs.
                        next.store(self.rows.len(), Ordering::Relaxed);
                    }
                });
            }
        });
        let results = results
            .into_inner()
            .map_err(|_| anyhow::anyhow!("a worker panicked"))?;
        results.into_iter().flatten().collect()
    }

    fn one(&self, row: &Row) -> anyhow::Result<Written> {
        let target = row.target();
        let serial = self.serials.get(&target.to_string()).copied().unwrap_or(1);
        let stage = self.stage()?;
        self.template.write(row, stage.path())?;
        let links = if self.enable.is_empty() {
            Vec::new()
        } else {
            self.links(row, stage.path())?
        };
        let params = SealParams {
            target: target.clone(),
            site: row.site.clone(),
            serial,
            created: self.created,
            expires: self.expires,
            policy: self.policy.clone(),
            recipients: self.recipients_of(row)?,
        };
        let out = self.out_dir.join(bundle_name(&row.mac));
        let sealed = seal_to_file(
            &params,
            Source::DirWithLinks {
                path: stage.path(),
                keep_owners: false,
                mtime: Some(self.mtime),
                links,
            },
            self.key,
            &out,
            &AtomicU64::new(0),
        )
        .with_context(|| format!("cannot create {} ({})", out.display(), row.place))?;
        Ok(Written {
            target: target.to_string(),
            bundle: out,
            serial,
            size: sealed.bundle_size,
            payload_sha256: hex::encode(sealed.manifest.payload.sha256),
        })
    }
}

/// The mtime rendered entries get: `SOURCE_DATE_EPOCH` if set, else 0.
pub fn source_date_epoch() -> anyhow::Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) if !s.is_empty() => s.trim().parse().map_err(|_| {
            UsageError(format!(
                "SOURCE_DATE_EPOCH={s:?} is not a number of seconds"
            ))
            .into()
        }),
        _ => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_carry_their_variables_and_bad_inventories_say_where() {
        let rows = parse_csv(
            "mac,site,hostname,role\n# a comment\nAA:BB:CC:DD:EE:01,dc1,web-01,web\naa-bb-cc-dd-ee-02,,db-01,db\n",
            "inv.csv",
        )
        .expect("parse");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].vars["mac"], "aa-bb-cc-dd-ee-01");
        assert_eq!(
            rows[0].site.as_ref().map(|s| s.to_string()),
            Some("dc1".into())
        );
        assert!(rows[1].site.is_none());
        assert_eq!(rows[1].vars["hostname"], "db-01");
        for (text, want) in [
            ("hostname\nweb\n", "no \"mac\" column"),
            (
                "mac,host-name\naa-bb-cc-dd-ee-01,x\n",
                "\"host-name\" is not a variable name",
            ),
            ("mac,mac\naa-bb-cc-dd-ee-01,x\n", "appears twice"),
            ("mac\nnot-a-mac\n", "inv.csv line 2"),
            (
                "mac\naa-bb-cc-dd-ee-01\nAA:BB:CC:DD:EE:01\n",
                "already at inv.csv line 2",
            ),
            ("mac,site\naa-bb-cc-dd-ee-01,Bad Site\n", "inv.csv line 2"),
            ("mac,x\naa-bb-cc-dd-ee-01\n", "cannot read row 1"),
            (
                "mac,recipient\naa-bb-cc-dd-ee-01,age1nope\n",
                "recipient \"age1nope\"",
            ),
        ] {
            let e = parse_csv(text, "inv.csv").expect_err(text);
            assert!(format!("{e:#}").contains(want), "{e:#} for {text:?}");
        }
    }

    #[test]
    fn toml_nodes_keep_typed_values() {
        let rows = parse_toml(
            "[[node]]\nmac = \"aa-bb-cc-dd-ee-01\"\ncores = 8\nvlans = [10, 20]\n",
            "inv.toml",
        )
        .expect("parse");
        assert_eq!(rows[0].vars["cores"], 8);
        assert_eq!(rows[0].vars["vlans"][1], 20);
        for (text, want) in [
            ("[[node]]\ncores = 8\n", "no mac"),
            (
                "[[nodes]]\nmac = \"aa-bb-cc-dd-ee-01\"\n",
                "not a valid TOML inventory",
            ),
            (
                "[[node]]\nmac = \"aa-bb-cc-dd-ee-01\"\n\"a b\" = 1\n",
                "not a variable name",
            ),
        ] {
            let e = parse_toml(text, "inv.toml").expect_err(text);
            assert!(format!("{e:#}").contains(want), "{e:#} for {text:?}");
        }
    }

    fn template(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tmp");
        for (p, c) in files {
            let f = d.path().join(p);
            std::fs::create_dir_all(f.parent().expect("parent")).expect("mkdir");
            std::fs::write(f, c).expect("write");
        }
        d
    }

    #[test]
    fn a_missing_variable_names_the_file_line_and_row_never_renders_empty() {
        let d = template(&[(
            "etc/hosts.j2",
            "127.0.0.1 localhost\n{{ hostname }} {{ nope }}\n",
        )]);
        let t = Template::load(d.path()).expect("load");
        let rows = parse_csv("mac,hostname\naa-bb-cc-dd-ee-01,web-01\n", "inv.csv").expect("rows");
        let e = t
            .rendered(&rows[0])
            .expect_err("rendered an undefined variable");
        let msg = e.to_string();
        assert!(
            msg.contains("etc/hosts.j2:2")
                && msg.contains("inv.csv line 2")
                && msg.contains("undefined"),
            "{msg}"
        );
    }

    #[test]
    fn rendering_keeps_the_trailing_newline_and_does_not_escape() {
        let d = template(&[
            (
                "etc/motd.j2",
                "{% if role == \"web\" %}\n<web> & {{ hostname }}\n{% endif %}\n",
            ),
            ("etc/static", "as is {{ x }}\n"),
        ]);
        let t = Template::load(d.path()).expect("load");
        let rows =
            parse_csv("mac,hostname,role\naa-bb-cc-dd-ee-01,web-01,web\n", "i.csv").expect("rows");
        assert_eq!(
            t.rendered(&rows[0]).expect("render"),
            vec!["<web> & web-01\n".to_string()]
        );
        let out = tempfile::tempdir().expect("out");
        t.write(&rows[0], out.path()).expect("write");
        assert_eq!(
            std::fs::read_to_string(out.path().join("etc/static")).expect("static"),
            "as is {{ x }}\n"
        );
        assert!(!out.path().join("etc/motd.j2").exists());
    }

    #[test]
    fn a_file_and_its_template_cannot_both_exist() {
        let d = template(&[("etc/a", "x"), ("etc/a.j2", "y")]);
        let e = Template::load(d.path()).expect_err("both kept");
        assert!(e.to_string().contains("keep one"), "{e}");
    }

    #[test]
    fn serial_choice_parses() {
        assert_eq!("auto".parse::<SerialChoice>(), Ok(SerialChoice::Auto));
        assert_eq!("7".parse::<SerialChoice>(), Ok(SerialChoice::Fixed(7)));
        assert!("-1".parse::<SerialChoice>().is_err());
    }
}
