//! What the validating webhook refuses in Linkerd policy objects: what
//! Linkerd's own policy validator refuses (policy-controller
//! `runtime/src/admission.rs`, at the release [`Rules`] says), so a cluster
//! without it, or with it down, refuses the same, plus what is certainly
//! wrong (bad audit-first annotations). Every problem names its field. Pure.
//!
//! Gateway API routes are judged by their fields, never refused for a
//! field Keelson's types do not know: from 2.20 Linkerd admits a route it
//! cannot parse (with a warning), and Keelson never refused one.

use super::{GATEWAY_GROUP, POLICY_GROUP, audit, targets};
use crate::admission::validate::{Invalid, Problems, selector};
use crate::catalog::Release;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use keelson_crds::policy::{
    AuthorizationPolicy, EgressNetwork, MeshTLSAuthentication, Network, NetworkAuthentication,
    Server, ServerAuthorization,
};
use kube::ResourceExt;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::net::IpAddr;

/// `spec.proxyProtocol` values Linkerd knows.
const PROXY_PROTOCOLS: [&str; 6] = ["unknown", "HTTP/1", "HTTP/2", "gRPC", "opaque", "TLS"];

/// What Linkerd's validator checks that changed between releases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rules {
    /// Failure-accrual annotations on outbound routes are read (and
    /// refused when malformed): up to edge-26.6.1. From edge-26.6.2
    /// (linkerd2#15374, in 2.20) accrual is the parent Service's alone.
    pub route_accrual: bool,
}

/// The first release whose validator no longer reads routes' accrual.
const ROUTE_ACCRUAL_UNTIL: &str = "edge-26.6.2";

impl Rules {
    /// The rules of Linkerd's validator at `release`.
    pub fn of(release: &Release) -> Self {
        Self {
            route_accrual: !release.since(ROUTE_ACCRUAL_UNTIL),
        }
    }

    /// The rules of the releases a cluster runs: a check any of them makes
    /// is made, so no object passes that one of their validators refuses.
    pub fn strictest<'a>(releases: impl IntoIterator<Item = &'a Release>) -> Option<Self> {
        releases.into_iter().map(Self::of).reduce(|a, b| Self {
            route_accrual: a.route_accrual || b.route_accrual,
        })
    }
}

/// Problems of a policy object of `group`/`kind` in `namespace`, by the
/// validator `rules`; `None` for kinds this module does not validate.
pub fn object(
    group: &str,
    kind: &str,
    namespace: &str,
    object: &Value,
    rules: Rules,
) -> Option<Vec<Invalid>> {
    let mut p = Problems::default();
    match (group, kind) {
        (POLICY_GROUP, "Server") => typed(object, &mut p, server),
        (POLICY_GROUP, "AuthorizationPolicy") => typed(object, &mut p, |ap, p| {
            authorization_policy(ap, namespace, p)
        }),
        (POLICY_GROUP, "MeshTLSAuthentication") => typed(object, &mut p, mesh_tls),
        (POLICY_GROUP, "NetworkAuthentication") => typed(object, &mut p, network),
        (POLICY_GROUP, "ServerAuthorization") => typed(object, &mut p, server_authorization),
        (POLICY_GROUP, "EgressNetwork") => typed(object, &mut p, egress_network),
        (POLICY_GROUP | GATEWAY_GROUP, "HTTPRoute") => {
            http_route(group, &object["spec"], &mut p);
            outbound(Retries::Http, object, rules, &mut p);
        }
        (GATEWAY_GROUP, "GRPCRoute") => {
            grpc_route(&object["spec"], &mut p);
            outbound(Retries::Grpc, object, rules, &mut p);
        }
        (GATEWAY_GROUP, "TLSRoute" | "TCPRoute") => one_rule_route(kind, &object["spec"], &mut p),
        (POLICY_GROUP, "HTTPLocalRateLimitPolicy") => rate_limit(&object["spec"], &mut p),
        _ => return None,
    }
    Some(p.0)
}

fn typed<K: DeserializeOwned>(
    object: &Value,
    p: &mut Problems,
    check: impl FnOnce(&K, &mut Problems),
) {
    match serde_json::from_value::<K>(object.clone()) {
        Ok(k) => check(&k, p),
        // The schema normally catches this first; name the spot serde saw.
        Err(e) => p.add("spec", e.to_string()),
    }
}

fn server(s: &Server, p: &mut Problems) {
    let spec = &s.spec;
    match (&spec.pod_selector, &spec.external_workload_selector) {
        (Some(sel), None) => selector(sel, "spec.podSelector", p),
        (None, Some(sel)) => selector(sel, "spec.externalWorkloadSelector", p),
        (Some(_), Some(_)) => p.add(
            "spec.externalWorkloadSelector",
            "set only one of podSelector and externalWorkloadSelector",
        ),
        (None, None) => p.add(
            "spec.podSelector",
            "one of podSelector and externalWorkloadSelector is required",
        ),
    }
    // Linkerd reads a number as a non-zero u16 and admits any name (one
    // that names no container port selects nothing, which is not an error).
    if let IntOrString::Int(n) = &spec.port {
        p.check((1..=65535).contains(n), "spec.port", || {
            format!("{n} is not a port number (1-65535)")
        });
    }
    if let Some(proto) = &spec.proxy_protocol {
        p.check(
            PROXY_PROTOCOLS.contains(&proto.as_str()),
            "spec.proxyProtocol",
            || format!("{proto:?} is not one of {}", PROXY_PROTOCOLS.join(", ")),
        );
    }
    if let Some(policy) = &spec.access_policy {
        p.check(
            audit::ACCESS_POLICIES.contains(&policy.as_str()),
            "spec.accessPolicy",
            || {
                format!(
                    "{policy:?} is not one of {}",
                    audit::ACCESS_POLICIES.join(", ")
                )
            },
        );
    }
    if let Err(problems) = audit::settings(s.annotations()) {
        p.0.extend(problems);
    }
}

fn authorization_policy(ap: &AuthorizationPolicy, namespace: &str, p: &mut Problems) {
    let t = &ap.spec.target_ref;
    let g = t.group.as_deref();
    let supported = targets(g, &t.kind, POLICY_GROUP, "Server")
        || targets(g, &t.kind, POLICY_GROUP, "HTTPRoute")
        || targets(g, &t.kind, GATEWAY_GROUP, "HTTPRoute")
        || targets(g, &t.kind, GATEWAY_GROUP, "GRPCRoute")
        || targets(g, &t.kind, "", "Namespace");
    p.check(supported, "spec.targetRef.kind", || {
        format!(
            "{} is not a target Linkerd supports: Server or HTTPRoute ({POLICY_GROUP}), HTTPRoute or GRPCRoute ({GATEWAY_GROUP}), or Namespace",
            canonical(g, &t.kind)
        )
    });
    if targets(g, &t.kind, "", "Namespace") {
        p.check(t.name == namespace, "spec.targetRef.name", || {
            format!(
                "a policy cannot target another namespace ({}); it is in {namespace}",
                t.name
            )
        });
    }
    let refs = &ap.spec.required_authentication_refs;
    let field = "spec.requiredAuthenticationRefs";
    let count = |group: &str, kind: &str| {
        refs.iter()
            .filter(|r| targets(r.group.as_deref(), &r.kind, group, kind))
            .count()
    };
    let (mesh, accounts, networks) = (
        count(POLICY_GROUP, "MeshTLSAuthentication"),
        count("", "ServiceAccount"),
        count(POLICY_GROUP, "NetworkAuthentication"),
    );
    p.check(mesh <= 1, field, || {
        format!("{mesh} MeshTLSAuthentications; at most one may be set")
    });
    p.check(accounts <= 1, field, || {
        format!("{accounts} ServiceAccounts; at most one may be set")
    });
    p.check(!(mesh == 1 && accounts == 1), field, || {
        "a MeshTLSAuthentication and a ServiceAccount may not be set together".into()
    });
    p.check(networks <= 1, field, || {
        format!("{networks} NetworkAuthentications; at most one may be set")
    });
    for (i, r) in refs.iter().enumerate() {
        let g = r.group.as_deref();
        let known = targets(g, &r.kind, POLICY_GROUP, "MeshTLSAuthentication")
            || targets(g, &r.kind, POLICY_GROUP, "NetworkAuthentication")
            || targets(g, &r.kind, "", "ServiceAccount");
        p.check(known, &format!("{field}[{i}].kind"), || {
            format!(
                "{} is not an authentication Linkerd supports: MeshTLSAuthentication, NetworkAuthentication ({POLICY_GROUP}) or ServiceAccount",
                canonical(g, &r.kind)
            )
        });
    }
}

/// Linkerd accepts several ServiceAccounts in `identityRefs` (each adds an
/// identity), so this does not refuse them.
fn mesh_tls(m: &MeshTLSAuthentication, p: &mut Problems) {
    let spec = &m.spec;
    match (&spec.identities, &spec.identity_refs) {
        (Some(_), Some(_)) => p.add(
            "spec.identityRefs",
            "set only one of identities and identityRefs",
        ),
        (None, None) => p.add(
            "spec.identities",
            "one of identities and identityRefs is required",
        ),
        (Some(ids), None) if ids.is_empty() => {
            p.add("spec.identities", "must name at least one identity")
        }
        (None, Some(refs)) if refs.is_empty() => {
            p.add("spec.identityRefs", "must name at least one identity")
        }
        _ => {}
    }
    for (i, id) in spec.identities.iter().flatten().enumerate() {
        if let Err(why) = identity(id) {
            p.add(
                &format!("spec.identities[{i}]"),
                format!("{id:?} is not a valid identity: {why}"),
            );
        }
    }
    for (i, r) in spec.identity_refs.iter().flatten().enumerate() {
        let g = r.group.as_deref();
        let at = format!("spec.identityRefs[{i}]");
        if targets(g, &r.kind, "", "Namespace") {
            p.check(r.namespace.is_none(), &format!("{at}.namespace"), || {
                "a Namespace is cluster-scoped; remove namespace".into()
            });
        } else {
            p.check(
                targets(g, &r.kind, "", "ServiceAccount"),
                &format!("{at}.kind"),
                || {
                    format!(
                        "{} is not ServiceAccount or Namespace",
                        canonical(g, &r.kind)
                    )
                },
            );
        }
    }
}

/// A SPIFFE ID or a DNS-like identity with an optional `*` first label, as
/// Linkerd's validator accepts them.
fn identity(id: &str) -> Result<(), &'static str> {
    if let Some(rest) = id.strip_prefix("spiffe://") {
        let (domain, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if domain.is_empty() {
            return Err("the SPIFFE trust domain is missing");
        }
        if !domain
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-._".contains(c))
        {
            return Err(
                "a SPIFFE trust domain holds lowercase letters, digits, dots, dashes and underscores",
            );
        }
        if path.is_empty() {
            return Ok(());
        }
        if path.ends_with('/') {
            return Err("a SPIFFE path cannot end with a slash");
        }
        for segment in path[1..].split('/') {
            match segment {
                "" => return Err("a SPIFFE path cannot have empty segments"),
                "." | ".." => return Err("a SPIFFE path cannot have dot segments"),
                s if !s
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)) =>
                {
                    return Err(
                        "a SPIFFE path holds letters, digits, dots, dashes and underscores",
                    );
                }
                _ => {}
            }
        }
        return Ok(());
    }
    let label = |l: &str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    let mut labels = id.split('.');
    let first = labels.next().unwrap_or_default();
    if (first == "*" || label(first)) && labels.all(label) {
        Ok(())
    } else {
        Err("expected a SPIFFE ID or a DNS name of lowercase labels, optionally starting with *")
    }
}

fn network(n: &NetworkAuthentication, p: &mut Problems) {
    p.check(!n.spec.networks.is_empty(), "spec.networks", || {
        "at least one network must be specified".into()
    });
    networks(&n.spec.networks, "spec.networks", p);
}

/// The older way to authorize clients; Linkerd still validates it.
fn server_authorization(sa: &ServerAuthorization, p: &mut Problems) {
    let client = &sa.spec.client;
    if let Some(mtls) = &client.mesh_tls {
        p.check(
            client.unauthenticated != Some(true),
            "spec.client.unauthenticated",
            || "must be false when meshTLS is set".into(),
        );
        let named = mtls.identities.as_ref().map_or(0, Vec::len)
            + mtls.service_accounts.as_ref().map_or(0, Vec::len);
        p.check(
            mtls.unauthenticated_tls != Some(true) || named == 0,
            "spec.client.meshTLS.unauthenticatedTLS",
            || "must be false when identities or serviceAccounts are set".into(),
        );
    }
    networks(
        client.networks.as_deref().unwrap_or_default(),
        "spec.client.networks",
        p,
    );
}

fn egress_network(e: &EgressNetwork, p: &mut Problems) {
    if let Some(list) = &e.spec.networks {
        p.check(!list.is_empty(), "spec.networks", || {
            "at least one network must be specified (or leave networks out)".into()
        });
        networks(list, "spec.networks", p);
    }
}

fn networks(list: &[Network], field: &str, p: &mut Problems) {
    for (i, n) in list.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let Some(cidr) = Cidr::parse(&n.cidr) else {
            p.add(
                &format!("{at}.cidr"),
                format!("{:?} is not an IP address or CIDR", n.cidr),
            );
            continue;
        };
        for (j, e) in n.except.iter().flatten().enumerate() {
            let at = format!("{at}.except[{j}]");
            match Cidr::parse(e) {
                None => p.add(&at, format!("{e:?} is not an IP address or CIDR")),
                Some(except) if except.contains(&cidr) => {
                    p.add(&at, format!("{e} covers all of cidr {}", n.cidr))
                }
                Some(except) if !cidr.contains(&except) => {
                    p.add(&at, format!("{e} is not inside cidr {}", n.cidr))
                }
                Some(_) => {}
            }
        }
    }
}

/// An address with a prefix length; a bare address is a host network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    fn parse(s: &str) -> Option<Self> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) if !p.starts_with('+') => {
                (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?))
            }
            Some(_) => return None,
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Self { addr, prefix })
    }

    /// The address as the top bits of a u128, so both families mask alike.
    fn bits(&self) -> u128 {
        match self.addr {
            IpAddr::V4(a) => u128::from(u32::from(a)) << 96,
            IpAddr::V6(a) => u128::from(a),
        }
    }

    fn contains(&self, other: &Cidr) -> bool {
        if self.addr.is_ipv4() != other.addr.is_ipv4() || self.prefix > other.prefix {
            return false;
        }
        let mask = u128::MAX
            .checked_shl(128 - u32::from(self.prefix))
            .unwrap_or(0);
        self.bits() & mask == other.bits() & mask
    }
}

/// HTTPRoute rules as Linkerd reads them. Both APIs share Gateway API's
/// shapes, read here as JSON; Linkerd checks timeouts only on its own
/// kind and Service backend ports only on Gateway API's.
/// Every route kind: a parent that is an EgressNetwork names a port.
fn parents(spec: &Value, p: &mut Problems) {
    for (i, parent) in spec["parentRefs"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let kind = parent["kind"].as_str().unwrap_or_default();
        if targets(
            parent["group"].as_str(),
            kind,
            POLICY_GROUP,
            "EgressNetwork",
        ) {
            p.check(
                parent.get("port").is_some_and(|v| !v.is_null()),
                &format!("spec.parentRefs[{i}].port"),
                || "required when the parent is an EgressNetwork".into(),
            );
        }
    }
}

/// Which retry conditions a route's `retry.linkerd.io/*` names.
#[derive(Clone, Copy)]
enum Retries {
    Http,
    Grpc,
}

/// gRPC statuses `retry.linkerd.io/grpc` may name (any case).
const GRPC_RETRY_CONDITIONS: [&str; 5] = [
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

/// The retry, timeout and failure-accrual annotations of a route with a
/// Service or EgressNetwork parent (an outbound route), read as Linkerd's
/// outbound index reads them: what it cannot parse it refuses.
fn outbound(retries: Retries, object: &Value, rules: Rules, p: &mut Problems) {
    let outbound = object["spec"]["parentRefs"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|parent| {
            let (group, kind) = (
                parent["group"].as_str(),
                parent["kind"].as_str().unwrap_or_default(),
            );
            targets(group, kind, "", "Service")
                || targets(group, kind, POLICY_GROUP, "EgressNetwork")
        });
    if !outbound {
        return;
    }
    let annotations = &object["metadata"]["annotations"];
    let get = |key: &str| annotations[key].as_str();
    let field = |key: &str| format!("metadata.annotations[{key}]");
    let duration = |key: &str, p: &mut Problems| {
        let value = get(key)?;
        match linkerd_duration(value) {
            Ok(d) => Some(d),
            Err(why) => {
                p.add(&field(key), format!("{value:?}: {why}"));
                None
            }
        }
    };
    if let Some(limit) = get("retry.linkerd.io/limit") {
        p.check(
            limit.parse::<u16>().is_ok(),
            &field("retry.linkerd.io/limit"),
            || format!("{limit:?} is not a number from 0 to 65535"),
        );
    }
    duration("retry.linkerd.io/timeout", p);
    match retries {
        Retries::Http => {
            if let Some(conditions) = get("retry.linkerd.io/http") {
                let bad = conditions.split(',').find(|c| !http_retry_condition(c));
                if let Some(bad) = bad {
                    p.add(
                        &field("retry.linkerd.io/http"),
                        format!("{bad:?} is not 5xx, gateway-error, a status code (100-599) or a range of them"),
                    );
                }
            }
        }
        Retries::Grpc => {
            if let Some(conditions) = get("retry.linkerd.io/grpc") {
                let bad = conditions.split(',').find(|c| {
                    !GRPC_RETRY_CONDITIONS
                        .iter()
                        .any(|known| c.eq_ignore_ascii_case(known))
                });
                if let Some(bad) = bad {
                    p.add(
                        &field("retry.linkerd.io/grpc"),
                        format!("{bad:?} is not one of {}", GRPC_RETRY_CONDITIONS.join(", ")),
                    );
                }
            }
        }
    }
    for key in [
        "timeout.linkerd.io/response",
        "timeout.linkerd.io/request",
        "timeout.linkerd.io/idle",
    ] {
        duration(key, p);
    }
    if !rules.route_accrual {
        return;
    }
    let Some(mode) = get("balancer.linkerd.io/failure-accrual") else {
        return;
    };
    if mode != "consecutive" {
        p.add(
            &field("balancer.linkerd.io/failure-accrual"),
            format!("{mode:?} is not a failure accrual mode Linkerd has (consecutive)"),
        );
        return;
    }
    const PREFIX: &str = "balancer.linkerd.io/failure-accrual-consecutive-";
    let max_failures = format!("{PREFIX}max-failures");
    if let Some(v) = get(&max_failures) {
        p.check(v.parse::<u32>().is_ok(), &field(&max_failures), || {
            format!("{v:?} is not a whole number")
        });
    }
    let max_key = format!("{PREFIX}max-penalty");
    let min_key = format!("{PREFIX}min-penalty");
    let max = duration(&max_key, p).or(get(&max_key).is_none().then_some(60_000));
    let min = duration(&min_key, p).or(get(&min_key).is_none().then_some(1_000));
    if let (Some(min), Some(max)) = (min, max) {
        p.check(min <= max, &field(&min_key), || {
            format!("{min}ms exceeds the maximum penalty of {max}ms")
        });
        p.check(max > 0, &field(&max_key), || "cannot be zero".into());
    }
    let jitter_key = format!("{PREFIX}jitter-ratio");
    if let Some(v) = get(&jitter_key) {
        p.check(
            v.parse::<f32>().is_ok_and(|j| (0.0..=100.0).contains(&j)),
            &field(&jitter_key),
            || format!("{v:?} is not a number from 0 to 100"),
        );
    }
}

/// One condition of `retry.linkerd.io/http`: `5xx`, `gateway-error`, a
/// status code, or a range `low-high` of them (no spaces, as Linkerd reads it).
fn http_retry_condition(c: &str) -> bool {
    let code = |s: &str| s.parse::<u32>().ok().filter(|c| (100..600).contains(c));
    c.eq_ignore_ascii_case("5xx")
        || c.eq_ignore_ascii_case("gateway-error")
        || code(c).is_some()
        || c.split_once('-').is_some_and(
            |(low, high)| matches!((code(low), code(high)), (Some(l), Some(h)) if l <= h),
        )
}

/// A duration as Linkerd's route annotations write it, in milliseconds:
/// whole digits then `ms`, `s`, `m`, `h` or `d` (a bare `0` too).
fn linkerd_duration(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let end = s
        .rfind(|c: char| c.is_ascii_digit())
        .ok_or("has no number")?;
    let (magnitude, unit) = s.split_at(end + 1);
    let magnitude: u64 = magnitude
        .parse()
        .map_err(|_| format!("{magnitude:?} is not a whole number"))?;
    let ms_per = match unit {
        "" if magnitude == 0 => 0,
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{unit:?} is not one of ms, s, m, h, d")),
    };
    magnitude
        .checked_mul(ms_per)
        .ok_or_else(|| "overflows".to_owned())
}

/// A backend that is a Service names a port (other kinds are admitted, for
/// other controllers).
fn service_backends(rule: &Value, at: &str, p: &mut Problems) {
    for (j, b) in rule["backendRefs"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let service = matches!(b["group"].as_str(), None | Some("" | "core"))
            && matches!(b["kind"].as_str(), None | Some("Service"));
        let port = b["port"].as_u64().unwrap_or(0);
        p.check(
            !service || port != 0,
            &format!("{at}.backendRefs[{j}].port"),
            || "a Service backend needs a port".into(),
        );
    }
}

/// A Gateway API GRPCRoute, as Linkerd's validator checks it: parents,
/// header matches, no regular-expression method match, header-modifier
/// filters and Service backends' ports.
fn grpc_route(spec: &Value, p: &mut Problems) {
    parents(spec, p);
    for (i, rule) in spec["rules"].as_array().into_iter().flatten().enumerate() {
        let at = format!("spec.rules[{i}]");
        for (j, m) in rule["matches"].as_array().into_iter().flatten().enumerate() {
            let field = format!("{at}.matches[{j}]");
            route_match(m, &field, p);
            p.check(
                m["method"]["type"].as_str() != Some("RegularExpression"),
                &format!("{field}.method.type"),
                || "Linkerd does not support RegularExpression method matches".into(),
            );
        }
        for (j, f) in rule["filters"].as_array().into_iter().flatten().enumerate() {
            filter(GATEWAY_GROUP, f, &format!("{at}.filters[{j}]"), p);
        }
        service_backends(rule, &at, p);
    }
}

/// A TLSRoute or TCPRoute: parents, and exactly one rule (Linkerd routes
/// such a connection one way only).
fn one_rule_route(kind: &str, spec: &Value, p: &mut Problems) {
    parents(spec, p);
    let rules = spec["rules"].as_array().map_or(0, Vec::len);
    p.check(rules == 1, "spec.rules", || {
        format!("a {kind} has exactly one rule for Linkerd, not {rules}")
    });
}

/// An HTTPLocalRateLimitPolicy: it targets a Server, every limit is above
/// zero and none exceeds the total, and overrides name ServiceAccounts.
fn rate_limit(spec: &Value, p: &mut Problems) {
    let target = &spec["targetRef"];
    p.check(
        targets(
            target["group"].as_str(),
            target["kind"].as_str().unwrap_or_default(),
            POLICY_GROUP,
            "Server",
        ),
        "spec.targetRef.kind",
        || "must target a Server".into(),
    );
    let rps = |v: &Value| v["requestsPerSecond"].as_u64();
    let total = rps(&spec["total"]);
    let limit = |value: Option<u64>, field: &str, p: &mut Problems| {
        let Some(value) = value else { return };
        p.check(value > 0, field, || "must be greater than 0".into());
        if let Some(total) = total {
            p.check(value <= total, field, || {
                format!("must not exceed total.requestsPerSecond ({total})")
            });
        }
    };
    limit(total, "spec.total.requestsPerSecond", p);
    limit(rps(&spec["identity"]), "spec.identity.requestsPerSecond", p);
    for (i, o) in spec["overrides"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        limit(rps(o), &format!("spec.overrides[{i}].requestsPerSecond"), p);
        for (j, c) in o["clientRefs"].as_array().into_iter().flatten().enumerate() {
            p.check(
                targets(
                    c["group"].as_str(),
                    c["kind"].as_str().unwrap_or_default(),
                    "",
                    "ServiceAccount",
                ),
                &format!("spec.overrides[{i}].clientRefs[{j}].kind"),
                || "must target a ServiceAccount".into(),
            );
        }
    }
}

fn http_route(group: &str, spec: &Value, p: &mut Problems) {
    parents(spec, p);
    for (i, rule) in spec["rules"].as_array().into_iter().flatten().enumerate() {
        let at = format!("spec.rules[{i}]");
        for (j, m) in rule["matches"].as_array().into_iter().flatten().enumerate() {
            route_match(m, &format!("{at}.matches[{j}]"), p);
        }
        for (j, f) in rule["filters"].as_array().into_iter().flatten().enumerate() {
            filter(group, f, &format!("{at}.filters[{j}]"), p);
        }
        if group == POLICY_GROUP {
            timeouts(&rule["timeouts"], &format!("{at}.timeouts"), p);
        } else {
            service_backends(rule, &at, p);
        }
    }
}

/// The methods an HTTPRoute match may name (the Gateway API's enum, which
/// Linkerd's types read strictly for both HTTPRoute kinds).
const HTTP_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

fn route_match(m: &Value, at: &str, p: &mut Problems) {
    if let Some(method) = m.get("method").filter(|v| !v.is_null() && !v.is_object()) {
        p.check(
            method.as_str().is_some_and(|s| HTTP_METHODS.contains(&s)),
            &format!("{at}.method"),
            || format!("{method} is not one of {}", HTTP_METHODS.join(", ")),
        );
    }
    let path = &m["path"];
    if path.is_object() {
        let value = path["value"].as_str().unwrap_or("/");
        match path["type"].as_str().unwrap_or("PathPrefix") {
            "RegularExpression" => regex_ok(value, &format!("{at}.path.value"), p),
            _ => p.check(value.starts_with('/'), &format!("{at}.path.value"), || {
                format!("{value:?} is not an absolute path (starting with /)")
            }),
        }
    }
    for (k, h) in m["headers"].as_array().into_iter().flatten().enumerate() {
        let field = format!("{at}.headers[{k}]");
        header_name(
            h["name"].as_str().unwrap_or_default(),
            &format!("{field}.name"),
            p,
        );
        let value = h["value"].as_str().unwrap_or_default();
        if h["type"].as_str() == Some("RegularExpression") {
            regex_ok(value, &format!("{field}.value"), p);
        } else {
            header_value(value, &format!("{field}.value"), p);
        }
    }
    for (k, q) in m["queryParams"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        if q["type"].as_str() == Some("RegularExpression") {
            regex_ok(
                q["value"].as_str().unwrap_or_default(),
                &format!("{at}.queryParams[{k}].value"),
                p,
            );
        }
    }
}

fn filter(group: &str, f: &Value, at: &str, p: &mut Problems) {
    for key in ["requestHeaderModifier", "responseHeaderModifier"] {
        let modifier = &f[key];
        for op in ["set", "add"] {
            for (k, h) in modifier[op].as_array().into_iter().flatten().enumerate() {
                let field = format!("{at}.{key}.{op}[{k}]");
                header_name(
                    h["name"].as_str().unwrap_or_default(),
                    &format!("{field}.name"),
                    p,
                );
                header_value(
                    h["value"].as_str().unwrap_or_default(),
                    &format!("{field}.value"),
                    p,
                );
            }
        }
        for (k, name) in modifier["remove"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            header_name(
                name.as_str().unwrap_or_default(),
                &format!("{at}.{key}.remove[{k}]"),
                p,
            );
        }
    }
    let redirect = &f["requestRedirect"];
    if let Some(path) = redirect.get("path").filter(|v| v.is_object()) {
        let field = format!("{at}.requestRedirect.path");
        match (
            path["replaceFullPath"].as_str(),
            path["replacePrefixMatch"].as_str(),
        ) {
            (Some(v), _) | (None, Some(v)) => p.check(v.starts_with('/'), &field, || {
                format!("{v:?} is not an absolute path (starting with /)")
            }),
            (None, None) => p.add(&field, "needs replaceFullPath or replacePrefixMatch"),
        }
    }
    if let Some(code) = redirect.get("statusCode").and_then(Value::as_i64) {
        p.check(
            (100..=999).contains(&code),
            &format!("{at}.requestRedirect.statusCode"),
            || format!("{code} is not an HTTP status code"),
        );
    }
    // Linkerd's own HTTPRoute knows only these three filters.
    if group == POLICY_GROUP
        && let Some(t) = f["type"].as_str()
    {
        p.check(
            ["RequestHeaderModifier", "ResponseHeaderModifier", "RequestRedirect"].contains(&t),
            &format!("{at}.type"),
            || format!("{t:?} is not a filter Linkerd's HTTPRoute supports (RequestHeaderModifier, ResponseHeaderModifier, RequestRedirect)"),
        );
    }
}

fn timeouts(t: &Value, at: &str, p: &mut Problems) {
    let mut read = |key: &str| -> Option<i64> {
        let s = t[key].as_str()?;
        let parsed = crate::inject::goparse::parse_duration(s);
        if parsed.is_none_or(|ns| ns < 0) {
            p.add(
                &format!("{at}.{key}"),
                format!("{s:?} is not a duration such as 10s"),
            );
        }
        parsed
    };
    // Read both first: each names its own problem.
    let (request, backend) = (read("request"), read("backendRequest"));
    if let (Some(request), Some(backend)) = (request, backend)
        && request >= 0
    {
        p.check(backend <= request, &format!("{at}.backendRequest"), || {
            "must not be longer than the request timeout".into()
        });
    }
}

fn regex_ok(value: &str, field: &str, p: &mut Problems) {
    if let Err(e) = regex::Regex::new(value) {
        p.add(field, format!("{value:?} is not a regular expression: {e}"));
    }
}

fn header_name(name: &str, field: &str, p: &mut Problems) {
    p.check(
        http::HeaderName::from_bytes(name.as_bytes()).is_ok(),
        field,
        || format!("{name:?} is not an HTTP header name"),
    );
}

fn header_value(value: &str, field: &str, p: &mut Problems) {
    p.check(http::HeaderValue::from_str(value).is_ok(), field, || {
        format!("{value:?} is not an HTTP header value")
    });
}

/// `Kind.group`, as Linkerd names kinds in its messages.
fn canonical(group: Option<&str>, kind: &str) -> String {
    match group.filter(|g| !g.is_empty()) {
        Some(g) => format!("{kind}.{g}"),
        None => kind.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(group: &str, kind: &str, spec: Value) -> Vec<String> {
        check_with(group, kind, json!({}), spec)
    }

    /// The rules of 2.19, which checks the most.
    fn rules_2_19() -> Rules {
        Rules::of(crate::catalog::find("edge-25.10.7").unwrap())
    }

    fn check_with(group: &str, kind: &str, annotations: Value, spec: Value) -> Vec<String> {
        check_by(rules_2_19(), group, kind, annotations, spec)
    }

    fn check_by(
        rules: Rules,
        group: &str,
        kind: &str,
        annotations: Value,
        spec: Value,
    ) -> Vec<String> {
        let o = json!({
            "apiVersion": format!("{group}/v1"), "kind": kind,
            "metadata": {"name": "x", "namespace": "apps", "annotations": annotations},
            "spec": spec,
        });
        object(group, kind, "apps", &o, rules)
            .expect("a validated kind")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn fields(problems: &[String]) -> Vec<&str> {
        problems
            .iter()
            .map(|p| p.split(": ").next().unwrap())
            .collect()
    }

    #[test]
    fn grpc_routes_as_linkerds_validator_checks_them() {
        let service = json!({"kind": "Service", "name": "api", "port": 8080});
        let egress = json!({"group": "policy.linkerd.io", "kind": "EgressNetwork", "name": "all"});
        let good = json!({"parentRefs": [{"kind": "Service", "name": "api", "port": 8080}],
            "rules": [{"matches": [{"method": {"service": "a.B", "method": "Get"},
                                    "headers": [{"name": "x-team", "value": "a"}]}],
                       "backendRefs": [service]}]});
        assert_eq!(
            check(GATEWAY_GROUP, "GRPCRoute", good),
            Vec::<String>::new()
        );
        let bad = json!({"parentRefs": [egress],
            "rules": [{"matches": [{"method": {"type": "RegularExpression", "service": "a.*"},
                                    "headers": [{"name": "bad header", "value": "a"}]}],
                       "backendRefs": [{"kind": "Service", "name": "api"}]}]});
        assert_eq!(
            fields(&check(GATEWAY_GROUP, "GRPCRoute", bad)),
            [
                "spec.parentRefs[0].port",
                "spec.rules[0].matches[0].headers[0].name",
                "spec.rules[0].matches[0].method.type",
                "spec.rules[0].backendRefs[0].port",
            ]
        );
    }

    #[test]
    fn outbound_routes_annotations_are_read_as_linkerd_reads_them() {
        let to_service = json!({"parentRefs": [{"kind": "Service", "name": "api", "port": 80}]});
        let to_server = json!({"parentRefs": [{"group": "policy.linkerd.io", "kind": "Server", "name": "api"}]});
        let good = json!({
            "retry.linkerd.io/limit": "3", "retry.linkerd.io/timeout": "250ms",
            "retry.linkerd.io/http": "5xx,gateway-error,429,500-504",
            "timeout.linkerd.io/request": "10s", "timeout.linkerd.io/response": " 1m ",
            "timeout.linkerd.io/idle": "0",
            "balancer.linkerd.io/failure-accrual": "consecutive",
            "balancer.linkerd.io/failure-accrual-consecutive-max-failures": "5",
            "balancer.linkerd.io/failure-accrual-consecutive-min-penalty": "2s",
            "balancer.linkerd.io/failure-accrual-consecutive-jitter-ratio": "0.25",
        });
        for group in [GATEWAY_GROUP, POLICY_GROUP] {
            assert_eq!(
                check_with(group, "HTTPRoute", good.clone(), to_service.clone()),
                Vec::<String>::new()
            );
        }
        let bad = json!({
            "retry.linkerd.io/limit": "70000", "retry.linkerd.io/timeout": "1.5s",
            "retry.linkerd.io/http": "5xx, 429",
            "timeout.linkerd.io/request": "10", "timeout.linkerd.io/idle": "1w",
            "balancer.linkerd.io/failure-accrual": "consecutive",
            "balancer.linkerd.io/failure-accrual-consecutive-min-penalty": "2m",
            "balancer.linkerd.io/failure-accrual-consecutive-jitter-ratio": "NaN",
        });
        assert_eq!(
            fields(&check_with(
                GATEWAY_GROUP,
                "HTTPRoute",
                bad.clone(),
                to_service.clone()
            )),
            [
                "metadata.annotations[retry.linkerd.io/limit]",
                "metadata.annotations[retry.linkerd.io/timeout]",
                "metadata.annotations[retry.linkerd.io/http]",
                "metadata.annotations[timeout.linkerd.io/request]",
                "metadata.annotations[timeout.linkerd.io/idle]",
                // Above the default maximum penalty of a minute.
                "metadata.annotations[balancer.linkerd.io/failure-accrual-consecutive-min-penalty]",
                "metadata.annotations[balancer.linkerd.io/failure-accrual-consecutive-jitter-ratio]",
            ]
        );
        // An inbound route (a Server parent) is not read for them.
        assert_eq!(
            check_with(GATEWAY_GROUP, "HTTPRoute", bad, to_server),
            Vec::<String>::new()
        );
        let accrual = json!({"balancer.linkerd.io/failure-accrual": "success-rate"});
        assert_eq!(
            fields(&check_with(
                GATEWAY_GROUP,
                "HTTPRoute",
                accrual,
                to_service.clone()
            )),
            ["metadata.annotations[balancer.linkerd.io/failure-accrual]"]
        );
        let zero = json!({"balancer.linkerd.io/failure-accrual": "consecutive",
            "balancer.linkerd.io/failure-accrual-consecutive-max-penalty": "0",
            "balancer.linkerd.io/failure-accrual-consecutive-min-penalty": "0"});
        assert_eq!(
            fields(&check_with(
                GATEWAY_GROUP,
                "HTTPRoute",
                zero.clone(),
                to_service.clone()
            )),
            ["metadata.annotations[balancer.linkerd.io/failure-accrual-consecutive-max-penalty]"]
        );
        // From 2.20 routes' accrual annotations are not read: the same route
        // passes, while its retry annotations are still judged.
        let rules_2_20 = Rules::of(crate::catalog::find("edge-26.6.3").unwrap());
        assert!(!rules_2_20.route_accrual);
        let mut accrual_and_retry = zero.clone();
        accrual_and_retry["retry.linkerd.io/limit"] = json!("70000");
        assert_eq!(
            fields(&check_by(
                rules_2_20,
                GATEWAY_GROUP,
                "HTTPRoute",
                accrual_and_retry,
                to_service.clone()
            )),
            ["metadata.annotations[retry.linkerd.io/limit]"]
        );
        // A cluster with a 2.19 and a 2.20 control plane refuses what 2.19 does.
        let both = Rules::strictest(
            ["edge-25.10.7", "edge-26.6.3"].map(|v| crate::catalog::find(v).unwrap()),
        );
        assert_eq!(both, Some(rules_2_19()));
        // gRPC routes name gRPC statuses instead.
        let grpc = json!({"retry.linkerd.io/grpc": "Cancelled,unavailable"});
        let grpc_spec = json!({"parentRefs": [{"kind": "Service", "name": "api", "port": 80}]});
        assert_eq!(
            check_with(GATEWAY_GROUP, "GRPCRoute", grpc, grpc_spec.clone()),
            Vec::<String>::new()
        );
        let grpc = json!({"retry.linkerd.io/grpc": "unavailable,5xx"});
        assert_eq!(
            fields(&check_with(GATEWAY_GROUP, "GRPCRoute", grpc, grpc_spec)),
            ["metadata.annotations[retry.linkerd.io/grpc]"]
        );
    }

    #[test]
    fn http_route_methods_are_the_gateway_apis_nine() {
        let route = |method: Value| json!({"rules": [{"matches": [{"method": method}]}]});
        for group in [GATEWAY_GROUP, POLICY_GROUP] {
            assert_eq!(
                check(group, "HTTPRoute", route(json!("PATCH"))),
                Vec::<String>::new()
            );
            for bad in [json!("get"), json!("PURGE"), json!(7)] {
                assert_eq!(
                    fields(&check(group, "HTTPRoute", route(bad))),
                    ["spec.rules[0].matches[0].method"]
                );
            }
        }
    }

    #[test]
    fn tls_and_tcp_routes_have_exactly_one_rule() {
        let rule = json!({"backendRefs": [{"name": "db", "port": 5432}]});
        for kind in ["TLSRoute", "TCPRoute"] {
            let one = json!({"parentRefs": [{"kind": "Service", "name": "db"}], "rules": [rule]});
            assert_eq!(
                check(GATEWAY_GROUP, kind, one),
                Vec::<String>::new(),
                "{kind}"
            );
            let two = json!({"rules": [rule, rule]});
            assert_eq!(
                fields(&check(GATEWAY_GROUP, kind, two)),
                ["spec.rules"],
                "{kind}"
            );
            let egress = json!({"parentRefs": [{"group": "policy.linkerd.io", "kind": "EgressNetwork", "name": "all"}],
                "rules": [rule]});
            assert_eq!(
                fields(&check(GATEWAY_GROUP, kind, egress)),
                ["spec.parentRefs[0].port"],
                "{kind}"
            );
        }
    }

    #[test]
    fn local_rate_limits_as_linkerds_validator_checks_them() {
        let kind = "HTTPLocalRateLimitPolicy";
        let server = json!({"group": "policy.linkerd.io", "kind": "Server", "name": "web"});
        let sa = json!({"kind": "ServiceAccount", "name": "client"});
        let good = json!({"targetRef": server, "total": {"requestsPerSecond": 100},
            "identity": {"requestsPerSecond": 20},
            "overrides": [{"requestsPerSecond": 50, "clientRefs": [sa]}]});
        assert_eq!(check(POLICY_GROUP, kind, good), Vec::<String>::new());
        // Without a total, nothing caps the others.
        let uncapped = json!({"targetRef": server, "identity": {"requestsPerSecond": 500}});
        assert_eq!(check(POLICY_GROUP, kind, uncapped), Vec::<String>::new());
        let bad = json!({"targetRef": {"kind": "Service", "name": "web"},
            "total": {"requestsPerSecond": 10}, "identity": {"requestsPerSecond": 20},
            "overrides": [{"requestsPerSecond": 0, "clientRefs": [{"kind": "Pod", "name": "x"}]},
                          {"requestsPerSecond": 11, "clientRefs": [sa]}]});
        assert_eq!(
            fields(&check(POLICY_GROUP, kind, bad)),
            [
                "spec.targetRef.kind",
                "spec.identity.requestsPerSecond",
                "spec.overrides[0].requestsPerSecond",
                "spec.overrides[0].clientRefs[0].kind",
                "spec.overrides[1].requestsPerSecond",
            ]
        );
        let zero = json!({"targetRef": server, "total": {"requestsPerSecond": 0}});
        assert_eq!(
            fields(&check(POLICY_GROUP, kind, zero)),
            ["spec.total.requestsPerSecond"]
        );
    }

    #[test]
    fn other_kinds_are_not_ours() {
        assert_eq!(
            object("apps", "Deployment", "apps", &json!({}), rules_2_19()),
            None
        );
        assert_eq!(
            object(GATEWAY_GROUP, "Gateway", "apps", &json!({}), rules_2_19()),
            None
        );
    }

    #[test]
    fn servers() {
        let ok = json!({"podSelector": {"matchLabels": {"app": "api"}}, "port": "http", "proxyProtocol": "HTTP/2", "accessPolicy": "audit"});
        assert_eq!(check(POLICY_GROUP, "Server", ok), Vec::<String>::new());
        let bad = check(
            POLICY_GROUP,
            "Server",
            json!({"podSelector": {}, "externalWorkloadSelector": {}, "port": 0, "proxyProtocol": "HTTP/3", "accessPolicy": "allow-all"}),
        );
        assert_eq!(
            fields(&bad),
            [
                "spec.externalWorkloadSelector",
                "spec.port",
                "spec.proxyProtocol",
                "spec.accessPolicy"
            ]
        );
        assert!(bad[3].contains("all-unauthenticated"), "{bad:?}");
        let neither = check(POLICY_GROUP, "Server", json!({"port": 65536}));
        assert_eq!(fields(&neither), ["spec.podSelector", "spec.port"]);
        // Any name: Linkerd admits them all.
        for name in ["Admin_HTTP", "a-port-name-longer-than-fifteen", "8080"] {
            let named = json!({"podSelector": {}, "port": name});
            assert_eq!(
                check(POLICY_GROUP, "Server", named),
                Vec::<String>::new(),
                "{name}"
            );
        }
        let annotated = check_with(
            POLICY_GROUP,
            "Server",
            json!({"keelson.dev/policy-rollout": "audit-first", "keelson.dev/policy-soak": "a while"}),
            json!({"podSelector": {}, "port": 80}),
        );
        assert_eq!(
            fields(&annotated),
            ["metadata.annotations[keelson.dev/policy-soak]"]
        );
    }

    #[test]
    fn authorization_policies() {
        let authz = |target: Value, refs: Value| {
            check(
                POLICY_GROUP,
                "AuthorizationPolicy",
                json!({"targetRef": target, "requiredAuthenticationRefs": refs}),
            )
        };
        let server = json!({"group": "policy.linkerd.io", "kind": "Server", "name": "api"});
        assert!(
            authz(
                server.clone(),
                json!([
                    {"group": "policy.linkerd.io", "kind": "MeshTLSAuthentication", "name": "m"},
                    {"group": "policy.linkerd.io", "kind": "NetworkAuthentication", "name": "n"},
                ])
            )
            .is_empty()
        );
        assert!(
            authz(
                json!({"kind": "Namespace", "name": "apps"}),
                json!([{"kind": "ServiceAccount", "name": "web"}])
            )
            .is_empty()
        );
        assert!(
            authz(
                json!({"group": "gateway.networking.k8s.io", "kind": "GRPCRoute", "name": "g"}),
                json!([])
            )
            .is_empty()
        );

        let bad = authz(
            json!({"group": "apps", "kind": "Deployment", "name": "api"}),
            json!([]),
        );
        assert_eq!(fields(&bad), ["spec.targetRef.kind"]);
        assert!(bad[0].contains("Deployment.apps"), "{bad:?}");
        assert_eq!(
            fields(&authz(
                json!({"kind": "Namespace", "name": "other"}),
                json!([])
            )),
            ["spec.targetRef.name"]
        );

        let two_accounts = authz(
            server.clone(),
            json!([
                {"kind": "ServiceAccount", "name": "a"}, {"kind": "ServiceAccount", "name": "b"},
            ]),
        );
        assert_eq!(
            two_accounts,
            ["spec.requiredAuthenticationRefs: 2 ServiceAccounts; at most one may be set"]
        );
        let mixed = authz(
            server.clone(),
            json!([
                {"kind": "ServiceAccount", "name": "a"},
                {"group": "policy.linkerd.io", "kind": "MeshTLSAuthentication", "name": "m"},
                {"group": "policy.linkerd.io", "kind": "NetworkAuthentication", "name": "n1"},
                {"group": "policy.linkerd.io", "kind": "NetworkAuthentication", "name": "n2"},
                {"group": "policy.linkerd.io", "kind": "Secret", "name": "s"},
            ]),
        );
        assert_eq!(
            mixed,
            [
                "spec.requiredAuthenticationRefs: a MeshTLSAuthentication and a ServiceAccount may not be set together",
                "spec.requiredAuthenticationRefs: 2 NetworkAuthentications; at most one may be set",
                "spec.requiredAuthenticationRefs[4].kind: Secret.policy.linkerd.io is not an authentication Linkerd supports: MeshTLSAuthentication, NetworkAuthentication (policy.linkerd.io) or ServiceAccount",
            ]
        );
    }

    #[test]
    fn mesh_tls_authentications() {
        let m = |spec: Value| check(POLICY_GROUP, "MeshTLSAuthentication", spec);
        assert!(m(json!({"identities": ["*", "*.apps.serviceaccount.identity.linkerd.cluster.local", "spiffe://example.org/ns/apps"]})).is_empty());
        // Several ServiceAccounts are several identities, as in Linkerd.
        assert!(m(json!({"identityRefs": [{"kind": "ServiceAccount", "name": "a"}, {"kind": "ServiceAccount", "name": "b"}, {"kind": "Namespace", "name": "apps"}]})).is_empty());
        assert_eq!(fields(&m(json!({}))), ["spec.identities"]);
        assert_eq!(
            fields(&m(
                json!({"identities": ["a"], "identityRefs": [{"kind": "ServiceAccount", "name": "a"}]})
            )),
            ["spec.identityRefs"]
        );
        assert_eq!(
            fields(&m(
                json!({"identities": ["Web.apps", "spiffe:///x", "spiffe://td/a//b", "a.*"]})
            )),
            [
                "spec.identities[0]",
                "spec.identities[1]",
                "spec.identities[2]",
                "spec.identities[3]"
            ]
        );
        assert_eq!(
            fields(&m(
                json!({"identityRefs": [{"kind": "Namespace", "name": "apps", "namespace": "x"}, {"kind": "Pod", "name": "p"}]})
            )),
            [
                "spec.identityRefs[0].namespace",
                "spec.identityRefs[1].kind"
            ]
        );
    }

    #[test]
    fn network_authentications() {
        let n = |networks: Value| {
            check(
                POLICY_GROUP,
                "NetworkAuthentication",
                json!({"networks": networks}),
            )
        };
        assert!(n(json!([{"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16", "10.2.3.4"]}, {"cidr": "fd00::/8"}, {"cidr": "192.168.1.1"}])).is_empty());
        assert_eq!(
            n(json!([])),
            ["spec.networks: at least one network must be specified"]
        );
        let bad = n(json!([
            {"cidr": "10.0.0.0/33"},
            {"cidr": "10.0.0.0/16", "except": ["10.0.0.0/8", "11.0.0.0/24", "nope", "::1"]},
        ]));
        assert_eq!(
            fields(&bad),
            [
                "spec.networks[0].cidr",
                "spec.networks[1].except[0]",
                "spec.networks[1].except[1]",
                "spec.networks[1].except[2]",
                "spec.networks[1].except[3]",
            ]
        );
        assert!(bad[1].contains("covers all of cidr"), "{bad:?}");
        assert!(bad[2].contains("not inside cidr"), "{bad:?}");
    }

    #[test]
    fn http_routes_as_linkerd_reads_them() {
        let ok = json!({
            "parentRefs": [{"group": "policy.linkerd.io", "kind": "Server", "name": "api"}],
            "rules": [{
                "matches": [{"path": {"type": "RegularExpression", "value": "/api/v[0-9]+"}, "headers": [{"name": "x-user", "value": "a"}]}],
                "filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "x-a", "value": "b"}], "remove": ["x-b"]}}],
                "timeouts": {"request": "10s", "backendRequest": "5s"},
            }],
        });
        assert!(check(POLICY_GROUP, "HTTPRoute", ok).is_empty());
        let bad = json!({
            "parentRefs": [{"group": "policy.linkerd.io", "kind": "EgressNetwork", "name": "out"}],
            "rules": [{
                "matches": [{"path": {"value": "api"}, "headers": [{"name": "bad header", "value": "a", "type": "RegularExpression"}, {"name": "x", "value": "(", "type": "RegularExpression"}]}],
                "filters": [
                    {"type": "RequestRedirect", "requestRedirect": {"path": {"type": "ReplaceFullPath", "replaceFullPath": "relative"}}},
                    {"type": "URLRewrite", "urlRewrite": {}},
                ],
                "timeouts": {"request": "5s", "backendRequest": "10s"},
            }],
        });
        assert_eq!(
            fields(&check(POLICY_GROUP, "HTTPRoute", bad.clone())),
            [
                "spec.parentRefs[0].port",
                "spec.rules[0].matches[0].path.value",
                "spec.rules[0].matches[0].headers[0].name",
                "spec.rules[0].matches[0].headers[1].value",
                "spec.rules[0].filters[0].requestRedirect.path",
                "spec.rules[0].filters[1].type",
                "spec.rules[0].timeouts.backendRequest",
            ]
        );
        // Gateway API's HTTPRoute: every filter type, no timeout check, but
        // Service backends need a port.
        let mut gateway = bad;
        gateway["rules"][0]["backendRefs"] = json!([{"name": "api", "port": 80}, {"name": "noport"}, {"group": "example.com", "kind": "Bucket", "name": "b"}]);
        assert_eq!(
            fields(&check(GATEWAY_GROUP, "HTTPRoute", gateway)),
            [
                "spec.parentRefs[0].port",
                "spec.rules[0].matches[0].path.value",
                "spec.rules[0].matches[0].headers[0].name",
                "spec.rules[0].matches[0].headers[1].value",
                "spec.rules[0].filters[0].requestRedirect.path",
                "spec.rules[0].backendRefs[1].port",
            ]
        );
    }

    #[test]
    fn server_authorizations_and_egress_networks() {
        let saz = |client: Value| {
            check(
                POLICY_GROUP,
                "ServerAuthorization",
                json!({"server": {"name": "api"}, "client": client}),
            )
        };
        assert!(saz(json!({"meshTLS": {"serviceAccounts": [{"name": "web"}]}})).is_empty());
        assert!(
            saz(json!({"unauthenticated": true, "networks": [{"cidr": "10.0.0.0/8"}]})).is_empty()
        );
        assert_eq!(
            fields(&saz(json!({
                "unauthenticated": true,
                "meshTLS": {"unauthenticatedTLS": true, "identities": ["*"]},
                "networks": [{"cidr": "10.0.0.0/24", "except": ["10.0.1.0/24"]}],
            }))),
            [
                "spec.client.unauthenticated",
                "spec.client.meshTLS.unauthenticatedTLS",
                "spec.client.networks[0].except[0]",
            ]
        );
        let egress = |spec: Value| check(POLICY_GROUP, "EgressNetwork", spec);
        assert!(egress(json!({"trafficPolicy": "Allow"})).is_empty());
        assert_eq!(
            fields(&egress(json!({"trafficPolicy": "Deny", "networks": []}))),
            ["spec.networks"]
        );
        assert_eq!(
            fields(&egress(
                json!({"trafficPolicy": "Deny", "networks": [{"cidr": "0.0.0.0/0", "except": ["::/0"]}]})
            )),
            ["spec.networks[0].except[0]"]
        );
    }

    #[test]
    fn cidr_containment() {
        let c = |s| Cidr::parse(s).unwrap();
        assert!(c("10.0.0.0/8").contains(&c("10.255.0.0/16")));
        assert!(c("0.0.0.0/0").contains(&c("1.2.3.4")));
        assert!(!c("10.0.0.0/16").contains(&c("10.0.0.0/8")));
        assert!(!c("::/0").contains(&c("10.0.0.0/8")));
        assert!(c("fd00::/8").contains(&c("fd12::1")));
        assert_eq!(Cidr::parse("10.0.0.0/+8"), None);
    }
}
