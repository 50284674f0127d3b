//! Keelson's Prometheus metrics, and the admin server that serves them.
//!
//! One [`Metrics`] per process, shared by the controllers and the webhooks;
//! the admin server (plain HTTP, for Prometheus and kubelet probes) answers
//! `GET /metrics` in the OpenMetrics text format and `GET /live`.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use keelson_crds::DataPlaneStatus;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileResultLabels {
    pub controller: &'static str,
    /// `ok` or `error`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    /// `inject` or `validate`.
    pub webhook: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookDecisionLabels {
    pub webhook: &'static str,
    /// `allowed` (unchanged), `patched` (a proxy injected), `denied`, or
    /// `error` (no usable answer: the webhook's failure policy decides).
    pub decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScrapeLabels {
    /// `ok`, `error` (unreachable or refused), `timeout` or `unreadable`
    /// (not Prometheus text).
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertificateLabels {
    /// What the certificate is: `webhook-ca`, `webhook-serving`, ...
    pub certificate: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DataPlaneLabels {
    pub namespace: String,
    pub dataplane: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkloadStateLabels {
    pub namespace: String,
    pub dataplane: String,
    /// `up_to_date`, `restarting`, `pending` or `failed`.
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiRequestLabels {
    /// `get`, `list`, `watch`, `create`, `update`, `patch` or `delete`.
    pub verb: &'static str,
    /// The resource's plural, with its subresource (`dataplanes/status`);
    /// `other` for paths that name none (`/version`).
    pub resource: String,
}

/// Every metric Keelson exports.
pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ReconcileResultLabels, Counter>,
    pub reconcile_duration: Family<ReconcileLabels, Histogram>,
    pub webhook_requests: Family<WebhookDecisionLabels, Counter>,
    pub webhook_duration: Family<WebhookLabels, Histogram>,
    pub proxy_scrapes: Family<ScrapeLabels, Counter>,
    certificate_expiry: Family<CertificateLabels, Gauge<f64, AtomicU64>>,
    dataplane_workloads: Family<WorkloadStateLabels, Gauge>,
    dataplane_wave: Family<DataPlaneLabels, Gauge>,
    /// 1 while this replica holds the leader Lease and runs the reconcilers.
    pub leader: Gauge,
    api_requests: Family<ApiRequestLabels, Counter>,
    /// Expiry times; the gauge is computed from them at every scrape so it
    /// never goes stale between certificate changes.
    not_after: Mutex<BTreeMap<String, SystemTime>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("keelson");
        let reconciles = Family::<ReconcileResultLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles finished, by controller and outcome",
            reconciles.clone(),
        );
        let reconcile_duration = Family::<ReconcileLabels, Histogram>::new_with_constructor(|| {
            // 1 ms .. ~33 s: a reconcile is a handful of API round trips.
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        registry.register(
            "reconcile_duration_seconds",
            "Time a reconcile took",
            reconcile_duration.clone(),
        );
        let webhook_requests = Family::<WebhookDecisionLabels, Counter>::default();
        registry.register(
            "webhook_requests",
            "Admission reviews answered, by webhook and decision",
            webhook_requests.clone(),
        );
        let webhook_duration = Family::<WebhookLabels, Histogram>::new_with_constructor(|| {
            // 50 µs .. ~0.8 s: an answer is expected within a millisecond or two.
            Histogram::new(exponential_buckets(0.00005, 2.0, 15))
        });
        registry.register(
            "webhook_duration_seconds",
            "Time from a read admission review to its encoded answer",
            webhook_duration.clone(),
        );
        let proxy_scrapes = Family::<ScrapeLabels, Counter>::default();
        registry.register(
            "policy_proxy_scrapes",
            "Scrapes of Linkerd proxies' metrics for audit-first rollouts, by outcome",
            proxy_scrapes.clone(),
        );
        let certificate_expiry = Family::<CertificateLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "certificate_expiry_seconds",
            "Seconds until a certificate Keelson manages expires (negative once expired)",
            certificate_expiry.clone(),
        );
        let dataplane_workloads = Family::<WorkloadStateLabels, Gauge>::default();
        registry.register(
            "dataplane_workloads",
            "Workloads a DataPlane selects, by rollout state",
            dataplane_workloads.clone(),
        );
        let dataplane_wave = Family::<DataPlaneLabels, Gauge>::default();
        registry.register(
            "dataplane_wave",
            "Number of a DataPlane's current wave of restarts",
            dataplane_wave.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease and runs the reconcilers",
            leader.clone(),
        );
        let api_requests = Family::<ApiRequestLabels, Counter>::default();
        registry.register(
            "api_requests",
            "Requests sent to the Kubernetes API server, by verb",
            api_requests.clone(),
        );
        Self {
            registry,
            api_requests,
            dataplane_workloads,
            dataplane_wave,
            reconciles,
            reconcile_duration,
            webhook_requests,
            webhook_duration,
            proxy_scrapes,
            certificate_expiry,
            leader,
            not_after: Mutex::default(),
        }
    }
}

/// A client that counts every request it sends in `keelson_api_requests`:
/// what a reconcile costs the API server, measured where it is spent.
pub fn counting(client: kube::Client, metrics: &Arc<Metrics>) -> kube::Client {
    let namespace = client.default_namespace().to_owned();
    let counted = Counted {
        client,
        requests: metrics.api_requests.clone(),
    };
    kube::Client::new(counted, namespace)
}

#[derive(Clone)]
struct Counted {
    client: kube::Client,
    requests: Family<ApiRequestLabels, Counter>,
}

impl tower_service::Service<Request<kube::client::Body>> for Counted {
    type Response = Response<kube::client::Body>;
    type Error = kube::Error;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        // The wrapped client queues requests itself.
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<kube::client::Body>) -> Self::Future {
        let (resource, named) = resource(request.uri().path());
        let verb = verb(request.method(), request.uri().query(), named);
        self.requests
            .get_or_create(&ApiRequestLabels { verb, resource })
            .inc();
        let client = self.client.clone();
        Box::pin(async move { client.send(request).await })
    }
}

/// The resource a request path names (`pods`, `dataplanes/status`), and
/// whether it names one object of it.
fn resource(path: &str) -> (String, bool) {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match segments.as_slice() {
        ["api", _version, rest @ ..] | ["apis", _, _version, rest @ ..] => rest,
        _ => return ("other".into(), false),
    };
    // `namespaces/<ns>/<resource>...`; `namespaces[/<name>]` itself.
    let rest = match rest {
        ["namespaces", _, inner @ ..] if !inner.is_empty() => inner,
        other => other,
    };
    match rest {
        [] => ("other".into(), false),
        [resource] => ((*resource).into(), false),
        [resource, _name] => ((*resource).into(), true),
        [resource, _name, sub, ..] => (format!("{resource}/{sub}"), true),
    }
}

fn verb(method: &Method, query: Option<&str>, named: bool) -> &'static str {
    let watch = || {
        query
            .unwrap_or_default()
            .split('&')
            .any(|p| p == "watch=true" || p == "watch=1")
    };
    match *method {
        Method::GET if watch() => "watch",
        Method::GET if named => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "other",
    }
}

impl Metrics {
    /// Records a finished reconcile.
    pub fn reconciled(&self, controller: &'static str, took: Duration, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.reconciles
            .get_or_create(&ReconcileResultLabels {
                controller,
                outcome,
            })
            .inc();
        self.reconcile_duration
            .get_or_create(&ReconcileLabels { controller })
            .observe(took.as_secs_f64());
    }

    /// Records a DataPlane's rollout progress from its status.
    pub fn dataplane_progress(&self, namespace: &str, dataplane: &str, status: &DataPlaneStatus) {
        for (state, n) in [
            ("up_to_date", status.up_to_date),
            ("restarting", status.restarting),
            ("pending", status.pending),
            ("failed", status.failed),
        ] {
            self.dataplane_workloads
                .get_or_create(&WorkloadStateLabels {
                    namespace: namespace.to_owned(),
                    dataplane: dataplane.to_owned(),
                    state,
                })
                .set(i64::from(n));
        }
        self.dataplane_wave
            .get_or_create(&DataPlaneLabels {
                namespace: namespace.to_owned(),
                dataplane: dataplane.to_owned(),
            })
            .set(status.wave.as_ref().map_or(0, |w| w.number));
    }

    /// Records when a certificate expires; scrapes see seconds from then.
    pub fn certificate_expires(&self, certificate: &str, not_after: SystemTime) {
        self.not_after
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(certificate.to_owned(), not_after);
    }

    /// Replaces the mesh identity's certificates (`trust-anchor/<sha>`,
    /// `issuer`): an anchor that left the bundle stops being reported.
    pub fn identity_certificates(&self, certificates: Vec<(String, SystemTime)>) {
        let mut not_after = self
            .not_after
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let gone: Vec<String> = not_after
            .keys()
            .filter(|k| k.starts_with("trust-anchor/") || *k == "issuer")
            .filter(|k| !certificates.iter().any(|(c, _)| c == *k))
            .cloned()
            .collect();
        for certificate in gone {
            not_after.remove(&certificate);
            self.certificate_expiry
                .remove(&CertificateLabels { certificate });
        }
        not_after.extend(certificates);
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let now = SystemTime::now();
        for (certificate, not_after) in self
            .not_after
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let seconds = match not_after.duration_since(now) {
                Ok(left) => left.as_secs_f64(),
                Err(past) => -past.duration().as_secs_f64(),
            };
            self.certificate_expiry
                .get_or_create(&CertificateLabels {
                    certificate: certificate.clone(),
                })
                .set(seconds);
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Serves `GET /metrics` and `GET /live` on `listener` until `shutdown`.
pub async fn serve_admin(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, _) = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "admin server: accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let metrics = Arc::clone(&metrics);
                async move { Ok::<_, Infallible>(admin(&req, &metrics)) }
            });
            // Scrapers and probes are trusted and small; a stalled one only
            // holds its own connection.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

fn admin<B>(req: &Request<B>, metrics: &Metrics) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        ),
        (&Method::GET, "/live") => (StatusCode::OK, "text/plain", "live\n".to_owned()),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_owned(),
        ),
    };
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("a static response is valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An API server that answers every request 404 Not Found.
    #[derive(Clone)]
    struct NotFound;

    impl tower_service::Service<Request<kube::client::Body>> for NotFound {
        type Response = Response<Full<Bytes>>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Self::Response, Infallible>>;

        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Infallible>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<kube::client::Body>) -> Self::Future {
            let status = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}"#;
            let response = Response::builder()
                .status(StatusCode::NOT_FOUND)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from_static(status.as_bytes())))
                .unwrap();
            std::future::ready(Ok(response))
        }
    }

    #[tokio::test]
    async fn a_counting_client_counts_every_request_by_verb_and_resource() {
        use k8s_openapi::api::core::v1::ConfigMap;
        let metrics = Arc::new(Metrics::default());
        let client = counting(kube::Client::new(NotFound, "default"), &metrics);
        let api: kube::Api<ConfigMap> = kube::Api::namespaced(client, "apps");
        for _ in 0..3 {
            assert!(api.get_opt("settings").await.unwrap().is_none());
        }
        assert!(api.delete("settings", &Default::default()).await.is_err());
        let text = metrics.encode();
        for line in [
            r#"keelson_api_requests_total{verb="get",resource="configmaps"} 3"#,
            r#"keelson_api_requests_total{verb="delete",resource="configmaps"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }

    #[test]
    fn verbs_are_named_as_kubernetes_names_them() {
        assert_eq!(
            verb(&Method::GET, Some("watch=true&resourceVersion=5"), false),
            "watch"
        );
        assert_eq!(verb(&Method::GET, Some("labelSelector=a"), false), "list");
        assert_eq!(verb(&Method::GET, None, true), "get");
        assert_eq!(
            verb(&Method::PATCH, Some("fieldManager=keelson"), true),
            "patch"
        );
        assert_eq!(verb(&Method::PUT, None, true), "update");
        assert_eq!(verb(&Method::POST, None, false), "create");
    }

    #[test]
    fn resources_are_named_by_their_plural_and_subresource() {
        for (path, expected, named) in [
            ("/api/v1/pods", "pods", false),
            ("/api/v1/namespaces/shop/pods", "pods", false),
            ("/api/v1/namespaces/shop/pods/web-1", "pods", true),
            ("/api/v1/namespaces", "namespaces", false),
            ("/api/v1/namespaces/shop", "namespaces", true),
            (
                "/apis/apps/v1/namespaces/shop/replicasets/web-5d9f",
                "replicasets",
                true,
            ),
            (
                "/apis/keelson.dev/v1alpha1/namespaces/shop/dataplanes/apps/status",
                "dataplanes/status",
                true,
            ),
            (
                "/apis/keelson.dev/v1alpha1/controlplanes/mesh",
                "controlplanes",
                true,
            ),
            (
                "/apis/events.k8s.io/v1/namespaces/shop/events",
                "events",
                false,
            ),
            ("/version", "other", false),
            ("/apis", "other", false),
        ] {
            assert_eq!(resource(path), (expected.to_owned(), named), "{path}");
        }
    }

    #[test]
    fn metrics_encode_with_their_labels() {
        let m = Metrics::default();
        m.reconciled("controlplane", Duration::from_millis(3), true);
        m.reconciled("controlplane", Duration::from_millis(3), false);
        m.webhook_requests
            .get_or_create(&WebhookDecisionLabels {
                webhook: "inject",
                decision: "patched",
            })
            .inc();
        m.proxy_scrapes
            .get_or_create(&ScrapeLabels { outcome: "timeout" })
            .inc();
        m.certificate_expires("webhook-ca", SystemTime::now() + Duration::from_secs(3600));
        m.certificate_expires("old", SystemTime::now() - Duration::from_secs(60));
        m.leader.set(1);
        let text = m.encode();
        for line in [
            r#"keelson_reconciles_total{controller="controlplane",outcome="ok"} 1"#,
            r#"keelson_reconciles_total{controller="controlplane",outcome="error"} 1"#,
            r#"keelson_reconcile_duration_seconds_count{controller="controlplane"} 2"#,
            r#"keelson_webhook_requests_total{webhook="inject",decision="patched"} 1"#,
            "keelson_leader 1",
            r#"keelson_policy_proxy_scrapes_total{outcome="timeout"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        let expiry = text
            .lines()
            .find(|l| {
                l.starts_with(r#"keelson_certificate_expiry_seconds{certificate="webhook-ca"}"#)
            })
            .unwrap();
        let seconds: f64 = expiry.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((3590.0..=3600.0).contains(&seconds), "{expiry}");
        let expired = text
            .lines()
            .find(|l| l.starts_with(r#"keelson_certificate_expiry_seconds{certificate="old"}"#))
            .unwrap();
        let seconds: f64 = expired.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((-70.0..=-60.0).contains(&seconds), "{expired}");
    }

    #[test]
    fn rollout_progress_and_identity_certificates_follow_status() {
        let m = Metrics::default();
        let status: DataPlaneStatus = serde_json::from_value(serde_json::json!({
            "upToDate": 7, "restarting": 2, "pending": 1, "failed": 0,
            "wave": {"number": 3, "generation": 1, "startedAt": "2026-01-01T00:00:00Z"},
        }))
        .unwrap();
        m.dataplane_progress("shop", "apps", &status);
        let later = SystemTime::now() + Duration::from_secs(3600);
        m.identity_certificates(vec![
            ("trust-anchor/aaaa".into(), later),
            ("trust-anchor/bbbb".into(), later),
            ("issuer".into(), later),
        ]);
        // The old anchor left the bundle: it is no longer reported.
        m.identity_certificates(vec![
            ("trust-anchor/bbbb".into(), later),
            ("issuer".into(), later),
        ]);
        let text = m.encode();
        for line in [
            r#"keelson_dataplane_workloads{namespace="shop",dataplane="apps",state="up_to_date"} 7"#,
            r#"keelson_dataplane_workloads{namespace="shop",dataplane="apps",state="restarting"} 2"#,
            r#"keelson_dataplane_wave{namespace="shop",dataplane="apps"} 3"#,
            r#"keelson_certificate_expiry_seconds{certificate="trust-anchor/bbbb"}"#,
            r#"keelson_certificate_expiry_seconds{certificate="issuer"}"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert!(!text.contains("trust-anchor/aaaa"), "{text}");
    }

    #[test]
    fn the_admin_routes() {
        let m = Metrics::default();
        let get = |path: &str| admin(&Request::get(path).body(()).unwrap(), &m);
        assert_eq!(get("/metrics").status(), StatusCode::OK);
        assert_eq!(get("/live").status(), StatusCode::OK);
        assert_eq!(get("/other").status(), StatusCode::NOT_FOUND);
    }
}
