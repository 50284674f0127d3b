//! A snapshot of the policy objects of the cluster and what their references
//! point at, and the references that point at nothing. Pure: the controller
//! builds the snapshot from its watch caches.
//!
//! References are resolved as Linkerd's policy controller resolves them: an
//! empty or absent group is the core group, kinds and groups compare without
//! case, and an absent namespace is the referrer's.

use super::{GATEWAY_GROUP, POLICY_GROUP, targets};
use keelson_crds::policy::{
    AuthorizationPolicy, MeshTLSAuthentication, NetworkAuthentication, Server,
};
use kube::ResourceExt;
use serde_json::Value;
use std::collections::BTreeSet;
use std::fmt;

/// An HTTPRoute of either API (policy.linkerd.io or Gateway API), reduced to
/// its references. Both kinds share Gateway API's reference shapes, so one
/// reader serves both.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    /// `policy.linkerd.io` or `gateway.networking.k8s.io`.
    pub group: &'static str,
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    pub parents: Vec<Reference>,
    /// Backends with their field path (`spec.rules[0].backendRefs[1]`).
    pub backends: Vec<(String, Reference)>,
}

/// A reference as routes spell them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    pub group: Option<String>,
    pub kind: Option<String>,
    pub name: String,
    pub namespace: Option<String>,
}

impl Route {
    /// Reads the references out of a route's `spec`.
    pub fn from_spec(
        group: &'static str,
        namespace: &str,
        name: &str,
        uid: Option<String>,
        spec: &Value,
    ) -> Self {
        let reference = |v: &Value| -> Option<Reference> {
            let text = |key: &str| v[key].as_str().map(str::to_owned);
            Some(Reference {
                group: text("group"),
                kind: text("kind"),
                name: text("name")?,
                namespace: text("namespace"),
            })
        };
        let parents = spec["parentRefs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(reference)
            .collect();
        let mut backends = Vec::new();
        for (i, rule) in spec["rules"].as_array().into_iter().flatten().enumerate() {
            for (j, backend) in rule["backendRefs"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                if let Some(r) = reference(backend) {
                    backends.push((format!("spec.rules[{i}].backendRefs[{j}]"), r));
                }
            }
        }
        Self {
            group,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            uid,
            parents,
            backends,
        }
    }
}

/// What the controller knows. A kind whose cache has not synced (or whose
/// CRD is not installed) is `None`, and references to it are not judged:
/// "unknown" must never be reported as "missing".
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub servers: Option<Vec<Server>>,
    pub authorization_policies: Vec<AuthorizationPolicy>,
    pub mesh_tls: Option<Vec<MeshTLSAuthentication>>,
    pub network: Option<Vec<NetworkAuthentication>>,
    pub policy_routes: Option<Vec<Route>>,
    pub gateway_routes: Option<Vec<Route>>,
    /// (namespace, name) of every Service.
    pub services: Option<BTreeSet<(String, String)>>,
    pub namespaces: Option<BTreeSet<String>>,
}

/// The object holding a reference.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Referrer {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
}

/// A reference to something that does not exist.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Broken {
    pub referrer: Referrer,
    /// Path of the field, as `kubectl explain` spells it.
    pub field: String,
    pub missing: Missing,
}

/// The object a broken reference names.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Missing {
    /// API group as the reference spells it (empty: core).
    pub group: String,
    pub kind: String,
    /// `None` for a Namespace.
    pub namespace: Option<String>,
    pub name: String,
}

impl Missing {
    fn namespace(name: &str) -> Self {
        Self {
            group: String::new(),
            kind: "Namespace".into(),
            namespace: None,
            name: name.to_owned(),
        }
    }
}

/// `Server api in namespace apps`, `Namespace apps`.
impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.name)?;
        match &self.namespace {
            Some(ns) => write!(f, " in namespace {ns}"),
            None => Ok(()),
        }
    }
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}/{}: {}: {} does not exist",
            self.referrer.kind,
            self.referrer.namespace,
            self.referrer.name,
            self.field,
            self.missing
        )
    }
}

impl Snapshot {
    fn has_namespace(&self, ns: &str) -> Option<bool> {
        Some(self.namespaces.as_ref()?.contains(ns))
    }

    fn has<'a, T: 'a>(
        list: &'a Option<Vec<T>>,
        ns: &str,
        name: &str,
        key: impl Fn(&T) -> (&str, &str),
    ) -> Option<bool> {
        Some(list.as_ref()?.iter().any(|o| key(o) == (ns, name)))
    }

    fn has_server(&self, ns: &str, name: &str) -> Option<bool> {
        Self::has(&self.servers, ns, name, |s| {
            (
                s.metadata.namespace.as_deref().unwrap_or_default(),
                s.metadata.name.as_deref().unwrap_or_default(),
            )
        })
    }

    fn has_route(&self, routes: &Option<Vec<Route>>, ns: &str, name: &str) -> Option<bool> {
        Self::has(routes, ns, name, |r| {
            (r.namespace.as_str(), r.name.as_str())
        })
    }

    fn has_service(&self, ns: &str, name: &str) -> Option<bool> {
        Some(
            self.services
                .as_ref()?
                .contains(&(ns.to_owned(), name.to_owned())),
        )
    }

    /// Whether (group, kind) `ns/name` exists; `None` when unknown or the
    /// kind is not one Keelson watches.
    fn exists(&self, group: Option<&str>, kind: &str, ns: &str, name: &str) -> Option<bool> {
        if targets(group, kind, POLICY_GROUP, "Server") {
            self.has_server(ns, name)
        } else if targets(group, kind, POLICY_GROUP, "HTTPRoute") {
            self.has_route(&self.policy_routes, ns, name)
        } else if targets(group, kind, GATEWAY_GROUP, "HTTPRoute") {
            self.has_route(&self.gateway_routes, ns, name)
        } else if targets(group, kind, POLICY_GROUP, "MeshTLSAuthentication") {
            Self::has(&self.mesh_tls, ns, name, |m| {
                (
                    m.metadata.namespace.as_deref().unwrap_or_default(),
                    m.metadata.name.as_deref().unwrap_or_default(),
                )
            })
        } else if targets(group, kind, POLICY_GROUP, "NetworkAuthentication") {
            Self::has(&self.network, ns, name, |n| {
                (
                    n.metadata.namespace.as_deref().unwrap_or_default(),
                    n.metadata.name.as_deref().unwrap_or_default(),
                )
            })
        } else if targets(group, kind, "", "Service") {
            self.has_service(ns, name)
        } else {
            None
        }
    }
}

/// Collects broken references of one referrer.
struct Checker<'a> {
    snapshot: &'a Snapshot,
    referrer: Referrer,
    out: &'a mut Vec<Broken>,
}

impl Checker<'_> {
    fn missing(&mut self, field: &str, missing: Missing) {
        self.out.push(Broken {
            referrer: self.referrer.clone(),
            field: field.to_owned(),
            missing,
        });
    }

    /// Checks a namespaced reference: its namespace first (a missing
    /// namespace explains everything under it), then the object.
    fn reference(
        &mut self,
        field: &str,
        group: Option<&str>,
        kind: &str,
        name: &str,
        ns: Option<&str>,
    ) {
        let own = self.referrer.namespace.clone();
        let ns = ns.filter(|n| !n.is_empty()).unwrap_or(&own);
        if ns != own && self.snapshot.has_namespace(ns) == Some(false) {
            self.missing(&format!("{field}.namespace"), Missing::namespace(ns));
            return;
        }
        if self.snapshot.exists(group, kind, ns, name) == Some(false) {
            self.missing(
                field,
                Missing {
                    group: group.unwrap_or_default().to_owned(),
                    kind: kind.to_owned(),
                    namespace: Some(ns.to_owned()),
                    name: name.to_owned(),
                },
            );
        }
    }
}

fn referrer<K: kube::Resource<DynamicType = ()>>(o: &K) -> Referrer {
    Referrer {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        namespace: o.meta().namespace.clone().unwrap_or_default(),
        name: o.meta().name.clone().unwrap_or_default(),
        uid: o.meta().uid.clone(),
    }
}

/// Every broken reference in the snapshot, sorted.
pub fn broken(snapshot: &Snapshot) -> Vec<Broken> {
    let mut out = Vec::new();
    for ap in &snapshot.authorization_policies {
        let mut c = Checker {
            snapshot,
            referrer: referrer(ap),
            out: &mut out,
        };
        let t = &ap.spec.target_ref;
        // A Namespace target must be the policy's own (the webhook refuses
        // others), which exists.
        if !targets(t.group.as_deref(), &t.kind, "", "Namespace") {
            c.reference("spec.targetRef", t.group.as_deref(), &t.kind, &t.name, None);
        }
        for (i, a) in ap.spec.required_authentication_refs.iter().enumerate() {
            c.reference(
                &format!("spec.requiredAuthenticationRefs[{i}]"),
                a.group.as_deref(),
                &a.kind,
                &a.name,
                a.namespace.as_deref(),
            );
        }
    }
    for m in snapshot.mesh_tls.iter().flatten() {
        let mut c = Checker {
            snapshot,
            referrer: referrer(m),
            out: &mut out,
        };
        for (i, r) in m.spec.identity_refs.iter().flatten().enumerate() {
            let field = format!("spec.identityRefs[{i}]");
            // Identities of a namespace, or of a ServiceAccount in another
            // one: the namespace must exist. ServiceAccounts themselves are
            // not watched (there are many, and one may come with its workload).
            let ns = if targets(r.group.as_deref(), &r.kind, "", "Namespace") {
                r.name.as_deref().filter(|n| *n != "*")
            } else {
                r.namespace.as_deref()
            };
            if let Some(ns) = ns
                && snapshot.has_namespace(ns) == Some(false)
            {
                c.missing(&field, Missing::namespace(ns));
            }
        }
    }
    for route in snapshot
        .policy_routes
        .iter()
        .chain(snapshot.gateway_routes.iter())
        .flatten()
    {
        let mut c = Checker {
            snapshot,
            referrer: Referrer {
                api_version: format!("{}/{}", route.group, route_version(route.group)),
                kind: "HTTPRoute".into(),
                namespace: route.namespace.clone(),
                name: route.name.clone(),
                uid: route.uid.clone(),
            },
            out: &mut out,
        };
        for (i, p) in route.parents.iter().enumerate() {
            // Gateway API defaults a parent to a Gateway, which Linkerd
            // does not serve and Keelson does not judge. A kind without a
            // group is core, as Linkerd reads it (`kind: Service`).
            let (group, kind) = match p.kind.as_deref() {
                None => (Some(GATEWAY_GROUP), "Gateway"),
                Some(kind) => (p.group.as_deref(), kind),
            };
            c.reference(
                &format!("spec.parentRefs[{i}]"),
                group,
                kind,
                &p.name,
                p.namespace.as_deref(),
            );
        }
        for (field, b) in &route.backends {
            let kind = b.kind.as_deref().unwrap_or("Service");
            c.reference(
                field,
                b.group.as_deref(),
                kind,
                &b.name,
                b.namespace.as_deref(),
            );
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The version Keelson names routes by in Events and the report.
fn route_version(group: &str) -> &'static str {
    if group == POLICY_GROUP {
        "v1beta3"
    } else {
        "v1"
    }
}

/// Where an authorization applies to a Server from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Applies {
    /// `AuthorizationPolicy/<name>`.
    pub authorization: String,
    /// `Server`, `Namespace`, or the route it targets (`HTTPRoute/<name>`).
    pub via: String,
}

/// The AuthorizationPolicies that apply to `server`: those targeting it,
/// its namespace, or a route whose parent it is.
pub fn authorizations(snapshot: &Snapshot, server: &Server) -> Vec<Applies> {
    let ns = server.namespace().unwrap_or_default();
    let name = server.name_any();
    let routes_of_server: Vec<&Route> = snapshot
        .policy_routes
        .iter()
        .chain(snapshot.gateway_routes.iter())
        .flatten()
        .filter(|r| {
            r.namespace == ns
                && r.parents.iter().any(|p| {
                    targets(
                        p.group.as_deref(),
                        p.kind.as_deref().unwrap_or_default(),
                        POLICY_GROUP,
                        "Server",
                    ) && p.name == name
                        && p.namespace.as_deref().is_none_or(|n| n == ns)
                })
        })
        .collect();
    let mut out: Vec<Applies> = snapshot
        .authorization_policies
        .iter()
        .filter(|ap| ap.namespace().as_deref() == Some(ns.as_str()))
        .filter_map(|ap| {
            let t = &ap.spec.target_ref;
            let group = t.group.as_deref();
            let via = if targets(group, &t.kind, POLICY_GROUP, "Server") && t.name == name {
                "Server".to_owned()
            } else if targets(group, &t.kind, "", "Namespace") {
                "Namespace".to_owned()
            } else {
                let route = routes_of_server
                    .iter()
                    .find(|r| r.name == t.name && targets(group, &t.kind, r.group, "HTTPRoute"))?;
                format!("HTTPRoute/{}", route.name)
            };
            Some(Applies {
                authorization: format!("AuthorizationPolicy/{}", ap.name_any()),
                via,
            })
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn typed<K: serde::de::DeserializeOwned>(
        kind: &str,
        version: &str,
        name: &str,
        spec: Value,
    ) -> K {
        serde_json::from_value(json!({
            "apiVersion": format!("policy.linkerd.io/{version}"), "kind": kind,
            "metadata": {"name": name, "namespace": "apps", "uid": format!("uid-{name}")},
            "spec": spec,
        }))
        .unwrap()
    }

    fn server(name: &str) -> Server {
        typed(
            "Server",
            "v1beta3",
            name,
            json!({"podSelector": {"matchLabels": {"app": name}}, "port": 8080}),
        )
    }

    fn authz(name: &str, target: Value, authns: Value) -> AuthorizationPolicy {
        typed(
            "AuthorizationPolicy",
            "v1alpha1",
            name,
            json!({"targetRef": target, "requiredAuthenticationRefs": authns}),
        )
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            servers: Some(vec![server("api")]),
            authorization_policies: vec![],
            mesh_tls: Some(vec![typed(
                "MeshTLSAuthentication",
                "v1alpha1",
                "web",
                json!({"identities": ["*"]}),
            )]),
            network: Some(vec![]),
            policy_routes: Some(vec![]),
            gateway_routes: Some(vec![]),
            services: Some([("apps".to_owned(), "api".to_owned())].into()),
            namespaces: Some(["apps".to_owned()].into()),
        }
    }

    fn messages(s: &Snapshot) -> Vec<String> {
        broken(s).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_consistent_snapshot_has_no_broken_references() {
        let mut s = snapshot();
        s.authorization_policies.push(authz(
            "web",
            json!({"group": "policy.linkerd.io", "kind": "Server", "name": "api"}),
            json!([{"group": "policy.linkerd.io", "kind": "MeshTLSAuthentication", "name": "web"},
                   {"kind": "ServiceAccount", "name": "anything"}]),
        ));
        s.policy_routes = Some(vec![Route::from_spec(
            POLICY_GROUP,
            "apps",
            "r",
            None,
            &json!({"parentRefs": [{"group": "policy.linkerd.io", "kind": "Server", "name": "api"}]}),
        )]);
        assert_eq!(messages(&s), Vec::<String>::new());
    }

    #[test]
    fn authorization_policy_targets_and_authentications() {
        let mut s = snapshot();
        s.authorization_policies.push(authz(
            "web",
            json!({"group": "policy.linkerd.io", "kind": "server", "name": "gone"}),
            json!([{"group": "policy.linkerd.io", "kind": "MeshTLSAuthentication", "name": "nope"},
                   {"group": "policy.linkerd.io", "kind": "NetworkAuthentication", "name": "net", "namespace": "elsewhere"}]),
        ));
        s.authorization_policies.push(authz(
            "route",
            json!({"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "missing"}),
            json!([]),
        ));
        assert_eq!(
            messages(&s),
            [
                "AuthorizationPolicy apps/route: spec.targetRef: HTTPRoute missing in namespace apps does not exist",
                "AuthorizationPolicy apps/web: spec.requiredAuthenticationRefs[0]: MeshTLSAuthentication nope in namespace apps does not exist",
                "AuthorizationPolicy apps/web: spec.requiredAuthenticationRefs[1].namespace: Namespace elsewhere does not exist",
                "AuthorizationPolicy apps/web: spec.targetRef: server gone in namespace apps does not exist",
            ]
        );
    }

    #[test]
    fn unknown_kinds_are_not_judged() {
        let mut s = snapshot();
        s.gateway_routes = None;
        s.authorization_policies.push(authz(
            "route",
            json!({"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "missing"}),
            json!([]),
        ));
        s.authorization_policies.push(authz(
            "grpc",
            json!({"group": "gateway.networking.k8s.io", "kind": "GRPCRoute", "name": "missing"}),
            json!([]),
        ));
        assert!(broken(&s).is_empty());
    }

    #[test]
    fn route_parents_and_backends() {
        let mut s = snapshot();
        s.gateway_routes = Some(vec![Route::from_spec(
            GATEWAY_GROUP,
            "apps",
            "r",
            Some("uid-r".into()),
            &json!({
                "parentRefs": [
                    {"group": "core", "kind": "Service", "name": "api", "port": 80},
                    {"group": "", "kind": "Service", "name": "gone", "port": 80},
                    {"group": "policy.linkerd.io", "kind": "Server", "name": "nosrv"},
                    {"name": "a-gateway"},
                    {"kind": "Service", "name": "nogroup", "port": 80},
                ],
                "rules": [{"backendRefs": [{"name": "api", "port": 80}, {"name": "nobackend", "port": 80}]}],
            }),
        )]);
        let b = broken(&s);
        assert_eq!(b[0].referrer.api_version, "gateway.networking.k8s.io/v1");
        assert_eq!(b[0].referrer.uid.as_deref(), Some("uid-r"));
        assert_eq!(
            messages(&s),
            [
                "HTTPRoute apps/r: spec.parentRefs[1]: Service gone in namespace apps does not exist",
                "HTTPRoute apps/r: spec.parentRefs[2]: Server nosrv in namespace apps does not exist",
                "HTTPRoute apps/r: spec.parentRefs[4]: Service nogroup in namespace apps does not exist",
                "HTTPRoute apps/r: spec.rules[0].backendRefs[1]: Service nobackend in namespace apps does not exist",
            ]
        );
    }

    #[test]
    fn identity_refs_need_their_namespaces() {
        let mut s = snapshot();
        s.mesh_tls = Some(vec![typed(
            "MeshTLSAuthentication",
            "v1alpha1",
            "m",
            json!({"identityRefs": [
                {"kind": "Namespace", "name": "apps"},
                {"kind": "Namespace", "name": "ghost"},
                {"kind": "ServiceAccount", "name": "web", "namespace": "phantom"},
            ]}),
        )]);
        assert_eq!(
            messages(&s),
            [
                "MeshTLSAuthentication apps/m: spec.identityRefs[1]: Namespace ghost does not exist",
                "MeshTLSAuthentication apps/m: spec.identityRefs[2]: Namespace phantom does not exist",
            ]
        );
    }

    #[test]
    fn authorizations_that_apply_to_a_server() {
        let mut s = snapshot();
        s.policy_routes = Some(vec![Route::from_spec(
            POLICY_GROUP,
            "apps",
            "r",
            None,
            &json!({"parentRefs": [{"group": "policy.linkerd.io", "kind": "Server", "name": "api"}]}),
        )]);
        for (name, target) in [
            (
                "direct",
                json!({"group": "policy.linkerd.io", "kind": "Server", "name": "api"}),
            ),
            ("ns", json!({"kind": "Namespace", "name": "apps"})),
            (
                "via-route",
                json!({"group": "policy.linkerd.io", "kind": "HTTPRoute", "name": "r"}),
            ),
            (
                "other",
                json!({"group": "policy.linkerd.io", "kind": "Server", "name": "other"}),
            ),
            (
                "wrong-group",
                json!({"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "r"}),
            ),
        ] {
            s.authorization_policies
                .push(authz(name, target, json!([])));
        }
        let applies = authorizations(&s, &server("api"));
        let got: Vec<(&str, &str)> = applies
            .iter()
            .map(|a| (a.authorization.as_str(), a.via.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("AuthorizationPolicy/direct", "Server"),
                ("AuthorizationPolicy/ns", "Namespace"),
                ("AuthorizationPolicy/via-route", "HTTPRoute/r"),
            ]
        );
    }
}
