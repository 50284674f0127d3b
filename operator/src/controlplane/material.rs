//! Identity and webhook material: read from the cluster where it exists,
//! generated (and stored) where it does not. This is the I/O edge in front of
//! the pure renderer.

use super::ReconcileError;
use crate::identity::rotation::{Anchors, Lagging, Trigger};
use crate::identity::{self, rotation};
use crate::render::proxy::{CONTROL_PLANE_NS, TRUST_ROOT_SHA256, trust_root_sha256};
use crate::render::{CONTROL_PLANE_LABEL, IdentityMaterial, TlsPair, WebhookTls};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use keelson_crds::ControlPlane;
use keelson_crds::controlplane::{
    DECLARED_TRUST_ANCHOR_SECRET, DeclaredAnchor, DeclaredAnchorState, IdentityStatus, IssuerMode,
    IssuerRequest, ROTATE_TRUST_ANCHOR,
};
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use std::time::{Duration, SystemTime};

/// Secret holding the managed trust anchors' certificates and keys (the
/// active one, and during a rotation the next or the previous one). Keelson
/// keeps it in its own namespace, as `<this>.<ControlPlane>`
/// ([`anchor_secret`]): in the control plane's namespace Linkerd's
/// destination controller may read every Secret (its `remote-discovery`
/// Role), and a root key must be out of a workload's reach. Older Keelsons
/// kept it there under this bare name; [`load`] moves it.
pub const ANCHOR_SECRET: &str = "keelson-identity-trust-anchor";

/// The managed trust anchors' Secret of ControlPlane `cp`, in Keelson's
/// namespace.
pub fn anchor_secret(cp: &str) -> String {
    format!("{ANCHOR_SECRET}.{cp}")
}

/// The Secret in Keelson's namespace where a user declares the anchor
/// ControlPlane `cp` rotates to (`tls.crt` and `tls.key`).
pub fn declared_anchor_secret(cp: &str) -> String {
    format!("{DECLARED_TRUST_ANCHOR_SECRET}.{cp}")
}
pub const ISSUER_SECRET: &str = "linkerd-identity-issuer";
const WEBHOOK_CERT_LIFETIME: Duration = Duration::from_secs(365 * 86400);

pub(super) fn key(secret: &Secret, name: &str) -> Option<String> {
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
    /// The issuer certificate in use (PEM), for status and expiry checks.
    pub issuer_cert_pem: Option<String>,
    /// The trust-anchor rotation step taken (managed identity only).
    pub rotation: Option<rotation::Plan>,
    /// The declared next trust anchor, as checked (managed identity only).
    pub declared: Option<DeclaredAnchor>,
    /// The next issuer waiting to be signed off the cluster (`OfflineRoot`).
    pub issuer_request: Option<IssuerRequest>,
    /// An issuer signed off the cluster was installed in this reconcile.
    pub issuer_installed: bool,
}

/// What the reconcile observed that the anchors' rotation gates on.
pub struct Observed<'a> {
    /// Identity status as last recorded.
    pub status: Option<&'a IdentityStatus>,
    /// The trust-bundle digest identity and destination run with, when both
    /// are rolled out and available with the same one.
    pub control_plane_bundle: Option<&'a str>,
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
        && identity::verify_signed_by_bundle(&issuer.cert_pem, &anchor.cert_pem).is_ok()
}

/// The stored anchors; `None` when the Secret has no usable active anchor.
fn stored_anchors(secret: &Secret) -> Option<Anchors> {
    let imported = || {
        Some(TlsPair {
            cert_pem: key(secret, IMPORTED_CERT)?,
            key_pem: String::new(),
        })
    };
    Some(Anchors {
        active: pair(secret, "ca.crt", "ca.key").or_else(imported)?,
        next: pair(secret, NEXT_CERT, NEXT_KEY),
        previous: key(secret, PREVIOUS_CERT),
    })
}

/// The bundle of an adopted installation, as it was installed (see
/// [`Anchors::active`]); with it there is no `ca.crt` or `ca.key`.
pub const IMPORTED_CERT: &str = "imported.crt";
const NEXT_CERT: &str = "next.crt";
const NEXT_KEY: &str = "next.key";
const PREVIOUS_CERT: &str = "previous.crt";

/// What to make of the anchor declared in Secret
/// `keelson-identity-next-trust-anchor`, and the anchor to rotate to when a
/// rotation to it starts now. One already in use, or adopted before, is
/// settled: a later rotation never goes back to it.
fn declared_anchor(
    secret: Option<&Secret>,
    anchors: &Anchors,
    rotating: bool,
    last: Option<&DeclaredAnchor>,
    check: impl FnOnce(&TlsPair) -> Result<(), identity::IdentityError>,
) -> (Option<DeclaredAnchor>, Option<TlsPair>) {
    let Some(secret) = secret else {
        return (None, None);
    };
    let judged = |sha256, state, message: Option<String>| {
        Some(DeclaredAnchor {
            sha256,
            state,
            message,
        })
    };
    let Some(declared) = pair(secret, "tls.crt", "tls.key") else {
        let message = format!(
            "Secret {DECLARED_TRUST_ANCHOR_SECRET} needs tls.crt and tls.key (kubectl create secret tls)"
        );
        return (
            judged(None, DeclaredAnchorState::Rejected, Some(message)),
            None,
        );
    };
    let Ok(sha) = identity::fingerprint(&declared.cert_pem, "declared trust anchor") else {
        let message = "tls.crt is not a PEM certificate".to_owned();
        return (
            judged(None, DeclaredAnchorState::Rejected, Some(message)),
            None,
        );
    };
    let stored = [
        Some(anchors.active.cert_pem.as_str()),
        anchors.next.as_ref().map(|n| n.cert_pem.as_str()),
        anchors.previous.as_deref(),
    ];
    let in_use = stored
        .into_iter()
        .flatten()
        .any(|pem| identity::fingerprint(pem, "trust anchor").is_ok_and(|s| s == sha));
    let adopted = last.is_some_and(|l| {
        l.state == DeclaredAnchorState::Adopted && l.sha256.as_deref() == Some(sha.as_str())
    });
    if in_use || adopted {
        return (judged(Some(sha), DeclaredAnchorState::Adopted, None), None);
    }
    if let Err(e) = check(&declared) {
        let state = DeclaredAnchorState::Rejected;
        return (judged(Some(sha), state, Some(e.to_string())), None);
    }
    if rotating {
        let message = "waits for the trust-anchor rotation under way to finish".to_owned();
        return (
            judged(Some(sha), DeclaredAnchorState::Pending, Some(message)),
            None,
        );
    }
    (
        judged(Some(sha), DeclaredAnchorState::Adopted, None),
        Some(declared),
    )
}

/// Why a rotation should start now, if none is under way.
/// `issuer_due_without_key`: the issuer is due and the active anchors were
/// imported with no key, so only a rotation to an anchor Keelson makes can
/// renew it, whatever `automaticTrustAnchorRotation` says: the
/// alternative is an expired issuer.
fn trigger(
    cp: &ControlPlane,
    status: Option<&IdentityStatus>,
    active: &TlsPair,
    issuer_due_without_key: bool,
    now: SystemTime,
) -> Result<Option<Trigger>, ReconcileError> {
    let requested = cp.annotations().get(ROTATE_TRUST_ANCHOR);
    if requested.is_some() && requested != status.and_then(|s| s.rotation_request.as_ref()) {
        return Ok(Some(Trigger::Requested));
    }
    let rotation = &cp.spec.identity.rotation;
    let due = identity::validity_of(&active.cert_pem, "trust anchor")?
        .due(rotation.renew_at_percent, now);
    Ok(
        ((rotation.automatic_trust_anchor_rotation && due) || issuer_due_without_key)
            .then_some(Trigger::Scheduled),
    )
}

/// The managed anchors' Secret in Keelson's namespace `own`, moved there
/// first from the control plane's namespace where an older Keelson kept
/// it: created here from the old one's data, then the old one deleted, so
/// a crash at any point leaves one readable copy (and the next reconcile
/// finishes the move).
async fn moved_anchor(
    own: &Api<Secret>,
    control_plane: &Api<Secret>,
    cp: &ControlPlane,
    ns: &str,
) -> Result<Option<Secret>, ReconcileError> {
    let name = anchor_secret(&cp.name_any());
    let read = |api: &Api<Secret>, name: &str| {
        let (api, name) = (api.clone(), name.to_owned());
        async move {
            api.get_opt(&name)
                .await
                .map_err(|e| ReconcileError::kube(format!("reading Secret {name}"), e))
        }
    };
    let current = read(own, &name).await?;
    let Some(legacy) = read(control_plane, ANCHOR_SECRET).await? else {
        return Ok(current);
    };
    let current = match current {
        Some(current) => current,
        None => {
            if stored_anchors(&legacy).is_none() {
                return Err(ReconcileError::AnchorUnreadable {
                    secret: format!("{ns}/{ANCHOR_SECRET}"),
                });
            }
            let data: Vec<(String, String)> = legacy
                .data
                .iter()
                .flatten()
                .filter_map(|(k, v)| Some((k.clone(), String::from_utf8(v.0.clone()).ok()?)))
                .collect();
            let data: Vec<(&str, &str)> =
                data.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            match create_secret(own, cp, &name, &data).await? {
                Some(created) if stored_anchors(&created).is_some() => created,
                _ => {
                    return Err(ReconcileError::AnchorUnreadable {
                        secret: format!("{}/{name}", own.namespace().unwrap_or_default()),
                    });
                }
            }
        }
    };
    tracing::info!(from = ns, secret = %name, "moved the trust anchors' Secret into Keelson's namespace");
    match control_plane
        .delete(ANCHOR_SECRET, &Default::default())
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => {
            return Err(ReconcileError::kube(
                format!("deleting Secret {ns}/{ANCHOR_SECRET} after moving it"),
                e,
            ));
        }
    }
    Ok(Some(current))
}

/// Reads (or makes) what rendering needs. `keelson_namespace` holds the
/// managed trust anchors and a declared next anchor.
pub async fn load(
    client: &Client,
    cp: &ControlPlane,
    keelson_namespace: &str,
    observed: &Observed<'_>,
    now: SystemTime,
) -> Result<Material, ReconcileError> {
    let ns = cp.spec.namespace.as_str();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let own: Api<Secret> = Api::namespaced(client.clone(), keelson_namespace);
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
    let (mut issuer_request, mut issuer_installed) = (None, false);
    let (identity, issuer_renewal, issuer_cert_pem, rotation, declared) = match spec.issuer {
        IssuerMode::Managed => {
            let new_anchor = || {
                identity::trust_anchor(
                    cp.spec.trust_domain(),
                    spec.trust_anchor_lifetime.or_zero(),
                    now,
                )
            };
            let stored = moved_anchor(&own, &secrets, cp, ns).await?;
            let anchor_name = anchor_secret(&cp.name_any());
            let (anchors, secret) = match stored
                .as_ref()
                .and_then(|s| stored_anchors(s).map(|a| (a, s.clone())))
            {
                Some(found) => found,
                None => {
                    let anchor = new_anchor()?;
                    let data = [
                        ("ca.crt", anchor.cert_pem.as_str()),
                        ("ca.key", anchor.key_pem.as_str()),
                    ];
                    let secret = create_secret(&own, cp, &anchor_name, &data).await?;
                    match secret
                        .as_ref()
                        .and_then(|s| stored_anchors(s).map(|a| (a, s.clone())))
                    {
                        Some(found) => found,
                        None => {
                            return Err(ReconcileError::AnchorUnreadable {
                                secret: format!("{keelson_namespace}/{anchor_name}"),
                            });
                        }
                    }
                }
            };
            let status_time = Time(
                k8s_openapi::jiff::Timestamp::try_from(now)
                    .unwrap_or_else(|_| k8s_openapi::jiff::Timestamp::now()),
            );
            let recorded = observed.status.and_then(|s| s.rotation.as_ref());
            let bundle_sha = trust_root_sha256(&anchors.bundle());
            let rolled = observed.control_plane_bundle == Some(bundle_sha.as_str());
            // Listing every meshed pod costs; only a rotation under way
            // whose control plane has rolled needs it.
            let lagging = if rolled
                && (recorded.is_some() || anchors.next.is_some() || anchors.previous.is_some())
            {
                Some(lagging_pods(client, ns, &bundle_sha).await?)
            } else {
                None
            };
            let declared_name = declared_anchor_secret(&cp.name_any());
            let declared_secret = own
                .get_opt(&declared_name)
                .await
                .map_err(|e| ReconcileError::kube(format!("reading Secret {declared_name}"), e))?;
            // Where older Keelsons looked: a key there is within reach of
            // Linkerd's destination controller, so it is refused, saying
            // where it belongs.
            let misplaced = match declared_secret {
                Some(_) => None,
                None => get(DECLARED_TRUST_ANCHOR_SECRET).await?.map(|_| {
                    format!(
                        "Secret {ns}/{DECLARED_TRUST_ANCHOR_SECRET} is readable by Linkerd's destination controller; delete it and declare the anchor in Secret {keelson_namespace}/{declared_name} instead"
                    )
                }),
            };
            let (declared, declared_pair) = declared_anchor(
                declared_secret.as_ref(),
                &anchors,
                recorded.is_some() || anchors.stage().is_some(),
                observed.status.and_then(|s| s.declared_anchor.as_ref()),
                |pair| {
                    identity::check_anchor(
                        pair,
                        ns,
                        cp.spec.trust_domain(),
                        spec.rotation.renew_at_percent,
                        now,
                    )
                },
            );
            let declared = match misplaced {
                Some(message) => Some(DeclaredAnchor {
                    sha256: None,
                    state: DeclaredAnchorState::Rejected,
                    message: Some(message),
                }),
                None => declared,
            };
            // The issuer in use, reused until it is due for renewal or no
            // longer signed by the active anchor (a rotation switched it).
            let stored_issuer = get(ISSUER_SECRET)
                .await?
                .as_ref()
                .and_then(|s| pair(s, "crt.pem", "key.pem"));
            let renew_at = spec.rotation.renew_at_percent;
            let issuer_due_without_key = anchors.imported()
                && stored_issuer.as_ref().is_none_or(|i| {
                    identity::validity_of(&i.cert_pem, "issuer").is_ok_and(|v| v.due(renew_at, now))
                });
            let trigger = match declared_pair {
                Some(_) => Some(Trigger::Declared),
                None => trigger(
                    cp,
                    observed.status,
                    &anchors.active,
                    issuer_due_without_key,
                    now,
                )?,
            };
            let plan = rotation::plan(
                &rotation::Input {
                    rotation: recorded,
                    anchors: &anchors,
                    trigger,
                    control_plane_rolled: rolled,
                    lagging: lagging.as_ref(),
                    now: &status_time,
                },
                || declared_pair.map_or_else(new_anchor, Ok),
            )?;
            let anchors = match &plan.store {
                Some(next) => {
                    store_anchors(&own, secret, next).await?;
                    next.clone()
                }
                None => anchors,
            };
            // The issuer Secret is rendered from this material, so what is
            // stored there is reused until it is due for renewal or no longer
            // signed by the active anchor (a rotation switched it). Linkerd's
            // identity controller reloads the Secret, so renewal is hot.
            let issuer = match stored_issuer {
                Some(issuer) if issuer_usable(&issuer, &anchors.active, renew_at, now) => issuer,
                // Adopted anchors have no key to sign a new issuer with: the
                // adopted one signs on while the rotation it triggered runs.
                Some(issuer)
                    if anchors.imported()
                        && identity::verify_signed_by_bundle(
                            &issuer.cert_pem,
                            &anchors.active.cert_pem,
                        )
                        .is_ok() =>
                {
                    issuer
                }
                _ if anchors.imported() => {
                    return Err(ReconcileError::AdoptedIssuerUnusable {
                        namespace: ns.to_owned(),
                    });
                }
                stale => {
                    let issuer = identity::issuer(
                        &anchors.active,
                        ns,
                        cp.spec.trust_domain(),
                        spec.issuer_lifetime.or_zero(),
                        now,
                    )?;
                    // Never hand the identity controller an issuer that
                    // proxies holding this anchor would reject.
                    identity::verify_signed_by(&issuer.cert_pem, &anchors.active.cert_pem)?;
                    if stale.is_some() {
                        tracing::info!(namespace = ns, "renewing the identity issuer");
                    }
                    issuer
                }
            };
            // An adopted issuer past due waits for the rotation, which
            // polls on its own: no point coming back at once.
            let issuer_renewal =
                Some(identity::validity_of(&issuer.cert_pem, "issuer")?.renew_at(renew_at))
                    .filter(|at| *at > now || !anchors.imported());
            let cert = issuer.cert_pem.clone();
            let material = IdentityMaterial {
                trust_anchors_pem: anchors.bundle(),
                issuer: Some(issuer),
            };
            (material, issuer_renewal, Some(cert), Some(plan), declared)
        }
        IssuerMode::External | IssuerMode::OfflineRoot => {
            let missing = || ReconcileError::ExternalIssuerMissing {
                namespace: ns.to_owned(),
                mode: match spec.issuer {
                    IssuerMode::OfflineRoot => "OfflineRoot",
                    _ => "External",
                },
            };
            let mut secret = get(ISSUER_SECRET).await?.ok_or_else(missing)?;
            let anchors = key(&secret, "ca.crt").ok_or_else(missing)?;
            let mut renewal = None;
            if spec.issuer == IssuerMode::OfflineRoot {
                let cert = key(&secret, "tls.crt").ok_or_else(missing)?;
                // Back when it falls due; once due, the request's Secret
                // is watched, and nothing is gained by looking sooner.
                renewal = Some(
                    identity::validity_of(&cert, "issuer")?
                        .renew_at(spec.rotation.renew_at_percent),
                )
                .filter(|at| *at > now);
                let offline =
                    offline_issuer(&own, &secrets, cp, &mut secret, &anchors, now).await?;
                issuer_installed = offline.installed;
                issuer_request = offline.request;
            }
            // Trimmed as the ConfigMap holds it, like a managed bundle;
            // but an adopted installation's bundle keeps the text it was
            // installed with, which its pods' digests are of.
            let imported = own
                .get_opt(&anchor_secret(&cp.name_any()))
                .await
                .map_err(|e| ReconcileError::kube("reading the adopted trust bundle", e))?
                .and_then(|s| key(&s, IMPORTED_CERT))
                .filter(|pem| pem.trim() == anchors.trim());
            let material = IdentityMaterial {
                trust_anchors_pem: imported.unwrap_or_else(|| anchors.trim().to_owned()),
                issuer: None,
            };
            (material, renewal, key(&secret, "tls.crt"), None, None)
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
        issuer_cert_pem,
        rotation,
        declared,
        issuer_request,
        issuer_installed,
    })
}

/// The Secret in Keelson's namespace holding the next issuer's key and its
/// signing request (`tls.key`, `tls.csr`) for ControlPlane `cp`, where the
/// certificate signed off the cluster is added as `tls.crt`.
pub fn issuer_request_secret(cp: &str) -> String {
    format!("keelson-identity-issuer-request.{cp}")
}

/// What an `OfflineRoot` reconcile did about the next issuer.
struct Offline {
    /// The request waiting to be signed, as status shows it.
    request: Option<IssuerRequest>,
    installed: bool,
}

/// An `OfflineRoot` issuer's renewal, one step per reconcile: a signed
/// certificate found in the request is checked and, if it is good, written
/// to `issuer` (the identity controller reloads it; the bundle does not
/// change, so no pod restarts) and the request deleted; otherwise, once the
/// issuer in use is due, a request is made. The new key stays in Keelson's
/// namespace until its certificate is installed.
async fn offline_issuer(
    own: &Api<Secret>,
    secrets: &Api<Secret>,
    cp: &ControlPlane,
    issuer: &mut Secret,
    bundle: &str,
    now: SystemTime,
) -> Result<Offline, ReconcileError> {
    let spec = &cp.spec.identity;
    let ns = cp.spec.namespace.as_str();
    let name = issuer_request_secret(&cp.name_any());
    let place = format!("{}/{name}", own.namespace().unwrap_or_default());
    let read = |e| ReconcileError::kube(format!("reading Secret {place}"), e);
    let pending = |request: &Secret, rejected: Option<String>| {
        key(request, "tls.csr").map(|csr| IssuerRequest {
            secret: place.clone(),
            sha256: crate::render::proxy::sha256_hex(csr.as_bytes()),
            rejected,
        })
    };
    let whole = |r: &Secret| key(r, "tls.key").zip(key(r, "tls.csr")).is_some();
    let stored = match own.get_opt(&name).await.map_err(read)? {
        Some(request) if whole(&request) => Some(request),
        // Not one Keelson made whole: made anew below.
        Some(_) => {
            own.delete(&name, &Default::default())
                .await
                .map_err(|e| ReconcileError::kube(format!("deleting Secret {place}"), e))?;
            None
        }
        None => None,
    };
    if let Some(request) = &stored {
        let key_pem = key(request, "tls.key").unwrap_or_default();
        let Some(cert) = key(request, "tls.crt") else {
            return Ok(Offline {
                request: pending(request, None),
                installed: false,
            });
        };
        if let Err(e) = identity::check_signed_issuer(
            &cert,
            &key_pem,
            bundle,
            ns,
            cp.spec.trust_domain(),
            spec.rotation.renew_at_percent,
            now,
        ) {
            return Ok(Offline {
                request: pending(request, Some(e.to_string())),
                installed: false,
            });
        }
        let mut data = issuer.data.clone().unwrap_or_default();
        data.insert("tls.crt".into(), ByteString(cert.into_bytes()));
        data.insert("tls.key".into(), ByteString(key_pem.into_bytes()));
        issuer.data = Some(data);
        issuer.metadata.managed_fields = None;
        *issuer = secrets
            .replace(ISSUER_SECRET, &PostParams::default(), issuer)
            .await
            .map_err(|e| {
                ReconcileError::kube(
                    format!("installing the signed issuer in Secret {ns}/{ISSUER_SECRET}"),
                    e,
                )
            })?;
        match own.delete(&name, &Default::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(ReconcileError::kube(format!("deleting Secret {place}"), e)),
        }
        tracing::info!(
            namespace = ns,
            "installed the issuer signed off the cluster"
        );
        return Ok(Offline {
            request: None,
            installed: true,
        });
    }
    let cert = key(issuer, "tls.crt").unwrap_or_default();
    if !identity::validity_of(&cert, "issuer")?.due(spec.rotation.renew_at_percent, now) {
        return Ok(Offline {
            request: None,
            installed: false,
        });
    }
    let made = identity::issuer_request(ns, cp.spec.trust_domain())?;
    let data = [
        ("tls.key", made.key_pem.as_str()),
        ("tls.csr", made.csr_pem.as_str()),
    ];
    let request = create_secret(own, cp, &name, &data).await?;
    Ok(Offline {
        request: request.as_ref().and_then(|r| pending(r, None)),
        installed: false,
    })
}

/// Stores a rotation phase's anchors in one write, only over the Secret as
/// it was read: two writers never interleave phases.
async fn store_anchors(
    secrets: &Api<Secret>,
    mut secret: Secret,
    anchors: &Anchors,
) -> Result<(), ReconcileError> {
    let mut data = if anchors.imported() {
        vec![(IMPORTED_CERT, anchors.active.cert_pem.as_str())]
    } else {
        vec![
            ("ca.crt", anchors.active.cert_pem.as_str()),
            ("ca.key", anchors.active.key_pem.as_str()),
        ]
    };
    if let Some(next) = &anchors.next {
        data.push((NEXT_CERT, &next.cert_pem));
        data.push((NEXT_KEY, &next.key_pem));
    }
    if let Some(previous) = &anchors.previous {
        data.push((PREVIOUS_CERT, previous));
    }
    secret.data = Some(
        data.into_iter()
            .map(|(k, v)| (k.to_owned(), ByteString(v.as_bytes().to_vec())))
            .collect(),
    );
    secret.metadata.managed_fields = None;
    let name = secret.name_any();
    secrets
        .replace(&name, &PostParams::default(), &secret)
        .await
        .map_err(|e| {
            ReconcileError::kube(format!("storing the trust anchors in Secret {name}"), e)
        })?;
    Ok(())
}

/// How many live pods meshed by the control plane in `namespace` (the
/// label Linkerd's injector sets) do not carry the bundle `sha256`, with a
/// few names. Pods that finished hold no connections.
async fn lagging_pods(
    client: &Client,
    namespace: &str,
    sha256: &str,
) -> Result<Lagging, ReconcileError> {
    const EXAMPLES: usize = 5;
    let pods: Api<Pod> = Api::all(client.clone());
    let params = ListParams::default()
        .fields("status.phase!=Succeeded,status.phase!=Failed")
        .labels(&format!("{CONTROL_PLANE_NS}={namespace}"))
        .limit(500);
    let mut lagging = Lagging::default();
    let mut continue_token: Option<String> = None;
    loop {
        let params = match &continue_token {
            Some(token) => params.clone().continue_token(token),
            None => params.clone(),
        };
        let page = pods
            .list_metadata(&params)
            .await
            .map_err(|e| ReconcileError::kube("listing meshed pods", e))?;
        for pod in &page.items {
            let carried = pod.annotations().get(TRUST_ROOT_SHA256);
            if carried.is_some_and(|c| c != sha256) {
                lagging.count += 1;
                if lagging.examples.len() < EXAMPLES {
                    lagging.examples.push(format!(
                        "{}/{}",
                        pod.namespace().unwrap_or_default(),
                        pod.name_any()
                    ));
                }
            }
        }
        continue_token = page.metadata.continue_.filter(|t| !t.is_empty());
        if continue_token.is_none() {
            return Ok(lagging);
        }
    }
}

/// Creates a Secret that must not be overwritten once it exists. Returns the
/// stored Secret: this one, or another writer's that came first, so both
/// agree.
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
        Ok(created) => Ok(Some(created)),
        Err(kube::Error::Api(s)) if s.code == 409 => secrets
            .get_opt(name)
            .await
            .map_err(|e| ReconcileError::kube(format!("reading Secret {name}"), e)),
        Err(e) => Err(ReconcileError::kube(format!("creating Secret {name}"), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::IdentityError;

    fn anchor() -> TlsPair {
        let year = Duration::from_secs(365 * 86400);
        identity::trust_anchor("cluster.local", year, SystemTime::now()).unwrap()
    }

    fn secret(data: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                data.iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        }
    }

    fn tls(pair: &TlsPair) -> Secret {
        secret(&[("tls.crt", &pair.cert_pem), ("tls.key", &pair.key_pem)])
    }

    fn alone(active: &TlsPair) -> Anchors {
        Anchors {
            active: active.clone(),
            next: None,
            previous: None,
        }
    }

    fn state(judged: &(Option<DeclaredAnchor>, Option<TlsPair>)) -> DeclaredAnchorState {
        judged.0.as_ref().unwrap().state
    }

    fn unchecked(_: &TlsPair) -> Result<(), IdentityError> {
        panic!("a settled anchor is not checked again")
    }

    #[test]
    fn a_valid_declared_anchor_starts_a_rotation_unless_one_is_under_way() {
        let (active, declared) = (anchor(), anchor());
        let anchors = alone(&active);
        let judged = declared_anchor(Some(&tls(&declared)), &anchors, false, None, |_| Ok(()));
        assert_eq!(state(&judged), DeclaredAnchorState::Adopted);
        assert_eq!(judged.1, Some(declared.clone()));

        let judged = declared_anchor(Some(&tls(&declared)), &anchors, true, None, |_| Ok(()));
        assert_eq!(state(&judged), DeclaredAnchorState::Pending);
        assert_eq!(judged.1, None);

        assert_eq!(
            declared_anchor(None, &anchors, false, None, unchecked),
            (None, None)
        );
    }

    #[test]
    fn an_anchor_in_use_or_adopted_before_never_starts_another_rotation() {
        let (active, declared) = (anchor(), anchor());
        // Mid-rotation to it, after it, and after a later rotation away
        // from it (status remembers it was adopted).
        let stages = [
            Anchors {
                active: active.clone(),
                next: Some(declared.clone()),
                previous: None,
            },
            Anchors {
                active: declared.clone(),
                next: None,
                previous: Some(active.cert_pem.clone()),
            },
            alone(&declared),
        ];
        for anchors in &stages {
            let judged = declared_anchor(Some(&tls(&declared)), anchors, false, None, unchecked);
            assert_eq!(state(&judged), DeclaredAnchorState::Adopted);
            assert_eq!(judged.1, None);
        }
        let sha = identity::fingerprint(&declared.cert_pem, "anchor").unwrap();
        let last = DeclaredAnchor {
            sha256: Some(sha),
            state: DeclaredAnchorState::Adopted,
            message: None,
        };
        let later = alone(&anchor());
        let judged = declared_anchor(Some(&tls(&declared)), &later, false, Some(&last), unchecked);
        assert_eq!(judged, (Some(last), None));
    }

    #[test]
    fn a_bad_declaration_is_rejected_with_the_reason_and_changes_nothing() {
        let anchors = alone(&anchor());
        let declared = anchor();
        let no_key = secret(&[("tls.crt", &declared.cert_pem)]);
        let judged = declared_anchor(Some(&no_key), &anchors, false, None, unchecked);
        assert_eq!(state(&judged), DeclaredAnchorState::Rejected);
        assert!(judged.0.unwrap().message.unwrap().contains("tls.key"));

        let junk = secret(&[("tls.crt", "junk"), ("tls.key", "junk")]);
        let judged = declared_anchor(Some(&junk), &anchors, false, None, unchecked);
        assert_eq!(judged.1, None);
        assert_eq!(judged.0.unwrap().sha256, None);

        let judged = declared_anchor(Some(&tls(&declared)), &anchors, false, None, |_| {
            Err(IdentityError::UnusableAnchor("tls.crt is not a CA".into()))
        });
        let status = judged.0.unwrap();
        assert_eq!(status.state, DeclaredAnchorState::Rejected);
        assert!(status.message.unwrap().contains("tls.crt is not a CA"));
        assert_eq!(judged.1, None);
    }
}
