//! Identity and webhook material: read from the cluster where it exists,
//! generated (and stored) where it does not. This is the I/O edge in front of
//! the pure renderer.

use super::ReconcileError;
use crate::identity;
use crate::render::{CONTROL_PLANE_LABEL, IdentityMaterial, TlsPair, WebhookTls};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use keelson_crds::ControlPlane;
use keelson_crds::controlplane::IssuerMode;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use std::time::{Duration, SystemTime};

/// Secret holding the managed trust anchor's certificate and key. Keelson
/// keeps it; Linkerd never reads it.
pub const ANCHOR_SECRET: &str = "keelson-identity-trust-anchor";
pub const ISSUER_SECRET: &str = "linkerd-identity-issuer";
const WEBHOOK_CERT_LIFETIME: Duration = Duration::from_secs(365 * 86400);

fn key(secret: &Secret, name: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(name)?;
    String::from_utf8(bytes.0.clone()).ok()
}

fn pair(secret: &Secret, cert: &str, key_name: &str) -> Option<TlsPair> {
    Some(TlsPair {
        cert_pem: key(secret, cert)?,
        key_pem: key(secret, key_name)?,
    })
}

/// Everything rendering needs besides the spec and the release.
pub struct Material {
    pub identity: IdentityMaterial,
    pub webhooks: WebhookTls,
    /// When the managed issuer is due for renewal: the reconciler must run
    /// again by then.
    pub issuer_renewal: Option<SystemTime>,
}

/// Whether a stored issuer can stay: readable, not yet due for renewal, and
/// signed by the current anchor.
fn issuer_usable(
    issuer: &TlsPair,
    anchor: &TlsPair,
    renew_at_percent: u8,
    now: SystemTime,
) -> bool {
    identity::validity_of(&issuer.cert_pem, "issuer").is_ok_and(|v| !v.due(renew_at_percent, now))
        && identity::verify_signed_by(&issuer.cert_pem, &anchor.cert_pem).is_ok()
}

pub async fn load(
    client: &Client,
    cp: &ControlPlane,
    now: SystemTime,
) -> Result<Material, ReconcileError> {
    let ns = cp.spec.namespace.as_str();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let get = |name: &'static str| {
        let secrets = secrets.clone();
        async move {
            secrets
                .get_opt(name)
                .await
                .map_err(|e| ReconcileError::kube(format!("reading Secret {ns}/{name}"), e))
        }
    };
    let spec = &cp.spec.identity;
    let (identity, issuer_renewal) = match spec.issuer {
        IssuerMode::Managed => {
            let anchor = match get(ANCHOR_SECRET)
                .await?
                .as_ref()
                .and_then(|s| pair(s, "ca.crt", "ca.key"))
            {
                Some(anchor) => anchor,
                None => {
                    let anchor = identity::trust_anchor(
                        &spec.trust_domain,
                        spec.trust_anchor_lifetime.into(),
                        now,
                    )?;
                    create_secret(
                        &secrets,
                        cp,
                        ANCHOR_SECRET,
                        &[("ca.crt", &anchor.cert_pem), ("ca.key", &anchor.key_pem)],
                    )
                    .await?
                    .and_then(|s| pair(&s, "ca.crt", "ca.key"))
                    .unwrap_or(anchor)
                }
            };
            // The issuer Secret is rendered from this material, so what is
            // stored there is reused until it is due for renewal. Linkerd's
            // identity controller reloads the Secret, so renewal is hot.
            let stored = get(ISSUER_SECRET)
                .await?
                .as_ref()
                .and_then(|s| pair(s, "crt.pem", "key.pem"));
            let renew_at = spec.rotation.renew_at_percent;
            let issuer = match stored {
                Some(issuer) if issuer_usable(&issuer, &anchor, renew_at, now) => issuer,
                stale => {
                    let issuer = identity::issuer(
                        &anchor,
                        ns,
                        &spec.trust_domain,
                        spec.issuer_lifetime.into(),
                        now,
                    )?;
                    // Never hand the identity controller an issuer that
                    // proxies holding this anchor would reject.
                    identity::verify_signed_by(&issuer.cert_pem, &anchor.cert_pem)?;
                    if stale.is_some() {
                        tracing::info!(namespace = ns, "renewing the identity issuer");
                    }
                    issuer
                }
            };
            let issuer_renewal =
                identity::validity_of(&issuer.cert_pem, "issuer")?.renew_at(renew_at);
            let material = IdentityMaterial {
                trust_anchors_pem: anchor.cert_pem,
                issuer: Some(issuer),
            };
            (material, Some(issuer_renewal))
        }
        IssuerMode::External => {
            let secret =
                get(ISSUER_SECRET)
                    .await?
                    .ok_or_else(|| ReconcileError::ExternalIssuerMissing {
                        namespace: ns.to_owned(),
                    })?;
            let anchors =
                key(&secret, "ca.crt").ok_or_else(|| ReconcileError::ExternalIssuerMissing {
                    namespace: ns.to_owned(),
                })?;
            let material = IdentityMaterial {
                trust_anchors_pem: anchors,
                issuer: None,
            };
            (material, None)
        }
    };
    let webhook = |secret: &'static str, service: &'static str| {
        let get = &get;
        async move {
            match get(secret)
                .await?
                .as_ref()
                .and_then(|s| pair(s, "tls.crt", "tls.key"))
            {
                Some(p) => Ok::<_, ReconcileError>(p),
                None => Ok(identity::webhook_serving(
                    service,
                    ns,
                    WEBHOOK_CERT_LIFETIME,
                    now,
                )?),
            }
        }
    };
    let webhooks = WebhookTls {
        sp_validator: webhook("linkerd-sp-validator-k8s-tls", "linkerd-sp-validator").await?,
        policy_validator: webhook(
            "linkerd-policy-validator-k8s-tls",
            "linkerd-policy-validator",
        )
        .await?,
    };
    Ok(Material {
        identity,
        webhooks,
        issuer_renewal,
    })
}

/// Creates a Secret that must not be overwritten once it exists. Returns the
/// stored Secret when another writer created it first, so both agree.
async fn create_secret(
    secrets: &Api<Secret>,
    cp: &ControlPlane,
    name: &str,
    data: &[(&str, &str)],
) -> Result<Option<Secret>, ReconcileError> {
    let mut secret = Secret::default();
    secret.metadata.name = Some(name.into());
    secret.metadata.labels = Some([(CONTROL_PLANE_LABEL.to_owned(), cp.name_any())].into());
    secret.data = Some(
        data.iter()
            .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
            .collect(),
    );
    match secrets.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(None),
        Err(kube::Error::Api(s)) if s.code == 409 => secrets
            .get_opt(name)
            .await
            .map_err(|e| ReconcileError::kube(format!("reading Secret {name}"), e)),
        Err(e) => Err(ReconcileError::kube(format!("creating Secret {name}"), e)),
    }
}
