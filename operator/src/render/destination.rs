//! The destination component: one pod running the destination service, the
//! ServiceProfile validator and the policy controller behind one proxy.

use super::Context;
use super::proxy::{self, ControlPlaneProxy, OPAQUE_PORTS};
use super::workload::{self, Controller, Workload};
use crate::catalog::Feature;
use serde_json::{Value, json};

pub(super) fn workload(ctx: &Context<'_>) -> Vec<Value> {
    let release = ctx.release;
    let controller = release.images.controller.as_str();
    let td = ctx.trust_domain();
    let networks = ctx.spec.cluster_networks.join(",");

    let mut dst_args = vec![
        "destination".to_string(),
        "-addr=:8086".into(),
        format!("-controller-namespace={}", ctx.ns()),
    ];
    if release.has(Feature::OutboundTransportModeArg) {
        dst_args.push("-outbound-transport-mode=transport-header".into());
    }
    dst_args.extend([
        "-enable-h2-upgrade=true".into(),
        "-log-level=info".into(),
        "-log-format=plain".into(),
        "-enable-endpoint-slices=true".into(),
        format!("-cluster-domain={}", ctx.cluster_domain()),
        format!("-identity-trust-domain={td}"),
        format!("-default-opaque-ports={OPAQUE_PORTS}"),
        "-enable-ipv6=false".into(),
        "-enable-pprof=false".into(),
        r#"--meshed-http2-client-params={"keep_alive":{"interval":{"seconds":10},"timeout":{"seconds":3},"while_idle":true}}"#.into(),
    ]);
    let (liveness, readiness) = workload::admin_probes(9996, "/ping");
    let destination = workload::controller_container(Controller {
        name: "destination",
        image: controller,
        command: None,
        args: dst_args,
        env: Vec::new(),
        ports: vec![
            (ctx.port_name("grpc", "dest-grpc"), 8086),
            (ctx.port_name("admin-http", "dest-admin"), 9996),
        ],
        liveness,
        readiness,
        resources: ctx.controller_resources("50Mi"),
        mounts: vec![proxy::kube_api_mount()],
    });

    let (liveness, readiness) = workload::admin_probes(9997, "/ping");
    let sp_validator = workload::controller_container(Controller {
        name: "sp-validator",
        image: controller,
        command: None,
        args: [
            "sp-validator",
            "-log-level=info",
            "-log-format=plain",
            "-enable-pprof=false",
        ]
        .map(String::from)
        .to_vec(),
        env: Vec::new(),
        ports: vec![
            ("sp-validator".into(), 8443),
            (ctx.port_name("admin-http", "spval-admin"), 9997),
        ],
        liveness,
        readiness,
        resources: ctx.controller_resources("50Mi"),
        mounts: vec![
            json!({"mountPath": "/var/run/linkerd/tls", "name": "sp-tls", "readOnly": true}),
            proxy::kube_api_mount(),
        ],
    });

    // Until 2.19 the policy controller ships as its own image; from 2.19 it
    // is a binary in the controller image.
    let (policy_image, policy_command) = match &release.images.policy_controller {
        Some(image) => (image.as_str(), None),
        None => (controller, Some("/linkerd-policy-controller")),
    };
    let admin_port = ctx.port_name("admin-http", "policy-admin");
    let (liveness, readiness) = workload::admin_probes(admin_port.as_str(), "/live");
    let policy = workload::controller_container(Controller {
        name: "policy",
        image: policy_image,
        command: policy_command,
        args: vec![
            "--admin-addr=0.0.0.0:9990".into(),
            format!("--control-plane-namespace={}", ctx.ns()),
            "--grpc-addr=0.0.0.0:8090".into(),
            "--server-addr=0.0.0.0:9443".into(),
            "--server-tls-key=/var/run/linkerd/tls/tls.key".into(),
            "--server-tls-certs=/var/run/linkerd/tls/tls.crt".into(),
            format!("--cluster-networks={networks}"),
            format!("--identity-domain={td}"),
            format!("--cluster-domain={}", ctx.cluster_domain()),
            format!("--default-policy={}", default_policy(ctx)),
            "--log-level=info".into(),
            "--log-format=plain".into(),
            format!("--default-opaque-ports={OPAQUE_PORTS}"),
            "--global-egress-network-namespace=linkerd-egress".into(),
            "--probe-networks=0.0.0.0/0,::/0".into(),
        ],
        env: Vec::new(),
        ports: vec![
            (ctx.port_name("grpc", "policy-grpc"), 8090),
            (admin_port.clone(), 9990),
            ("policy-https".into(), 9443),
        ],
        liveness,
        readiness,
        resources: None,
        mounts: vec![
            json!({"mountPath": "/var/run/linkerd/tls", "name": "policy-tls", "readOnly": true}),
            proxy::kube_api_mount(),
        ],
    });

    let native = ctx.native_sidecar();
    let proxy = proxy::container(
        ctx,
        &ControlPlaneProxy {
            inbound_ports: "8086,8090,8443,9443,9990,9996,9997",
            require_tls_ports: None,
            await_ready: ctx.spec.proxy.r#await,
            native_sidecar: native,
            identity_addr: ctx.svc_addr("linkerd-identity-headless", 8080),
            destination_addr: "localhost.:8086".into(),
            policy_addr: "localhost.:8090".into(),
        },
    );

    // Restart the pod when its webhook certificates change (Linkerd's chart
    // does the same with a checksum of its RBAC template).
    let w = ctx.webhooks;
    let checksum = proxy::sha256_hex(
        [&w.sp_validator.cert_pem, &w.policy_validator.cert_pem]
            .map(String::as_str)
            .concat()
            .as_bytes(),
    );
    // A native sidecar goes among the init containers, after linkerd-init.
    let (containers, native_proxy) = if native {
        (vec![destination, sp_validator, policy], Some(proxy))
    } else {
        (vec![proxy, destination, sp_validator, policy], None)
    };
    workload::objects(
        ctx,
        Workload {
            component: "destination",
            containers,
            native_proxy,
            volumes: vec![
                json!({"name": "sp-tls", "secret": {"secretName": "linkerd-sp-validator-k8s-tls"}}),
                json!({"name": "policy-tls", "secret": {"secretName": "linkerd-policy-validator-k8s-tls"}}),
            ],
            leading_annotations: vec![("checksum/config", checksum)],
        },
        "linkerd-dst",
    )
}

/// The cluster-wide default policy, as the chart passes `proxy.defaultInboundPolicy`.
fn default_policy(ctx: &Context<'_>) -> String {
    serde_json::to_value(ctx.spec.proxy.default_inbound_policy)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .expect("policies serialize as strings")
}
