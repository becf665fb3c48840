//! The spool's file format: append-only segments of checksummed frames
//! (the [`writer`](super::writer) appends and drains them). After a crash,
//! a torn or corrupt tail is found by its checksum, counted and skipped; it
//! is never fatal.
//!
//! Frame: `len: u32 LE | crc32(payload): u32 LE | payload (len bytes)`.
//! Payloads are never empty: a segment's records end at its first zero
//! length, and zeros after them are space the writer had not used yet.

use std::io;

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
    /// Bytes after the last intact frame (a torn or corrupt tail), unless
    /// they are all zeros (unused space).
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
        if len == 0 || len > MAX_FRAME || bytes.len() - at - HEADER < len {
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
    let rest = &bytes[at..];
    out.torn_bytes = if rest.iter().all(|&b| b == 0) {
        0
    } else {
        rest.len() as u64
    };
    out
}

/// Appends one frame to `buf`, its payload written by `write`. On an error
/// `buf` is as before.
pub fn push_frame(
    buf: &mut Vec<u8>,
    write: impl FnOnce(&mut Vec<u8>) -> io::Result<()>,
) -> io::Result<()> {
    let start = buf.len();
    buf.extend_from_slice(&[0; HEADER]);
    let written = write(buf).and_then(|()| {
        let len = buf.len() - start - HEADER;
        if len == 0 || len > MAX_FRAME {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                if len == 0 {
                    "empty audit record"
                } else {
                    "audit record too large"
                },
            ));
        }
        Ok(len)
    });
    match written {
        Ok(len) => {
            let crc = crc32fast::hash(&buf[start + HEADER..]);
            buf[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
            buf[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
            Ok(())
        }
        Err(e) => {
            buf.truncate(start);
            Err(e)
        }
    }
}

/// Encodes one frame.
pub fn frame(payload: &[u8]) -> io::Result<Vec<u8>> {
    let mut f = Vec::with_capacity(HEADER + payload.len());
    push_frame(&mut f, |w| {
        w.extend_from_slice(payload);
        Ok(())
    })?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(n: usize) -> Vec<u8> {
        let mut bytes = Vec::new();
        for i in 0..n {
            bytes.extend(frame(format!("{{\"seq\":{i}}}").as_bytes()).unwrap());
        }
        bytes
    }

    #[test]
    fn a_torn_tail_is_found_at_every_cut() {
        let whole = frames(4);
        let one = whole.len() / 4;
        // Cut the file at every byte: the intact prefix is always found.
        for cut in 0..=whole.len() {
            let found = scan(&whole[..cut]);
            assert_eq!(found.records.len(), cut / one, "cut at {cut}");
            assert_eq!(found.torn_bytes as usize, cut % one, "cut at {cut}");
            assert_eq!(found.valid_len as usize, cut - cut % one);
        }
        assert_eq!(scan(&whole).records[3], b"{\"seq\":3}");
    }

    #[test]
    fn a_corrupt_frame_ends_the_intact_part() {
        let mut bytes = frames(3);
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
    fn zeros_after_the_records_are_unused_space_not_a_torn_tail() {
        let mut bytes = frames(3);
        let records = bytes.len();
        bytes.extend([0u8; 4096]);
        let found = scan(&bytes);
        assert_eq!(found.records.len(), 3);
        assert_eq!(found.valid_len as usize, records);
        assert_eq!(found.torn_bytes, 0);
        // A frame torn inside the zeros (its header written, its payload
        // not) is torn, with everything after it.
        let torn = frame(b"{\"seq\":9}").unwrap();
        bytes[records..records + 10].copy_from_slice(&torn[..10]);
        let found = scan(&bytes);
        assert_eq!(found.records.len(), 3);
        assert_eq!(found.torn_bytes as usize, 4096);
        // Nothing but zeros: no records, nothing torn.
        assert_eq!(scan(&[0u8; 100]), Scan::default());
    }

    #[test]
    fn an_empty_record_is_refused() {
        assert!(frame(b"").is_err());
    }

    #[test]
    fn an_oversized_record_is_refused() {
        assert!(frame(&vec![b'x'; MAX_FRAME + 1]).is_err());
    }
}
