//! A bounded in-process pipe between threads, so that the stages of
//! `tar | zstd | age` (and back) run side by side as a shell pipeline would,
//! with a fixed amount of memory in flight.
//!
//! [`pipe`] returns a [`PipeWriter`] and a [`PipeReader`]. The reader sees
//! end-of-file only after [`PipeWriter::finish`]; a writer dropped without it
//! (its stage failed) makes the reader fail, so a consumer never mistakes a
//! truncated stream for a complete one.
//!
//! The reader hands spent chunks back for the writer to fill again, so a
//! long stream reuses the same few buffers instead of allocating (and the
//! kernel zero-filling) a fresh one per chunk.

use std::io::{self, BufRead, Read, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// Size of one chunk passed between stages.
pub const CHUNK_BYTES: usize = 256 * 1024;

/// Chunks in flight per pipe (memory per pipe ≈ `(CHUNKS_IN_FLIGHT + 2) × CHUNK_BYTES`).
pub const CHUNKS_IN_FLIGHT: usize = 4;

enum Msg {
    Data(Vec<u8>),
    End,
}

/// A bounded pipe; see the module doc.
pub fn pipe() -> (PipeWriter, PipeReader) {
    let (tx, rx) = sync_channel(CHUNKS_IN_FLIGHT);
    let (spent_tx, spent_rx) = sync_channel(CHUNKS_IN_FLIGHT + 2);
    (
        PipeWriter {
            tx,
            spare: spent_rx,
            buf: Vec::with_capacity(CHUNK_BYTES),
        },
        PipeReader {
            rx,
            spent: spent_tx,
            cur: Vec::new(),
            pos: 0,
            done: false,
        },
    )
}

/// The writing end of a [`pipe`].
pub struct PipeWriter {
    /// Bounded: a stage that runs ahead blocks instead of buffering.
    tx: SyncSender<Msg>,
    /// Chunks the reader is done with, to fill again.
    spare: Receiver<Vec<u8>>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for PipeWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipeWriter").finish_non_exhaustive()
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the next stage stopped reading")
}

impl PipeWriter {
    fn send_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let next = match self.spare.try_recv() {
            Ok(spent) => spent,
            Err(_) => Vec::with_capacity(CHUNK_BYTES),
        };
        let chunk = std::mem::replace(&mut self.buf, next);
        self.tx.send(Msg::Data(chunk)).map_err(|_| closed())
    }

    /// Flushes and marks the stream complete.
    pub fn finish(mut self) -> io::Result<()> {
        self.send_buf()?;
        self.tx.send(Msg::End).map_err(|_| closed())
    }
}

impl Write for PipeWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK_BYTES - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK_BYTES {
            self.send_buf()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The reading end of a [`pipe`].
pub struct PipeReader {
    rx: Receiver<Msg>,
    /// Where spent chunks go back to the writer (dropped when it is full).
    spent: SyncSender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
    done: bool,
}

impl std::fmt::Debug for PipeReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipeReader").finish_non_exhaustive()
    }
}

impl BufRead for PipeReader {
    /// The rest of the current chunk, waiting for the next one when it is
    /// used up; empty only at the end of a finished stream.
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos == self.cur.len() {
            if self.done {
                return Ok(&[]);
            }
            match self.rx.recv() {
                Ok(Msg::Data(chunk)) => {
                    let mut spent = std::mem::replace(&mut self.cur, chunk);
                    self.pos = 0;
                    if spent.capacity() >= CHUNK_BYTES {
                        spent.clear();
                        // A writer that has enough spares, or is gone,
                        // does not need it.
                        let _ = self.spent.try_send(spent);
                    }
                }
                Ok(Msg::End) => self.done = true,
                Err(_) => {
                    return Err(io::Error::other(
                        "the previous stage failed before finishing its stream",
                    ))
                }
            }
        }
        Ok(&self.cur[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.cur.len());
    }
}

impl Read for PipeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = out.len().min(avail.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pipe whose writer thread sends `len` patterned bytes and finishes;
    /// the reader, the bytes sent and the writer.
    fn written(len: usize, modulus: usize) -> (PipeReader, Vec<u8>, std::thread::JoinHandle<()>) {
        let (mut w, r) = pipe();
        let data: Vec<u8> = (0..len).map(|i| (i % modulus) as u8).collect();
        let sent = data.clone();
        let t = std::thread::spawn(move || {
            w.write_all(&data).unwrap();
            w.finish().unwrap();
        });
        (r, sent, t)
    }

    #[test]
    fn streams_through_a_thread() {
        let (mut r, want, t) = written(3 * CHUNK_BYTES + 17, 251);
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        t.join().unwrap();
        assert_eq!(got, want);
    }

    #[test]
    fn reads_as_a_buffered_reader() {
        let (mut r, want, t) = written(2 * CHUNK_BYTES + 5, 249);
        let mut got = Vec::new();
        loop {
            let avail = r.fill_buf().unwrap();
            if avail.is_empty() {
                break;
            }
            // Take a little less than offered, to cross chunk edges unevenly.
            let n = avail.len().min(100_000);
            got.extend_from_slice(&avail[..n]);
            r.consume(n);
        }
        t.join().unwrap();
        assert_eq!(got, want);
        assert!(r.fill_buf().unwrap().is_empty(), "the end repeats");
    }

    #[test]
    fn writer_dropped_without_finish_is_an_error() {
        let (mut w, mut r) = pipe();
        w.write_all(b"partial").unwrap();
        drop(w);
        let mut got = Vec::new();
        assert!(r.read_to_end(&mut got).is_err());
    }

    #[test]
    fn reader_gone_is_an_error_for_the_writer() {
        let (mut w, r) = pipe();
        drop(r);
        assert!(w.write_all(&vec![0u8; 2 * CHUNK_BYTES]).is_err());
    }
}
