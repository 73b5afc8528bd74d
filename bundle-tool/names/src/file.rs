//! The one bounded file read every satchel crate uses for the small files
//! it is given (configs, keys, certificates, CRLs, inventories): it never
//! reads more than `max + 1` bytes, whatever the file's size, and its errors
//! name the file.

use std::io::Read;
use std::path::{Path, PathBuf};

/// Why a bounded read failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// Opening or reading failed.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file holds more than the limit.
    #[error("{} is larger than {max} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        max: u64,
    },
    /// The file is not UTF-8 text.
    #[error("{} is not UTF-8 text", path.display())]
    NotUtf8 {
        /// The file.
        path: PathBuf,
    },
}

impl ReadError {
    /// The I/O error's kind, when it is one (`NotFound`, …).
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            ReadError::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }
}

/// Reads the whole file at `path`, refusing one larger than `max` bytes.
pub fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, ReadError> {
    let io = |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let mut buf = Vec::new();
    f.take(max.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(io)?;
    if buf.len() as u64 > max {
        return Err(ReadError::TooLarge {
            path: path.to_path_buf(),
            max,
        });
    }
    Ok(buf)
}

/// As [`read_bounded`], for a UTF-8 text file.
pub fn read_bounded_text(path: &Path, max: u64) -> Result<String, ReadError> {
    String::from_utf8(read_bounded(path, max)?).map_err(|_| ReadError::NotUtf8 {
        path: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_name_the_file_and_nothing_past_the_limit_is_read() {
        let d = std::env::temp_dir().join(format!("satchel-names-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("dir");
        let p = d.join("f");
        std::fs::write(&p, b"12345").expect("write");
        assert_eq!(read_bounded(&p, 5).expect("at the limit"), b"12345");
        let e = read_bounded(&p, 4).expect_err("over the limit");
        assert!(matches!(e, ReadError::TooLarge { max: 4, .. }), "{e}");
        assert!(e.to_string().contains(&p.display().to_string()), "{e}");
        let e = read_bounded(&d.join("missing"), 4).expect_err("missing");
        assert_eq!(e.io_kind(), Some(std::io::ErrorKind::NotFound));
        assert!(e.to_string().contains("missing"), "{e}");
        std::fs::write(&p, [0xff, 0xfe]).expect("write");
        assert!(matches!(
            read_bounded_text(&p, 10),
            Err(ReadError::NotUtf8 { .. })
        ));
        let _ = std::fs::remove_dir_all(&d);
    }
}
