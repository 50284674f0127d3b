//! Helpers shared by the operator's end-to-end tests.
#![allow(dead_code)] // each test binary uses its own subset

use anyhow::Context as _;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use keelson_crds::{ControlPlane, DataPlane, DataPlaneStatus};
use keelson_e2e::hollow;
use keelson_e2e::shared::{TEST_NAMESPACE_LABEL, dump_namespace};
use keelson_operator::admission::configurations::INJECTOR;
use keelson_operator::leader::lease;
use kube::api::{DeleteParams, PostParams};
use kube::api::{Patch, PatchParams};
use kube::runtime::wait::await_condition;
use kube::{Api, Client};
use serde_json::json;
use std::future::Future;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub const WAIT: Duration = Duration::from_secs(120);

/// Operator tests run one at a time: each starts an operator that reconciles
/// every ControlPlane in the cluster, and Linkerd allows one control plane per
/// cluster (some of its cluster-scoped objects have fixed names).
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Keelson's namespace in the tests (the webhook CA Secret lives there).
pub const KEELSON_NAMESPACE: &str = "keelson";

/// The port the operators of this test binary serve webhooks on. One port
/// for all of them, so the webhook configurations a previous operator left
/// (with the CA kept in its Secret) stay right for the next one.
pub fn webhook_port() -> u16 {
    static PORT: OnceLock<u16> = OnceLock::new();
    *PORT.get_or_init(free_port)
}

/// A loopback port nothing listens on, e.g. for a second operator's webhooks.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// The base URL the API server calls the test operators' webhooks at.
pub fn webhook_url() -> String {
    url(webhook_port())
}

fn url(port: u16) -> String {
    format!("https://127.0.0.1:{port}")
}

/// Leader election settings for the test operators: short, so a killed
/// leader's lease (never handed back) expires within seconds.
fn election(identity: &str) -> lease::Config {
    lease::Config {
        lease_duration: Duration::from_secs(6),
        renew_deadline: Duration::from_secs(4),
        retry_period: Duration::from_secs(1),
        ..lease::Config::new(KEELSON_NAMESPACE, identity)
    }
}

/// The operator (`keelson run`: controllers and admission webhooks), running
/// in this process against the real API server. Dropping or killing it stops
/// it at once, as a crash would: nothing it knew survives except what it
/// wrote to the cluster.
pub struct Operator {
    task: tokio::task::JoinHandle<()>,
    /// Its name in the leader Lease.
    pub identity: String,
    port: u16,
    /// Completes the operator's shutdown future.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Operator {
    pub fn start(client: Client) -> Self {
        Self::launch(client, webhook_port(), Default::default(), None)
    }

    /// An operator granted only the control-plane namespaces `scope`, as
    /// the install's RBAC grants them (it watches Secrets there alone).
    pub fn start_scoped(
        client: Client,
        policy: keelson_operator::policy::Config,
        scope: &[&str],
    ) -> Self {
        let scope = scope.iter().map(|s| (*s).to_owned()).collect();
        Self::launch(client, webhook_port(), policy, Some(scope))
    }

    /// An operator serving its webhooks on `port`: a second replica in the
    /// same process needs a port of its own.
    pub fn start_on(client: Client, port: u16) -> Self {
        Self::launch(client, port, Default::default(), None)
    }

    fn launch(
        client: Client,
        port: u16,
        policy: keelson_operator::policy::Config,
        scope: Option<Vec<String>>,
    ) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let identity = format!(
            "e2e-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        // The operator's logs, shown with a failing test's output.
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "info,kube_runtime=warn".into()),
            )
            .try_init();
        // Bound before returning, so the API server's webhook calls wait in
        // the backlog instead of being refused while the operator starts.
        let listener =
            std::net::TcpListener::bind(("127.0.0.1", port)).expect("binding the webhook port");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let config = keelson_operator::admission::Config {
            namespace: KEELSON_NAMESPACE.into(),
            endpoint: keelson_operator::admission::configurations::Endpoint::Url(url(port)),
            control_plane_namespaces: scope,
        };
        let election = election(&identity);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let namespaces: Api<Namespace> = Api::all(client.clone());
            let ns = serde_json::from_value(json!({"metadata": {"name": KEELSON_NAMESPACE,
                "labels": {"config.linkerd.io/admission-webhooks": "disabled"}}}))
            .expect("a valid Namespace");
            match namespaces.create(&Default::default(), &ns).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => panic!("creating namespace {KEELSON_NAMESPACE}: {e}"),
            }
            let listeners = keelson_operator::runtime::Listeners {
                webhooks: tokio::net::TcpListener::from_std(listener).expect("a tokio listener"),
                admin: None,
            };
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) = keelson_operator::runtime::run(
                client, config, election, policy, listeners, shutdown,
            )
            .await
            {
                panic!("the operator stopped: {e}");
            }
        });
        Self {
            task,
            identity,
            port,
            stop: Some(stop),
        }
    }

    /// Waits until this operator leads and the webhook configurations point
    /// at it (the leader registers them; a previous operator on the same
    /// port may have left them so).
    pub async fn webhooks_registered(&self, client: &Client) -> anyhow::Result<()> {
        let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
        let url = format!("{}/validate", url(self.port));
        tokio::time::timeout(WAIT, async {
            loop {
                let registered = api
                    .get_opt(keelson_operator::admission::configurations::VALIDATOR)
                    .await?
                    .and_then(|v| v.webhooks)
                    .is_some_and(|w| w[0].client_config.url.as_deref() == Some(url.as_str()));
                if registered
                    && lease_holder(client).await?.0.as_deref() == Some(self.identity.as_str())
                {
                    return anyhow::Ok(());
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await
        .with_context(|| format!("the validating webhook was not registered at {url}"))?
    }

    /// Whether the operator is still running (it stops on a fatal error).
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }

    pub async fn kill(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }

    /// Stops the operator as SIGTERM would: the reconcilers finish, the
    /// lease is handed back, the webhooks drain.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(WAIT, &mut self.task)
            .await
            .context("the operator did not stop")?
            .context("the operator failed")
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The leader Lease's holder (none once handed back) and its transitions.
pub async fn lease_holder(client: &Client) -> anyhow::Result<(Option<String>, i32)> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), KEELSON_NAMESPACE);
    let spec = leases
        .get_opt(lease::LEASE_NAME)
        .await?
        .and_then(|l| l.spec);
    Ok((
        spec.as_ref()
            .and_then(|s| s.holder_identity.clone())
            .filter(|h| !h.is_empty()),
        spec.and_then(|s| s.lease_transitions).unwrap_or(0),
    ))
}

/// Images of a Deployment's containers.
pub fn images(deployment: Deployment) -> Vec<String> {
    deployment
        .spec
        .and_then(|s| s.template.spec)
        .map(|p| p.containers)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| c.image)
        .collect()
}

pub fn condition(cp: &ControlPlane, type_: &str) -> Option<(String, String)> {
    cp.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// Waits until `test` holds for the ControlPlane.
pub async fn wait_for(
    api: &Api<ControlPlane>,
    name: &str,
    what: &str,
    test: impl Fn(&ControlPlane) -> bool,
) -> anyhow::Result<ControlPlane> {
    let cond = move |cp: Option<&ControlPlane>| cp.is_some_and(&test);
    tokio::time::timeout(WAIT, await_condition(api.clone(), name, cond))
        .await
        .with_context(|| format!("ControlPlane {name}: {what}"))??
        .context("ControlPlane deleted")
}

/// Ready, at `version`, with no version change under way.
pub async fn wait_converged(
    api: &Api<ControlPlane>,
    name: &str,
    version: &str,
) -> anyhow::Result<ControlPlane> {
    wait_for(api, name, &format!("not converged on {version}"), |cp| {
        let s = cp.status.clone().unwrap_or_default();
        condition(cp, "Ready").is_some_and(|(st, _)| st == "True")
            && s.current_version.as_deref() == Some(version)
            && s.upgrade.is_none()
    })
    .await
}

pub fn control_plane(
    name: &str,
    namespace: &str,
    version: &str,
    extra: serde_json::Value,
) -> ControlPlane {
    let mut spec =
        json!({"version": version, "namespace": namespace, "allowUnsupportedKubernetes": true});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "keelson.dev/v1alpha1", "kind": "ControlPlane",
        "metadata": {"name": name}, "spec": spec,
    }))
    .expect("valid ControlPlane")
}

/// Deletes a ControlPlane and waits until its operator has finalized it.
/// Linkerd's cluster-scoped objects have fixed names, and the validator
/// refuses a second ControlPlane while one (even a deleting one) exists:
/// the next test can install only once this one is gone.
pub async fn delete_control_plane(api: &Api<ControlPlane>, name: &str) -> anyhow::Result<()> {
    let Some(cp) = api.get_opt(name).await? else {
        return Ok(());
    };
    let uid = cp.metadata.uid.unwrap_or_default();
    api.delete(name, &Default::default()).await?;
    tokio::time::timeout(
        WAIT,
        await_condition(
            api.clone(),
            name,
            kube::runtime::wait::conditions::is_deleted(&uid),
        ),
    )
    .await
    .with_context(|| format!("ControlPlane {name} was not finalized"))??;
    Ok(())
}

/// Tells the hollow nodes to crash-loop pods whose image contains `image`
/// (`None` lifts all faults).
pub async fn set_fault(client: &Client, image: Option<&str>) -> anyhow::Result<()> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), hollow::FAULTS_NAMESPACE);
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": hollow::FAULTS_CONFIGMAP},
        "data": {hollow::FAULTS_KEY: image.unwrap_or("")}});
    cms.patch(
        hollow::FAULTS_CONFIGMAP,
        &PatchParams::apply("keelson-e2e").force(),
        &Patch::Apply(&cm),
    )
    .await?;
    Ok(())
}

/// Tells the hollow nodes to crash-loop `fault`, asks ControlPlane `name`
/// for `version`, and waits until the upgrade was rolled back; returns the
/// ControlPlane then.
pub async fn upgrade_rolled_back(
    client: &Client,
    api: &Api<ControlPlane>,
    name: &str,
    fault: &str,
    version: &str,
) -> anyhow::Result<ControlPlane> {
    set_fault(client, Some(fault)).await?;
    set_version(api, name, version).await?;
    wait_for(api, name, "not rolled back", |cp| {
        condition(cp, "Degraded").is_some_and(|(s, r)| s == "True" && r == "UpgradeRolledBack")
    })
    .await
}

pub async fn set_version(api: &Api<ControlPlane>, name: &str, version: &str) -> anyhow::Result<()> {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"version": version}})),
    )
    .await?;
    Ok(())
}

// Workloads and DataPlanes ---------------------------------------------------

/// Label on the test's Deployments; its value is the test's namespace.
pub const WAVE_LABEL: &str = "e2e.keelson.dev/wave";

/// Polls `check` until it returns `Some`, for at most `limit`.
pub async fn wait_until<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    tokio::time::timeout(limit, async {
        loop {
            if let Some(v) = check().await? {
                return anyhow::Ok(v);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await
    .with_context(|| format!("timed out after {}s: {what}", limit.as_secs()))?
}

/// An injected namespace (`linkerd.io/inject: enabled`).
pub async fn injected_namespace(client: &Client, name: &str) -> anyhow::Result<()> {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name,
        "labels": {TEST_NAMESPACE_LABEL: "true"},
        "annotations": {"linkerd.io/inject": "enabled"}}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    Ok(())
}

/// A Deployment of `replicas` pods running `image`. With `take_down`, its
/// rollouts replace pods without surging (one pod unavailable at a time), so
/// a restart really costs availability.
pub fn deployment(
    name: &str,
    wave: &str,
    replicas: i32,
    image: &str,
    take_down: bool,
) -> anyhow::Result<Deployment> {
    let strategy = if take_down {
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}})
    } else {
        json!({"type": "RollingUpdate"})
    };
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": name, WAVE_LABEL: wave}},
        "spec": {
            "replicas": replicas,
            "strategy": strategy,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, WAVE_LABEL: wave}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }))?)
}

pub fn data_plane(name: &str, spec: serde_json::Value) -> anyhow::Result<DataPlane> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "keelson.dev/v1alpha1", "kind": "DataPlane",
        "metadata": {"name": name}, "spec": spec,
    }))?)
}

pub fn dp_status(dp: &DataPlane) -> DataPlaneStatus {
    dp.status.clone().unwrap_or_default()
}

pub fn ready(s: &DataPlaneStatus) -> bool {
    s.conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Every workload up to date at `version`, and Ready.
pub async fn wait_up_to_date(
    api: &Api<DataPlane>,
    name: &str,
    workloads: i32,
    version: &str,
    limit: Duration,
) -> anyhow::Result<DataPlane> {
    // The last status seen, to show what a timeout waited on.
    let last = std::cell::RefCell::new(None);
    let waited = wait_until(
        &format!("DataPlane {name} up to date at {version}"),
        limit,
        || async {
            let dp = api.get(name).await?;
            let s = dp_status(&dp);
            let done = s.target_proxy_version.as_deref() == Some(version)
                && s.workloads == workloads
                && s.up_to_date == workloads
                && ready(&s);
            *last.borrow_mut() = Some(s);
            anyhow::Ok(done.then_some(dp))
        },
    )
    .await;
    waited.with_context(|| format!("last status: {:#?}", last.borrow()))
}

/// Runs `test`; on failure adds the state of the extra namespaces it made.
pub async fn with_dumps(
    client: &Client,
    namespaces: &[String],
    test: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let result = test.await;
    if let Err(e) = result {
        let mut dumps = String::new();
        for ns in namespaces {
            dumps.push_str(&format!(
                "--- state of namespace {ns} ---\n{}",
                dump_namespace(client, ns).await
            ));
        }
        anyhow::bail!("{e:#}\n{dumps}");
    }
    for ns in namespaces {
        let _ = Api::<Namespace>::all(client.clone())
            .delete(ns, &DeleteParams::background())
            .await;
    }
    Ok(())
}

/// An operator, and a ControlPlane `name` (in namespace `name`) installed
/// at `version` and converged: the start of most end-to-end tests.
pub async fn installed(
    client: &Client,
    name: &str,
    version: &str,
) -> anyhow::Result<(Operator, Api<ControlPlane>)> {
    installed_with(client, name, version, json!({})).await
}

/// As [`installed`], with `extra` merged into the ControlPlane's spec.
pub async fn installed_with(
    client: &Client,
    name: &str,
    version: &str,
    extra: serde_json::Value,
) -> anyhow::Result<(Operator, Api<ControlPlane>)> {
    keelson_e2e::shared::install_keelson_crds(client).await?;
    let operator = Operator::start(client.clone());
    operator.webhooks_registered(client).await?;
    let (cps, _) = converged(client, name, version, extra).await?;
    Ok((operator, cps))
}

/// Creates ControlPlane `name` at `version` (installing into namespace
/// `name`, `extra` merged into its spec) and waits until it converged;
/// returns the API and what it became.
pub async fn converged(
    client: &Client,
    name: &str,
    version: &str,
    extra: serde_json::Value,
) -> anyhow::Result<(Api<ControlPlane>, ControlPlane)> {
    hand_over(client, name, name).await?;
    let cps: Api<ControlPlane> = Api::all(client.clone());
    cps.create(
        &PostParams::default(),
        &control_plane(name, name, version, extra),
    )
    .await?;
    let cp = wait_converged(&cps, name, version).await?;
    Ok((cps, cp))
}

/// Hands the test's namespace `namespace` to ControlPlane `name`, as a user
/// hands over a namespace they made: Keelson takes only a namespace that
/// does not exist yet or is labelled for it.
pub async fn hand_over(client: &Client, namespace: &str, name: &str) -> anyhow::Result<()> {
    let label =
        json!({"metadata": {"labels": {keelson_operator::render::CONTROL_PLANE_LABEL: name}}});
    Api::<Namespace>::all(client.clone())
        .patch(namespace, &PatchParams::default(), &Patch::Merge(label))
        .await
        .with_context(|| format!("labelling namespace {namespace} for ControlPlane {name}"))?;
    Ok(())
}

/// Removes Keelson's validator, as when a GitOps sync stores objects before
/// Keelson is installed, and waits until the API server stops calling it:
/// its webhook informer lags the delete, so a create right after it can
/// still be sent to the (stopped) webhook. A dry-run create is admitted
/// through the same webhooks, so its outcome tells.
pub async fn without_validator(client: &Client) -> anyhow::Result<()> {
    use keelson_operator::admission::configurations::VALIDATOR;
    let validators: Api<
        k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration,
    > = Api::all(client.clone());
    match validators.delete(VALIDATOR, &Default::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    let probe = control_plane(
        "validator-probe",
        "validator-probe",
        "edge-25.4.4",
        json!({}),
    );
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let cps: Api<ControlPlane> = Api::all(client.clone());
    wait_until(
        "the API server stops calling the validator",
        WAIT,
        || async {
            match cps.create(&dry, &probe).await {
                Err(kube::Error::Api(s)) if s.message.contains("failed calling webhook") => {
                    Ok(None)
                }
                _ => Ok(Some(())),
            }
        },
    )
    .await
}

/// Waits until Keelson's proxy injector is registered with `failure_policy`.
pub async fn injector_registered(client: &Client, failure_policy: &str) -> anyhow::Result<()> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    tokio::time::timeout(WAIT, async {
        loop {
            let current = api
                .get_opt(INJECTOR)
                .await?
                .and_then(|m| m.webhooks)
                .and_then(|w| w.into_iter().next().and_then(|h| h.failure_policy));
            if current.as_deref() == Some(failure_policy) {
                return anyhow::Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .with_context(|| format!("the proxy injector was not registered with {failure_policy}"))?
}

/// Applies Keelson's install manifests except what the in-process operator
/// replaces (its Deployment and Service), the CRDs (the caller installs and
/// awaits them) and the PodDisruptionBudget (policy/v1 needs Kubernetes
/// 1.21); returns a client that is the operator's ServiceAccount, so a test
/// proves the install RBAC is enough.
pub async fn install_rbac(
    client: &Client,
    control_planes: &[keelson_operator::install::ControlPlaneGrant<'_>],
) -> anyhow::Result<Client> {
    install_rbac_with(client, control_planes, &[]).await
}

/// As [`install_rbac`], with DataPlane restarts granted in
/// `data_plane_namespaces`.
pub async fn install_rbac_with(
    client: &Client,
    control_planes: &[keelson_operator::install::ControlPlaneGrant<'_>],
    data_plane_namespaces: &[&str],
) -> anyhow::Result<Client> {
    use keelson_operator::install;
    let objects = install::objects(&install::Install {
        namespace: KEELSON_NAMESPACE,
        image: "example.com/keelson:test",
        replicas: 1.into(),
        control_planes,
        data_plane_namespaces,
    });
    let applier = keelson_operator::apply::Applier::new(client.clone());
    let skipped = [
        "Deployment",
        "Service",
        "CustomResourceDefinition",
        "PodDisruptionBudget",
    ];
    for o in objects
        .iter()
        .filter(|o| !skipped.contains(&o["kind"].as_str().unwrap_or_default()))
    {
        applier.apply(o).await?;
    }
    Ok(keelson_e2e::shared::env().impersonating(&format!(
        "system:serviceaccount:{KEELSON_NAMESPACE}:{}",
        install::NAME
    )))
}

/// The managed trust anchors' Secret of ControlPlane `cp`, in Keelson's
/// namespace.
pub async fn anchors(
    client: &Client,
    cp: &str,
) -> anyhow::Result<k8s_openapi::api::core::v1::Secret> {
    let name = keelson_operator::controlplane::material::anchor_secret(cp);
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), KEELSON_NAMESPACE)
        .get(&name)
        .await
        .with_context(|| format!("reading Secret {KEELSON_NAMESPACE}/{name}"))
}

/// A Secret's value under `key`, as text.
pub fn secret_text(
    secret: &k8s_openapi::api::core::v1::Secret,
    key: &str,
) -> anyhow::Result<String> {
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .with_context(|| {
            format!(
                "Secret {} has no {key}",
                kube::ResourceExt::name_any(secret)
            )
        })?;
    Ok(String::from_utf8(bytes.0.clone())?)
}

/// The trust bundle a control plane in `namespace` publishes (its
/// `linkerd-identity-trust-roots` ConfigMap).
pub async fn trust_bundle(client: &Client, namespace: &str) -> anyhow::Result<String> {
    Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), namespace)
        .get("linkerd-identity-trust-roots")
        .await?
        .data
        .and_then(|d| d.get("ca-bundle.crt").cloned())
        .context("no trust bundle")
}

/// Reason and message of the Events about ControlPlane `name` (cluster-scoped,
/// so its Events are in `default`).
pub async fn control_plane_events(
    client: &Client,
    name: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    Ok(
        Api::<k8s_openapi::api::core::v1::Event>::namespaced(client.clone(), "default")
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(name))
            .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
            .collect(),
    )
}

/// SHA-256 (hex) of `data`, as `linkerd.io/trust-root-sha256` holds it.
pub fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The DER of every certificate in `pem`, in order.
pub fn der_certificates(pem: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .map(|p| Ok(p?.contents))
        .collect()
}

/// Whether `issuer` (DER) is signed by `anchor` (DER).
pub fn signs(anchor: &[u8], issuer: &[u8]) -> bool {
    let (Ok((_, anchor)), Ok((_, issuer))) = (
        x509_parser::parse_x509_certificate(anchor),
        x509_parser::parse_x509_certificate(issuer),
    ) else {
        return false;
    };
    issuer.issuer() == anchor.subject()
        && issuer.verify_signature(Some(anchor.public_key())).is_ok()
}
