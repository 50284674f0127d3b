//! One cluster for all the tests of a test binary, and a namespace per test.
//!
//! The cluster runs on a thread of its own that lives until the test binary
//! exits; its processes die with it (see [`crate::process`]). Set
//! `KEELSON_E2E_KUBECONFIG` to run the tests against a cluster that is already
//! up (`make cluster`) instead of starting one.

use crate::{Cluster, ClusterOptions, Component};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Namespace, Pod};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, ResourceExt};
use std::fmt::Write;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Label on every namespace a test creates.
pub const TEST_NAMESPACE_LABEL: &str = "keelson.dev/e2e";

/// What tests need to reach the shared cluster.
pub struct TestEnv {
    pub kubeconfig: PathBuf,
    config: kube::Config,
    /// Restart requests for the cluster's thread; `None` for a cluster
    /// the harness did not start.
    restarts: Option<tokio::sync::mpsc::UnboundedSender<Restart>>,
}

type Restart = (Component, tokio::sync::oneshot::Sender<Result<(), String>>);

static ENV: OnceLock<Result<TestEnv, String>> = OnceLock::new();

/// The shared cluster, started by the first caller (the others wait).
pub fn env() -> &'static TestEnv {
    let env = ENV.get_or_init(|| {
        crate::install_crypto_provider();
        match std::env::var_os("KEELSON_E2E_KUBECONFIG") {
            Some(path) => existing(PathBuf::from(path)),
            None => start_shared(),
        }
    });
    match env {
        Ok(env) => env,
        Err(e) => panic!("the test cluster is not available: {e}"),
    }
}

fn existing(kubeconfig: PathBuf) -> Result<TestEnv, String> {
    // Loading is async; do it off the caller's thread, which may be inside a
    // runtime already.
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                let config = rt.block_on(async {
                    let kc = Kubeconfig::read_from(&kubeconfig)?;
                    kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await
                });
                Ok(TestEnv {
                    config: config.map_err(|e| e.to_string())?,
                    kubeconfig: kubeconfig.clone(),
                    restarts: None,
                })
            })
            .join()
            .map_err(|_| "loading the kubeconfig panicked".to_owned())?
    })
}

fn start_shared() -> Result<TestEnv, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("e2e-cluster".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return drop(tx.send(Err(e.to_string()))),
            };
            rt.block_on(async move {
                match Cluster::start(ClusterOptions::default()).await {
                    Ok(mut cluster) => {
                        let (restarts, mut requests) = tokio::sync::mpsc::unbounded_channel();
                        let _ = tx.send(Ok(TestEnv {
                            kubeconfig: cluster.kubeconfig().to_owned(),
                            config: cluster.config().clone(),
                            restarts: Some(restarts),
                        }));
                        // Keep the cluster, and this thread, alive until the
                        // test binary exits; restarted processes are children
                        // of this thread too, so they live as long.
                        while let Some((component, done)) = requests.recv().await {
                            let restarted = cluster.restart(component).await;
                            let _ = done.send(restarted.map_err(|e| e.to_string()));
                        }
                        drop(cluster);
                    }
                    Err(e) => drop(tx.send(Err(format!("{e}")))),
                }
            });
        })
        .map_err(|e| e.to_string())?;
    rx.recv()
        .map_err(|_| "the cluster thread died".to_owned())?
}

impl TestEnv {
    /// Restarts a process of the cluster in place (same ports, same data)
    /// and returns once the API server serves again. Only for the cluster
    /// the harness started itself.
    pub async fn restart(&self, component: Component) -> anyhow::Result<()> {
        let restarts = self.restarts.as_ref().ok_or_else(|| {
            anyhow::anyhow!("restarting {component:?} needs the harness's own cluster (unset KEELSON_E2E_KUBECONFIG)")
        })?;
        let (done, restarted) = tokio::sync::oneshot::channel();
        restarts
            .send((component, done))
            .map_err(|_| anyhow::anyhow!("the cluster thread is gone"))?;
        restarted
            .await
            .map_err(|_| anyhow::anyhow!("the cluster thread is gone"))?
            .map_err(|e| anyhow::anyhow!("restarting {component:?}: {e}"))
    }

    /// A fresh admin client for the calling test's runtime.
    pub fn client(&self) -> Client {
        Client::try_from(self.config.clone()).expect("client from a loaded kubeconfig")
    }

    /// A client that acts as `user` (impersonation by the admin), to test
    /// what a ServiceAccount's RBAC allows.
    pub fn impersonating(&self, user: &str) -> Client {
        let mut config = self.config.clone();
        config.auth_info.impersonate = Some(user.to_owned());
        Client::try_from(config).expect("client from a loaded kubeconfig")
    }

    /// An admin client that records every request other than a read
    /// (GET), as "METHOD path", so tests can assert on the writes a
    /// component makes.
    pub fn recording_client(&self) -> (Client, Arc<Mutex<Vec<String>>>) {
        let writes = Arc::new(Mutex::new(Vec::new()));
        let log = writes.clone();
        let layer =
            tower::util::MapRequestLayer::new(move |req: http::Request<kube::client::Body>| {
                if req.method() != http::Method::GET {
                    log.lock().expect("not poisoned").push(format!(
                        "{} {}",
                        req.method(),
                        req.uri().path()
                    ));
                }
                req
            });
        let client = kube::client::ClientBuilder::try_from(self.config.clone())
            .expect("client from a loaded kubeconfig")
            .with_layer(&layer)
            .build();
        (client, writes)
    }

    /// Runs `test` with a client and a new namespace named `<prefix>-<n>`. On
    /// success the namespace is deleted; on failure its pods, Deployments and
    /// Events are printed before the test fails.
    pub async fn in_namespace<F, Fut>(&self, prefix: &str, test: F)
    where
        F: FnOnce(Client, String) -> Fut,
        Fut: Future<Output = anyhow::Result<()>>,
    {
        let client = self.client();
        let ns = create_namespace(&client, prefix)
            .await
            .unwrap_or_else(|e| panic!("creating a test namespace: {e}"));
        match test(client.clone(), ns.clone()).await {
            Ok(()) => {
                let _ = Api::<Namespace>::all(client)
                    .delete(&ns, &DeleteParams::background())
                    .await;
            }
            Err(e) => {
                let dump = dump_namespace(&client, &ns).await;
                panic!("{e:#}\n--- state of namespace {ns} ---\n{dump}");
            }
        }
    }
}

async fn create_namespace(client: &Client, prefix: &str) -> Result<String, kube::Error> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {TEST_NAMESPACE_LABEL: "true"}}
    }))
    .expect("static namespace");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    Ok(name)
}

/// A readable summary of a namespace, for failed tests.
pub async fn dump_namespace(client: &Client, ns: &str) -> String {
    let mut out = String::new();
    let lp = ListParams::default();
    match Api::<Deployment>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
    {
        Ok(list) => {
            for d in list {
                let s = d.status.clone().unwrap_or_default();
                let _ = writeln!(
                    out,
                    "deployment {}: replicas={:?} ready={:?} available={:?}",
                    d.name_any(),
                    s.replicas,
                    s.ready_replicas,
                    s.available_replicas
                );
            }
        }
        Err(e) => out.push_str(&format!("listing deployments: {e}\n")),
    }
    match Api::<Pod>::namespaced(client.clone(), ns).list(&lp).await {
        Ok(list) => {
            for p in list {
                let s = p.status.clone().unwrap_or_default();
                let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
                let _ = writeln!(
                    out,
                    "pod {}: phase={:?} node={node:?} ip={:?}",
                    p.name_any(),
                    s.phase,
                    s.pod_ip
                );
            }
        }
        Err(e) => out.push_str(&format!("listing pods: {e}\n")),
    }
    match Api::<Event>::namespaced(client.clone(), ns).list(&lp).await {
        Ok(list) => {
            for e in list {
                let _ = writeln!(
                    out,
                    "event {}/{}: {} {}",
                    e.involved_object.kind.unwrap_or_default(),
                    e.involved_object.name.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.message.unwrap_or_default()
                );
            }
        }
        Err(e) => out.push_str(&format!("listing events: {e}\n")),
    }
    out
}

/// Server-side applies Keelson's CRDs and waits until they are served.
pub async fn install_keelson_crds(client: &Client) -> anyhow::Result<()> {
    let crds: Vec<serde_json::Value> = keelson_crds::crds()
        .iter()
        .map(|crd| serde_json::to_value(crd).expect("a CRD serializes"))
        .collect();
    apply_crds(client, &crds).await
}

/// Server-side applies CRDs and waits until each is served.
pub async fn apply_crds(client: &Client, objects: &[serde_json::Value]) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::runtime::wait::{await_condition, conditions};
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let pp = kube::api::PatchParams::apply("keelson-e2e").force();
    for crd in objects {
        let name = crd["metadata"]["name"].as_str().unwrap_or_default();
        crds.patch(name, &pp, &kube::api::Patch::Apply(crd))
            .await
            .with_context(|| format!("applying CRD {name}"))?;
        let established = await_condition(crds.clone(), name, conditions::is_crd_established());
        tokio::time::timeout(std::time::Duration::from_secs(60), established)
            .await
            .with_context(|| format!("CRD {name} not Established"))??;
    }
    Ok(())
}
