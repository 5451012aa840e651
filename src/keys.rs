//! The key and certificate files the configuration names, read and checked once at start:
//! the DKIM signing keys (`mail.dkim.*`), the certificates Amazon SNS signs with
//! (`bounces.sns_certificates`) and the private CAs of the relay and the IMAP server
//! (`mail.tls_ca_file`, `bounces.imap_tls_ca_file`). A step of its own after `config/` has parsed the settings,
//! so the configuration knows nothing of DKIM or SNS; its errors still name the key, and
//! `herald` treats them as configuration errors (exit 2).

use crate::config::{Config, ConfigError, invalid};
use crate::delivery::{DkimKey, DkimSigner};
use crate::returned::sns::SnsVerifier;
use std::sync::Arc;

#[derive(Debug, Clone, Default)]
pub struct Keys {
    /// Signs every mail, when `mail.dkim` names keys.
    pub dkim: Option<Arc<DkimSigner>>,
    /// Checks `POST /api/v1/webhooks/ses`, when `bounces.sns_*` are set.
    pub sns: Option<Arc<SnsVerifier>>,
    /// The relay's certificate must chain to one of these (DER), when `mail.tls_ca_file`
    /// is set.
    pub mail_ca: Option<Arc<Vec<Vec<u8>>>>,
    /// Likewise the IMAP server's, when `bounces.imap_tls_ca_file` is set.
    pub imap_ca: Option<Arc<Vec<Vec<u8>>>>,
}

impl Keys {
    pub fn load(config: &Config) -> Result<Self, ConfigError> {
        let mut keys = Vec::new();
        for spec in &config.mail.dkim_keys {
            let pem = std::fs::read_to_string(&spec.key_file)
                .map_err(|e| invalid(&spec.key, format!("cannot read {:?}: {e}", spec.key_file)))?;
            keys.push(
                DkimKey::new(&pem, &spec.domain, &spec.selector)
                    .map_err(|e| invalid(&spec.key, format!("{}: {e}", spec.key_file)))?,
            );
        }
        let sns = match &config.bounces.sns {
            None => None,
            Some(spec) => {
                let mut pems = Vec::new();
                for path in &spec.certificates {
                    pems.push(std::fs::read_to_string(path).map_err(|e| {
                        invalid(
                            "bounces.sns_certificates",
                            format!("cannot read {path:?}: {e}"),
                        )
                    })?);
                }
                Some(Arc::new(
                    SnsVerifier::new(&pems, spec.topics.clone())
                        .map_err(|e| invalid("bounces.sns_certificates", e))?,
                ))
            }
        };
        let imap_ca_file = config
            .bounces
            .imap
            .as_ref()
            .and_then(|c| c.ca_file.as_deref());
        Ok(Keys {
            dkim: DkimSigner::with_keys(keys).map(Arc::new),
            sns,
            mail_ca: read_ca("mail.tls_ca_file", config.mail.tls_ca_file.as_deref())?,
            imap_ca: read_ca("bounces.imap_tls_ca_file", imap_ca_file)?,
        })
    }

    /// What is allowed but probably wrong about the keys, said beside `Config::warnings`.
    pub fn warnings(&self) -> Vec<String> {
        self.dkim
            .iter()
            .flat_map(|s| s.keys())
            .filter_map(|key| {
                key.weak_rsa_bits().map(|bits| {
                    format!(
                        "mail.dkim: the RSA key of selector {:?} has {bits} bits; RFC 8301 asks for \
                         2048 and some receivers treat shorter ones as unsigned (make one with \
                         `openssl genpkey -algorithm rsa -pkeyopt rsa_keygen_bits:2048`)",
                        key.selector()
                    )
                })
            })
            .collect()
    }
}

/// A private CA's certificates from the PEM file `path` (config key `key`); None if none.
fn read_ca(key: &str, path: Option<&str>) -> Result<Option<Arc<Vec<Vec<u8>>>>, ConfigError> {
    let Some(path) = path else { return Ok(None) };
    let pem =
        std::fs::read(path).map_err(|e| invalid(key, format!("cannot read {path:?}: {e}")))?;
    use rustls_pki_types::pem::PemObject;
    let certs: Vec<Vec<u8>> = rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(key, format!("{path:?} is not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(
            key,
            format!("{path:?} holds no certificate (BEGIN CERTIFICATE)"),
        ));
    }
    Ok(Some(Arc::new(certs)))
}
