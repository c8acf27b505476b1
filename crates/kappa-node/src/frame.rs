//! Kafka's framing: a big-endian `i32` size, then that many bytes.

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes reserved up front for a frame; larger frames grow as they arrive.
const FRAME_RESERVE_BYTES_MAX: usize = 1024 * 1024;

/// Why a connection's next frame could not be read.
#[derive(Debug)]
pub(crate) enum FrameError {
    /// The peer closed the connection between frames.
    Closed,
    /// The size prefix is negative or above the limit.
    Size(i64),
    /// Reading failed, or the peer closed mid-frame.
    Io(std::io::Error),
}

/// Reads one frame's body.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    bytes_max: usize,
) -> Result<Bytes, FrameError> {
    let mut size = [0u8; 4];
    match reader.read_exact(&mut size).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(FrameError::Io(e)),
    }
    let size = i32::from_be_bytes(size);
    let len = usize::try_from(size).map_err(|_| FrameError::Size(i64::from(size)))?;
    if len > bytes_max {
        return Err(FrameError::Size(i64::from(size)));
    }
    // Grown as bytes arrive, so a size prefix alone reserves no memory.
    let mut body = Vec::with_capacity(len.min(FRAME_RESERVE_BYTES_MAX));
    let read = (&mut *reader)
        .take(len as u64)
        .read_to_end(&mut body)
        .await
        .map_err(FrameError::Io)?;
    if read < len {
        return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(Bytes::from(body))
}
