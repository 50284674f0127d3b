//! Keelson's policy report: one ConfigMap, `keelson-policy-report`, in each
//! namespace that holds policy objects. Linkerd's policy controller owns
//! the status of routes and Servers, so Keelson writes there nothing; the
//! report is where a platform engineer (or `keelson policy report`) reads
//! what Keelson found: broken references, and per Server its mode, the
//! authorizations that apply and the would-be denials of an audit.

use super::audit::{self, Denial, Phase};
use super::index::{self, Applies, Broken, Snapshot};
use crate::render::object;
use keelson_crds::policy::Server;
use kube::ResourceExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Name of the report ConfigMap in each namespace.
pub const NAME: &str = "keelson-policy-report";
/// Label on every report, to find them.
pub const LABEL: &str = "keelson.dev/policy-report";
/// The ConfigMap key holding the report (YAML).
pub const KEY: &str = "report.yaml";

/// The report of one namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    #[serde(default)]
    pub broken_references: Vec<BrokenReference>,
    #[serde(default)]
    pub servers: Vec<ServerReport>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokenReference {
    /// `Kind/name`.
    pub object: String,
    pub field: String,
    pub missing: String,
}

/// One Server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerReport {
    pub name: String,
    /// `spec.accessPolicy` (Linkerd's default `deny` when unset).
    pub access_policy: String,
    /// The audit-first rollout, when the Server has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    #[serde(default)]
    pub authorizations: Vec<Applies>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// `Auditing`, `Holding` or `Enforced`; `Invalid` when the annotations
    /// are wrong (see `problems`).
    pub phase: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean_since: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub would_be_denials: Vec<Denial>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// The rollout state a Server carries, if it is readable.
pub fn state(server: &Server) -> Option<audit::State> {
    serde_json::from_str(server.annotations().get(audit::STATE)?).ok()
}

/// The reports of every namespace with policy objects, by namespace.
pub fn reports(snapshot: &Snapshot, broken: &[Broken]) -> BTreeMap<String, Report> {
    let mut out: BTreeMap<String, Report> = BTreeMap::new();
    let namespaces = snapshot
        .authorization_policies
        .iter()
        .map(|o| o.namespace())
        .chain(snapshot.servers.iter().flatten().map(|o| o.namespace()))
        .chain(snapshot.mesh_tls.iter().flatten().map(|o| o.namespace()))
        .chain(snapshot.network.iter().flatten().map(|o| o.namespace()))
        .map(Option::unwrap_or_default)
        .chain(
            snapshot
                .policy_routes
                .iter()
                .chain(snapshot.gateway_routes.iter())
                .flatten()
                .map(|r| r.namespace.clone()),
        );
    for ns in namespaces {
        out.entry(ns).or_default();
    }
    for b in broken {
        out.entry(b.referrer.namespace.clone())
            .or_default()
            .broken_references
            .push(BrokenReference {
                object: format!("{}/{}", b.referrer.kind, b.referrer.name),
                field: b.field.clone(),
                missing: b.missing.to_string(),
            });
    }
    for server in snapshot.servers.iter().flatten() {
        let rollout = match audit::settings(server.annotations()) {
            Err(problems) => Some(Rollout {
                phase: "Invalid".into(),
                since: None,
                clean_since: None,
                would_be_denials: Vec::new(),
                problems: problems.iter().map(ToString::to_string).collect(),
            }),
            Ok(_) => state(server).map(|st| Rollout {
                phase: match st.phase {
                    Phase::Auditing => "Auditing",
                    Phase::Holding => "Holding",
                    Phase::Enforced => "Enforced",
                }
                .into(),
                since: Some(st.since.0.to_string()),
                clean_since: Some(st.clean_since.0.to_string()),
                would_be_denials: st.denials,
                problems: Vec::new(),
            }),
        };
        out.entry(server.namespace().unwrap_or_default())
            .or_default()
            .servers
            .push(ServerReport {
                name: server.name_any(),
                access_policy: server
                    .spec
                    .access_policy
                    .clone()
                    .unwrap_or_else(|| "deny".into()),
                rollout,
                authorizations: index::authorizations(snapshot, server),
            });
    }
    for r in out.values_mut() {
        r.servers.sort_by(|a, b| a.name.cmp(&b.name));
    }
    out
}

/// The ConfigMap holding `report`.
pub fn config_map(namespace: &str, report: &Report) -> Value {
    let summary = format!(
        "{} broken reference(s), {} Server(s), {} in audit",
        report.broken_references.len(),
        report.servers.len(),
        report
            .servers
            .iter()
            .filter(|s| s.access_policy == "audit")
            .count()
    );
    object(
        "v1",
        "ConfigMap",
        json!({"name": NAME, "namespace": namespace, "labels": {LABEL: "true"}}),
        json!({"data": {
            "summary": summary,
            KEY: yaml_serde::to_string(report).expect("a report serializes"),
        }}),
    )
}

/// The report a ConfigMap holds.
pub fn read(data: &BTreeMap<String, String>) -> Option<Report> {
    yaml_serde::from_str(data.get(KEY)?).ok()
}

/// The report of namespace `ns` as text, for `keelson policy report`: per
/// Server its mode, the authorizations that apply and the would-be denials
/// seen, then the broken references.
pub fn text(ns: &str, report: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = format!("namespace {ns}\n");
    for s in &report.servers {
        let _ = write!(out, "  Server {}: accessPolicy {}", s.name, s.access_policy);
        match &s.rollout {
            Some(r) if r.phase == "Invalid" => {
                let _ = write!(
                    out,
                    ", rollout annotations invalid: {}",
                    r.problems.join("; ")
                );
            }
            Some(r) => {
                let _ = write!(
                    out,
                    ", audit-first {} since {} (clean since {})",
                    r.phase,
                    r.since.as_deref().unwrap_or("?"),
                    r.clean_since.as_deref().unwrap_or("?")
                );
            }
            None => {}
        }
        out.push('\n');
        if s.authorizations.is_empty() {
            out.push_str("    authorizations: none\n");
        }
        for a in &s.authorizations {
            let _ = writeln!(
                out,
                "    authorization: {} (via {})",
                a.authorization, a.via
            );
        }
        for d in s.rollout.iter().flat_map(|r| &r.would_be_denials) {
            let _ = writeln!(
                out,
                "    would-be denied: {}{}: {} (last {})",
                d.client,
                d.route
                    .as_ref()
                    .map(|r| format!(" on {r}"))
                    .unwrap_or_default(),
                d.count,
                d.last_seen.0
            );
        }
    }
    for b in &report.broken_references {
        let _ = writeln!(
            out,
            "  broken: {} {}: {} does not exist",
            b.object, b.field, b.missing
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::index::broken;

    fn snapshot() -> Snapshot {
        let server: Server = serde_json::from_value(json!({
            "apiVersion": "policy.linkerd.io/v1beta3", "kind": "Server",
            "metadata": {"name": "api", "namespace": "apps", "annotations": {
                audit::ROLLOUT: "audit-first",
                audit::STATE: r#"{"phase":"Auditing","since":"2026-01-01T00:00:00Z","cleanSince":"2026-01-01T00:05:00Z","denials":[{"client":"web.apps","count":3,"lastSeen":"2026-01-01T00:05:00Z"}]}"#,
            }},
            "spec": {"podSelector": {}, "port": 80, "accessPolicy": "audit"},
        }))
        .unwrap();
        let ap = serde_json::from_value(json!({
            "apiVersion": "policy.linkerd.io/v1alpha1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "web", "namespace": "apps"},
            "spec": {"targetRef": {"group": "policy.linkerd.io", "kind": "Server", "name": "api"},
                     "requiredAuthenticationRefs": [{"group": "policy.linkerd.io", "kind": "MeshTLSAuthentication", "name": "gone"}]},
        }))
        .unwrap();
        Snapshot {
            servers: Some(vec![server]),
            authorization_policies: vec![ap],
            mesh_tls: Some(vec![]),
            namespaces: Some(["apps".to_owned()].into()),
            ..Snapshot::default()
        }
    }

    #[test]
    fn a_namespace_report_lists_broken_references_and_servers() {
        let s = snapshot();
        let reports = reports(&s, &broken(&s));
        assert_eq!(reports.keys().collect::<Vec<_>>(), ["apps"]);
        let r = &reports["apps"];
        assert_eq!(
            r.broken_references,
            [BrokenReference {
                object: "AuthorizationPolicy/web".into(),
                field: "spec.requiredAuthenticationRefs[0]".into(),
                missing: "MeshTLSAuthentication gone in namespace apps".into(),
            }]
        );
        let srv = &r.servers[0];
        assert_eq!(
            (srv.name.as_str(), srv.access_policy.as_str()),
            ("api", "audit")
        );
        let rollout = srv.rollout.as_ref().unwrap();
        assert_eq!(rollout.phase, "Auditing");
        assert_eq!(rollout.would_be_denials[0].client, "web.apps");
        assert_eq!(
            srv.authorizations[0].authorization,
            "AuthorizationPolicy/web"
        );

        // The ConfigMap round-trips, for `keelson policy report`.
        let cm = config_map("apps", r);
        assert_eq!(cm["metadata"]["labels"][LABEL], "true");
        assert_eq!(
            cm["data"]["summary"],
            "1 broken reference(s), 1 Server(s), 1 in audit"
        );
        let data: BTreeMap<String, String> = serde_json::from_value(cm["data"].clone()).unwrap();
        assert_eq!(read(&data).as_ref(), Some(r));
    }

    #[test]
    fn the_text_report_names_modes_authorizations_and_denials() {
        let s = snapshot();
        let reports = reports(&s, &broken(&s));
        assert_eq!(
            text("apps", &reports["apps"]),
            "namespace apps\n\
             \x20 Server api: accessPolicy audit, audit-first Auditing since 2026-01-01T00:00:00Z (clean since 2026-01-01T00:05:00Z)\n\
             \x20   authorization: AuthorizationPolicy/web (via Server)\n\
             \x20   would-be denied: web.apps: 3 (last 2026-01-01T00:05:00Z)\n\
             \x20 broken: AuthorizationPolicy/web spec.requiredAuthenticationRefs[0]: MeshTLSAuthentication gone in namespace apps does not exist\n"
        );
    }

    #[test]
    fn wrong_rollout_annotations_show_in_the_report() {
        let mut s = snapshot();
        let server = &mut s.servers.as_mut().unwrap()[0];
        server
            .annotations_mut()
            .insert(audit::SOAK.into(), "soon".into());
        let reports = reports(&s, &[]);
        let rollout = reports["apps"].servers[0].rollout.clone().unwrap();
        assert_eq!(rollout.phase, "Invalid");
        assert!(
            rollout.problems[0].contains("keelson.dev/policy-soak"),
            "{rollout:?}"
        );
    }
}
