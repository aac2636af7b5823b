//! A TCP relay in front of a real server, which a test can cut to make the
//! server "go down" for the system under test (and only for it), or stall to
//! make it hang: connections stay open, but no byte goes through.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub struct TcpRelay {
    pub port: u16,
    cut: CancellationToken,
    stalled: watch::Sender<bool>,
    /// Holds the server's replies only (requests still go through).
    holding: watch::Sender<bool>,
    refusing: watch::Sender<bool>,
}

/// Copies one direction, holding every chunk while the relay is stalled.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut stalled: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stalled.wait_for(|s| !*s).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// The server-to-client direction: also held while replies are held.
async fn pump_replies(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut stalled: watch::Receiver<bool>,
    mut holding: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stalled.wait_for(|s| !*s).await.is_err() || holding.wait_for(|h| !*h).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl TcpRelay {
    /// Listens on a free loopback port and relays every connection to `upstream`.
    pub async fn start(upstream: &str) -> TcpRelay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let port = listener.local_addr().expect("relay addr").port();
        let cut = CancellationToken::new();
        let (stalled, stalled_rx) = watch::channel(false);
        let (refusing, refusing_rx) = watch::channel(false);
        let (holding, holding_rx) = watch::channel(false);
        let upstream = Arc::new(upstream.to_string());
        let token = cut.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = token.cancelled() => return,
                    a = listener.accept() => a,
                };
                let Ok((inbound, _)) = accepted else {
                    continue;
                };
                if *refusing_rx.borrow() {
                    drop(inbound);
                    continue;
                }
                let upstream = upstream.clone();
                let token = token.clone();
                let stalled = stalled_rx.clone();
                let holding = holding_rx.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(upstream.as_str()).await else {
                        return;
                    };
                    let (in_read, in_write) = inbound.into_split();
                    let (out_read, out_write) = outbound.into_split();
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = pump(in_read, out_write, stalled.clone()) => {}
                        _ = pump_replies(out_read, in_write, stalled, holding) => {}
                    }
                });
            }
        });
        TcpRelay {
            port,
            cut,
            stalled,
            holding,
            refusing,
        }
    }

    /// Drops every relayed connection and stops accepting: the server is gone.
    pub fn cut(&self) {
        self.cut.cancel();
    }

    /// Holds every byte in both directions (connections stay open): the
    /// server hangs, as a Redis stuck in a long command or a dead network path.
    pub fn stall(&self) {
        let _ = self.stalled.send(true);
    }

    /// Closes every new connection at once (open ones stay): the server is
    /// down for whoever connects now. Undone by [`TcpRelay::accept`].
    pub fn refuse(&self) {
        let _ = self.refusing.send(true);
    }

    /// Relays new connections again.
    pub fn accept(&self) {
        let _ = self.refusing.send(false);
    }

    /// Holds every byte the server sends (requests still reach it): the
    /// server did the work, but its answer never arrives.
    pub fn hold_replies(&self) {
        let _ = self.holding.send(true);
    }

    /// Lets held and new bytes through again.
    pub fn resume(&self) {
        let _ = self.stalled.send(false);
    }
}
