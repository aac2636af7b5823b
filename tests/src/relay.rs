//! A TCP relay in front of a real server, which a test can cut to make the
//! server "go down" for the system under test (and only for it).

use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub struct TcpRelay {
    pub port: u16,
    cut: CancellationToken,
}

impl TcpRelay {
    /// Listens on a free loopback port and relays every connection to `upstream`.
    pub async fn start(upstream: &str) -> TcpRelay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let port = listener.local_addr().expect("relay addr").port();
        let cut = CancellationToken::new();
        let upstream = Arc::new(upstream.to_string());
        let token = cut.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = token.cancelled() => return,
                    a = listener.accept() => a,
                };
                let Ok((mut inbound, _)) = accepted else {
                    continue;
                };
                let upstream = upstream.clone();
                let token = token.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream.as_str()).await else {
                        return;
                    };
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                });
            }
        });
        TcpRelay { port, cut }
    }

    /// Drops every relayed connection and stops accepting: the server is gone.
    pub fn cut(&self) {
        self.cut.cancel();
    }
}
