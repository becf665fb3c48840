//! The durable local spool: an append-only file of checksummed frames. A
//! record is acknowledged only once its frame is on disk (group commit: a
//! batch of frames, one `fdatasync`). After a crash, a torn or corrupt tail
//! is found by its checksum, counted, and cut off; it is never fatal.
//!
//! Frame: `len: u32 LE | crc32(payload): u32 LE | payload (len bytes)`.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Largest payload a frame may hold; a larger length is a torn header.
pub const MAX_FRAME: usize = 1024 * 1024;
const HEADER: usize = 8;

/// What reading a spool found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Payloads of the intact frames, in order.
    pub records: Vec<Vec<u8>>,
    /// Bytes of intact frames (where the next frame starts).
    pub valid_len: u64,
    /// Bytes after the last intact frame (a torn or corrupt tail).
    pub torn_bytes: u64,
}

/// Reads every intact frame of `bytes`, stopping at the first that is not.
pub fn scan(bytes: &[u8]) -> Scan {
    let mut out = Scan::default();
    let mut at = 0usize;
    while bytes.len() - at >= HEADER {
        let len =
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
        let crc = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
        if len > MAX_FRAME || bytes.len() - at - HEADER < len {
            break;
        }
        let payload = &bytes[at + HEADER..at + HEADER + len];
        if crc32fast::hash(payload) != crc {
            break;
        }
        out.records.push(payload.to_vec());
        at += HEADER + len;
    }
    out.valid_len = at as u64;
    out.torn_bytes = (bytes.len() - at) as u64;
    out
}

/// Encodes one frame.
pub fn frame(payload: &[u8]) -> io::Result<Vec<u8>> {
    if payload.len() > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "audit record too large",
        ));
    }
    let mut f = Vec::with_capacity(HEADER + payload.len());
    f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    f.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    f.extend_from_slice(payload);
    Ok(f)
}

/// An open spool file, positioned for appending.
pub struct Spool {
    file: File,
    len: u64,
    /// Bytes cut off a torn tail when the file was opened.
    pub torn_bytes_at_open: u64,
}

impl Spool {
    /// Opens (or creates) the spool, cutting off a torn tail. Returns the
    /// records already in it (not yet drained) as well.
    pub fn open(path: &Path) -> io::Result<(Self, Vec<Vec<u8>>)> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let found = scan(&bytes);
        if found.torn_bytes > 0 {
            tracing::warn!(
                path = %path.display(),
                bytes = found.torn_bytes,
                "audit spool had a torn or corrupt tail; cut off"
            );
            file.set_len(found.valid_len)?;
            file.sync_data()?;
        }
        file.seek(SeekFrom::Start(found.valid_len))?;
        Ok((
            Spool {
                file,
                len: found.valid_len,
                torn_bytes_at_open: found.torn_bytes,
            },
            found.records,
        ))
    }

    /// Appends a batch of records and makes them durable with one sync.
    pub fn append_durable(&mut self, payloads: &[Vec<u8>]) -> io::Result<()> {
        let mut buf = Vec::new();
        for p in payloads {
            buf.extend_from_slice(&frame(p)?);
        }
        if let Err(e) = self
            .file
            .write_all(&buf)
            .and_then(|_| self.file.sync_data())
        {
            // Leave no half-written batch behind: cut back to the last
            // acknowledged frame.
            let _ = self.file.set_len(self.len);
            let _ = self.file.seek(SeekFrom::Start(self.len));
            return Err(e);
        }
        self.len += buf.len() as u64;
        Ok(())
    }

    /// Empties the spool once everything in it is in the store.
    pub fn truncate(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        self.file.sync_data()?;
        self.len = 0;
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("{{\"seq\":{i}}}").into_bytes())
            .collect()
    }

    #[test]
    fn appended_records_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool");
        let (mut s, old) = Spool::open(&path).unwrap();
        assert!(old.is_empty());
        s.append_durable(&records(3)).unwrap();
        s.append_durable(&records(2)).unwrap();
        drop(s);
        let (s, old) = Spool::open(&path).unwrap();
        assert_eq!(old.len(), 5);
        assert_eq!(old[4], b"{\"seq\":1}");
        assert_eq!(s.torn_bytes_at_open, 0);
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_counted_at_every_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool");
        let (mut s, _) = Spool::open(&path).unwrap();
        s.append_durable(&records(4)).unwrap();
        drop(s);
        let whole = std::fs::read(&path).unwrap();
        let one = frame(b"{\"seq\":0}").unwrap().len();
        // Cut the file at every byte: the intact prefix is always found.
        for cut in 0..whole.len() {
            std::fs::write(&path, &whole[..cut]).unwrap();
            let (mut s, found) = Spool::open(&path).unwrap();
            assert_eq!(found.len(), cut / one, "cut at {cut}");
            assert_eq!(s.torn_bytes_at_open as usize, cut % one, "cut at {cut}");
            // Appending after a repair gives a clean file again.
            s.append_durable(&records(1)).unwrap();
            drop(s);
            let again = scan(&std::fs::read(&path).unwrap());
            assert_eq!(again.records.len(), cut / one + 1);
            assert_eq!(again.torn_bytes, 0);
        }
    }

    #[test]
    fn a_corrupt_frame_ends_the_intact_part() {
        let mut bytes = Vec::new();
        for r in records(3) {
            bytes.extend(frame(&r).unwrap());
        }
        let one = bytes.len() / 3;
        bytes[one + HEADER + 2] ^= 0xff; // flip a payload byte of the second frame
        let found = scan(&bytes);
        assert_eq!(found.records.len(), 1);
        assert_eq!(found.torn_bytes as usize, 2 * one);
        // A length field beyond the limit is a torn header, not an allocation.
        let mut bad = (u32::MAX).to_le_bytes().to_vec();
        bad.extend([0u8; 12]);
        assert_eq!(scan(&bad).records.len(), 0);
    }

    #[test]
    fn truncate_empties_the_spool() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool");
        let (mut s, _) = Spool::open(&path).unwrap();
        s.append_durable(&records(2)).unwrap();
        assert!(!s.is_empty());
        s.truncate().unwrap();
        assert!(s.is_empty());
        drop(s);
        assert!(Spool::open(&path).unwrap().1.is_empty());
    }
}
