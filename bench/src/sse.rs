//! Reading an SSE response event by event.

use futures_util::StreamExt as _;
use serde_json::Value;

/// The events of one SSE response, in order.
pub struct Sse {
    body: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: Vec<u8>,
}

impl Sse {
    /// Reads `res` (a `text/event-stream` reply).
    pub fn new(res: reqwest::Response) -> Self {
        Self {
            body: res.bytes_stream().boxed(),
            buf: Vec::new(),
        }
    }

    /// The next event's JSON, or `None` when the stream ends.
    pub async fn next(&mut self) -> anyhow::Result<Option<Value>> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let frame: Vec<u8> = self.buf.drain(..end + 2).collect();
                let data = frame
                    .split(|b| *b == b'\n')
                    .find_map(|l| l.strip_prefix(b"data: "));
                if let Some(data) = data {
                    return Ok(Some(serde_json::from_slice(data)?));
                }
                continue;
            }
            match self.body.next().await {
                Some(chunk) => self.buf.extend_from_slice(&chunk?),
                None => return Ok(None),
            }
        }
    }
}
