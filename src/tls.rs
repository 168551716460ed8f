//! TLS client configuration shared by the LDAP source and the SCIM client: rustls with
//! the ring provider, certificates always verified, against a given CA file or the
//! system's trust store.

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::path::Path;
use std::sync::Arc;

/// The certificates of a PEM file; errors name the file.
pub fn pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// A verifying client configuration. `ca_file`: PEM bundle of trusted CAs; `None`: the
/// system's trust store.
pub fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(ca) => {
            let certs = pem_certs(ca).map_err(|e| format!("CA file {e}"))?;
            if certs.is_empty() {
                return Err(format!("CA file {} holds no PEM certificate", ca.display()));
            }
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| format!("CA file {}: {e}", ca.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                // A system store may hold certificates rustls cannot use; skip those.
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                return Err(
                    "the system trust store holds no usable CA certificate; set a CA file".into(),
                );
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
