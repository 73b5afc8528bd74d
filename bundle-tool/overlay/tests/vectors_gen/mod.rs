//! The generator of the checked-in vectors in `tests/vectors/`, and the
//! source of truth for them: each [`Vector`] is a name, the attack in one
//! line, the archive built header by header (with the byte-exact writer of
//! `overlay_support`, so that hostile cases — PAX size desync, trailing
//! garbage, truncation, a NUL in a PAX path — are exactly what they say),
//! and what the overlay must answer, as [`ExtractError::kind`] ids.
//!
//! `hostile_vectors` asserts that every file in `tests/vectors/` is byte for
//! byte what this module builds, that no file lacks an entry here, and that
//! `tests/vectors/EXPECTED` is what [`expected_text`] writes. To change a
//! vector, change it here and rewrite the files:
//!
//! ```text
//! SATCHEL_WRITE_VECTORS=1 cargo test -p satchel-overlay --test hostile_vectors
//! ```
//!
//! A vector's name says its attack and keeps its meaning; its bytes may
//! change when it is regenerated.
//!
//! [`ExtractError::kind`]: satchel_overlay::ExtractError::kind

use crate::overlay_support::{set_checksum, Hdr, Tar, BLOCK};

/// One checked-in vector.
pub struct Vector {
    /// The file name without `.tar`: `fail_*` must be refused, `ok_*`
    /// accepted.
    pub name: &'static str,
    /// What the archive does, for people and for `EXPECTED`.
    pub attack: &'static str,
    /// What `check_archive` and `apply` answer.
    pub expect: Expect,
    /// Builds the archive.
    pub build: fn() -> Vec<u8>,
}

/// What the overlay answers to a vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Accepted by `check_archive` and applied by `apply`.
    Accepted,
    /// Refused by both, each with this `ExtractError::kind`.
    ///
    /// The two kinds may differ only where `apply` sees what
    /// `check_archive` cannot: the root, through the plan. No vector is
    /// such a case — its answer would depend on the test root, which
    /// other tools do not have — so every entry uses [`refused`], one kind
    /// for both; an entry giving two must say why beside it.
    Refused {
        /// The kind `check_archive` (no root) refuses with.
        check_archive: &'static str,
        /// The kind `apply` (against the test root) refuses with.
        apply: &'static str,
    },
}

/// Refused by `check_archive` and `apply` for the same reason.
const fn refused(kind: &'static str) -> Expect {
    Expect::Refused {
        check_archive: kind,
        apply: kind,
    }
}

impl Vector {
    /// The file name in `tests/vectors/`.
    pub fn file_name(&self) -> String {
        format!("{}.tar", self.name)
    }

    /// The archive's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        (self.build)()
    }
}

/// Every vector begins with a harmless directory and file, so that staging
/// is not empty when the attack arrives (and `ok_*` vectors are checked by
/// the presence of `etc/ok.conf`).
fn start() -> Tar {
    Tar::new().dir("etc").file("etc/ok.conf", b"fine\n")
}

/// GNU tar's default record: 20 blocks; the end is padded with zero blocks
/// up to a multiple of it, which a reader must take as padding.
const GNU_RECORD: usize = 20 * BLOCK;

/// Every checked-in vector, sorted by name.
pub fn all() -> Vec<Vector> {
    let mut all = first();
    all.extend(more_names_and_links());
    all.extend(more_header_tricks());
    all.sort_by_key(|v| v.name);
    all
}

/// The first vectors, one per classic attack.
fn first() -> Vec<Vector> {
    vec![
        Vector {
            name: "fail_absolute_path",
            attack: "an entry named `/etc/passwd`",
            expect: refused("absolute_path"),
            build: || start().file("/etc/passwd", b"x").end(),
        },
        Vector {
            name: "fail_device",
            attack: "a character device entry",
            expect: refused("device"),
            build: || start().entry(Hdr::new("etc/mem", b'3'), b"").end(),
        },
        Vector {
            name: "fail_dir_then_symlink",
            attack: "a directory, then a symlink to `..` of the same name",
            expect: refused("dir_replaced_by_symlink"),
            build: || start().dir("etc/d").symlink("etc/d", "..").end(),
        },
        Vector {
            name: "fail_duplicate",
            attack: "the same file twice, the second overriding what was checked",
            expect: refused("duplicate"),
            build: || start().file("etc/a", b"1").file("etc/a", b"2").end(),
        },
        Vector {
            name: "fail_fifo",
            attack: "a FIFO entry",
            expect: refused("fifo"),
            build: || start().entry(Hdr::new("etc/fifo", b'6'), b"").end(),
        },
        Vector {
            name: "fail_global_pax_path",
            attack: "a global PAX header setting `path=../escape` for what follows",
            expect: refused("unsupported_pax_key"),
            build: || {
                start()
                    .pax_global(&[("path", b"../escape")])
                    .file("etc/f", b"x")
                    .end()
            },
        },
        Vector {
            name: "fail_hardlink_outside",
            attack: "a hardlink to `../escape`",
            expect: refused("link_outside"),
            build: || start().hardlink("etc/h", "../escape").end(),
        },
        Vector {
            name: "fail_hardlink_then_write",
            attack: "a hardlink to a payload file, then a file of the link's name \
                     (writing through the link)",
            expect: refused("duplicate"),
            build: || {
                start()
                    .hardlink("etc/h", "etc/ok.conf")
                    .file("etc/h", b"x")
                    .end()
            },
        },
        Vector {
            name: "fail_nul_in_pax_path",
            attack: "a PAX `path` with a NUL byte (`etc/a\\0b`): C readers stop at it",
            expect: refused("nul_in_name"),
            build: || {
                start()
                    .pax(&[("path", b"etc/a\0b")])
                    .file("etc/f", b"")
                    .end()
            },
        },
        Vector {
            name: "fail_opaque_whiteout",
            attack: "an overlayfs opaque-directory whiteout (`.wh..wh..opq`)",
            expect: refused("invalid_whiteout"),
            build: || start().file("etc/.wh..wh..opq", b"").end(),
        },
        Vector {
            name: "fail_parent_dir",
            attack: "an entry named `../escape`",
            expect: refused("parent_dir"),
            build: || start().file("../escape", b"x").end(),
        },
        Vector {
            name: "fail_pax_path_hides_unsafe_name",
            attack: "a harmless PAX `path` over a header named `../escape`: readers \
                     ignoring PAX write the header's name",
            expect: refused("header_trick"),
            build: || {
                start()
                    .pax(&[("path", b"etc/ok2")])
                    .file("../escape", b"x")
                    .end()
            },
        },
        Vector {
            name: "fail_pax_size_desync",
            attack: "PAX `size=0` over a header saying 1024 bytes: readers trusting \
                     one or the other parse different archives",
            expect: refused("size_desync"),
            build: || {
                let mut carrier = Hdr::new("etc/carrier", b'0');
                carrier.size = 2 * BLOCK as u64;
                start()
                    .pax(&[("size", b"0")])
                    .entry(carrier, &[0u8; 2 * BLOCK])
                    .end()
            },
        },
        Vector {
            name: "fail_symlink_absolute_climbing",
            attack: "a symlink to `/../etc/shadow`, climbing above `/`; the archive \
                     is padded to a 20-block record, as GNU tar writes it",
            expect: refused("link_outside"),
            build: || {
                let mut t = Tar::new()
                    .dir("etc/")
                    .file("etc/ok.conf", b"fine\n")
                    .symlink("etc/l", "/../etc/shadow")
                    .end();
                t.resize(t.len().div_ceil(GNU_RECORD) * GNU_RECORD, 0);
                t
            },
        },
        Vector {
            name: "fail_symlink_outside",
            attack: "a symlink to `../../escape`",
            expect: refused("link_outside"),
            build: || start().symlink("etc/l", "../../escape").end(),
        },
        Vector {
            name: "fail_symlink_then_dir",
            attack: "a symlink, then a directory of the same name (a chmod through \
                     the link)",
            expect: refused("duplicate"),
            build: || start().symlink("etc/l", "ok.d").dir("etc/l").end(),
        },
        Vector {
            name: "fail_symlink_to_parent_then_dirs",
            attack: "a symlink `up -> ..`, then a file beneath it",
            expect: refused("link_outside"),
            build: || start().symlink("up", "..").file("up/escape/x", b"x").end(),
        },
        Vector {
            name: "fail_trailing_garbage",
            attack: "bytes after the end-of-archive blocks",
            expect: refused("trailing_garbage"),
            build: || {
                let mut t = start().end();
                t.extend_from_slice(b"garbage");
                t
            },
        },
        Vector {
            name: "fail_truncated",
            attack: "a stream that ends without the end-of-archive blocks",
            expect: refused("truncated"),
            build: || start().0,
        },
        Vector {
            name: "fail_write_through_symlink",
            attack: "a symlink of the payload, then a file beneath it",
            expect: refused("through_symlink"),
            build: || start().symlink("etc/l", "ok.d").file("etc/l/x", b"x").end(),
        },
        Vector {
            name: "ok_basic",
            attack: "none: a directory, a file, a symlink, a hardlink and a whiteout",
            expect: Expect::Accepted,
            build: || {
                start()
                    .symlink("etc/l", "ok.conf")
                    .hardlink("etc/h", "etc/ok.conf")
                    .file("etc/.wh.old", b"")
                    .end()
            },
        },
        Vector {
            name: "ok_pax_unicode",
            attack: "none: a PAX `path` in UTF-8 (`etc/crème`)",
            expect: Expect::Accepted,
            build: || {
                start()
                    .pax(&[("path", "etc/crème".as_bytes())])
                    .file("etc/x", b"u")
                    .end()
            },
        },
        Vector {
            name: "ok_symlink_absolute",
            attack: "none: an absolute symlink target is link content, resolved in \
                     the node's root",
            expect: Expect::Accepted,
            build: || start().symlink("etc/l", "/etc/shadow").end(),
        },
    ]
}

/// Names, links, whiteouts and entry types beyond the first set.
fn more_names_and_links() -> Vec<Vector> {
    vec![
        Vector {
            name: "fail_invalid_utf8_name",
            attack: "an entry name that is not UTF-8 (`etc/\\xff\\xfe`)",
            expect: refused("invalid_name"),
            build: || start().file(b"etc/\xff\xfe", b"x").end(),
        },
        Vector {
            name: "fail_control_chars_in_name",
            attack: "a newline and a terminal escape in an entry name",
            expect: refused("invalid_name"),
            build: || start().file("etc/evil\n\x1b[2Jok", b"x").end(),
        },
        Vector {
            name: "fail_hidden_bytes_after_nul_in_name",
            attack: "a header name `etc/a`, NUL, then `/../../outside/evil`: readers \
                     that do not stop at the NUL see another name",
            expect: refused("header_trick"),
            build: || {
                let mut h = Hdr::new("etc/a", b'0').block();
                h[20..40].copy_from_slice(b"/../../outside/evil\0");
                set_checksum(&mut h);
                start().raw(h, b"").end()
            },
        },
        Vector {
            name: "fail_overlong_gnu_long_name",
            attack: "a GNU long name (`L`) of over 4 KiB",
            expect: refused("name_too_long"),
            build: || {
                let long = format!("etc/{}f", "a/".repeat(2100));
                start()
                    .gnu_long(b'L', long.as_bytes())
                    .file("etc/short", b"x")
                    .end()
            },
        },
        Vector {
            name: "fail_too_deep",
            attack: "a PAX `path` 66 components deep",
            expect: refused("too_deep"),
            build: || {
                let deep = "d/".repeat(65) + "f";
                start()
                    .pax(&[("path", deep.as_bytes())])
                    .file("etc/s", b"")
                    .end()
            },
        },
        Vector {
            name: "fail_whiteout_climbing",
            attack: "a whiteout of `..` (`etc/.wh...`)",
            expect: refused("parent_dir"),
            build: || start().file("etc/.wh...", b"").end(),
        },
        Vector {
            name: "fail_whiteout_with_content",
            attack: "a whiteout that carries data",
            expect: refused("invalid_whiteout"),
            build: || start().file("etc/.wh.motd", b"not empty").end(),
        },
        Vector {
            name: "fail_symlink_chain_escape",
            attack: "`l1 -> ..` (inside), then `l2 -> l1/../..`, which climbs out \
                     through l1 although it looks inside",
            expect: refused("unnormalised_link_target"),
            build: || {
                start()
                    .symlink("etc/l1", "..")
                    .symlink("etc/l2", "l1/../..")
                    .end()
            },
        },
        Vector {
            name: "fail_hardlink_absolute",
            attack: "a hardlink to `/etc/shadow`",
            expect: refused("link_outside"),
            build: || start().hardlink("etc/h", "/etc/shadow").end(),
        },
        Vector {
            name: "fail_hardlink_to_file_not_in_payload",
            attack: "a hardlink to `etc/hostname`, a file of the root but not of \
                     the payload",
            expect: refused("hardlink_target"),
            build: || start().hardlink("etc/h", "etc/hostname").end(),
        },
        Vector {
            name: "fail_hardlink_then_write_beneath",
            attack: "a hardlink to a payload file, then a file beneath the link",
            expect: refused("parent_not_directory"),
            build: || {
                start()
                    .hardlink("etc/h", "etc/ok.conf")
                    .file("etc/h/x", b"x")
                    .end()
            },
        },
        Vector {
            name: "fail_block_device",
            attack: "a block device entry",
            expect: refused("device"),
            build: || start().entry(Hdr::new("etc/sda", b'4'), b"").end(),
        },
        Vector {
            name: "fail_gnu_sparse",
            attack: "a GNU sparse entry (`S`)",
            expect: refused("unsupported_entry_type"),
            build: || start().entry(Hdr::new("etc/sparse", b'S'), b"").end(),
        },
    ]
}

/// PAX and GNU extension tricks and broken streams beyond the first set.
fn more_header_tricks() -> Vec<Vector> {
    vec![
        Vector {
            name: "fail_pax_size_desync_smuggles_entry",
            attack: "PAX `size=0` over a 1024-byte entry whose data is a header for \
                     `../outside/smuggled`: a reader trusting the PAX size extracts it",
            expect: refused("size_desync"),
            build: || {
                let mut inner = Hdr::new("../outside/smuggled", b'0');
                inner.size = 5;
                let mut smuggled = inner.block().to_vec();
                smuggled.extend_from_slice(&[b'x'; BLOCK]);
                let mut h = Hdr::new("etc/carrier", b'0');
                h.size = smuggled.len() as u64;
                start().pax(&[("size", b"0")]).entry(h, &smuggled).end()
            },
        },
        Vector {
            name: "fail_pax_linkpath_hides_unsafe_link",
            attack: "a harmless PAX `linkpath` over a header link `../../etc/shadow`",
            expect: refused("header_trick"),
            build: || {
                let mut h = Hdr::new("etc/l", b'2');
                h.link = b"../../etc/shadow".to_vec();
                start().pax(&[("linkpath", b"ok.conf")]).entry(h, b"").end()
            },
        },
        Vector {
            name: "fail_pax_linkpath_on_regular_file",
            attack: "a PAX `linkpath` on a regular file",
            expect: refused("header_trick"),
            build: || {
                start()
                    .pax(&[("linkpath", b"/etc/shadow")])
                    .file("etc/f", b"x")
                    .end()
            },
        },
        Vector {
            name: "fail_stacked_pax_headers",
            attack: "two PAX headers before one entry, each with another `path`",
            expect: refused("header_trick"),
            build: || {
                start()
                    .pax(&[("path", b"etc/first")])
                    .pax(&[("path", b"etc/second")])
                    .file("etc/f", b"x")
                    .end()
            },
        },
        Vector {
            name: "fail_gnu_long_name_and_pax_path_disagree",
            attack: "a GNU long name and a PAX `path` naming different files",
            expect: refused("header_trick"),
            build: || {
                start()
                    .gnu_long(b'L', b"etc/gnu-name")
                    .pax(&[("path", b"etc/pax-name")])
                    .file("etc/f", b"x")
                    .end()
            },
        },
        Vector {
            name: "fail_pax_size_before_gnu_long_name",
            attack: "a PAX `size` before a GNU long name: readers apply it to the \
                     GNU header or to the entry, and parse different archives",
            expect: refused("header_trick"),
            build: || {
                start()
                    .pax(&[("size", b"0")])
                    .gnu_long(b'L', b"etc/long-name")
                    .file("etc/f", b"")
                    .end()
            },
        },
        Vector {
            name: "fail_unknown_pax_record",
            attack: "a PAX record this reader does not know (`GNU.sparse.map`)",
            expect: refused("unsupported_pax_key"),
            build: || {
                start()
                    .pax(&[("GNU.sparse.map", b"0,4096")])
                    .file("etc/f", b"x")
                    .end()
            },
        },
        Vector {
            name: "fail_data_on_directory",
            attack: "a directory entry with a size, its data a header: readers that \
                     skip a directory's size parse it as the next entry",
            expect: refused("header_trick"),
            build: || {
                let inner = Hdr::new("../outside/smuggled", b'0').block();
                let mut h = Hdr::new("etc/d", b'5');
                h.size = BLOCK as u64;
                start().entry(h, &inner).end()
            },
        },
        Vector {
            name: "fail_extension_header_without_entry",
            attack: "a PAX header followed by the end of the archive",
            expect: refused("header_trick"),
            build: || start().pax(&[("path", b"etc/dangling")]).end(),
        },
        Vector {
            name: "fail_bad_checksum",
            attack: "a header whose checksum does not match its bytes",
            expect: refused("bad_checksum"),
            build: || {
                let mut h = Hdr::new("etc/f", b'0').block();
                h[0] = b'E';
                start().raw(h, b"").end()
            },
        },
        Vector {
            name: "fail_truncated_in_data",
            attack: "a stream that ends in the middle of a file's data",
            expect: refused("truncated"),
            build: || {
                let mut t = start().file("etc/big", &[7u8; 4096]).end();
                t.truncate(3 * BLOCK + 1000);
                t
            },
        },
        Vector {
            name: "fail_second_archive_after_end",
            attack: "a second archive, writing `../outside/secret`, after the \
                     end-of-archive blocks",
            expect: refused("trailing_garbage"),
            build: || {
                let mut t = start().end();
                t.extend_from_slice(&Tar::new().file("../outside/secret", b"owned").end());
                t
            },
        },
    ]
}

/// The text of `tests/vectors/EXPECTED`: one line per vector,
/// `<file> <check_archive> <apply>`, where each answer is an
/// `ExtractError::kind` or `accepted`, after a `#` comment line saying the
/// attack.
pub fn expected_text(vectors: &[Vector]) -> String {
    let mut out = String::from(
        "# Generated by tests/vectors_gen/mod.rs; do not edit. Rewrite with\n\
         #   SATCHEL_WRITE_VECTORS=1 cargo test -p satchel-overlay --test hostile_vectors\n\
         #\n\
         # <file> <check_archive answer> <apply answer>\n\
         # An answer is `accepted` or the kind of the refusal (ExtractError::kind,\n\
         # a stable snake_case id). fail_* files must be refused, ok_* accepted;\n\
         # apply runs against a root holding etc/hostname, etc/motd and var/lib/.\n",
    );
    for v in vectors {
        let (check, apply) = match v.expect {
            Expect::Accepted => ("accepted", "accepted"),
            Expect::Refused {
                check_archive,
                apply,
            } => (check_archive, apply),
        };
        out.push_str(&format!(
            "# {}\n{} {check} {apply}\n",
            v.attack,
            v.file_name()
        ));
    }
    out
}
