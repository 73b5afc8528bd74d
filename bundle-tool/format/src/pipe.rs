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
//! kernel zero-filling) a fresh one per chunk. A producing stage can read
//! straight into the chunk being filled ([`PipeWriter::fill_from`]) instead
//! of into a buffer of its own that [`Write`] then copies.

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
            buf: vec![0; CHUNK_BYTES],
            filled: 0,
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
    /// The chunk being filled: always `CHUNK_BYTES` long (initialised, so
    /// it can be read into); its first `filled` bytes are the stream's.
    buf: Vec<u8>,
    filled: usize,
}

/// Why [`PipeWriter::fill_from`] stopped.
#[derive(Debug)]
pub enum FillError {
    /// Reading the source failed.
    Read(io::Error),
    /// The reading end is gone: the next stage stopped reading.
    Closed,
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
        if self.filled == 0 {
            return Ok(());
        }
        let next = match self.spare.try_recv() {
            // A spent chunk keeps the length it was sent with: only a short
            // last one has a tail to fill again.
            Ok(mut spent) => {
                spent.resize(CHUNK_BYTES, 0);
                spent
            }
            Err(_) => vec![0; CHUNK_BYTES],
        };
        let mut chunk = std::mem::replace(&mut self.buf, next);
        chunk.truncate(self.filled);
        self.filled = 0;
        self.tx.send(Msg::Data(chunk)).map_err(|_| closed())
    }

    /// Reads once from `r` into the chunk being filled and sends the chunk
    /// on when it is full: the bytes go from `r` to the next stage without
    /// another copy. `Ok(0)` means `r` is at its end (nothing is sent: call
    /// [`PipeWriter::finish`]).
    pub fn fill_from<R: Read>(&mut self, r: &mut R) -> Result<usize, FillError> {
        let n = loop {
            match r.read(&mut self.buf[self.filled..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(FillError::Read(e)),
            }
        };
        // A reader that claims more than it was given is a bug, not data.
        self.filled = (self.filled + n).min(CHUNK_BYTES);
        if self.filled == CHUNK_BYTES {
            self.send_buf().map_err(|_| FillError::Closed)?;
        }
        Ok(n)
    }

    /// Flushes and marks the stream complete.
    pub fn finish(mut self) -> io::Result<()> {
        self.send_buf()?;
        self.tx.send(Msg::End).map_err(|_| closed())
    }
}

impl Write for PipeWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK_BYTES - self.filled;
        let n = room.min(data.len());
        self.buf[self.filled..self.filled + n].copy_from_slice(&data[..n]);
        self.filled += n;
        if self.filled == CHUNK_BYTES {
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
                    let spent = std::mem::replace(&mut self.cur, chunk);
                    self.pos = 0;
                    if spent.capacity() >= CHUNK_BYTES {
                        // Sent back as it is (the writer fills it again
                        // from the start). A writer that has enough
                        // spares, or is gone, does not need it.
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

    /// A source that hands out `step` bytes at a time, then fails if asked.
    struct Trickle {
        data: Vec<u8>,
        pos: usize,
        step: usize,
        fail_at_end: bool,
    }

    impl Read for Trickle {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.pos == self.data.len() && self.fail_at_end {
                return Err(io::Error::other("source failed"));
            }
            let n = out.len().min(self.step).min(self.data.len() - self.pos);
            out[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    #[test]
    fn fill_from_streams_what_it_reads_across_chunk_edges() {
        for step in [1, 4095, CHUNK_BYTES - 1, CHUNK_BYTES, 3 * CHUNK_BYTES] {
            let (mut w, mut r) = pipe();
            let data: Vec<u8> = (0..2 * CHUNK_BYTES + 333)
                .map(|i| (i % 253) as u8)
                .collect();
            let want = data.clone();
            let t = std::thread::spawn(move || {
                let mut src = Trickle {
                    data,
                    pos: 0,
                    step,
                    fail_at_end: false,
                };
                // Mixed with plain writes: both fill the same chunk.
                w.write_all(b"head").unwrap();
                while w.fill_from(&mut src).unwrap() > 0 {}
                w.write_all(b"tail").unwrap();
                w.finish().unwrap();
            });
            let mut got = Vec::new();
            r.read_to_end(&mut got).unwrap();
            t.join().unwrap();
            let mut expect = b"head".to_vec();
            expect.extend_from_slice(&want);
            expect.extend_from_slice(b"tail");
            assert!(got == expect, "step {step}: {} bytes back", got.len());
        }
    }

    #[test]
    fn fill_from_tells_a_failed_source_from_a_gone_reader() {
        let (mut w, r) = pipe();
        let mut src = Trickle {
            data: vec![7; 10],
            pos: 0,
            step: 10,
            fail_at_end: true,
        };
        assert_eq!(w.fill_from(&mut src).unwrap(), 10);
        assert!(matches!(w.fill_from(&mut src), Err(FillError::Read(_))));
        drop(r);
        let mut endless = Trickle {
            data: vec![1; 4 * CHUNK_BYTES * (CHUNKS_IN_FLIGHT + 2)],
            pos: 0,
            step: CHUNK_BYTES,
            fail_at_end: false,
        };
        let closed = loop {
            match w.fill_from(&mut endless) {
                Ok(0) => break false,
                Ok(_) => {}
                Err(FillError::Closed) => break true,
                Err(FillError::Read(e)) => panic!("{e}"),
            }
        };
        assert!(closed, "a gone reader is reported as Closed");
    }
}
