use super::*;
use serde_json::json;

const DAY: Duration = Duration::from_secs(86_400);

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn cp(status: serde_json::Value) -> ControlPlane {
    serde_json::from_value(json!({
        "apiVersion": "keelson.dev/v1alpha1", "kind": "ControlPlane",
        "metadata": {"name": "mesh", "generation": 2},
        "spec": {"version": "edge-25.4.4", "namespace": "linkerd"},
        "status": status,
    }))
    .unwrap()
}

fn ready(status: &str, reason: &str) -> serde_json::Value {
    json!({"type": "Ready", "status": status, "reason": reason, "message": "m",
           "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 2})
}

#[test]
fn a_ready_control_plane_passes_with_phase_and_version() {
    let findings = control_plane(&cp(json!({
        "observedGeneration": 2, "phase": "Ready", "currentVersion": "edge-25.4.4",
        "conditions": [ready("True", "Available")],
    })));
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].outcome, Outcome::Pass);
    assert!(
        findings[0].message.contains("phase Ready") && findings[0].message.contains("edge-25.4.4"),
        "{}",
        findings[0].message
    );
}

#[test]
fn an_unready_or_upgrading_control_plane_is_reported() {
    let findings = control_plane(&cp(json!({
        "observedGeneration": 1, "phase": "Upgrading", "currentVersion": "edge-25.4.4",
        "conditions": [ready("False", "Upgrading")],
        "upgrade": {"from": "edge-25.4.4", "to": "edge-25.10.7", "step": "edge-25.10.7",
                    "stage": "Identity", "stageStartedAt": "2026-01-01T00:00:00Z"},
    })));
    let outcomes: Vec<Outcome> = findings.iter().map(|f| f.outcome).collect();
    assert_eq!(
        outcomes,
        [Outcome::Fail, Outcome::Warn, Outcome::Warn],
        "{findings:?}"
    );
    assert!(findings[0].message.contains("Upgrading: m"));
    assert!(
        findings[2]
            .message
            .contains("from edge-25.4.4 to edge-25.10.7")
    );

    let none = control_plane(&cp(json!({})));
    assert_eq!(none[0].outcome, Outcome::Fail);
}

fn deploy(replicas: i32, available: Option<i32>) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": "linkerd-identity", "namespace": "linkerd"},
        "spec": {"replicas": replicas, "selector": {}, "template": {}},
        "status": {"availableReplicas": available},
    }))
    .unwrap()
}

#[test]
fn deployments_need_every_wanted_replica_and_at_least_one() {
    let full = deployment(&deploy(2, Some(2)));
    assert_eq!(full.outcome, Outcome::Pass);
    let partial = deployment(&deploy(2, Some(1)));
    assert_eq!(partial.outcome, Outcome::Fail);
    assert!(
        partial
            .message
            .contains("linkerd/linkerd-identity has 1 of 2")
    );
    let zero = deployment(&deploy(0, None));
    assert_eq!(zero.outcome, Outcome::Fail);
    assert!(zero.message.contains("scaled to 0"), "{}", zero.message);
}

fn anchor(issued: SystemTime, lifetime: Duration) -> String {
    crate::identity::trust_anchor("cluster.local", lifetime, issued)
        .unwrap()
        .cert_pem
}

#[test]
fn certificates_fail_when_expired_and_warn_when_close() {
    let warn = 30 * DAY;
    let check = |pem: &str| certificates("issuer", Some(pem), now(), warn);
    let valid = check(&anchor(now(), 365 * DAY));
    assert_eq!(valid[0].outcome, Outcome::Pass, "{valid:?}");
    assert!(valid[0].message.contains("365 more days"), "{valid:?}");
    let soon = check(&anchor(now() - 350 * DAY, 365 * DAY));
    assert_eq!(soon[0].outcome, Outcome::Warn, "{soon:?}");
    let expired = check(&anchor(now() - 400 * DAY, 365 * DAY));
    assert_eq!(expired[0].outcome, Outcome::Fail, "{expired:?}");
    assert!(
        expired[0]
            .message
            .starts_with("issuer (CN=root.linkerd.cluster.local) expired 35 days ago"),
        "{expired:?}"
    );
    let future = check(&anchor(now() + 10 * DAY, 365 * DAY));
    assert_eq!(future[0].outcome, Outcome::Fail, "{future:?}");

    // A bundle during an anchor rotation: each certificate is judged.
    let bundle = format!(
        "{}{}",
        anchor(now() - 400 * DAY, 365 * DAY),
        anchor(now(), 365 * DAY)
    );
    let both: Vec<Outcome> = check(&bundle).iter().map(|f| f.outcome).collect();
    assert_eq!(both, [Outcome::Fail, Outcome::Pass]);

    assert_eq!(
        certificates("issuer", None, now(), warn)[0].message,
        "issuer is missing"
    );
    assert_eq!(check("not a certificate")[0].outcome, Outcome::Fail);
}

#[test]
fn proxies_behind_the_control_plane_are_counted_per_version() {
    let v = |s: &str| Some(s.to_owned());
    let same = version_skew(Some("edge-25.4.4"), &[v("edge-25.4.4"), v("edge-25.4.4")]);
    assert_eq!(same.outcome, Outcome::Pass);
    assert!(same.message.contains("all 2 meshed pods"));
    let skewed = version_skew(
        Some("edge-25.10.7"),
        &[v("edge-25.4.4"), v("edge-25.4.4"), v("edge-25.10.7"), None],
    );
    assert_eq!(skewed.outcome, Outcome::Warn);
    assert!(
        skewed.message.contains("2 at edge-25.4.4, 1 at unknown"),
        "{}",
        skewed.message
    );
    assert_eq!(version_skew(Some("x"), &[]).outcome, Outcome::Pass);
    assert_eq!(version_skew(None, &[v("x")]).outcome, Outcome::Warn);
}

#[test]
fn a_report_fails_on_any_failure_and_renders_a_checklist() {
    let mut report = Report::default();
    report.section(
        "ControlPlane mesh",
        vec![
            Finding::new(Outcome::Pass, "ready"),
            Finding::new(Outcome::Warn, "expires soon"),
        ],
    );
    assert!(!report.failed());
    report.section("Webhooks", vec![Finding::new(Outcome::Fail, "unreachable")]);
    assert!(report.failed());
    assert_eq!(report.messages(Outcome::Fail), ["unreachable"]);
    let text = report.render();
    assert!(text.contains("√ ready\n‼ expires soon\n"), "{text}");
    assert!(text.contains("× unreachable"), "{text}");
    assert!(
        text.ends_with("Status check results are ×: 1 failed, 1 warnings\n"),
        "{text}"
    );
}

#[test]
fn a_leader_must_hold_a_current_lease() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    let at = |t: SystemTime| {
        let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        MicroTime(k8s_openapi::jiff::Timestamp::from_second(secs.try_into().unwrap()).unwrap())
    };
    let lease = |holder: Option<&str>, renewed: SystemTime| LeaseSpec {
        holder_identity: holder.map(str::to_owned),
        lease_duration_seconds: Some(15),
        renew_time: Some(at(renewed)),
        ..LeaseSpec::default()
    };
    let current = leader(
        "keelson/keelson",
        Some(&lease(Some("keelson-0"), now() - Duration::from_secs(3))),
        now(),
    );
    assert_eq!(current.outcome, Outcome::Pass);
    assert!(
        current
            .message
            .contains("keelson-0 leads (renewed the Lease keelson/keelson 3s ago)"),
        "{}",
        current.message
    );
    let expired = leader(
        "keelson/keelson",
        Some(&lease(Some("keelson-0"), now() - Duration::from_secs(60))),
        now(),
    );
    assert_eq!(expired.outcome, Outcome::Fail);
    assert!(
        expired.message.contains("60s ago and has expired"),
        "{}",
        expired.message
    );
    for released in [Some(lease(None, now())), Some(lease(Some(""), now())), None] {
        let finding = leader("keelson/keelson", released.as_ref(), now());
        assert_eq!(finding.outcome, Outcome::Fail);
        assert!(
            finding.message.starts_with("no Keelson replica holds"),
            "{}",
            finding.message
        );
    }
}

#[test]
fn the_cni_plugin_must_run_on_every_node_at_the_release() {
    let release = crate::catalog::find("edge-26.6.3").unwrap();
    let ds = |image: &str, desired: i32, available: i32, updated: i32| {
        serde_json::from_value::<k8s_openapi::api::apps::v1::DaemonSet>(json!({
            "metadata": {"name": "linkerd-cni", "namespace": "linkerd-cni"},
            "spec": {"selector": {}, "template": {"spec": {"containers": [
                {"name": "install-cni", "image": image}]}}},
            "status": {"desiredNumberScheduled": desired, "numberAvailable": available,
                "updatedNumberScheduled": updated, "currentNumberScheduled": desired,
                "numberMisscheduled": 0, "numberReady": available},
        }))
        .unwrap()
    };
    let at = |d: Option<&k8s_openapi::api::apps::v1::DaemonSet>| {
        let f = cni_daemon_set("linkerd-cni", d, Some(release));
        (f.outcome, f.message)
    };
    let good = ds("cr.l5d.io/linkerd/cni-plugin:v1.6.8", 3, 3, 3);
    assert_eq!(at(Some(&good)).0, Outcome::Pass);
    let (outcome, message) = at(Some(&ds("cr.l5d.io/linkerd/cni-plugin:v1.6.8", 3, 2, 3)));
    assert_eq!(outcome, Outcome::Fail);
    assert!(message.contains("2 of 3 nodes"), "{message}");
    let (outcome, message) = at(Some(&ds("cr.l5d.io/linkerd/cni-plugin:v1.6.4", 3, 3, 3)));
    assert_eq!(outcome, Outcome::Fail);
    assert!(
        message.contains("not cr.l5d.io/linkerd/cni-plugin:v1.6.8"),
        "{message}"
    );
    assert_eq!(at(None).0, Outcome::Fail);
    assert_eq!(at(Some(&ds("x", 0, 0, 0))).0, Outcome::Fail);
}
