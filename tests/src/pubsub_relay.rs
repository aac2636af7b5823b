//! A relay in front of Redis that loses pub/sub messages on purpose: the
//! server's replies are read frame by frame (RESP2 and RESP3), and a
//! `message` push whose payload contains the needle a test set is dropped,
//! as a subscriber whose connection hiccuped would lose it. Everything else
//! passes unchanged.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
struct Shared {
    needle: Mutex<Option<String>>,
    dropped: AtomicUsize,
}

pub struct PubSubDropRelay {
    pub port: u16,
    shared: Arc<Shared>,
}

impl PubSubDropRelay {
    /// Listens on a free loopback port and relays every connection to `upstream`.
    pub async fn start(upstream: &str) -> PubSubDropRelay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let port = listener.local_addr().expect("relay addr").port();
        let shared = Arc::new(Shared::default());
        let upstream = upstream.to_string();
        let state = shared.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (mut in_read, mut in_write) = inbound.into_split();
                let (mut out_read, mut out_write) = outbound.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut in_read, &mut out_write).await;
                });
                let state = state.clone();
                tokio::spawn(async move {
                    let mut buf: Vec<u8> = Vec::new();
                    let mut chunk = vec![0u8; 16 * 1024];
                    loop {
                        let n = match out_read.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        buf.extend_from_slice(&chunk[..n]);
                        let mut out = Vec::new();
                        while let Some(len) = frame_len(&buf) {
                            let frame: Vec<u8> = buf.drain(..len).collect();
                            if state.drops(&frame) {
                                state.dropped.fetch_add(1, Ordering::SeqCst);
                            } else {
                                out.extend_from_slice(&frame);
                            }
                        }
                        if in_write.write_all(&out).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        PubSubDropRelay { port, shared }
    }

    /// From now on, drop pub/sub messages whose payload contains `needle`.
    pub fn drop_messages_containing(&self, needle: &str) {
        *self.shared.needle.lock().unwrap() = Some(needle.to_string());
    }

    /// Messages dropped so far.
    pub fn dropped(&self) -> usize {
        self.shared.dropped.load(Ordering::SeqCst)
    }
}

impl Shared {
    fn drops(&self, frame: &[u8]) -> bool {
        let needle = self.needle.lock().unwrap();
        let Some(needle) = needle.as_deref() else {
            return false;
        };
        let items = bulk_items(frame);
        items.len() == 3
            && items[0] == b"message"
            && String::from_utf8_lossy(items[2]).contains(needle)
    }
}

/// The end of the line starting at `at` (index of its `\r`).
fn line_end(buf: &[u8], at: usize) -> Option<usize> {
    buf.get(at..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|p| at + p)
}

fn header(buf: &[u8], at: usize) -> Option<(u8, i64, usize)> {
    let kind = *buf.get(at)?;
    let end = line_end(buf, at + 1)?;
    let n = std::str::from_utf8(&buf[at + 1..end])
        .ok()?
        .parse()
        .unwrap_or(0);
    Some((kind, n, end + 2))
}

/// The length of the complete frame at `at`, or `None` if it is not all there.
fn frame_at(buf: &[u8], at: usize) -> Option<usize> {
    let (kind, n, body) = header(buf, at)?;
    match kind {
        b'$' | b'=' | b'!' if n >= 0 => {
            let end = body + n as usize + 2;
            (buf.len() >= end).then_some(end - at)
        }
        b'*' | b'~' | b'>' | b'%' | b'|' if n >= 0 => {
            let count = if matches!(kind, b'%' | b'|') {
                2 * n
            } else {
                n
            };
            let mut pos = body;
            for _ in 0..count {
                pos += frame_at(buf, pos)?;
            }
            if kind == b'|' {
                // An attribute precedes the frame it describes.
                pos += frame_at(buf, pos)?;
            }
            Some(pos - at)
        }
        _ => Some(body - at),
    }
}

fn frame_len(buf: &[u8]) -> Option<usize> {
    if buf.is_empty() {
        return None;
    }
    frame_at(buf, 0)
}

/// The bulk strings of a top-level array or push frame.
fn bulk_items(frame: &[u8]) -> Vec<&[u8]> {
    let Some((kind, n, mut pos)) = header(frame, 0) else {
        return Vec::new();
    };
    if !matches!(kind, b'*' | b'>') || n < 0 {
        return Vec::new();
    }
    let mut items = Vec::new();
    for _ in 0..n {
        match header(frame, pos) {
            Some((b'$', len, body)) if len >= 0 => {
                items.push(&frame[body..body + len as usize]);
                pos = body + len as usize + 2;
            }
            _ => return Vec::new(),
        }
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_measured_and_messages_recognised() {
        let msg = b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\n7 abc\r\n";
        assert_eq!(frame_len(msg), Some(msg.len()));
        assert_eq!(frame_len(&msg[..msg.len() - 1]), None);
        assert_eq!(bulk_items(msg), vec![&b"message"[..], b"ch", b"7 abc"]);
        let push = b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n";
        assert_eq!(bulk_items(push).len(), 3);
        assert_eq!(frame_len(b"+OK\r\n:1\r\n"), Some(5));
        assert_eq!(frame_len(b"$-1\r\n"), Some(5));
        assert_eq!(frame_len(b"%1\r\n+a\r\n:1\r\n"), Some(12));
    }
}
