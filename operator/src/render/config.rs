//! `linkerd-config`: the chart's values as Linkerd's CLI and extensions read
//! them (`linkerd check`, `linkerd viz install`), private keys left out.

use super::proxy::{OPAQUE_PORTS, PROXY_UID};
use super::{Context, Scope, object};
use keelson_crds::controlplane::{IssuerMode, NativeSidecar};
use serde_json::{Value, json};

/// `linkerd-config`'s other key; the same literal in every supported release.
const CRDS_CHART_VERSION: &str = "linkerd-crds-1.0.0-edge";

pub(super) fn objects(ctx: &Context<'_>) -> Vec<Value> {
    // serde_json sorts keys, as the chart's `toYaml` does.
    let values = serde_yaml::to_string(&values(ctx)).expect("JSON values serialize as YAML");
    vec![object(
        "v1",
        "ConfigMap",
        ctx.meta(
            "linkerd-config",
            Scope::Namespaced { created_by: true },
            Some("controller"),
        ),
        json!({"data": {
            "linkerd-crds-chart-version": CRDS_CHART_VERSION,
            "values": values,
        }}),
    )]
}

/// An image reference split as the chart's values hold it.
fn image(reference: &str) -> Value {
    let (name, version) = reference.rsplit_once(':').unwrap_or((reference, ""));
    json!({"name": name, "version": version})
}

pub(super) fn values(ctx: &Context<'_>) -> Value {
    let spec = ctx.spec;
    let release = ctx.release;
    let identity = &spec.identity;
    let controller = image(&release.images.controller);
    let proxy_init = release
        .images
        .proxy_init
        .as_deref()
        .unwrap_or(&release.images.proxy);
    let mut issuer = json!({
        "clockSkewAllowance": super::go_duration(identity.clock_skew_allowance.or_zero()),
        "issuanceLifetime": super::go_duration(identity.issuance_lifetime.or_zero()),
        "scheme": match identity.issuer {
            IssuerMode::Managed => "linkerd.io/tls",
            IssuerMode::External | IssuerMode::OfflineRoot => "kubernetes.io/tls",
        },
    });
    if let Some(tls) = &ctx.identity.issuer {
        issuer["tls"] = json!({"crtPEM": tls.cert_pem.trim()});
    }
    let mut v = json!({
        "cliVersion": "",
        "clusterDomain": ctx.cluster_domain(),
        "clusterNetworks": spec.cluster_networks.join(","),
        "cniEnabled": false,
        "controllerImage": controller["name"],
        "controllerLogFormat": "plain",
        "controllerLogLevel": "info",
        "controllerReplicas": if ctx.ha() { 3 } else { 1 },
        "controllerUID": 2103,
        "disableIPv6": true,
        "enableEndpointSlices": true,
        "enablePodAntiAffinity": ctx.ha(),
        "enablePodDisruptionBudget": ctx.ha(),
        "highAvailability": ctx.ha(),
        "identity": {
            "externalCA": false,
            "issuer": issuer,
            "serviceAccountTokenProjection": true,
        },
        "identityTrustAnchorsPEM": ctx.identity.trust_anchors_pem,
        "identityTrustDomain": ctx.trust_domain(),
        "linkerdVersion": ctx.version(),
        "proxy": {
            "await": spec.proxy.r#await,
            "defaultInboundPolicy": spec.proxy.default_inbound_policy,
            "image": image(&release.images.proxy),
            "logFormat": spec.proxy.log_format,
            "logLevel": spec.proxy.log_level,
            "nativeSidecar": spec.proxy.native_sidecar == NativeSidecar::Enabled,
            "opaquePorts": OPAQUE_PORTS,
            "ports": {"admin": 4191, "control": 4190, "inbound": 4143, "outbound": 4140},
            "resources": spec.proxy.resources,
            "uid": PROXY_UID,
        },
        "proxyInit": {
            "ignoreInboundPorts": "4567,4568",
            "ignoreOutboundPorts": "4567,4568",
            "image": image(proxy_init),
            "iptablesMode": release.iptables_mode,
            "kubeAPIServerPorts": "443,6443",
        },
        "webhookFailurePolicy": ctx.failure_policy(),
    });
    if let Some(policy) = &release.images.policy_controller {
        v["policyController"] = json!({"image": image(policy)});
    }
    v
}
