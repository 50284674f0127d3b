//! A real Kubernetes control plane on loopback: etcd, kube-apiserver,
//! kube-controller-manager and kube-scheduler, built from Debian's Kubernetes
//! 1.20.2 source (see `hack/build-kubernetes.sh`), plus hollow nodes.

use crate::pki::ClusterPki;
use crate::process::Process;
use crate::{Error, hollow};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

pub const KUBERNETES_VERSION: &str = "1.20.2";

/// How to start a cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Hollow nodes to register.
    pub nodes: usize,
    /// Where to keep data, logs, certificates and the kubeconfig. Unset: a
    /// fresh directory under the system temp dir, removed when the cluster is
    /// dropped. A given directory is emptied first and kept afterwards.
    pub dir: Option<PathBuf>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            nodes: 3,
            dir: None,
        }
    }
}

/// A running test cluster. Dropping it stops every process.
pub struct Cluster {
    dir: PathBuf,
    remove_dir: bool,
    kubeconfig: PathBuf,
    config: kube::Config,
    agent: JoinHandle<Result<(), Error>>,
    // Started in order etcd, apiserver, controller-manager, scheduler; stopped
    // in reverse by `Drop`.
    processes: Vec<Process>,
}

/// Progress goes straight to stderr, past libtest's capture of `eprintln!`,
/// so a test run shows what the cluster is doing while it starts.
fn progress(msg: impl std::fmt::Display) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "==> [test cluster] {msg}");
}

impl Cluster {
    /// Builds Kubernetes if it is not cached yet, then starts a cluster and
    /// waits until it serves requests, runs controllers and has ready nodes.
    ///
    /// Call it from a thread that outlives the cluster: its processes die with
    /// the thread that started them.
    pub async fn start(opts: ClusterOptions) -> Result<Self, Error> {
        let bins = kubernetes_binaries()?;
        let (dir, remove_dir) = match opts.dir {
            Some(dir) => {
                let _ = std::fs::remove_dir_all(&dir);
                (dir, false)
            }
            None => (scratch_dir()?, true),
        };
        std::fs::create_dir_all(dir.join("logs")).map_err(Error::io("creating the cluster dir"))?;
        let mut cluster = Cluster {
            kubeconfig: dir.join("kubeconfig"),
            dir,
            remove_dir,
            config: kube::Config::new("https://127.0.0.1".parse().expect("static URL")),
            agent: tokio::spawn(std::future::pending()),
            processes: Vec::new(),
        };
        cluster.boot(&bins, opts.nodes).await?;
        Ok(cluster)
    }

    async fn boot(&mut self, bins: &Path, nodes: usize) -> Result<(), Error> {
        let started = Instant::now();
        let pki = ClusterPki::generate()?;
        let files = self.write_pki(&pki)?;
        let [etcd_port, etcd_peer, api_port, cm_port, sched_port] = free_ports()?;

        progress(format!("starting etcd on 127.0.0.1:{etcd_port}"));
        let etcd_client = format!("http://127.0.0.1:{etcd_port}");
        let etcd_peer = format!("http://127.0.0.1:{etcd_peer}");
        self.spawn(
            "etcd",
            Path::new("/usr/bin/etcd"),
            args(&[
                ("--name", "keelson-e2e"),
                ("--data-dir", &self.path("etcd")),
                ("--listen-client-urls", &etcd_client),
                ("--advertise-client-urls", &etcd_client),
                ("--listen-peer-urls", &etcd_peer),
                ("--initial-advertise-peer-urls", &etcd_peer),
                ("--initial-cluster", &format!("keelson-e2e={etcd_peer}")),
                ("--unsafe-no-fsync", "true"),
            ]),
        )?;

        progress(format!(
            "starting kube-apiserver {KUBERNETES_VERSION} on https://127.0.0.1:{api_port}"
        ));
        self.spawn(
            "kube-apiserver",
            &bins.join("kube-apiserver"),
            args(&[
                ("--etcd-servers", &etcd_client),
                ("--secure-port", &api_port.to_string()),
                ("--bind-address", "127.0.0.1"),
                ("--advertise-address", "127.0.0.1"),
                ("--tls-cert-file", &files.serving_cert),
                ("--tls-private-key-file", &files.serving_key),
                ("--client-ca-file", &files.ca),
                ("--service-account-key-file", &files.sa_pub),
                ("--service-account-signing-key-file", &files.sa_key),
                ("--service-account-issuer", "https://kubernetes.default.svc"),
                ("--authorization-mode", "RBAC"),
                ("--service-cluster-ip-range", "10.96.0.0/16"),
                ("--allow-privileged", "true"),
                (
                    "--enable-admission-plugins",
                    "NamespaceLifecycle,ServiceAccount,MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
                ),
                ("--profiling", "false"),
            ]),
        )?;

        self.write_kubeconfig(&pki, api_port)?;
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).map_err(Box::new)?;
        self.config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(Box::new)?;
        let client = self.client()?;
        self.wait("kube-apiserver /readyz", Duration::from_secs(90), || {
            serves(&client)
        })
        .await?;

        let kubeconfig = self.kubeconfig.display().to_string();
        let auth = |port: u16| {
            args(&[
                ("--kubeconfig", kubeconfig.as_str()),
                ("--authentication-kubeconfig", kubeconfig.as_str()),
                ("--authorization-kubeconfig", kubeconfig.as_str()),
                ("--bind-address", "127.0.0.1"),
                ("--secure-port", &port.to_string()),
                ("--port", "0"),
                ("--leader-elect", "false"),
                ("--kube-api-qps", "200"),
                ("--kube-api-burst", "400"),
            ])
        };
        progress("starting kube-controller-manager and kube-scheduler");
        let mut cm_args = auth(cm_port);
        cm_args.extend(args(&[
            ("--service-account-private-key-file", &files.sa_key),
            ("--root-ca-file", &files.ca),
            // No cloud, no kubelets and no volumes: leave out the controllers
            // that would fight the hollow nodes or wait for real machines.
            (
                "--controllers",
                "*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-route,-service,-attachdetach,-persistentvolume-binder,-pv-protection,-pvc-protection",
            ),
            ("--concurrent-deployment-syncs", "10"),
            ("--concurrent-replicaset-syncs", "10"),
        ]));
        self.spawn(
            "kube-controller-manager",
            &bins.join("kube-controller-manager"),
            cm_args,
        )?;
        self.spawn(
            "kube-scheduler",
            &bins.join("kube-scheduler"),
            auth(sched_port),
        )?;

        // Pods need their namespace's ServiceAccount, which the controller
        // manager creates: its presence shows the controllers run.
        let sa: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
        self.wait(
            "the controller manager (default ServiceAccount)",
            Duration::from_secs(90),
            || async { sa.get_opt("default").await.is_ok_and(|sa| sa.is_some()) },
        )
        .await?;

        progress(format!("registering {nodes} hollow nodes"));
        let names: Vec<String> = (0..nodes).map(|i| format!("hollow-node-{i}")).collect();
        hollow::register_nodes(&client, &names).await?;
        let agent_client = client.clone();
        self.agent = tokio::spawn(async move { hollow::run_agent(agent_client, names).await });
        progress(format!(
            "ready in {:.1}s; kubeconfig: {}",
            started.elapsed().as_secs_f32(),
            self.kubeconfig.display()
        ));
        Ok(())
    }

    /// Restarts `component` in place, as an operator of the cluster would
    /// (SIGTERM, then the same command line: same ports, same data), and
    /// waits until the API server serves again. The other processes and the
    /// hollow-node agent ride it out on their own.
    pub async fn restart(&mut self, component: Component) -> Result<(), Error> {
        let name = component.process();
        progress(format!("restarting {name}"));
        let process = self
            .processes
            .iter_mut()
            .find(|p| p.name == name)
            .expect("every component is started at boot");
        process.restart(Duration::from_secs(10)).await?;
        let client = self.client()?;
        self.wait(
            &format!("kube-apiserver /readyz after restarting {name}"),
            Duration::from_secs(90),
            || serves(&client),
        )
        .await?;
        progress(format!("{name} restarted"));
        Ok(())
    }

    /// The admin kubeconfig file.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Client configuration for the admin user.
    pub fn config(&self) -> &kube::Config {
        &self.config
    }

    /// An admin client. Clients are bound to the tokio runtime they are first
    /// used on; make one per runtime.
    pub fn client(&self) -> Result<Client, Error> {
        Client::try_from(self.config.clone()).map_err(Error::kube("building a client"))
    }

    /// Fails if a cluster process or the hollow-node agent has stopped.
    pub fn check(&mut self) -> Result<(), Error> {
        for p in &mut self.processes {
            p.check()?;
        }
        if self.agent.is_finished() {
            return Err(Error::AgentStopped(
                "see the logs above for its last error".into(),
            ));
        }
        Ok(())
    }

    fn spawn(
        &mut self,
        name: &'static str,
        program: &Path,
        args: Vec<String>,
    ) -> Result<(), Error> {
        let log = self.dir.join("logs").join(format!("{name}.log"));
        self.processes
            .push(Process::spawn(name, program, &args, log)?);
        Ok(())
    }

    fn path(&self, rel: &str) -> String {
        self.dir.join(rel).display().to_string()
    }

    /// Polls `ready` until it holds, failing early if a process dies.
    async fn wait<F, Fut>(&mut self, what: &str, limit: Duration, mut ready: F) -> Result<(), Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let start = Instant::now();
        loop {
            self.check()?;
            if ready().await {
                return Ok(());
            }
            if start.elapsed() > limit {
                return Err(Error::Timeout {
                    what: what.to_owned(),
                    secs: limit.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn write_pki(&self, pki: &ClusterPki) -> Result<PkiFiles, Error> {
        let write = |name: &str, pem: &str| -> Result<String, Error> {
            let path = self.dir.join("pki").join(name);
            std::fs::create_dir_all(path.parent().expect("has a parent"))
                .and_then(|()| std::fs::write(&path, pem))
                .map_err(Error::io(format!("writing {}", path.display())))?;
            Ok(path.display().to_string())
        };
        Ok(PkiFiles {
            ca: write("ca.crt", &pki.ca_cert_pem)?,
            serving_cert: write("apiserver.crt", &pki.serving_cert_pem)?,
            serving_key: write("apiserver.key", &pki.serving_key_pem)?,
            sa_key: write("service-account.key", &pki.service_account_key_pem)?,
            sa_pub: write("service-account.pub", &pki.service_account_pub_pem)?,
        })
    }

    fn write_kubeconfig(&self, pki: &ClusterPki, port: u16) -> Result<(), Error> {
        let b64 = |s: &str| k8s_openapi::ByteString(s.as_bytes().to_vec());
        let doc = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "keelson-e2e", "cluster": {
                "server": format!("https://127.0.0.1:{port}"),
                "certificate-authority-data": b64(&pki.ca_cert_pem),
            }}],
            "users": [{"name": "admin", "user": {
                "client-certificate-data": b64(&pki.admin_cert_pem),
                "client-key-data": b64(&pki.admin_key_pem),
            }}],
            "contexts": [{"name": "keelson-e2e", "context": {"cluster": "keelson-e2e", "user": "admin"}}],
            "current-context": "keelson-e2e",
        });
        let yaml = yaml_serde::to_string(&doc).expect("static shape serializes");
        std::fs::write(&self.kubeconfig, yaml)
            .map_err(Error::io(format!("writing {}", self.kubeconfig.display())))
    }
}

/// A control-plane process tests can restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    Etcd,
    ApiServer,
}

impl Component {
    fn process(self) -> &'static str {
        match self {
            Self::Etcd => "etcd",
            Self::ApiServer => "kube-apiserver",
        }
    }
}

/// Whether the API server answers `/readyz` with `ok` (which includes its
/// etcd connection).
async fn serves(client: &Client) -> bool {
    client
        .request_text(
            http::Request::get("/readyz")
                .body(Vec::new())
                .expect("static request"),
        )
        .await
        .is_ok_and(|body| body.trim() == "ok")
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.agent.abort();
        while let Some(p) = self.processes.pop() {
            drop(p);
        }
        if self.remove_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

struct PkiFiles {
    ca: String,
    serving_cert: String,
    serving_key: String,
    sa_key: String,
    sa_pub: String,
}

fn args(pairs: &[(&str, &str)]) -> Vec<String> {
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// Picks free loopback ports, so that several clusters can run side by side.
fn free_ports<const N: usize>() -> Result<[u16; N], Error> {
    // Hold every listener until all are picked so no port is handed out twice.
    let listeners = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(Error::io("picking free ports"))?;
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()
        .map_err(Error::io("picking free ports"))?;
    Ok(ports.try_into().expect("N ports"))
}

/// The directory with the cached Kubernetes binaries, building them first if
/// needed (about 9 minutes on 2 cores, once per machine and version).
pub fn kubernetes_binaries() -> Result<PathBuf, Error> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/build-kubernetes.sh");
    let status = std::process::Command::new("bash")
        .arg(&script)
        .status()
        .map_err(Error::io(format!("running {}", script.display())))?;
    if !status.success() {
        return Err(Error::Build { status });
    }
    let cache = std::env::var_os("KEELSON_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/keelson")))
        .ok_or_else(|| Error::io("locating the cache")(std::io::Error::other("HOME is not set")))?;
    Ok(cache.join(format!("k8s-{KUBERNETES_VERSION}")))
}

/// A fresh directory for one cluster under `$TMPDIR/keelson-e2e`, after
/// removing those left by runs whose process is gone (killed runs cannot clean
/// up after themselves).
fn scratch_dir() -> Result<PathBuf, Error> {
    let root = std::env::temp_dir().join("keelson-e2e");
    if let Ok(entries) = std::fs::read_dir(&root) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = name.split('-').next().unwrap_or_default();
            if !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let dir = root.join(format!("{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    Ok(dir)
}
