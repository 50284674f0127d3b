//! The identity component: the issuer Secret, the trust-roots ConfigMap and
//! the `linkerd-identity` Deployment.

use super::proxy::{self, ControlPlaneProxy};
use super::workload::{self, Controller, Workload};
use super::{Context, Scope, b64, object};
use keelson_crds::controlplane::IssuerMode;
use serde_json::{Value, json};

const GRPC_PORT: u16 = 8080;
const ADMIN_PORT: u16 = 9990;

/// The issuer Secret (managed mode only: an external issuer owns it) and the
/// trust roots every proxy is given.
pub(super) fn base(ctx: &Context<'_>) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some(issuer) = &ctx.identity.issuer {
        out.push(object(
            "v1",
            "Secret",
            ctx.meta(
                "linkerd-identity-issuer",
                Scope::Namespaced { created_by: true },
                Some("identity"),
            ),
            json!({"data": {
                "crt.pem": b64(issuer.cert_pem.trim()),
                "key.pem": b64(issuer.key_pem.trim()),
            }}),
        ));
    }
    let mut roots = object(
        "v1",
        "ConfigMap",
        ctx.meta(
            super::proxy::TRUST_ROOTS,
            Scope::Namespaced { created_by: true },
            Some("identity"),
        ),
        json!({"data": {super::proxy::TRUST_ROOTS_KEY: ctx.identity.trust_anchors_pem.trim()}}),
    );
    // What digests the bundle as `linkerd-config` holds it, for the
    // injector and DataPlanes, which read this ConfigMap.
    roots["metadata"]["annotations"][proxy::TRUST_ROOTS_SHA256] =
        json!(proxy::trust_root_sha256(&ctx.identity.trust_anchors_pem));
    out.push(roots);
    out
}

pub(super) fn workload(ctx: &Context<'_>) -> Vec<Value> {
    let spec = &ctx.spec.identity;
    let scheme = match spec.issuer {
        IssuerMode::Managed => "linkerd.io/tls",
        IssuerMode::External | IssuerMode::OfflineRoot => "kubernetes.io/tls",
    };
    let (liveness, readiness) = workload::admin_probes(ADMIN_PORT, "/ping");
    let identity = workload::controller_container(Controller {
        name: "identity",
        image: &ctx.release.images.controller,
        command: None,
        args: vec![
            "identity".into(),
            "-log-level=info".into(),
            "-log-format=plain".into(),
            format!("-controller-namespace={}", ctx.ns()),
            format!("-identity-trust-domain={}", ctx.trust_domain()),
            format!(
                "-identity-issuance-lifetime={}",
                go_duration(spec.issuance_lifetime.or_zero())
            ),
            format!(
                "-identity-clock-skew-allowance={}",
                go_duration(spec.clock_skew_allowance.or_zero())
            ),
            format!("-identity-scheme={scheme}"),
            "-enable-pprof=false".into(),
            "-kube-apiclient-qps=100".into(),
            "-kube-apiclient-burst=200".into(),
        ],
        // The proxy must not wait for identity: identity is what it waits on.
        env: vec![
            json!({"name": "LINKERD_DISABLED", "value": "linkerd-await cannot block the identity controller"}),
        ],
        ports: vec![
            (ctx.port_name("grpc", "ident-grpc"), GRPC_PORT),
            (ctx.port_name("admin-http", "ident-admin"), ADMIN_PORT),
        ],
        liveness,
        readiness,
        resources: ctx.controller_resources("10Mi"),
        mounts: vec![
            json!({"mountPath": "/var/run/linkerd/identity/issuer", "name": "identity-issuer"}),
            json!({"mountPath": "/var/run/linkerd/identity/trust-roots/", "name": "trust-roots"}),
            proxy::kube_api_mount(),
        ],
    });
    let proxy = proxy::container(
        ctx,
        &ControlPlaneProxy {
            inbound_ports: "8080,9990",
            require_tls_ports: Some("8080"),
            await_ready: false,
            native_sidecar: false,
            identity_addr: format!("localhost.:{GRPC_PORT}"),
            destination_addr: ctx.svc_addr("linkerd-dst-headless", 8086),
            policy_addr: ctx.svc_addr("linkerd-policy", 8090),
        },
    );
    workload::objects(
        ctx,
        Workload {
            component: "identity",
            containers: vec![identity, proxy],
            native_proxy: None,
            volumes: vec![
                json!({"name": "identity-issuer", "secret": {"secretName": "linkerd-identity-issuer"}}),
                json!({"configMap": {"name": "linkerd-identity-trust-roots"}, "name": "trust-roots"}),
            ],
            leading_annotations: Vec::new(),
        },
        "linkerd-identity",
    )
}

/// A duration as Go's `time.Duration.String()` prints it (`24h0m0s`, `20s`,
/// `1.5s`, `300ms`): the identity controller parses its flags with Go.
pub(crate) fn go_duration(d: std::time::Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000_000_000 {
        let (unit, div) = match nanos {
            n if n < 1_000 => ("ns", 1),
            n if n < 1_000_000 => ("µs", 1_000),
            _ => ("ms", 1_000_000),
        };
        return format!("{}{unit}", trim_fraction(nanos, div));
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let frac = trim_fraction(
        u128::from(s) * 1_000_000_000 + u128::from(d.subsec_nanos()),
        1_000_000_000,
    );
    match (h, m) {
        (0, 0) => format!("{frac}s"),
        (0, m) => format!("{m}m{frac}s"),
        (h, m) => format!("{h}h{m}m{frac}s"),
    }
}

/// `value / div` with its fraction, trailing zeros dropped (`1500, 1000` -> `1.5`).
fn trim_fraction(value: u128, div: u128) -> String {
    let (whole, rest) = (value / div, value % div);
    if rest == 0 {
        return whole.to_string();
    }
    let width = div.to_string().len() - 1;
    let frac = format!("{rest:0width$}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::go_duration;
    use crate::render::testutil::{find, test_context};
    use std::time::Duration;

    #[test]
    fn the_trust_domain_defaults_to_the_cluster_domain_as_in_linkerds_chart() {
        for (spec, domain) in [
            (
                "version: edge-25.4.4\nclusterDomain: example.com",
                "example.com",
            ),
            (
                "version: edge-25.4.4\nclusterDomain: example.com\nidentity: {trustDomain: mesh.example.org}",
                "mesh.example.org",
            ),
        ] {
            let ctx = test_context(spec);
            let objects: Vec<_> = crate::render::render(&ctx)
                .into_iter()
                .map(|r| r.object)
                .collect();
            let identity = find(&objects, "Deployment", "linkerd-identity").expect("identity");
            let args = identity["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|c| c["args"].as_array().cloned().unwrap_or_default())
                .collect::<Vec<_>>();
            let flag = format!("-identity-trust-domain={domain}");
            assert!(args.iter().any(|a| a == &flag), "{spec}: {args:?}");
            let config = find(&objects, "ConfigMap", "linkerd-config").expect("linkerd-config");
            let values = config["data"]["values"].as_str().unwrap();
            assert!(
                values.contains(&format!("identityTrustDomain: {domain}")),
                "{spec}: {values}"
            );
        }
    }

    #[test]
    fn durations_print_as_go_does() {
        for (d, want) in [
            (Duration::from_secs(86400), "24h0m0s"),
            (Duration::from_secs(20), "20s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_millis(300), "300ms"),
            (Duration::from_micros(2), "2µs"),
            (Duration::ZERO, "0s"),
        ] {
            assert_eq!(go_duration(d), want, "{d:?}");
        }
    }
}
