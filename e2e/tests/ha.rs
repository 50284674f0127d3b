//! High availability on the real test cluster: two operator replicas in this
//! process elect a leader on the Lease; only the leader writes. Killing the
//! leader mid-upgrade (a crash: the lease is not handed back) lets the other
//! take over once the lease expires and finish the upgrade; stopping a
//! leader gracefully hands the lease back.

mod common;

use anyhow::{Context, ensure};
use common::{
    KEELSON_NAMESPACE, Operator, WAIT, free_port, lease_holder, set_fault, set_version,
    wait_converged, wait_for,
};
use keelson_e2e::shared::{env, install_keelson_crds};
use kube::Client;
use std::time::Duration;

/// Waits until one of `candidates` holds the Lease, and returns its index.
async fn wait_leader(client: &Client, candidates: &[&str]) -> anyhow::Result<usize> {
    tokio::time::timeout(WAIT, async {
        loop {
            if let (Some(h), _) = lease_holder(client).await?
                && let Some(i) = candidates.iter().position(|c| *c == h)
            {
                return anyhow::Ok(i);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .with_context(|| format!("none of {candidates:?} took the lease"))?
}

#[tokio::test]
async fn only_the_leader_reconciles_and_a_standby_finishes_its_work() {
    let _serial = common::SERIAL.lock().await;
    env()
        .in_namespace("ha", |client, ns| async move {
            install_keelson_crds(&client).await?;
            let (client_a, writes_a) = env().recording_client();
            let (client_b, writes_b) = env().recording_client();
            let a = Operator::start(client_a);
            let b = Operator::start_on(client_b, free_port());
            let first = wait_leader(&client, &[&a.identity, &b.identity]).await?;
            let (leader, standby, standby_writes) = if first == 0 {
                (a, b, writes_b)
            } else {
                (b, a, writes_a)
            };
            leader.webhooks_registered(&client).await?;

            let (cps, _) =
                common::converged(&client, &ns, "edge-25.4.4", serde_json::json!({})).await?;
            // The standby kept its caches and served webhooks, but wrote
            // nothing beyond what any replica may write as it starts: the
            // harness's Keelson namespace, the webhook CA Secret (one
            // creation wins) and a lost race for the lease.
            let startup = [
                "POST /api/v1/namespaces".to_owned(),
                format!("POST /api/v1/namespaces/{KEELSON_NAMESPACE}/secrets"),
            ];
            let seen: Vec<String> = standby_writes
                .lock()
                .unwrap()
                .iter()
                .filter(|w| !w.contains("/apis/coordination.k8s.io/") && !startup.contains(w))
                .cloned()
                .collect();
            ensure!(seen.is_empty(), "the standby wrote: {seen:?}");
            ensure!(
                lease_holder(&client).await?.0.as_deref() == Some(leader.identity.as_str()),
                "the lease changed hands without a failure"
            );

            // Hold an upgrade at its first gate (2.19's controller pods
            // crash), then crash the leader in the middle of it.
            set_fault(&client, Some("controller:edge-25.10.7")).await?;
            set_version(&cps, &ns, "edge-25.10.7").await?;
            wait_for(&cps, &ns, "upgrade not started", |cp| {
                cp.status
                    .as_ref()
                    .and_then(|s| s.upgrade.as_ref())
                    .is_some_and(|u| u.step == "edge-25.10.7")
            })
            .await?;
            let (_, transitions) = lease_holder(&client).await?;
            leader.kill().await;
            set_fault(&client, None).await?;

            // The standby takes over once the crashed leader's lease expires
            // and finishes the upgrade from where status says it stood.
            wait_leader(&client, &[&standby.identity]).await?;
            standby.webhooks_registered(&client).await?;
            let done = wait_converged(&cps, &ns, "edge-25.10.7").await?;
            let history = done.status.map(|s| s.history).unwrap_or_default();
            ensure!(history.len() == 1, "one upgrade, one record: {history:?}");
            ensure!(
                lease_holder(&client).await?.1 == transitions + 1,
                "one change of leader"
            );

            // A graceful stop hands the lease back at once: a new replica
            // takes it without waiting for it to expire.
            let successor = Operator::start_on(client.clone(), free_port());
            standby.stop().await?;
            let (after_stop, _) = lease_holder(&client).await?;
            ensure!(
                after_stop.is_none() || after_stop.as_deref() == Some(successor.identity.as_str()),
                "the stopped leader kept the lease: {after_stop:?}"
            );
            wait_leader(&client, &[&successor.identity]).await?;
            successor.webhooks_registered(&client).await?;

            // The new leader removes the control plane.
            common::delete_control_plane(&cps, &ns).await?;
            Ok(())
        })
        .await;
}
