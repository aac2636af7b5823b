//! Postgres over TLS (rustls): `database.ssl_mode` and `database.ssl_root_cert`.
//!
//! | mode | encrypted | certificate chain checked | host name checked |
//! |---|---|---|---|
//! | `disable` | no | - | - |
//! | `require` | yes | no | no |
//! | `verify-ca` | yes | yes | no |
//! | `verify-full` | yes | yes | yes (use this with a managed database) |
//!
//! The chain is checked against `ssl_root_cert` (a PEM bundle, e.g. the
//! provider's CA) or, without it, the system's roots. The rustls client
//! configuration is built once at start, so a missing or unreadable CA file
//! stops the service with the setting named.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use diesel::{ConnectionError, ConnectionResult};
use diesel_async::AsyncPgConnection;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::tls::provider;

fn roots(root_cert: Option<&PathBuf>) -> Result<RootCertStore, String> {
    crate::tls::roots(root_cert.map(PathBuf::as_path), "database.ssl_root_cert")
}
use serde::{Deserialize, Serialize};

/// How a Postgres connection is secured (libpq's `sslmode` names).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    #[default]
    Disable,
    Require,
    VerifyCa,
    VerifyFull,
}

/// The TLS side of the Postgres connection, ready to connect with.
#[derive(Clone, Default)]
pub struct PgTls {
    config: Option<Arc<ClientConfig>>,
}

impl std::fmt::Debug for PgTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.config.is_some() {
            "PgTls(on)"
        } else {
            "PgTls(off)"
        })
    }
}

impl PgTls {
    /// Builds the client configuration for `mode` (none for `disable`).
    pub fn new(mode: SslMode, root_cert: Option<&PathBuf>) -> Result<Self, String> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?;
        let config = match mode {
            SslMode::Disable => return Ok(Self::default()),
            SslMode::VerifyFull => builder
                .with_root_certificates(roots(root_cert)?)
                .with_no_client_auth(),
            SslMode::VerifyCa | SslMode::Require => {
                let chain = WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots(root_cert)?),
                    provider(),
                )
                .build()
                .map_err(|e| format!("TLS: {e}"))?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(Lenient {
                        chain,
                        check_chain: mode == SslMode::VerifyCa,
                    }))
                    .with_no_client_auth()
            }
        };
        Ok(Self {
            config: Some(Arc::new(config)),
        })
    }

    pub fn enabled(&self) -> bool {
        self.config.is_some()
    }

    /// Opens one connection: plain, or TLS as configured (TLS is then
    /// required: no fall-back to an unencrypted connection).
    pub async fn establish(&self, url: &str) -> ConnectionResult<AsyncPgConnection> {
        use diesel_async::AsyncConnection;
        let Some(config) = &self.config else {
            return AsyncPgConnection::establish(url).await;
        };
        let mut pg = tokio_postgres::Config::from_str(url)
            .map_err(|e| ConnectionError::InvalidConnectionUrl(e.to_string()))?;
        pg.ssl_mode(tokio_postgres::config::SslMode::Require);
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new((**config).clone());
        let (client, connection) = pg.connect(tls).await.map_err(|e| {
            ConnectionError::BadConnection(format!("Postgres over TLS: {}", chain(&e)))
        })?;
        AsyncPgConnection::try_from_client_and_connection(client, connection).await
    }
}

/// An error and its causes, one line ("handshake failed: invalid peer
/// certificate: UnknownIssuer"): the driver's own message hides the cause.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `verify-ca` (chain checked, host name not) and `require` (encrypted,
/// nothing checked). Handshake signatures are always verified.
#[derive(Debug)]
struct Lenient {
    chain: Arc<WebPkiServerVerifier>,
    check_chain: bool,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if !self.check_chain {
            return Ok(ServerCertVerified::assertion());
        }
        match self.chain.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(ok) => Ok(ok),
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}
