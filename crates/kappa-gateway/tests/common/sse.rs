//! Reading server-sent events off a live stream's response.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::Method;
use hyper::body::Incoming;
use serde_json::Value;

/// Reads server-sent events off a response body.
pub struct Frames {
    body: Incoming,
    buffer: BytesMut,
}

pub struct Frame {
    pub id: String,
    pub event: String,
    pub data: Value,
}

impl Frames {
    /// The next frame with data (keep-alive comments are skipped).
    pub async fn next(&mut self) -> Frame {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let raw = self.buffer.split_to(end + 2);
                let text = String::from_utf8(raw.to_vec()).unwrap();
                let (mut id, mut event, mut data) = (String::new(), String::new(), String::new());
                for line in text.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        event = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    }
                }
                if data.is_empty() {
                    continue;
                }
                return Frame {
                    id,
                    event,
                    data: serde_json::from_str(&data).unwrap(),
                };
            }
            let frame = tokio::time::timeout(Duration::from_secs(20), self.body.frame())
                .await
                .expect("no event within 20 s")
                .expect("stream ended")
                .unwrap();
            if let Ok(d) = frame.into_data() {
                self.buffer.extend_from_slice(&d);
            }
        }
    }
}

/// The first `n` frames of the stream at `path`, read on `c` (which is
/// closed after them).
pub async fn first_frames(
    mut c: kappa_gateway::load::HttpClient,
    path: &str,
    n: usize,
) -> Vec<Frame> {
    let mut frames = open(&mut c, path, None).await;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(frames.next().await);
    }
    out
}

pub async fn open(
    c: &mut kappa_gateway::load::HttpClient,
    path: &str,
    last_id: Option<&str>,
) -> Frames {
    let headers: Vec<(&str, &str)> = last_id
        .map(|id| ("last-event-id", id))
        .into_iter()
        .collect();
    let r = c
        .send(Method::GET, path, &headers, Bytes::new())
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    Frames {
        body: r.into_body(),
        buffer: BytesMut::new(),
    }
}
