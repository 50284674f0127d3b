//! End-to-end tests of Keelson's policy checks on the real test cluster:
//! broken references in the report and as Events, the validating webhook
//! for policy objects, and the audit-first rollout of a Server against
//! stand-in proxies (hollow pods run no proxy, so small HTTP servers on
//! loopback serve the proxy's Prometheus text in their place).

mod common;

use anyhow::{Context as _, bail, ensure};
use common::{Operator, WAIT};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod, Service};
use keelson_crds::HttpRoute as GatewayHttpRoute;
use keelson_crds::policy::{
    AuthorizationPolicy, MeshTLSAuthentication, NetworkAuthentication, Server,
};
use keelson_e2e::shared::{env, install_keelson_crds};
use keelson_operator::apply::Applier;
use keelson_operator::catalog::KubeVersion;
use keelson_operator::policy::audit::{self, Phase};
use keelson_operator::policy::report::{self, Report};
use keelson_operator::policy::scrape::{PodTarget, ProxyMetrics, ScrapeError, get_metrics};
use keelson_operator::render::{self, Stage};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WEB_IDENTITY: &str = "web.apps.serviceaccount.identity.linkerd.cluster.local";

/// Keelson's CRDs (the webhooks watch ControlPlanes), and Linkerd's policy
/// CRDs and the Gateway API bundle as a ControlPlane installs them, without
/// a control plane.
async fn install_policy_crds(client: &Client) -> anyhow::Result<()> {
    install_keelson_crds(client).await?;
    let cp = common::control_plane(
        "policy-crds",
        "linkerd",
        "edge-25.4.4",
        json!({"installGatewayApi": true}),
    );
    let kube = KubeVersion::try_from("1.20".to_owned()).map_err(anyhow::Error::msg)?;
    let applier = Applier::new(client.clone());
    for r in render::offline::render(&cp, Some(kube))?
        .into_iter()
        .filter(|r| r.stage == Stage::Crds)
    {
        let name = r.object["metadata"]["name"].clone();
        tokio::time::timeout(WAIT, async {
            while !applier.apply_crd(&r.object).await?.established {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            anyhow::Ok(())
        })
        .await
        .with_context(|| format!("CRD {name} not Established"))??;
    }
    Ok(())
}

/// The operator, running as its ServiceAccount with nothing but the RBAC of
/// its install manifests (impersonated), so the tests prove that RBAC too.
async fn operator_with_install_rbac(
    client: &Client,
    policy: keelson_operator::policy::Config,
) -> anyhow::Result<Operator> {
    let as_operator = common::install_rbac(client, &[]).await?;
    let operator = Operator::start_scoped(as_operator, policy, &[]);
    operator.webhooks_registered(client).await?;
    Ok(operator)
}

fn object<K: DeserializeOwned>(
    api_version: &str,
    kind: &str,
    name: &str,
    ns: &str,
    rest: Value,
) -> K {
    let mut o = json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": ns}});
    for (k, v) in rest.as_object().expect("an object").clone() {
        if k == "metadata" {
            for (mk, mv) in v.as_object().expect("metadata is an object").clone() {
                o["metadata"][mk] = mv;
            }
        } else {
            o[k] = v;
        }
    }
    serde_json::from_value(o).unwrap_or_else(|e| panic!("a valid {kind}: {e}"))
}

fn server(ns: &str, name: &str, rest: Value) -> Server {
    object("policy.linkerd.io/v1beta3", "Server", name, ns, rest)
}

fn authorization(ns: &str, name: &str, spec: Value) -> AuthorizationPolicy {
    object(
        "policy.linkerd.io/v1alpha1",
        "AuthorizationPolicy",
        name,
        ns,
        json!({"spec": spec}),
    )
}

fn service(ns: &str, name: &str) -> Service {
    object(
        "v1",
        "Service",
        name,
        ns,
        json!({"spec": {"ports": [{"port": 80, "protocol": "TCP"}]}}),
    )
}

/// The message of an API error, or a failure if the call succeeded.
fn denial<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> anyhow::Result<String> {
    match result {
        Err(kube::Error::Api(status)) => Ok(status.message.clone()),
        other => bail!("expected the API server to refuse, got {other:?}"),
    }
}

/// Waits until the namespace's policy report satisfies `test`.
async fn wait_report(
    client: &Client,
    ns: &str,
    what: &str,
    test: impl Fn(&Report) -> bool,
) -> anyhow::Result<Report> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let mut last = None;
    let found = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(r) = cms
                .get_opt(report::NAME)
                .await?
                .and_then(|cm| cm.data)
                .and_then(|d| report::read(&d))
            {
                if test(&r) {
                    return anyhow::Ok(r);
                }
                last = Some(r);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
    .await;
    match found {
        Ok(r) => r,
        Err(_) => bail!("policy report of {ns}: {what}; last seen: {last:#?}"),
    }
}

/// Waits for an Event with `reason` on object `name` whose message contains `text`.
async fn wait_event(
    client: &Client,
    ns: &str,
    name: &str,
    reason: &str,
    text: &str,
) -> anyhow::Result<()> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    tokio::time::timeout(WAIT, async {
        loop {
            let found = events
                .list(&Default::default())
                .await?
                .items
                .into_iter()
                .any(|e| {
                    e.involved_object.name.as_deref() == Some(name)
                        && e.reason.as_deref() == Some(reason)
                        && e.message.as_deref().unwrap_or_default().contains(text)
                });
            if found {
                return anyhow::Ok(());
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
    .await
    .with_context(|| format!("no {reason} Event on {name} mentioning {text:?}"))?
}

#[tokio::test]
async fn broken_references_are_reported_until_fixed() {
    let _serial = common::SERIAL.lock().await;
    env()
        .in_namespace("policy-refs", |client, ns| async move {
            install_policy_crds(&client).await?;
            let _operator =
                operator_with_install_rbac(&client, keelson_operator::policy::Config::default())
                    .await?;
            let pp = PostParams::default();

            Api::<Server>::namespaced(client.clone(), &ns)
                .create(&pp, &server(&ns, "api", json!({"spec": {"podSelector": {"matchLabels": {"app": "api"}}, "port": 8080}})))
                .await?;
            Api::<AuthorizationPolicy>::namespaced(client.clone(), &ns)
                .create(&pp, &authorization(&ns, "web", json!({
                    "targetRef": {"group": "policy.linkerd.io", "kind": "Server", "name": "api"},
                    "requiredAuthenticationRefs": [{"group": "policy.linkerd.io", "kind": "MeshTLSAuthentication", "name": "web-clients"}],
                })))
                .await?;
            let route: GatewayHttpRoute = object("gateway.networking.k8s.io/v1", "HTTPRoute", "web", &ns, json!({"spec": {
                "parentRefs": [{"group": "core", "kind": "Service", "name": "api", "port": 80}],
                "rules": [{"backendRefs": [{"name": "backend", "port": 80}]}],
            }}));
            Api::<GatewayHttpRoute>::namespaced(client.clone(), &ns).create(&pp, &route).await?;

            let broken = |r: &Report| {
                let mut b: Vec<(String, String)> = r
                    .broken_references
                    .iter()
                    .map(|b| (b.object.clone(), b.field.clone()))
                    .collect();
                b.sort();
                b
            };
            let expected: Vec<(String, String)> = [
                ("AuthorizationPolicy/web", "spec.requiredAuthenticationRefs[0]"),
                ("HTTPRoute/web", "spec.parentRefs[0]"),
                ("HTTPRoute/web", "spec.rules[0].backendRefs[0]"),
            ]
            .iter()
            .map(|(o, f)| ((*o).to_owned(), (*f).to_owned()))
            .collect();
            let r = wait_report(&client, &ns, "the three broken references", |r| broken(r) == expected).await?;
            ensure!(
                r.servers.iter().any(|s| s.name == "api"
                    && s.access_policy == "deny"
                    && s.authorizations.iter().any(|a| a.authorization == "AuthorizationPolicy/web")),
                "the Server, its mode and its authorization are reported: {r:#?}"
            );
            wait_event(&client, &ns, "web", "BrokenReference", "MeshTLSAuthentication web-clients").await?;
            wait_event(&client, &ns, "web", "BrokenReference", "spec.rules[0].backendRefs[0]").await?;

            // Fixed: the missing objects appear.
            let mtls: MeshTLSAuthentication = object("policy.linkerd.io/v1alpha1", "MeshTLSAuthentication", "web-clients", &ns,
                json!({"spec": {"identities": [WEB_IDENTITY]}}));
            Api::<MeshTLSAuthentication>::namespaced(client.clone(), &ns).create(&pp, &mtls).await?;
            let services: Api<Service> = Api::namespaced(client.clone(), &ns);
            services.create(&pp, &service(&ns, "api")).await?;
            services.create(&pp, &service(&ns, "backend")).await?;
            wait_report(&client, &ns, "no broken references once fixed", |r| r.broken_references.is_empty()).await?;
            wait_event(&client, &ns, "web", "ReferenceResolved", "web-clients").await?;
            Ok(())
        })
        .await;
}

#[tokio::test]
async fn the_webhook_refuses_what_linkerd_would() {
    let _serial = common::SERIAL.lock().await;
    env()
        .in_namespace("policy-admit", |client, ns| async move {
            install_policy_crds(&client).await?;
            let operator = Operator::start(client.clone());
            operator.webhooks_registered(&client).await?;
            let pp = PostParams::default();
            let servers: Api<Server> = Api::namespaced(client.clone(), &ns);
            let authzs: Api<AuthorizationPolicy> = Api::namespaced(client.clone(), &ns);
            let nets: Api<NetworkAuthentication> = Api::namespaced(client.clone(), &ns);
            let routes: Api<GatewayHttpRoute> = Api::namespaced(client.clone(), &ns);

            let message = denial(
                servers
                    .create(&pp, &server(&ns, "bad", json!({
                        "metadata": {"annotations": {audit::SOAK: "soonish"}},
                        "spec": {"podSelector": {}, "port": 8080, "accessPolicy": "allow-everyone", "proxyProtocol": "HTTP/3"},
                    })))
                    .await,
            )?;
            for field in ["spec.accessPolicy", "spec.proxyProtocol", "metadata.annotations[keelson.dev/policy-soak]"] {
                ensure!(message.contains("validate.keelson.dev") && message.contains(field), "{field} not named in: {message}");
            }
            let message = denial(
                authzs
                    .create(&pp, &authorization(&ns, "two", json!({
                        "targetRef": {"group": "policy.linkerd.io", "kind": "Server", "name": "api"},
                        "requiredAuthenticationRefs": [
                            {"kind": "ServiceAccount", "name": "a"},
                            {"kind": "ServiceAccount", "name": "b"},
                        ],
                    })))
                    .await,
            )?;
            ensure!(message.contains("spec.requiredAuthenticationRefs") && message.contains("ServiceAccount"), "{message}");
            let message = denial(
                authzs
                    .create(&pp, &authorization(&ns, "deploy", json!({
                        "targetRef": {"group": "apps", "kind": "Deployment", "name": "api"},
                        "requiredAuthenticationRefs": [],
                    })))
                    .await,
            )?;
            ensure!(message.contains("spec.targetRef.kind"), "{message}");
            let net: NetworkAuthentication = object("policy.linkerd.io/v1alpha1", "NetworkAuthentication", "nets", &ns,
                json!({"spec": {"networks": [{"cidr": "10.0.0.0/16", "except": ["192.168.0.0/24"]}]}}));
            let message = denial(nets.create(&pp, &net).await)?;
            ensure!(message.contains("spec.networks[0].except[0]"), "{message}");
            let route: GatewayHttpRoute = object("gateway.networking.k8s.io/v1", "HTTPRoute", "relative", &ns, json!({"spec": {
                "parentRefs": [{"group": "core", "kind": "Service", "name": "api", "port": 80}],
                "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "api"}}]}],
            }}));
            let message = denial(routes.create(&pp, &route).await)?;
            ensure!(message.contains("spec.rules[0].matches[0].path.value"), "{message}");

            let mtls: MeshTLSAuthentication = object("policy.linkerd.io/v1alpha1", "MeshTLSAuthentication", "caps", &ns,
                json!({"spec": {"identities": ["Web.apps.serviceaccount.identity.linkerd.cluster.local"]}}));
            let message = denial(Api::<MeshTLSAuthentication>::namespaced(client.clone(), &ns).create(&pp, &mtls).await)?;
            ensure!(message.contains("spec.identities[0]"), "{message}");
            let linkerd_route: keelson_crds::policy::HttpRoute = object("policy.linkerd.io/v1beta3", "HTTPRoute", "rewrite", &ns, json!({"spec": {
                "parentRefs": [{"group": "policy.linkerd.io", "kind": "Server", "name": "api"}],
                "rules": [{"filters": [{"type": "URLRewrite", "urlRewrite": {"hostname": "x"}}]}],
            }}));
            let message = denial(Api::<keelson_crds::policy::HttpRoute>::namespaced(client.clone(), &ns).create(&pp, &linkerd_route).await)?;
            // Linkerd's schema (Keelson's CRD states it) refuses the filter
            // type before the webhook is called; the webhook names it too,
            // where an older CRD lets it through.
            ensure!(
                message.contains("spec.rules.filters.type") || message.contains("spec.rules[0].filters[0].type"),
                "{message}"
            );

            // The kinds Linkerd's validator also judges: GRPCRoute, TCPRoute,
            // TLSRoute, HTTPLocalRateLimitPolicy.
            let dynamic = |group: &str, version: &str, kind: &str, plural: &str| {
                let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
                Api::<kube::api::DynamicObject>::namespaced_with(
                    client.clone(),
                    &ns,
                    &kube::api::ApiResource::from_gvk_with_plural(&gvk, plural),
                )
            };
            let tcp: kube::api::DynamicObject = object("gateway.networking.k8s.io/v1alpha2", "TCPRoute", "two", &ns, json!({"spec": {
                "parentRefs": [{"group": "core", "kind": "Service", "name": "db", "port": 5432}],
                "rules": [{"backendRefs": [{"name": "db", "port": 5432}]}, {"backendRefs": [{"name": "db2", "port": 5432}]}],
            }}));
            let message = denial(dynamic("gateway.networking.k8s.io", "v1alpha2", "TCPRoute", "tcproutes").create(&pp, &tcp).await)?;
            ensure!(message.contains("spec.rules") && message.contains("exactly one rule"), "{message}");
            let grpc: kube::api::DynamicObject = object("gateway.networking.k8s.io/v1", "GRPCRoute", "regex", &ns, json!({"spec": {
                "parentRefs": [{"group": "core", "kind": "Service", "name": "api", "port": 8080}],
                "rules": [{"matches": [{"method": {"type": "RegularExpression", "service": "a.*"}}]}],
            }}));
            let message = denial(dynamic("gateway.networking.k8s.io", "v1", "GRPCRoute", "grpcroutes").create(&pp, &grpc).await)?;
            ensure!(message.contains("spec.rules[0].matches[0].method.type"), "{message}");
            let limit: kube::api::DynamicObject = object("policy.linkerd.io/v1alpha1", "HTTPLocalRateLimitPolicy", "over", &ns, json!({"spec": {
                "targetRef": {"group": "policy.linkerd.io", "kind": "Server", "name": "api"},
                "total": {"requestsPerSecond": 10}, "identity": {"requestsPerSecond": 20},
            }}));
            let limits = dynamic("policy.linkerd.io", "v1alpha1", "HTTPLocalRateLimitPolicy", "httplocalratelimitpolicies");
            let message = denial(limits.create(&pp, &limit).await)?;
            ensure!(message.contains("spec.identity.requestsPerSecond"), "{message}");
            let mut limit = limit;
            limit.data["spec"]["identity"]["requestsPerSecond"] = json!(5);
            limits.create(&pp, &limit).await.context("a valid HTTPLocalRateLimitPolicy is accepted")?;

            // The good ones are accepted, and updates are validated too.
            servers
                .create(&pp, &server(&ns, "api", json!({"spec": {"podSelector": {"matchLabels": {"app": "api"}}, "port": 8080, "accessPolicy": "audit"}})))
                .await
                .context("a valid Server is accepted")?;
            authzs
                .create(&pp, &authorization(&ns, "web", json!({
                    "targetRef": {"group": "policy.linkerd.io", "kind": "Server", "name": "api"},
                    "requiredAuthenticationRefs": [{"kind": "ServiceAccount", "name": "web"}],
                })))
                .await
                .context("a valid AuthorizationPolicy is accepted")?;
            let net: NetworkAuthentication = object("policy.linkerd.io/v1alpha1", "NetworkAuthentication", "nets", &ns,
                json!({"spec": {"networks": [{"cidr": "10.0.0.0/16", "except": ["10.0.1.0/24"]}]}}));
            nets.create(&pp, &net).await.context("a valid NetworkAuthentication is accepted")?;
            let mut route = route;
            route.metadata.name = Some("absolute".into());
            route.spec.rules.as_mut().expect("rules")[0].matches.as_mut().expect("matches")[0]
                .path
                .as_mut()
                .expect("a path")
                .value = Some("/api".into());
            routes.create(&pp, &route).await.context("a valid HTTPRoute is accepted")?;
            let message = denial(
                servers
                    .patch("api", &PatchParams::default(), &Patch::Merge(json!({"spec": {"accessPolicy": "nope"}})))
                    .await,
            )?;
            ensure!(message.contains("spec.accessPolicy"), "{message}");
            Ok(())
        })
        .await;
}

/// What a stand-in proxy reports and how often it was asked.
#[derive(Default)]
struct Proxy {
    /// Whether each scrape finds one more would-be denial.
    denying: bool,
    denied: u64,
    scrapes: u64,
}

impl Proxy {
    /// The proxy's authorization counters for Server `api`, in the
    /// Prometheus text format and with the labels Linkerd's proxy uses.
    fn metrics(&mut self) -> String {
        self.scrapes += 1;
        if self.denying {
            self.denied += 1;
        }
        let server =
            r#"srv_group="policy.linkerd.io",srv_kind="server",srv_name="api",srv_port="8080""#;
        format!(
            "# HELP inbound_http_authz_allow_total The total number of inbound HTTP requests that were authorized\n\
             # TYPE inbound_http_authz_allow_total counter\n\
             inbound_http_authz_allow_total{{target_addr=\"10.0.0.9:8080\",target_ip=\"10.0.0.9\",target_port=\"8080\",tls=\"true\",client_id=\"{WEB_IDENTITY}\",{server},route_group=\"\",route_kind=\"default\",route_name=\"default\",authz_group=\"\",authz_kind=\"default\",authz_name=\"audit\"}} {}\n\
             inbound_http_authz_allow_total{{target_addr=\"10.0.0.9:8080\",target_ip=\"10.0.0.9\",target_port=\"8080\",tls=\"true\",client_id=\"ok.apps.serviceaccount.identity.linkerd.cluster.local\",{server},route_group=\"\",route_kind=\"default\",route_name=\"default\",authz_group=\"policy.linkerd.io\",authz_kind=\"authorizationpolicy\",authz_name=\"ok\"}} {}\n",
            self.denied,
            self.scrapes * 10,
        )
    }
}

/// Serves `proxy`'s metrics over HTTP/1.1 on a loopback port.
async fn stand_in(proxy: Arc<Mutex<Proxy>>) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let body = proxy.lock().expect("not poisoned").metrics();
            tokio::spawn(async move {
                // The request is one GET with no body: read its head.
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tcp.write_all(response.as_bytes()).await;
            });
        }
    });
    Ok(addr)
}

/// The test's source of proxy metrics: a pod's stand-in, by pod name.
#[derive(Default)]
struct StandIns(Mutex<HashMap<String, SocketAddr>>);

impl ProxyMetrics for StandIns {
    fn scrape<'a>(&'a self, pod: &'a PodTarget) -> BoxFuture<'a, Result<String, ScrapeError>> {
        let addr = self.0.lock().expect("not poisoned").get(&pod.name).copied();
        Box::pin(async move {
            let failed = |what| ScrapeError::Failed {
                pod: pod.name.clone(),
                what,
            };
            match addr {
                Some(addr) => get_metrics(addr).await.map_err(failed),
                None => Err(failed("no stand-in proxy".into())),
            }
        })
    }
}

async fn wait_server(
    api: &Api<Server>,
    what: &str,
    test: impl Fn(&Server) -> bool,
) -> anyhow::Result<Server> {
    let cond = move |s: Option<&Server>| s.is_some_and(&test);
    tokio::time::timeout(
        WAIT,
        kube::runtime::wait::await_condition(api.clone(), "api", cond),
    )
    .await
    .with_context(|| format!("Server api: {what}"))??
    .context("Server api deleted")
}

#[tokio::test]
async fn audit_first_promotes_only_after_a_clean_soak() {
    let _serial = common::SERIAL.lock().await;
    env()
        .in_namespace("policy-audit", |client, ns| async move {
            install_policy_crds(&client).await?;
            let proxy = Arc::new(Mutex::new(Proxy { denying: true, ..Proxy::default() }));
            let source = Arc::new(StandIns::default());
            let addr = stand_in(Arc::clone(&proxy)).await?;
            source.0.lock().expect("not poisoned").insert("api-0".into(), addr);
            let config = keelson_operator::policy::Config {
                proxy_metrics: source,
                interval: Duration::from_millis(500),
            };
            let operator = operator_with_install_rbac(&client, config.clone()).await?;
            let pp = PostParams::default();

            let pod: Pod = object("v1", "Pod", "api-0", &ns, json!({
                "metadata": {"labels": {"app": "api"}},
                "spec": {"automountServiceAccountToken": false, "containers": [{"name": "api", "image": "example.com/api:1"}]},
            }));
            let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
            pods.create(&pp, &pod).await?;
            tokio::time::timeout(
                WAIT,
                kube::runtime::wait::await_condition(pods.clone(), "api-0", |p: Option<&Pod>| {
                    p.and_then(|p| p.status.as_ref())
                        .is_some_and(|s| s.phase.as_deref() == Some("Running") && s.pod_ip.is_some())
                }),
            )
            .await
            .context("pod api-0 not Running")??;

            let servers: Api<Server> = Api::namespaced(client.clone(), &ns);
            servers
                .create(&pp, &server(&ns, "api", json!({
                    "metadata": {"annotations": {audit::ROLLOUT: "audit-first", audit::SOAK: "4s"}},
                    "spec": {"podSelector": {"matchLabels": {"app": "api"}}, "port": 8080},
                })))
                .await?;
            wait_server(&servers, "not put in audit", |s| s.spec.access_policy.as_deref() == Some("audit")).await?;

            // Would-be denials: the client is named, in the Server's state
            // and in the report, with an Event.
            wait_server(&servers, "the would-be denied client is not listed", |s| {
                report::state(s).is_some_and(|st| st.denials.iter().any(|d| d.client == WEB_IDENTITY && d.route.as_deref() == Some("default/default")))
            })
            .await?;
            wait_report(&client, &ns, "the offending client is not in the report", |r| {
                r.servers.iter().any(|s| {
                    s.rollout.as_ref().is_some_and(|ro| ro.phase == "Auditing" && ro.would_be_denials.iter().any(|d| d.client == WEB_IDENTITY))
                })
            })
            .await?;
            wait_event(&client, &ns, "api", "WouldBeDenied", WEB_IDENTITY).await?;
            // `keelson policy report` shows the same.
            let mut printed = Vec::new();
            keelson_operator::policy::print_reports(client.clone(), Some(&ns), &mut printed).await?;
            let printed = String::from_utf8(printed)?;
            ensure!(
                printed.contains("Server api: accessPolicy audit, audit-first Auditing")
                    && printed.contains(&format!("would-be denied: {WEB_IDENTITY} on default/default")),
                "{printed}"
            );
            // While every scrape finds a new denial, no soak completes:
            // let more than a soak's worth of scrapes (4 s / 0.5 s) pass.
            let seen = proxy.lock().expect("not poisoned").scrapes;
            tokio::time::timeout(WAIT, async {
                while proxy.lock().expect("not poisoned").scrapes < seen + 12 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
            .await
            .context("the operator stopped scraping")?;
            let s = servers.get("api").await?;
            ensure!(
                s.spec.access_policy.as_deref() == Some("audit") && report::state(&s).is_some_and(|st| st.phase == Phase::Auditing),
                "promoted despite would-be denials: {:?}",
                s.metadata.annotations
            );

            let before = report::state(&s).context("no rollout state")?;

            // The operator dies; the client gets authorized (no more
            // would-be denials); a new operator resumes the same audit from
            // the Server's state and, after a clean soak, enforces.
            operator.kill().await;
            proxy.lock().expect("not poisoned").denying = false;
            let _operator = operator_with_install_rbac(&client, config).await?;
            let s = wait_server(&servers, "not promoted to deny after a clean soak", |s| {
                s.spec.access_policy.as_deref() == Some("deny")
            })
            .await?;
            let after = report::state(&s).context("no rollout state")?;
            ensure!(
                after.phase == Phase::Enforced && after.since == before.since && after.denials.iter().any(|d| d.client == WEB_IDENTITY),
                "the same audit, resumed and promoted: {after:?}"
            );
            wait_event(&client, &ns, "api", "PolicyEnforced", "accessPolicy set to deny").await?;

            // Rolling back is one annotation.
            servers
                .patch("api", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": {audit::ROLLOUT: "audit"}}})))
                .await?;
            wait_server(&servers, "not rolled back to audit", |s| {
                s.spec.access_policy.as_deref() == Some("audit") && report::state(s).is_some_and(|st| st.phase == Phase::Holding)
            })
            .await?;
            Ok(())
        })
        .await;
}
