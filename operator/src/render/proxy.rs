//! The proxy and `linkerd-init` containers that Linkerd's chart gives every
//! control-plane pod, and the pod-level pieces they need.

use super::Context;
use crate::catalog::Feature;
use keelson_crds::controlplane::ProxyResources;
use serde_json::{Value, json};

pub(super) const PROXY_UID: u16 = 2102;
const INBOUND_PORT: u16 = 4143;
const OUTBOUND_PORT: u16 = 4140;
const ADMIN_PORT: u16 = 4191;
const CONTROL_PORT: u16 = 4190;
/// Linkerd's default opaque ports (`proxy.opaquePorts`).
pub(super) const OPAQUE_PORTS: &str = "25,587,3306,4444,5432,6379,9300,11211";
/// Kubernetes API server ports; control-plane pods reach the API directly.
const KUBE_API_PORTS: &str = "443,6443";
const IDENTITY_DIR: &str = "/var/run/linkerd/identity/end-entity";
const TOKEN_DIR: &str = "/var/run/secrets/tokens";

/// What differs between the proxies of the control-plane components.
pub(super) struct ControlPlaneProxy<'a> {
    /// Ports of the pod's own containers, comma-separated.
    pub inbound_ports: &'a str,
    /// Inbound ports that only accept TLS (identity's gRPC port).
    pub require_tls_ports: Option<&'a str>,
    /// Whether the application containers wait for the proxy (`linkerd-await`).
    pub await_ready: bool,
    /// Where this pod reaches identity, destination and policy: over
    /// localhost for the component's own service, by DNS for the others.
    pub identity_addr: String,
    pub destination_addr: String,
    pub policy_addr: String,
}

impl Context<'_> {
    /// A control-plane Service address as the proxy dials it.
    pub(super) fn svc_addr(&self, service: &str, port: u16) -> String {
        format!(
            "{service}.{}.svc.{}.:{port}",
            self.ns(),
            self.cluster_domain()
        )
    }

    /// The mesh identity of a control-plane ServiceAccount.
    pub(super) fn identity_name(&self, service_account: &str) -> String {
        format!(
            "{service_account}.{ns}.serviceaccount.identity.{ns}.{td}",
            ns = self.ns(),
            td = self.trust_domain()
        )
    }

    /// Proxy (and proxy-init) resources: the spec's, over Linkerd's HA defaults.
    pub(super) fn proxy_resources(&self) -> Option<Value> {
        let mut res = self.spec.proxy.resources.clone();
        if self.ha() {
            res.cpu.request.get_or_insert_with(|| "100m".into());
            res.memory.request.get_or_insert_with(|| "20Mi".into());
            res.memory.limit.get_or_insert_with(|| "250Mi".into());
        }
        resources(&res)
    }
}

/// Container `resources` from Linkerd's request/limit shape; `None` when empty.
pub(super) fn resources(r: &ProxyResources) -> Option<Value> {
    let mut requests = serde_json::Map::new();
    let mut limits = serde_json::Map::new();
    for (name, bounds) in [
        ("cpu", &r.cpu),
        ("memory", &r.memory),
        ("ephemeral-storage", &r.ephemeral_storage),
    ] {
        if let Some(q) = &bounds.request {
            requests.insert(name.into(), q.clone().into());
        }
        if let Some(q) = &bounds.limit {
            limits.insert(name.into(), q.clone().into());
        }
    }
    let mut out = serde_json::Map::new();
    if !limits.is_empty() {
        out.insert("limits".into(), limits.into());
    }
    if !requests.is_empty() {
        out.insert("requests".into(), requests.into());
    }
    (!out.is_empty()).then_some(out.into())
}

fn env(name: &str, value: impl Into<Value>) -> Value {
    json!({"name": name, "value": value.into()})
}

fn field_env(name: &str, path: &str) -> Value {
    json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}})
}

fn http_get(path: &str, port: impl Into<Value>) -> Value {
    json!({"path": path, "port": port.into()})
}

/// The `linkerd-proxy` container, with its environment in the chart's order.
pub(super) fn container(ctx: &Context<'_>, p: &ControlPlaneProxy<'_>) -> Value {
    let release = ctx.release;
    let networks = ctx.spec.cluster_networks.join(",");
    let mut env_vars = vec![
        field_env("_pod_name", "metadata.name"),
        field_env("_pod_ns", "metadata.namespace"),
    ];
    if release.has(Feature::ProxyPodMetadataEnv) {
        env_vars.push(field_env("_pod_uid", "metadata.uid"));
    }
    if release.has(Feature::ProxyPodIpEnv) {
        env_vars.push(field_env("_pod_ip", "status.podIP"));
    }
    env_vars.push(field_env("_pod_nodeName", "spec.nodeName"));
    if release.has(Feature::ProxyPodMetadataEnv) {
        env_vars.push(env("_pod_containerName", "linkerd-proxy"));
    }
    if release.has(Feature::ProxyCoresEnv) {
        env_vars.push(env("LINKERD2_PROXY_CORES", "1"));
        env_vars.push(env("LINKERD2_PROXY_CORES_MIN", "1"));
    }
    if let Some(ports) = p.require_tls_ports {
        env_vars.push(env("LINKERD2_PROXY_INBOUND_PORTS_REQUIRE_TLS", ports));
    }
    env_vars.extend([
        env("LINKERD2_PROXY_SHUTDOWN_ENDPOINT_ENABLED", "false"),
        // Headers and request bodies stay out of the logs, as in Linkerd.
        env(
            "LINKERD2_PROXY_LOG",
            format!(
                "{},[{{headers}}]=off,[{{request}}]=off",
                ctx.spec.proxy.log_level
            ),
        ),
        env("LINKERD2_PROXY_LOG_FORMAT", log_format(ctx)),
        env(
            "LINKERD2_PROXY_DESTINATION_SVC_ADDR",
            p.destination_addr.as_str(),
        ),
        env(
            "LINKERD2_PROXY_DESTINATION_PROFILE_NETWORKS",
            networks.as_str(),
        ),
        env("LINKERD2_PROXY_POLICY_SVC_ADDR", p.policy_addr.as_str()),
        env(
            "LINKERD2_PROXY_POLICY_WORKLOAD",
            "{\"ns\":\"$(_pod_ns)\", \"pod\":\"$(_pod_name)\"}\n",
        ),
        // Control-plane pods always admit unauthenticated traffic: the API
        // server calls their webhooks without mesh identity.
        env(
            "LINKERD2_PROXY_INBOUND_DEFAULT_POLICY",
            "all-unauthenticated",
        ),
        env("LINKERD2_PROXY_POLICY_CLUSTER_NETWORKS", networks.as_str()),
        env("LINKERD2_PROXY_CONTROL_STREAM_INITIAL_TIMEOUT", "3s"),
        env("LINKERD2_PROXY_CONTROL_STREAM_IDLE_TIMEOUT", "5m"),
        env("LINKERD2_PROXY_CONTROL_STREAM_LIFETIME", "1h"),
        env("LINKERD2_PROXY_INBOUND_CONNECT_TIMEOUT", "100ms"),
        env("LINKERD2_PROXY_OUTBOUND_CONNECT_TIMEOUT", "1000ms"),
        env("LINKERD2_PROXY_OUTBOUND_DISCOVERY_IDLE_TIMEOUT", "5s"),
        env("LINKERD2_PROXY_INBOUND_DISCOVERY_IDLE_TIMEOUT", "90s"),
        env(
            "LINKERD2_PROXY_CONTROL_LISTEN_ADDR",
            format!("0.0.0.0:{CONTROL_PORT}"),
        ),
        env(
            "LINKERD2_PROXY_ADMIN_LISTEN_ADDR",
            format!("0.0.0.0:{ADMIN_PORT}"),
        ),
        env(
            "LINKERD2_PROXY_OUTBOUND_LISTEN_ADDR",
            format!("127.0.0.1:{OUTBOUND_PORT}"),
        ),
        env(
            "LINKERD2_PROXY_OUTBOUND_LISTEN_ADDRS",
            format!("127.0.0.1:{OUTBOUND_PORT}"),
        ),
        env(
            "LINKERD2_PROXY_INBOUND_LISTEN_ADDR",
            format!("0.0.0.0:{INBOUND_PORT}"),
        ),
        field_env("LINKERD2_PROXY_INBOUND_IPS", "status.podIPs"),
        env("LINKERD2_PROXY_INBOUND_PORTS", p.inbound_ports),
        env(
            "LINKERD2_PROXY_DESTINATION_PROFILE_SUFFIXES",
            format!("svc.{}.", ctx.cluster_domain()),
        ),
        env("LINKERD2_PROXY_INBOUND_ACCEPT_KEEPALIVE", "10000ms"),
        env("LINKERD2_PROXY_OUTBOUND_CONNECT_KEEPALIVE", "10000ms"),
        env("LINKERD2_PROXY_INBOUND_ACCEPT_USER_TIMEOUT", "30s"),
        env("LINKERD2_PROXY_OUTBOUND_CONNECT_USER_TIMEOUT", "30s"),
    ]);
    if release.has(Feature::ProxyHostnameLabelsEnv) {
        env_vars.push(env(
            "LINKERD2_PROXY_OUTBOUND_METRICS_HOSTNAME_LABELS",
            "false",
        ));
    }
    for dir in ["INBOUND", "OUTBOUND"] {
        env_vars.push(env(
            &format!("LINKERD2_PROXY_{dir}_SERVER_HTTP2_KEEP_ALIVE_INTERVAL"),
            "10s",
        ));
        env_vars.push(env(
            &format!("LINKERD2_PROXY_{dir}_SERVER_HTTP2_KEEP_ALIVE_TIMEOUT"),
            "3s",
        ));
    }
    env_vars.extend([
        env("LINKERD2_PROXY_INBOUND_PORTS_DISABLE_PROTOCOL_DETECTION", OPAQUE_PORTS),
        env(
            "LINKERD2_PROXY_DESTINATION_CONTEXT",
            "{\"ns\":\"$(_pod_ns)\", \"nodeName\":\"$(_pod_nodeName)\", \"pod\":\"$(_pod_name)\"}\n",
        ),
        field_env("_pod_sa", "spec.serviceAccountName"),
        env("_l5d_ns", ctx.ns()),
        env("_l5d_trustdomain", ctx.trust_domain()),
        env("LINKERD2_PROXY_IDENTITY_DIR", IDENTITY_DIR),
        // Control-plane proxies read the anchors from the ConfigMap, so an
        // anchor rotation reaches them on restart without re-rendering.
        json!({"name": "LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS", "valueFrom": {"configMapKeyRef": {
            "name": "linkerd-identity-trust-roots", "key": "ca-bundle.crt"}}}),
        env(
            "LINKERD2_PROXY_IDENTITY_TOKEN_FILE",
            format!("{TOKEN_DIR}/linkerd-identity-token"),
        ),
        env("LINKERD2_PROXY_IDENTITY_SVC_ADDR", p.identity_addr.as_str()),
        env(
            "LINKERD2_PROXY_IDENTITY_LOCAL_NAME",
            format!(
                "$(_pod_sa).$(_pod_ns).serviceaccount.identity.{}.{}",
                ctx.ns(),
                ctx.trust_domain()
            ),
        ),
        env("LINKERD2_PROXY_IDENTITY_SVC_NAME", ctx.identity_name("linkerd-identity")),
        env("LINKERD2_PROXY_DESTINATION_SVC_NAME", ctx.identity_name("linkerd-destination")),
        env("LINKERD2_PROXY_POLICY_SVC_NAME", ctx.identity_name("linkerd-destination")),
    ]);

    let mut c = json!({
        "env": env_vars,
        "image": release.images.proxy,
        "imagePullPolicy": "IfNotPresent",
        "livenessProbe": {"httpGet": http_get("/live", ADMIN_PORT), "initialDelaySeconds": 10, "timeoutSeconds": 1},
        "name": "linkerd-proxy",
        "ports": [
            {"containerPort": INBOUND_PORT, "name": "linkerd-proxy", "protocol": "TCP"},
            {"containerPort": ADMIN_PORT, "name": "linkerd-admin", "protocol": "TCP"},
        ],
        "readinessProbe": {"httpGet": http_get("/ready", ADMIN_PORT), "initialDelaySeconds": 2, "timeoutSeconds": 1},
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": true,
            "runAsNonRoot": true,
            "runAsUser": PROXY_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [
            {"mountPath": IDENTITY_DIR, "name": "linkerd-identity-end-entity"},
            {"mountPath": TOKEN_DIR, "name": "linkerd-identity-token"},
        ],
    });
    if p.await_ready {
        c["lifecycle"] = json!({"postStart": {"exec": {"command": [
            "/usr/lib/linkerd/linkerd-await", "--timeout=2m", format!("--port={ADMIN_PORT}"),
        ]}}});
    }
    if let Some(r) = ctx.proxy_resources() {
        c["resources"] = r;
    }
    c
}

fn log_format(ctx: &Context<'_>) -> &'static str {
    match ctx.spec.proxy.log_format {
        keelson_crds::controlplane::LogFormat::Plain => "plain",
        keelson_crds::controlplane::LogFormat::Json => "json",
    }
}

/// `linkerd-init`: installs the iptables rules that route the pod's traffic
/// through the proxy. Control-plane pods leave the API server ports alone.
pub(super) fn init_container(ctx: &Context<'_>) -> Value {
    let release = ctx.release;
    let mut args: Vec<String> = Vec::new();
    if release.iptables_mode == "nft" {
        args.extend(
            [
                "--firewall-bin-path",
                "iptables-nft",
                "--firewall-save-bin-path",
                "iptables-nft-save",
            ]
            .map(String::from),
        );
    }
    args.push("--ipv6=false".into());
    for (flag, value) in [
        ("--incoming-proxy-port", INBOUND_PORT.to_string()),
        ("--outgoing-proxy-port", OUTBOUND_PORT.to_string()),
        ("--proxy-uid", PROXY_UID.to_string()),
        (
            "--inbound-ports-to-ignore",
            format!("{CONTROL_PORT},{ADMIN_PORT},4567,4568"),
        ),
        ("--outbound-ports-to-ignore", KUBE_API_PORTS.to_string()),
    ] {
        args.push(flag.into());
        args.push(value);
    }
    let image = release
        .images
        .proxy_init
        .as_deref()
        .unwrap_or(&release.images.proxy);
    let mut c = json!({
        "args": args,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "name": "linkerd-init",
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"]},
            "privileged": false,
            "readOnlyRootFilesystem": true,
            "runAsGroup": 65534,
            "runAsNonRoot": true,
            "runAsUser": 65534,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [{"mountPath": "/run", "name": "linkerd-proxy-init-xtables-lock"}],
    });
    if let Some(r) = ctx.proxy_resources() {
        c["resources"] = r;
    }
    c
}

/// Volumes every control-plane pod has after its component's own: the
/// hand-mounted API token (pods turn off automounting), the iptables lock,
/// and the proxy's identity token and certificate directory.
pub(super) fn pod_volumes() -> Vec<Value> {
    vec![
        json!({"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"items": [{"key": "ca.crt", "path": "ca.crt"}], "name": "kube-root-ca.crt"}},
            {"downwardAPI": {"items": [{"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}, "path": "namespace"}]}},
        ]}}),
        json!({"emptyDir": {}, "name": "linkerd-proxy-init-xtables-lock"}),
        json!({"name": "linkerd-identity-token", "projected": {"sources": [{"serviceAccountToken": {
            "audience": "identity.l5d.io", "expirationSeconds": 86400, "path": "linkerd-identity-token"}}]}}),
        json!({"emptyDir": {"medium": "Memory"}, "name": "linkerd-identity-end-entity"}),
    ]
}

/// Mount of the hand-made API token volume, for containers that talk to the API.
pub(super) fn kube_api_mount() -> Value {
    json!({"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "name": "kube-api-access", "readOnly": true})
}

/// SHA-256 (hex) of the trust bundle exactly as proxies get it, the value of
/// `linkerd.io/trust-root-sha256`.
pub fn trust_root_sha256(anchors_pem: &str) -> String {
    sha256_hex(anchors_pem.as_bytes())
}

pub(super) fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
