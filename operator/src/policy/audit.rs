//! Audit-first rollout of a Server's access policy: the state machine.
//! Pure: the controller reads the Server and the proxies' counters, calls
//! [`step`], and writes what it decides.
//!
//! A Server opts in with `keelson.dev/policy-rollout: audit-first`. Keelson
//! sets `spec.accessPolicy: audit`, under which Linkerd's proxies let every
//! request through and count the ones the Server's authorizations would
//! have denied (`inbound_{http,tcp}_authz_allow_total` with
//! `authz_name="audit"`). Once no such request was counted for a whole soak
//! (`keelson.dev/policy-soak`, default 24h, so daily jobs are seen) on every
//! selected pod, Keelson promotes the Server to `keelson.dev/policy-enforce`
//! (default `deny`). Each would-be denial restarts the soak and is listed
//! with its client. `keelson.dev/policy-rollout: audit` rolls back (or
//! holds) in audit; setting `audit-first` again starts a new soak.
//!
//! The state lives in the Server's annotation `keelson.dev/policy-audit`,
//! so a restarted operator resumes where the last one was.

use super::prom::Sample;
use crate::admission::validate::Invalid;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Opts a Server in: `audit-first` or `audit`.
pub const ROLLOUT: &str = "keelson.dev/policy-rollout";
/// How long audit must stay clean before enforcement (a Go duration).
pub const SOAK: &str = "keelson.dev/policy-soak";
/// The access policy to enforce after the soak.
pub const ENFORCE: &str = "keelson.dev/policy-enforce";
/// Keelson's state of the rollout (JSON); not for users to edit.
pub const STATE: &str = "keelson.dev/policy-audit";

/// Linkerd's default policies, the values of `spec.accessPolicy`.
pub const ACCESS_POLICIES: [&str; 6] = [
    "all-unauthenticated",
    "all-authenticated",
    "cluster-unauthenticated",
    "cluster-authenticated",
    "deny",
    "audit",
];
const AUDIT: &str = "audit";
const DEFAULT_SOAK: Duration = Duration::from_secs(24 * 3600);
/// Clients listed per Server; the oldest are dropped beyond this.
const MAX_DENIALS: usize = 20;
/// The proxy's counters of requests and connections it let through.
const COUNTERS: [&str; 2] = [
    "inbound_http_authz_allow_total",
    "inbound_tcp_authz_allow_total",
];

/// What the user asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Audit, then enforce after a clean soak.
    AuditFirst,
    /// Stay in audit (also the one-field rollback).
    Audit,
}

/// A Server's rollout settings, from its annotations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub mode: Mode,
    pub soak: Duration,
    pub enforce: String,
}

/// The rollout settings of a Server's annotations: `Ok(None)` when it has
/// not opted in. The webhook refuses what this refuses.
pub fn settings(annotations: &BTreeMap<String, String>) -> Result<Option<Settings>, Vec<Invalid>> {
    let field = |key: &str| format!("metadata.annotations[{key}]");
    let mut problems = Vec::new();
    let mode = match annotations.get(ROLLOUT).map(String::as_str) {
        None => None,
        Some("audit-first") => Some(Mode::AuditFirst),
        Some("audit") => Some(Mode::Audit),
        Some(other) => {
            problems.push(Invalid {
                field: field(ROLLOUT),
                message: format!("{other:?} is neither audit-first nor audit"),
            });
            None
        }
    };
    let soak = match annotations.get(SOAK) {
        None => DEFAULT_SOAK,
        Some(s) => match crate::inject::goparse::parse_duration(s) {
            Some(ns) if ns > 0 => Duration::from_nanos(ns.unsigned_abs()),
            _ => {
                problems.push(Invalid {
                    field: field(SOAK),
                    message: format!("{s:?} is not a positive duration such as 30m or 24h"),
                });
                DEFAULT_SOAK
            }
        },
    };
    let enforce = annotations
        .get(ENFORCE)
        .cloned()
        .unwrap_or_else(|| "deny".into());
    if enforce == AUDIT || !ACCESS_POLICIES.contains(&enforce.as_str()) {
        problems.push(Invalid {
            field: field(ENFORCE),
            message: format!(
                "{enforce:?} is not a policy to enforce: use one of {}",
                ACCESS_POLICIES[..5].join(", ")
            ),
        });
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(mode.map(|mode| Settings {
        mode,
        soak,
        enforce,
    }))
}

/// Where a rollout is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// In audit, soaking towards enforcement.
    Auditing,
    /// In audit until the user asks for `audit-first` again.
    Holding,
    /// Promoted; Keelson no longer touches the access policy.
    Enforced,
}

/// A client whose requests the Server's authorizations would have denied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Denial {
    /// Mesh identity, or how an unidentified client connected.
    pub client: String,
    /// The route (`kind/name`, HTTP only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    pub count: u64,
    pub last_seen: Time,
}

/// The rollout state kept on the Server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    pub phase: Phase,
    /// When this audit began.
    pub since: Time,
    /// Start of the current clean window: the audit's start or the last
    /// would-be denial.
    pub clean_since: Time,
    /// Last seen totals of the audit counters, per pod and series.
    #[serde(default)]
    pub counters: BTreeMap<String, u64>,
    #[serde(default)]
    pub denials: Vec<Denial>,
}

/// One audit counter of one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Count {
    pub value: u64,
    pub client: String,
    pub route: Option<String>,
}

/// What the proxies of the Server's pods said in one round of scrapes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observation {
    /// Audit counters by `<pod>/<series>`.
    pub counts: BTreeMap<String, Count>,
    /// Pods scraped.
    pub scraped: BTreeSet<String>,
    /// Pods that could not be scraped, with why.
    pub unreachable: BTreeMap<String, String>,
}

impl Observation {
    /// Adds the audit counters of `server` that `pod`'s proxy reported.
    pub fn add(&mut self, pod: &str, server: &str, samples: &[Sample]) {
        self.scraped.insert(pod.to_owned());
        for s in samples {
            let label = |k: &str| s.labels.get(k).map(String::as_str).unwrap_or_default();
            if !COUNTERS.contains(&s.name.as_str())
                || label("authz_name") != AUDIT
                || label("srv_name") != server
                || !label("srv_kind").eq_ignore_ascii_case("server")
            {
                continue;
            }
            // Linkerd's proxy labels the client by TLS state and identity
            // only; no client address is exported.
            let client = match (label("tls"), label("client_id")) {
                ("true", "") => "TLS client without identity".to_owned(),
                ("true", id) => id.to_owned(),
                (tls, _) => match label("no_tls_reason") {
                    "" => format!("no identity (tls={tls})"),
                    reason => format!("no identity ({reason})"),
                },
            };
            let route = s
                .labels
                .get("route_kind")
                .map(|kind| format!("{kind}/{}", label("route_name")));
            let key = format!(
                "{pod}/{}|{client}|{}|{}",
                s.name,
                route.as_deref().unwrap_or_default(),
                label("target_port")
            );
            // Counters are integers; a NaN or negative would be a broken proxy.
            let value = if s.value.is_finite() && s.value > 0.0 {
                s.value as u64
            } else {
                0
            };
            self.counts.insert(
                key,
                Count {
                    value,
                    client,
                    route,
                },
            );
        }
    }

    pub fn unreachable(&mut self, pod: &str, why: String) {
        self.unreachable.insert(pod.to_owned(), why);
    }
}

/// What to write.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The new state (`None`: remove it).
    pub state: Option<State>,
    /// The access policy to set, if it must change.
    pub access_policy: Option<String>,
    /// Events to record: (warning, reason, message).
    pub notes: Vec<(bool, &'static str, String)>,
}

/// Whether [`step`] needs the proxies' counters this round.
pub fn needs_observation(settings: Option<&Settings>, state: Option<&State>) -> bool {
    match (settings, state) {
        (None, _) => false,
        (Some(s), Some(st)) => !(st.phase == Phase::Enforced && s.mode == Mode::AuditFirst),
        (Some(_), None) => true,
    }
}

/// One step of the rollout. `observation` is `None` when the counters
/// could not be read this round.
pub fn step(
    settings: Option<&Settings>,
    access_policy: Option<&str>,
    state: Option<&State>,
    observation: Option<&Observation>,
    now: &Time,
) -> Decision {
    let mut notes = Vec::new();
    let Some(settings) = settings else {
        // Opted out: Keelson forgets the rollout and leaves the policy be.
        return Decision {
            state: None,
            access_policy: None,
            notes,
        };
    };
    let start = |phase: Phase, notes: &mut Vec<_>| {
        notes.push((
            false,
            "PolicyAuditing",
            match phase {
                Phase::Auditing => format!(
                    "accessPolicy set to audit; enforcing {} after {} without would-be denials",
                    settings.enforce,
                    humanize(settings.soak)
                ),
                _ => "accessPolicy held in audit (keelson.dev/policy-rollout: audit)".to_owned(),
            },
        ));
        // The counters before audit are the baseline: only increases count.
        State {
            phase,
            since: now.clone(),
            clean_since: now.clone(),
            counters: observation
                .map(|o| o.counts.iter().map(|(k, c)| (k.clone(), c.value)).collect())
                .unwrap_or_default(),
            denials: Vec::new(),
        }
    };
    let wanted = match settings.mode {
        Mode::AuditFirst => Phase::Auditing,
        Mode::Audit => Phase::Holding,
    };
    let mut next = match state {
        None => start(wanted, &mut notes),
        Some(st) => {
            let mut st = st.clone();
            match (st.phase, wanted) {
                (Phase::Enforced, Phase::Auditing) => {
                    return Decision {
                        state: Some(st),
                        access_policy: None,
                        notes,
                    };
                }
                (Phase::Enforced, _) => {
                    notes.push((
                        false,
                        "PolicyRolledBack",
                        "accessPolicy back to audit (keelson.dev/policy-rollout: audit)".into(),
                    ));
                    st = start(Phase::Holding, &mut Vec::new());
                }
                (Phase::Holding, Phase::Auditing) => {
                    st.phase = Phase::Auditing;
                    st.clean_since = now.clone();
                    notes.push((
                        false,
                        "PolicyAuditing",
                        format!("soak restarted towards {}", settings.enforce),
                    ));
                }
                (_, phase) => st.phase = phase,
            }
            if let Some(o) = observation {
                accumulate(&mut st, o, now, &mut notes);
            }
            st
        }
    };
    let mut access = (access_policy != Some(AUDIT)).then(|| AUDIT.to_owned());
    if next.phase == Phase::Auditing
        && let Some(o) = observation
        && o.unreachable.is_empty()
        && !o.scraped.is_empty()
        && elapsed(&next.clean_since, now) >= settings.soak
    {
        next.phase = Phase::Enforced;
        access = Some(settings.enforce.clone());
        notes.push((
            false,
            "PolicyEnforced",
            format!(
                "no would-be denials on {} pod(s) for {}; accessPolicy set to {}",
                o.scraped.len(),
                humanize(settings.soak),
                settings.enforce
            ),
        ));
    }
    Decision {
        state: Some(next),
        access_policy: access,
        notes,
    }
}

/// Folds a round of counters into the state: every increase is a would-be
/// denial and restarts the soak. A counter below its last value belongs to
/// a restarted proxy, so all of it is new; a series not seen before is new
/// too (the baseline was taken when the audit began).
fn accumulate(
    st: &mut State,
    o: &Observation,
    now: &Time,
    notes: &mut Vec<(bool, &'static str, String)>,
) {
    for (key, c) in &o.counts {
        let increase = match st.counters.get(key) {
            Some(&last) if c.value >= last => c.value - last,
            _ => c.value,
        };
        if increase == 0 {
            continue;
        }
        st.clean_since = now.clone();
        match st
            .denials
            .iter_mut()
            .find(|d| d.client == c.client && d.route == c.route)
        {
            Some(d) => {
                d.count += increase;
                d.last_seen = now.clone();
            }
            None => {
                notes.push((
                    true,
                    "WouldBeDenied",
                    format!(
                        "{} would be denied{}; staying in audit",
                        c.client,
                        c.route
                            .as_ref()
                            .map(|r| format!(" on route {r}"))
                            .unwrap_or_default()
                    ),
                ));
                st.denials.push(Denial {
                    client: c.client.clone(),
                    route: c.route.clone(),
                    count: increase,
                    last_seen: now.clone(),
                });
            }
        }
    }
    // Newest first; the oldest fall off.
    st.denials.sort_by(|a, b| {
        b.last_seen
            .0
            .cmp(&a.last_seen.0)
            .then(a.client.cmp(&b.client))
    });
    st.denials.truncate(MAX_DENIALS);
    // Pods gone are forgotten; an unreachable pod keeps its last totals, so
    // its next answer counts only what is new.
    st.counters.retain(|key, _| {
        let pod = key.split('/').next().unwrap_or_default();
        o.unreachable.contains_key(pod)
    });
    st.counters
        .extend(o.counts.iter().map(|(k, c)| (k.clone(), c.value)));
}

fn elapsed(since: &Time, now: &Time) -> Duration {
    let ms = now.0.as_millisecond() - since.0.as_millisecond();
    Duration::from_millis(ms.max(0).unsigned_abs())
}

/// `90s` -> `1m30s`, for messages.
pub fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    let mut out = String::new();
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    if out.is_empty() {
        format!("{}ms", d.as_millis())
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::prom::parse;

    fn at(second: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000 + second).unwrap())
    }

    fn minute_soak(mode: Mode) -> Settings {
        Settings {
            mode,
            soak: Duration::from_secs(60),
            enforce: "deny".into(),
        }
    }

    /// What pod `pod` serves: `web` was would-be denied `web` times, an
    /// unmeshed client `plain` times, and an allowed client is counted too.
    fn observe(pods: &[(&str, u64, u64)]) -> Observation {
        let mut o = Observation::default();
        for (pod, web, plain) in pods {
            let text = format!(
                r#"inbound_http_authz_allow_total{{tls="true",client_id="web.apps.serviceaccount.identity.linkerd.cluster.local",srv_group="policy.linkerd.io",srv_kind="server",srv_name="api",srv_port="8080",target_port="8080",route_group="",route_kind="default",route_name="default",authz_group="",authz_kind="default",authz_name="audit"}} {web}
inbound_tcp_authz_allow_total{{tls="no_identity",no_tls_reason="no_tls_from_remote",srv_kind="server",srv_name="api",target_port="8080",authz_kind="default",authz_name="audit"}} {plain}
inbound_http_authz_allow_total{{tls="true",client_id="ok.apps",srv_kind="server",srv_name="api",authz_kind="authorizationpolicy",authz_name="ok"}} 1000
inbound_http_authz_allow_total{{tls="true",client_id="x",srv_kind="server",srv_name="other",authz_name="audit"}} 1000
"#
            );
            o.add(pod, "api", &parse(&text).unwrap());
        }
        o
    }

    fn run(
        s: &Settings,
        policy: Option<&str>,
        st: Option<&State>,
        o: Option<&Observation>,
        now: i64,
    ) -> Decision {
        step(Some(s), policy, st, o, &at(now))
    }

    #[test]
    fn settings_come_from_annotations_and_are_checked() {
        let a = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert_eq!(super::settings(&a(&[])), Ok(None));
        assert_eq!(
            super::settings(&a(&[(ROLLOUT, "audit-first"), (SOAK, "1h30m")])),
            Ok(Some(Settings {
                mode: Mode::AuditFirst,
                soak: Duration::from_secs(5400),
                enforce: "deny".into()
            }))
        );
        assert_eq!(
            settings(&a(&[
                (ROLLOUT, "audit"),
                (ENFORCE, "cluster-authenticated")
            ]))
            .unwrap()
            .unwrap()
            .enforce,
            "cluster-authenticated"
        );
        let bad = super::settings(&a(&[(ROLLOUT, "later"), (SOAK, "-5m"), (ENFORCE, "audit")]))
            .unwrap_err();
        let fields: Vec<&str> = bad.iter().map(|i| i.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "metadata.annotations[keelson.dev/policy-rollout]",
                "metadata.annotations[keelson.dev/policy-soak]",
                "metadata.annotations[keelson.dev/policy-enforce]",
            ]
        );
    }

    #[test]
    fn only_the_servers_audit_counters_are_taken() {
        let o = observe(&[("api-1", 3, 2)]);
        let clients: Vec<(&str, Option<&str>, u64)> = o
            .counts
            .values()
            .map(|c| (c.client.as_str(), c.route.as_deref(), c.value))
            .collect();
        assert_eq!(
            clients,
            [
                (
                    "web.apps.serviceaccount.identity.linkerd.cluster.local",
                    Some("default/default"),
                    3
                ),
                ("no identity (no_tls_from_remote)", None, 2),
            ]
        );
    }

    #[test]
    fn a_clean_soak_promotes() {
        let s = minute_soak(Mode::AuditFirst);
        // Counters left from an earlier audit are the baseline.
        let d = run(&s, None, None, Some(&observe(&[("api-1", 5, 0)])), 0);
        assert_eq!(d.access_policy.as_deref(), Some("audit"));
        let st = d.state.unwrap();
        assert_eq!(st.phase, Phase::Auditing);
        assert_eq!(d.notes[0].1, "PolicyAuditing");

        let o = observe(&[("api-1", 5, 0)]);
        let d = run(&s, Some("audit"), Some(&st), Some(&o), 30);
        assert_eq!(d.access_policy, None, "nothing to write yet");
        assert_eq!(d.state.as_ref(), Some(&st));
        assert!(d.notes.is_empty());

        let d = run(&s, Some("audit"), Some(&st), Some(&o), 60);
        assert_eq!(d.access_policy.as_deref(), Some("deny"));
        let done = d.state.unwrap();
        assert_eq!(done.phase, Phase::Enforced);
        assert_eq!(d.notes[0].1, "PolicyEnforced");

        // Enforced stays enforced, and needs no more scrapes.
        assert!(!needs_observation(Some(&s), Some(&done)));
        let d = run(&s, Some("deny"), Some(&done), None, 90);
        assert_eq!((d.state.as_ref(), d.access_policy), (Some(&done), None));
    }

    #[test]
    fn would_be_denials_block_promotion_and_name_the_clients() {
        let s = minute_soak(Mode::AuditFirst);
        let st = run(&s, None, None, Some(&observe(&[("api-1", 0, 0)])), 0)
            .state
            .unwrap();
        let d = run(
            &s,
            Some("audit"),
            Some(&st),
            Some(&observe(&[("api-1", 4, 1)])),
            50,
        );
        let st = d.state.unwrap();
        assert_eq!(st.phase, Phase::Auditing);
        assert_eq!(st.clean_since, at(50));
        let listed: Vec<(&str, u64)> = st
            .denials
            .iter()
            .map(|d| (d.client.as_str(), d.count))
            .collect();
        assert_eq!(
            listed,
            [
                ("no identity (no_tls_from_remote)", 1),
                ("web.apps.serviceaccount.identity.linkerd.cluster.local", 4),
            ]
        );
        assert!(d.notes.iter().all(|n| n.0 && n.1 == "WouldBeDenied"));
        // Past the first soak, but not clean since the denial.
        let d = run(
            &s,
            Some("audit"),
            Some(&st),
            Some(&observe(&[("api-1", 4, 1)])),
            100,
        );
        assert_eq!(d.access_policy, None);
        assert_eq!(d.state.as_ref().unwrap().phase, Phase::Auditing);
        // More denials add up and do not repeat the Event.
        let d = run(
            &s,
            Some("audit"),
            Some(&st),
            Some(&observe(&[("api-1", 6, 1)])),
            100,
        );
        let st = d.state.unwrap();
        assert_eq!(
            st.denials[0].client,
            "web.apps.serviceaccount.identity.linkerd.cluster.local"
        );
        assert_eq!(st.denials[0].count, 6);
        assert!(d.notes.is_empty());
        // Clean for a whole soak after the last one: promoted.
        let d = run(
            &s,
            Some("audit"),
            Some(&st),
            Some(&observe(&[("api-1", 6, 1)])),
            160,
        );
        assert_eq!(d.access_policy.as_deref(), Some("deny"));
    }

    #[test]
    fn a_restarted_proxy_and_a_new_pod_count_from_zero() {
        let s = minute_soak(Mode::AuditFirst);
        let st = run(&s, None, None, Some(&observe(&[("api-1", 10, 0)])), 0)
            .state
            .unwrap();
        // api-1 restarted (its counter dropped to 2); api-2 is new.
        let d = run(
            &s,
            Some("audit"),
            Some(&st),
            Some(&observe(&[("api-1", 2, 0), ("api-2", 3, 0)])),
            10,
        );
        let st = d.state.unwrap();
        assert_eq!(st.denials[0].count, 5);
        assert_eq!(st.counters.len(), 4);
        // api-2 went away: forgotten.
        let st = run(
            &s,
            Some("audit"),
            Some(&st),
            Some(&observe(&[("api-1", 2, 0)])),
            20,
        )
        .state
        .unwrap();
        assert!(st.counters.keys().all(|k| k.starts_with("api-1/")));
    }

    #[test]
    fn unreachable_or_missing_pods_never_promote() {
        let s = minute_soak(Mode::AuditFirst);
        let st = run(&s, None, None, Some(&observe(&[("api-1", 1, 0)])), 0)
            .state
            .unwrap();
        let mut o = observe(&[]);
        o.unreachable("api-1", "timed out".into());
        let d = run(&s, Some("audit"), Some(&st), Some(&o), 600);
        let kept = d.state.unwrap();
        assert_eq!(kept.phase, Phase::Auditing);
        assert_eq!(
            kept.counters, st.counters,
            "an unreachable pod keeps its totals"
        );
        assert_eq!(
            run(&s, Some("audit"), Some(&st), None, 600).access_policy,
            None
        );
        let none = Observation::default();
        assert_eq!(
            run(&s, Some("audit"), Some(&st), Some(&none), 600).access_policy,
            None
        );
    }

    #[test]
    fn rollback_and_restart_are_one_annotation() {
        let first = minute_soak(Mode::AuditFirst);
        let hold = minute_soak(Mode::Audit);
        let o = observe(&[("api-1", 0, 0)]);
        let enforced = State {
            phase: Phase::Enforced,
            ..run(&first, None, None, Some(&o), 0).state.unwrap()
        };
        let d = run(&hold, Some("deny"), Some(&enforced), Some(&o), 100);
        assert_eq!(d.access_policy.as_deref(), Some("audit"));
        let held = d.state.unwrap();
        assert_eq!((held.phase, held.since.clone()), (Phase::Holding, at(100)));
        assert_eq!(d.notes[0].1, "PolicyRolledBack");
        // Holding never promotes.
        let d = run(&hold, Some("audit"), Some(&held), Some(&o), 10_000);
        assert_eq!(
            (d.access_policy, d.state.unwrap().phase),
            (None, Phase::Holding)
        );
        // audit-first again: a new soak from now.
        let d = run(&first, Some("audit"), Some(&held), Some(&o), 10_000);
        let st = d.state.unwrap();
        assert_eq!(
            (st.phase, st.clean_since.clone()),
            (Phase::Auditing, at(10_000))
        );
        assert_eq!(
            run(&first, Some("audit"), Some(&st), Some(&o), 10_059).access_policy,
            None
        );
        assert_eq!(
            run(&first, Some("audit"), Some(&st), Some(&o), 10_060)
                .access_policy
                .as_deref(),
            Some("deny")
        );
        // Opting out forgets the state and leaves the policy alone.
        let d = step(None, Some("audit"), Some(&st), Some(&o), &at(0));
        assert_eq!((d.state, d.access_policy), (None, None));
    }

    #[test]
    fn a_manual_change_during_audit_is_put_back() {
        let s = minute_soak(Mode::AuditFirst);
        let o = observe(&[("api-1", 0, 0)]);
        let st = run(&s, None, None, Some(&o), 0).state.unwrap();
        let d = run(&s, Some("deny"), Some(&st), Some(&o), 10);
        assert_eq!(d.access_policy.as_deref(), Some("audit"));
    }
}
