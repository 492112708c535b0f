//! The framed binary protocol of the node ports (SPEC.md "Node ports").
//! The coordinator of this process hands chunks to nodes in memory
//! ([`crate::node::Node::take`]); a `Store` frame from a peer that proved it
//! knows the process secret goes through the same intake.
//!
//! A frame is a little-endian `u32` payload length, then the payload: a tag
//! byte and a body. A frame longer than the reader allows, an unknown tag or
//! a body of the wrong size is malformed: the node drops that connection and
//! keeps serving. A frame's buffer grows only as its bytes arrive, so a
//! length header alone costs nothing.
//!
//! A connection starts with a handshake: the peer says `Hello`, the node
//! answers with a `Challenge`, and acts on nothing until the peer sends the
//! `Proof`: the MAC of the challenge under the process secret (see
//! [`crate::keys`]). The node says nothing before a well-formed `Hello`, so
//! a client that sends garbage, or nothing, hears nothing. Then:
//!
//! | tag | message | body |
//! | --- | --- | --- |
//! | 11 | `Hello` | none |
//! | 10 | `Challenge` (node → peer) | 16-byte nonce |
//! | 12 | `Proof` | 16-byte tag |
//! | 131 | `Welcome` (node → peer) | none: the proof is accepted, frames may follow |
//! | 1 | `Store` | `u64` request id, `u32` pieces, then per piece: `u64` first version of its batch, `u64` offset in the batch, `u32` n, n × entry (see [`crate::codec`]) |
//! | 129 | `Stored` | `u64` request id: every piece is in the replication log |
//! | 130 | `Refused` | `u64` request id: the node is stalled or the log is full; nothing was taken |
//!
//! Entry `i` of a piece must carry version `first + offset + i`. Counts do
//! not cross this protocol either: the coordinator reads them from the
//! nodes' memory (see `node::replication::View`).

use crate::codec::{self, ENTRY_BYTES, Reader};
use crate::keys::{NONCE_BYTES, TAG_BYTES};
use crate::replication::Piece;
use crate::store::Entry;
use crate::version::Version;
use std::fmt;
use std::io::{self, Read};

/// Largest `Store` frame payload accepted, in bytes.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
/// Largest frame accepted before the peer is authenticated.
pub const MAX_HANDSHAKE_BYTES: usize = 1 + TAG_BYTES;
const PIECE_HEADER_BYTES: usize = 8 + 8 + 4;
const TAG_STORE: u8 = 1;
const TAG_CHALLENGE: u8 = 10;
const TAG_HELLO: u8 = 11;
const TAG_PROOF: u8 = 12;
const TAG_STORED: u8 = 129;
const TAG_REFUSED: u8 = 130;
const TAG_WELCOME: u8 = 131;

/// What a peer sends a node.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    Hello,
    Proof {
        tag: [u8; TAG_BYTES],
    },
    /// Take these pieces of batches into the replication log.
    Store {
        id: u64,
        pieces: Vec<Piece>,
    },
}

/// What a node answers.
#[derive(Debug, PartialEq, Eq)]
pub enum Response {
    Challenge { nonce: [u8; NONCE_BYTES] },
    Stored { id: u64 },
    Refused { id: u64 },
    Welcome,
}

/// A piece to encode: `entries` are the batch's items from `offset` on.
pub struct OutgoingPiece<'a> {
    pub batch: Version,
    pub offset: u64,
    pub entries: &'a [Entry],
}

/// Bytes a piece of `entries` entries adds to a `Store` frame.
fn piece_bytes(entries: usize) -> usize {
    PIECE_HEADER_BYTES + entries * ENTRY_BYTES
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
            FrameError::TooLarge(n) => write!(f, "frame of {n} bytes is over the limit"),
            FrameError::Malformed(why) => write!(f, "malformed frame: {why}"),
        }
    }
}

impl std::error::Error for FrameError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FrameError::Io(e) => Some(e),
            FrameError::TooLarge(_) | FrameError::Malformed(_) => None,
        }
    }
}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> Self {
        FrameError::Io(e)
    }
}

impl From<codec::Truncated> for FrameError {
    fn from(_: codec::Truncated) -> Self {
        FrameError::Malformed("payload ends too early")
    }
}

/// Reads one frame's payload, at most `max` bytes, into `payload` (reused
/// between calls). The buffer grows as bytes arrive, never to an announced
/// length up front.
pub fn read_frame(
    reader: &mut impl Read,
    payload: &mut Vec<u8>,
    max: usize,
) -> Result<(), FrameError> {
    let mut length = [0u8; 4];
    reader.read_exact(&mut length)?;
    let length = u32::from_le_bytes(length) as usize;
    if length > max {
        return Err(FrameError::TooLarge(length));
    }
    payload.clear();
    let read = reader.take(length as u64).read_to_end(payload)?;
    if read < length {
        return Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(())
}

/// Starts a frame in `out` (cleared); [`finish_frame`] fills in its length.
fn start_frame(out: &mut Vec<u8>, tag: u8) {
    out.clear();
    out.extend_from_slice(&[0; 4]);
    out.push(tag);
}

fn finish_frame(out: &mut [u8]) {
    // Every frame we build is far below 4 GiB (at most MAX_FRAME_BYTES).
    let length = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&length.to_le_bytes());
}

/// Encodes a `Store` of pieces (at most [`MAX_FRAME_BYTES`] in all, or the
/// node drops the connection).
pub fn encode_store(out: &mut Vec<u8>, id: u64, pieces: &[OutgoingPiece<'_>]) {
    start_frame(out, TAG_STORE);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&(pieces.len() as u32).to_le_bytes());
    for piece in pieces {
        out.reserve(piece_bytes(piece.entries.len()));
        out.extend_from_slice(&piece.batch.get().to_le_bytes());
        out.extend_from_slice(&piece.offset.to_le_bytes());
        out.extend_from_slice(&(piece.entries.len() as u32).to_le_bytes());
        for entry in piece.entries {
            codec::put_entry(out, entry.raw());
        }
    }
    finish_frame(out);
}

pub fn encode_hello(out: &mut Vec<u8>) {
    start_frame(out, TAG_HELLO);
    finish_frame(out);
}

pub fn encode_proof(out: &mut Vec<u8>, tag: &[u8; TAG_BYTES]) {
    start_frame(out, TAG_PROOF);
    out.extend_from_slice(tag);
    finish_frame(out);
}

pub fn encode_response(out: &mut Vec<u8>, response: &Response) {
    match response {
        Response::Challenge { nonce } => {
            start_frame(out, TAG_CHALLENGE);
            out.extend_from_slice(nonce);
        }
        Response::Stored { id } => {
            start_frame(out, TAG_STORED);
            out.extend_from_slice(&id.to_le_bytes());
        }
        Response::Refused { id } => {
            start_frame(out, TAG_REFUSED);
            out.extend_from_slice(&id.to_le_bytes());
        }
        Response::Welcome => start_frame(out, TAG_WELCOME),
    }
    finish_frame(out);
}

impl Request {
    pub fn decode(payload: &[u8]) -> Result<Request, FrameError> {
        let mut reader = Reader::new(payload);
        let request = match reader.u8()? {
            TAG_HELLO => Request::Hello,
            TAG_PROOF => Request::Proof {
                tag: reader.array()?,
            },
            TAG_STORE => {
                let id = reader.u64()?;
                let count = reader.u32()? as usize;
                // Each piece takes at least its header: a count beyond what
                // the payload can hold is refused before allocating for it.
                if count > reader.rest().len() / PIECE_HEADER_BYTES {
                    return Err(FrameError::Malformed("piece count exceeds the frame"));
                }
                let mut pieces = Vec::with_capacity(count);
                for _ in 0..count {
                    pieces.push(decode_piece(&mut reader)?);
                }
                Request::Store { id, pieces }
            }
            _ => return Err(FrameError::Malformed("unknown request tag")),
        };
        end(&reader)?;
        Ok(request)
    }
}

fn decode_piece(reader: &mut Reader<'_>) -> Result<Piece, FrameError> {
    let batch = Version::new(reader.u64()?);
    let offset = reader.u64()?;
    let count = reader.u32()? as usize;
    let bytes = reader.take(count.saturating_mul(ENTRY_BYTES))?;
    let raw = Reader::new(bytes)
        .entries_to_end(count)
        .map_err(|_| FrameError::Malformed("entry count does not match the frame"))?;
    let mut entries = Vec::with_capacity(count);
    for (index, raw) in raw.into_iter().enumerate() {
        let expected = batch
            .get()
            .checked_add(offset)
            .and_then(|v| v.checked_add(index as u64));
        if expected != Some(raw.version.get()) || !raw.version.is_valid() {
            return Err(FrameError::Malformed("an entry's version is not its place"));
        }
        entries.push(Entry::from_raw(raw));
    }
    Ok(Piece {
        batch,
        offset,
        entries,
    })
}

impl Response {
    pub fn decode(payload: &[u8]) -> Result<Response, FrameError> {
        let mut reader = Reader::new(payload);
        let response = match reader.u8()? {
            TAG_CHALLENGE => Response::Challenge {
                nonce: reader.array()?,
            },
            TAG_STORED => Response::Stored { id: reader.u64()? },
            TAG_REFUSED => Response::Refused { id: reader.u64()? },
            TAG_WELCOME => Response::Welcome,
            _ => return Err(FrameError::Malformed("unknown response tag")),
        };
        end(&reader)?;
        Ok(response)
    }
}

fn end(reader: &Reader<'_>) -> Result<(), FrameError> {
    if reader.is_empty() {
        Ok(())
    } else {
        Err(FrameError::Malformed("trailing bytes after the body"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenants::TenantId;

    /// Bytes of a `Store` frame with no pieces: length, tag, id, count.
    const EMPTY_STORE_BYTES: usize = 4 + 1 + 8 + 4;

    fn payload_of(frame: &[u8]) -> Vec<u8> {
        let mut payload = Vec::new();
        read_frame(&mut &frame[..], &mut payload, MAX_FRAME_BYTES).unwrap();
        payload
    }

    fn entries(first: u64, count: u64) -> Vec<Entry> {
        (0..count)
            .map(|i| Entry {
                id: i as i64 - 1,
                version: Version::new(first + i),
                tenant: TenantId::new(i as u32),
            })
            .collect()
    }

    #[test]
    fn stores_round_trip_with_several_pieces() {
        let a = entries(10, 3);
        let b = entries(102, 2);
        let mut frame = Vec::new();
        let outgoing = [
            OutgoingPiece {
                batch: Version::new(10),
                offset: 0,
                entries: &a,
            },
            OutgoingPiece {
                batch: Version::new(100),
                offset: 2,
                entries: &b,
            },
        ];
        encode_store(&mut frame, 9, &outgoing);
        assert_eq!(
            frame.len(),
            EMPTY_STORE_BYTES + piece_bytes(3) + piece_bytes(2)
        );
        let expected = Request::Store {
            id: 9,
            pieces: vec![
                Piece {
                    batch: Version::new(10),
                    offset: 0,
                    entries: a.clone(),
                },
                Piece {
                    batch: Version::new(100),
                    offset: 2,
                    entries: b.clone(),
                },
            ],
        };
        assert_eq!(Request::decode(&payload_of(&frame)).unwrap(), expected);
    }

    #[test]
    fn handshake_and_responses_round_trip() {
        let mut frame = Vec::new();
        encode_hello(&mut frame);
        assert_eq!(
            Request::decode(&payload_of(&frame)).unwrap(),
            Request::Hello
        );
        encode_proof(&mut frame, &[7; TAG_BYTES]);
        assert_eq!(frame.len(), 4 + MAX_HANDSHAKE_BYTES);
        assert_eq!(
            Request::decode(&payload_of(&frame)).unwrap(),
            Request::Proof {
                tag: [7; TAG_BYTES]
            }
        );
        for response in [
            Response::Challenge {
                nonce: [3; NONCE_BYTES],
            },
            Response::Stored { id: u64::MAX },
            Response::Refused { id: 1 },
            Response::Welcome,
        ] {
            encode_response(&mut frame, &response);
            assert_eq!(Response::decode(&payload_of(&frame)).unwrap(), response);
        }
    }

    #[test]
    fn a_version_out_of_place_is_malformed() {
        let wrong = entries(11, 1);
        let mut frame = Vec::new();
        let outgoing = [OutgoingPiece {
            batch: Version::new(10),
            offset: 0,
            entries: &wrong,
        }];
        encode_store(&mut frame, 1, &outgoing);
        assert!(matches!(
            Request::decode(&payload_of(&frame)),
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        let mut payload = Vec::new();
        let oversize = ((MAX_FRAME_BYTES + 1) as u32).to_le_bytes();
        assert!(matches!(
            read_frame(&mut &oversize[..], &mut payload, MAX_FRAME_BYTES),
            Err(FrameError::TooLarge(_))
        ));
        let hello_limit = [100u8, 0, 0, 0];
        assert!(matches!(
            read_frame(&mut &hello_limit[..], &mut payload, MAX_HANDSHAKE_BYTES),
            Err(FrameError::TooLarge(100))
        ));
        // A header announcing 1 MiB followed by 2 bytes: an error, and the
        // buffer holds only what arrived.
        let announced = [&(1u32 << 20).to_le_bytes()[..], &[1, 2]].concat();
        assert!(matches!(
            read_frame(&mut &announced[..], &mut payload, MAX_FRAME_BYTES),
            Err(FrameError::Io(_))
        ));
        assert!(payload.capacity() < 4096, "{}", payload.capacity());
        for bad in [
            &[][..],
            &[TAG_STORE],
            &[99, 0, 0, 0, 0, 0, 0, 0, 0],
            &[TAG_STORE, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255],
            &[TAG_PROOF, 1, 2],
            &[TAG_HELLO, 1],
        ] {
            assert!(
                matches!(Request::decode(bad), Err(FrameError::Malformed(_))),
                "{bad:?}"
            );
        }
        let mut stored_with_extra = vec![TAG_STORED];
        stored_with_extra.extend_from_slice(&[0; 9]);
        assert!(matches!(
            Response::decode(&stored_with_extra),
            Err(FrameError::Malformed(_))
        ));
    }
}
