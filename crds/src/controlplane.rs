//! `ControlPlane`: one Linkerd control plane, its version and its settings.

use crate::duration::Duration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A Linkerd control plane that Keelson installs, upgrades and keeps healthy.
///
/// Keelson renders the control plane of the declared Linkerd release (identity,
/// destination with its policy and sp-validator containers, RBAC, Services,
/// ConfigMaps, webhook configurations and CRDs), applies it with server-side apply
/// and upgrades it in order, gated on health, rolling back automatically when a
/// gate fails.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "keelson.dev",
    version = "v1alpha1",
    kind = "ControlPlane",
    status = "ControlPlaneStatus",
    shortname = "lcp",
    category = "keelson",
    printcolumn = r#"{"name":"Desired","type":"string","jsonPath":".spec.version","description":"Linkerd release asked for"}"#,
    printcolumn = r#"{"name":"Current","type":"string","jsonPath":".status.currentVersion","description":"Linkerd release running"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ControlPlaneSpec {
    /// Linkerd release to run, as named by Linkerd's edge channel (for example
    /// `edge-25.4.4`, which is stable 2.18). It must be a release in Keelson's
    /// embedded catalog (`keelson versions`). Changing it starts an
    /// ordered, health-gated upgrade.
    #[schemars(length(min = 1, max = 64))]
    pub version: String,

    /// Namespace the control plane runs in. Defaults to `linkerd`. It cannot be
    /// changed once the control plane is installed.
    #[serde(default = "default_namespace")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,

    /// DNS domain of the cluster's Services. Defaults to `cluster.local`.
    #[serde(default = "default_cluster_domain")]
    #[schemars(length(min = 1, max = 253))]
    pub cluster_domain: String,

    /// CIDRs of the cluster's pod and service networks: traffic to them is
    /// discovered through the control plane, and `cluster-*` policies trust
    /// them. Defaults to Linkerd's (all private ranges).
    #[serde(default = "default_cluster_networks")]
    pub cluster_networks: Vec<String>,

    /// Mesh identity: trust domain, trust anchors and the issuer that signs
    /// workload certificates.
    #[serde(default)]
    pub identity: IdentitySpec,

    /// Run the control plane highly available: three replicas of each
    /// component, PodDisruptionBudgets, pod anti-affinity and resource requests,
    /// as Linkerd's `values-ha.yaml` does.
    #[serde(default)]
    pub high_availability: bool,

    /// Defaults for the proxies of meshed workloads. Pods can still override
    /// them with `config.linkerd.io/*` annotations.
    #[serde(default)]
    pub proxy: ProxySpec,

    /// How the Kubernetes API server treats Keelson's proxy-injection webhook
    /// and Linkerd's validating webhooks.
    #[serde(default)]
    pub webhook: WebhookSpec,

    /// How version changes are carried out.
    #[serde(default)]
    pub upgrade: UpgradeSpec,

    /// Install the Gateway API CRDs (HTTPRoute, GRPCRoute, TLSRoute, TCPRoute)
    /// with the control plane. Unset follows the release's own default (on up to
    /// 2.18, off from 2.19 on). Leave it off when another tool manages them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_gateway_api: Option<bool>,

    /// Install even when the cluster's Kubernetes version is below the floor
    /// the release declares. Meant for test clusters only: Linkerd is not
    /// supported there, and the `KubernetesVersionSupported` condition stays
    /// False to say so.
    #[serde(default)]
    pub allow_unsupported_kubernetes: bool,

    /// Take over a Linkerd control plane already running in `namespace`,
    /// installed with Linkerd's Helm charts or its CLI. Without it Keelson
    /// writes nothing in a namespace where it finds one (see
    /// `status.existingInstallation`). With it Keelson keeps that
    /// installation's trust bundle (every anchor in it) and issuer as they
    /// are, adopts its running release as the current version (a different
    /// `version` is then an ordinary gated upgrade), takes field ownership
    /// of its objects from Helm and kubectl, hands proxy injection over to
    /// its own injector without a moment with none or two registered, and
    /// forgets the `linkerd-control-plane` Helm release. Progress is in
    /// `status.adoption`. `keelson adopt` prints the ControlPlane that
    /// reproduces a running installation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adoption: Option<AdoptionSpec>,

    /// Run Linkerd's CNI plugin (the `linkerd2-cni` chart): a DaemonSet sets
    /// up each pod's traffic redirection from the node, so meshed pods get
    /// `linkerd-network-validator` (no capabilities) instead of
    /// `linkerd-init` (NET_ADMIN and NET_RAW), for clusters whose Pod
    /// Security forbids those. Set (`cni: {}` takes the chart's defaults) to
    /// turn CNI mode on; it is chosen at install and cannot be switched on
    /// an installed control plane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni: Option<CniSpec>,
}

/// Linkerd's CNI plugin, as the `linkerd2-cni` chart's values set it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CniSpec {
    /// Namespace of the plugin's DaemonSet (Pod Security `privileged`: it
    /// writes to the node). Defaults to `linkerd-cni`. Keelson takes it as
    /// it takes `namespace`: one that does not exist yet, or one handed
    /// over with the label `keelson.dev/control-plane: <ControlPlane>`.
    #[serde(default = "default_cni_namespace")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,

    /// The plugin's log level (`logLevel`): `info` by default.
    #[serde(default = "default_cni_log_level")]
    #[schemars(length(min = 1, max = 32))]
    pub log_level: String,

    /// Inbound ports not redirected to the proxy, besides its admin and
    /// control ports: comma-separated ports and ranges
    /// (`ignoreInboundPorts`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(regex(pattern = r"^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$"))]
    pub ignore_inbound_ports: String,

    /// Outbound ports not redirected to the proxy (`ignoreOutboundPorts`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(regex(pattern = r"^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$"))]
    pub ignore_outbound_ports: String,

    /// The iptables variant the plugin calls; unset: the release's
    /// (`legacy` to 2.18, `nft` from 2.19).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::optional_enum::<IptablesMode>")]
    pub iptables_mode: Option<IptablesMode>,

    /// Where the nodes keep CNI network configuration (`destCNINetDir`).
    #[serde(default = "default_cni_conf_dir")]
    #[schemars(length(min = 1, max = 4096))]
    pub conf_dir: String,

    /// Where the nodes keep CNI plugin binaries (`destCNIBinDir`).
    #[serde(default = "default_cni_bin_dir")]
    #[schemars(length(min = 1, max = 4096))]
    pub bin_dir: String,

    /// PriorityClass of the DaemonSet's pods: a node's pods cannot start
    /// meshed before the plugin runs there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,

    /// Tolerations of the DaemonSet's pods; unset: tolerate every taint
    /// (the chart's `operator: Exists`), so every node gets the plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<k8s_openapi::api::core::v1::Toleration>>,
}

impl Default for CniSpec {
    fn default() -> Self {
        Self {
            namespace: default_cni_namespace(),
            log_level: default_cni_log_level(),
            ignore_inbound_ports: String::new(),
            ignore_outbound_ports: String::new(),
            iptables_mode: None,
            conf_dir: default_cni_conf_dir(),
            bin_dir: default_cni_bin_dir(),
            priority_class_name: None,
            tolerations: None,
        }
    }
}

/// The iptables variant: as Linkerd spells it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IptablesMode {
    Legacy,
    Nft,
}

fn default_cni_namespace() -> String {
    "linkerd-cni".to_owned()
}

fn default_cni_log_level() -> String {
    "info".to_owned()
}

fn default_cni_conf_dir() -> String {
    "/etc/cni/net.d".to_owned()
}

fn default_cni_bin_dir() -> String {
    "/opt/cni/bin".to_owned()
}

/// How a running Linkerd is taken over.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdoptionSpec {
    /// Keep the `linkerd-control-plane` Helm release records (Secrets
    /// `sh.helm.release.v1.linkerd-control-plane.*`) after the takeover.
    /// By default they are deleted once Keelson owns every object, so a
    /// later `helm upgrade` fails loudly instead of silently undoing
    /// Keelson's changes.
    #[serde(default)]
    pub keep_helm_release: bool,
}

impl ControlPlaneSpec {
    /// The trust domain in force: `identity.trustDomain`, else
    /// `clusterDomain` (Linkerd's chart: `identityTrustDomain | default
    /// .Values.clusterDomain`).
    pub fn trust_domain(&self) -> &str {
        self.identity
            .trust_domain
            .as_deref()
            .unwrap_or(&self.cluster_domain)
    }
}

fn default_namespace() -> String {
    "linkerd".to_owned()
}

fn default_cluster_domain() -> String {
    "cluster.local".to_owned()
}

fn default_cluster_networks() -> Vec<String> {
    [
        "10.0.0.0/8",
        "100.64.0.0/10",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "fd00::/8",
    ]
    .map(String::from)
    .to_vec()
}

/// Mesh identity settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IdentitySpec {
    /// Trust domain of workload identities, the suffix of every identity name
    /// (`<sa>.<ns>.serviceaccount.identity.<linkerd ns>.<trust domain>`).
    /// Unset, it is `clusterDomain`, as in Linkerd's chart. It cannot change
    /// once the control plane is installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub trust_domain: Option<String>,

    /// Where the issuer certificate comes from: `Managed` (Keelson generates
    /// and rotates the trust anchor and the issuer), `External` (an issuer
    /// Secret `linkerd-identity-issuer` of type `kubernetes.io/tls` with a
    /// `ca.crt`, typically from cert-manager; Keelson distributes its anchors
    /// and watches expiry but generates nothing), or `OfflineRoot` (the same
    /// Secret, and when the issuer is due Keelson asks for the next one to be
    /// signed off the cluster: see `status.identity.issuerRequest`).
    #[serde(default)]
    pub issuer: IssuerMode,

    /// Validity of a trust anchor Keelson generates, as a duration (`8760h`).
    #[serde(default = "default_anchor_lifetime")]
    pub trust_anchor_lifetime: Duration,

    /// Validity of an issuer certificate Keelson generates (`720h`).
    #[serde(default = "default_issuer_lifetime")]
    pub issuer_lifetime: Duration,

    /// Validity of the workload certificates the identity controller issues.
    /// Linkerd's default is 24 hours.
    #[serde(default = "default_issuance_lifetime")]
    pub issuance_lifetime: Duration,

    /// Clock skew the identity controller tolerates when issuing certificates.
    #[serde(default = "default_clock_skew")]
    pub clock_skew_allowance: Duration,

    /// When Keelson replaces its managed certificates.
    #[serde(default)]
    pub rotation: RotationSpec,

    /// Proxies prove their identity with a projected ServiceAccount token
    /// of audience `identity.l5d.io` (the chart's
    /// `identity.serviceAccountTokenProjection`, on by default). Off, they
    /// use the pod's own API token, and pods that do not mount one
    /// (`automountServiceAccountToken: false`) are not injected.
    #[serde(default = "default_true")]
    pub service_account_token_projection: bool,
}

impl Default for IdentitySpec {
    fn default() -> Self {
        Self {
            service_account_token_projection: true,
            trust_domain: None,
            issuer: IssuerMode::default(),
            trust_anchor_lifetime: default_anchor_lifetime(),
            issuer_lifetime: default_issuer_lifetime(),
            issuance_lifetime: default_issuance_lifetime(),
            clock_skew_allowance: default_clock_skew(),
            rotation: RotationSpec::default(),
        }
    }
}

fn hours(h: u64) -> Duration {
    std::time::Duration::from_secs(h * 3600).into()
}

fn default_anchor_lifetime() -> Duration {
    hours(24 * 365)
}

fn default_issuer_lifetime() -> Duration {
    hours(24 * 30)
}

fn default_issuance_lifetime() -> Duration {
    hours(24)
}

fn default_clock_skew() -> Duration {
    std::time::Duration::from_secs(20).into()
}

/// Who provides the identity issuer.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum IssuerMode {
    /// Keelson generates and rotates the trust anchor and the issuer.
    #[default]
    Managed,
    /// An external issuer (for example cert-manager) maintains the
    /// `linkerd-identity-issuer` Secret; Keelson only distributes and watches.
    External,
    /// The trust anchor stays off the cluster. You store the first issuer
    /// in `linkerd-identity-issuer` (`tls.crt`, `tls.key`, and `ca.crt`, the
    /// bundle), signed with your root. When it passes `renewAtPercent` of
    /// its life, Keelson makes the next issuer's key and a certificate
    /// signing request in Secret `keelson-identity-issuer-request.<name>` in
    /// its own namespace (see `status.identity.issuerRequest`); sign
    /// `tls.csr` offline as a CA (path length 0) and add the certificate as
    /// `tls.crt` to that Secret. Keelson checks it and installs it.
    OfflineRoot,
}

/// When managed certificates are replaced.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RotationSpec {
    /// Replace a managed certificate once this percentage of its lifetime has
    /// passed (1 to 99). Defaults to 70.
    #[serde(default = "default_renew_at_percent")]
    #[schemars(range(min = 1, max = 99))]
    pub renew_at_percent: u8,

    /// Rotate the trust anchor automatically when it ages past
    /// `renewAtPercent`. When false, the anchor is rotated only on demand
    /// (annotation `keelson.dev/rotate-trust-anchor`, or an anchor declared
    /// in Secret `keelson-identity-next-trust-anchor`), and
    /// `CertificatesExpiringSoon` warns as it nears expiry.
    #[serde(default = "default_true")]
    pub automatic_trust_anchor_rotation: bool,
}

impl Default for RotationSpec {
    fn default() -> Self {
        Self {
            renew_at_percent: default_renew_at_percent(),
            automatic_trust_anchor_rotation: true,
        }
    }
}

fn default_renew_at_percent() -> u8 {
    70
}

fn default_true() -> bool {
    true
}

/// Defaults for the proxies of meshed workloads.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxySpec {
    /// Proxy log filter, in the proxy's own syntax. Defaults to Linkerd's
    /// `warn,linkerd=info,hickory=error`.
    #[serde(default = "default_log_level")]
    #[schemars(length(min = 1, max = 1024))]
    pub log_level: String,

    /// Proxy log format: `plain` or `json`.
    #[serde(default)]
    pub log_format: LogFormat,

    /// Resource requests and limits of the proxy container, in Kubernetes
    /// quantities. Unset fields are left out of the container.
    #[serde(default)]
    pub resources: ProxyResources,

    /// Policy for inbound connections no Server or policy covers.
    #[serde(default)]
    pub default_inbound_policy: DefaultPolicy,

    /// Run the proxy as a Kubernetes native sidecar (an init container with
    /// `restartPolicy: Always`): `ReleaseDefault` as the release's chart does
    /// (a regular container up to 2.19, a native sidecar from 2.20),
    /// `Enabled`, `Disabled`, or `Auto` (enabled where the API server is 1.29
    /// or newer).
    ///
    /// ControlPlanes created before `ReleaseDefault` existed were stored
    /// with `Disabled`, then the default; they keep regular containers
    /// across an upgrade to 2.20 until the field is changed.
    #[serde(default)]
    pub native_sidecar: NativeSidecar,

    /// Start application containers only once the proxy is ready
    /// (`linkerd-await` post-start hook). Defaults to true, as in Linkerd.
    #[serde(default = "default_true")]
    pub r#await: bool,

    /// Settings of the proxy's inbound side, as the chart's `proxy.inbound`:
    /// scope, protocol, parameter, value (`server: {http2:
    /// {keepAliveInterval: 10s, keepAliveTimeout: 3s}}`, Linkerd's
    /// defaults, which these are laid over). Each becomes the proxy env var
    /// `LINKERD2_PROXY_INBOUND_<SCOPE>_<PROTOCOL>_<PARAMETER>` (names in
    /// snake case); values are strings.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inbound: ProxySideSettings,

    /// Settings of the proxy's outbound side, as `inbound` (the chart's
    /// `proxy.outbound`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outbound: ProxySideSettings,
}

/// One side of the proxy's settings: scope, protocol, parameter, value.
pub type ProxySideSettings = BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>;

impl Default for ProxySpec {
    fn default() -> Self {
        Self {
            log_level: default_log_level(),
            log_format: LogFormat::default(),
            resources: ProxyResources::default(),
            default_inbound_policy: DefaultPolicy::default(),
            native_sidecar: NativeSidecar::default(),
            r#await: true,
            inbound: BTreeMap::new(),
            outbound: BTreeMap::new(),
        }
    }
}

fn default_log_level() -> String {
    "warn,linkerd=info,hickory=error".to_owned()
}

/// Proxy log format.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum LogFormat {
    #[default]
    Plain,
    Json,
}

/// Requests and limits for one resource.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceBounds {
    /// Request, as a Kubernetes quantity (`100m`, `20Mi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// Limit, as a Kubernetes quantity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
}

/// Proxy container resources, shaped as Linkerd's `proxy.resources` values.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxyResources {
    #[serde(default)]
    pub cpu: ResourceBounds,
    #[serde(default)]
    pub memory: ResourceBounds,
    #[serde(default, rename = "ephemeral-storage")]
    pub ephemeral_storage: ResourceBounds,
}

/// Linkerd's default inbound policies.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DefaultPolicy {
    /// Allow all traffic, meshed or not.
    #[default]
    #[serde(rename = "all-unauthenticated")]
    AllUnauthenticated,
    /// Allow only meshed (mTLS) traffic.
    #[serde(rename = "all-authenticated")]
    AllAuthenticated,
    /// Allow traffic from the cluster networks only.
    #[serde(rename = "cluster-unauthenticated")]
    ClusterUnauthenticated,
    /// Allow only meshed traffic from the cluster networks.
    #[serde(rename = "cluster-authenticated")]
    ClusterAuthenticated,
    /// Deny everything not explicitly authorized.
    #[serde(rename = "deny")]
    Deny,
    /// Allow everything but count what `deny` would refuse.
    #[serde(rename = "audit")]
    Audit,
}

/// Whether proxies run as native sidecars. (Not `On`/`Off`: YAML 1.1 tools,
/// kubectl among them, read those as booleans.)
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum NativeSidecar {
    /// As the release's chart (`proxy.nativeSidecar`): a regular container
    /// up to 2.19, a native sidecar from 2.20, whose floor (1.31) has them.
    #[default]
    ReleaseDefault,
    /// Native sidecars where the API server is 1.29 or newer.
    Auto,
    /// Always native sidecars (requires Kubernetes 1.29+).
    Enabled,
    /// A regular container, as Linkerd did by default up to 2.19.
    Disabled,
}

/// Admission webhook behaviour.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSpec {
    /// What the API server does when a webhook cannot be reached: `Ignore`
    /// (pods are created without a proxy) or `Fail` (pod creation fails).
    /// Unset: `Fail` with `highAvailability`, `Ignore` otherwise, as in Linkerd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::optional_enum::<FailurePolicy>")]
    pub failure_policy: Option<FailurePolicy>,
}

/// Webhook failure policy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum FailurePolicy {
    Ignore,
    Fail,
}

/// How version changes are carried out.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeSpec {
    /// How long each component may take to become available after it is
    /// changed before the upgrade counts as failed (`10m`).
    #[serde(default = "default_health_deadline")]
    pub health_deadline: Duration,

    /// Return to the previous version when a health gate fails.
    #[serde(default = "default_true")]
    pub automatic_rollback: bool,
}

impl Default for UpgradeSpec {
    fn default() -> Self {
        Self {
            health_deadline: default_health_deadline(),
            automatic_rollback: true,
        }
    }
}

fn default_health_deadline() -> Duration {
    std::time::Duration::from_secs(600).into()
}

/// Observed state of a ControlPlane.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ControlPlaneStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready`, `Progressing`, `Degraded`, and `KubernetesVersionSupported`
    /// and `CertificatesExpiringSoon` where they apply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// What the control plane is doing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::optional_enum::<ControlPlanePhase>")]
    pub phase: Option<ControlPlanePhase>,

    /// Linkerd release the running control plane is at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<String>,

    /// Linkerd release the control plane is moving to, while it moves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_version: Option<String>,

    /// State of each control-plane component.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<ComponentStatus>,

    /// Trust anchors and issuer in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<IdentityStatus>,

    /// CNI mode's plugin, as every node runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni: Option<CniStatus>,

    /// The version change under way, persisted step by step so that a
    /// restarted operator resumes exactly where it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<UpgradeState>,

    /// The last version change that failed its health gates. Keelson does not
    /// retry it until the ControlPlane's spec changes again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_upgrade: Option<FailedUpgrade>,

    /// The most recent version changes, newest first (at most ten).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<UpgradeRecord>,

    /// A Linkerd control plane Keelson did not install, found in
    /// `spec.namespace` before Keelson wrote anything there. Keelson leaves
    /// it untouched: replacing its identity would break every meshed pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing_installation: Option<ExistingInstallation>,

    /// CustomResourceDefinitions the release installs that exist without
    /// Keelson's label: installed by someone else (Linkerd's CRD chart, an
    /// install of the Gateway API), left exactly as they are, since users'
    /// objects live in them and Keelson's could be weaker or of another
    /// bundle. Label one `keelson.dev/control-plane=<this ControlPlane>` to
    /// hand it to Keelson.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub foreign_crds: Vec<ForeignCrd>,

    /// How many validation facts of the installed CRDs were left out
    /// because the cluster's API server cannot take them: CEL rules
    /// (`x-kubernetes-validations`) before Kubernetes 1.25, empty-string
    /// defaults before 1.22. Objects those facts would refuse or default
    /// (Gateway API routes) are stored as they come. Unset from 1.25 on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub omitted_crd_facts: Option<u32>,

    /// The takeover of a running Linkerd (`spec.adoption`), step by step,
    /// so that a restarted operator resumes where it was. Kept once done,
    /// as a record of what was adopted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adoption: Option<AdoptionStatus>,
}

/// A CustomResourceDefinition someone else installed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForeignCrd {
    pub name: String,
    /// For a Gateway API CRD, the bundle it is of (its
    /// `gateway.networking.k8s.io/bundle-version`); the release names the
    /// one it was tested with in `keelson versions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_version: Option<String>,
}

/// A takeover of a running Linkerd, as far as it went.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdoptionStatus {
    /// The step under way, or `Adopted`.
    pub phase: AdoptionPhase,
    /// When the takeover started.
    pub started_at: Time,
    /// The Linkerd release found running, adopted as the current version.
    pub version: String,
    /// Digest of the adopted trust bundle, computed as Linkerd computes
    /// `linkerd.io/trust-root-sha256`: pods that carry it are up to date.
    pub trust_root_sha256: String,
    /// What the step waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
}

/// The steps of a takeover, in order. Each is judged from what is observed,
/// so repeating one after a crash does no harm. Before the first, the
/// trust bundle was copied into Keelson's anchor Secret (with no key:
/// Keelson has none) and the issuer checked against it.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
pub enum AdoptionPhase {
    /// Field ownership of every object Keelson renders moves from Helm and
    /// kubectl to Keelson, then Keelson applies its render.
    TakeOwnership,
    /// Linkerd's injector registration is pointed at Keelson's injector,
    /// Keelson's own registration filled, then Linkerd's removed.
    HandOverInjector,
    /// Linkerd's injector Deployment, Service, Secret and RBAC are deleted.
    RemoveLinkerdInjector,
    /// The `linkerd-control-plane` Helm release records are deleted.
    ForgetHelmRelease,
    /// Done.
    Adopted,
}

/// What Keelson found of a Linkerd installation it did not make.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExistingInstallation {
    /// The Linkerd release it runs, from its controller images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Its objects, as `Kind/name`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<String>,
    /// Helm releases recorded in the namespace (`linkerd-control-plane`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub helm_releases: Vec<String>,
    /// Field managers that applied its objects (`helm`,
    /// `kubectl-client-side-apply`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managers: Vec<String>,
    /// The trust anchors it publishes, with fingerprints and expiry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trust_anchors: Vec<CertificateSummary>,
}

/// A version change in progress.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeState {
    /// Release running before the change.
    pub from: String,
    /// Release asked for.
    pub to: String,
    /// Release being rolled out now: a step on the path from `from` to `to`
    /// (one stable release at a time), or `from` again when rolling back.
    pub step: String,
    /// Component being rolled out and gated on.
    pub stage: UpgradeStage,
    /// When the current stage started; its health deadline counts from here.
    pub stage_started_at: Time,
    /// Whether this is a rollback to `from` after a failed gate.
    #[serde(default)]
    pub rolling_back: bool,
}

/// The gated stages of a version change, in order.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
pub enum UpgradeStage {
    /// CNI mode's plugin DaemonSet, rolled out on every node first.
    Cni,
    /// Shared objects and the identity Deployment.
    Identity,
    /// The destination Deployment.
    Destination,
}

/// A version change that failed and was rolled back (or stopped).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailedUpgrade {
    /// Release that failed.
    pub version: String,
    /// `metadata.generation` it was asked for at.
    pub generation: i64,
    /// What failed.
    pub message: String,
}

/// What a control plane is doing.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ControlPlanePhase {
    Installing,
    Upgrading,
    RollingBack,
    Ready,
    Degraded,
    Failed,
    Deleting,
}

/// State of one control-plane component (a Deployment).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    /// Component name, such as `identity` or `destination`.
    pub name: String,
    /// Linkerd release the component's pods run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Replicas asked for.
    pub desired_replicas: i32,
    /// Replicas available.
    pub available_replicas: i32,
    /// Whether the component is fully rolled out and available.
    pub available: bool,
}

/// CNI mode's plugin as the nodes run it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CniStatus {
    /// SHA-256 of the redirect settings (proxy ports and UID, ignored
    /// ports, iptables mode) the plugin on every node applies to new pods:
    /// set once its DaemonSet is rolled out and available everywhere, kept
    /// while a change rolls. The injector writes it on each pod it meshes
    /// (`keelson.dev/cni-redirect-sha256`), so a DataPlane knows which pods
    /// were set up by older settings and restarts them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_sha256: Option<String>,
}

/// Certificates the mesh identity uses.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IdentityStatus {
    /// SHA-256 of the trust-anchor bundle the proxies are given, as found in
    /// their `linkerd.io/trust-root-sha256` annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_root_sha256: Option<String>,
    /// The trust anchors in the bundle.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trust_anchors: Vec<CertificateSummary>,
    /// The issuer certificate in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<CertificateSummary>,
    /// The trust-anchor rotation under way, persisted phase by phase so that
    /// a restarted operator resumes exactly where it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<AnchorRotation>,
    /// When the last trust-anchor rotation finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation: Option<Time>,
    /// The value of the `keelson.dev/rotate-trust-anchor` annotation that
    /// started the last on-demand rotation; a new value starts another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_request: Option<String>,
    /// The trust anchor declared in Secret
    /// `keelson-identity-next-trust-anchor`, as last checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_anchor: Option<DeclaredAnchor>,
    /// With an `OfflineRoot` issuer: the next issuer Keelson asks you to
    /// sign, while it waits for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_request: Option<IssuerRequest>,
}

/// A certificate signing request for the next issuer, waiting to be signed
/// with a trust anchor kept off the cluster.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRequest {
    /// `<namespace>/<name>` of the Secret holding the request (`tls.csr`)
    /// and the new key; the signed certificate goes in its `tls.crt`.
    pub secret: String,
    /// SHA-256 of the request (PEM), so you can tell it is the one you sign.
    pub sha256: String,
    /// Why the certificate found in `tls.crt` was not installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<String>,
}

/// Annotation on a ControlPlane that asks for a trust-anchor rotation now.
/// Any new value (a date, a ticket number) starts one.
pub const ROTATE_TRUST_ANCHOR: &str = "keelson.dev/rotate-trust-anchor";

/// Secret (`tls.crt` and `tls.key`, as `kubectl create secret tls` makes it)
/// in Keelson's namespace, named `<this>.<ControlPlane name>`, that declares
/// the next trust anchor of a managed identity: Keelson checks it and
/// rotates to it. Labelled `keelson.dev/control-plane: <ControlPlane name>`,
/// it is seen at once; otherwise at the next periodic reconcile.
pub const DECLARED_TRUST_ANCHOR_SECRET: &str = "keelson-identity-next-trust-anchor";

/// What Keelson made of a declared trust anchor.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeclaredAnchor {
    /// SHA-256 fingerprint of the declared certificate; unset when it could
    /// not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    pub state: DeclaredAnchorState,
    /// Why it was rejected, or what it waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// States of a declared trust anchor.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum DeclaredAnchorState {
    /// Valid; waits for the rotation under way to finish.
    Pending,
    /// A rotation to it started (or it is the anchor in use already).
    Adopted,
    /// Not usable as a trust anchor; nothing changed.
    Rejected,
}

/// A trust-anchor rotation: the new anchor joins the bundle, then signs the
/// issuer, then the old one leaves. Every phase waits until the control
/// plane and every meshed pod carry that phase's bundle.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnchorRotation {
    pub phase: RotationPhase,
    /// What started it: `Scheduled` (the anchor aged past
    /// `renewAtPercent`), `Requested` (the annotation), `Declared` (Secret
    /// `keelson-identity-next-trust-anchor`) or `Resumed` (a new anchor
    /// found stored with no rotation recorded).
    pub trigger: String,
    pub started_at: Time,
    /// When the current phase started.
    pub phase_started_at: Time,
    /// SHA-256 fingerprint of the anchor being replaced.
    pub old_anchor_sha256: String,
    /// SHA-256 fingerprint of the anchor replacing it.
    pub new_anchor_sha256: String,
    /// What the current phase waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
}

/// Phases of a trust-anchor rotation, in order.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
pub enum RotationPhase {
    /// The bundle holds the old and the new anchor; the old one still signs
    /// the issuer.
    AddAnchor,
    /// The new anchor signs the issuer; the bundle still holds the old one
    /// for certificates the old issuer signed.
    SwitchIssuer,
    /// The bundle holds only the new anchor.
    RemoveAnchor,
}

/// The public facts of one certificate.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateSummary {
    /// Subject common name.
    pub subject: String,
    /// SHA-256 fingerprint of the DER certificate, hex.
    pub sha256: String,
    pub not_before: Time,
    pub not_after: Time,
}

/// One version change.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeRecord {
    /// Version before the change; unset for the first install.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Version asked for.
    pub to: String,
    pub started_at: Time,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    pub outcome: UpgradeOutcome,
    /// Why it ended as it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// How a version change ended.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum UpgradeOutcome {
    InProgress,
    Succeeded,
    RolledBack,
    Failed,
}
