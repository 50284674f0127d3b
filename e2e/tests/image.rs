//! Keelson's image as a cluster runs it. `make image`'s OCI layout is
//! unpacked with umoci, and the process its config names (entrypoint,
//! command, user, environment) runs chrooted in the image's root
//! filesystem, in a mount namespace of its own with only `/proc` added: no
//! file of the host is visible, and as user 65532 it can write none of the
//! image's (all root's), as with a read-only root filesystem. Against the
//! test cluster it registers the webhooks, brings the example ControlPlane
//! to Ready, injects a pod, and stops cleanly on SIGTERM. In its own test
//! binary, so on its own cluster. Needs root (chroot, mounts), as the e2e
//! harness does.

mod common;

use anyhow::{Context, bail, ensure};
use common::{
    KEELSON_NAMESPACE, deployment, free_port, injected_namespace, wait_until, with_dumps,
};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use keelson_crds::ControlPlane;
use keelson_e2e::shared::{env, install_keelson_crds};
use kube::api::{ListParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The image `make image` built: its layout and tag.
fn image() -> anyhow::Result<(PathBuf, String)> {
    let layout = std::env::var_os("KEELSON_IMAGE_LAYOUT")
        .map_or_else(|| workspace().join("target/image/oci"), PathBuf::from);
    let index = std::fs::read_to_string(layout.join("index.json")).with_context(|| {
        format!(
            "no OCI image at {}: run `make image` (`make e2e` does)",
            layout.display()
        )
    })?;
    let index: Value = serde_json::from_str(&index)?;
    let tag = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .context("the image has no tag")?
        .to_owned();
    Ok((layout, tag))
}

fn run(command: &mut std::process::Command) -> anyhow::Result<()> {
    let out = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    ensure!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The image's root filesystem and the process its config runs.
struct Unpacked {
    bundle: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    user: (u64, u64),
}

fn unpack(layout: &Path, tag: &str, into: &Path) -> anyhow::Result<Unpacked> {
    let bundle = into.join("bundle");
    run(std::process::Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:{tag}", layout.display()))
        .arg(&bundle))?;
    // The OCI runtime config umoci derives from the image's config.
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(bundle.join("config.json"))?)?;
    let process = &config["process"];
    let args = serde_json::from_value(process["args"].clone())?;
    let env = process["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str()?.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let user = (
        process["user"]["uid"].as_u64().context("no uid")?,
        process["user"]["gid"].as_u64().context("no gid")?,
    );
    Ok(Unpacked {
        bundle,
        args,
        env,
        user,
    })
}

#[tokio::test]
async fn the_image_runs_the_operator_from_its_own_root_filesystem() {
    let _serial = common::SERIAL.lock().await;
    env()
        .in_namespace("image", |client, ns| async move {
            let (layout, tag) = image()?;
            let scratch =
                std::env::temp_dir().join(format!("keelson-image-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&scratch);
            std::fs::create_dir_all(&scratch)?;
            let image = unpack(&layout, &tag, &scratch)?;
            ensure!(
                image.args == ["/keelson", "run"] && image.user == (65532, 65532),
                "the image runs {:?} as {:?}",
                image.args,
                image.user
            );
            let rootfs = image.bundle.join("rootfs");
            let mut files: Vec<String> = walk(&rootfs)?;
            files.sort();
            ensure!(
                files
                    == [
                        "/etc/group",
                        "/etc/passwd",
                        "/etc/ssl/certs/ca-certificates.crt",
                        "/keelson"
                    ],
                "the image holds {files:?}"
            );
            // The cluster's address and credentials, as a Secret mount
            // would give them.
            std::fs::create_dir_all(rootfs.join("var/run/keelson"))?;
            std::fs::copy(&env().kubeconfig, rootfs.join("var/run/keelson/kubeconfig"))?;
            // Where a container runtime mounts /proc and the devices of
            // the OCI runtime spec (the random sources among them).
            std::fs::create_dir_all(rootfs.join("proc"))?;
            std::fs::create_dir_all(rootfs.join("dev"))?;

            install_keelson_crds(&client).await?;
            let namespaces: Api<Namespace> = Api::all(client.clone());
            let keelson_ns =
                serde_json::from_value(json!({"metadata": {"name": KEELSON_NAMESPACE,
                "labels": {"config.linkerd.io/admission-webhooks": "disabled"}}}))?;
            match namespaces.create(&PostParams::default(), &keelson_ns).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }

            let (webhooks, admin) = (free_port(), free_port());
            let log = scratch.join("keelson.log");
            let mut command = tokio::process::Command::new("unshare");
            command
                .arg("--mount")
                .arg("sh")
                .arg("-c")
                // One process all the way: unshare, sh and chroot exec, so
                // the signal below reaches keelson itself.
                .arg(concat!(
                    r#"root=$0 user=$1; shift; set -e; mount -t proc proc "$root/proc"; "#,
                    r#"mount -t tmpfs -o nosuid,mode=0755 tmpfs "$root/dev"; "#,
                    r#"for d in null zero full random urandom; do "#,
                    r#"touch "$root/dev/$d"; mount --bind "/dev/$d" "$root/dev/$d"; done; "#,
                    r#"exec chroot --userspec="$user" "$root" "$@""#
                ))
                .arg(&rootfs)
                .arg(format!("{}:{}", image.user.0, image.user.1))
                .args(&image.args)
                .args([
                    "--log-format",
                    "json",
                    "--webhook-listen",
                    &format!("127.0.0.1:{webhooks}"),
                    "--webhook-url",
                    &format!("https://127.0.0.1:{webhooks}"),
                    "--admin-listen",
                    &format!("127.0.0.1:{admin}"),
                    "--namespace",
                    KEELSON_NAMESPACE,
                ])
                .env_clear()
                .envs(image.env.iter().cloned())
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                .env("KUBECONFIG", "/var/run/keelson/kubeconfig")
                .env("POD_NAME", format!("image-{}", std::process::id()))
                .stdout(std::fs::File::create(&log)?)
                .stderr(Stdio::from(std::fs::File::create(
                    scratch.join("keelson.err"),
                )?))
                .kill_on_drop(true);
            let mut child = command.spawn().context("starting the image's process")?;
            let pid = child.id().context("no pid")?;
            let exited = tokio::spawn(async move { child.wait().await });
            let running = || {
                if exited.is_finished() {
                    bail!("the image's process exited");
                }
                Ok(())
            };

            let outcome = async {
                let url = format!("https://127.0.0.1:{webhooks}/validate");
                let configs: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
                wait_until(
                    "the webhooks registered",
                    Duration::from_secs(60),
                    || async {
                        running()?;
                        let registered = configs
                            .get_opt(keelson_operator::admission::configurations::VALIDATOR)
                            .await?
                            .and_then(|v| v.webhooks)
                            .is_some_and(|w| {
                                w[0].client_config.url.as_deref() == Some(url.as_str())
                            });
                        anyhow::Ok(registered.then_some(()))
                    },
                )
                .await?;

                // The example ControlPlane, in the test's namespace.
                let mut example: ControlPlane = yaml_serde::from_str(&std::fs::read_to_string(
                    workspace().join("examples/controlplane.yaml"),
                )?)?;
                example.metadata.name = Some(ns.clone());
                example.spec.namespace.clone_from(&ns);
                let version = example.spec.version.clone();
                common::hand_over(&client, &ns, &ns).await?;
                let cps: Api<ControlPlane> = Api::all(client.clone());
                cps.create(&PostParams::default(), &example).await?;
                common::wait_converged(&cps, &ns, &version).await?;

                let app = format!("{ns}-app");
                with_dumps(&client, std::slice::from_ref(&app), async {
                    injected_namespace(&client, &app).await?;
                    Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(client.clone(), &app)
                        .create(
                            &PostParams::default(),
                            &deployment("web", &ns, 1, "example.com/image-web:1", false)?,
                        )
                        .await?;
                    let pods: Api<Pod> = Api::namespaced(client.clone(), &app);
                    wait_until("an injected pod", Duration::from_secs(60), || async {
                        let injected =
                            pods.list(&ListParams::default())
                                .await?
                                .items
                                .iter()
                                .any(|p| {
                                    p.annotations().get("linkerd.io/proxy-version")
                                        == Some(&version)
                                });
                        anyhow::Ok(injected.then_some(()))
                    })
                    .await
                })
                .await?;
                common::delete_control_plane(&cps, &ns).await
            }
            .await;

            // SIGTERM, as the kubelet stops a container: it drains and exits 0.
            let killed = run(std::process::Command::new("kill").args(["-TERM", &pid.to_string()]));
            let status = tokio::time::timeout(Duration::from_secs(60), exited)
                .await
                .context("the image's process did not stop on SIGTERM")???;
            let logs = || {
                let tail = |name: &str| {
                    let text = std::fs::read_to_string(scratch.join(name)).unwrap_or_default();
                    let lines: Vec<&str> = text.lines().collect();
                    lines[lines.len().saturating_sub(30)..].join("\n")
                };
                format!(
                    "stdout:\n{}\nstderr:\n{}",
                    tail("keelson.log"),
                    tail("keelson.err")
                )
            };
            if let Err(e) = outcome {
                bail!("{e:#}\n{}", logs());
            }
            killed?;
            ensure!(status.success(), "exited with {status}\n{}", logs());
            // It logged as the manifests ask: JSON, one object a line.
            let text = std::fs::read_to_string(&log)?;
            ensure!(
                text.lines()
                    .next()
                    .is_some_and(|l| serde_json::from_str::<Value>(l).is_ok()),
                "not JSON logs:\n{}",
                logs()
            );
            std::fs::remove_dir_all(&scratch)?;
            Ok(())
        })
        .await;
}

/// The files under `root`, as paths inside it.
fn walk(root: &Path) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let inside = path.strip_prefix(root)?.display().to_string();
                out.push(format!("/{inside}"));
            }
        }
    }
    Ok(out)
}
