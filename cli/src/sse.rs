//! An incremental Server-Sent Events parser: bytes in (split anywhere), frames out.

/// One dispatched SSE frame.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frame {
    /// `id:`, if the frame had one.
    pub id: Option<String>,
    /// `event:`, if the frame had one.
    pub event: Option<String>,
    /// Every `data:` line, joined by `\n`.
    pub data: String,
}

/// Parser state between chunks.
#[derive(Debug, Default)]
pub struct Parser {
    buffer: Vec<u8>,
    frame: Frame,
    has_data: bool,
    /// The last `retry:` the server asked for, in milliseconds.
    pub retry_ms: Option<u64>,
}

impl Parser {
    /// Forgets a half-read frame (a new connection starts clean); keeps `retry_ms`.
    pub fn reset(&mut self) {
        self.buffer.clear();
        self.frame = Frame::default();
        self.has_data = false;
    }

    /// Feeds a chunk; returns the frames it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Frame> {
        self.buffer.extend_from_slice(chunk);
        let mut frames = Vec::new();
        let mut start = 0;
        while let Some(end) = line_end(&self.buffer[start..]) {
            let line = String::from_utf8_lossy(&self.buffer[start..start + end]).into_owned();
            // A CR at the very end may be the first half of a CRLF: wait for more.
            if self.buffer[start + end] == b'\r' && start + end + 1 == self.buffer.len() {
                break;
            }
            start += end + terminator_len(&self.buffer[start + end..]);
            if let Some(frame) = self.line(&line) {
                frames.push(frame);
            }
        }
        self.buffer.drain(..start);
        frames
    }

    /// Handles one line; an empty line dispatches the frame.
    fn line(&mut self, line: &str) -> Option<Frame> {
        if line.is_empty() {
            let frame = std::mem::take(&mut self.frame);
            return std::mem::take(&mut self.has_data).then_some(frame);
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => self.frame.id = Some(value.to_owned()),
            "event" => self.frame.event = Some(value.to_owned()),
            "retry" => self.retry_ms = value.parse().ok().or(self.retry_ms),
            "data" => {
                if self.has_data {
                    self.frame.data.push('\n');
                }
                self.frame.data.push_str(value);
                self.has_data = true;
            }
            _ => {}
        }
        None
    }
}

/// Where the first line ends (at `\n` or `\r`).
fn line_end(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|b| *b == b'\n' || *b == b'\r')
}

/// 2 for CRLF, else 1.
fn terminator_len(rest: &[u8]) -> usize {
    if rest.starts_with(b"\r\n") { 2 } else { 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = "retry: 2000\n\nid: 1\nevent: run.queued\ndata: {\"a\":1}\n\n: keep-alive\n\nid: 2\r\nevent: console.line\r\ndata: x\r\ndata: y\r\n\r\n";

    fn expected() -> Vec<Frame> {
        vec![
            Frame {
                id: Some("1".into()),
                event: Some("run.queued".into()),
                data: "{\"a\":1}".into(),
            },
            Frame {
                id: Some("2".into()),
                event: Some("console.line".into()),
                data: "x\ny".into(),
            },
        ]
    }

    #[test]
    fn frames_come_out_whole_wherever_the_bytes_are_split() {
        let body = BODY.as_bytes();
        for cut in 0..=body.len() {
            let mut parser = Parser::default();
            let mut frames = parser.push(&body[..cut]);
            frames.extend(parser.push(&body[cut..]));
            assert_eq!(frames, expected(), "split at {cut}");
            assert_eq!(parser.retry_ms, Some(2000));
        }
    }

    #[test]
    fn byte_by_byte_gives_the_same_frames() {
        let mut parser = Parser::default();
        let frames: Vec<Frame> = BODY.bytes().flat_map(|b| parser.push(&[b])).collect();
        assert_eq!(frames, expected());
    }

    #[test]
    fn an_unfinished_frame_is_not_dispatched() {
        let mut parser = Parser::default();
        assert!(parser.push(b"id: 3\ndata: {}\n").is_empty());
    }
}
