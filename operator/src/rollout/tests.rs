use super::*;
use k8s_openapi::jiff::Timestamp;

fn t(secs: i64) -> Time {
    Time(Timestamp::from_second(1_700_000_000 + secs).unwrap())
}

fn target() -> Target {
    Target {
        proxy_version: "edge-25.10.7".into(),
        trust_root_sha256: "new-sha".into(),
        cni_redirect_sha256: None,
    }
}

fn proxy(version: &str, sha: &str) -> PodProxy {
    PodProxy {
        version: Some(version.into()),
        trust_root_sha256: Some(sha.into()),
        cni_redirect_sha256: None,
    }
}

/// A settled Deployment whose pods run the old proxy.
fn lagging(name: &str, replicas: i32) -> Workload {
    Workload {
        kind: Kind::Deployment,
        name: name.into(),
        replicas,
        current: replicas,
        updated: replicas,
        available: replicas,
        generation: 1,
        observed_generation: 1,
        strategy: Strategy::Rolling {
            max_unavailable: IntOrString::String("25%".into()),
            round_up: false,
        },
        stalled: None,
        crashing: None,
        restarted_at: None,
        pods: vec![proxy("edge-25.4.4", "new-sha"); replicas as usize],
        disruption_budget: None,
    }
}

/// `w` after its template got `token`, with its rollout under way.
fn restarting(mut w: Workload, token: &str) -> Workload {
    w.restarted_at = Some(token.into());
    w.generation += 1;
    w.updated = 0;
    w
}

/// `w` with its restart rolled out: every pod new and available.
fn done(mut w: Workload) -> Workload {
    w.observed_generation = w.generation;
    w.updated = w.replicas;
    w.available = w.replicas;
    w.pods = vec![proxy("edge-25.10.7", "new-sha"); w.replicas as usize];
    w
}

fn spec(batch_size: i32, max_unavailable: &str) -> RolloutSpec {
    RolloutSpec {
        batch_size,
        max_unavailable: IntOrString::String(max_unavailable.into()),
        interval: Duration::from_secs(30).into(),
        ..RolloutSpec::default()
    }
}

struct Case<'a> {
    rollout: &'a RolloutSpec,
    workloads: &'a [Workload],
    previous: &'a DataPlaneStatus,
    generation: i64,
    desired: Desired,
}

impl<'a> Case<'a> {
    fn new(
        rollout: &'a RolloutSpec,
        workloads: &'a [Workload],
        previous: &'a DataPlaneStatus,
    ) -> Self {
        Self {
            rollout,
            workloads,
            previous,
            generation: 1,
            desired: Desired::Target(target()),
        }
    }

    fn at(&self, now: i64) -> Plan {
        plan(&Input {
            generation: self.generation,
            desired: self.desired.clone(),
            rollout: self.rollout,
            workloads: self.workloads,
            previous: self.previous,
            now: &t(now),
        })
    }
}

fn names(restarts: &[Restart]) -> Vec<&str> {
    restarts.iter().map(|r| r.name.as_str()).collect()
}

fn condition<'a>(s: &'a DataPlaneStatus, type_: &str) -> (&'a str, &'a str) {
    let c = s.conditions.iter().find(|c| c.type_ == type_).unwrap();
    (c.status.as_str(), c.reason.as_str())
}

fn reason_of<'a>(s: &'a DataPlaneStatus, name: &str) -> Option<&'a str> {
    s.lagging
        .iter()
        .find(|l| l.name == name)
        .map(|l| l.reason.as_str())
}

#[test]
fn a_batch_takes_at_most_batch_size_workloads_in_name_order() {
    let workloads: Vec<_> = ["e", "b", "d", "a", "c"]
        .iter()
        .map(|n| lagging(n, 1))
        .collect();
    let rollout = spec(3, "100%");
    let previous = DataPlaneStatus::default();
    let p = Case::new(&rollout, &workloads, &previous).at(0);
    assert_eq!(names(&p.restarts), ["a", "b", "c"]);
    assert!(p.new_batch);
    let token = &p.restarts[0].token;
    assert_eq!(token, "w1-2023-11-14T22:13:20Z");
    assert!(p.restarts.iter().all(|r| &r.token == token));
    let s = &p.status;
    assert_eq!(
        (s.workloads, s.up_to_date, s.restarting, s.pending, s.failed),
        (5, 0, 3, 2, 0)
    );
    let wave = s.wave.as_ref().unwrap();
    assert_eq!((wave.number, wave.generation), (1, 1));
    assert_eq!(wave.batch_started_at, Some(t(0)));
    assert_eq!(reason_of(s, "a"), Some("Restarting"));
    assert_eq!(reason_of(s, "e"), Some("ProxyVersion"));
    assert_eq!(condition(s, PROGRESSING), ("True", "Restarting"));
    assert_eq!(condition(s, READY), ("False", "Lagging"));
    assert_eq!(s.target_proxy_version.as_deref(), Some("edge-25.10.7"));
    assert_eq!(p.requeue, Duration::from_secs(5));
}

#[test]
fn a_batch_fits_in_max_unavailable_after_pods_already_down() {
    // Ten pods; 30% allows three. Workload "a" already has one pod down.
    let mut a = lagging("a", 2);
    a.available = 1;
    let mut b = lagging("b", 3);
    b.strategy = Strategy::Recreate;
    let workloads = vec![a, b, lagging("c", 1), lagging("d", 2), lagging("e", 2)];
    let rollout = spec(5, "30%");
    let previous = DataPlaneStatus::default();
    let p = Case::new(&rollout, &workloads, &previous).at(0);
    // "a" waits for its own pod; "b" (Recreate, cost 3) does not fit in the
    // two left; c and d cost one each (their 25% of 1-2 pods rounds down to
    // none, but a restart may always take one down).
    assert_eq!(names(&p.restarts), ["c", "d"]);
    assert_eq!(reason_of(&p.status, "a"), Some("Progressing"));
    assert_eq!(reason_of(&p.status, "b"), Some("ProxyVersion"));

    // A workload that alone may take down more than the whole budget says so.
    let rollout = spec(5, "20%");
    let p = Case::new(&rollout, &workloads, &previous).at(0);
    assert_eq!(reason_of(&p.status, "b"), Some("MaxUnavailable"));

    // With nothing to spare, nothing starts and status says why.
    let mut down = lagging("x", 10);
    down.available = 8;
    let workloads = vec![down, lagging("y", 1)];
    let p = Case::new(&rollout, &workloads, &previous).at(0);
    assert!(p.restarts.is_empty());
    assert_eq!(condition(&p.status, PROGRESSING), ("True", "Waiting"));
}

#[test]
fn the_budget_rounds_down_but_allows_one_pod() {
    assert_eq!(scaled(&IntOrString::String("10%".into()), 15, false), Ok(1));
    assert_eq!(scaled(&IntOrString::String("10%".into()), 15, true), Ok(2));
    assert_eq!(scaled(&IntOrString::Int(4), 15, false), Ok(4));
    assert!(scaled(&IntOrString::String("ten".into()), 15, false).is_err());
    let workloads: Vec<_> = (0..4).map(|i| lagging(&format!("w{i}"), 1)).collect();
    let rollout = spec(5, "10%");
    let previous = DataPlaneStatus::default();
    let p = Case::new(&rollout, &workloads, &previous).at(0);
    assert_eq!(names(&p.restarts), ["w0"]);
}

#[test]
fn a_pod_disruption_budget_holds_a_workload_back() {
    let mut held = lagging("a", 2);
    held.disruption_budget = Some(("a-pdb".into(), 0));
    let mut fine = lagging("b", 2);
    fine.disruption_budget = Some(("b-pdb".into(), 1));
    let workloads = vec![held, fine];
    let rollout = spec(5, "100%");
    let previous = DataPlaneStatus::default();
    let p = Case::new(&rollout, &workloads, &previous).at(0);
    assert_eq!(names(&p.restarts), ["b"]);
    let a = p.status.lagging.iter().find(|l| l.name == "a").unwrap();
    assert_eq!(a.reason, "PodDisruptionBudget");
    assert!(a.message.as_deref().unwrap().contains("a-pdb"), "{a:?}");
}

#[test]
fn a_failed_restart_stops_the_wave_and_is_not_retried() {
    let workloads: Vec<_> = ["a", "b", "c"].iter().map(|n| lagging(n, 1)).collect();
    let rollout = spec(2, "100%");
    let first = Case::new(&rollout, &workloads, &DataPlaneStatus::default()).at(0);
    let token = first.restarts[0].token.clone();

    // "a" crash-loops, "b" is still rolling out.
    let mut a = restarting(workloads[0].clone(), &token);
    a.crashing = Some("pod a-1: container app is in CrashLoopBackOff".into());
    let b = restarting(workloads[1].clone(), &token);
    let now = vec![a.clone(), b.clone(), workloads[2].clone()];
    let second = Case::new(&rollout, &now, &first.status).at(10);
    assert!(second.restarts.is_empty());
    assert_eq!(second.failed.len(), 1);
    assert_eq!(second.failed[0].name, "a");
    let s = &second.status;
    assert_eq!((s.restarting, s.failed, s.pending), (1, 1, 1));
    assert_eq!(reason_of(s, "a"), Some("Failed"));
    assert_eq!(condition(s, DEGRADED), ("True", "RestartFailed"));
    assert!(
        s.conditions
            .iter()
            .any(|c| c.type_ == DEGRADED && c.message.contains("CrashLoopBackOff")),
        "{:?}",
        s.conditions
    );

    // "b" finishes; the batch closes but no new batch starts, ever.
    let now = vec![a.clone(), done(b), workloads[2].clone()];
    let third = Case::new(&rollout, &now, &second.status).at(20);
    assert!(third.restarts.is_empty() && third.failed.is_empty());
    let later = Case::new(&rollout, &now, &third.status).at(3_600);
    assert!(later.restarts.is_empty());
    assert_eq!(reason_of(&later.status, "c"), Some("ProxyVersion"));
    assert_eq!(
        condition(&later.status, PROGRESSING),
        ("False", "WaveFailed")
    );
    assert_eq!(later.status, third.status, "nothing changes while it waits");

    // Editing the DataPlane starts a new wave: the failure no longer holds
    // the others back, and "a", stuck in the rollout its restart began,
    // waits for that rollout rather than getting another one.
    let mut edited = Case::new(&rollout, &now, &later.status);
    edited.generation = 2;
    let retry = edited.at(3_700);
    assert_eq!(names(&retry.restarts), ["c"]);
    assert_eq!(retry.status.wave.as_ref().unwrap().number, 2);
    assert_eq!(reason_of(&retry.status, "a"), Some("Progressing"));
    assert_eq!(condition(&retry.status, DEGRADED), ("False", "AsExpected"));
    // Settled again (its owner rolled it back), it is restarted anew.
    let mut back = workloads[0].clone();
    back.generation = 3;
    back.observed_generation = 3;
    back.restarted_at = Some(token.clone());
    let now = vec![back, now[1].clone(), workloads[2].clone()];
    let mut edited = Case::new(&rollout, &now, &later.status);
    edited.generation = 2;
    assert_eq!(names(&edited.at(3_700).restarts), ["a", "c"]);
}

#[test]
fn a_failed_workload_fixed_by_someone_lets_the_wave_go_on() {
    let workloads = vec![lagging("a", 1), lagging("b", 1)];
    let rollout = spec(1, "100%");
    let first = Case::new(&rollout, &workloads, &DataPlaneStatus::default()).at(0);
    let token = first.restarts[0].token.clone();
    let mut a = restarting(workloads[0].clone(), &token);
    a.stalled = Some("ReplicaSet a-2 has timed out progressing.".into());
    a.observed_generation = a.generation;
    let now = vec![a.clone(), workloads[1].clone()];
    let failed = Case::new(&rollout, &now, &first.status).at(700);
    assert_eq!(failed.status.failed, 1);
    assert!(failed.failed[0].message.contains("stalled"));
    // Its owner fixed it; its new pods are up and up to date.
    let now = vec![done(a), workloads[1].clone()];
    let fixed = Case::new(&rollout, &now, &failed.status).at(800);
    assert_eq!(names(&fixed.restarts), ["b"]);
}

#[test]
fn a_restarted_operator_resumes_the_stored_batch() {
    let workloads: Vec<_> = ["a", "b", "c"].iter().map(|n| lagging(n, 1)).collect();
    let rollout = spec(2, "100%");
    let first = Case::new(&rollout, &workloads, &DataPlaneStatus::default()).at(0);
    let token = first.restarts[0].token.clone();

    // The operator stopped after writing status and patching only "a": the
    // next one re-issues "b" with the same token and starts nothing new.
    let now = vec![
        restarting(workloads[0].clone(), &token),
        workloads[1].clone(),
        workloads[2].clone(),
    ];
    let resumed = Case::new(&rollout, &now, &first.status).at(3);
    assert_eq!(
        resumed.restarts,
        [Restart {
            kind: Kind::Deployment,
            name: "b".into(),
            token: token.clone()
        }]
    );
    assert!(!resumed.new_batch);
    assert_eq!(resumed.status.wave, first.status.wave);

    // Both done: the batch closes, and the next waits for the interval.
    let now = vec![
        done(restarting(workloads[0].clone(), &token)),
        done(restarting(workloads[1].clone(), &token)),
        workloads[2].clone(),
    ];
    let closed = Case::new(&rollout, &now, &resumed.status).at(10);
    let wave = closed.status.wave.as_ref().unwrap();
    assert!(wave.restarting.is_empty() && wave.batch_started_at.is_none());
    assert_eq!(wave.last_batch_finished_at, Some(t(10)));
    assert!(closed.restarts.is_empty());
    assert_eq!(closed.requeue, Duration::from_secs(30));
    assert_eq!(condition(&closed.status, PROGRESSING), ("True", "Waiting"));
    assert_eq!(closed.status.up_to_date, 2);

    let early = Case::new(&rollout, &now, &closed.status).at(25);
    assert!(early.restarts.is_empty());
    assert_eq!(early.requeue, Duration::from_secs(15));
    let next = Case::new(&rollout, &now, &closed.status).at(40);
    assert_eq!(names(&next.restarts), ["c"]);

    // The last batch done: everything up to date.
    let now = vec![
        now[0].clone(),
        now[1].clone(),
        done(restarting(workloads[2].clone(), &next.restarts[0].token)),
    ];
    let finished = Case::new(&rollout, &now, &next.status).at(50);
    let s = &finished.status;
    assert_eq!((s.up_to_date, s.pending, s.restarting), (3, 0, 0));
    assert!(s.lagging.is_empty());
    assert_eq!(condition(s, READY), ("True", "UpToDate"));
    assert_eq!(condition(s, PROGRESSING), ("False", "Converged"));
    assert_eq!(finished.requeue, Duration::from_secs(300));
    // Converged: the same inputs give the same status (nothing to write).
    let again = Case::new(&rollout, &now, s).at(400);
    assert_eq!(&again.status, s);
}

#[test]
fn paused_starts_no_batch_but_lets_the_current_one_finish() {
    let workloads = vec![lagging("a", 1), lagging("b", 1)];
    let mut rollout = spec(1, "100%");
    let first = Case::new(&rollout, &workloads, &DataPlaneStatus::default()).at(0);
    rollout.paused = true;
    let token = first.restarts[0].token.clone();
    let now = vec![
        done(restarting(workloads[0].clone(), &token)),
        workloads[1].clone(),
    ];
    let p = Case::new(&rollout, &now, &first.status).at(100);
    assert!(p.restarts.is_empty());
    assert_eq!(p.status.up_to_date, 1);
    assert_eq!(condition(&p.status, PROGRESSING), ("False", "Paused"));
}

#[test]
fn a_new_target_starts_a_new_wave_and_a_held_one_starts_nothing() {
    let workloads = vec![lagging("a", 1)];
    let rollout = spec(1, "100%");
    let nothing = DataPlaneStatus::default();
    let held = Case {
        desired: Desired::Held {
            reason: "ControlPlaneNotReady",
            message: "waiting for ControlPlane mesh".into(),
        },
        ..Case::new(&rollout, &workloads, &nothing)
    };
    let p = held.at(0);
    assert!(p.restarts.is_empty() && p.status.wave.is_none());
    assert_eq!(
        condition(&p.status, READY),
        ("False", "ControlPlaneNotReady")
    );

    let first = Case::new(&rollout, &workloads, &nothing).at(0);
    assert_eq!(first.status.wave.as_ref().unwrap().number, 1);
    // Mid-wave the control plane starts another upgrade: the batch under way
    // finishes, nothing new starts, counts keep the last known target.
    let held = Case {
        desired: Desired::Held {
            reason: "ControlPlaneNotReady",
            message: "upgrading".into(),
        },
        ..Case::new(&rollout, &workloads, &first.status)
    };
    let p = held.at(5);
    assert!(p.restarts.len() == 1 && !p.new_batch, "re-issue only");
    assert_eq!(
        p.status.target_proxy_version.as_deref(),
        Some("edge-25.10.7")
    );

    // A new trust bundle: wave 2, and the batch under way carries over.
    let mut rotated = Case::new(&rollout, &workloads, &first.status);
    rotated.desired = Desired::Target(Target {
        trust_root_sha256: "rotated".into(),
        ..target()
    });
    let p = rotated.at(5);
    let wave = p.status.wave.as_ref().unwrap();
    assert_eq!(wave.number, 2);
    assert_eq!(wave.restarting.len(), 1);
    assert_eq!(
        p.status.target_trust_root_sha256.as_deref(),
        Some("rotated")
    );
}

#[test]
fn a_restart_that_did_not_bring_the_target_is_repeated_once_then_held() {
    let workloads = vec![lagging("a", 1)];
    let rollout = spec(1, "100%");
    // Rolled out and available, but the injector gave the old proxy.
    let unchanged = |token: &str| {
        let mut a = restarting(workloads[0].clone(), token);
        a.observed_generation = a.generation;
        a.updated = 1;
        vec![a]
    };
    let first = Case::new(&rollout, &workloads, &DataPlaneStatus::default()).at(0);
    let token = first.restarts[0].token.clone();
    // The batch closes; after the interval, once more: the injector may
    // have been out of reach for a moment.
    let now = unchanged(&token);
    let closed = Case::new(&rollout, &now, &first.status).at(60);
    assert!(closed.restarts.is_empty());
    let second = Case::new(&rollout, &now, &closed.status).at(100);
    assert_eq!(second.restarts.len(), 1);
    let retry = second.restarts[0].token.clone();
    assert_ne!(retry, token);
    assert_eq!(reason_of(&second.status, "a"), Some("Restarting"));
    // Unchanged again: held, and never restarted again in this wave.
    let now = unchanged(&retry);
    let p = Case::new(&rollout, &now, &second.status).at(160);
    assert!(p.restarts.is_empty());
    assert_eq!(reason_of(&p.status, "a"), Some("Unchanged"));
    let again = Case::new(&rollout, &now, &p.status).at(600);
    assert!(again.restarts.is_empty());
    assert_eq!(reason_of(&again.status, "a"), Some("Unchanged"));
}

#[test]
fn restart_tokens_count_the_restarts_of_a_wave() {
    let at = Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap());
    let first = token(3, 1, &at);
    assert_eq!(first, "w3-2023-11-14T22:13:20Z");
    let parsed = parse_token(&first).unwrap();
    assert_eq!((parsed.wave, parsed.restart), (3, 1));
    let second = parse_token(&token(3, 2, &at)).unwrap();
    assert_eq!((second.wave, second.restart, second.at), (3, 2, at.0));
    assert!(parse_token("w3.x-2023-11-14T22:13:20Z").is_none());
}

#[test]
fn own_rollouts_and_on_delete_workloads_are_left_alone() {
    let mut busy = lagging("a", 2);
    busy.generation = 3;
    let mut manual = lagging("b", 1);
    manual.kind = Kind::StatefulSet;
    manual.strategy = Strategy::OnDelete;
    let workloads = vec![busy, manual];
    let rollout = spec(5, "100%");
    let p = Case::new(&rollout, &workloads, &DataPlaneStatus::default()).at(0);
    assert!(p.restarts.is_empty());
    assert_eq!(reason_of(&p.status, "a"), Some("Progressing"));
    assert_eq!(reason_of(&p.status, "b"), Some("OnDelete"));
    assert_eq!(condition(&p.status, PROGRESSING), ("False", "Held"));
}

#[test]
fn a_stateful_set_not_available_by_the_deadline_fails() {
    let mut db = lagging("db", 1);
    db.kind = Kind::StatefulSet;
    let workloads = vec![db];
    let rollout = RolloutSpec {
        progress_deadline: Duration::from_secs(120).into(),
        ..spec(1, "100%")
    };
    let first = Case::new(&rollout, &workloads, &DataPlaneStatus::default()).at(0);
    let now = vec![restarting(workloads[0].clone(), &first.restarts[0].token)];
    let within = Case::new(&rollout, &now, &first.status).at(100);
    assert!(within.failed.is_empty());
    let past = Case::new(&rollout, &now, &within.status).at(130);
    assert_eq!(past.failed.len(), 1);
    assert!(past.failed[0].message.contains("progressDeadline"));
}

#[test]
fn the_trust_bundle_is_a_reason_of_its_own() {
    let mut w = lagging("a", 1);
    w.pods = vec![proxy("edge-25.10.7", "old-sha")];
    let workloads = vec![w];
    let rollout = spec(1, "100%");
    let p = Case::new(&rollout, &workloads, &DataPlaneStatus::default()).at(0);
    // Restarting at once; before that it lagged on its trust bundle.
    assert_eq!(names(&p.restarts), ["a"]);
    let paused = RolloutSpec {
        paused: true,
        ..rollout
    };
    let p = Case::new(&paused, &workloads, &DataPlaneStatus::default()).at(0);
    assert_eq!(reason_of(&p.status, "a"), Some("TrustBundle"));
}

#[test]
fn in_cni_mode_pods_set_up_by_other_redirect_settings_lag() {
    let up_to_date = proxy("edge-25.10.7", "new-sha");
    let marked = |digest: &str| PodProxy {
        cni_redirect_sha256: Some(digest.into()),
        ..up_to_date.clone()
    };
    let workload = |name: &str, pods: Vec<PodProxy>| Workload {
        pods,
        ..lagging(name, 2)
    };
    let workloads = vec![
        workload("current", vec![marked("cni-new"), marked("cni-new")]),
        workload("older", vec![marked("cni-new"), marked("cni-old")]),
        // Meshed before Keelson ran the plugin: not judged on it.
        workload("unmarked", vec![up_to_date.clone(), up_to_date.clone()]),
    ];
    let rollout = RolloutSpec {
        paused: true,
        ..spec(10, "100%")
    };
    let nothing = DataPlaneStatus::default();
    let mut case = Case::new(&rollout, &workloads, &nothing);
    case.desired = Desired::Target(Target {
        cni_redirect_sha256: Some("cni-new".into()),
        ..target()
    });
    let p = case.at(0);
    assert_eq!(p.status.up_to_date, 2);
    assert_eq!(reason_of(&p.status, "older"), Some("CniRedirect"));
    assert_eq!(
        p.status.target_cni_redirect_sha256.as_deref(),
        Some("cni-new")
    );

    // Unpaused, the lagging one restarts; a change of the settings alone is
    // a new target, so a new wave.
    let rollout = spec(10, "100%");
    let mut case = Case::new(&rollout, &workloads, &p.status);
    case.desired = Desired::Target(Target {
        cni_redirect_sha256: Some("cni-new".into()),
        ..target()
    });
    let p = case.at(1);
    assert_eq!(names(&p.restarts), ["older"]);
    let mut changed = Case::new(&rollout, &workloads, &p.status);
    changed.desired = Desired::Target(Target {
        cni_redirect_sha256: Some("cni-newer".into()),
        ..target()
    });
    let next = changed.at(2);
    assert_eq!(
        next.status.wave.as_ref().unwrap().number,
        p.status.wave.as_ref().unwrap().number + 1
    );
}
