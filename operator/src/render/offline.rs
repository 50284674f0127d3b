//! Rendering without a cluster (`keelson render`, golden files): identity
//! material is generated inside the cluster, so offline output carries
//! placeholders instead. It never contains key material, and it does not
//! change from run to run, so it diffs cleanly in code review.

use super::{IdentityMaterial, Rendered, TlsPair, WebhookTls};
use keelson_crds::controlplane::IssuerMode;

fn placeholder(kind: &str, what: &str) -> String {
    format!(
        "-----BEGIN {kind}-----\nkeelson render: {what} is generated in the cluster\n-----END {kind}-----\n"
    )
}

fn pair(what: &str) -> TlsPair {
    TlsPair {
        cert_pem: placeholder("CERTIFICATE", &format!("the {what} certificate")),
        key_pem: placeholder("PRIVATE KEY", &format!("the {what} key")),
    }
}

/// Identity material standing in for what Keelson generates in the cluster
/// (no issuer in external mode, where another tool provides it).
pub fn identity(mode: IssuerMode) -> IdentityMaterial {
    IdentityMaterial {
        trust_anchors_pem: placeholder("CERTIFICATE", "the trust anchor"),
        issuer: (mode == IssuerMode::Managed).then(|| pair("issuer")),
    }
}

/// Webhook serving certificates standing in for the generated ones.
pub fn webhooks() -> WebhookTls {
    WebhookTls {
        sp_validator: pair("sp-validator"),
        policy_validator: pair("policy-validator"),
    }
}

/// Rendered objects as one YAML stream, each document headed by its stage.
pub fn to_yaml(objects: &[Rendered]) -> String {
    let mut out = String::new();
    for r in objects {
        out.push_str(&format!("---\n# stage: {:?}\n", r.stage));
        out.push_str(&yaml_serde::to_string(&r.object).expect("JSON values serialize as YAML"));
    }
    out
}

/// Why a ControlPlane cannot be rendered.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    // The message carries the cause; it is not repeated as a source.
    #[error("spec.version: {0}")]
    Version(crate::catalog::CatalogError),
}

/// Renders a ControlPlane as Keelson would apply it to a cluster of the
/// given Kubernetes version (default: the release's floor).
pub fn render(
    cp: &keelson_crds::ControlPlane,
    kubernetes: Option<crate::catalog::KubeVersion>,
) -> Result<Vec<Rendered>, OfflineError> {
    Ok(render_counting(cp, kubernetes)?.0)
}

/// `render`, and how many validation facts of the CRDs it left out for that
/// Kubernetes version (`status.omittedCrdFacts` in a cluster).
pub fn render_counting(
    cp: &keelson_crds::ControlPlane,
    kubernetes: Option<crate::catalog::KubeVersion>,
) -> Result<(Vec<Rendered>, usize), OfflineError> {
    with_context(cp, kubernetes, None, super::render_counting)
}

/// The `linkerd-config` values Keelson renders for `cp`, with the trust
/// anchors `anchors_pem` (what `keelson adopt` compares a running
/// installation's values with).
pub fn config_values(
    cp: &keelson_crds::ControlPlane,
    anchors_pem: &str,
) -> Result<serde_json::Value, OfflineError> {
    with_context(cp, None, Some(anchors_pem), super::config::values)
}

/// Calls `f` with the context of `cp` at `kubernetes` (default: the
/// release's floor), with placeholder material, or the trust anchors given.
fn with_context<T>(
    cp: &keelson_crds::ControlPlane,
    kubernetes: Option<crate::catalog::KubeVersion>,
    anchors_pem: Option<&str>,
    f: impl FnOnce(&super::Context<'_>) -> T,
) -> Result<T, OfflineError> {
    let release = crate::catalog::find(&cp.spec.version).map_err(OfflineError::Version)?;
    let (mut identity, webhooks) = (identity(cp.spec.identity.issuer), webhooks());
    if let Some(anchors) = anchors_pem {
        identity.trust_anchors_pem = anchors.to_owned();
    }
    Ok(f(&super::Context {
        name: cp.metadata.name.as_deref().unwrap_or("linkerd"),
        spec: &cp.spec,
        release,
        kubernetes: kubernetes.unwrap_or(release.kubernetes_floor),
        identity: &identity,
        webhooks: &webhooks,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::KubeVersion;

    #[test]
    fn the_facts_left_out_follow_the_kubernetes_version() {
        let cp: keelson_crds::ControlPlane = yaml_serde::from_str(
            "apiVersion: keelson.dev/v1alpha1\nkind: ControlPlane\nmetadata: {name: linkerd}\nspec: {version: edge-25.4.4}\n",
        )
        .unwrap();
        let at = |minor| Some(KubeVersion { major: 1, minor });
        // The release's floor (1.23) takes no CEL rule; 1.20 no empty default
        // either; 1.25 on takes everything.
        let omitted = |kubernetes| render_counting(&cp, kubernetes).unwrap().1;
        assert_eq!(omitted(None), 212);
        assert_eq!(omitted(at(20)), 212 + 16);
        assert_eq!(omitted(at(25)), 0);
    }
}
