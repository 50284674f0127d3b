//! The admission server's certificates: one CA for every replica, kept in a
//! Secret in Keelson's namespace, and a short-lived serving certificate per
//! replica, renewed in place without a restart.

use super::AdmissionError;
use crate::metrics::Metrics;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use keelson_webhooks::{CertResolver, WebhookCa};
use kube::Client;
use kube::api::{Api, PostParams};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Secret holding the CA (`ca.crt`, `ca.key`) the webhook configurations trust.
pub const CA_SECRET: &str = "keelson-webhook-ca";
/// Long enough that the CA outlives any sensible operator deployment; the
/// serving certificates it signs are what rotates.
const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 86_400);
const SERVING_LIFETIME: Duration = Duration::from_secs(30 * 86_400);
/// Renew a serving certificate this long before it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(10 * 86_400);
const RETRY: Duration = Duration::from_secs(3_600);

/// The CA from its Secret, generating and storing it on first start. When
/// replicas start together, one creation wins and the others read it.
pub async fn ca(client: &Client, namespace: &str) -> Result<WebhookCa, AdmissionError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let kube = |what: &str| {
        let what = format!("{what} Secret {namespace}/{CA_SECRET}");
        move |source| AdmissionError::Kube {
            what,
            source: Box::new(source),
        }
    };
    if let Some(secret) = secrets.get_opt(CA_SECRET).await.map_err(kube("reading"))? {
        return from_secret(&secret, namespace);
    }
    let ca = WebhookCa::generate("keelson-webhook-ca", CA_LIFETIME, SystemTime::now())?;
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(CA_SECRET.into()),
            namespace: Some(namespace.into()),
            labels: Some(BTreeMap::from([(
                super::configurations::COMPONENT_LABEL.into(),
                "webhook".into(),
            )])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([
            (
                "ca.crt".into(),
                ByteString(ca.cert_pem().as_bytes().to_vec()),
            ),
            (
                "ca.key".into(),
                ByteString(ca.key_pem().as_bytes().to_vec()),
            ),
        ])),
        ..Default::default()
    };
    match secrets.create(&PostParams::default(), &secret).await {
        Ok(_) => {
            tracing::info!(secret = CA_SECRET, %namespace, "generated the webhook CA");
            Ok(ca)
        }
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let secret = secrets.get(CA_SECRET).await.map_err(kube("reading"))?;
            from_secret(&secret, namespace)
        }
        Err(e) => Err(kube("creating")(e)),
    }
}

fn from_secret(secret: &Secret, namespace: &str) -> Result<WebhookCa, AdmissionError> {
    let field = |key: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
            .ok_or_else(|| AdmissionError::CaSecret {
                namespace: namespace.to_owned(),
                detail: format!("no {key}"),
            })
    };
    WebhookCa::from_pem(&field("ca.crt")?, &field("ca.key")?).map_err(|e| {
        AdmissionError::CaSecret {
            namespace: namespace.to_owned(),
            detail: e.to_string(),
        }
    })
}

/// Issues a serving certificate for `names`.
pub fn issue(
    ca: &WebhookCa,
    names: &[String],
) -> Result<(Arc<rustls::sign::CertifiedKey>, SystemTime), AdmissionError> {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let now = SystemTime::now();
    // Never past the CA: a leaf that outlives it would fail on the CA's expiry.
    let lifetime = SERVING_LIFETIME.min(ca.not_after().duration_since(now).unwrap_or_default());
    let cert = ca.issue(&names, lifetime, now)?;
    Ok((cert.certified_key()?, cert.not_after))
}

/// Renews the serving certificate ahead of its expiry, for as long as the
/// server runs. A failed renewal is retried hourly; the current certificate
/// keeps serving meanwhile.
pub async fn renew(
    ca: WebhookCa,
    names: Vec<String>,
    resolver: Arc<CertResolver>,
    not_after: SystemTime,
    metrics: Arc<Metrics>,
) {
    let mut due = renewal_due(not_after);
    loop {
        tokio::time::sleep_until(due).await;
        match issue(&ca, &names) {
            Ok((key, not_after)) => {
                resolver.replace(key);
                metrics.certificate_expires("webhook-serving", not_after);
                due = renewal_due(not_after);
                tracing::info!("renewed the webhook serving certificate");
            }
            Err(e) => {
                tracing::warn!(error = %e, "renewing the webhook serving certificate; retrying in an hour");
                due = tokio::time::Instant::now() + RETRY;
            }
        }
    }
}

/// When a certificate valid until `not_after` should be replaced.
fn renewal_due(not_after: SystemTime) -> tokio::time::Instant {
    let left = not_after
        .checked_sub(RENEW_BEFORE)
        .and_then(|at| at.duration_since(SystemTime::now()).ok())
        .unwrap_or_default();
    tokio::time::Instant::now() + left
}
