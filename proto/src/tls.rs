//! TLS on every gRPC connection, off unless configured. Servers (namenode, datanodes) present a
//! certificate (`--tls-cert`, `--tls-key`); every client (the CLI, a mount, a datanode calling the
//! namenode or the next datanode of a pipeline, the namenode calling datanodes) checks it against
//! the CA it trusts (`--tls-ca`). What a caller may do is still decided by the cluster secret, the
//! block tokens and POSIX permissions: TLS keeps those and the data private on the wire and stops
//! a man in the middle. A cluster is all TLS or all plain text.
//!
//! The settings are process-wide, set once at start ([`install`]): a process has one identity,
//! and `ringfs up` runs every node in one process.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig};

/// The PEM files one process uses (all `None`: plain text).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificate(s) a server's certificate must chain to.
    pub ca: Option<PathBuf>,
    /// This server's certificate chain (its names: the addresses clients use, as IP or DNS SANs).
    pub cert: Option<PathBuf>,
    /// This server's private key.
    pub key: Option<PathBuf>,
}

/// Loaded and checked settings.
#[derive(Clone, Debug)]
pub struct Tls {
    client: ClientTlsConfig,
    server: Option<ServerTlsConfig>,
}

static INSTALLED: OnceLock<Tls> = OnceLock::new();

impl TlsFiles {
    /// True when no file is given.
    pub fn is_empty(&self) -> bool {
        self.ca.is_none() && self.cert.is_none() && self.key.is_none()
    }

    /// Reads and checks the files of a server role (namenode, datanode, `up`): none, or all three
    /// (a server is also a client of the others, so it needs the CA too). `Ok(None)`: plain text.
    pub fn load_server(&self) -> Result<Option<Tls>, String> {
        if self.is_empty() {
            return Ok(None);
        }
        let (Some(ca), Some(cert), Some(key)) = (&self.ca, &self.cert, &self.key) else {
            return Err(
                "TLS needs --tls-cert, --tls-key and --tls-ca together on a namenode or datanode"
                    .to_string(),
            );
        };
        let identity = Identity::from_pem(read(cert)?, read(key)?);
        let server = ServerTlsConfig::new().identity(identity);
        // Checked now, so a bad file is named at start and not at the first connection.
        Server::builder().tls_config(server.clone()).map_err(|e| {
            format!(
                "TLS certificate {} / key {}: {e}",
                cert.display(),
                key.display()
            )
        })?;
        Ok(Some(Tls {
            client: client_config(ca)?,
            server: Some(server),
        }))
    }

    /// Reads and checks the files of a client (CLI, mount): the CA only. `Ok(None)`: plain text.
    pub fn load_client(&self) -> Result<Option<Tls>, String> {
        if self.cert.is_some() || self.key.is_some() {
            return Err("--tls-cert and --tls-key are for namenodes and datanodes; a client needs only --tls-ca".to_string());
        }
        match &self.ca {
            None => Ok(None),
            Some(ca) => Ok(Some(Tls {
                client: client_config(ca)?,
                server: None,
            })),
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !String::from_utf8_lossy(&bytes).contains("-----BEGIN ") {
        return Err(format!("{}: not a PEM file", path.display()));
    }
    Ok(bytes)
}

fn client_config(ca: &Path) -> Result<ClientTlsConfig, String> {
    let config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?));
    Endpoint::from_static("https://127.0.0.1:1")
        .tls_config(config.clone())
        .map_err(|e| format!("TLS CA {}: {e}", ca.display()))?;
    Ok(config)
}

/// Makes `tls` this process's settings for every connection opened and every server started from
/// now on. Call once, before any connection; a second call is refused.
pub fn install(tls: Tls) -> Result<(), String> {
    INSTALLED
        .set(tls)
        .map_err(|_| "TLS settings are already installed".to_string())
}

/// True when connections use TLS.
pub fn enabled() -> bool {
    INSTALLED.get().is_some()
}

/// What to check when `message` (a failed connection or call) looks like TLS on one side only:
/// a plain-text client gets HTTP/2 errors from a TLS server, a TLS client gets a record-layer
/// error from a plain-text one.
pub fn mismatch_hint(message: &str) -> Option<&'static str> {
    if enabled() {
        (message.contains("InvalidContentType") || message.contains("corrupt message"))
            .then_some("the server does not use TLS, or this is not its address")
    } else {
        (message.contains("h2 protocol error") || message.contains("frame with invalid size"))
            .then_some("the server may use TLS: give its CA with --tls-ca or RINGFS_TLS_CA")
    }
}

pub(crate) fn client() -> Option<ClientTlsConfig> {
    INSTALLED.get().map(|t| t.client.clone())
}

pub(crate) fn server() -> Option<ServerTlsConfig> {
    INSTALLED.get().and_then(|t| t.server.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(ca: Option<&Path>, cert: Option<&Path>, key: Option<&Path>) -> TlsFiles {
        TlsFiles {
            ca: ca.map(Path::to_path_buf),
            cert: cert.map(Path::to_path_buf),
            key: key.map(Path::to_path_buf),
        }
    }

    #[test]
    fn no_files_is_plain_text() {
        assert!(TlsFiles::default().load_server().unwrap().is_none());
        assert!(TlsFiles::default().load_client().unwrap().is_none());
    }

    #[test]
    fn a_server_needs_all_three_files_and_a_client_only_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("x.pem");
        std::fs::write(
            &pem,
            "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = files(None, Some(&pem), Some(&pem))
            .load_server()
            .unwrap_err();
        assert!(e.contains("--tls-ca together"), "{e}");
        let e = files(Some(&pem), None, None).load_server().unwrap_err();
        assert!(e.contains("together"), "{e}");
        let e = files(Some(&pem), Some(&pem), None)
            .load_client()
            .unwrap_err();
        assert!(e.contains("only --tls-ca"), "{e}");
    }

    #[test]
    fn a_plain_text_client_meeting_a_tls_server_is_told_about_tls_ca() {
        // This test process installs no TLS settings.
        let hint = mismatch_hint("h2 protocol error: http2 error: frame with invalid size");
        assert!(hint.is_some_and(|h| h.contains("--tls-ca")), "{hint:?}");
        assert_eq!(mismatch_hint("connection refused"), None);
    }

    #[test]
    fn unreadable_or_non_pem_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = files(Some(&missing), None, None).load_client().unwrap_err();
        assert!(
            e.contains("cannot read") && e.contains("missing.pem"),
            "{e}"
        );
        let text = dir.path().join("text.pem");
        std::fs::write(&text, "hello").unwrap();
        let e = files(Some(&text), None, None).load_client().unwrap_err();
        assert!(e.contains("text.pem: not a PEM file"), "{e}");
    }
}
