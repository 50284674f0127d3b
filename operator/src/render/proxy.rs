//! The proxy and `linkerd-init` containers, from one resolved configuration.
//!
//! [`ProxyValues`] is what Linkerd's chart calls `.Values.proxy` and
//! `.Values.proxyInit` after every override: the control plane derives its
//! pods' values from the ControlPlane spec plus what its components need, the
//! injector derives a workload's from the same spec plus the pod's
//! `config.linkerd.io/*` annotations. [`proxy_container`] and
//! [`init_container_for`] turn either into containers, following
//! `charts/partials/templates/_proxy.tpl` and `_proxy-init.tpl`.

use super::Context;
use crate::catalog::{Feature, Release};
use keelson_crds::ControlPlaneSpec;
use keelson_crds::controlplane::{LogFormat, NativeSidecar, ProxyResources};
use serde_json::{Value, json};

pub(crate) const PROXY_UID: u16 = 2102;
const INBOUND_PORT: u16 = 4143;
const OUTBOUND_PORT: u16 = 4140;
const ADMIN_PORT: u16 = 4191;
const CONTROL_PORT: u16 = 4190;
/// Linkerd's default opaque ports (`proxy.opaquePorts`).
pub(crate) const OPAQUE_PORTS: &str = "25,587,3306,4444,5432,6379,9300,11211";
/// `proxyInit.ignoreInboundPorts` and `ignoreOutboundPorts` defaults.
const INIT_IGNORED_PORTS: &str = "4567,4568";
/// Kubernetes API server ports; control-plane pods reach the API directly.
const KUBE_API_PORTS: &str = "443,6443";
const IDENTITY_DIR: &str = "/var/run/linkerd/identity/end-entity";
const TOKEN_DIR: &str = "/var/run/secrets/tokens";
/// Name and mount path of `linkerd-init`'s iptables lock volume.
const XTABLES_VOLUME: &str = "linkerd-proxy-init-xtables-lock";
/// `proxyInit.runAsUser` / `runAsGroup`.
const INIT_UID: u16 = 65534;

/// An image split as the chart's values hold it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Image {
    pub name: String,
    pub version: String,
}

impl Image {
    /// Splits `name:version` at the last colon.
    pub(crate) fn parse(reference: &str) -> Self {
        let (name, version) = reference.rsplit_once(':').unwrap_or((reference, ""));
        Self {
            name: name.to_owned(),
            version: version.to_owned(),
        }
    }

    fn reference(&self) -> String {
        format!("{}:{}", self.name, self.version)
    }
}

/// `proxy.ports`. Signed: annotations may set any `int32`, as in Linkerd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ports {
    pub admin: i32,
    pub control: i32,
    pub inbound: i32,
    pub outbound: i32,
}

/// Worker threads: `proxy.cores` (2.17, and the deprecated path after) or
/// `proxy.runtime.workers` (2.18+). Zero means unset, as in the chart.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Cores {
    pub fixed: i64,
    pub minimum: i64,
    pub maximum: i64,
    pub max_cpu_ratio: Option<f64>,
}

/// Where the proxy reads the trust anchors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TrustAnchors {
    /// Inline PEM: workload pods cannot read the control plane's ConfigMap.
    Inline(String),
    /// `linkerd-identity-trust-roots`, for pods in the control plane's namespace.
    ConfigMap,
}

/// Container capabilities the proxy (and `linkerd-init`) take over.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Capabilities {
    pub add: Vec<String>,
    pub drop: Vec<String>,
}

/// `.Values.proxyInit`, resolved.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct InitValues {
    pub image: Image,
    pub pull_policy: String,
    pub iptables_mode: String,
    pub ignore_inbound_ports: String,
    pub ignore_outbound_ports: String,
    pub skip_subnets: String,
    /// `--timeout-close-wait-secs`; zero leaves it out.
    pub close_wait_secs: i64,
    pub capabilities: Option<Capabilities>,
    pub service_account_mount: Option<Value>,
}

/// `.Values.proxy` with everything the chart templates read, resolved.
#[derive(Clone, Debug)]
pub(crate) struct ProxyValues<'a> {
    pub release: &'a Release,
    pub control_plane_ns: String,
    pub cluster_domain: String,
    pub trust_domain: String,
    /// `clusterNetworks`, comma-separated.
    pub cluster_networks: String,
    pub image: Image,
    pub pull_policy: String,
    pub log_level: String,
    pub log_format: String,
    /// `insecure` logs headers; `off` (or empty) keeps them out.
    pub log_http_headers: String,
    pub ports: Ports,
    pub uid: i64,
    /// Negative: no `runAsGroup` and no `--proxy-gid`.
    pub gid: i64,
    pub resources: ProxyResources,
    pub cores: Cores,
    pub require_identity_ports: String,
    pub require_tls_ports: String,
    pub shutdown_endpoint: bool,
    pub default_inbound_policy: String,
    pub inbound_connect_timeout: String,
    pub outbound_connect_timeout: String,
    pub outbound_discovery_idle_timeout: String,
    pub inbound_discovery_idle_timeout: String,
    pub disable_outbound_detect_timeout: bool,
    pub disable_inbound_detect_timeout: bool,
    /// Ports of the pod's own containers, comma-separated.
    pub inbound_ports: String,
    pub gateway: bool,
    pub ingress: bool,
    pub external_profiles: bool,
    pub hostname_labels: bool,
    pub opaque_ports: String,
    pub identity_addr: String,
    pub destination_addr: String,
    pub policy_addr: String,
    pub trust_anchors: TrustAnchors,
    pub access_log: String,
    pub shutdown_grace_period: String,
    /// Application containers wait for the proxy (`linkerd-await`).
    pub await_ready: bool,
    pub wait_before_exit_seconds: u64,
    pub native_sidecar: bool,
    pub capabilities: Option<Capabilities>,
    pub service_account_mount: Option<Value>,
    pub init: InitValues,
}

impl<'a> ProxyValues<'a> {
    /// The values `linkerd-config` holds for a ControlPlane spec: Linkerd's
    /// chart defaults with the spec's proxy settings.
    pub(crate) fn new(
        spec: &ControlPlaneSpec,
        release: &'a Release,
        trust_anchors: TrustAnchors,
    ) -> Self {
        let ns = spec.namespace.as_str();
        let domain = spec.cluster_domain.as_str();
        let init_image = release
            .images
            .proxy_init
            .as_deref()
            .unwrap_or(&release.images.proxy);
        Self {
            release,
            control_plane_ns: ns.to_owned(),
            cluster_domain: domain.to_owned(),
            trust_domain: spec.identity.trust_domain.clone(),
            cluster_networks: spec.cluster_networks.join(","),
            image: Image::parse(&release.images.proxy),
            pull_policy: String::new(),
            log_level: spec.proxy.log_level.clone(),
            log_format: match spec.proxy.log_format {
                LogFormat::Plain => "plain",
                LogFormat::Json => "json",
            }
            .into(),
            log_http_headers: "off".into(),
            ports: Ports {
                admin: ADMIN_PORT.into(),
                control: CONTROL_PORT.into(),
                inbound: INBOUND_PORT.into(),
                outbound: OUTBOUND_PORT.into(),
            },
            uid: PROXY_UID.into(),
            gid: -1,
            resources: spec.proxy.resources.clone(),
            cores: Cores {
                minimum: 1,
                ..Cores::default()
            },
            require_identity_ports: String::new(),
            require_tls_ports: String::new(),
            shutdown_endpoint: false,
            default_inbound_policy: policy_name(spec.proxy.default_inbound_policy),
            inbound_connect_timeout: "100ms".into(),
            outbound_connect_timeout: "1000ms".into(),
            outbound_discovery_idle_timeout: "5s".into(),
            inbound_discovery_idle_timeout: "90s".into(),
            disable_outbound_detect_timeout: false,
            disable_inbound_detect_timeout: false,
            inbound_ports: String::new(),
            gateway: false,
            ingress: false,
            external_profiles: false,
            hostname_labels: false,
            opaque_ports: OPAQUE_PORTS.into(),
            identity_addr: svc_addr(ns, domain, "linkerd-identity-headless", 8080),
            destination_addr: svc_addr(ns, domain, "linkerd-dst-headless", 8086),
            policy_addr: svc_addr(ns, domain, "linkerd-policy", 8090),
            trust_anchors,
            access_log: String::new(),
            shutdown_grace_period: String::new(),
            await_ready: spec.proxy.r#await,
            wait_before_exit_seconds: 0,
            native_sidecar: spec.proxy.native_sidecar == NativeSidecar::Enabled,
            capabilities: None,
            service_account_mount: None,
            init: InitValues {
                image: Image::parse(init_image),
                pull_policy: String::new(),
                iptables_mode: release.iptables_mode.clone(),
                ignore_inbound_ports: INIT_IGNORED_PORTS.into(),
                ignore_outbound_ports: INIT_IGNORED_PORTS.into(),
                skip_subnets: String::new(),
                close_wait_secs: 0,
                capabilities: None,
                service_account_mount: None,
            },
        }
    }

    /// The mesh identity of a control-plane ServiceAccount.
    fn identity_name(&self, service_account: &str) -> String {
        format!(
            "{service_account}.{ns}.serviceaccount.identity.{ns}.{td}",
            ns = self.control_plane_ns,
            td = self.trust_domain
        )
    }
}

/// A default inbound policy as the chart and the proxy spell it.
fn policy_name(policy: keelson_crds::controlplane::DefaultPolicy) -> String {
    serde_json::to_value(policy)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .expect("policies serialize as strings")
}

/// A control-plane Service address as the proxy dials it.
fn svc_addr(ns: &str, domain: &str, service: &str, port: u16) -> String {
    format!("{service}.{ns}.svc.{domain}.:{port}")
}

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
        svc_addr(self.ns(), self.cluster_domain(), service, port)
    }

    /// The values every control-plane proxy shares, as the chart sets them
    /// for its components.
    fn control_plane_proxy_values(&self) -> ProxyValues<'_> {
        let mut v = ProxyValues::new(self.spec, self.release, TrustAnchors::ConfigMap);
        v.resources = self.proxy_resources();
        // The API server calls the components' webhooks without mesh identity.
        v.default_inbound_policy = "all-unauthenticated".into();
        v.capabilities = Some(Capabilities {
            add: Vec::new(),
            drop: vec!["ALL".into()],
        });
        // Keelson renders control-plane proxies as regular containers.
        v.native_sidecar = false;
        v.init.ignore_outbound_ports = KUBE_API_PORTS.into();
        v
    }

    /// Proxy (and proxy-init) resources: the spec's, over Linkerd's HA defaults.
    fn proxy_resources(&self) -> ProxyResources {
        let mut res = self.spec.proxy.resources.clone();
        if self.ha() {
            res.cpu.request.get_or_insert_with(|| "100m".into());
            res.memory.request.get_or_insert_with(|| "20Mi".into());
            res.memory.limit.get_or_insert_with(|| "250Mi".into());
        }
        res
    }
}

/// The `linkerd-proxy` container of a control-plane pod.
pub(super) fn container(ctx: &Context<'_>, p: &ControlPlaneProxy<'_>) -> Value {
    let mut v = ctx.control_plane_proxy_values();
    v.inbound_ports = p.inbound_ports.into();
    v.require_tls_ports = p.require_tls_ports.unwrap_or_default().into();
    v.await_ready = p.await_ready;
    v.identity_addr.clone_from(&p.identity_addr);
    v.destination_addr.clone_from(&p.destination_addr);
    v.policy_addr.clone_from(&p.policy_addr);
    proxy_container(&v)
}

/// `linkerd-init` of a control-plane pod: it leaves the API server ports alone.
pub(super) fn init_container(ctx: &Context<'_>) -> Value {
    init_container_for(&ctx.control_plane_proxy_values())
}

/// Container `resources` from Linkerd's request/limit shape; `None` when
/// empty. Empty quantities are left out, as the chart's `with` does.
pub(crate) fn resources(r: &ProxyResources) -> Option<Value> {
    let mut requests = serde_json::Map::new();
    let mut limits = serde_json::Map::new();
    for (name, bounds) in [
        ("cpu", &r.cpu),
        ("memory", &r.memory),
        ("ephemeral-storage", &r.ephemeral_storage),
    ] {
        if let Some(q) = bounds.request.as_ref().filter(|q| !q.is_empty()) {
            requests.insert(name.into(), q.clone().into());
        }
        if let Some(q) = bounds.limit.as_ref().filter(|q| !q.is_empty()) {
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

/// Go's `%v` of a float64, as the chart's `quote` prints the CPU ratio:
/// shortest digits, exponent form below 1e-4 or from 1e21 (`1e-05`).
fn go_float(x: f64) -> String {
    if x.is_finite() && x != 0.0 && (x.abs() < 1e-4 || x.abs() >= 1e21) {
        let s = format!("{x:e}");
        let (mantissa, exp) = s.split_once('e').expect("LowerExp has an exponent");
        let exp: i32 = exp.parse().expect("LowerExp exponent is an integer");
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.unsigned_abs())
    } else {
        format!("{x}")
    }
}

/// Worker-thread env vars, per the release's template.
fn cores_env(v: &ProxyValues<'_>, out: &mut Vec<Value>) {
    let workers = v.release.has(Feature::ProxyCoresEnv);
    if v.cores.fixed != 0 {
        out.push(env("LINKERD2_PROXY_CORES", v.cores.fixed.to_string()));
        if workers {
            out.push(env("LINKERD2_PROXY_CORES_MIN", v.cores.fixed.to_string()));
        }
        return;
    }
    if !workers {
        return;
    }
    // `.minimum | default 1`: zero means unset.
    let min = if v.cores.minimum == 0 {
        1
    } else {
        v.cores.minimum
    };
    out.push(env("LINKERD2_PROXY_CORES", min.to_string()));
    out.push(env("LINKERD2_PROXY_CORES_MIN", min.to_string()));
    if v.cores.maximum != 0 {
        out.push(env("LINKERD2_PROXY_CORES_MAX", v.cores.maximum.to_string()));
    }
    if let Some(ratio) = v.cores.max_cpu_ratio {
        out.push(env("LINKERD2_PROXY_CORES_MAX_RATIO", go_float(ratio)));
    }
}

/// The `linkerd-proxy` container, with its environment in the chart's order.
pub(crate) fn proxy_container(v: &ProxyValues<'_>) -> Value {
    let release = v.release;
    let networks = v.cluster_networks.as_str();
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
    cores_env(v, &mut env_vars);
    if !v.require_identity_ports.is_empty() {
        env_vars.push(env(
            "LINKERD2_PROXY_INBOUND_PORTS_REQUIRE_IDENTITY",
            v.require_identity_ports.as_str(),
        ));
    }
    if !v.require_tls_ports.is_empty() {
        env_vars.push(env(
            "LINKERD2_PROXY_INBOUND_PORTS_REQUIRE_TLS",
            v.require_tls_ports.as_str(),
        ));
    }
    // Headers and request bodies stay out of the logs unless asked for.
    let log_suffix = if v.log_http_headers == "insecure" {
        ""
    } else {
        ",[{headers}]=off,[{request}]=off"
    };
    env_vars.extend([
        env(
            "LINKERD2_PROXY_SHUTDOWN_ENDPOINT_ENABLED",
            v.shutdown_endpoint.to_string(),
        ),
        env("LINKERD2_PROXY_LOG", format!("{}{log_suffix}", v.log_level)),
        env("LINKERD2_PROXY_LOG_FORMAT", v.log_format.as_str()),
        env(
            "LINKERD2_PROXY_DESTINATION_SVC_ADDR",
            v.destination_addr.as_str(),
        ),
        env("LINKERD2_PROXY_DESTINATION_PROFILE_NETWORKS", networks),
        env("LINKERD2_PROXY_POLICY_SVC_ADDR", v.policy_addr.as_str()),
        env(
            "LINKERD2_PROXY_POLICY_WORKLOAD",
            "{\"ns\":\"$(_pod_ns)\", \"pod\":\"$(_pod_name)\"}\n",
        ),
        env(
            "LINKERD2_PROXY_INBOUND_DEFAULT_POLICY",
            v.default_inbound_policy.as_str(),
        ),
        env("LINKERD2_PROXY_POLICY_CLUSTER_NETWORKS", networks),
        env("LINKERD2_PROXY_CONTROL_STREAM_INITIAL_TIMEOUT", "3s"),
        env("LINKERD2_PROXY_CONTROL_STREAM_IDLE_TIMEOUT", "5m"),
        env("LINKERD2_PROXY_CONTROL_STREAM_LIFETIME", "1h"),
    ]);
    for (name, value) in [
        (
            "LINKERD2_PROXY_INBOUND_CONNECT_TIMEOUT",
            &v.inbound_connect_timeout,
        ),
        (
            "LINKERD2_PROXY_OUTBOUND_CONNECT_TIMEOUT",
            &v.outbound_connect_timeout,
        ),
        (
            "LINKERD2_PROXY_OUTBOUND_DISCOVERY_IDLE_TIMEOUT",
            &v.outbound_discovery_idle_timeout,
        ),
        (
            "LINKERD2_PROXY_INBOUND_DISCOVERY_IDLE_TIMEOUT",
            &v.inbound_discovery_idle_timeout,
        ),
    ] {
        if !value.is_empty() {
            env_vars.push(env(name, value.as_str()));
        }
    }
    if v.disable_outbound_detect_timeout {
        env_vars.push(env("LINKERD2_PROXY_OUTBOUND_DETECT_TIMEOUT", "365d"));
    }
    if v.disable_inbound_detect_timeout {
        env_vars.push(env("LINKERD2_PROXY_INBOUND_DETECT_TIMEOUT", "365d"));
    }
    let ports = v.ports;
    let svc_suffix = format!("svc.{}.", v.cluster_domain);
    env_vars.extend([
        env(
            "LINKERD2_PROXY_CONTROL_LISTEN_ADDR",
            format!("0.0.0.0:{}", ports.control),
        ),
        env(
            "LINKERD2_PROXY_ADMIN_LISTEN_ADDR",
            format!("0.0.0.0:{}", ports.admin),
        ),
        env(
            "LINKERD2_PROXY_OUTBOUND_LISTEN_ADDR",
            format!("127.0.0.1:{}", ports.outbound),
        ),
        env(
            "LINKERD2_PROXY_OUTBOUND_LISTEN_ADDRS",
            format!("127.0.0.1:{}", ports.outbound),
        ),
        env(
            "LINKERD2_PROXY_INBOUND_LISTEN_ADDR",
            format!("0.0.0.0:{}", ports.inbound),
        ),
        field_env("LINKERD2_PROXY_INBOUND_IPS", "status.podIPs"),
        env("LINKERD2_PROXY_INBOUND_PORTS", v.inbound_ports.as_str()),
    ]);
    if v.gateway {
        env_vars.push(env(
            "LINKERD2_PROXY_INBOUND_GATEWAY_SUFFIXES",
            svc_suffix.as_str(),
        ));
    }
    if v.ingress {
        env_vars.push(env("LINKERD2_PROXY_INGRESS_MODE", "true"));
    }
    env_vars.extend([
        env(
            "LINKERD2_PROXY_DESTINATION_PROFILE_SUFFIXES",
            if v.external_profiles {
                "."
            } else {
                svc_suffix.as_str()
            },
        ),
        env("LINKERD2_PROXY_INBOUND_ACCEPT_KEEPALIVE", "10000ms"),
        env("LINKERD2_PROXY_OUTBOUND_CONNECT_KEEPALIVE", "10000ms"),
        env("LINKERD2_PROXY_INBOUND_ACCEPT_USER_TIMEOUT", "30s"),
        env("LINKERD2_PROXY_OUTBOUND_CONNECT_USER_TIMEOUT", "30s"),
    ]);
    if release.has(Feature::ProxyHostnameLabelsEnv) {
        env_vars.push(env(
            "LINKERD2_PROXY_OUTBOUND_METRICS_HOSTNAME_LABELS",
            v.hostname_labels.to_string(),
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
    if !v.opaque_ports.is_empty() {
        env_vars.push(env(
            "LINKERD2_PROXY_INBOUND_PORTS_DISABLE_PROTOCOL_DETECTION",
            v.opaque_ports.as_str(),
        ));
    }
    let anchors = match &v.trust_anchors {
        // A YAML block scalar in the chart: trimmed, one final newline, and
        // line breaks normalized as YAML reads them.
        TrustAnchors::Inline(pem) => env(
            "LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS",
            format!("{}\n", pem.trim().replace("\r\n", "\n").replace('\r', "\n")),
        ),
        TrustAnchors::ConfigMap => {
            json!({"name": "LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS", "valueFrom": {"configMapKeyRef": {
                "name": "linkerd-identity-trust-roots", "key": "ca-bundle.crt"}}})
        }
    };
    env_vars.extend([
        env(
            "LINKERD2_PROXY_DESTINATION_CONTEXT",
            "{\"ns\":\"$(_pod_ns)\", \"nodeName\":\"$(_pod_nodeName)\", \"pod\":\"$(_pod_name)\"}\n",
        ),
        field_env("_pod_sa", "spec.serviceAccountName"),
        env("_l5d_ns", v.control_plane_ns.as_str()),
        env("_l5d_trustdomain", v.trust_domain.as_str()),
        env("LINKERD2_PROXY_IDENTITY_DIR", IDENTITY_DIR),
        anchors,
        env(
            "LINKERD2_PROXY_IDENTITY_TOKEN_FILE",
            format!("{TOKEN_DIR}/linkerd-identity-token"),
        ),
        env("LINKERD2_PROXY_IDENTITY_SVC_ADDR", v.identity_addr.as_str()),
        env(
            "LINKERD2_PROXY_IDENTITY_LOCAL_NAME",
            format!(
                "$(_pod_sa).$(_pod_ns).serviceaccount.identity.{}.{}",
                v.control_plane_ns, v.trust_domain
            ),
        ),
        env("LINKERD2_PROXY_IDENTITY_SVC_NAME", v.identity_name("linkerd-identity")),
        env("LINKERD2_PROXY_DESTINATION_SVC_NAME", v.identity_name("linkerd-destination")),
        env("LINKERD2_PROXY_POLICY_SVC_NAME", v.identity_name("linkerd-destination")),
    ]);
    if !v.access_log.is_empty() {
        env_vars.push(env("LINKERD2_PROXY_ACCESS_LOG", v.access_log.as_str()));
    }
    if !v.shutdown_grace_period.is_empty() {
        env_vars.push(env(
            "LINKERD2_PROXY_SHUTDOWN_GRACE_PERIOD",
            v.shutdown_grace_period.as_str(),
        ));
    }

    let mut security = json!({
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "runAsNonRoot": true,
        "runAsUser": v.uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    });
    if let Some(caps) = v.capabilities.as_ref().and_then(capabilities) {
        security["capabilities"] = caps;
    }
    if v.gid >= 0 {
        security["runAsGroup"] = v.gid.into();
    }
    let mut mounts = vec![
        json!({"mountPath": IDENTITY_DIR, "name": "linkerd-identity-end-entity"}),
        json!({"mountPath": TOKEN_DIR, "name": "linkerd-identity-token"}),
    ];
    mounts.extend(v.service_account_mount.clone());
    let mut c = json!({
        "env": env_vars,
        "image": v.image.reference(),
        "imagePullPolicy": pull_policy(&v.pull_policy),
        "livenessProbe": {"httpGet": http_get("/live", ports.admin), "initialDelaySeconds": 10, "timeoutSeconds": 1},
        "name": "linkerd-proxy",
        // Explicit protocol, as for Service ports (see `services::service`);
        // the API server defaults the same value where it is missing.
        "ports": [
            {"containerPort": ports.inbound, "name": "linkerd-proxy", "protocol": "TCP"},
            {"containerPort": ports.admin, "name": "linkerd-admin", "protocol": "TCP"},
        ],
        "readinessProbe": {"httpGet": http_get("/ready", ports.admin), "initialDelaySeconds": 2, "timeoutSeconds": 1},
        "securityContext": security,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": mounts,
    });
    if v.native_sidecar && v.await_ready {
        // A native sidecar is started (and the next containers with it)
        // once this probe passes: the await hook's job.
        c["startupProbe"] = json!({"httpGet": http_get("/ready", ports.admin),
            "initialDelaySeconds": 0, "periodSeconds": 1, "failureThreshold": 120});
    }
    if !v.native_sidecar && (v.await_ready || v.wait_before_exit_seconds > 0) {
        let mut lifecycle = serde_json::Map::new();
        if v.await_ready {
            lifecycle.insert("postStart".into(), json!({"exec": {"command": [
                "/usr/lib/linkerd/linkerd-await", "--timeout=2m", format!("--port={}", ports.admin),
            ]}}));
        }
        if v.wait_before_exit_seconds > 0 {
            lifecycle.insert(
                "preStop".into(),
                json!({"exec": {"command": [
                    "/bin/sleep", v.wait_before_exit_seconds.to_string(),
                ]}}),
            );
        }
        c["lifecycle"] = lifecycle.into();
    }
    if let Some(r) = resources(&v.resources) {
        c["resources"] = r;
    }
    if v.native_sidecar {
        c["restartPolicy"] = "Always".into();
    }
    c
}

fn pull_policy(policy: &str) -> &str {
    if policy.is_empty() {
        "IfNotPresent"
    } else {
        policy
    }
}

/// `capabilities` with the non-empty lists; `None` when both are empty.
fn capabilities(caps: &Capabilities) -> Option<Value> {
    let mut out = serde_json::Map::new();
    if !caps.add.is_empty() {
        out.insert("add".into(), caps.add.clone().into());
    }
    if !caps.drop.is_empty() {
        out.insert("drop".into(), caps.drop.clone().into());
    }
    (!out.is_empty()).then_some(out.into())
}

/// `linkerd-init`: installs the iptables rules that route the pod's traffic
/// through the proxy.
pub(crate) fn init_container_for(v: &ProxyValues<'_>) -> Value {
    let init = &v.init;
    let mut args: Vec<String> = Vec::new();
    if init.iptables_mode == "nft" {
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
    let mut flag = |name: &str, value: String| {
        args.push(name.into());
        args.push(value);
    };
    flag("--incoming-proxy-port", v.ports.inbound.to_string());
    flag("--outgoing-proxy-port", v.ports.outbound.to_string());
    flag("--proxy-uid", v.uid.to_string());
    if v.gid >= 0 {
        flag("--proxy-gid", v.gid.to_string());
    }
    let mut ignore_inbound = format!("{},{}", v.ports.control, v.ports.admin);
    if !init.ignore_inbound_ports.is_empty() {
        ignore_inbound = format!("{ignore_inbound},{}", init.ignore_inbound_ports);
    }
    flag("--inbound-ports-to-ignore", ignore_inbound);
    if !init.ignore_outbound_ports.is_empty() {
        flag(
            "--outbound-ports-to-ignore",
            init.ignore_outbound_ports.clone(),
        );
    }
    if init.close_wait_secs != 0 {
        flag(
            "--timeout-close-wait-secs",
            init.close_wait_secs.to_string(),
        );
    }
    if !init.skip_subnets.is_empty() {
        flag("--subnets-to-ignore", init.skip_subnets.clone());
    }
    // Changing conntrack's close-wait timeout needs a privileged container.
    let privileged = init.close_wait_secs != 0;
    let mut caps = Capabilities {
        add: vec!["NET_ADMIN".into(), "NET_RAW".into()],
        drop: Vec::new(),
    };
    if let Some(extra) = &init.capabilities {
        caps.add.extend(extra.add.iter().cloned());
        caps.drop.extend(extra.drop.iter().cloned());
    }
    let mut mounts = vec![json!({"mountPath": "/run", "name": XTABLES_VOLUME})];
    mounts.extend(init.service_account_mount.clone());
    let mut c = json!({
        "args": args,
        "image": init.image.reference(),
        "imagePullPolicy": pull_policy(&init.pull_policy),
        "name": "linkerd-init",
        "securityContext": {
            "allowPrivilegeEscalation": privileged,
            "capabilities": capabilities(&caps),
            "privileged": privileged,
            "readOnlyRootFilesystem": true,
            "runAsGroup": INIT_UID,
            "runAsNonRoot": true,
            "runAsUser": INIT_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": mounts,
    });
    if let Some(r) = resources(&v.resources) {
        c["resources"] = r;
    }
    c
}

/// `linkerd-init`'s iptables lock.
pub(crate) fn xtables_volume() -> Value {
    json!({"emptyDir": {}, "name": XTABLES_VOLUME})
}

/// The projected ServiceAccount token the proxy presents to identity.
pub(crate) fn identity_token_volume() -> Value {
    json!({"name": "linkerd-identity-token", "projected": {"sources": [{"serviceAccountToken": {
        "audience": "identity.l5d.io", "expirationSeconds": 86400, "path": "linkerd-identity-token"}}]}})
}

/// Where the proxy keeps its key and certificate: memory only.
pub(crate) fn identity_end_entity_volume() -> Value {
    json!({"emptyDir": {"medium": "Memory"}, "name": "linkerd-identity-end-entity"})
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
        xtables_volume(),
        identity_token_volume(),
        identity_end_entity_volume(),
    ]
}

/// Mount of the hand-made API token volume, for containers that talk to the API.
pub(super) fn kube_api_mount() -> Value {
    json!({"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "name": "kube-api-access", "readOnly": true})
}

/// Value of the `linkerd.io/created-by` annotation, on the control plane's
/// objects and on the pods Keelson injects.
pub fn created_by() -> String {
    format!("keelson/{}", env!("CARGO_PKG_VERSION"))
}

/// Annotation the injector gives a pod: the digest of the trust bundle its
/// proxy was given.
pub const TRUST_ROOT_SHA256: &str = "linkerd.io/trust-root-sha256";
/// Label on every meshed pod (and the control plane's own) naming the
/// namespace of the control plane it belongs to.
pub const CONTROL_PLANE_NS: &str = "linkerd.io/control-plane-ns";

/// SHA-256 (hex) of the trust bundle exactly as proxies get it, the value of
/// `linkerd.io/trust-root-sha256`.
pub fn trust_root_sha256(anchors_pem: &str) -> String {
    sha256_hex(anchors_pem.as_bytes())
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_go_prints_them() {
        for (x, want) in [
            (0.1, "0.1"),
            (0.5, "0.5"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (0.333, "0.333"),
        ] {
            assert_eq!(go_float(x), want, "{x}");
        }
    }

    #[test]
    fn images_split_at_the_last_colon() {
        let i = Image::parse("cr.l5d.io/linkerd/proxy:edge-25.4.4");
        assert_eq!(
            (i.name.as_str(), i.version.as_str()),
            ("cr.l5d.io/linkerd/proxy", "edge-25.4.4")
        );
        assert_eq!(i.reference(), "cr.l5d.io/linkerd/proxy:edge-25.4.4");
    }
}
