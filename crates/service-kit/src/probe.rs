//! `<service> healthcheck`: the container image's HEALTHCHECK, with no curl
//! in the image. A blocking HTTP/1.0 GET of `http://127.0.0.1:<port><path>`;
//! success is a 2xx status within `timeout`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub fn http_ok(port: u16, path: &str, timeout: Duration) -> Result<(), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|_| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    // One write (`write!` on a socket may send the request in pieces), and
    // reads until the status line is whole (one read may return less).
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 64];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 256 {
        let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    match line.split_whitespace().nth(1) {
        Some(code) if code.starts_with('2') => Ok(()),
        Some(code) => Err(format!("status {code}")),
        None => Err("no HTTP status line".into()),
    }
}

/// Runs the probe for a `healthcheck` argument: the port comes from
/// `port_var` (else `default_port`). Returns the process exit code.
pub fn run(port_var: &str, default_port: u16) -> i32 {
    let port = std::env::var(port_var)
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(default_port);
    match http_ok(port, "/healthz", Duration::from_secs(2)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("unhealthy: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_port_is_unhealthy() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert!(http_ok(port, "/healthz", Duration::from_millis(200)).is_err());
    }

    #[test]
    fn a_2xx_answer_is_healthy_and_a_5xx_is_not() {
        for (status, healthy) in [("200 OK", true), ("503 Service Unavailable", false)] {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let server = std::thread::spawn(move || {
                let (mut s, _) = listener.accept().unwrap();
                // Read the whole request: closing with unread bytes resets
                // the connection before the client reads the answer.
                let mut request = Vec::new();
                let mut buf = [0u8; 256];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = write!(s, "HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
            });
            assert_eq!(
                http_ok(port, "/healthz", Duration::from_secs(1)).is_ok(),
                healthy
            );
            server.join().unwrap();
        }
    }
}
