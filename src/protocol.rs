//! The framed binary protocol between the coordinator and the nodes.
//!
//! A frame is a little-endian `u32` payload length, then the payload: a tag
//! byte, a `u64` request id (echoed in the response), and the body. A frame
//! longer than [`MAX_FRAME_BYTES`], an unknown tag or a body of the wrong size
//! is malformed: the node drops that connection and keeps serving.
//!
//! | tag | message | body |
//! | --- | --- | --- |
//! | 1 | `Store` | `u32` n, then n × (`i64` id, `u64` version, `u32` tenant) |
//! | 129 | `Stored` | none |
//!
//! Counts do not cross this protocol: the coordinator reads them from the
//! master's memory (see `Node::count_after_queued`).

use crate::codec::{self, ENTRY_BYTES, Reader};
use crate::store::Entry;
use std::fmt;
use std::io::{self, Read};

/// Largest frame payload accepted, in bytes.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
const HEADER_BYTES: usize = 1 + 8;
const STORE_HEADER_BYTES: usize = HEADER_BYTES + 4;
/// Most entries one `Store` frame carries; a larger chunk is sent as several.
pub const MAX_ENTRIES_PER_FRAME: usize = (MAX_FRAME_BYTES - STORE_HEADER_BYTES) / ENTRY_BYTES;
const TAG_STORE: u8 = 1;
const TAG_STORED: u8 = 129;

/// What the coordinator asks a node.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// Store these entries (the node's chunk of a batch) and replicate them.
    Store { id: u64, entries: Vec<Entry> },
}

/// What a node answers.
#[derive(Debug, PartialEq, Eq)]
pub enum Response {
    Stored { id: u64 },
}

impl Response {
    pub fn request_id(&self) -> u64 {
        match self {
            Response::Stored { id } => *id,
        }
    }
}

/// Why a frame could not be read.
#[derive(Debug)]
pub enum FrameError {
    Io(io::Error),
    TooLarge(usize),
    Malformed(&'static str),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Io(e) => write!(f, "i/o error: {e}"),
            FrameError::TooLarge(n) => write!(
                f,
                "frame of {n} bytes is over the {MAX_FRAME_BYTES}-byte limit"
            ),
            FrameError::Malformed(why) => write!(f, "malformed frame: {why}"),
        }
    }
}

impl std::error::Error for FrameError {}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> Self {
        FrameError::Io(e)
    }
}

/// Reads one frame's payload into `payload` (reused between calls).
pub fn read_frame(reader: &mut impl Read, payload: &mut Vec<u8>) -> Result<(), FrameError> {
    let mut length = [0u8; 4];
    reader.read_exact(&mut length)?;
    let length = u32::from_le_bytes(length) as usize;
    if length > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge(length));
    }
    payload.clear();
    payload.resize(length, 0);
    reader.read_exact(payload)?;
    Ok(())
}

/// Starts a frame in `out` (cleared); [`finish_frame`] fills in its length.
fn start_frame(out: &mut Vec<u8>, tag: u8, id: u64) {
    out.clear();
    out.extend_from_slice(&[0; 4]);
    out.push(tag);
    out.extend_from_slice(&id.to_le_bytes());
}

fn finish_frame(out: &mut [u8]) {
    // Every frame we build is far below 4 GiB (at most MAX_FRAME_BYTES).
    let length = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&length.to_le_bytes());
}

/// Encodes a `Store` of at most [`MAX_ENTRIES_PER_FRAME`] entries.
pub fn encode_store(out: &mut Vec<u8>, id: u64, entries: &[Entry]) {
    debug_assert!(entries.len() <= MAX_ENTRIES_PER_FRAME);
    start_frame(out, TAG_STORE, id);
    out.reserve(4 + entries.len() * ENTRY_BYTES);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for entry in entries {
        codec::put_entry(out, entry.raw());
    }
    finish_frame(out);
}

pub fn encode_response(out: &mut Vec<u8>, response: &Response) {
    match response {
        Response::Stored { id } => start_frame(out, TAG_STORED, *id),
    }
    finish_frame(out);
}

const TOO_SHORT: FrameError = FrameError::Malformed("payload ends too early");

impl Request {
    pub fn decode(payload: &[u8]) -> Result<Request, FrameError> {
        let mut reader = Reader::new(payload);
        let tag = reader.u8().map_err(|_| TOO_SHORT)?;
        let id = reader.u64().map_err(|_| TOO_SHORT)?;
        match tag {
            TAG_STORE => {
                let n = reader.u32().map_err(|_| TOO_SHORT)? as usize;
                let entries = reader.entries_to_end(n).map_err(|_| {
                    FrameError::Malformed("entry count does not match the frame length")
                })?;
                Ok(Request::Store {
                    id,
                    entries: entries.into_iter().map(Entry::from_raw).collect(),
                })
            }
            _ => Err(FrameError::Malformed("unknown request tag")),
        }
    }
}

impl Response {
    pub fn decode(payload: &[u8]) -> Result<Response, FrameError> {
        let mut reader = Reader::new(payload);
        let tag = reader.u8().map_err(|_| TOO_SHORT)?;
        let id = reader.u64().map_err(|_| TOO_SHORT)?;
        if !reader.is_empty() {
            return Err(FrameError::Malformed("trailing bytes after the body"));
        }
        match tag {
            TAG_STORED => Ok(Response::Stored { id }),
            _ => Err(FrameError::Malformed("unknown response tag")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenants::TenantId;
    use crate::version::Version;

    fn payload_of(frame: &[u8]) -> Vec<u8> {
        let mut payload = Vec::new();
        read_frame(&mut &frame[..], &mut payload).unwrap();
        payload
    }

    #[test]
    fn requests_round_trip() {
        let entries = vec![
            Entry {
                id: i64::MIN,
                version: Version::new(u64::MAX),
                tenant: TenantId::new(7),
            },
            Entry {
                id: 42,
                version: Version::new(1),
                tenant: TenantId::new(0),
            },
        ];
        let mut frame = Vec::new();
        encode_store(&mut frame, 9, &entries);
        assert_eq!(frame.len(), 4 + STORE_HEADER_BYTES + 2 * ENTRY_BYTES);
        assert_eq!(
            Request::decode(&payload_of(&frame)).unwrap(),
            Request::Store { id: 9, entries }
        );
    }

    #[test]
    fn responses_round_trip() {
        let mut frame = Vec::new();
        for response in [
            Response::Stored { id: 1 },
            Response::Stored { id: u64::MAX },
        ] {
            encode_response(&mut frame, &response);
            assert_eq!(Response::decode(&payload_of(&frame)).unwrap(), response);
        }
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        let mut payload = Vec::new();
        let oversize = ((MAX_FRAME_BYTES + 1) as u32).to_le_bytes();
        assert!(matches!(
            read_frame(&mut &oversize[..], &mut payload),
            Err(FrameError::TooLarge(_))
        ));
        let truncated = [10u8, 0, 0, 0, 1, 2];
        assert!(matches!(
            read_frame(&mut &truncated[..], &mut payload),
            Err(FrameError::Io(_))
        ));

        for bad in [
            &[][..],
            &[1],
            &[99, 0, 0, 0, 0, 0, 0, 0, 0],
            &[1, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255],
        ] {
            assert!(
                matches!(Request::decode(bad), Err(FrameError::Malformed(_))),
                "{bad:?}"
            );
        }
        let mut stored_with_extra = vec![TAG_STORED];
        stored_with_extra.extend_from_slice(&[0; 8]);
        stored_with_extra.push(0);
        assert!(matches!(
            Response::decode(&stored_with_extra),
            Err(FrameError::Malformed(_))
        ));
    }
}
