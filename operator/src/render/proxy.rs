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
use crate::catalog::{Feature, KubeVersion, Release};
use k8s_openapi::api::core::v1 as k8s;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use keelson_crds::ControlPlaneSpec;
use keelson_crds::controlplane::{LogFormat, NativeSidecar, ProxyResources, ProxySideSettings};
use serde_json::{Value, json};
use std::collections::BTreeMap;

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
/// Where pods mount their API token.
pub(crate) const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Name and mount path of `linkerd-init`'s iptables lock volume.
const XTABLES_VOLUME: &str = "linkerd-proxy-init-xtables-lock";
/// `proxyInit.runAsUser` / `runAsGroup`.
const INIT_UID: u16 = 65534;
/// proxy-init's binary in the proxy image, for releases whose `linkerd-init`
/// runs from it (edge-25.11.3 on, `_proxy-init.tpl`).
const PROXY_INIT_COMMAND: &str = "/usr/lib/linkerd/linkerd2-proxy-init";
/// The network validator's binary in the proxy image
/// (`_network-validator.tpl`), the same at every catalog release.
const NETWORK_VALIDATOR_COMMAND: &str = "/usr/lib/linkerd/linkerd2-network-validator";
/// The first Kubernetes minor whose API server keeps an init container's
/// `restartPolicy: Always`; older ones drop it without a word.
const NATIVE_SIDECARS_SINCE: KubeVersion = KubeVersion {
    major: 1,
    minor: 29,
};

/// Whether proxies run as native sidecars, for a spec's setting, a release
/// and the cluster's Kubernetes version.
pub(crate) fn native_sidecar(
    setting: NativeSidecar,
    release: &Release,
    kubernetes: KubeVersion,
) -> bool {
    let supported = kubernetes >= NATIVE_SIDECARS_SINCE;
    match setting {
        NativeSidecar::Enabled => true,
        NativeSidecar::Disabled => false,
        NativeSidecar::Auto => supported,
        // The chart's default, but only where the API server has native
        // sidecars: below 1.29 (under every such release's floor, reachable
        // with allowUnsupportedKubernetes) the proxy would become a plain
        // init container that never exits, and no pod would start.
        NativeSidecar::ReleaseDefault => release.native_sidecar_by_default && supported,
    }
}

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
    /// proxy-init's own image; `None` where `linkerd-init` runs from the
    /// proxy's image, with its pull policy (the release has no proxyInit
    /// image).
    pub image: Option<Image>,
    pub pull_policy: String,
    pub iptables_mode: String,
    pub ignore_inbound_ports: String,
    pub ignore_outbound_ports: String,
    pub skip_subnets: String,
    /// `--timeout-close-wait-secs`; zero leaves it out.
    pub close_wait_secs: i64,
    pub capabilities: Option<Capabilities>,
    pub service_account_mount: Option<k8s::VolumeMount>,
}

/// `.Values.proxy` with everything the chart templates read, resolved.
#[derive(Clone, Debug, PartialEq)]
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
    pub service_account_mount: Option<k8s::VolumeMount>,
    /// `proxy.additionalEnv`: env vars after the chart's own.
    pub additional_env: Vec<k8s::EnvVar>,
    /// `identity.serviceAccountTokenProjection`: the proxy presents a
    /// projected token (its own volume), else the pod's API token.
    pub token_projection: bool,
    /// `proxy.inbound` and `proxy.outbound`: the chart's defaults with the
    /// spec's laid over them.
    pub inbound: ProxySideSettings,
    pub outbound: ProxySideSettings,
    /// `cniEnabled`: Linkerd's CNI plugin redirects the pod's traffic, and
    /// `linkerd-network-validator` checks it did, instead of `linkerd-init`.
    pub cni: bool,
    pub init: InitValues,
}

impl<'a> ProxyValues<'a> {
    /// The values `linkerd-config` holds for a ControlPlane spec: Linkerd's
    /// chart defaults with the spec's proxy settings, for a cluster of
    /// version `kubernetes`.
    pub(crate) fn new(
        spec: &ControlPlaneSpec,
        release: &'a Release,
        kubernetes: KubeVersion,
        trust_anchors: TrustAnchors,
    ) -> Self {
        let ns = spec.namespace.as_str();
        let domain = spec.cluster_domain.as_str();
        Self {
            release,
            control_plane_ns: ns.to_owned(),
            cluster_domain: domain.to_owned(),
            trust_domain: spec.trust_domain().to_owned(),
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
            native_sidecar: native_sidecar(spec.proxy.native_sidecar, release, kubernetes),
            capabilities: None,
            service_account_mount: None,
            additional_env: Vec::new(),
            cni: spec.cni.is_some(),
            token_projection: spec.identity.service_account_token_projection,
            inbound: side_settings(&spec.proxy.inbound),
            outbound: side_settings(&spec.proxy.outbound),
            init: InitValues {
                image: release.images.proxy_init.as_deref().map(Image::parse),
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

/// `proxy.inbound` or `proxy.outbound`: Linkerd's default (the HTTP/2
/// server's keep-alive, the same at every catalog release) with `spec`'s
/// settings laid over it, key by key.
pub(crate) fn side_settings(spec: &ProxySideSettings) -> ProxySideSettings {
    let mut out: ProxySideSettings = BTreeMap::new();
    let http2 = out
        .entry("server".into())
        .or_default()
        .entry("http2".into())
        .or_default();
    http2.insert("keepAliveInterval".into(), "10s".into());
    http2.insert("keepAliveTimeout".into(), "3s".into());
    for (scope, protocols) in spec {
        for (protocol, params) in protocols {
            let slot = out
                .entry(scope.clone())
                .or_default()
                .entry(protocol.clone())
                .or_default();
            slot.extend(params.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    out
}

/// A settings key as Sprig's `snakecase` writes it in the env var names
/// (`keepAliveInterval`: `keep_alive_interval`): an underscore before each
/// capital that follows a lower-case letter or a digit, then upper-cased by
/// the caller. Keys are letters and digits (the validator's rule).
pub(crate) fn snake_case(key: &str) -> String {
    let mut out = String::new();
    let mut previous: Option<char> = None;
    for c in key.chars() {
        if c.is_ascii_uppercase()
            && previous.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit())
        {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
        previous = Some(c);
    }
    out
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
    /// Whether the proxy is a native sidecar (an init container): as the
    /// spec says for destination, never for identity (the chart's rule).
    pub native_sidecar: bool,
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

    /// Whether the spec's proxies are native sidecars on this cluster.
    pub(super) fn native_sidecar(&self) -> bool {
        native_sidecar(
            self.spec.proxy.native_sidecar,
            self.release,
            self.kubernetes,
        )
    }

    /// The values every control-plane proxy shares, as the chart sets them
    /// for its components.
    fn control_plane_proxy_values(&self) -> ProxyValues<'_> {
        let mut v = ProxyValues::new(
            self.spec,
            self.release,
            self.kubernetes,
            TrustAnchors::ConfigMap,
        );
        v.resources = self.proxy_resources();
        // The API server calls the components' webhooks without mesh identity.
        v.default_inbound_policy = "all-unauthenticated".into();
        v.capabilities = Some(Capabilities {
            add: Vec::new(),
            drop: vec!["ALL".into()],
        });
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
    v.native_sidecar = p.native_sidecar;
    v.identity_addr.clone_from(&p.identity_addr);
    v.destination_addr.clone_from(&p.destination_addr);
    v.policy_addr.clone_from(&p.policy_addr);
    to_value(&proxy_container(&v))
}

/// `linkerd-init` of a control-plane pod: it leaves the API server ports alone.
pub(super) fn init_container(ctx: &Context<'_>) -> Value {
    to_value(&init_container_for(&ctx.control_plane_proxy_values()))
}

/// Container `resources` from Linkerd's request/limit shape; `None` when
/// empty. Empty quantities are left out, as the chart's `with` does.
pub(crate) fn resources(r: &ProxyResources) -> Option<k8s::ResourceRequirements> {
    let mut requests = BTreeMap::new();
    let mut limits = BTreeMap::new();
    for (name, bounds) in [
        ("cpu", &r.cpu),
        ("memory", &r.memory),
        ("ephemeral-storage", &r.ephemeral_storage),
    ] {
        if let Some(q) = bounds.request.as_ref().filter(|q| !q.is_empty()) {
            requests.insert(name.to_owned(), Quantity(q.clone()));
        }
        if let Some(q) = bounds.limit.as_ref().filter(|q| !q.is_empty()) {
            limits.insert(name.to_owned(), Quantity(q.clone()));
        }
    }
    let non_empty = |m: BTreeMap<String, Quantity>| (!m.is_empty()).then_some(m);
    let out = k8s::ResourceRequirements {
        limits: non_empty(limits),
        requests: non_empty(requests),
        ..Default::default()
    };
    (out != k8s::ResourceRequirements::default()).then_some(out)
}

fn env(name: &str, value: impl Into<String>) -> k8s::EnvVar {
    k8s::EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn field_env(name: &str, path: &str) -> k8s::EnvVar {
    k8s::EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(k8s::EnvVarSource {
            field_ref: Some(k8s::ObjectFieldSelector {
                field_path: path.to_owned(),
                api_version: None,
            }),
            ..Default::default()
        }),
    }
}

/// An HTTP GET probe of `path` on `port`; callers add the timings.
fn http_probe(path: &str, port: i32) -> k8s::Probe {
    k8s::Probe {
        http_get: Some(k8s::HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(port),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn exec(command: Vec<String>) -> k8s::LifecycleHandler {
    k8s::LifecycleHandler {
        exec: Some(k8s::ExecAction {
            command: Some(command),
        }),
        ..Default::default()
    }
}

fn mount(path: &str, name: &str) -> k8s::VolumeMount {
    k8s::VolumeMount {
        mount_path: path.to_owned(),
        name: name.to_owned(),
        ..Default::default()
    }
}

fn runtime_default_seccomp() -> Option<k8s::SeccompProfile> {
    Some(k8s::SeccompProfile {
        type_: "RuntimeDefault".to_owned(),
        localhost_profile: None,
    })
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
fn cores_env(v: &ProxyValues<'_>, out: &mut Vec<k8s::EnvVar>) {
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
pub(crate) fn proxy_container(v: &ProxyValues<'_>) -> k8s::Container {
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
    // The chart ranges over its maps in key order, as a BTreeMap does.
    for (dir, settings) in [("INBOUND", &v.inbound), ("OUTBOUND", &v.outbound)] {
        for (scope, protocols) in settings {
            for (protocol, params) in protocols {
                for (param, value) in params {
                    let name = [scope, protocol, param]
                        .map(|k| snake_case(k).to_ascii_uppercase())
                        .join("_");
                    env_vars.push(env(&format!("LINKERD2_PROXY_{dir}_{name}"), value.as_str()));
                }
            }
        }
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
        TrustAnchors::ConfigMap => k8s::EnvVar {
            name: "LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS".to_owned(),
            value: None,
            value_from: Some(k8s::EnvVarSource {
                config_map_key_ref: Some(k8s::ConfigMapKeySelector {
                    name: TRUST_ROOTS.to_owned(),
                    key: TRUST_ROOTS_KEY.to_owned(),
                    optional: None,
                }),
                ..Default::default()
            }),
        },
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
            if v.token_projection {
                format!("{TOKEN_DIR}/linkerd-identity-token")
            } else {
                format!("{SERVICE_ACCOUNT_DIR}/token")
            },
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
    env_vars.extend(v.additional_env.iter().cloned());

    let mut mounts = vec![mount(IDENTITY_DIR, "linkerd-identity-end-entity")];
    if v.token_projection {
        mounts.push(mount(TOKEN_DIR, "linkerd-identity-token"));
    }
    mounts.extend(v.service_account_mount.clone());
    let mut lifecycle = k8s::Lifecycle::default();
    // A native sidecar waits through its startup probe instead.
    if !v.native_sidecar && v.await_ready {
        lifecycle.post_start = Some(exec(vec![
            "/usr/lib/linkerd/linkerd-await".to_owned(),
            "--timeout=2m".to_owned(),
            format!("--port={}", ports.admin),
        ]));
    }
    if !v.native_sidecar && v.wait_before_exit_seconds > 0 {
        lifecycle.pre_stop = Some(exec(vec![
            "/bin/sleep".to_owned(),
            v.wait_before_exit_seconds.to_string(),
        ]));
    }
    k8s::Container {
        env: Some(env_vars),
        image: Some(v.image.reference()),
        image_pull_policy: Some(pull_policy(&v.pull_policy).to_owned()),
        lifecycle: (lifecycle != k8s::Lifecycle::default()).then_some(lifecycle),
        liveness_probe: Some(k8s::Probe {
            initial_delay_seconds: Some(10),
            timeout_seconds: Some(1),
            ..http_probe("/live", ports.admin)
        }),
        name: "linkerd-proxy".to_owned(),
        // Explicit protocol, as for Service ports (see `services::service`);
        // the API server defaults the same value where it is missing.
        ports: Some(vec![
            container_port(ports.inbound, "linkerd-proxy"),
            container_port(ports.admin, "linkerd-admin"),
        ]),
        readiness_probe: Some(k8s::Probe {
            initial_delay_seconds: Some(2),
            timeout_seconds: Some(1),
            ..http_probe("/ready", ports.admin)
        }),
        resources: resources(&v.resources),
        restart_policy: v.native_sidecar.then(|| "Always".to_owned()),
        security_context: Some(k8s::SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: v.capabilities.as_ref().and_then(capabilities),
            read_only_root_filesystem: Some(true),
            run_as_group: (v.gid >= 0).then_some(v.gid),
            run_as_non_root: Some(true),
            run_as_user: Some(v.uid),
            seccomp_profile: runtime_default_seccomp(),
            ..Default::default()
        }),
        // A native sidecar is started (and the next containers with it)
        // once this probe passes: the await hook's job.
        startup_probe: (v.native_sidecar && v.await_ready).then(|| k8s::Probe {
            initial_delay_seconds: Some(0),
            period_seconds: Some(1),
            failure_threshold: Some(120),
            ..http_probe("/ready", ports.admin)
        }),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        volume_mounts: Some(mounts),
        ..Default::default()
    }
}

fn container_port(port: i32, name: &str) -> k8s::ContainerPort {
    k8s::ContainerPort {
        container_port: port,
        name: Some(name.to_owned()),
        protocol: Some("TCP".to_owned()),
        ..Default::default()
    }
}

fn pull_policy(policy: &str) -> &str {
    if policy.is_empty() {
        "IfNotPresent"
    } else {
        policy
    }
}

/// `capabilities` with the non-empty lists; `None` when both are empty.
fn capabilities(caps: &Capabilities) -> Option<k8s::Capabilities> {
    let non_empty = |list: &Vec<String>| (!list.is_empty()).then(|| list.clone());
    let out = k8s::Capabilities {
        add: non_empty(&caps.add),
        drop: non_empty(&caps.drop),
    };
    (out != k8s::Capabilities::default()).then_some(out)
}

/// The init container that readies the pod's network for the proxy:
/// `linkerd-init`, or in CNI mode `linkerd-network-validator`.
pub(crate) fn init_container_for(v: &ProxyValues<'_>) -> k8s::Container {
    if v.cni {
        network_validator_for(v)
    } else {
        proxy_init_for(v)
    }
}

/// `linkerd-network-validator`: fails the pod's start unless the CNI plugin
/// redirected its traffic (it connects to an address that only a redirect
/// to its own listener answers), so no pod runs unmeshed by accident.
fn network_validator_for(v: &ProxyValues<'_>) -> k8s::Container {
    let args = [
        "--log-format",
        "plain",
        "--log-level",
        "debug",
        "--connect-addr",
        "1.1.1.1:20001",
        "--listen-addr",
        "0.0.0.0:4140",
        "--timeout",
        "10s",
    ];
    k8s::Container {
        args: Some(args.map(String::from).to_vec()),
        command: Some(vec![NETWORK_VALIDATOR_COMMAND.to_owned()]),
        image: Some(v.image.reference()),
        image_pull_policy: Some(pull_policy(&v.pull_policy).to_owned()),
        name: "linkerd-network-validator".to_owned(),
        resources: resources(&v.resources),
        security_context: Some(k8s::SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(k8s::Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Default::default()
            }),
            read_only_root_filesystem: Some(true),
            run_as_group: Some(INIT_UID.into()),
            run_as_non_root: Some(true),
            run_as_user: Some(INIT_UID.into()),
            seccomp_profile: runtime_default_seccomp(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `linkerd-init`: installs the iptables rules that route the pod's traffic
/// through the proxy.
fn proxy_init_for(v: &ProxyValues<'_>) -> k8s::Container {
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
    let mut mounts = vec![mount("/run", XTABLES_VOLUME)];
    mounts.extend(init.service_account_mount.clone());
    // From edge-25.11.3 proxy-init is a second binary in the proxy image.
    let (image, policy, command) = match &init.image {
        Some(image) => (image, &init.pull_policy, None),
        None => (
            &v.image,
            &v.pull_policy,
            Some(vec![PROXY_INIT_COMMAND.to_owned()]),
        ),
    };
    k8s::Container {
        args: Some(args),
        command,
        image: Some(image.reference()),
        image_pull_policy: Some(pull_policy(policy).to_owned()),
        name: "linkerd-init".to_owned(),
        resources: resources(&v.resources),
        security_context: Some(k8s::SecurityContext {
            allow_privilege_escalation: Some(privileged),
            capabilities: capabilities(&caps),
            privileged: Some(privileged),
            read_only_root_filesystem: Some(true),
            run_as_group: Some(INIT_UID.into()),
            run_as_non_root: Some(true),
            run_as_user: Some(INIT_UID.into()),
            seccomp_profile: runtime_default_seccomp(),
            ..Default::default()
        }),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        volume_mounts: Some(mounts),
        ..Default::default()
    }
}

/// `linkerd-init`'s iptables lock.
pub(crate) fn xtables_volume() -> k8s::Volume {
    k8s::Volume {
        name: XTABLES_VOLUME.to_owned(),
        empty_dir: Some(k8s::EmptyDirVolumeSource::default()),
        ..Default::default()
    }
}

/// The projected ServiceAccount token the proxy presents to identity.
pub(crate) fn identity_token_volume() -> k8s::Volume {
    k8s::Volume {
        name: "linkerd-identity-token".to_owned(),
        projected: Some(k8s::ProjectedVolumeSource {
            sources: Some(vec![k8s::VolumeProjection {
                service_account_token: Some(k8s::ServiceAccountTokenProjection {
                    audience: Some("identity.l5d.io".to_owned()),
                    expiration_seconds: Some(86400),
                    path: "linkerd-identity-token".to_owned(),
                }),
                ..Default::default()
            }]),
            default_mode: None,
        }),
        ..Default::default()
    }
}

/// Where the proxy keeps its key and certificate: memory only.
pub(crate) fn identity_end_entity_volume() -> k8s::Volume {
    k8s::Volume {
        name: "linkerd-identity-end-entity".to_owned(),
        empty_dir: Some(k8s::EmptyDirVolumeSource {
            medium: Some("Memory".to_owned()),
            size_limit: None,
        }),
        ..Default::default()
    }
}

/// Volumes every control-plane pod has after its component's own: the
/// hand-mounted API token (pods turn off automounting), the iptables lock,
/// and the proxy's identity token and certificate directory.
pub(super) fn pod_volumes(cni: bool, token_projection: bool) -> Vec<Value> {
    let mut volumes = vec![
        json!({"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"items": [{"key": "ca.crt", "path": "ca.crt"}], "name": "kube-root-ca.crt"}},
            {"downwardAPI": {"items": [{"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}, "path": "namespace"}]}},
        ]}}),
    ];
    // linkerd-init's iptables lock; the network validator needs none.
    if !cni {
        volumes.push(to_value(&xtables_volume()));
    }
    if token_projection {
        volumes.push(to_value(&identity_token_volume()));
    }
    volumes.push(to_value(&identity_end_entity_volume()));
    volumes
}

/// A typed Kubernetes value as JSON, for the control plane's objects.
fn to_value(typed: &impl serde::Serialize) -> Value {
    serde_json::to_value(typed).expect("Kubernetes types serialize to JSON (string keys only)")
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

/// SHA-256 (hex) of the trust bundle as `linkerd-config` holds it
/// (`identityTrustAnchorsPEM`), the value of `linkerd.io/trust-root-sha256`:
/// Linkerd's chart and injector hash that text as given, final newline
/// included.
pub fn trust_root_sha256(anchors_pem: &str) -> String {
    sha256_hex(anchors_pem.as_bytes())
}

/// Annotation Keelson puts on the trust-roots ConfigMap: the bundle's
/// [`trust_root_sha256`]. The ConfigMap holds the bundle trimmed, as
/// Linkerd's chart writes it, while the digest is of the text in
/// `linkerd-config`, which for an adopted installation keeps the final
/// newline it was installed with: the data alone cannot tell.
pub const TRUST_ROOTS_SHA256: &str = "keelson.dev/trust-root-sha256";

/// The ConfigMap in the control plane's namespace holding the trust bundle
/// proxies get, and its key.
pub const TRUST_ROOTS: &str = "linkerd-identity-trust-roots";
pub const TRUST_ROOTS_KEY: &str = "ca-bundle.crt";

/// The bundle (PEM) a trust-roots ConfigMap holds.
pub fn trust_bundle(trust_roots: &k8s::ConfigMap) -> Option<&str> {
    trust_roots
        .data
        .as_ref()?
        .get(TRUST_ROOTS_KEY)
        .map(String::as_str)
}

/// The digest Keelson published on a trust-roots ConfigMap
/// ([`TRUST_ROOTS_SHA256`]), where it is there.
pub fn published_digest(trust_roots: &k8s::ConfigMap) -> Option<&str> {
    trust_roots
        .metadata
        .annotations
        .as_ref()?
        .get(TRUST_ROOTS_SHA256)
        .map(String::as_str)
}

/// The digest of the bundle a trust-roots ConfigMap publishes: Keelson's
/// annotation ([`published_digest`]) where it is there, else the digest of
/// the data as it stands; none without a bundle.
pub fn published_trust_root_sha256(trust_roots: &k8s::ConfigMap) -> Option<String> {
    let pem = trust_bundle(trust_roots)?;
    Some(published_digest(trust_roots).map_or_else(|| trust_root_sha256(pem), str::to_owned))
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let mut hex = String::with_capacity(64);
    for b in digest.as_ref() {
        hex.push(HEX[usize::from(b >> 4)].into());
        hex.push(HEX[usize::from(b & 0xf)].into());
    }
    hex
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
