//! Length-prefixed, versioned, size-limited postcard frames.
//!
//! Every message on a cairn stream travels as one frame:
//!
//! ```text
//! +----------------------+------------------+----------------------+
//! | payload length (u32, | protocol version | postcard payload     |
//! | big-endian)          | (u8)             | (length bytes)       |
//! +----------------------+------------------+----------------------+
//! ```
//!
//! The reader checks the version and the announced length against its limit *before* it
//! allocates anything, so a peer cannot make a node allocate more than the limit by lying in a
//! header. quinn's `SendStream` and `RecvStream` implement tokio's `AsyncWrite` and `AsyncRead`,
//! so [`write_frame`] and [`read_frame`] are used directly on QUIC streams.

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The version byte every frame carries. A frame with any other version is refused
/// ([`FrameError::Version`]): peers of different protocol versions never talk past each other.
pub const PROTOCOL_VERSION: u8 = 1;

/// The header: the payload length as a big-endian `u32`, then the protocol version byte.
pub const FRAME_HEADER_BYTES: usize = 5;

/// The default payload limit: an 8 MiB value (the largest cairn accepts) plus its key and the
/// message around it fits with room to spare.
pub const FRAME_MAX_BYTES_DEFAULT: u32 = 16 * 1024 * 1024 + 64 * 1024;

/// QUIC application close codes a node uses when it drops a connection.
pub mod close {
    /// The connection is no longer needed.
    pub const NORMAL: u32 = 0;
    /// The peer sent a frame that could not be read (oversized, wrong version, undecodable).
    pub const FRAME_ERROR: u32 = 1;
    /// The peer's certificate does not grant what it asked for (e.g. a client talking the peer
    /// protocol).
    pub const NOT_AUTHORIZED: u32 = 2;
    /// The node is shutting down.
    pub const SHUTTING_DOWN: u32 = 3;
}

/// Why a frame could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The payload announced by a header (read) or produced by encoding (write) is longer than
    /// the limit.
    #[error("frame payload of {len} bytes exceeds the limit of {max} bytes")]
    Oversized {
        /// The payload length, in bytes.
        len: u64,
        /// The limit, in bytes.
        max: u32,
    },
    /// The header carries a protocol version other than [`PROTOCOL_VERSION`].
    #[error("frame has protocol version {got}, expected {PROTOCOL_VERSION}")]
    Version {
        /// The version the header carried.
        got: u8,
    },
    /// The stream ended inside a frame (in its header or its payload).
    #[error("stream ended inside a frame")]
    Truncated,
    /// postcard could not decode the payload as the expected type, or bytes were left over.
    #[error("cannot decode frame payload: {0}")]
    Decode(String),
    /// postcard could not encode the message.
    #[error("cannot encode frame payload: {0}")]
    Encode(String),
    /// Any other error of the underlying stream.
    #[error("stream error: {0}")]
    Io(#[source] std::io::Error),
}

impl FrameError {
    /// A stable snake_case label for metrics and logs: `oversized`, `version`, `truncated`,
    /// `decode`, `encode` or `io`.
    /// Every value [`FrameError::reason`] returns (metrics register them at 0).
    pub const REASONS: &'static [&'static str] = &[
        "oversized",
        "version",
        "truncated",
        "decode",
        "encode",
        "io",
    ];

    pub fn reason(&self) -> &'static str {
        match self {
            Self::Oversized { .. } => "oversized",
            Self::Version { .. } => "version",
            Self::Truncated => "truncated",
            Self::Decode(_) => "decode",
            Self::Encode(_) => "encode",
            Self::Io(_) => "io",
        }
    }
}

impl From<std::io::Error> for FrameError {
    /// An unexpected end of stream means the frame was cut short; everything else is a stream
    /// error.
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Self::Truncated
        } else {
            Self::Io(e)
        }
    }
}

/// Encodes `msg` as one frame (header and payload).
///
/// Fails with [`FrameError::Oversized`] when the payload is longer than `max` bytes, and with
/// [`FrameError::Encode`] when postcard cannot encode the message.
pub fn encode<T: Serialize>(msg: &T, max: u32) -> Result<Vec<u8>, FrameError> {
    // Serialise behind a placeholder header so the frame is built in one buffer, then fill the
    // header in once the payload length is known.
    let mut frame = postcard::to_extend(msg, vec![0u8; FRAME_HEADER_BYTES])
        .map_err(|e| FrameError::Encode(e.to_string()))?;
    let len = frame.len() - FRAME_HEADER_BYTES;
    let len = match u32::try_from(len) {
        Ok(len) if len <= max => len,
        _ => {
            return Err(FrameError::Oversized {
                len: len as u64,
                max,
            });
        }
    };
    frame[..4].copy_from_slice(&len.to_be_bytes());
    frame[4] = PROTOCOL_VERSION;
    Ok(frame)
}

/// Encodes `msg` as one frame and writes it to `w`, then flushes `w`.
///
/// Nothing is written when encoding fails (including [`FrameError::Oversized`]), so the stream
/// stays usable for the next frame. A write error may leave a partial frame on the stream.
pub async fn write_frame<W, T>(w: &mut W, msg: &T, max: u32) -> Result<(), FrameError>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    let frame = encode(msg, max)?;
    w.write_all(&frame).await.map_err(FrameError::Io)?;
    w.flush().await.map_err(FrameError::Io)?;
    Ok(())
}

/// Reads one frame from `r` and decodes its payload as a `T`.
///
/// Returns `Ok(None)` when the stream ended cleanly before the first header byte: the peer has
/// nothing more to send. A stream that ends anywhere else inside a frame is
/// [`FrameError::Truncated`].
///
/// The version and the announced length are checked (against [`PROTOCOL_VERSION`] and `max`)
/// before the payload buffer is allocated, and the buffer is never larger than the announced
/// length. A payload that does not decode as exactly one `T`, with no bytes left over, is
/// [`FrameError::Decode`].
pub async fn read_frame<R, T>(r: &mut R, max: u32) -> Result<Option<T>, FrameError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    Ok(read_frame_sized(r, max).await?.map(|(message, _)| message))
}

/// [`read_frame`], also returning the frame's size on the wire (header included), for traffic
/// accounting.
pub async fn read_frame_sized<R, T>(r: &mut R, max: u32) -> Result<Option<(T, usize)>, FrameError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let mut header = [0u8; FRAME_HEADER_BYTES];
    let mut filled = 0;
    while filled < FRAME_HEADER_BYTES {
        let n = r
            .read(&mut header[filled..])
            .await
            .map_err(FrameError::Io)?;
        if n == 0 {
            return if filled == 0 {
                Ok(None)
            } else {
                Err(FrameError::Truncated)
            };
        }
        filled += n;
    }

    // The version comes first: a peer of another version may frame differently, so its length
    // field means nothing to us.
    let version = header[4];
    if version != PROTOCOL_VERSION {
        return Err(FrameError::Version { got: version });
    }
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    if len > max {
        return Err(FrameError::Oversized {
            len: u64::from(len),
            max,
        });
    }

    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload).await?;
    decode(&payload).map(|message| Some((message, FRAME_HEADER_BYTES + payload.len())))
}

/// Decodes exactly one `T` from `payload`, refusing leftover bytes: a frame carries one message.
fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    let (msg, rest) =
        postcard::take_from_bytes(payload).map_err(|e| FrameError::Decode(e.to_string()))?;
    if !rest.is_empty() {
        return Err(FrameError::Decode(format!(
            "{} trailing bytes after the message",
            rest.len()
        )));
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use serde::Deserialize;
    use tokio::io::ReadBuf;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Msg {
        id: u64,
        body: Vec<u8>,
        tag: String,
    }

    fn msg() -> Msg {
        Msg {
            id: 42,
            body: vec![1, 2, 3, 4],
            tag: "hello".to_owned(),
        }
    }

    fn header(len: u32, version: u8) -> Vec<u8> {
        let mut h = len.to_be_bytes().to_vec();
        h.push(version);
        h
    }

    /// A reader that fails the test if asked for more than a header's worth of bytes at once:
    /// it proves `read_frame` never sets up a buffer for an announced-but-refused payload.
    struct HeaderOnly {
        data: Cursor<Vec<u8>>,
    }

    impl AsyncRead for HeaderOnly {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            assert!(
                buf.capacity() <= FRAME_HEADER_BYTES,
                "reader asked for {} bytes: it allocated the payload",
                buf.capacity()
            );
            Pin::new(&mut self.data).poll_read(cx, buf)
        }
    }

    #[tokio::test]
    async fn frames_round_trip_in_order() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &msg(), FRAME_MAX_BYTES_DEFAULT)
            .await
            .unwrap();
        write_frame(&mut buf, &7u32, FRAME_MAX_BYTES_DEFAULT)
            .await
            .unwrap();
        assert_eq!(buf[4], PROTOCOL_VERSION);

        let mut r = Cursor::new(buf);
        let first: Option<Msg> = read_frame(&mut r, FRAME_MAX_BYTES_DEFAULT).await.unwrap();
        assert_eq!(first, Some(msg()));
        let second: Option<u32> = read_frame(&mut r, FRAME_MAX_BYTES_DEFAULT).await.unwrap();
        assert_eq!(second, Some(7));
        let end: Option<u32> = read_frame(&mut r, FRAME_MAX_BYTES_DEFAULT).await.unwrap();
        assert_eq!(end, None);
    }

    #[test]
    fn encode_writes_big_endian_length_and_version() {
        let frame = encode(&msg(), FRAME_MAX_BYTES_DEFAULT).unwrap();
        let payload = postcard::to_allocvec(&msg()).unwrap();
        assert_eq!(frame.len(), FRAME_HEADER_BYTES + payload.len());
        assert_eq!(&frame[..4], &(payload.len() as u32).to_be_bytes());
        assert_eq!(frame[4], PROTOCOL_VERSION);
        assert_eq!(&frame[FRAME_HEADER_BYTES..], &payload[..]);
    }

    #[tokio::test]
    async fn read_refuses_oversized_announcement_before_allocating() {
        // The header announces 4 GiB - 1; only the header is on the stream. The reader must
        // refuse on the header alone, never asking for (or allocating) the payload.
        let mut r = HeaderOnly {
            data: Cursor::new(header(u32::MAX, PROTOCOL_VERSION)),
        };
        let err = read_frame::<_, Msg>(&mut r, 1024).await.unwrap_err();
        assert!(
            matches!(err, FrameError::Oversized { len, max: 1024 } if len == u64::from(u32::MAX)),
            "{err:?}"
        );
        assert_eq!(err.reason(), "oversized");
    }

    #[tokio::test]
    async fn read_accepts_payload_of_exactly_max() {
        let body = vec![9u8; 100];
        let frame = encode(&body, u32::MAX).unwrap();
        let exact = (frame.len() - FRAME_HEADER_BYTES) as u32;
        let got: Option<Vec<u8>> = read_frame(&mut Cursor::new(frame.clone()), exact)
            .await
            .unwrap();
        assert_eq!(got, Some(body));
        let err = read_frame::<_, Vec<u8>>(&mut Cursor::new(frame), exact - 1)
            .await
            .unwrap_err();
        assert!(matches!(err, FrameError::Oversized { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn write_refuses_oversized_message_and_writes_nothing() {
        let mut buf = Vec::new();
        let err = write_frame(&mut buf, &vec![0u8; 2048], 1024)
            .await
            .unwrap_err();
        assert!(
            matches!(err, FrameError::Oversized { len, max: 1024 } if len > 2048),
            "{err:?}"
        );
        assert!(buf.is_empty());
        assert!(matches!(
            encode(&vec![0u8; 2048], 1024),
            Err(FrameError::Oversized { .. })
        ));
    }

    #[tokio::test]
    async fn read_refuses_other_protocol_version() {
        let mut frame = encode(&msg(), FRAME_MAX_BYTES_DEFAULT).unwrap();
        frame[4] = PROTOCOL_VERSION + 1;
        let err = read_frame::<_, Msg>(&mut Cursor::new(frame), FRAME_MAX_BYTES_DEFAULT)
            .await
            .unwrap_err();
        assert!(
            matches!(err, FrameError::Version { got } if got == PROTOCOL_VERSION + 1),
            "{err:?}"
        );
        assert_eq!(err.reason(), "version");
    }

    #[tokio::test]
    async fn stream_ending_inside_header_is_truncated() {
        for cut in 1..FRAME_HEADER_BYTES {
            let frame = encode(&msg(), FRAME_MAX_BYTES_DEFAULT).unwrap();
            let err = read_frame::<_, Msg>(
                &mut Cursor::new(frame[..cut].to_vec()),
                FRAME_MAX_BYTES_DEFAULT,
            )
            .await
            .unwrap_err();
            assert!(matches!(err, FrameError::Truncated), "cut {cut}: {err:?}");
            assert_eq!(err.reason(), "truncated");
        }
    }

    #[tokio::test]
    async fn stream_ending_inside_payload_is_truncated() {
        let frame = encode(&msg(), FRAME_MAX_BYTES_DEFAULT).unwrap();
        let cut = frame.len() - 1;
        let err = read_frame::<_, Msg>(
            &mut Cursor::new(frame[..cut].to_vec()),
            FRAME_MAX_BYTES_DEFAULT,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, FrameError::Truncated), "{err:?}");
    }

    #[tokio::test]
    async fn garbage_payload_is_a_decode_error() {
        // 0xff.. is not a valid varint for `id`, nor a valid string length.
        let mut frame = header(4, PROTOCOL_VERSION);
        frame.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        let err = read_frame::<_, Msg>(&mut Cursor::new(frame), FRAME_MAX_BYTES_DEFAULT)
            .await
            .unwrap_err();
        assert!(matches!(err, FrameError::Decode(_)), "{err:?}");
        assert_eq!(err.reason(), "decode");
    }

    #[tokio::test]
    async fn trailing_bytes_after_the_message_are_a_decode_error() {
        let mut payload = postcard::to_allocvec(&7u32).unwrap();
        payload.push(0);
        let mut frame = header(payload.len() as u32, PROTOCOL_VERSION);
        frame.extend_from_slice(&payload);
        let err = read_frame::<_, u32>(&mut Cursor::new(frame), FRAME_MAX_BYTES_DEFAULT)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, FrameError::Decode(m) if m.contains("trailing")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn clean_end_of_stream_reads_none() {
        let got: Option<Msg> = read_frame(&mut Cursor::new(Vec::new()), FRAME_MAX_BYTES_DEFAULT)
            .await
            .unwrap();
        assert_eq!(got, None);
    }

    #[test]
    fn reasons_are_stable_labels() {
        let io = FrameError::from(std::io::Error::other("boom"));
        assert_eq!(io.reason(), "io");
        let eof = FrameError::from(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        assert_eq!(eof.reason(), "truncated");
        assert_eq!(FrameError::Encode(String::new()).reason(), "encode");
    }
}
