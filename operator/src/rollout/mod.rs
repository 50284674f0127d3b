//! Paced proxy restarts as a state machine over a DataPlane's status.
//!
//! Pure: from what was observed of the selected workloads, the target (proxy
//! version and trust bundle), the rollout spec and the stored status, [`plan`]
//! decides which workloads to restart now and the next status. The
//! controller does the I/O and passes the clock in. Every decision that must
//! survive an operator restart lives in `status.wave`.
//!
//! A wave brings every selected workload to one target. It restarts lagging
//! workloads in batches of at most `batchSize`, each batch fitting in what
//! `maxUnavailable` leaves after the pods already unavailable, and waits for
//! a batch to be rolled out and available (then `interval`) before the next.
//! A workload whose restart fails stops the wave: no new batch starts and it
//! is not restarted again until the target or the DataPlane's spec changes.

#[cfg(test)]
mod tests;

use crate::controlplane::status::set_condition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use keelson_crds::DataPlaneStatus;
use keelson_crds::dataplane::{LaggingWorkload, RolloutSpec, Wave, WaveFailure, WaveRestart};
use std::fmt;
use std::time::Duration;

/// Pod-template annotation whose change restarts a workload's pods, as
/// `kubectl rollout restart` does with its own annotation.
pub const RESTARTED_AT: &str = "keelson.dev/restarted-at";

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";

/// How many lagging workloads status lists.
const LAGGING_LISTED: usize = 50;

/// Workload kinds a DataPlane restarts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Deployment => "Deployment",
            Kind::StatefulSet => "StatefulSet",
            Kind::DaemonSet => "DaemonSet",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Kind::Deployment, Kind::StatefulSet, Kind::DaemonSet]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a workload's own rollout replaces its pods.
#[derive(Clone, Debug, PartialEq)]
pub enum Strategy {
    /// A rolling update that takes down at most `max_unavailable` pods, a
    /// number or a percentage of its replicas (Deployments round
    /// percentages down, StatefulSets and DaemonSets up).
    Rolling {
        max_unavailable: IntOrString,
        round_up: bool,
    },
    /// Every pod at once (Deployment `Recreate`).
    Recreate,
    /// Pods change only when deleted: a template change restarts nothing.
    OnDelete,
}

/// The proxy a pod runs, from its annotations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodProxy {
    /// `linkerd.io/proxy-version`
    pub version: Option<String>,
    /// `linkerd.io/trust-root-sha256`
    pub trust_root_sha256: Option<String>,
    /// `keelson.dev/cni-redirect-sha256`: in CNI mode, the plugin's
    /// redirect settings when the pod was admitted.
    pub cni_redirect_sha256: Option<String>,
}

/// What was observed of one selected, meshed workload.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    pub kind: Kind,
    pub name: String,
    /// Pods it should have.
    pub replicas: i32,
    /// Pods of any template, not being deleted.
    pub current: i32,
    /// Pods of its current template.
    pub updated: i32,
    pub available: i32,
    pub generation: i64,
    pub observed_generation: i64,
    pub strategy: Strategy,
    /// Its rollout stopped making progress (a Deployment's `Progressing`
    /// condition False with `ProgressDeadlineExceeded`): the message.
    pub stalled: Option<String>,
    /// Why pods of its restart cannot become ready (crash loop, image pull),
    /// when known.
    pub crashing: Option<String>,
    /// Its pod template's [`RESTARTED_AT`].
    pub restarted_at: Option<String>,
    /// The proxies of its pods that are not being deleted.
    pub pods: Vec<PodProxy>,
    /// Its most restrictive PodDisruptionBudget: name and the disruptions
    /// it allows now.
    pub disruption_budget: Option<(String, i32)>,
}

impl Workload {
    fn id(&self) -> (Kind, &str) {
        (self.kind, &self.name)
    }

    fn is(&self, kind: &str, name: &str) -> bool {
        self.kind.as_str() == kind && self.name == name
    }

    /// Its own rollout is complete: the controller saw the current spec,
    /// every pod runs the current template, and the pods are all known.
    fn rolled_out(&self) -> bool {
        self.observed_generation >= self.generation
            && self.updated >= self.replicas
            && self.current <= self.updated
            && self.pods.len() >= usize::try_from(self.replicas).unwrap_or(0)
    }

    fn fully_available(&self) -> bool {
        self.available >= self.replicas
    }

    /// Rolled out and every pod available: a restart of it is done.
    pub fn settled(&self) -> bool {
        self.rolled_out() && self.fully_available()
    }

    fn unavailable(&self) -> i32 {
        (self.replicas - self.available).max(0)
    }

    /// Pods its own rollout may take down at once: at least one (a surge
    /// may still fail), at most all of them.
    fn cost(&self) -> i32 {
        let most = self.replicas.max(1);
        let n = match &self.strategy {
            Strategy::Rolling {
                max_unavailable,
                round_up,
            } => scaled(max_unavailable, self.replicas, *round_up).unwrap_or(most),
            Strategy::Recreate | Strategy::OnDelete => most,
        };
        n.clamp(1, most)
    }

    /// How its pods differ from the target, if they do.
    fn version_lag(&self, target: &Target) -> Option<(&'static str, String)> {
        if let Some(pod) = self
            .pods
            .iter()
            .find(|p| p.version.as_deref() != Some(&target.proxy_version))
        {
            let runs = pod.version.as_deref().unwrap_or("no proxy");
            return Some((
                "ProxyVersion",
                format!("pods run {runs}, want {}", target.proxy_version),
            ));
        }
        if let Some(pod) = self
            .pods
            .iter()
            .find(|p| p.trust_root_sha256.as_deref() != Some(&target.trust_root_sha256))
        {
            let carries = pod
                .trust_root_sha256
                .as_deref()
                .map_or("none".to_owned(), short);
            return Some((
                "TrustBundle",
                format!(
                    "pods carry trust bundle sha256 {carries}, want {}",
                    short(&target.trust_root_sha256)
                ),
            ));
        }
        // A pod with no mark was meshed before Keelson ran the plugin (by
        // Linkerd's injector, or before its DaemonSet first rolled out):
        // restarting every such pod on adoption would be a surprise, so
        // only a pod marked with other settings lags.
        if let Some(want) = &target.cni_redirect_sha256
            && let Some(has) = self
                .pods
                .iter()
                .filter_map(|p| p.cni_redirect_sha256.as_deref())
                .find(|has| has != want)
        {
            return Some((
                "CniRedirect",
                format!(
                    "pods were set up by the CNI plugin's redirect settings sha256 {}, want {}",
                    short(has),
                    short(want)
                ),
            ));
        }
        None
    }

    fn up_to_date(&self, target: &Target) -> bool {
        self.rolled_out() && self.version_lag(target).is_none()
    }

    /// How many restarts `wave` gave it, from the token its template carries
    /// (0: none of this wave's).
    fn restarts_in(&self, wave: &Wave) -> u32 {
        self.restarted_at
            .as_deref()
            .and_then(parse_token)
            .filter(|t| t.wave == wave.number && t.at >= wave.started_at.0)
            .map_or(0, |t| t.restart)
    }
}

/// The first characters of a digest, enough to tell two apart in a message.
fn short(sha: &str) -> String {
    sha.chars().take(12).collect()
}

/// A count from `value`, a number or a percentage of `total`.
pub fn scaled(value: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let percent = s
                .strip_suffix('%')
                .and_then(|n| n.parse::<i64>().ok())
                .filter(|n| (0..=100).contains(n))
                .ok_or_else(|| format!("{s:?} is neither a number nor a percentage"))?;
            let scaled = i64::from(total) * percent;
            let n = if round_up {
                (scaled + 99) / 100
            } else {
                scaled / 100
            };
            Ok(i32::try_from(n).unwrap_or(i32::MAX))
        }
    }
}

/// What the selected workloads should run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub proxy_version: String,
    pub trust_root_sha256: String,
    /// In CNI mode, the plugin's redirect settings on every node.
    pub cni_redirect_sha256: Option<String>,
}

/// The target, or why it cannot be known now (no new batch starts then).
#[derive(Clone, Debug, PartialEq)]
pub enum Desired {
    Target(Target),
    Held {
        reason: &'static str,
        message: String,
    },
}

pub struct Input<'a> {
    /// The DataPlane's `metadata.generation`.
    pub generation: i64,
    pub desired: Desired,
    pub rollout: &'a RolloutSpec,
    /// The selected meshed workloads.
    pub workloads: &'a [Workload],
    pub previous: &'a DataPlaneStatus,
    pub now: &'a Time,
}

/// A restart to issue: set the workload's [`RESTARTED_AT`] to `token`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restart {
    pub kind: Kind,
    pub name: String,
    pub token: String,
}

/// What the controller should do now.
#[derive(Debug, PartialEq)]
pub struct Plan {
    /// Restarts to issue, after writing `status`: a new batch, or restarts
    /// of the batch under way that did not reach the workload yet.
    pub restarts: Vec<Restart>,
    /// Whether `restarts` start a new batch (rather than re-issue).
    pub new_batch: bool,
    /// Workloads whose restart failed in this round.
    pub failed: Vec<WaveFailure>,
    pub status: DataPlaneStatus,
    pub requeue: Duration,
}

/// Why a workload that is not up to date is not restarted now.
struct Lag {
    reason: &'static str,
    message: String,
    /// It may join a batch now.
    candidate: bool,
}

pub fn plan(input: &Input<'_>) -> Plan {
    let previous = input.previous;
    let now = input.now;
    let generation = input.generation;
    let mut status = previous.clone();
    status.observed_generation = Some(generation);

    let previous_target = previous
        .target_proxy_version
        .clone()
        .zip(previous.target_trust_root_sha256.clone())
        .map(|(proxy_version, trust_root_sha256)| Target {
            proxy_version,
            trust_root_sha256,
            cni_redirect_sha256: previous.target_cni_redirect_sha256.clone(),
        });
    let mut wave = previous.wave.clone();
    let target = match &input.desired {
        Desired::Target(target) => {
            let same = previous_target.as_ref() == Some(target)
                && wave.as_ref().is_some_and(|w| w.generation == generation);
            if !same {
                wave = Some(new_wave(wave, generation, now));
            }
            status.target_proxy_version = Some(target.proxy_version.clone());
            status.target_trust_root_sha256 = Some(target.trust_root_sha256.clone());
            status
                .target_cni_redirect_sha256
                .clone_from(&target.cni_redirect_sha256);
            Some(target.clone())
        }
        // Keep judging by the last known target; nothing new starts.
        Desired::Held { .. } => previous_target,
    };

    let mut restarts = Vec::new();
    let mut failed_now = Vec::new();
    if let Some(w) = wave.as_mut() {
        track_batch(w, input, &mut restarts, &mut failed_now);
    }

    // Every workload, judged against the target.
    let mut lagging = Vec::new();
    let mut up_to_date = 0;
    let mut candidates = Vec::new();
    let total_pods: i32 = input.workloads.iter().map(|w| w.replicas.max(0)).sum();
    let unavailable: i32 = input.workloads.iter().map(Workload::unavailable).sum();
    let allowed = scaled(&input.rollout.max_unavailable, total_pods, false).map(|n| n.max(1));
    let mut workloads: Vec<&Workload> = input.workloads.iter().collect();
    workloads.sort_by(|a, b| a.id().cmp(&b.id()));
    if let Some(target) = &target {
        for w in workloads {
            let lag = lag(w, target, wave.as_ref(), allowed.as_ref().ok().copied());
            let Some(lag) = lag else {
                up_to_date += 1;
                continue;
            };
            if lag.candidate {
                candidates.push(w);
            }
            lagging.push(LaggingWorkload {
                kind: w.kind.as_str().to_owned(),
                name: w.name.clone(),
                reason: lag.reason.to_owned(),
                message: Some(lag.message),
            });
        }
    }

    // A new batch, when nothing holds it back.
    let interval: Duration = input.rollout.interval.or_zero();
    let mut new_batch = false;
    let mut wait_until = None;
    let mut short_of_budget = false;
    if let (Desired::Target(_), Some(w), Ok(allowed)) = (&input.desired, wave.as_mut(), &allowed)
        && w.restarting.is_empty()
        && w.failed.is_empty()
        && !input.rollout.paused
        && !candidates.is_empty()
    {
        let ready_at = w
            .last_batch_finished_at
            .as_ref()
            .map_or(i64::MIN, |t| t.0.as_second() + secs(interval));
        if now.0.as_second() < ready_at {
            wait_until = Some(ready_at);
        } else {
            let batch = batch(
                &candidates,
                usize::try_from(input.rollout.batch_size.max(1)).unwrap_or(1),
                allowed - unavailable,
            );
            for c in &batch {
                let token = token(w.number, c.restarts_in(w) + 1, now);
                restarts.push(Restart {
                    kind: c.kind,
                    name: c.name.clone(),
                    token: token.clone(),
                });
                w.restarting.push(WaveRestart {
                    kind: c.kind.as_str().to_owned(),
                    name: c.name.clone(),
                    token: token.clone(),
                });
                if let Some(l) = lagging.iter_mut().find(|l| c.is(&l.kind, &l.name)) {
                    l.reason = "Restarting".into();
                    l.message = Some(format!("restarted at {token} (wave {})", w.number));
                }
            }
            new_batch = !batch.is_empty();
            if new_batch {
                w.batch_started_at = Some(now.clone());
            }
            short_of_budget = !new_batch;
        }
    }

    let wave_ref = wave.as_ref();
    let restarting = wave_ref.map_or(0, |w| w.restarting.len());
    let failed = wave_ref.map_or(0, |w| w.failed.len());
    let workloads = input.workloads.len();
    status.workloads = count(workloads);
    status.up_to_date = count(up_to_date);
    status.restarting = count(restarting);
    status.failed = count(failed);
    status.pending = count(
        workloads
            .saturating_sub(up_to_date)
            .saturating_sub(restarting)
            .saturating_sub(failed),
    );
    lagging.sort_by_key(|l| {
        let rank = match l.reason.as_str() {
            "Failed" => 0,
            "Restarting" => 1,
            _ => 2,
        };
        (rank, l.kind.clone(), l.name.clone())
    });
    lagging.truncate(LAGGING_LISTED);
    status.lagging = lagging;
    status.wave = wave;
    let waiting = match (wait_until, short_of_budget, &allowed) {
        (Some(at), _, _) => Some(format!(
            "next batch at {}",
            k8s_openapi::jiff::Timestamp::from_second(at).unwrap_or(now.0)
        )),
        (None, true, Ok(allowed)) => Some(format!(
            "{unavailable} pods are unavailable and spec.rollout.maxUnavailable allows {allowed}: waiting for them"
        )),
        _ => None,
    };
    conditions(&mut status, input, &allowed, target.as_ref(), waiting);

    let requeue = if restarting > 0 {
        // Crash loops and deadlines show up without a watch event.
        Duration::from_secs(5)
    } else if let Some(at) = wait_until {
        Duration::from_secs(u64::try_from(at - now.0.as_second()).unwrap_or(0).max(1))
    } else if status.pending > 0 {
        Duration::from_secs(30)
    } else {
        Duration::from_secs(300)
    };
    Plan {
        restarts,
        new_batch,
        failed: failed_now,
        status,
        requeue,
    }
}

/// A wave for a new target or spec. A batch under way stays until it is
/// done (its pods are already going down); the old wave's failures no longer
/// hold anything back.
fn new_wave(old: Option<Wave>, generation: i64, now: &Time) -> Wave {
    let number = old.as_ref().map_or(1, |w| w.number + 1);
    let old = old.unwrap_or_else(|| Wave {
        number: 0,
        generation,
        started_at: now.clone(),
        restarting: Vec::new(),
        batch_started_at: None,
        last_batch_finished_at: None,
        failed: Vec::new(),
    });
    Wave {
        number,
        generation,
        started_at: now.clone(),
        batch_started_at: old.batch_started_at.filter(|_| !old.restarting.is_empty()),
        restarting: old.restarting,
        last_batch_finished_at: old.last_batch_finished_at,
        failed: Vec::new(),
    }
}

/// Follows the batch under way: re-issues restarts that did not reach their
/// workload, moves failed workloads to `failed`, drops finished ones, and
/// closes the batch when none is left. Failed workloads that recovered on
/// their own (fixed by someone) are dropped too, so the wave goes on.
fn track_batch(
    wave: &mut Wave,
    input: &Input<'_>,
    restarts: &mut Vec<Restart>,
    failed_now: &mut Vec<WaveFailure>,
) {
    let find = |kind: &str, name: &str| input.workloads.iter().find(|w| w.is(kind, name));
    let deadline: Duration = input.rollout.progress_deadline.or_zero();
    let elapsed = wave
        .batch_started_at
        .as_ref()
        .map_or(0, |t| input.now.0.as_second() - t.0.as_second());
    let mut still = Vec::new();
    for r in std::mem::take(&mut wave.restarting) {
        // Deleted, or no longer selected: nothing to wait for.
        let Some(w) = find(&r.kind, &r.name) else {
            continue;
        };
        if w.restarted_at.as_deref() != Some(&r.token) {
            restarts.push(Restart {
                kind: w.kind,
                name: w.name.clone(),
                token: r.token.clone(),
            });
            still.push(r);
            continue;
        }
        let failure = if let Some(m) = w
            .stalled
            .as_ref()
            .filter(|_| w.observed_generation >= w.generation)
        {
            Some(format!("its rollout stalled: {m}"))
        } else if let Some(m) = &w.crashing {
            Some(m.clone())
        } else if w.kind != Kind::Deployment && elapsed > secs(deadline) && !w.rolled_out() {
            Some(format!(
                "not rolled out and available within spec.rollout.progressDeadline ({}s)",
                deadline.as_secs()
            ))
        } else {
            None
        };
        if let Some(message) = failure {
            let f = WaveFailure {
                kind: r.kind,
                name: r.name,
                message,
            };
            failed_now.push(f.clone());
            wave.failed.push(f);
        } else if !w.settled() {
            still.push(r);
        }
    }
    wave.restarting = still;
    if wave.restarting.is_empty() && wave.batch_started_at.is_some() {
        wave.batch_started_at = None;
        wave.last_batch_finished_at = Some(input.now.clone());
    }
    if let Some(target) = target_of(input) {
        wave.failed
            .retain(|f| find(&f.kind, &f.name).is_some_and(|w| !w.up_to_date(&target)));
    }
}

fn target_of(input: &Input<'_>) -> Option<Target> {
    match &input.desired {
        Desired::Target(t) => Some(t.clone()),
        Desired::Held { .. } => None,
    }
}

/// Why a workload is not up to date and waits, and whether it may join a
/// batch now; `None` when it is up to date and not in the wave's batch.
fn lag(w: &Workload, target: &Target, wave: Option<&Wave>, allowed: Option<i32>) -> Option<Lag> {
    let held = |reason, message| {
        Some(Lag {
            reason,
            message,
            candidate: false,
        })
    };
    if let Some(wave) = wave {
        if let Some(r) = wave.restarting.iter().find(|r| w.is(&r.kind, &r.name)) {
            return held(
                "Restarting",
                format!("restarted at {} (wave {})", r.token, wave.number),
            );
        }
        if let Some(f) = wave.failed.iter().find(|f| w.is(&f.kind, &f.name)) {
            return held("Failed", f.message.clone());
        }
    }
    if w.up_to_date(target) {
        return None;
    }
    if w.strategy == Strategy::OnDelete {
        return held(
            "OnDelete",
            "its update strategy is OnDelete: a restart replaces no pod; delete its pods".into(),
        );
    }
    if !w.settled() {
        return held(
            "Progressing",
            format!(
                "waiting for its own rollout: {} of {} pods updated, {} available",
                w.updated, w.replicas, w.available
            ),
        );
    }
    let (reason, message) = w
        .version_lag(target)
        .unwrap_or(("ProxyVersion", "pods not yet known".into()));
    if let Some(wave) = wave
        && w.restarts_in(wave) >= RESTARTS_PER_WAVE
    {
        return held(
            "Unchanged",
            format!(
                "restarted {RESTARTS_PER_WAVE} times in wave {}, but {message}; the proxy injector did not give its new pods the target",
                wave.number
            ),
        );
    }
    let cost = w.cost();
    if let Some(allowed) = allowed
        && cost > allowed
    {
        return held(
            "MaxUnavailable",
            format!(
                "its rollout may take down {cost} pods; spec.rollout.maxUnavailable allows {allowed}"
            ),
        );
    }
    if let Some((pdb, allows)) = &w.disruption_budget
        && *allows < cost
    {
        return held(
            "PodDisruptionBudget",
            format!(
                "PodDisruptionBudget {pdb} allows {allows} disruptions; its restart may take down {cost}"
            ),
        );
    }
    Some(Lag {
        reason,
        message,
        candidate: true,
    })
}

/// The candidates, in order, that fit in `batch_size` and `budget` pods.
fn batch<'a>(candidates: &[&'a Workload], batch_size: usize, budget: i32) -> Vec<&'a Workload> {
    let mut left = budget;
    let mut out = Vec::new();
    for c in candidates {
        if out.len() == batch_size {
            break;
        }
        let cost = c.cost();
        if cost <= left {
            left -= cost;
            out.push(*c);
        }
    }
    out
}

/// Status of a DataPlane whose spec is refused: the wave under way is kept
/// (a fixed spec resumes it), nothing restarts, and the conditions say why.
pub fn invalid(
    previous: &DataPlaneStatus,
    generation: Option<i64>,
    message: &str,
    now: &Time,
) -> DataPlaneStatus {
    let mut next = previous.clone();
    next.observed_generation = generation;
    for (type_, ok) in [(READY, false), (DEGRADED, true)] {
        set_condition(
            &mut next.conditions,
            type_,
            ok,
            "InvalidSpec",
            message,
            generation,
            now,
        );
    }
    next
}

fn conditions(
    status: &mut DataPlaneStatus,
    input: &Input<'_>,
    allowed: &Result<i32, String>,
    target: Option<&Target>,
    waiting: Option<String>,
) {
    let generation = Some(input.generation);
    let now = input.now;
    let number = status.wave.as_ref().map_or(0, |w| w.number);
    let all = status.workloads;
    let mut set = |type_: &str, ok: bool, reason: &str, message: String| {
        set_condition(
            &mut status.conditions,
            type_,
            ok,
            reason,
            message,
            generation,
            now,
        );
    };
    let held = match (&input.desired, allowed) {
        (Desired::Held { reason, message }, _) => Some((*reason, message.clone())),
        (_, Err(e)) => Some(("InvalidSpec", format!("spec.rollout.maxUnavailable: {e}"))),
        _ => None,
    };

    match (&held, target) {
        (Some((reason, message)), _) => set(READY, false, reason, message.clone()),
        (None, Some(t)) if status.up_to_date == all => set(
            READY,
            true,
            "UpToDate",
            format!(
                "all {all} workloads run proxy {} with trust bundle sha256 {}",
                t.proxy_version,
                short(&t.trust_root_sha256)
            ),
        ),
        _ => set(
            READY,
            false,
            "Lagging",
            format!("{} of {all} workloads up to date", status.up_to_date),
        ),
    }

    let failures: Vec<String> = status
        .wave
        .iter()
        .flat_map(|w| &w.failed)
        .map(|f| format!("{} {}: {}", f.kind, f.name, f.message))
        .collect();
    if failures.is_empty() {
        set(DEGRADED, false, "AsExpected", String::new());
    } else {
        set(
            DEGRADED,
            true,
            "RestartFailed",
            format!(
                "wave {number} stopped: {}; fix the workload (the wave resumes once it is up to date) or edit the DataPlane to retry",
                failures.join("; ")
            ),
        );
    }

    let restarting: Vec<String> = status
        .wave
        .iter()
        .flat_map(|w| &w.restarting)
        .map(|r| format!("{} {}", r.kind, r.name))
        .collect();
    let (ok, reason, message) = if !restarting.is_empty() {
        (
            true,
            "Restarting",
            format!("wave {number}: restarting {}", restarting.join(", ")),
        )
    } else if let Some((reason, message)) = held {
        (false, reason, message)
    } else if !failures.is_empty() {
        (
            false,
            "WaveFailed",
            format!("wave {number} stopped after a failed restart"),
        )
    } else if status.pending == 0 {
        (false, "Converged", String::new())
    } else if input.rollout.paused {
        (
            false,
            "Paused",
            format!(
                "spec.rollout.paused: {} workloads wait for a restart",
                status.pending
            ),
        )
    } else if let Some(waiting) = waiting {
        (true, "Waiting", format!("wave {number}: {waiting}"))
    } else {
        (
            false,
            "Held",
            format!(
                "{} workloads lag but none can be restarted now (see lagging)",
                status.pending
            ),
        )
    };
    set(PROGRESSING, ok, reason, message);
}

/// Restarts one wave gives a workload. A restart whose new pods came up
/// without the target is repeated once: the injector may have been out of
/// reach for a moment (a `failurePolicy: Ignore` webhook admits pods
/// unmeshed). A second such restart means the injector does not give the
/// target, and repeating it would only restart pods.
const RESTARTS_PER_WAVE: u32 = 2;

/// A restart token: the wave's number, the restart's within the wave after a
/// dot from the second on, and the time: `w3-2025-11-02T10:00:00Z`,
/// `w3.2-2025-11-02T10:05:00Z`. The wave number tells a restart of this wave
/// from one of an earlier wave in the same second; the time tells it from
/// another DataPlane's wave 3.
fn token(wave: i64, restart: u32, now: &Time) -> String {
    let at = k8s_openapi::jiff::Timestamp::from_second(now.0.as_second()).unwrap_or(now.0);
    if restart > 1 {
        format!("w{wave}.{restart}-{at}")
    } else {
        format!("w{wave}-{at}")
    }
}

struct Token {
    wave: i64,
    restart: u32,
    at: k8s_openapi::jiff::Timestamp,
}

fn parse_token(token: &str) -> Option<Token> {
    let (numbers, at) = token.strip_prefix('w')?.split_once('-')?;
    let (wave, restart) = match numbers.split_once('.') {
        Some((wave, restart)) => (wave, restart.parse().ok()?),
        None => (numbers, 1),
    };
    Some(Token {
        wave: wave.parse().ok()?,
        restart,
        at: at.parse().ok()?,
    })
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
