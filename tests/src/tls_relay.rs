//! A TLS terminator in front of a plain server: the HTTPS (or any TLS)
//! stand-in for a managed endpoint. It presents the test CA's `server.pem` (the
//! test CA's certificate for localhost and 127.0.0.1) and relays the
//! decrypted bytes to `upstream`.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

pub struct TlsRelay {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl TlsRelay {
    /// Listens on a free loopback port; `cert` and `key` are PEM files.
    pub async fn start(upstream: &str, cert: &str, key: &str) -> TlsRelay {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .expect("server certificate")
            .collect::<Result<_, _>>()
            .expect("server certificate");
        let key = PrivateKeyDer::from_pem_file(key).expect("server key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server TLS config");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind TLS relay");
        let port = listener.local_addr().expect("TLS relay addr").port();
        let upstream = upstream.to_string();
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(inbound).await else {
                        return; // a client that refused our certificate
                    };
                    let Ok(mut plain) = TcpStream::connect(upstream.as_str()).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        TlsRelay { port, task }
    }
}

impl Drop for TlsRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
