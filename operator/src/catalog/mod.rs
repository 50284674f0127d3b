//! The embedded release catalog: every Linkerd release Keelson can install,
//! what it runs, what it needs, and how to get from one release to another.
//!
//! The data lives in `releases.yaml` next to this file, checked against
//! Linkerd's charts for each tag; this module parses it once and plans
//! upgrades over it.

use serde::Deserialize;
use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

/// A Linkerd edge release name, such as `edge-25.4.4`. Stable releases are
/// edge releases too (2.18 is `edge-25.4.4`), so this orders every release.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    year: u16,
    month: u8,
    number: u16,
}

/// A release name that is not `edge-YY.M.N`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a Linkerd release name; expected edge-YY.M.N, such as edge-25.4.4")]
pub struct ParseVersionError(String);

impl FromStr for Version {
    type Err = ParseVersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseVersionError(s.to_owned());
        let rest = s.strip_prefix("edge-").ok_or_else(err)?;
        let mut parts = rest.split('.');
        let mut next = || -> Result<u16, ParseVersionError> {
            let p = parts.next().ok_or_else(err)?;
            // Reject signs and leading zeros so every release has one spelling.
            if p.is_empty()
                || !p.bytes().all(|b| b.is_ascii_digit())
                || (p.len() > 1 && p.starts_with('0'))
            {
                return Err(err());
            }
            p.parse().map_err(|_| err())
        };
        let (year, month, number) = (next()?, next()?, next()?);
        if parts.next().is_some() || !(1..=12).contains(&month) {
            return Err(err());
        }
        Ok(Self {
            year,
            month: month as u8,
            number,
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "edge-{}.{}.{}", self.year, self.month, self.number)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A Kubernetes minor version, such as 1.23.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct KubeVersion {
    pub major: u32,
    pub minor: u32,
}

impl KubeVersion {
    /// The version an API server reports; providers append suffixes to the
    /// minor version ("27+").
    pub fn of_server(info: &k8s_openapi::apimachinery::pkg::version::Info) -> Result<Self, String> {
        let minor: String = info
            .minor
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        Self::try_from(format!("{}.{minor}", info.major))
    }
}

impl TryFrom<String> for KubeVersion {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        let (major, minor) = s
            .split_once('.')
            .ok_or_else(|| format!("{s:?} is not MAJOR.MINOR"))?;
        let num = |p: &str| {
            p.parse::<u32>()
                .map_err(|_| format!("{s:?} is not MAJOR.MINOR"))
        };
        Ok(Self {
            major: num(major)?,
            minor: num(minor)?,
        })
    }
}

impl fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// One release Keelson can install.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Release {
    pub version: Version,
    /// The stable minor this release is or leads up to: 18 for 2.18. Linkerd's
    /// skew rule is counted in these.
    pub stable_minor: u32,
    /// Oldest Kubernetes the release's chart accepts (`kubeVersion`).
    pub kubernetes_floor: KubeVersion,
    pub images: Images,
    /// Linkerd's own CustomResourceDefinitions (`charts/linkerd-crds`),
    /// installed with every control plane.
    pub crds: Vec<CrdVersions>,
    /// The Gateway API CRDs the chart bundles.
    pub gateway_api: GatewayApiBundle,
    /// Whether the chart installs the Gateway API CRDs unless told otherwise.
    pub install_gateway_api_by_default: bool,
    /// `proxyInit.iptablesMode` default: `legacy` or `nft`.
    pub iptables_mode: String,
    /// `proxy.nativeSidecar` default: whether proxies are native sidecars
    /// unless told otherwise (true from edge-26.5.2, 2.20).
    pub native_sidecar_by_default: bool,
    /// What this release renders differently from 2.17.
    pub features: BTreeSet<Feature>,
}

/// A release is its version: the catalog holds one entry per version (a
/// test checks), and the importer writes each entry from its tag.
impl PartialEq for Release {
    fn eq(&self, other: &Self) -> bool {
        self.version == other.version
    }
}

impl Release {
    pub fn has(&self, feature: Feature) -> bool {
        self.features.contains(&feature)
    }

    /// Whether this is `version` (an edge release name, written in the
    /// code that gates on it) or newer.
    pub fn since(&self, version: &str) -> bool {
        let v: Version = version.parse().expect("a valid release name");
        self.version >= v
    }
}

/// One CustomResourceDefinition of a release: its kind and the versions the
/// chart serves.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CrdVersions {
    pub group: String,
    pub kind: String,
    /// Served versions, in the chart's order.
    pub versions: Vec<String>,
    /// The version objects are stored in; one of `versions`.
    pub storage: String,
    /// Versions served with a deprecation warning.
    #[serde(default)]
    pub deprecated: Vec<String>,
}

/// The Gateway API CRDs a release's chart bundles.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayApiBundle {
    /// The Gateway API release whose API versions the bundle serves
    /// (annotation `gateway.networking.k8s.io/bundle-version`).
    pub bundle_version: String,
    /// `standard` or `experimental` (annotation `gateway.networking.k8s.io/channel`).
    pub channel: String,
    /// The `api-approved.kubernetes.io` annotation the API server requires of
    /// CRDs in `*.k8s.io` groups.
    pub api_approval: String,
    pub crds: Vec<CrdVersions>,
}

/// Rendering differences between releases, named for what they change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Feature {
    /// Proxy env `_pod_uid` and `_pod_containerName` (2.18+).
    ProxyPodMetadataEnv,
    /// Proxy env `LINKERD2_PROXY_CORES` and `LINKERD2_PROXY_CORES_MIN` (2.18+).
    ProxyCoresEnv,
    /// Proxy env `LINKERD2_PROXY_OUTBOUND_METRICS_HOSTNAME_LABELS` (2.18+).
    ProxyHostnameLabelsEnv,
    /// Proxy env `_pod_ip` (2.19+).
    ProxyPodIpEnv,
    /// Destination arg `-outbound-transport-mode` (2.18+).
    OutboundTransportModeArg,
    /// Container ports named per container (`ident-grpc`, `dest-admin`, ...) (2.19+).
    UniquePortNames,
}

/// Container images of a release.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Images {
    /// Image of identity, destination, sp-validator (and policy, from 2.19).
    pub controller: String,
    pub proxy: String,
    /// Image of the CNI plugin's DaemonSet (`charts/linkerd2-cni`), which
    /// has versions of its own.
    pub cni_plugin: String,
    /// Image of `linkerd-init`; unset where it runs from the proxy image.
    #[serde(default)]
    pub proxy_init: Option<String>,
    /// Image of the policy controller where it is separate from `controller`.
    #[serde(default)]
    pub policy_controller: Option<String>,
}

/// Why a version cannot be installed or reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Parse(#[from] ParseVersionError),
    #[error("Linkerd {0} is not in Keelson's release catalog; known releases: {1}")]
    Unknown(Version, String),
}

/// The embedded catalog, parsed once.
pub fn releases() -> &'static [Release] {
    static CATALOG: OnceLock<Vec<Release>> = OnceLock::new();
    CATALOG.get_or_init(|| {
        let mut all: Vec<Release> = yaml_serde::from_str(include_str!("releases.yaml"))
            .expect("releases.yaml parses (checked by a unit test)");
        all.sort_by_key(|r| r.version);
        all
    })
}

/// The catalog entry for a release name.
pub fn find(version: &str) -> Result<&'static Release, CatalogError> {
    let v: Version = version.parse()?;
    releases()
        .iter()
        .find(|r| r.version == v)
        .ok_or_else(|| CatalogError::Unknown(v, known()))
}

fn known() -> String {
    releases()
        .iter()
        .map(|r| format!("{} (2.{})", r.version, r.stable_minor))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why an upgrade path is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(
        "no path from {from} to {to}: Linkerd supports moving one stable release at a time, and the catalog has no release of 2.{missing} to pass through"
    )]
    Gap {
        from: Version,
        to: Version,
        missing: u32,
    },
}

/// The releases to install, in order, to go from `from` to `to`.
///
/// Linkerd lets the control plane run at most one stable release ahead of
/// proxies, so a jump across several stable releases goes through the newest
/// catalog release of each one in between; proxies are rolled at every step.
/// Moving down (a rollback) follows the same rule in reverse.
pub fn upgrade_path(from: &str, to: &str) -> Result<Vec<&'static Release>, PathError> {
    let (from, to) = (find(from)?, find(to)?);
    let (lo, hi) = (
        from.stable_minor.min(to.stable_minor),
        from.stable_minor.max(to.stable_minor),
    );
    let mut path = Vec::new();
    for minor in lo + 1..hi {
        // The newest release of each stable line in between.
        let step = releases()
            .iter()
            .rev()
            .find(|r| r.stable_minor == minor)
            .ok_or(PathError::Gap {
                from: from.version,
                to: to.version,
                missing: minor,
            })?;
        path.push(step);
    }
    if to.version < from.version {
        path.reverse();
    }
    if from.version != to.version {
        path.push(to);
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_order_and_print() {
        let v: Version = "edge-25.4.4".parse().unwrap();
        assert_eq!(v.to_string(), "edge-25.4.4");
        assert!(
            v < "edge-25.10.7".parse().unwrap(),
            "months compare as numbers"
        );
        assert!("edge-24.11.8".parse::<Version>().unwrap() < v);
        for bad in [
            "25.4.4",
            "edge-25.4",
            "edge-25.4.4.1",
            "edge-25.13.1",
            "edge-25.04.4",
            "edge-25.-4.4",
            "stable-2.18.0",
            "",
        ] {
            let err = bad.parse::<Version>().unwrap_err();
            assert!(err.to_string().contains("edge-YY.M.N"), "{bad}: {err}");
        }
    }

    #[test]
    fn catalog_covers_the_stable_releases_in_order() {
        let all = releases();
        for (stable, edge) in [
            (17, "edge-24.11.8"),
            (18, "edge-25.4.4"),
            (19, "edge-25.10.7"),
            (20, "edge-26.6.3"),
            (21, "edge-26.8.3"),
        ] {
            let r = find(edge).unwrap();
            assert_eq!(r.stable_minor, stable, "{edge}");
        }
        for pair in all.windows(2) {
            assert!(
                pair[0].version < pair[1].version,
                "duplicate {}",
                pair[1].version
            );
            assert!(
                pair[0].stable_minor <= pair[1].stable_minor,
                "stable lines out of order at {}",
                pair[1].version
            );
        }
        for r in all {
            assert!(
                r.images.proxy.ends_with(&format!(":{}", r.version)),
                "{}: proxy {}",
                r.version,
                r.images.proxy
            );
            assert!(
                r.images.controller.ends_with(&format!(":{}", r.version)),
                "{}",
                r.version
            );
            assert!(
                ["legacy", "nft"].contains(&r.iptables_mode.as_str()),
                "{}",
                r.version
            );
        }
    }

    fn crd_set(crds: &[CrdVersions]) -> Vec<String> {
        crds.iter()
            .map(|c| {
                format!(
                    "{} {} [{}] {}",
                    c.group,
                    c.kind,
                    c.versions.join(" "),
                    c.storage
                )
            })
            .collect()
    }

    #[test]
    fn crd_sets_are_consistent() {
        for r in releases() {
            let mut kinds = BTreeSet::new();
            for c in r.crds.iter().chain(&r.gateway_api.crds) {
                let at = format!("{} {} {}", r.version, c.group, c.kind);
                assert!(kinds.insert((&c.group, &c.kind)), "{at} listed twice");
                assert!(c.versions.contains(&c.storage), "{at}: storage not served");
                assert!(
                    c.deprecated
                        .iter()
                        .all(|d| c.versions.contains(d) && *d != c.storage),
                    "{at}: deprecated {:?}",
                    c.deprecated
                );
                let unique: BTreeSet<_> = c.versions.iter().collect();
                assert_eq!(unique.len(), c.versions.len(), "{at}");
            }
            assert!(
                r.gateway_api
                    .crds
                    .iter()
                    .all(|c| c.group == "gateway.networking.k8s.io")
            );
        }
    }

    /// The sets as charts/linkerd-crds defines them at each tag.
    #[test]
    fn crd_sets_follow_linkerds_charts() {
        let linkerd = [
            "policy.linkerd.io Server [v1alpha1 v1beta1 v1beta2 v1beta3] v1beta3",
            "policy.linkerd.io ServerAuthorization [v1alpha1 v1beta1] v1beta1",
            "policy.linkerd.io AuthorizationPolicy [v1alpha1] v1alpha1",
            "policy.linkerd.io MeshTLSAuthentication [v1alpha1] v1alpha1",
            "policy.linkerd.io NetworkAuthentication [v1alpha1] v1alpha1",
            "policy.linkerd.io HTTPRoute [v1alpha1 v1beta1 v1beta2 v1beta3] v1beta3",
            "policy.linkerd.io HTTPLocalRateLimitPolicy [v1alpha1] v1alpha1",
            "policy.linkerd.io EgressNetwork [v1alpha1] v1alpha1",
            "linkerd.io ServiceProfile [v1alpha1 v1alpha2] v1alpha2",
            "workload.linkerd.io ExternalWorkload [v1alpha1 v1beta1] v1beta1",
        ];
        let v1_1_1 = [
            "gateway.networking.k8s.io HTTPRoute [v1 v1beta1] v1",
            "gateway.networking.k8s.io GRPCRoute [v1 v1alpha2] v1",
            "gateway.networking.k8s.io TLSRoute [v1alpha2] v1alpha2",
            "gateway.networking.k8s.io TCPRoute [v1alpha2] v1alpha2",
        ];
        let v0_7_1 = [
            "gateway.networking.k8s.io HTTPRoute [v1alpha2 v1beta1] v1beta1",
            "gateway.networking.k8s.io GRPCRoute [v1alpha2] v1alpha2",
            "gateway.networking.k8s.io TLSRoute [v1alpha2] v1alpha2",
            "gateway.networking.k8s.io TCPRoute [v1alpha2] v1alpha2",
        ];
        for (edge, bundle, gateway, by_default) in [
            ("edge-24.11.8", "v0.7.1", &v0_7_1, true),
            ("edge-25.4.4", "v1.1.1", &v1_1_1, true),
            ("edge-25.10.7", "v1.1.1", &v1_1_1, false),
            ("edge-26.6.3", "v1.1.1", &v1_1_1, false),
            ("edge-26.8.3", "v1.1.1", &v1_1_1, false),
        ] {
            let r = find(edge).unwrap();
            assert_eq!(crd_set(&r.crds), linkerd, "{edge}");
            assert_eq!(crd_set(&r.gateway_api.crds), *gateway, "{edge}");
            assert_eq!(r.gateway_api.bundle_version, bundle, "{edge}");
            assert_eq!(r.install_gateway_api_by_default, by_default, "{edge}");
        }
    }

    /// What linkerd2#14577 (edge-25.11.3) and #15267 (edge-26.5.2) changed,
    /// stated as the catalog's data: proxy-init's own image until the
    /// first, native sidecars by default from the second, 2.20's floor.
    #[test]
    fn release_data_follows_the_edges_that_changed_it() {
        let combined: Version = "edge-25.11.3".parse().unwrap();
        let native: Version = "edge-26.5.2".parse().unwrap();
        for r in releases() {
            assert_eq!(
                r.images.proxy_init.is_none(),
                r.version >= combined,
                "{}",
                r.version
            );
            assert_eq!(
                r.native_sidecar_by_default,
                r.version >= native,
                "{}",
                r.version
            );
        }
        for edge in ["edge-26.6.3", "edge-26.8.3"] {
            let r = find(edge).unwrap();
            assert_eq!(r.kubernetes_floor.to_string(), "1.31", "{edge}");
            assert_eq!(r.iptables_mode, "nft", "{edge}");
        }
    }

    #[test]
    fn unknown_versions_name_the_known_ones() {
        let err = find("edge-20.1.1").unwrap_err().to_string();
        assert!(err.contains("not in Keelson's release catalog"), "{err}");
        assert!(err.contains("edge-25.4.4 (2.18)"), "{err}");
    }

    fn names(path: &[&Release]) -> Vec<String> {
        path.iter().map(|r| r.version.to_string()).collect()
    }

    #[test]
    fn upgrades_step_through_each_stable_release() {
        assert_eq!(
            names(&upgrade_path("edge-25.4.4", "edge-25.10.7").unwrap()),
            ["edge-25.10.7"]
        );
        assert_eq!(
            names(&upgrade_path("edge-24.11.8", "edge-25.10.7").unwrap()),
            ["edge-25.4.4", "edge-25.10.7"]
        );
        assert_eq!(
            names(&upgrade_path("edge-25.10.7", "edge-24.11.8").unwrap()),
            ["edge-25.4.4", "edge-24.11.8"]
        );
        // 2.19 to the newest edge goes through 2.20.
        assert_eq!(
            names(&upgrade_path("edge-25.10.7", "edge-26.8.3").unwrap()),
            ["edge-26.6.3", "edge-26.8.3"]
        );
        assert_eq!(
            names(&upgrade_path("edge-26.8.3", "edge-25.10.7").unwrap()),
            ["edge-26.6.3", "edge-25.10.7"]
        );
        assert!(
            upgrade_path("edge-25.4.4", "edge-25.4.4")
                .unwrap()
                .is_empty()
        );
        assert!(matches!(
            upgrade_path("edge-25.4.4", "edge-99.1.1"),
            Err(PathError::Catalog(CatalogError::Unknown(..)))
        ));
    }
}
