//! The key and certificate files the configuration names, read and checked once at start:
//! the DKIM signing keys (`mail.dkim.*`) and the certificates Amazon SNS signs with
//! (`bounces.sns_certificates`). A step of its own after `config.rs` has parsed the settings,
//! so the configuration knows nothing of DKIM or SNS; its errors still name the key, and
//! `herald` treats them as configuration errors (exit 2).

use crate::bounces::sns::SnsVerifier;
use crate::config::{Config, ConfigError, invalid};
use crate::delivery::{DkimKey, DkimSigner};
use std::sync::Arc;

#[derive(Debug, Clone, Default)]
pub struct Keys {
    /// Signs every mail, when `mail.dkim` names keys.
    pub dkim: Option<Arc<DkimSigner>>,
    /// Checks `POST /api/v1/webhooks/ses`, when `bounces.sns_*` are set.
    pub sns: Option<Arc<SnsVerifier>>,
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
        Ok(Keys {
            dkim: DkimSigner::with_keys(keys).map(Arc::new),
            sns,
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
