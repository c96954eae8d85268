//! Stream framing as the TCP/TLS driver does it (`src/server/stream.rs`,
//! `run_connection`): bytes arrive in reads of arbitrary sizes into a buffer
//! that starts at 2048 bytes and doubles up to `max_message`; every complete
//! frame is consumed from the front, the partial rest moves to the start.
//!
//! The input is a header, then the byte stream:
//! - 2 bytes: `max_message`, mapped into the range the config accepts
//!   (548..=65555);
//! - 1 byte: how many read sizes follow (its value mod 16), each 2 bytes
//!   (a read takes 1 + that many bytes, at most what the buffer has room
//!   for), used in turn; with none, every read fills the buffer.
//!
//! Checked: a frame never exceeds `max_message` nor the bytes buffered, its
//! length is the one its header announces, a full buffer always holds a
//! whole frame (the driver closes the connection otherwise), and the frames
//! and the way the stream ends are the same as when the whole stream is
//! framed from one buffer, whatever the read sizes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::framing::{next_frame, Frame, FramingError};

/// The range `stream.max_message_bytes` is allowed by the config.
const MIN_MAX: usize = 548;
const MAX_MAX: usize = 65555;
/// The driver's first buffer size.
const FIRST_BUF: usize = 2048;

/// How a stream ends: a framing error (the connection is closed), or the
/// peer closing with this many bytes of a partial frame left.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Error(FramingError),
    Partial(usize),
}

/// Checks a frame found at `at` in `stream` against its header.
fn check_frame(stream: &[u8], at: usize, frame: Frame, max: usize) {
    let bytes = &stream[at..];
    assert!(!frame.is_empty());
    assert!(
        frame.len() <= max,
        "frame of {} bytes over the limit {max}",
        frame.len()
    );
    assert!(
        frame.len() <= bytes.len(),
        "frame of {} bytes, {} given",
        frame.len(),
        bytes.len()
    );
    let len16 = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    match frame {
        Frame::Stun(n) => {
            assert_eq!(bytes[0] & 0xC0, 0);
            assert_eq!(bytes[4..8], [0x21, 0x12, 0xa4, 0x42]);
            assert_eq!(n, 20 + len16);
        }
        Frame::ChannelData { len, payload } => {
            assert_eq!(bytes[0] & 0xC0, 0x40);
            assert_eq!(payload, len16);
            assert_eq!(len, 4 + (len16 + 3) / 4 * 4);
        }
    }
}

/// The whole stream framed from one buffer.
fn frame_whole(stream: &[u8], max: usize) -> (Vec<(usize, Frame)>, End) {
    let mut frames = Vec::new();
    let mut at = 0;
    loop {
        match next_frame(&stream[at..], max) {
            Err(e) => return (frames, End::Error(e)),
            Ok(None) => return (frames, End::Partial(stream.len() - at)),
            Ok(Some(frame)) => {
                check_frame(stream, at, frame, max);
                frames.push((at, frame));
                at += frame.len();
            }
        }
    }
}

/// The stream framed as `run_connection` does, reads sized by `reads`.
fn frame_reads(stream: &[u8], max: usize, reads: &[usize]) -> (Vec<(usize, Frame)>, End) {
    let mut frames = Vec::new();
    let mut buf = vec![0u8; FIRST_BUF];
    let mut filled = 0;
    // Where `buf[0]` is in the stream, and how much of the stream was read.
    let mut base = 0;
    let mut read = 0;
    let mut next_read = reads.iter().cycle();
    loop {
        let mut start = 0;
        loop {
            match next_frame(&buf[start..filled], max) {
                Err(e) => return (frames, End::Error(e)),
                Ok(None) => break,
                Ok(Some(frame)) => {
                    assert!(start + frame.len() <= filled, "frame past the bytes read");
                    check_frame(stream, base + start, frame, max);
                    assert_eq!(
                        buf[start..start + frame.len()],
                        stream[base + start..base + start + frame.len()]
                    );
                    frames.push((base + start, frame));
                    start += frame.len();
                }
            }
        }
        buf.copy_within(start..filled, 0);
        filled -= start;
        base += start;
        if filled == buf.len() {
            let want = (buf.len() * 2).min(max.max(FIRST_BUF));
            assert!(
                want > buf.len(),
                "a full buffer of {filled} bytes holds no whole frame (max {max})"
            );
            buf.resize(want, 0);
        }
        if read == stream.len() {
            // The peer closed.
            return (frames, End::Partial(filled));
        }
        let room = buf.len() - filled;
        let n = next_read.next().map_or(room, |&r| r.min(room)).min(stream.len() - read);
        assert!(n > 0);
        buf[filled..filled + n].copy_from_slice(&stream[read..read + n]);
        filled += n;
        read += n;
        assert_eq!(base + filled, read);
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let max = MIN_MAX + usize::from(u16::from_be_bytes([data[0], data[1]])) % (MAX_MAX - MIN_MAX + 1);
    let count = usize::from(data[2] % 16);
    let Some(sizes) = data.get(3..3 + 2 * count) else {
        return;
    };
    let reads: Vec<usize> = sizes
        .chunks_exact(2)
        .map(|s| 1 + usize::from(u16::from_be_bytes([s[0], s[1]])))
        .collect();
    let stream = &data[3 + 2 * count..];

    let whole = frame_whole(stream, max);
    let consumed: usize = whole.0.iter().map(|(_, f)| f.len()).sum();
    assert!(consumed <= stream.len());
    if let End::Partial(rest) = whole.1 {
        assert_eq!(consumed + rest, stream.len());
    }
    assert_eq!(frame_reads(stream, max, &reads), whole);
    // One byte at a time, the hardest split.
    assert_eq!(frame_reads(stream, max, &[1]), whole);
});
