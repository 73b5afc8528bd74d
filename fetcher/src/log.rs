//! Logging to stderr and the kernel log, every line prefixed `satchel:` so
//! an operator reading the console or the journal knows whose line it is.
//!
//! One message is one line: control characters are replaced, and each line
//! is one `write` to `/dev/kmsg` (one kernel log record, with a syslog
//! priority prefix such as `<3>`). A missing or unwritable kmsg is ignored.
//! Callers never pass secrets here.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

/// The prefix of every line.
pub const PREFIX: &str = "satchel:";
/// Longest message written, in characters (the kernel truncates records
/// near 1 KiB anyway).
pub const MAX_LINE_CHARS: usize = 900;

/// A logger over stderr and an optional kmsg file.
#[derive(Debug)]
pub struct Log {
    /// The kernel log, shared by every caller of this logger.
    kmsg: Mutex<Option<File>>,
    quiet: bool,
}

fn clean(msg: &str) -> String {
    msg.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_LINE_CHARS)
        .collect()
}

impl Log {
    /// Logs to stderr and, when it can be opened for writing, `kmsg`.
    pub fn new(kmsg: Option<&Path>) -> Self {
        let file = kmsg.and_then(|p| std::fs::OpenOptions::new().append(true).open(p).ok());
        Log {
            kmsg: Mutex::new(file),
            quiet: false,
        }
    }

    /// A logger that writes nowhere (for unit tests).
    pub fn silent() -> Self {
        Log {
            kmsg: Mutex::new(None),
            quiet: true,
        }
    }

    fn line(&self, level: u8, tag: &str, msg: &str) {
        let text = clean(msg);
        if !self.quiet {
            eprintln!("{PREFIX} {tag}{text}");
        }
        self.kmsg_line(level, &format!("{tag}{text}"));
    }

    /// Writes one record to the kernel log only.
    pub fn kmsg_line(&self, level: u8, msg: &str) {
        if let Ok(mut guard) = self.kmsg.lock() {
            if let Some(f) = guard.as_mut() {
                let _ = f.write_all(format!("<{level}>{PREFIX} {}\n", clean(msg)).as_bytes());
            }
        }
    }

    /// Something went as planned.
    pub fn info(&self, msg: &str) {
        self.line(6, "", msg);
    }

    /// Something went wrong but the run goes on.
    pub fn warn(&self, msg: &str) {
        self.line(4, "warning: ", msg);
    }

    /// The run failed.
    pub fn error(&self, msg: &str) {
        self.line(3, "error: ", msg);
    }
}
