//! Linkerd's and Gateway API's CRDs as Keelson installs them, on the real
//! API server with no webhook registered: the schemas alone refuse what
//! Linkerd's chart refuses, and keep the fields users write.
//!
//! The test cluster is Kubernetes 1.20: CEL rules and empty defaults are
//! left out there (status.omittedCrdFacts), so each case below breaks a rule
//! 1.20 enforces: a pattern, an enum, a bound, a required field, an item
//! limit. Unit tests and `e2e/hack/crd-parity.sh` cover the rest.

use anyhow::{Context as _, bail, ensure};
use keelson_crds::ControlPlane;
use keelson_e2e::shared::{apply_crds, env};
use keelson_operator::catalog::KubeVersion;
use keelson_operator::render::{self, Stage};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

/// Applies the CRDs Keelson renders for `version` (Gateway API's too) at the
/// test cluster's version, and waits until they are served.
async fn install_crds(client: &Client, version: &str) -> anyhow::Result<()> {
    let cp: ControlPlane = yaml_serde::from_str(&format!(
        "apiVersion: keelson.dev/v1alpha1\nkind: ControlPlane\nmetadata: {{name: linkerd}}\nspec: {{version: {version}, installGatewayApi: true}}\n"
    ))?;
    let cluster = KubeVersion {
        major: 1,
        minor: 20,
    };
    let crds: Vec<Value> = render::offline::render(&cp, Some(cluster))?
        .into_iter()
        .filter(|r| r.stage == Stage::Crds)
        .map(|r| r.object)
        .collect();
    apply_crds(client, &crds).await
}

fn api(client: &Client, ns: &str, api_version: &str, kind: &str) -> Api<DynamicObject> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    Api::namespaced_with(client.clone(), ns, &resource)
}

fn object(api_version: &str, kind: &str, name: &str, spec: Value) -> anyhow::Result<DynamicObject> {
    Ok(serde_json::from_value(json!({
        "apiVersion": api_version, "kind": kind, "metadata": {"name": name}, "spec": spec,
    }))?)
}

/// One rule of a CRD: an object the schema accepts, and one that breaks the
/// rule at `field` (the path the API server names, without list indices).
struct Case {
    api_version: &'static str,
    kind: &'static str,
    valid: Value,
    broken: Value,
    field: &'static str,
}

fn cases() -> Vec<Case> {
    let case = |api_version, kind, valid, broken, field| Case {
        api_version,
        kind,
        valid,
        broken,
        field,
    };
    vec![
        case(
            "policy.linkerd.io/v1beta3",
            "Server",
            json!({"podSelector": {"matchLabels": {"app": "web"}}, "port": 8080}),
            json!({"podSelector": {"matchExpressions": [{"key": "app", "operator": "Near"}]}, "port": 8080}),
            "spec.podSelector.matchExpressions.operator",
        ),
        case(
            "policy.linkerd.io/v1beta1",
            "ServerAuthorization",
            json!({"server": {"name": "web"}, "client": {"unauthenticated": true}}),
            json!({"server": {"name": "Web_1"}, "client": {"unauthenticated": true}}),
            "spec.server.name",
        ),
        case(
            "policy.linkerd.io/v1alpha1",
            "AuthorizationPolicy",
            json!({"targetRef": {"kind": "Server", "name": "web"}, "requiredAuthenticationRefs": []}),
            json!({"targetRef": {"kind": "-Server", "name": "web"}, "requiredAuthenticationRefs": []}),
            "spec.targetRef.kind",
        ),
        case(
            "policy.linkerd.io/v1alpha1",
            "MeshTLSAuthentication",
            json!({"identities": ["*"]}),
            json!({"identities": []}),
            "spec.identities",
        ),
        case(
            "policy.linkerd.io/v1alpha1",
            "NetworkAuthentication",
            json!({"networks": [{"cidr": "10.0.0.0/8"}]}),
            json!({"networks": [{"except": ["10.0.0.1/32"]}]}),
            "spec.networks.cidr",
        ),
        case(
            "policy.linkerd.io/v1beta3",
            "HTTPRoute",
            json!({"parentRefs": [{"name": "web", "kind": "Server", "group": "policy.linkerd.io"}],
                   "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}]}]}),
            json!({"parentRefs": [{"name": "web", "kind": "Server", "group": "policy.linkerd.io"}],
                   "rules": [{"matches": [{"path": {"type": "Prefix", "value": "/api"}}]}]}),
            "spec.rules.matches.path.type",
        ),
        case(
            "policy.linkerd.io/v1alpha1",
            "HTTPLocalRateLimitPolicy",
            json!({"targetRef": {"kind": "Server", "name": "web"}, "total": {"requestsPerSecond": 100}}),
            json!({"targetRef": {"kind": "Server", "name": "web"}, "overrides": [{"requestsPerSecond": 5,
                   "clientRefs": [{"kind": "ServiceAccount", "name": "a", "namespace": "Bad_NS"}]}]}),
            "spec.overrides.clientRefs.namespace",
        ),
        case(
            "policy.linkerd.io/v1alpha1",
            "EgressNetwork",
            json!({"trafficPolicy": "Allow"}),
            json!({"trafficPolicy": "Maybe"}),
            "spec.trafficPolicy",
        ),
        case(
            "linkerd.io/v1alpha2",
            "ServiceProfile",
            json!({"routes": [{"name": "r", "condition": {"method": "GET"}}]}),
            json!({"dstOverrides": [{"authority": "a", "weight": "lots"}]}),
            "spec.dstOverrides.weight",
        ),
        case(
            "workload.linkerd.io/v1beta1",
            "ExternalWorkload",
            json!({"meshTLS": {"identity": "spiffe://a", "serverName": "a"}, "ports": [{"port": 80}]}),
            json!({"meshTLS": {"identity": "spiffe://a", "serverName": "a"}, "ports": [{"port": 70000}]}),
            "spec.ports.port",
        ),
        case(
            "gateway.networking.k8s.io/v1",
            "HTTPRoute",
            json!({"hostnames": ["web.example.com"], "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}),
            json!({"hostnames": ["Not_A_Host"], "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}),
            "spec.hostnames",
        ),
        case(
            "gateway.networking.k8s.io/v1",
            "GRPCRoute",
            json!({"rules": [{"matches": [{"method": {"service": "shop.Cart", "method": "Add"}}]}]}),
            json!({"rules": [{"matches": [{"method": {"type": "Prefix", "service": "shop.Cart"}}]}]}),
            "spec.rules.matches.method.type",
        ),
        case(
            "gateway.networking.k8s.io/v1alpha2",
            "TCPRoute",
            json!({"rules": [{"backendRefs": [{"name": "db", "port": 5432}]}]}),
            json!({"rules": []}),
            "spec.rules",
        ),
        case(
            "gateway.networking.k8s.io/v1alpha2",
            "TLSRoute",
            json!({"rules": [{"backendRefs": [{"name": "db", "port": 443}]}]}),
            json!({"rules": [{"backendRefs": [{"name": "db", "port": 0}]}]}),
            "spec.rules.backendRefs.port",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_server_itself_refuses_what_linkerds_schemas_refuse_and_keeps_users_fields() {
    env()
        .in_namespace("crds", |client, ns| async move {
            install_crds(&client, "edge-25.4.4").await?;
            let pp = PostParams::default();
            let cases = cases();
            // Every kind Keelson installs has a case.
            ensure!(cases.len() == 14, "{} cases", cases.len());
            for (i, c) in cases.iter().enumerate() {
                let api = api(&client, &ns, c.api_version, c.kind);
                let at = format!("{} {}", c.api_version, c.kind);
                api.create(&pp, &object(c.api_version, c.kind, &format!("ok-{i}"), c.valid.clone())?)
                    .await
                    .with_context(|| format!("{at}: the valid object was refused"))?;
                match api
                    .create(&pp, &object(c.api_version, c.kind, &format!("bad-{i}"), c.broken.clone())?)
                    .await
                {
                    Err(kube::Error::Api(s)) if s.code == 422 => ensure!(
                        s.message.contains(c.field),
                        "{at}: refused, but not for {}: {}",
                        c.field,
                        s.message
                    ),
                    other => bail!("{at}: {} should be refused by the schema: {other:?}", c.field),
                }
            }

            // Session persistence, part of the v1.1.1 bundle, is stored as
            // written (a schema without it would prune it).
            let persistence = json!({"sessionName": "cart", "type": "Cookie", "absoluteTimeout": "1h",
                                     "idleTimeout": "10m", "cookieConfig": {"lifetimeType": "Permanent"}});
            let routes = api(&client, &ns, "gateway.networking.k8s.io/v1", "HTTPRoute");
            let sticky = object("gateway.networking.k8s.io/v1", "HTTPRoute", "sticky", json!({
                "rules": [{"backendRefs": [{"name": "web", "port": 80}], "sessionPersistence": persistence,
                           "timeouts": {"request": "10s", "backendRequest": "2s"}}],
            }))?;
            routes.create(&pp, &sticky).await?;
            let stored = routes.get("sticky").await?;
            let rule = &stored.data["spec"]["rules"][0];
            ensure!(rule["sessionPersistence"] == persistence, "stored: {rule}");
            ensure!(rule["timeouts"] == json!({"request": "10s", "backendRequest": "2s"}), "stored: {rule}");
            // Defaults are the bundle's: a backend weighs 1, a rule matches
            // every path.
            ensure!(rule["backendRefs"][0]["weight"] == 1, "stored: {rule}");
            ensure!(
                rule["matches"] == json!([{"path": {"type": "PathPrefix", "value": "/"}}]),
                "stored: {rule}"
            );
            Ok(())
        })
        .await;
}
