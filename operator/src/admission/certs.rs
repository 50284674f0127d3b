//! The admission server's certificates: one CA for every replica, kept in a
//! Secret in Keelson's namespace, and a short-lived serving certificate per
//! replica, renewed in place without a restart.
//!
//! The Secret is the CA's one source: every replica follows it, so replicas
//! never serve from different CAs. A replaced CA (a new `ca.crt` and
//! `ca.key`) is taken up by every replica and written to the webhook
//! configurations; a deleted Secret is put back with the CA in use, so the
//! next replica to start does not make a CA of its own.

use super::AdmissionError;
use crate::metrics::Metrics;
use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use keelson_webhooks::{CertResolver, WebhookCa};
use kube::Client;
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// Secret holding the CA (`ca.crt`, `ca.key`) the webhook configurations trust.
pub const CA_SECRET: &str = "keelson-webhook-ca";
/// Long enough that the CA outlives any sensible operator deployment; the
/// serving certificates it signs are what rotates.
const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 86_400);
const SERVING_LIFETIME: Duration = Duration::from_secs(30 * 86_400);
/// Renew a serving certificate this long before it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(10 * 86_400);
const RETRY: Duration = Duration::from_secs(3_600);

fn kube_error(namespace: &str, what: &str) -> impl FnOnce(kube::Error) -> AdmissionError {
    let what = format!("{what} Secret {namespace}/{CA_SECRET}");
    move |source| AdmissionError::Kube {
        what,
        source: Box::new(source),
    }
}

/// The CA from its Secret, generating and storing it on first start. When
/// replicas start together, one creation wins and the others read it.
pub async fn ca(client: &Client, namespace: &str) -> Result<WebhookCa, AdmissionError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    if let Some(secret) = secrets
        .get_opt(CA_SECRET)
        .await
        .map_err(kube_error(namespace, "reading"))?
    {
        return from_secret(&secret, namespace);
    }
    let ca = WebhookCa::generate("keelson-webhook-ca", CA_LIFETIME, SystemTime::now())?;
    if store(&secrets, pems(&ca), namespace).await? {
        tracing::info!(secret = CA_SECRET, %namespace, "generated the webhook CA");
        return Ok(ca);
    }
    let secret = secrets
        .get(CA_SECRET)
        .await
        .map_err(kube_error(namespace, "reading"))?;
    from_secret(&secret, namespace)
}

/// Creates the CA Secret holding the CA `pems` (certificate and key);
/// false if one exists already.
async fn store(
    secrets: &Api<Secret>,
    (cert_pem, key_pem): (String, String),
    namespace: &str,
) -> Result<bool, AdmissionError> {
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
            ("ca.crt".into(), ByteString(cert_pem.into_bytes())),
            ("ca.key".into(), ByteString(key_pem.into_bytes())),
        ])),
        ..Default::default()
    };
    match secrets.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(kube_error(namespace, "creating")(e)),
    }
}

/// Keeps `ca` on what the CA Secret holds, for as long as the server runs:
/// a replaced CA is sent on, a deleted Secret is created again with the
/// current CA, and an unreadable one is logged and ignored (the current CA
/// goes on serving).
pub async fn follow(
    client: Client,
    namespace: String,
    ca: watch::Sender<WebhookCa>,
    metrics: Arc<Metrics>,
) {
    let secrets: Api<Secret> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={CA_SECRET}"));
    let mut events = std::pin::pin!(watcher(secrets.clone(), config).default_backoff());
    // Whether the Secret was listed since the last (re)list began: a
    // deletion missed while the watch was down shows as its absence.
    let mut listed = false;
    while let Some(event) = events.next().await {
        let secret = match event {
            Ok(watcher::Event::Apply(secret) | watcher::Event::InitApply(secret)) => secret,
            Ok(watcher::Event::Init) => {
                listed = false;
                continue;
            }
            Ok(watcher::Event::InitDone) if listed => continue,
            Ok(watcher::Event::Delete(_) | watcher::Event::InitDone) => {
                let current = pems(&ca.borrow());
                match store(&secrets, current, &namespace).await {
                    Ok(true) => tracing::warn!(
                        secret = CA_SECRET,
                        %namespace,
                        "the webhook CA Secret was deleted; stored the CA in use again"
                    ),
                    Ok(false) => {}
                    Err(error) => {
                        tracing::warn!(%error, "storing the webhook CA again")
                    }
                }
                continue;
            }
            Err(error) => {
                tracing::warn!(%error, "watching the webhook CA Secret");
                continue;
            }
        };
        listed = true;
        match from_secret(&secret, &namespace) {
            Ok(next) if next.cert_pem() != ca.borrow().cert_pem() => {
                tracing::info!(
                    secret = CA_SECRET,
                    %namespace,
                    "the webhook CA Secret holds another CA; serving from it"
                );
                metrics.certificate_expires("webhook-ca", next.not_after());
                ca.send_replace(next);
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(
                %error,
                "the webhook CA Secret cannot be used; the current CA goes on serving"
            ),
        }
    }
}

fn pems(ca: &WebhookCa) -> (String, String) {
    (ca.cert_pem().to_owned(), ca.key_pem().to_owned())
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

/// Renews the serving certificate ahead of its expiry, and at once when
/// `ca` changes, for as long as the server runs. A failed renewal is retried
/// hourly; the current certificate keeps serving meanwhile.
pub async fn renew(
    mut ca: watch::Receiver<WebhookCa>,
    names: Vec<String>,
    resolver: Arc<CertResolver>,
    not_after: SystemTime,
    metrics: Arc<Metrics>,
) {
    let mut due = renewal_due(not_after);
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(due) => {}
            Ok(()) = ca.changed() => {}
        }
        let issued = issue(&ca.borrow_and_update(), &names);
        match issued {
            Ok((key, not_after)) => {
                resolver.replace(key);
                metrics.certificate_expires("webhook-serving", not_after);
                due = renewal_due(not_after);
                tracing::info!("issued a new webhook serving certificate");
            }
            Err(e) => {
                tracing::warn!(error = %e, "issuing the webhook serving certificate; retrying in an hour");
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
