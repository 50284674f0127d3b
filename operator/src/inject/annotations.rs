//! The annotations that steer injection: which ones a pod inherits from its
//! namespace, and how each overrides the proxy's values. Follows
//! `pkg/inject/inject.go` (`ProxyAnnotations`, `ApplyAnnotationOverrides`)
//! and `pkg/k8s/labels.go` at each catalog release.

use super::goparse::{
    parse_bool, parse_duration, parse_float, parse_port_list, parse_quantity, parse_uint, seconds,
};
use crate::catalog::{Feature, Release};
use crate::render::proxy::{Image, ProxyValues};
use k8s_openapi::api::core::v1::EnvVar;
use std::collections::BTreeMap;

pub(super) const INJECT: &str = "linkerd.io/inject";
pub(super) const CREATED_BY: &str = "linkerd.io/created-by";
pub(super) const PROXY_VERSION: &str = "linkerd.io/proxy-version";
pub(super) use crate::render::proxy::TRUST_ROOT_SHA256 as TRUST_ROOT_SHA;

const ADMIN_PORT: &str = "config.linkerd.io/admin-port";
const CONTROL_PORT: &str = "config.linkerd.io/control-port";
const ENABLE_DEBUG: &str = "config.linkerd.io/enable-debug-sidecar";
const EXTERNAL_PROFILES: &str = "config.linkerd.io/enable-external-profiles";
const IMAGE_PULL_POLICY: &str = "config.linkerd.io/image-pull-policy";
const INBOUND_PORT: &str = "config.linkerd.io/inbound-port";
const INIT_IMAGE: &str = "config.linkerd.io/init-image";
const INIT_IMAGE_VERSION: &str = "config.linkerd.io/init-image-version";
const OUTBOUND_PORT: &str = "config.linkerd.io/outbound-port";
const POD_INBOUND_PORTS: &str = "config.linkerd.io/pod-inbound-ports";
const CPU_LIMIT: &str = "config.linkerd.io/proxy-cpu-limit";
const CPU_REQUEST: &str = "config.linkerd.io/proxy-cpu-request";
const CPU_RATIO_LIMIT: &str = "config.linkerd.io/proxy-cpu-ratio-limit";
const PROXY_IMAGE: &str = "config.linkerd.io/proxy-image";
const ADMIN_SHUTDOWN: &str = "config.linkerd.io/proxy-admin-shutdown";
const LOG_FORMAT: &str = "config.linkerd.io/proxy-log-format";
const LOG_LEVEL: &str = "config.linkerd.io/proxy-log-level";
pub(super) const LOG_HTTP_HEADERS: &str = "config.linkerd.io/proxy-log-http-headers";
const MEMORY_LIMIT: &str = "config.linkerd.io/proxy-memory-limit";
const MEMORY_REQUEST: &str = "config.linkerd.io/proxy-memory-request";
const EPHEMERAL_LIMIT: &str = "config.linkerd.io/proxy-ephemeral-storage-limit";
const EPHEMERAL_REQUEST: &str = "config.linkerd.io/proxy-ephemeral-storage-request";
const PROXY_UID: &str = "config.linkerd.io/proxy-uid";
const PROXY_GID: &str = "config.linkerd.io/proxy-gid";
const PROXY_VERSION_OVERRIDE: &str = "config.linkerd.io/proxy-version";
const REQUIRE_IDENTITY: &str = "config.linkerd.io/proxy-require-identity-inbound-ports";
const SKIP_INBOUND_PORTS: &str = "config.linkerd.io/skip-inbound-ports";
pub(super) const OPAQUE_PORTS: &str = "config.linkerd.io/opaque-ports";
const SKIP_OUTBOUND_PORTS: &str = "config.linkerd.io/skip-outbound-ports";
const HOSTNAME_LABELS: &str = "config.linkerd.io/proxy-metrics-hostname-labels";
const OUTBOUND_CONNECT_TIMEOUT: &str = "config.linkerd.io/proxy-outbound-connect-timeout";
const INBOUND_CONNECT_TIMEOUT: &str = "config.linkerd.io/proxy-inbound-connect-timeout";
const AWAIT: &str = "config.linkerd.io/proxy-await";
const DEFAULT_INBOUND_POLICY: &str = "config.linkerd.io/default-inbound-policy";
const SKIP_SUBNETS: &str = "config.linkerd.io/skip-subnets";
const ACCESS_LOG: &str = "config.linkerd.io/access-log";
const SHUTDOWN_GRACE_PERIOD: &str = "config.linkerd.io/shutdown-grace-period";
const OUTBOUND_DISCOVERY_IDLE: &str =
    "config.linkerd.io/proxy-outbound-discovery-cache-unused-timeout";
const INBOUND_DISCOVERY_IDLE: &str =
    "config.linkerd.io/proxy-inbound-discovery-cache-unused-timeout";
const DISABLE_OUTBOUND_DETECT_TIMEOUT: &str =
    "config.linkerd.io/proxy-disable-outbound-protocol-detect-timeout";
const DISABLE_INBOUND_DETECT_TIMEOUT: &str =
    "config.linkerd.io/proxy-disable-inbound-protocol-detect-timeout";
const ENABLE_GATEWAY: &str = "config.linkerd.io/enable-gateway";
const DEBUG_IMAGE: &str = "config.linkerd.io/debug-image";
const DEBUG_IMAGE_VERSION: &str = "config.linkerd.io/debug-image-version";
const DEBUG_IMAGE_PULL_POLICY: &str = "config.linkerd.io/debug-image-pull-policy";
pub(super) const CLOSE_WAIT_TIMEOUT: &str = "config.linkerd.io/close-wait-timeout";
pub(super) const WAIT_BEFORE_EXIT: &str = "config.alpha.linkerd.io/proxy-wait-before-exit-seconds";
pub(super) const NATIVE_SIDECAR_ALPHA: &str = "config.alpha.linkerd.io/proxy-enable-native-sidecar";
pub(super) const NATIVE_SIDECAR_BETA: &str = "config.beta.linkerd.io/proxy-enable-native-sidecar";
pub(super) const NATIVE_SIDECAR: &str = "config.linkerd.io/proxy-enable-native-sidecar";
pub(super) const ADDITIONAL_ENV: &str = "config.linkerd.io/proxy-additional-env";

/// Releases from which the beta native-sidecar annotation exists and takes
/// precedence over the alpha one (linkerd2#14587).
const NATIVE_SIDECAR_BETA_SINCE: &str = "edge-25.10.2";
/// Releases from which native sidecars are GA (linkerd2#15267): the
/// `config.linkerd.io` annotation wins over beta and alpha and replaces the
/// beta one among the inheritable annotations, and a native sidecar with
/// wait-before-exit is rendered (without the preStop hook) instead of
/// refused.
const NATIVE_SIDECAR_GA_SINCE: &str = "edge-26.5.2";
/// Releases with `proxy-additional-env` (linkerd2#15156).
const ADDITIONAL_ENV_SINCE: &str = "edge-26.4.3";
/// Releases whose named ports, opaque-port filter and pod inbound ports
/// count init containers' ports too (linkerd2#14767), which native-sidecar
/// servers expose.
const INIT_CONTAINER_PORTS_SINCE: &str = "edge-25.12.2";
/// Releases from which `close-wait-timeout` needs proxy-init to run as root,
/// which the chart then refuses to render without (linkerd2#13481).
const CLOSE_WAIT_NEEDS_ROOT_SINCE: &str = "edge-25.1.1";

/// Linkerd's debug sidecar image (`debugContainer.image.name`), the same at
/// every catalog release.
const DEBUG_IMAGE_DEFAULT: &str = "cr.l5d.io/linkerd/debug";

pub(super) fn beta_native_sidecar(release: &Release) -> bool {
    release.since(NATIVE_SIDECAR_BETA_SINCE)
}

pub(super) fn close_wait_needs_root(release: &Release) -> bool {
    release.since(CLOSE_WAIT_NEEDS_ROOT_SINCE)
}

pub(super) fn ga_native_sidecar(release: &Release) -> bool {
    release.since(NATIVE_SIDECAR_GA_SINCE)
}

pub(super) fn additional_env(release: &Release) -> bool {
    release.since(ADDITIONAL_ENV_SINCE)
}

pub(super) fn init_container_ports(release: &Release) -> bool {
    release.since(INIT_CONTAINER_PORTS_SINCE)
}

/// The init-image annotations exist while proxy-init has an image of its
/// own; both went in edge-25.11.3 (linkerd2#14577).
fn init_image_annotations(release: &Release) -> bool {
    release.images.proxy_init.is_some()
}

/// The annotations a pod takes from its namespace when it lacks them:
/// `ProxyAnnotations`, the alpha ones and `linkerd.io/inject` itself.
pub(super) fn inheritable(release: &Release) -> std::borrow::Cow<'static, [&'static str]> {
    // Made once per catalog release: every injection reads it.
    static LISTS: std::sync::OnceLock<Vec<(crate::catalog::Version, Vec<&'static str>)>> =
        std::sync::OnceLock::new();
    let lists = LISTS.get_or_init(|| {
        crate::catalog::releases()
            .iter()
            .map(|r| (r.version, inheritable_keys(r)))
            .collect()
    });
    match lists.iter().find(|(v, _)| *v == release.version) {
        Some((_, keys)) => std::borrow::Cow::Borrowed(keys),
        // A release made outside the catalog: made each time.
        None => std::borrow::Cow::Owned(inheritable_keys(release)),
    }
}

fn inheritable_keys(release: &Release) -> Vec<&'static str> {
    let mut keys = vec![
        ADMIN_PORT,
        CONTROL_PORT,
        ENABLE_DEBUG,
        EXTERNAL_PROFILES,
        IMAGE_PULL_POLICY,
        INBOUND_PORT,
        OUTBOUND_PORT,
        POD_INBOUND_PORTS,
        CPU_LIMIT,
        CPU_REQUEST,
        PROXY_IMAGE,
        ADMIN_SHUTDOWN,
        LOG_FORMAT,
        LOG_LEVEL,
        LOG_HTTP_HEADERS,
        MEMORY_LIMIT,
        MEMORY_REQUEST,
        EPHEMERAL_LIMIT,
        EPHEMERAL_REQUEST,
        PROXY_UID,
        PROXY_GID,
        PROXY_VERSION_OVERRIDE,
        REQUIRE_IDENTITY,
        SKIP_INBOUND_PORTS,
        OPAQUE_PORTS,
        SKIP_OUTBOUND_PORTS,
        OUTBOUND_CONNECT_TIMEOUT,
        INBOUND_CONNECT_TIMEOUT,
        AWAIT,
        DEFAULT_INBOUND_POLICY,
        SKIP_SUBNETS,
        ACCESS_LOG,
        SHUTDOWN_GRACE_PERIOD,
        OUTBOUND_DISCOVERY_IDLE,
        INBOUND_DISCOVERY_IDLE,
        DISABLE_OUTBOUND_DETECT_TIMEOUT,
        DISABLE_INBOUND_DETECT_TIMEOUT,
        WAIT_BEFORE_EXIT,
        NATIVE_SIDECAR_ALPHA,
        INJECT,
    ];
    // The annotation arrived with the env var it sets.
    if release.has(Feature::ProxyHostnameLabelsEnv) {
        keys.push(HOSTNAME_LABELS);
    }
    if init_image_annotations(release) {
        keys.extend([INIT_IMAGE, INIT_IMAGE_VERSION]);
    }
    if ga_native_sidecar(release) {
        keys.push(NATIVE_SIDECAR);
    } else if beta_native_sidecar(release) {
        keys.push(NATIVE_SIDECAR_BETA);
    }
    if additional_env(release) {
        keys.push(ADDITIONAL_ENV);
    }
    keys
}

/// The debug sidecar a pod asked for (`enable-debug-sidecar`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Debug {
    pub image: Image,
    pub pull_policy: String,
}

/// Applies the pod's effective annotations (its own, what it inherits and
/// what the injector adds) to `v`, as `ApplyAnnotationOverrides` does:
/// invalid values are ignored and the default stays. `named_ports` maps the
/// pod's container port names to numbers. Returns the debug sidecar, if any.
pub(super) fn apply(
    v: &mut ProxyValues<'_>,
    ann: &BTreeMap<String, String>,
    named_ports: &BTreeMap<String, i32>,
) -> Option<Debug> {
    let release = v.release;
    let get = |key: &str| ann.get(key).map(String::as_str);

    if get(INJECT) == Some("ingress") {
        v.ingress = true;
    }
    if let Some(name) = get(PROXY_IMAGE) {
        v.image.name = name.into();
    }
    // An empty version falls back to the release's, as the chart's `default`.
    if let Some(version) = get(PROXY_VERSION_OVERRIDE) {
        v.image.version = if version.is_empty() {
            release.version.to_string()
        } else {
            version.into()
        };
    }
    if let Some(policy) = get(IMAGE_PULL_POLICY) {
        v.pull_policy = policy.into();
        v.init.pull_policy = policy.into();
    }
    if init_image_annotations(release)
        && let Some(image) = v.init.image.as_mut()
    {
        if let Some(version) = get(INIT_IMAGE_VERSION) {
            image.version = version.into();
        }
        if let Some(name) = get(INIT_IMAGE) {
            image.name = name.into();
        }
    }
    for (key, port) in [
        (CONTROL_PORT, &mut v.ports.control),
        (INBOUND_PORT, &mut v.ports.inbound),
        (ADMIN_PORT, &mut v.ports.admin),
        (OUTBOUND_PORT, &mut v.ports.outbound),
    ] {
        if let Some(p) = get(key).and_then(|s| s.parse::<i32>().ok()) {
            *port = p;
        }
    }
    // `pod-inbound-ports` is read but then replaced by the pod's own ports
    // in every catalog release, so it changes nothing.
    if let Some(s) = get(ADMIN_SHUTDOWN) {
        match s {
            "enabled" => v.shutdown_endpoint = true,
            "disabled" => v.shutdown_endpoint = false,
            _ => {}
        }
    }
    if let Some(s) = get(LOG_LEVEL) {
        v.log_level = s.into();
    }
    if let Some(s) = get(LOG_HTTP_HEADERS) {
        v.log_http_headers = s.into();
    }
    if let Some(s) = get(LOG_FORMAT) {
        v.log_format = s.into();
    }
    if let Some(s) = get(REQUIRE_IDENTITY) {
        v.require_identity_ports = s.into();
    }
    if release.has(Feature::ProxyHostnameLabelsEnv)
        && let Some(b) = get(HOSTNAME_LABELS).and_then(parse_bool)
    {
        v.hostname_labels = b;
    }
    let duration = |key| get(key).and_then(parse_duration).map(seconds);
    if let Some(s) = duration(OUTBOUND_CONNECT_TIMEOUT) {
        v.outbound_connect_timeout = format!("{}ms", (s * 1000.0) as i64);
    }
    if let Some(s) = duration(INBOUND_CONNECT_TIMEOUT) {
        v.inbound_connect_timeout = format!("{}ms", (s * 1000.0) as i64);
    }
    if let Some(s) = duration(OUTBOUND_DISCOVERY_IDLE) {
        v.outbound_discovery_idle_timeout = format!("{}s", s as i64);
    }
    if let Some(s) = duration(INBOUND_DISCOVERY_IDLE) {
        v.inbound_discovery_idle_timeout = format!("{}s", s as i64);
    }
    if let Some(b) = get(DISABLE_OUTBOUND_DETECT_TIMEOUT).and_then(parse_bool) {
        v.disable_outbound_detect_timeout = b;
    }
    if let Some(b) = get(DISABLE_INBOUND_DETECT_TIMEOUT).and_then(parse_bool) {
        v.disable_inbound_detect_timeout = b;
    }
    if let Some(s) = duration(SHUTDOWN_GRACE_PERIOD) {
        v.shutdown_grace_period = format!("{}ms", (s * 1000.0) as i64);
    }
    if let Some(b) = get(ENABLE_GATEWAY).and_then(parse_bool) {
        v.gateway = b;
    }
    if let Some(secs) = get(WAIT_BEFORE_EXIT).and_then(parse_uint) {
        v.wait_before_exit_seconds = secs;
    }
    // The newest annotation present wins, even unparsable: GA (from 2.20),
    // then beta (from 2.19), then alpha.
    let native = if ga_native_sidecar(release) && ann.contains_key(NATIVE_SIDECAR) {
        get(NATIVE_SIDECAR)
    } else if beta_native_sidecar(release) && ann.contains_key(NATIVE_SIDECAR_BETA) {
        get(NATIVE_SIDECAR_BETA)
    } else {
        get(NATIVE_SIDECAR_ALPHA)
    };
    if let Some(b) = native.and_then(parse_bool) {
        v.native_sidecar = b;
    }
    apply_resources(v, ann);
    if let Some(b) = get(EXTERNAL_PROFILES).and_then(parse_bool) {
        v.external_profiles = b;
    }
    if let Some(s) = get(SKIP_INBOUND_PORTS) {
        v.init.ignore_inbound_ports = s.into();
    }
    if let Some(s) = get(SKIP_OUTBOUND_PORTS) {
        v.init.ignore_outbound_ports = s.into();
    }
    if let Some(s) = get(OPAQUE_PORTS) {
        let named = |name: &str| named_ports.get(name).copied();
        v.opaque_ports = parse_port_list(s, &named)
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
    }
    if let Some(s) = get(AWAIT) {
        match s {
            "enabled" => v.await_ready = true,
            "disabled" => v.await_ready = false,
            _ => {}
        }
    }
    if let Some(s) = get(DEFAULT_INBOUND_POLICY)
        && matches!(
            s,
            "all-unauthenticated"
                | "all-authenticated"
                | "cluster-unauthenticated"
                | "cluster-authenticated"
                | "deny"
                | "audit"
        )
    {
        v.default_inbound_policy = s.into();
    }
    if let Some(s) = get(SKIP_SUBNETS) {
        v.init.skip_subnets = s.into();
    }
    if let Some(s) = get(ACCESS_LOG) {
        v.access_log = s.into();
    }
    // Not inheritable: only the pod's own annotation counts.
    if let Some(nanos) = get(CLOSE_WAIT_TIMEOUT).and_then(parse_duration) {
        v.init.close_wait_secs = seconds(nanos) as i64;
    }
    let debug = get(ENABLE_DEBUG).and_then(parse_bool).unwrap_or(false);
    debug.then(|| Debug {
        image: Image {
            name: get(DEBUG_IMAGE).unwrap_or(DEBUG_IMAGE_DEFAULT).into(),
            version: get(DEBUG_IMAGE_VERSION)
                .filter(|s| !s.is_empty())
                .map_or_else(|| release.version.to_string(), str::to_owned),
        },
        pull_policy: get(DEBUG_IMAGE_PULL_POLICY).unwrap_or_default().into(),
    })
}

/// Requests, limits and, from them, the proxy's worker threads: 2.17 sizes
/// `proxy.cores` from the CPU limit; 2.18 sizes `runtime.workers` from the
/// request (minimum), the limit (maximum) and the CPU ratio.
fn apply_resources(v: &mut ProxyValues<'_>, ann: &BTreeMap<String, String>) {
    let workers = v.release.has(Feature::ProxyCoresEnv);
    let quantity = |key: &str| {
        let s = ann.get(key)?;
        parse_quantity(s).map(|q| (s.clone(), q))
    };
    if let Some((s, q)) = quantity(CPU_REQUEST) {
        v.resources.cpu.request = Some(s);
        if workers {
            // Linkerd stores zero (then `default 1`) when rounding fails.
            v.cores.minimum = q.whole_units().unwrap_or(0);
        }
    }
    if let Some((s, q)) = quantity(CPU_LIMIT) {
        v.resources.cpu.limit = Some(s);
        let cores = q.whole_units().unwrap_or(0);
        if workers {
            v.cores.maximum = cores;
        } else {
            v.cores.fixed = cores;
        }
    }
    if workers
        && let Some(ratio) = ann.get(CPU_RATIO_LIMIT).and_then(|s| parse_float(s))
        // NaN fails Linkerd's JSON encoding of its values; treat it as invalid.
        && ratio > 0.0
        && ratio < 1.0
    {
        v.cores.max_cpu_ratio = Some(ratio);
    }
    for (key, slot) in [
        (MEMORY_REQUEST, &mut v.resources.memory.request),
        (MEMORY_LIMIT, &mut v.resources.memory.limit),
        (
            EPHEMERAL_REQUEST,
            &mut v.resources.ephemeral_storage.request,
        ),
        (EPHEMERAL_LIMIT, &mut v.resources.ephemeral_storage.limit),
    ] {
        if let Some((s, _)) = quantity(key) {
            *slot = Some(s);
        }
    }
    for (key, id) in [(PROXY_UID, &mut v.uid), (PROXY_GID, &mut v.gid)] {
        if let Some(n) = ann.get(key).and_then(|s| s.parse::<i64>().ok()) {
            *id = n;
        }
    }
}

/// `proxy.additionalEnv` from the namespace's and then the workload's
/// `proxy-additional-env` (a JSON list of EnvVars), merged by name: a later
/// entry replaces an earlier one of the same name in place, a new one is
/// appended (`MergeAdditionalEnv`). Read from the two objects' own
/// annotations, not the inherited set. A value that is not such a list is
/// ignored, as Linkerd's injector ignores it (with a log line); the layer
/// it came from adds nothing.
pub(super) fn merged_additional_env(
    namespace: &BTreeMap<String, String>,
    workload: &BTreeMap<String, String>,
) -> Vec<EnvVar> {
    let mut env: Vec<EnvVar> = Vec::new();
    for layer in [namespace, workload] {
        let Some(text) = layer.get(ADDITIONAL_ENV).filter(|s| !s.is_empty()) else {
            continue;
        };
        let Ok(vars) = serde_json::from_str::<Vec<EnvVar>>(text) else {
            continue;
        };
        for var in vars {
            match env.iter_mut().find(|e| e.name == var.name) {
                Some(slot) => *slot = var,
                None => env.push(var),
            }
        }
    }
    env
}
