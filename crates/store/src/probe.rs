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
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").map_err(|e| e.to_string())?;
    let mut head = [0u8; 32];
    let n = stream.read(&mut head).map_err(|e| e.to_string())?;
    let line = String::from_utf8_lossy(&head[..n]);
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
                let mut buf = [0u8; 256];
                let _ = s.read(&mut buf);
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
