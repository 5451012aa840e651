//! Amazon SES bounce and complaint notifications, delivered by Amazon SNS to
//! `POST /api/v1/webhooks/ses`.
//!
//! SNS cannot send a bearer token, so what authenticates a message is its signature (SNS
//! signs every message, RSA with SHA-1 for `SignatureVersion` 1 and SHA-256 for 2, over the
//! fields AWS lists for each message type) and the topic it comes from: the signature must
//! verify with one of the certificates the operator configured (`bounces.sns_certificates`,
//! the PEM file SNS names in `SigningCertURL`, fetched once by the operator — herald
//! downloads nothing at run time), and the topic must be one of `bounces.sns_topics`
//! (anyone can make an SNS topic of their own, signed by the same AWS keys).

use crate::store::ReturnedKind;
use serde::Deserialize;

/// One SNS message as POSTed (the fields herald reads or signs).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SnsMessage {
    #[serde(rename = "Type")]
    pub kind: String,
    pub message_id: String,
    pub topic_arn: String,
    #[serde(default)]
    pub subject: Option<String>,
    pub message: String,
    pub timestamp: String,
    pub signature_version: String,
    pub signature: String,
    #[serde(rename = "SigningCertURL", default)]
    pub signing_cert_url: Option<String>,
    #[serde(rename = "SubscribeURL", default)]
    pub subscribe_url: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnsError {
    #[error("not an SNS message: {0}")]
    Malformed(String),
    #[error("topic {0} is not one of bounces.sns_topics")]
    UnknownTopic(String),
    #[error(
        "the signature does not verify with any certificate in bounces.sns_certificates (the message names {0}; if that is Amazon's, add it)"
    )]
    BadSignature(String),
}

/// The certificates signatures are checked against.
pub struct SnsVerifier {
    keys: Vec<rsa::RsaPublicKey>,
    topics: Vec<String>,
}

impl std::fmt::Debug for SnsVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnsVerifier")
            .field("keys", &self.keys.len())
            .field("topics", &self.topics)
            .finish()
    }
}

impl SnsVerifier {
    /// From PEM certificates (one or more per text) and the topics to accept.
    pub fn new(pems: &[String], topics: Vec<String>) -> Result<Self, String> {
        use rsa::pkcs8::DecodePublicKey;
        use x509_cert::der::Encode;
        let mut keys = Vec::new();
        for pem in pems {
            let certs = x509_cert::Certificate::load_pem_chain(pem.as_bytes())
                .map_err(|e| format!("not a PEM certificate: {e}"))?;
            if certs.is_empty() {
                return Err("no certificate in it".into());
            }
            for cert in certs {
                let spki = cert
                    .tbs_certificate
                    .subject_public_key_info
                    .to_der()
                    .map_err(|e| e.to_string())?;
                keys.push(
                    rsa::RsaPublicKey::from_public_key_der(&spki)
                        .map_err(|e| format!("the certificate's key is not RSA: {e}"))?,
                );
            }
        }
        if keys.is_empty() {
            return Err("no certificate found".into());
        }
        Ok(Self { keys, topics })
    }

    /// Check topic and signature; the message if both hold.
    pub fn verify(&self, body: &[u8]) -> Result<SnsMessage, SnsError> {
        let msg: SnsMessage =
            serde_json::from_slice(body).map_err(|e| SnsError::Malformed(e.to_string()))?;
        if !self.topics.contains(&msg.topic_arn) {
            return Err(SnsError::UnknownTopic(msg.topic_arn));
        }
        let signed = string_to_sign(&msg)?;
        use base64::Engine;
        let signature = base64::engine::general_purpose::STANDARD
            .decode(msg.signature.trim())
            .map_err(|_| SnsError::Malformed("Signature is not base64".into()))?;
        let signature = rsa::pkcs1v15::Signature::try_from(signature.as_slice())
            .map_err(|_| SnsError::Malformed("Signature is not an RSA signature".into()))?;
        use rsa::signature::Verifier;
        let ok = self
            .keys
            .iter()
            .any(|key| match msg.signature_version.as_str() {
                "1" => rsa::pkcs1v15::VerifyingKey::<sha1::Sha1>::new(key.clone())
                    .verify(signed.as_bytes(), &signature)
                    .is_ok(),
                "2" => rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key.clone())
                    .verify(signed.as_bytes(), &signature)
                    .is_ok(),
                _ => false,
            });
        if !matches!(msg.signature_version.as_str(), "1" | "2") {
            return Err(SnsError::Malformed(format!(
                "SignatureVersion {:?} is not 1 or 2",
                msg.signature_version
            )));
        }
        if !ok {
            return Err(SnsError::BadSignature(
                msg.signing_cert_url
                    .clone()
                    .unwrap_or_else(|| "no certificate".into()),
            ));
        }
        Ok(msg)
    }
}

/// What SNS signs (AWS, "Verifying the signatures of Amazon SNS messages"): `Name\nvalue\n`
/// for each field of the message's type, in this order, optional ones only when present.
pub fn string_to_sign(m: &SnsMessage) -> Result<String, SnsError> {
    let mut out = String::new();
    let mut add = |k: &str, v: &str| {
        out.push_str(k);
        out.push('\n');
        out.push_str(v);
        out.push('\n');
    };
    let need = |v: &Option<String>, k: &str| {
        v.clone()
            .ok_or_else(|| SnsError::Malformed(format!("{k} is missing")))
    };
    match m.kind.as_str() {
        "Notification" => {
            add("Message", &m.message);
            add("MessageId", &m.message_id);
            if let Some(s) = &m.subject {
                add("Subject", s);
            }
            add("Timestamp", &m.timestamp);
            add("TopicArn", &m.topic_arn);
            add("Type", &m.kind);
        }
        "SubscriptionConfirmation" | "UnsubscribeConfirmation" => {
            let url = need(&m.subscribe_url, "SubscribeURL")?;
            let token = need(&m.token, "Token")?;
            add("Message", &m.message);
            add("MessageId", &m.message_id);
            add("SubscribeURL", &url);
            add("Timestamp", &m.timestamp);
            add("Token", &token);
            add("TopicArn", &m.topic_arn);
            add("Type", &m.kind);
        }
        other => return Err(SnsError::Malformed(format!("unknown Type {other:?}"))),
    }
    Ok(out)
}

/// One address an SES notification is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SesEvent {
    pub kind: ReturnedKind,
    pub email: String,
    pub status: Option<String>,
    pub diagnostic: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SesNotification {
    /// Notifications set on an identity say `notificationType`; event publishing through a
    /// configuration set says `eventType`.
    #[serde(default, alias = "eventType")]
    notification_type: Option<String>,
    #[serde(default)]
    bounce: Option<SesBounce>,
    #[serde(default)]
    complaint: Option<SesComplaint>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SesBounce {
    bounce_type: String,
    #[serde(default)]
    bounce_sub_type: Option<String>,
    #[serde(default)]
    bounced_recipients: Vec<SesRecipient>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SesComplaint {
    #[serde(default)]
    complained_recipients: Vec<SesRecipient>,
    #[serde(default)]
    complaint_feedback_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SesRecipient {
    email_address: String,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    diagnostic_code: Option<String>,
}

/// The addresses a (verified) SES notification reports, with what happened to each;
/// empty for deliveries and the other event types herald does not act on.
pub fn ses_events(message: &str) -> Result<Vec<SesEvent>, SnsError> {
    let n: SesNotification = serde_json::from_str(message)
        .map_err(|e| SnsError::Malformed(format!("not an SES notification: {e}")))?;
    Ok(match n.notification_type.as_deref() {
        Some("Bounce") => {
            let b = n
                .bounce
                .ok_or_else(|| SnsError::Malformed("a Bounce without bounce".into()))?;
            // What SES's type says when the recipient's own status and words say nothing
            // (`domain::judge` decides first: a "Permanent" 5.7.1 is a blocklisting).
            let sub = b.bounce_sub_type.clone().unwrap_or_default();
            let hint = match (b.bounce_type.as_str(), sub.as_str()) {
                ("Permanent", _) => ReturnedKind::Hard,
                ("Transient", "MessageTooLarge" | "ContentRejected" | "AttachmentRejected") => {
                    ReturnedKind::Refused
                }
                _ => ReturnedKind::Soft,
            };
            b.bounced_recipients
                .into_iter()
                .map(|r| {
                    let kind = crate::domain::judge(
                        r.action.as_deref(),
                        r.status.as_deref(),
                        r.diagnostic_code.as_deref(),
                    )
                    .map_or(hint, ReturnedKind::of);
                    SesEvent {
                        kind,
                        email: r.email_address,
                        status: r.status,
                        diagnostic: Some(
                            r.diagnostic_code
                                .unwrap_or_else(|| format!("{} ({sub})", b.bounce_type)),
                        ),
                    }
                })
                .collect()
        }
        Some("Complaint") => {
            let c = n
                .complaint
                .ok_or_else(|| SnsError::Malformed("a Complaint without complaint".into()))?;
            let feedback = c.complaint_feedback_type.unwrap_or_else(|| "abuse".into());
            c.complained_recipients
                .into_iter()
                .map(|r| SesEvent {
                    kind: ReturnedKind::Complaint,
                    email: r.email_address,
                    status: None,
                    diagnostic: Some(format!("feedback type: {feedback}")),
                })
                .collect()
        }
        _ => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bounce notification in the form the SES developer guide documents ("Amazon SNS
    /// notification contents for Amazon SES").
    const BOUNCE: &str = r#"{"notificationType":"Bounce","bounce":{"feedbackId":"0100017b9b4a1b6f-9fd7c9e2-3f7c-4a0c-9a43-54dd0b8d7d5e-000000","bounceType":"Permanent","bounceSubType":"General","bouncedRecipients":[{"emailAddress":"gone@example.com","action":"failed","status":"5.1.1","diagnosticCode":"smtp; 550 5.1.1 user unknown"}],"timestamp":"2026-03-02T07:00:05.000Z","remoteMtaIp":"192.0.2.25","reportingMTA":"dsn; a8-70.smtp-out.amazonses.com"},"mail":{"timestamp":"2026-03-02T07:00:03.000Z","source":"news@news.herald.example","sourceArn":"arn:aws:ses:us-east-1:123456789012:identity/news.herald.example","sendingAccountId":"123456789012","messageId":"0100017b9b4a19e7-ses","destination":["gone@example.com"]}}"#;

    #[test]
    fn a_permanent_bounce_is_hard_and_names_its_recipient() {
        assert_eq!(
            ses_events(BOUNCE).unwrap(),
            [SesEvent {
                kind: ReturnedKind::Hard,
                email: "gone@example.com".into(),
                status: Some("5.1.1".into()),
                diagnostic: Some("smtp; 550 5.1.1 user unknown".into()),
            }]
        );
        let transient = BOUNCE
            .replace("Permanent", "Transient")
            .replace("5.1.1", "4.2.2")
            .replace("user unknown", "mailbox full");
        assert_eq!(ses_events(&transient).unwrap()[0].kind, ReturnedKind::Soft);
        // SES calls a blocklisting "Permanent"; the recipient's own code says what it is.
        let blocked = BOUNCE
            .replace("5.1.1", "5.7.1")
            .replace("user unknown", "blocked using zen.spamhaus.org");
        assert_eq!(ses_events(&blocked).unwrap()[0].kind, ReturnedKind::Refused);
        let no_code = BOUNCE.replace(
            r#""status":"5.1.1","diagnosticCode":"smtp; 550 5.1.1 user unknown""#,
            r#""status":"""#,
        );
        assert_eq!(
            ses_events(&no_code).unwrap()[0].kind,
            ReturnedKind::Hard,
            "SES's type, when nothing else says"
        );
        let event = BOUNCE.replace("notificationType", "eventType");
        assert_eq!(ses_events(&event).unwrap().len(), 1);
        assert!(
            ses_events(r#"{"notificationType":"Delivery"}"#)
                .unwrap()
                .is_empty()
        );
        assert!(ses_events("not json").is_err());
    }

    #[test]
    fn the_signed_text_follows_the_message_type() {
        let m = SnsMessage {
            kind: "Notification".into(),
            message_id: "id".into(),
            topic_arn: "arn".into(),
            subject: None,
            message: "m".into(),
            timestamp: "t".into(),
            signature_version: "2".into(),
            signature: String::new(),
            signing_cert_url: None,
            subscribe_url: None,
            token: None,
        };
        assert_eq!(
            string_to_sign(&m).unwrap(),
            "Message\nm\nMessageId\nid\nTimestamp\nt\nTopicArn\narn\nType\nNotification\n"
        );
        let mut c = m.clone();
        c.kind = "SubscriptionConfirmation".into();
        assert!(string_to_sign(&c).is_err(), "needs SubscribeURL and Token");
        c.subscribe_url = Some("u".into());
        c.token = Some("k".into());
        assert_eq!(
            string_to_sign(&c).unwrap(),
            "Message\nm\nMessageId\nid\nSubscribeURL\nu\nTimestamp\nt\nToken\nk\nTopicArn\narn\nType\nSubscriptionConfirmation\n"
        );
    }
}
