//! Re-cuts incoming HTTP/2 data frames at gRPC message headers, so tonic decodes a 1 MiB packet
//! with one copy instead of two.
//!
//! tonic copies every data frame into its decode buffer and reserves room for a message only when
//! it reads the message's 5-byte header. A large frame that carries a header and most of the
//! following body arrives whole, so the body is already in the buffer when the reservation grows
//! it, and the grow copies it again (the buffer cannot grow in place: the previous packet, split
//! off it, is still being forwarded and stored). Handing tonic the frame in two pieces, the second
//! starting right after the header, makes the reservation happen while the buffer is empty.
//! Splitting a `Bytes` frame copies nothing.

use bytes::Bytes;

/// Length of a gRPC message header: a compression flag and a big-endian u32 length.
const HEADER: usize = 5;

/// Tracks the gRPC message framing of one request body.
#[derive(Debug, Default)]
pub(crate) struct MessageCuts {
    /// Body bytes of the current message still to come.
    body_left: u64,
    /// Header bytes of the next message seen so far (`header_len` of them).
    header: [u8; HEADER],
    header_len: usize,
}

impl MessageCuts {
    /// Splits `frame` after every message header that ends inside it (the pieces, in order,
    /// are the frame's bytes exactly).
    pub(crate) fn cut(&mut self, mut frame: Bytes) -> Vec<Bytes> {
        let mut pieces = Vec::new();
        let mut pos = 0;
        while pos < frame.len() {
            if self.body_left > 0 {
                let n =
                    (frame.len() - pos).min(usize::try_from(self.body_left).unwrap_or(usize::MAX));
                self.body_left -= n as u64;
                pos += n;
                continue;
            }
            let n = (frame.len() - pos).min(HEADER - self.header_len);
            self.header[self.header_len..self.header_len + n].copy_from_slice(&frame[pos..pos + n]);
            self.header_len += n;
            pos += n;
            if self.header_len == HEADER {
                let len = u32::from_be_bytes([
                    self.header[1],
                    self.header[2],
                    self.header[3],
                    self.header[4],
                ]);
                self.body_left = u64::from(len);
                self.header_len = 0;
                // Cut after a header only if a body follows in this frame.
                if len > 0 && pos < frame.len() {
                    pieces.push(frame.split_to(pos));
                    pos = 0;
                }
            }
        }
        pieces.push(frame);
        pieces
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(len: usize, fill: u8) -> Vec<u8> {
        let mut m = vec![0u8];
        m.extend_from_slice(&(len as u32).to_be_bytes());
        m.extend(std::iter::repeat_n(fill, len));
        m
    }

    #[test]
    fn cuts_after_each_header_followed_by_body_and_keeps_bytes() {
        let mut stream = message(10, 1);
        stream.extend(message(0, 0));
        stream.extend(message(7, 2));
        stream.extend(message(20, 3));
        // Every way of slicing the stream into frames (of a few sizes) gives the same bytes,
        // and every piece that ends with a header's last byte is followed by that body's start.
        for frame_len in [1, 2, 3, 5, 6, 9, 16, 40, 1000] {
            let mut cuts = MessageCuts::default();
            let mut out = Vec::new();
            let mut ends = Vec::new();
            for f in stream.chunks(frame_len) {
                for p in cuts.cut(Bytes::copy_from_slice(f)) {
                    out.extend_from_slice(&p);
                    ends.push(out.len());
                }
            }
            assert_eq!(out, stream, "frame_len {frame_len}");
            // Header ends of the messages with a body: offsets 5, 5+10+5+5=25, 25+7+5=37.
            for header_end in [5, 25, 37] {
                assert!(
                    ends.contains(&header_end),
                    "frame_len {frame_len}: no cut at {header_end}: {ends:?}"
                );
            }
        }
    }

    #[test]
    fn a_whole_frame_after_its_header_is_one_piece() {
        let mut cuts = MessageCuts::default();
        let m = message(100, 7);
        let pieces = cuts.cut(Bytes::copy_from_slice(&m));
        assert_eq!(
            pieces.iter().map(Bytes::len).collect::<Vec<_>>(),
            vec![5, 100]
        );
        let pieces = cuts.cut(Bytes::copy_from_slice(&m[..50]));
        assert_eq!(
            pieces.iter().map(Bytes::len).collect::<Vec<_>>(),
            vec![5, 45]
        );
        let pieces = cuts.cut(Bytes::copy_from_slice(&m[50..]));
        assert_eq!(pieces.iter().map(Bytes::len).collect::<Vec<_>>(), vec![55]);
    }
}
