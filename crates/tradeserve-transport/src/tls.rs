//! TLS with rustls (`[server.tls]`): a certificate chain and its key from PEM files, and with
//! `client_ca_file` client certificates required and checked against that CA (mTLS). The files
//! are re-read when they change (checked every `reload_interval`): new connections get the new
//! certificate, open ones keep theirs, and a file that does not load keeps the old one (logged)
//! — a renewal never needs a restart, and a bad one never takes the service down.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;
use tradeserve_core::bounded::PositiveDuration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tradeserve_core::error::InvalidSetting;

/// `[server.tls]`; off unless `cert_file` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// PEM CA certificates: when set, every client must present a certificate it signed.
    pub client_ca_file: Option<PathBuf>,
    /// How often the files are checked for a change.
    pub reload_interval: PositiveDuration,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert_file: None,
            key_file: None,
            client_ca_file: None,
            reload_interval: PositiveDuration::secs(10),
        }
    }
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some()
    }

    /// Both files named, readable and valid, with a key that matches the certificate.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        match (&self.cert_file, &self.key_file) {
            (None, None) if self.client_ca_file.is_none() => Ok(()),
            (Some(_), Some(_)) => build(self).map(|_| ()),
            _ => Err(
                "server.tls needs both cert_file and key_file (client_ca_file only with them)"
                    .into(),
            ),
        }
    }
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, InvalidSetting> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("server.tls.{what} {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("server.tls.{what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "server.tls.{what} {}: no PEM certificate in it",
            path.display()
        )
        .into());
    }
    Ok(certs)
}

/// The rustls configuration the files describe.
fn build(config: &TlsConfig) -> Result<Arc<ServerConfig>, InvalidSetting> {
    let (Some(cert), Some(key)) = (&config.cert_file, &config.key_file) else {
        return Err("server.tls needs cert_file and key_file".into());
    };
    let chain = read_certs(cert, "cert_file")?;
    // The key's own error could quote it; say only where it was.
    let key = PrivateKeyDer::from_pem_file(key).map_err(|_| {
        format!(
            "server.tls.key_file {}: no readable PEM private key in it",
            key.display()
        )
    })?;
    let builder = ServerConfig::builder();
    let builder = match &config.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in read_certs(ca, "client_ca_file")? {
                roots
                    .add(c)
                    .map_err(|e| format!("server.tls.client_ca_file {}: {e}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .map_err(|e| format!("server.tls.client_ca_file {}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut server = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("server.tls: the certificate and key do not go together: {e}"))?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(server))
}

/// When each file last changed, as far as the reloader knows.
type Stamps = Vec<Option<(SystemTime, u64)>>;

fn stamps(config: &TlsConfig) -> Stamps {
    [&config.cert_file, &config.key_file, &config.client_ca_file]
        .into_iter()
        .map(|p| {
            let m = std::fs::metadata(p.as_ref()?).ok()?;
            Some((m.modified().ok()?, m.len()))
        })
        .collect()
}

/// The current TLS configuration, swapped when the files change.
pub struct Tls {
    config: TlsConfig,
    current: ArcSwap<ServerConfig>,
    seen: Mutex<Stamps>,
}

impl Tls {
    /// `None` when TLS is off.
    pub fn load(config: &TlsConfig) -> Result<Option<Arc<Tls>>, InvalidSetting> {
        if !config.enabled() {
            return Ok(None);
        }
        let seen = stamps(config);
        let current = build(config)?;
        Ok(Some(Arc::new(Tls {
            config: config.clone(),
            current: ArcSwap::new(current),
            seen: Mutex::new(seen),
        })))
    }

    /// An acceptor with the configuration of now.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load_full())
    }

    /// The same certificates for the gRPC listener: ALPN `h2` (gRPC is HTTP/2 only).
    pub fn h2_acceptor(&self) -> TlsAcceptor {
        let mut config = ServerConfig::clone(&self.current.load());
        config.alpn_protocols = vec![b"h2".to_vec()];
        TlsAcceptor::from(Arc::new(config))
    }

    /// Re-read the files if any changed: `Ok(true)` when a new configuration is in use.
    pub fn reload_if_changed(&self) -> Result<bool, InvalidSetting> {
        let now = stamps(&self.config);
        let mut seen = self.seen.lock();
        if *seen == now {
            return Ok(false);
        }
        // Remembered even when it fails, so a bad file is reported once, not every interval.
        *seen = now;
        let next = build(&self.config)?;
        self.current.store(next);
        Ok(true)
    }

    /// Check the files every `reload_interval`, for as long as the runtime runs.
    pub fn spawn_reloader(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let tls = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(tls.config.reload_interval.get());
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let t = Arc::clone(&tls);
                match tokio::task::spawn_blocking(move || t.reload_if_changed()).await {
                    Ok(Ok(true)) => tracing::info!("TLS certificate reloaded"),
                    Ok(Ok(false)) => {}
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "TLS files changed but do not load; still serving the previous certificate")
                    }
                    Err(e) => tracing::error!(error = %e, "TLS reload task failed"),
                }
            }
        })
    }
}
