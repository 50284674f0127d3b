//! What the validating webhook refuses in `keelson.dev` objects, beyond what
//! the CRD schema already enforces (types, enums, ranges). Kubernetes 1.20
//! has no CEL validation rules, so cross-field and cross-object checks live
//! here. Pure: the handler passes in the objects it compares against.

use crate::catalog;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use keelson_crds::dataplane::VersionPolicy;
use keelson_crds::{ControlPlane, DataPlane};
use kube::ResourceExt;
use std::fmt;
use std::net::IpAddr;

/// One refused field and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Path of the field, as `kubectl explain` spells it (`spec.version`).
    pub field: String,
    pub message: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Collects every problem of an object, so one round trip shows them all.
#[derive(Default)]
pub(crate) struct Problems(pub(crate) Vec<Invalid>);

impl Problems {
    pub(crate) fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(Invalid {
            field: field.into(),
            message: message.into(),
        });
    }

    pub(crate) fn check(&mut self, ok: bool, field: &str, message: impl FnOnce() -> String) {
        if !ok {
            self.add(field, message());
        }
    }
}

/// Problems of a ControlPlane being created (`old` is `None`) or updated.
/// `others` names the other ControlPlanes in the cluster.
pub fn control_plane(
    cp: &ControlPlane,
    old: Option<&ControlPlane>,
    others: &[String],
) -> Vec<Invalid> {
    // An update that leaves the spec alone (a finalizer, a label) is let
    // through: a spec that became invalid (its release dropped from the
    // catalog) must not keep the object from being finalized or labelled.
    if old.is_some_and(|old| old.spec == cp.spec) {
        return Vec::new();
    }
    let mut p = Problems::default();
    let spec = &cp.spec;

    if old.is_none()
        && let Some(owner) = others.iter().find(|name| **name != cp.name_any())
    {
        p.add(
            "metadata.name",
            format!(
                "ControlPlane {owner} already manages this cluster; Linkerd runs one control plane per cluster"
            ),
        );
    }

    if let Err(e) = catalog::find(&spec.version) {
        p.add("spec.version", e.to_string());
    } else if let Some(running) = installed_version(old)
        && running != spec.version
        && let Err(e) = catalog::upgrade_path(running, &spec.version)
    {
        p.add("spec.version", e.to_string());
    }

    p.0.extend(control_plane_spec(spec));

    if let Some(old) = old.filter(|o| installed_version(Some(o)).is_some()) {
        // Moving an installed control plane or renaming its trust domain
        // would strand every meshed pod; it is a new install, not an edit.
        p.check(
            spec.namespace == old.spec.namespace,
            "spec.namespace",
            || {
                format!(
                    "cannot change from {:?} once installed; create a new ControlPlane instead",
                    old.spec.namespace
                )
            },
        );
        // Pods admitted in one mode cannot start in the other: a network
        // validator's pod has no iptables rules where the plugin is gone,
        // and turning the plugin on under linkerd-init pods is Linkerd's
        // own unsupported path. A new ControlPlane is a fresh install.
        p.check(
            spec.cni.is_some() == old.spec.cni.is_some(),
            "spec.cni",
            || {
                let (from, to) = if old.spec.cni.is_some() {
                    ("on", "off")
                } else {
                    ("off", "on")
                };
                format!(
                    "CNI mode cannot be turned {to} on an installed control plane (it is {from}): every meshed pod was admitted for the other mode, and new pods would be admitted before the nodes are ready for them; install a new ControlPlane instead"
                )
            },
        );
        if let (Some(new), Some(old)) = (&spec.cni, &old.spec.cni) {
            p.check(new.namespace == old.namespace, "spec.cni.namespace", || {
                format!("cannot change from {:?} once installed", old.namespace)
            });
        }
        p.check(
            spec.trust_domain() == old.spec.trust_domain(),
            "spec.identity.trustDomain",
            || {
                format!(
                    "cannot change from {:?} once installed (unset, it is clusterDomain): every workload identity would change",
                    old.spec.trust_domain()
                )
            },
        );
    }

    p.0
}

/// Problems as one message, each with its field.
pub fn describe(problems: &[Invalid]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Problems of a ControlPlane spec on its own: every field that can be
/// judged without other objects. The validator refuses them at admission,
/// and the reconciler checks the same before it acts on a stored object
/// (one created while the validator was not registered).
pub fn control_plane_spec(spec: &keelson_crds::ControlPlaneSpec) -> Vec<Invalid> {
    let mut p = Problems::default();
    p.check(is_dns_label(&spec.namespace), "spec.namespace", || {
        format!(
            "{} is not a valid namespace name (a DNS-1123 label)",
            shown(&spec.namespace)
        )
    });
    p.check(
        is_dns_subdomain(&spec.cluster_domain),
        "spec.clusterDomain",
        || format!("{} is not a DNS name", shown(&spec.cluster_domain)),
    );
    p.check(
        !spec.cluster_networks.is_empty(),
        "spec.clusterNetworks",
        || "must list at least one network".into(),
    );
    for (i, net) in spec.cluster_networks.iter().enumerate() {
        p.check(is_cidr(net), &format!("spec.clusterNetworks[{i}]"), || {
            format!("{} is not a CIDR such as 10.0.0.0/8", shown(net))
        });
    }

    // Keys become parts of env var names: letters and digits only.
    let key_ok = |key: &str| {
        key.starts_with(|c: char| c.is_ascii_alphabetic())
            && key.chars().all(|c| c.is_ascii_alphanumeric())
    };
    let mut check_key = |key: &str, field: String| {
        p.check(key_ok(key), &field, || {
            format!(
                "{} is not a settings key (letters and digits, starting with a letter)",
                shown(key)
            )
        });
    };
    for (side, settings) in [
        ("inbound", &spec.proxy.inbound),
        ("outbound", &spec.proxy.outbound),
    ] {
        for (scope, protocols) in settings {
            let at = format!("spec.proxy.{side}.{scope}");
            check_key(scope, at.clone());
            for (protocol, params) in protocols {
                let at = format!("{at}.{protocol}");
                check_key(protocol, at.clone());
                for param in params.keys() {
                    check_key(param, format!("{at}.{param}"));
                }
            }
        }
    }

    if let Some(cni) = &spec.cni {
        p.check(is_dns_label(&cni.namespace), "spec.cni.namespace", || {
            format!(
                "{} is not a valid namespace name (a DNS-1123 label)",
                shown(&cni.namespace)
            )
        });
        // The plugin's namespace is privileged, the control plane's is
        // restricted in CNI mode: one namespace cannot be both.
        p.check(
            cni.namespace != spec.namespace,
            "spec.cni.namespace",
            || format!("must differ from spec.namespace ({})", spec.namespace),
        );
        for (field, dir) in [
            ("spec.cni.confDir", &cni.conf_dir),
            ("spec.cni.binDir", &cni.bin_dir),
        ] {
            p.check(dir.starts_with('/'), field, || {
                format!("{} is not an absolute path", shown(dir))
            });
        }
    }

    let id = &spec.identity;
    p.check(
        is_dns_subdomain(spec.trust_domain()),
        "spec.identity.trustDomain",
        || format!("{} is not a DNS name", shown(spec.trust_domain())),
    );
    let lifetimes = [
        (
            "spec.identity.trustAnchorLifetime",
            &id.trust_anchor_lifetime,
        ),
        ("spec.identity.issuerLifetime", &id.issuer_lifetime),
        ("spec.identity.issuanceLifetime", &id.issuance_lifetime),
        ("spec.identity.clockSkewAllowance", &id.clock_skew_allowance),
        ("spec.upgrade.healthDeadline", &spec.upgrade.health_deadline),
    ];
    for (field, d) in lifetimes {
        if let Err(e) = d.positive() {
            p.add(field, e.to_string());
        }
    }
    // Each certificate must fit inside the one that signs it, or the signer
    // expires while what it signed is still in use.
    let nested = [
        (
            "spec.identity.issuerLifetime",
            &id.issuer_lifetime,
            "spec.identity.trustAnchorLifetime",
            &id.trust_anchor_lifetime,
        ),
        (
            "spec.identity.issuanceLifetime",
            &id.issuance_lifetime,
            "spec.identity.issuerLifetime",
            &id.issuer_lifetime,
        ),
    ];
    for (field, inner, outer_field, outer) in nested {
        if let (Ok(i), Ok(o)) = (inner.positive(), outer.positive()) {
            p.check(i < o, field, || {
                format!("{inner} must be shorter than {outer_field} ({outer})")
            });
        }
    }

    p.check(is_log_level(&spec.proxy.log_level), "spec.proxy.logLevel", || {
        format!(
            "{} is not a proxy log level (trace, debug, info, warn, error, off, or a comma-separated list of target=level)",
            shown(&spec.proxy.log_level)
        )
    });
    let r = &spec.proxy.resources;
    for (name, bounds) in [
        ("cpu", &r.cpu),
        ("memory", &r.memory),
        ("ephemeral-storage", &r.ephemeral_storage),
    ] {
        for (which, q) in [("request", &bounds.request), ("limit", &bounds.limit)] {
            if let Some(q) = q {
                p.check(
                    is_quantity(q),
                    &format!("spec.proxy.resources.{name}.{which}"),
                    || {
                        format!(
                            "{} is not a Kubernetes quantity such as 100m or 64Mi",
                            shown(q)
                        )
                    },
                );
            }
        }
    }
    p.0
}

/// The version a ControlPlane runs, once it has installed one.
fn installed_version(cp: Option<&ControlPlane>) -> Option<&str> {
    cp?.status.as_ref()?.current_version.as_deref()
}

/// Problems of a DataPlane.
pub fn data_plane(dp: &DataPlane) -> Vec<Invalid> {
    let mut p = Problems::default();
    let policy = &dp.spec.proxy_version;
    match (policy.policy, &policy.version) {
        (VersionPolicy::Pinned, None) => p.add(
            "spec.proxyVersion.version",
            "required when policy is Pinned",
        ),
        (VersionPolicy::Pinned, Some(v)) => {
            if let Err(e) = catalog::find(v) {
                p.add("spec.proxyVersion.version", e.to_string());
            }
        }
        (VersionPolicy::FollowControlPlane, Some(_)) => p.add(
            "spec.proxyVersion.version",
            "only allowed with policy Pinned; FollowControlPlane takes the ControlPlane's version",
        ),
        (VersionPolicy::FollowControlPlane, None) => {}
    }
    selector(&dp.spec.selector, "spec.selector", &mut p);
    let rollout = &dp.spec.rollout;
    if let Err(e) = rollout.interval.non_negative() {
        p.add("spec.rollout.interval", e.to_string());
    }
    if let Err(e) = rollout.progress_deadline.positive() {
        p.add("spec.rollout.progressDeadline", e.to_string());
    }
    let field = "spec.rollout.maxUnavailable";
    match &dp.spec.rollout.max_unavailable {
        IntOrString::Int(n) => p.check(*n >= 1, field, || {
            format!("{n} would never let a pod restart; use 1 or more")
        }),
        IntOrString::String(s) => {
            let percent = s.strip_suffix('%').and_then(|n| n.parse::<u8>().ok());
            p.check(
                percent.is_some_and(|n| (1..=100).contains(&n)),
                field,
                || {
                    format!(
                        "{} is neither a number nor a percentage from 1% to 100%",
                        shown(s)
                    )
                },
            );
        }
    }
    p.0
}

/// A label selector as the API server reads one (apimachinery's
/// `LabelSelectorAsSelector`): a selector it cannot parse selects nothing,
/// silently, so it is refused here instead.
pub(crate) fn selector(s: &LabelSelector, field: &str, p: &mut Problems) {
    for (key, value) in s.match_labels.iter().flatten() {
        let at = format!("{field}.matchLabels");
        p.check(is_qualified_name(key), &at, || {
            format!("{} is not a valid label key", shown(key))
        });
        p.check(is_label_value(value), &format!("{at}.{key}"), || {
            format!("{} is not a valid label value", shown(value))
        });
    }
    for (i, req) in s.match_expressions.iter().flatten().enumerate() {
        let at = format!("{field}.matchExpressions[{i}]");
        let values = req.values.as_deref().unwrap_or_default();
        p.check(is_qualified_name(&req.key), &format!("{at}.key"), || {
            format!("{} is not a valid label key", shown(&req.key))
        });
        for (j, v) in values.iter().enumerate() {
            p.check(is_label_value(v), &format!("{at}.values[{j}]"), || {
                format!("{} is not a valid label value", shown(v))
            });
        }
        match req.operator.as_str() {
            "In" | "NotIn" => p.check(!values.is_empty(), &format!("{at}.values"), || {
                format!("operator {} needs at least one value", req.operator)
            }),
            "Exists" | "DoesNotExist" => {
                p.check(values.is_empty(), &format!("{at}.values"), || {
                    format!("operator {} takes no values", req.operator)
                })
            }
            other => p.add(
                &format!("{at}.operator"),
                format!("{other:?} is not one of In, NotIn, Exists, DoesNotExist"),
            ),
        }
    }
}

/// A value quoted in a denial, cut short: a denial echoes input back to the
/// client, and input can be megabytes.
pub(crate) fn shown(s: &str) -> String {
    if s.len() <= SHOWN {
        format!("{s:?}")
    } else {
        let cut: String = s.chars().take(SHOWN).collect();
        format!("{cut:?}... ({} bytes)", s.len())
    }
}

/// A message cut as [`shown`] cuts a value, for messages that quote input
/// themselves (serde's).
pub(crate) fn cut(s: &str) -> String {
    const MAX: usize = 4 * SHOWN;
    if s.len() <= MAX {
        s.to_owned()
    } else {
        let cut: String = s.chars().take(MAX).collect();
        format!("{cut}... ({} bytes)", s.len())
    }
}

/// How much of a value a denial quotes.
const SHOWN: usize = 64;

/// A label key: an optional DNS subdomain prefix and `/`, then a name of at
/// most 63 alphanumerics, `-`, `_` or `.`, starting and ending alphanumeric.
fn is_qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, s),
    };
    prefix.is_none_or(|p| !p.is_empty() && is_dns_subdomain(p))
        && !name.is_empty()
        && is_label_value(name)
}

/// A label value: empty, or at most 63 alphanumerics, `-`, `_` or `.`,
/// starting and ending alphanumeric.
fn is_label_value(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn is_cidr(s: &str) -> bool {
    let Some((addr, prefix)) = s.split_once('/') else {
        return false;
    };
    match (addr.parse::<IpAddr>(), prefix.parse::<u8>()) {
        (Ok(IpAddr::V4(_)), Ok(p)) => p <= 32,
        (Ok(IpAddr::V6(_)), Ok(p)) => p <= 128,
        _ => false,
    }
}

/// The proxy's log filter: a level, or `target=level` directives.
fn is_log_level(s: &str) -> bool {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    // The CRD's maxLength too; checked here for objects stored without it.
    !s.is_empty()
        && s.len() <= 1024
        && s.split(',').all(|directive| {
            let level = directive.rsplit_once('=').map_or(directive, |(_, l)| l);
            LEVELS.contains(&level.trim())
        })
}

/// A Kubernetes resource quantity: a decimal number with an optional binary
/// (Ki..Ei), decimal (m, k, M..E) or exponent suffix.
fn is_quantity(s: &str) -> bool {
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let digits_end = unsigned
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(digits_end);
    let valid_number = number.chars().filter(|&c| c == '.').count() <= 1
        && number.chars().any(|c| c.is_ascii_digit());
    let valid_suffix = match suffix {
        "" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" | "m" | "k" | "M" | "G" | "T" | "P" | "E" => {
            true
        }
        exp => exp
            .strip_prefix(['e', 'E'])
            .map(|e| e.strip_prefix(['+', '-']).unwrap_or(e))
            .is_some_and(|e| !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())),
    };
    valid_number && valid_suffix
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cp(spec: serde_json::Value) -> ControlPlane {
        let mut full = json!({"version": "edge-25.4.4", "namespace": "linkerd"});
        full.as_object_mut()
            .unwrap()
            .extend(spec.as_object().unwrap().clone());
        serde_json::from_value(json!({
            "apiVersion": "keelson.dev/v1alpha1", "kind": "ControlPlane",
            "metadata": {"name": "mesh"}, "spec": full,
        }))
        .unwrap()
    }

    fn installed(mut cp: ControlPlane, version: &str) -> ControlPlane {
        cp.status = Some(keelson_crds::ControlPlaneStatus {
            current_version: Some(version.into()),
            ..Default::default()
        });
        cp
    }

    fn fields(problems: &[Invalid]) -> Vec<&str> {
        problems.iter().map(|p| p.field.as_str()).collect()
    }

    #[test]
    fn a_default_control_plane_is_valid() {
        assert_eq!(control_plane(&cp(json!({})), None, &[]), []);
    }

    #[test]
    fn an_unknown_version_is_refused_naming_the_field_and_the_known_ones() {
        let problems = control_plane(&cp(json!({"version": "edge-99.1.1"})), None, &[]);
        assert_eq!(fields(&problems), ["spec.version"]);
        assert!(
            problems[0].message.contains("edge-25.4.4"),
            "{}",
            problems[0]
        );
        let problems = control_plane(&cp(json!({"version": "2.18"})), None, &[]);
        assert_eq!(fields(&problems), ["spec.version"]);
    }

    #[test]
    fn an_update_that_keeps_the_spec_is_admitted_even_if_the_spec_is_bad() {
        let bad = cp(json!({"version": "edge-99.1.1"}));
        let mut finalized = bad.clone();
        finalized.metadata.finalizers = Some(vec!["keelson.dev/cleanup".into()]);
        assert_eq!(control_plane(&finalized, Some(&bad), &[]), []);
        let mut changed = cp(json!({"version": "edge-98.1.1"}));
        changed.metadata.finalizers = finalized.metadata.finalizers.clone();
        assert_eq!(
            fields(&control_plane(&changed, Some(&bad), &[])),
            ["spec.version"]
        );
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let bad = cp(json!({
            "namespace": "Linkerd",
            "clusterDomain": "cluster..local",
            "clusterNetworks": ["10.0.0.0/8", "10.0.0.0", "300.0.0.0/8", "fd00::/129"],
            "identity": {"trustDomain": "-bad", "issuerLifetime": "9000h", "issuanceLifetime": "0s"},
            "proxy": {"logLevel": "loud", "resources": {"memory": {"limit": "64MB"}, "cpu": {"request": "0.5"}}},
        }));
        assert_eq!(
            fields(&control_plane(&bad, None, &[])),
            [
                "spec.namespace",
                "spec.clusterDomain",
                "spec.clusterNetworks[1]",
                "spec.clusterNetworks[2]",
                "spec.clusterNetworks[3]",
                "spec.identity.trustDomain",
                "spec.identity.issuanceLifetime",
                "spec.identity.issuerLifetime",
                "spec.proxy.logLevel",
                "spec.proxy.resources.memory.limit",
            ]
        );
    }

    #[test]
    fn certificates_must_fit_inside_their_signer() {
        let long_leaves =
            cp(json!({"identity": {"issuerLifetime": "24h", "issuanceLifetime": "48h"}}));
        let problems = control_plane(&long_leaves, None, &[]);
        assert_eq!(fields(&problems), ["spec.identity.issuanceLifetime"]);
        assert!(
            problems[0].message.contains("spec.identity.issuerLifetime"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn a_second_control_plane_is_refused_but_its_own_updates_are_not() {
        let mine = cp(json!({}));
        let problems = control_plane(&mine, None, &["other".into()]);
        assert_eq!(fields(&problems), ["metadata.name"]);
        assert!(problems[0].message.contains("other"));
        // Re-creating (or updating) the one that exists is fine.
        assert_eq!(control_plane(&mine, None, &["mesh".into()]), []);
        assert_eq!(control_plane(&mine, Some(&mine), &["mesh".into()]), []);
    }

    #[test]
    fn an_installed_control_plane_keeps_its_namespace_and_trust_domain() {
        let old = installed(cp(json!({})), "edge-25.4.4");
        let moved = cp(json!({"namespace": "mesh", "identity": {"trustDomain": "example.org"}}));
        assert_eq!(
            fields(&control_plane(&moved, Some(&old), &[])),
            ["spec.namespace", "spec.identity.trustDomain"]
        );
        // Before anything is installed both may still change.
        assert_eq!(control_plane(&moved, Some(&cp(json!({}))), &[]), []);
    }

    #[test]
    fn proxy_side_settings_keys_must_make_env_var_names() {
        let good =
            cp(json!({"proxy": {"inbound": {"server": {"http2": {"keepAliveInterval": "20s"}}}}}));
        assert_eq!(control_plane(&good, None, &[]), []);
        let bad = cp(json!({"proxy": {"outbound": {"server": {"http-2": {"keep alive": "1s"}}}}}));
        assert_eq!(
            fields(&control_plane(&bad, None, &[])),
            [
                "spec.proxy.outbound.server.http-2",
                "spec.proxy.outbound.server.http-2.keep alive"
            ]
        );
    }

    #[test]
    fn cni_mode_is_chosen_at_install_and_kept() {
        let plain = installed(cp(json!({})), "edge-25.4.4");
        let cni = installed(cp(json!({"cni": {}})), "edge-25.4.4");
        for (new, old, word) in [
            (cp(json!({"cni": {}})), &plain, "turned on"),
            (cp(json!({})), &cni, "turned off"),
        ] {
            let problems = control_plane(&new, Some(old), &[]);
            assert_eq!(fields(&problems), ["spec.cni"]);
            assert!(problems[0].message.contains(word), "{}", problems[0]);
        }
        let moved = cp(json!({"cni": {"namespace": "cni-system"}}));
        assert_eq!(
            fields(&control_plane(&moved, Some(&cni), &[])),
            ["spec.cni.namespace"]
        );
        // Other settings may change; and before an install, anything.
        let tuned = cp(json!({"cni": {"logLevel": "debug", "ignoreInboundPorts": "25"}}));
        assert_eq!(control_plane(&tuned, Some(&cni), &[]), []);
        assert_eq!(
            control_plane(&cp(json!({"cni": {}})), Some(&cp(json!({}))), &[]),
            []
        );
        // The plugin's namespace is privileged, the control plane's not.
        let shared = cp(json!({"cni": {"namespace": "linkerd", "binDir": "opt/cni"}}));
        assert_eq!(
            fields(&control_plane(&shared, None, &[])),
            ["spec.cni.namespace", "spec.cni.binDir"]
        );
    }

    #[test]
    fn upgrades_follow_the_catalog_path() {
        let old = installed(cp(json!({})), "edge-24.11.8");
        // 2.17 -> 2.19 passes through 2.18, which the catalog has.
        let up = cp(json!({"version": "edge-25.10.7"}));
        assert_eq!(control_plane(&up, Some(&old), &[]), []);
    }

    #[test]
    fn quantities_cidrs_and_names() {
        for q in ["100m", "1", "0.5", "64Mi", "1Gi", "1e3", "1.5E+2", "+2k"] {
            assert!(is_quantity(q), "{q}");
        }
        for q in ["", "m", "64MB", "1..2", "1e", "abc", "1 Gi"] {
            assert!(!is_quantity(q), "{q}");
        }
        assert!(is_cidr("10.0.0.0/8") && is_cidr("fd00::/8"));
        assert!(!is_cidr("10.0.0.0/33") && !is_cidr("10.0.0.0") && !is_cidr("x/8"));
        assert!(is_dns_label("linkerd") && !is_dns_label("a_b") && !is_dns_label(""));
        assert!(is_dns_subdomain("cluster.local") && !is_dns_subdomain("cluster."));
        assert!(is_log_level("warn,linkerd=info") && is_log_level("debug"));
        assert!(!is_log_level("verbose") && !is_log_level(""));
    }

    fn dp(spec: serde_json::Value) -> DataPlane {
        serde_json::from_value(json!({
            "apiVersion": "keelson.dev/v1alpha1", "kind": "DataPlane",
            "metadata": {"name": "apps", "namespace": "apps"}, "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn data_plane_version_policy_and_rollout() {
        assert_eq!(data_plane(&dp(json!({}))), []);
        assert_eq!(
            data_plane(&dp(
                json!({"proxyVersion": {"policy": "Pinned", "version": "edge-24.11.8"}})
            )),
            []
        );
        let cases = [
            (
                json!({"proxyVersion": {"policy": "Pinned"}}),
                "spec.proxyVersion.version",
            ),
            (
                json!({"proxyVersion": {"policy": "Pinned", "version": "edge-1.1.1"}}),
                "spec.proxyVersion.version",
            ),
            (
                json!({"proxyVersion": {"version": "edge-24.11.8"}}),
                "spec.proxyVersion.version",
            ),
            (
                json!({"rollout": {"maxUnavailable": 0}}),
                "spec.rollout.maxUnavailable",
            ),
            (
                json!({"rollout": {"maxUnavailable": "150%"}}),
                "spec.rollout.maxUnavailable",
            ),
            (
                json!({"rollout": {"maxUnavailable": "half"}}),
                "spec.rollout.maxUnavailable",
            ),
            (
                json!({"selector": {"matchExpressions": [{"key": "app", "operator": "In"}]}}),
                "spec.selector.matchExpressions[0].values",
            ),
            (
                json!({"selector": {"matchExpressions": [{"key": "app", "operator": "Has"}]}}),
                "spec.selector.matchExpressions[0].operator",
            ),
        ];
        for (spec, field) in cases {
            assert_eq!(fields(&data_plane(&dp(spec.clone()))), [field], "{spec}");
        }
    }

    #[test]
    fn data_plane_durations_are_checked_not_trusted() {
        let cases = [
            ("interval", "99999999999999999h", "too long"),
            ("interval", "-10s", "must not be negative"),
            ("progressDeadline", "-1s", "must be a positive duration"),
            ("progressDeadline", "0s", "must be a positive duration"),
            ("progressDeadline", "banana", "not a duration"),
            ("progressDeadline", "10d", "unknown unit"),
            ("progressDeadline", "2562048h", "too long"),
        ];
        for (field, value, says) in cases {
            let problems = data_plane(&dp(json!({"rollout": {field: value}})));
            assert_eq!(
                fields(&problems),
                [format!("spec.rollout.{field}")],
                "{value}"
            );
            assert!(problems[0].message.contains(says), "{value}: {problems:?}");
        }
        // No pause between batches is a choice, not a mistake.
        assert_eq!(data_plane(&dp(json!({"rollout": {"interval": "0s"}}))), []);
    }

    #[test]
    fn control_plane_durations_overflow_into_a_denial() {
        let problems = control_plane(
            &cp(json!({"upgrade": {"healthDeadline": "99999999999999999h"},
                       "identity": {"issuerLifetime": "-1s"}})),
            None,
            &[],
        );
        assert_eq!(
            fields(&problems),
            [
                "spec.identity.issuerLifetime",
                "spec.upgrade.healthDeadline"
            ]
        );
        // The reconciler refuses the same on a stored object.
        let stored = cp(json!({"upgrade": {"healthDeadline": "99999999999999999h"}}));
        assert_eq!(
            fields(&control_plane_spec(&stored.spec)),
            ["spec.upgrade.healthDeadline"]
        );
    }

    #[test]
    fn selectors_the_api_server_could_not_parse_are_refused() {
        let cases = [
            (
                json!({"matchLabels": {"bad key!": "web"}}),
                "spec.selector.matchLabels",
            ),
            (
                json!({"matchLabels": {"app": "-web"}}),
                "spec.selector.matchLabels.app",
            ),
            (
                json!({"matchExpressions": [{"key": "a/b/c", "operator": "Exists"}]}),
                "spec.selector.matchExpressions[0].key",
            ),
            (
                json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["x y"]}]}),
                "spec.selector.matchExpressions[0].values[0]",
            ),
        ];
        for (selector, field) in cases {
            let problems = data_plane(&dp(json!({"selector": selector})));
            assert_eq!(fields(&problems), [field], "{selector}");
        }
        let fine = json!({"matchLabels": {"app.kubernetes.io/name": "web", "tier": ""}});
        assert_eq!(data_plane(&dp(json!({"selector": fine}))), []);
    }

    #[test]
    fn a_denial_never_echoes_megabytes_back() {
        let huge = "x".repeat(2 << 20);
        let problems = control_plane(&cp(json!({"proxy": {"logLevel": huge}})), None, &[]);
        assert_eq!(fields(&problems), ["spec.proxy.logLevel"]);
        assert!(
            problems[0].message.len() < 300,
            "{}",
            problems[0].message.len()
        );
        assert!(problems[0].message.contains("2097152 bytes"));
    }
}
