//! Leader election on a `coordination.k8s.io/v1` Lease, with client-go's
//! semantics (`tools/leaderelection`): the holder renews every retry period;
//! a holder that cannot renew within the renew deadline steps down, which is
//! before any other replica may take over (the lease duration is longer);
//! others take a lease only once its record has not changed for its
//! `leaseDurationSeconds` by their own clock (no clock skew between
//! replicas matters); every write carries the `resourceVersion` it was
//! decided on, so two candidates never both win.
//!
//! Neither kubert (built on kube 1.x) nor kube-lease-manager fits: the
//! latter's kube-4 release keeps reporting leadership while its renewals
//! fail, past the lease's expiry.

use crate::metrics::Metrics;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

use super::Leadership;

/// Where the lease is and how it is held.
#[derive(Clone, Debug)]
pub struct Config {
    /// Keelson's namespace.
    pub namespace: String,
    /// The Lease's name.
    pub name: String,
    /// This replica's name in `holderIdentity`; unique among replicas.
    pub identity: String,
    /// How long a record stays valid without a renewal.
    pub lease_duration: Duration,
    /// How long the holder keeps leading without a successful renewal.
    pub renew_deadline: Duration,
    /// Time between attempts to acquire or renew.
    pub retry_period: Duration,
}

/// The Lease every replica of Keelson competes for.
pub const LEASE_NAME: &str = "keelson";

impl Config {
    /// client-go's and kubert's defaults: 15 s lease, 10 s renew deadline,
    /// 2 s between attempts.
    pub fn new(namespace: impl Into<String>, identity: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: LEASE_NAME.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    /// The holder must give up before others may take over, and must get
    /// more than one attempt at renewing.
    pub fn validate(&self) -> Result<(), LeaseError> {
        let invalid = |why: &str| Err(LeaseError::Config(why.to_owned()));
        if self.identity.is_empty() {
            return invalid("the identity is empty");
        }
        if self.retry_period.is_zero() {
            return invalid("the retry period must be positive");
        }
        if self.renew_deadline <= self.retry_period {
            return invalid("the renew deadline must be longer than the retry period");
        }
        if self.lease_duration <= self.renew_deadline {
            return invalid("the lease duration must be longer than the renew deadline");
        }
        Ok(())
    }
}

/// This replica's identity: the pod's name (from the downward API), else
/// the host name with a random suffix (two processes on one host differ).
pub fn default_identity() -> String {
    if let Some(pod) = std::env::var("POD_NAME").ok().filter(|p| !p.is_empty()) {
        return pod;
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "keelson".into());
    let mut suffix = [0u8; 4];
    // A fixed suffix would only weaken uniqueness, never correctness.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut suffix);
    let hex: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    format!("{host}-{hex}")
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("invalid leader election settings: {0}")]
    Config(String),
    #[error("{what} Lease {name}: {source}")]
    Api {
        what: &'static str,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("{what} Lease {name}: no answer within {after:?}")]
    Timeout {
        what: &'static str,
        name: String,
        after: Duration,
    },
}

/// What to do with the Lease as last seen.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Free, released or expired (or missing): take it.
    Acquire,
    /// Ours: renew it.
    Renew,
    /// Another replica's, still valid.
    Follow { holder: String },
}

/// Decides on a Lease's spec (`None`: no Lease yet) that has not changed for
/// `unchanged_for`, as seen by `identity`.
pub fn decide(spec: Option<&LeaseSpec>, unchanged_for: Duration, identity: &str) -> Decision {
    let Some(spec) = spec else {
        return Decision::Acquire;
    };
    match spec.holder_identity.as_deref() {
        None | Some("") => Decision::Acquire,
        Some(holder) if holder == identity => Decision::Renew,
        Some(holder) => {
            let seconds = spec.lease_duration_seconds.unwrap_or(0);
            let valid_for = Duration::from_secs(u64::try_from(seconds).unwrap_or(0));
            if unchanged_for < valid_for {
                Decision::Follow {
                    holder: holder.to_owned(),
                }
            } else {
                Decision::Acquire
            }
        }
    }
}

/// The record that claims (acquires or renews) the lease for `identity`.
fn claimed(
    previous: Option<&LeaseSpec>,
    identity: &str,
    duration: Duration,
    now: Timestamp,
) -> LeaseSpec {
    let ours = previous.is_some_and(|p| p.holder_identity.as_deref() == Some(identity));
    // A new Lease starts at 0; every change of holder counts.
    let transitions = match previous {
        None => 0,
        Some(p) => p.lease_transitions.unwrap_or(0) + i32::from(!ours),
    };
    let previous = previous.cloned().unwrap_or_default();
    LeaseSpec {
        holder_identity: Some(identity.to_owned()),
        // Rounded up: the lease must not be shorter than configured.
        lease_duration_seconds: Some(
            i32::try_from(duration.as_secs() + u64::from(duration.subsec_nanos() > 0))
                .unwrap_or(i32::MAX),
        ),
        acquire_time: if ours {
            previous.acquire_time.clone()
        } else {
            Some(MicroTime(now))
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..previous
    }
}

/// The record that hands the lease back (client-go's `ReleaseOnCancel`):
/// no holder, so a candidate takes it at its next attempt.
fn released(previous: &LeaseSpec, now: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        acquire_time: Some(MicroTime(now)),
        renew_time: Some(MicroTime(now)),
        ..previous.clone()
    }
}

/// Competes for the Lease and tells [`Leadership`] holders the outcome.
pub struct Elector {
    api: Api<Lease>,
    config: Config,
    metrics: Arc<Metrics>,
    leading: watch::Sender<bool>,
    /// The Lease as last read or written.
    known: Option<Lease>,
    /// When `known`'s spec was first seen as it is.
    observed_at: Instant,
}

/// An elector for `config` and the leadership it reports.
pub fn elector(client: Client, config: Config, metrics: Arc<Metrics>) -> (Elector, Leadership) {
    let (leading, rx) = watch::channel(false);
    let elector = Elector {
        api: Api::namespaced(client, &config.namespace),
        config,
        metrics,
        leading,
        known: None,
        observed_at: Instant::now(),
    };
    (elector, Leadership(rx))
}

impl Elector {
    /// Competes until `stop`, then releases the lease if held. Stop the
    /// leader-only work before `stop` completes: the next leader may start
    /// as soon as the lease is released.
    pub async fn run(mut self, stop: impl Future<Output = ()>) {
        let mut stop = std::pin::pin!(stop);
        // Some(when the last successful renewal was sent) while leading.
        let mut renewed_at: Option<Instant> = None;
        let mut wait = Duration::ZERO;
        loop {
            let leading = renewed_at.is_some();
            let deadline = renewed_at.map(|at| at + self.config.renew_deadline);
            tokio::select! {
                biased;
                () = &mut stop => break,
                () = until(deadline) => {
                    self.step_down("the lease was not renewed within the renew deadline");
                    renewed_at = None;
                }
                result = async {
                    tokio::time::sleep(wait).await;
                    self.try_acquire_or_renew(leading).await
                } => match result {
                    Ok(Some(sent)) => {
                        if !leading {
                            tracing::info!(identity = %self.config.identity, lease = %self.config.name, "acquired the lease; leading");
                            self.set_leading(true);
                        }
                        renewed_at = Some(sent);
                    }
                    Ok(None) => {
                        if leading {
                            self.step_down("another replica holds the lease");
                            renewed_at = None;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, leading, "leader election attempt failed; retrying"),
                },
            }
            wait = if renewed_at.is_some() {
                self.config.retry_period
            } else {
                jittered(self.config.retry_period)
            };
        }
        if renewed_at.is_some() {
            self.set_leading(false);
            self.release().await;
        }
    }

    fn set_leading(&self, leading: bool) {
        self.metrics.leader.set(i64::from(leading));
        self.leading.send_replace(leading);
    }

    fn step_down(&self, why: &str) {
        tracing::warn!(identity = %self.config.identity, "stopped leading: {why}");
        self.set_leading(false);
    }

    /// One client-go `tryAcquireOrRenew`: when this replica holds a fresh
    /// record afterwards, the time its write was sent. Others start counting
    /// the record's duration no earlier, so the renew deadline runs from
    /// there (not from a slow read before it).
    async fn try_acquire_or_renew(&mut self, leading: bool) -> Result<Option<Instant>, LeaseError> {
        // A leader trusts the record it last wrote; a conflict makes it read.
        if !leading || self.known.is_none() {
            self.read().await?;
        }
        for attempt in 0..2 {
            let spec = self.known.as_ref().and_then(|l| l.spec.as_ref());
            let unchanged_for = self.observed_at.elapsed();
            if let Decision::Follow { holder } = decide(spec, unchanged_for, &self.config.identity)
            {
                tracing::debug!(%holder, "the lease is held by another replica");
                return Ok(None);
            }
            let next = claimed(
                spec,
                &self.config.identity,
                self.config.lease_duration,
                Timestamp::now(),
            );
            let sent = Instant::now();
            if self.write(next).await? {
                return Ok(Some(sent));
            }
            // Someone wrote in between: decide again on what they wrote.
            if attempt == 0 {
                self.read().await?;
            }
        }
        Ok(None)
    }

    /// Reads the Lease; a changed record restarts its expiry clock.
    async fn read(&mut self) -> Result<(), LeaseError> {
        let lease = self
            .call("reading", self.api.get_opt(&self.config.name))
            .await?;
        self.observe(lease);
        Ok(())
    }

    fn observe(&mut self, lease: Option<Lease>) {
        let spec = |l: &Option<Lease>| l.as_ref().and_then(|l| l.spec.clone());
        if spec(&lease) != spec(&self.known) {
            self.observed_at = Instant::now();
        }
        self.known = lease;
    }

    /// Writes `spec` over the Lease last seen (creating it if there was none),
    /// conditional on its resourceVersion. False on a conflict.
    async fn write(&mut self, spec: LeaseSpec) -> Result<bool, LeaseError> {
        let pp = PostParams::default();
        let result = match &self.known {
            Some(current) => {
                let lease = Lease {
                    metadata: current.metadata.clone(),
                    spec: Some(spec),
                };
                self.call("updating", self.api.replace(&self.config.name, &pp, &lease))
                    .await
            }
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.config.name.clone()),
                        namespace: Some(self.config.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(spec),
                };
                self.call("creating", self.api.create(&pp, &lease)).await
            }
        };
        match result {
            Ok(lease) => {
                self.observe(Some(lease));
                Ok(true)
            }
            Err(LeaseError::Api { source, .. }) if matches!(*source, kube::Error::Api(ref s) if s.code == 409) => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Hands the lease back so another replica takes over at once instead
    /// of after the lease duration.
    async fn release(&mut self) {
        // A conflict may mean our last renewal landed without our seeing the
        // answer (shutdown cut it short): read, and release what is still ours.
        for _ in 0..2 {
            let Some(spec) = self.known.as_ref().and_then(|l| l.spec.clone()) else {
                return;
            };
            if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
                tracing::info!("the lease changed hands already; nothing to release");
                return;
            }
            let result = match self.write(released(&spec, Timestamp::now())).await {
                Ok(true) => {
                    tracing::info!(identity = %self.config.identity, "released the lease");
                    return;
                }
                Ok(false) => self.read().await,
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "releasing the lease; others take over once it expires");
                return;
            }
        }
    }

    /// Bounds an API call: a hung request must not hold the loop.
    async fn call<T>(
        &self,
        what: &'static str,
        request: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, LeaseError> {
        let after = self.config.renew_deadline;
        match tokio::time::timeout(after, request).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(source)) => Err(LeaseError::Api {
                what,
                name: self.config.name.clone(),
                source: Box::new(source),
            }),
            Err(_) => Err(LeaseError::Timeout {
                what,
                name: self.config.name.clone(),
                after,
            }),
        }
    }
}

/// Completes at `at`; never without one.
async fn until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// `period` plus up to 20 %, so candidates do not poll in lockstep.
fn jittered(period: Duration) -> Duration {
    let mut byte = [0u8; 1];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut byte);
    period + period.mul_f64(0.2 * f64::from(byte[0]) / 255.0)
}

#[cfg(test)]
#[path = "lease_tests.rs"]
mod tests;
