//! Proxy injection as Linkerd's injector does it: the same decision, the same
//! containers, volumes, labels and annotations, and a JSON Patch shaped like
//! Linkerd's `charts/patch/templates/patch.json`, for the release the pod
//! gets. Pure: the caller gathers everything else into a [`Context`].
//!
//! References, per catalog release: `controller/proxy-injector/webhook.go`
//! (what is added), `pkg/inject/report.go` (when to skip),
//! `pkg/inject/inject.go` (overrides) and the chart partials behind
//! [`crate::render::proxy`], which builds the containers for the control
//! plane as well.

mod annotations;
pub(crate) mod goparse;
pub mod manifests;
mod patch;
#[cfg(test)]
mod tests;

use crate::catalog::{KubeVersion, Release};
use crate::render::proxy::{
    self, Capabilities, OPAQUE_PORTS, ProxyValues, TrustAnchors, init_container_for,
    proxy_container,
};
use annotations::{
    CREATED_BY, INJECT, LOG_HTTP_HEADERS, NATIVE_SIDECAR_ALPHA, NATIVE_SIDECAR_BETA, PROXY_VERSION,
    TRUST_ROOT_SHA, WAIT_BEFORE_EXIT,
};
use k8s_openapi::api::core::v1::{Container, ExecAction, Pod, PodSpec, Probe, VolumeMount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use keelson_crds::ControlPlaneSpec;
use patch::Ops;
pub use patch::Patch;
use serde_json::json;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::rc::Rc;

/// The workload that owns a pod, as Linkerd's owner labels name it
/// (`Deployment` for a pod of a Deployment's ReplicaSet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub kind: String,
    pub name: String,
}

/// Everything an injection decision is made from, besides the pod.
pub struct Context<'a> {
    /// Name of the ControlPlane the pod is meshed with.
    pub control_plane: &'a str,
    pub spec: &'a ControlPlaneSpec,
    /// The release whose proxy the pod gets.
    pub release: &'static Release,
    pub kubernetes: KubeVersion,
    /// The trust bundle proxies receive, PEM.
    pub trust_anchors_pem: &'a str,
    /// The bundle's `linkerd.io/trust-root-sha256` as the trust-roots
    /// ConfigMap publishes it (`render::proxy::TRUST_ROOTS_SHA256`); `None`:
    /// the digest of `trust_anchors_pem`.
    pub trust_root_sha256: Option<&'a str>,
    /// In CNI mode, the redirect settings every node's plugin runs (the
    /// ControlPlane's `status.cni.redirectSha256`), written on the pod so a
    /// DataPlane can tell which pods older settings set up.
    pub cni_redirect_sha256: Option<&'a str>,
    /// Metadata of the pod's namespace.
    pub namespace: &'a ObjectMeta,
    pub owner: Option<Owner>,
}

/// What the webhook does with a pod.
#[derive(Debug)]
pub enum Decision {
    Inject(Patch),
    /// Admit the pod as it is.
    Skip(SkipReason),
    /// Deny the pod: Linkerd's chart refuses to render its proxy, and
    /// Linkerd's injector then answers with the error, `allowed: false`.
    Refuse(Refusal),
}

impl From<SkipReason> for Decision {
    fn from(reason: SkipReason) -> Self {
        Self::Skip(reason)
    }
}

impl From<Refusal> for Decision {
    fn from(refusal: Refusal) -> Self {
        Self::Refuse(refusal)
    }
}

/// Where an annotation was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnotationSource {
    Namespace,
    Pod,
}

impl fmt::Display for AnnotationSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Namespace => "namespace",
            Self::Pod => "pod",
        })
    }
}

/// Why a pod is left alone: Linkerd's skip reasons, and two of Keelson's
/// (nothing to inject into, no trust bundle to give the proxy).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkipReason {
    #[error(
        "neither the pod nor its namespace has the annotation linkerd.io/inject: enabled (or ingress)"
    )]
    NotEnabled,
    #[error(
        "the pod has the annotation linkerd.io/inject: disabled, which overrides its namespace's"
    )]
    Disabled,
    #[error(
        "the {at}'s annotation linkerd.io/inject has the invalid value {value:?}; use enabled, ingress or disabled"
    )]
    InvalidInjectValue { at: AnnotationSource, value: String },
    #[error(
        "the pod uses the host's network (spec.hostNetwork: true), where a proxy cannot intercept its traffic"
    )]
    HostNetwork,
    #[error(
        "the pod already has a sidecar proxy or its init container ({container:?}); remove it to let Keelson inject"
    )]
    SidecarPresent { container: String },
    #[error("the pod has no spec or no containers")]
    NoPodSpec,
    #[error(
        "the pod does not mount its ServiceAccount token (automountServiceAccountToken: false), which its proxy needs to prove its identity when the control plane has spec.identity.serviceAccountTokenProjection: false"
    )]
    NoServiceAccountToken,
    #[error(
        "the trust bundle is empty, so the proxy could not verify any peer; check the control plane's identity"
    )]
    NoTrustAnchors,
}

/// Annotation combinations Linkerd's chart refuses to render; each message
/// names the annotation to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "a native sidecar proxy cannot wait before exit: remove {WAIT_BEFORE_EXIT} or turn off native sidecars ({NATIVE_SIDECAR_BETA}, {NATIVE_SIDECAR_ALPHA} or spec.proxy.nativeSidecar)"
    )]
    NativeSidecarWithWaitBeforeExit,
    #[error("{LOG_HTTP_HEADERS} has the invalid value {0:?}; use off or insecure")]
    InvalidLogHttpHeaders(String),
    #[error(
        "config.linkerd.io/close-wait-timeout needs linkerd-init to run as root, which Linkerd {version} requires proxyInit.runAsRoot for and Keelson does not allow; remove the annotation"
    )]
    CloseWaitNeedsRoot { version: String },
}

/// Decides whether and how to inject `pod`, as submitted with
/// `metadata.namespace` set.
pub fn inject(req: &Context<'_>, pod: &Pod) -> Decision {
    match plan(req, pod) {
        Ok(patch) => Decision::Inject(patch),
        Err(not_injected) => not_injected,
    }
}

/// The owner kinds Linkerd labels pods with (`linkerd.io/proxy-<kind>`);
/// pods of other owners (CronJobs' Jobs resolve to the CronJob) get none.
const OWNER_LABEL_KINDS: &[&str] = &[
    "deployment",
    "replicationcontroller",
    "replicaset",
    "job",
    "daemonset",
    "statefulset",
];

/// Where workloads mount their API token; the proxy mounts it too.
const SERVICE_ACCOUNT_PATH: &str = proxy::SERVICE_ACCOUNT_DIR;

/// The patch, or why there is none.
fn plan(req: &Context<'_>, pod: &Pod) -> Result<Patch, Decision> {
    let release = req.release;
    let none = BTreeMap::new();
    let pod_ann = pod.metadata.annotations.as_ref().unwrap_or(&none);
    let ns_ann = req.namespace.annotations.as_ref().unwrap_or(&none);

    enabled(ns_ann.get(INJECT), pod_ann.get(INJECT))?;
    // The API server validates pods after mutating webhooks, so an invalid
    // one can arrive here; a patch into its missing containers would fail.
    let spec = pod
        .spec
        .as_ref()
        .filter(|s| !s.containers.is_empty())
        .ok_or(SkipReason::NoPodSpec)?;
    if spec.host_network == Some(true) {
        return Err(SkipReason::HostNetwork.into());
    }
    if let Some(container) = existing_sidecar(spec) {
        return Err(SkipReason::SidecarPresent { container }.into());
    }
    if req.trust_anchors_pem.trim().is_empty() {
        return Err(SkipReason::NoTrustAnchors.into());
    }
    // Without a projected token the proxy proves its identity with the
    // pod's API token, which its first container must mount (the API
    // server's ServiceAccount admission mounted it before this webhook).
    if !req.spec.identity.service_account_token_projection {
        let mounted = spec.automount_service_account_token != Some(false)
            && spec.containers.first().is_some_and(|c| {
                c.volume_mounts
                    .iter()
                    .flatten()
                    .any(|m| m.mount_path == SERVICE_ACCOUNT_PATH)
            });
        if !mounted {
            return Err(SkipReason::NoServiceAccountToken.into());
        }
    }

    // The annotations the patch adds: who injected, what the namespace
    // passes down, and the opaque ports among the pod's own.
    let mut added: BTreeMap<String, String> = BTreeMap::new();
    added.insert(CREATED_BY.into(), proxy::created_by());
    for key in annotations::inheritable(release).iter() {
        if let Some(value) = ns_ann.get(*key)
            && !pod_ann.contains_key(*key)
        {
            added.insert((*key).into(), value.clone());
        }
    }
    // From edge-25.12.2 the ports of init containers (native-sidecar
    // servers among them) count wherever the pod's ports do.
    let inits: &[Container] = match &spec.init_containers {
        Some(inits) if annotations::init_container_ports(release) => inits,
        _ => &[],
    };
    let port_containers: Vec<&Container> = inits.iter().chain(&spec.containers).collect();
    if !pod_ann.contains_key(annotations::OPAQUE_PORTS)
        && !added.contains_key(annotations::OPAQUE_PORTS)
    {
        let defaults: Vec<&str> = OPAQUE_PORTS.split(',').collect();
        let exposed: Vec<String> = port_containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .map(|p| p.container_port.to_string())
            .filter(|p| defaults.contains(&p.as_str()))
            .collect();
        if !exposed.is_empty() {
            added.insert(annotations::OPAQUE_PORTS.into(), exposed.join(","));
        }
    }
    let mut effective = pod_ann.clone();
    effective.extend(added.clone());

    let mut v = ProxyValues::new(
        req.spec,
        release,
        req.kubernetes,
        TrustAnchors::Inline(req.trust_anchors_pem.to_owned()),
    );
    let debug = annotations::apply(&mut v, &effective, &named_ports(&port_containers));
    if annotations::additional_env(release) {
        v.additional_env = annotations::merged_additional_env(ns_ann, pod_ann);
    }
    v.inbound_ports = pod_inbound_ports(&port_containers);
    if let Some(first) = spec.containers.first() {
        take_from_first_container(&mut v, first);
    }

    // From 2.20 the chart renders the pair, leaving out the preStop hook
    // (a native sidecar outlives the app containers anyway).
    if v.native_sidecar
        && v.wait_before_exit_seconds > 0
        && !annotations::ga_native_sidecar(release)
    {
        return Err(Refusal::NativeSidecarWithWaitBeforeExit.into());
    }
    if !matches!(v.log_http_headers.as_str(), "insecure" | "off" | "") {
        return Err(Refusal::InvalidLogHttpHeaders(v.log_http_headers).into());
    }
    if v.init.close_wait_secs != 0 && annotations::close_wait_needs_root(release) {
        return Err(Refusal::CloseWaitNeedsRoot {
            version: release.version.to_string(),
        }
        .into());
    }

    added.insert(PROXY_VERSION.into(), v.image.version.clone());
    added.insert(
        TRUST_ROOT_SHA.into(),
        req.trust_root_sha256.map_or_else(
            || proxy::trust_root_sha256(req.trust_anchors_pem),
            str::to_owned,
        ),
    );
    if let Some(digest) = req.cni_redirect_sha256.filter(|_| req.spec.cni.is_some()) {
        added.insert(
            crate::render::cni::REDIRECT_SHA256.into(),
            digest.to_owned(),
        );
    }
    let workload_ns = pod
        .metadata
        .namespace
        .clone()
        .or_else(|| req.namespace.name.clone())
        .unwrap_or_default();
    let mut labels = BTreeMap::new();
    labels.insert(
        crate::render::proxy::CONTROL_PLANE_NS.to_owned(),
        v.control_plane_ns.clone(),
    );
    if let Some(owner) = &req.owner {
        let kind = owner.kind.to_ascii_lowercase();
        if OWNER_LABEL_KINDS.contains(&kind.as_str()) {
            labels.insert(format!("linkerd.io/proxy-{kind}"), owner.name.clone());
        }
    }
    labels.insert("linkerd.io/workload-ns".to_owned(), workload_ns);

    let mut ops = Ops::default();
    if pod_ann.is_empty() {
        ops.add(&["metadata", "annotations"], &json!({}));
    }
    for (key, value) in &added {
        ops.add(&["metadata", "annotations", key], value);
    }
    if pod.metadata.labels.as_ref().is_none_or(BTreeMap::is_empty) {
        ops.add(&["metadata", "labels"], &json!({}));
    }
    for (key, value) in &labels {
        ops.add(&["metadata", "labels", key], value);
    }
    if spec.volumes.as_ref().is_none_or(Vec::is_empty) {
        ops.add(&["spec", "volumes"], &json!([]));
    }
    if spec.init_containers.as_ref().is_none_or(Vec::is_empty) {
        ops.add(&["spec", "initContainers"], &json!([]));
    }
    // linkerd-init's iptables lock; the network validator needs none.
    if !v.cni {
        ops.add(&["spec", "volumes", "-"], &proxy::xtables_volume());
    }
    // A native sidecar proxy starts right after linkerd-init, ahead of the
    // pod's own init containers, so they run meshed.
    let init_at = if v.native_sidecar { "0" } else { "-" };
    let containers = rendered_containers(&mut v);
    ops.add_json(&["spec", "initContainers", init_at], &containers.init);
    if let Some(debug) = debug {
        ops.add(&["spec", "containers", "-"], &debug_container(&debug));
    }
    ops.add(
        &["spec", "volumes", "-"],
        &proxy::identity_end_entity_volume(),
    );
    if v.token_projection {
        ops.add(&["spec", "volumes", "-"], &proxy::identity_token_volume());
    }
    let proxy_at: &[&str] = if v.native_sidecar {
        &["spec", "initContainers", "1"]
    } else if v.await_ready {
        // First, so its postStart hook holds back the other containers.
        &["spec", "containers", "0"]
    } else {
        &["spec", "containers", "-"]
    };
    ops.add_json(proxy_at, &containers.proxy);
    Ok(ops.into_patch())
}

/// The proxy's and the init container's JSON, rendered from `v`.
struct Containers {
    proxy: Rc<[u8]>,
    init: Rc<[u8]>,
}

thread_local! {
    /// The values last rendered on this thread and their containers: pods
    /// decided afresh mostly resolve to the values of the pod before them
    /// (a new ReplicaSet's first pod differs from the last one's in its
    /// image, a Job's from the previous Job's in names), and building,
    /// serializing and dropping the two containers is most of a fresh
    /// render. Compared whole, so a hit is what rendering would give.
    static LAST: RefCell<Option<(ProxyValues<'static>, Containers)>> = const { RefCell::new(None) };
}

#[cfg(test)]
thread_local! {
    /// How many renders on this thread reused the containers before.
    static RENDER_HITS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// The prefix of the API token volume's name from Kubernetes 1.21, before
/// its five random characters, and what stands for them in the cache.
const TOKEN_VOLUME: &str = "kube-api-access-";
const TOKEN_PLACEHOLDER: &str = "#####";

fn rendered_containers(v: &mut ProxyValues<'static>) -> Containers {
    // The proxy mounts the pod's API token volume, whose name is random
    // per pod: the cache keys on the values with a placeholder for those
    // characters (put in place here and taken out at the end, so the
    // values are not copied), and writes each pod's own into the JSON.
    let random: Option<String> = v
        .service_account_mount
        .as_ref()
        .and_then(|m| m.name.strip_prefix(TOKEN_VOLUME))
        .filter(|r| {
            r.len() == TOKEN_PLACEHOLDER.len() && r.bytes().all(|b| b.is_ascii_alphanumeric())
        })
        .map(str::to_owned);
    let blanked = format!("{TOKEN_VOLUME}{TOKEN_PLACEHOLDER}");
    let mut originals = Vec::new();
    if random.is_some() {
        // The proxy's mount, and linkerd-init's copy of it.
        for mount in [
            v.service_account_mount.as_mut(),
            v.init.service_account_mount.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            originals.push(std::mem::replace(&mut mount.name, blanked.clone()));
        }
    }
    let key: &ProxyValues<'static> = v;
    let json = LAST.with_borrow_mut(|last| {
        if let Some((values, containers)) = last.as_ref()
            && values == key
        {
            #[cfg(test)]
            RENDER_HITS.set(RENDER_HITS.get() + 1);
            return Containers {
                proxy: Rc::clone(&containers.proxy),
                init: Rc::clone(&containers.init),
            };
        }
        let json = |c: &Container| -> Rc<[u8]> {
            serde_json::to_vec(c)
                .expect("a container serializes")
                .into()
        };
        let containers = Containers {
            proxy: json(&proxy_container(key)),
            init: json(&init_container_for(key)),
        };
        let shared = Containers {
            proxy: Rc::clone(&containers.proxy),
            init: Rc::clone(&containers.init),
        };
        *last = Some((key.clone(), containers));
        shared
    });
    let mut originals = originals.into_iter();
    for mount in [
        v.service_account_mount.as_mut(),
        v.init.service_account_mount.as_mut(),
    ]
    .into_iter()
    .flatten()
    {
        if let Some(name) = originals.next() {
            mount.name = name;
        }
    }
    match random {
        Some(random) => {
            let placeholder = format!("\"{blanked}\"");
            let own = format!("\"{TOKEN_VOLUME}{random}\"");
            let fill = |json: &[u8]| -> Rc<[u8]> {
                let text = std::str::from_utf8(json).expect("JSON is UTF-8");
                text.replace(&placeholder, &own).into_bytes().into()
            };
            Containers {
                proxy: fill(&json.proxy),
                init: fill(&json.init),
            }
        }
        None => json,
    }
}

/// Linkerd's rules for `linkerd.io/inject` (`disabledByAnnotation`): an
/// invalid value anywhere skips; a namespace enables unless the pod says
/// `disabled`; otherwise the pod must enable.
fn enabled(ns: Option<&String>, pod: Option<&String>) -> Result<(), SkipReason> {
    let valid = |v: Option<&String>| {
        v.is_none_or(|v| matches!(v.as_str(), "" | "enabled" | "ingress" | "disabled"))
    };
    let enables = |v: Option<&String>| v.is_some_and(|v| v == "enabled" || v == "ingress");
    for (at, value) in [
        (AnnotationSource::Namespace, ns),
        (AnnotationSource::Pod, pod),
    ] {
        if !valid(value) {
            return Err(SkipReason::InvalidInjectValue {
                at,
                value: value.cloned().unwrap_or_default(),
            });
        }
    }
    if enables(ns) {
        if pod.is_some_and(|p| p == "disabled") {
            return Err(SkipReason::Disabled);
        }
        return Ok(());
    }
    if enables(pod) {
        Ok(())
    } else {
        Err(SkipReason::NotEnabled)
    }
}

/// The first container of Linkerd's or Istio's sidecars already in the
/// pod (`HasExistingSidecars`), by name or image.
fn existing_sidecar(spec: &PodSpec) -> Option<String> {
    let image_starts = |c: &Container, prefixes: &[&str]| {
        c.image
            .as_deref()
            .is_some_and(|i| prefixes.iter().any(|p| i.starts_with(p)))
    };
    let inits = spec.init_containers.iter().flatten();
    let proxy = inits.clone().chain(&spec.containers).find(|c| {
        image_starts(
            c,
            &["cr.l5d.io/linkerd/proxy:", "gcr.io/istio-release/proxyv2:"],
        ) || c.name == "linkerd-proxy"
            || c.name == "istio-proxy"
    });
    let init = || {
        inits.clone().find(|c| {
            image_starts(
                c,
                &[
                    "cr.l5d.io/linkerd/proxy-init:",
                    "gcr.io/istio-release/proxy_init:",
                ],
            ) || c.name == "linkerd-init"
                || c.name == "istio-init"
        })
    };
    proxy.or_else(init).map(|c| c.name.clone())
}

/// Names of the containers' ports, for port lists that use them; a name
/// used twice takes the later container's port, as in Linkerd.
fn named_ports(containers: &[&Container]) -> BTreeMap<String, i32> {
    containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let name = p.name.as_deref().filter(|n| !n.is_empty())?;
            Some((name.to_owned(), p.container_port))
        })
        .collect()
}

/// The ports the pod's containers serve, probes included: container ports
/// and numeric HTTP probe ports, sorted as strings (as Linkerd sorts them).
fn pod_inbound_ports(containers: &[&Container]) -> String {
    let probe_port = |p: &Option<Probe>| match p.as_ref()?.http_get.as_ref()?.port {
        IntOrString::Int(port) => Some(port),
        IntOrString::String(_) => None,
    };
    let mut ports: BTreeSet<i32> = BTreeSet::new();
    for c in containers {
        ports.extend(c.ports.iter().flatten().map(|p| p.container_port));
        ports.extend(probe_port(&c.readiness_probe));
        ports.extend(probe_port(&c.liveness_probe));
    }
    let mut ports: Vec<String> = ports.iter().map(ToString::to_string).collect();
    ports.sort();
    ports.join(",")
}

/// The pod's first container sets the proxy's capabilities (so the pod
/// stays within its security policy) and lends its API token mount.
fn take_from_first_container(v: &mut ProxyValues<'_>, first: &Container) {
    if let Some(caps) = first
        .security_context
        .as_ref()
        .and_then(|s| s.capabilities.as_ref())
    {
        let proxy_caps = Capabilities {
            add: caps.add.clone().unwrap_or_default(),
            drop: caps.drop.clone().unwrap_or_default(),
        };
        // linkerd-init keeps what it needs for iptables.
        v.init.capabilities = Some(Capabilities {
            add: proxy_caps.add.clone(),
            drop: proxy_caps
                .drop
                .iter()
                .filter(|c| *c != "NET_RAW" && *c != "NET_ADMIN")
                .cloned()
                .collect(),
        });
        v.capabilities = Some(proxy_caps);
    }
    let mount = first
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == SERVICE_ACCOUNT_PATH)
        .map(|m| VolumeMount {
            mount_path: m.mount_path.clone(),
            name: m.name.clone(),
            read_only: Some(m.read_only.unwrap_or(false)),
            ..VolumeMount::default()
        });
    v.init.service_account_mount.clone_from(&mount);
    v.service_account_mount = mount;
}

/// `linkerd-debug`, with probes that always pass for clusters that demand
/// probes.
fn debug_container(d: &annotations::Debug) -> Container {
    let pull_policy = if d.pull_policy.is_empty() {
        "IfNotPresent"
    } else {
        d.pull_policy.as_str()
    };
    let always = || {
        Some(Probe {
            exec: Some(ExecAction {
                command: Some(vec!["true".to_owned()]),
            }),
            ..Probe::default()
        })
    };
    Container {
        image: Some(format!("{}:{}", d.image.name, d.image.version)),
        image_pull_policy: Some(pull_policy.to_owned()),
        liveness_probe: always(),
        name: "linkerd-debug".to_owned(),
        readiness_probe: always(),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    }
}
