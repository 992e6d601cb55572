//! One deployment's passive health: outstanding requests, peak-EWMA latency, and outlier
//! ejection (Envoy-style), all behind one small lock per deployment.
//!
//! - **Ejection.** `consecutive_failures` failures in a row, or a failure share of at least
//!   `failure_rate` over `min_requests` or more attempts within one `interval`, eject the
//!   deployment for a cooldown: `base_ejection`, doubled by each ejection that follows, at most
//!   `max_ejection`. A deployment that stays healthy for `max_ejection` starts over at the base.
//! - **Rest.** A throttled deployment (429 with a `Retry-After`) rests for that long (at most
//!   `max_ejection`), without growing its next cooldown.
//! - **Half-open.** When the cooldown is over, one request (the probe) is let through; its success
//!   brings the deployment back, its failure ejects it again for a longer cooldown. Requests sent
//!   to an ejected deployment because every deployment is ejected count the same way.
//! - **Latency.** Peak EWMA (as Finagle and `tower::load::PeakEwma`): a slower sample replaces the
//!   estimate at once, faster ones pull it down with a time constant of [`DECAY`], and while no
//!   sample comes the estimate decays towards zero, so an idle deployment is tried again.
//!
//! Time is `tokio::time::Instant`, so tests drive cooldowns with a paused clock.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::OutlierSettings;

/// The time constant of the latency estimate.
pub(crate) const DECAY: Duration = Duration::from_secs(10);

/// The latency assumed for a deployment before its first sample.
const DEFAULT_RTT: Duration = Duration::from_millis(100);

/// Whether a deployment may be sent a request now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Serving.
    Open,
    /// Cooldown over: one probe may go.
    Probe,
    /// Ejected (or a probe is already on its way).
    Closed,
}

/// What an attempt's outcome says about the deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// It answered.
    Success,
    /// 429, 5xx, timeout, connection failure.
    Failure {
        /// A throttled deployment's `Retry-After`.
        rest: Option<Duration>,
    },
    /// Says nothing about the deployment (the client went away, a request the gateway refused).
    Neutral,
}

/// How an attempt was let through to its deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pass {
    /// The deployment was serving.
    Open,
    /// The half-open probe.
    Probe,
    /// Sent although ejected, because every candidate was.
    Forced,
}

/// The state of a deployment, as metrics and tests read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeploymentState {
    /// Serving.
    Serving,
    /// Ejected until its cooldown is over.
    Ejected,
    /// Cooldown over: the next request to it is a probe (or one is on its way).
    HalfOpen,
}

impl DeploymentState {
    /// The gauge value: 0 serving, 1 ejected, 2 half-open.
    pub fn gauge(self) -> i64 {
        match self {
            DeploymentState::Serving => 0,
            DeploymentState::Ejected => 1,
            DeploymentState::HalfOpen => 2,
        }
    }
}

#[derive(Debug)]
struct State {
    /// Peak-EWMA latency, seconds, as of `rtt_at`.
    rtt: f64,
    rtt_at: Instant,
    consecutive: u32,
    window_start: Instant,
    window_total: u32,
    window_failed: u32,
    ejected_until: Option<Instant>,
    probing: bool,
    /// Ejections since the deployment was last healthy for `max_ejection`.
    ejections: u32,
    restored_at: Option<Instant>,
    last_failure: Option<Instant>,
}

/// A deployment's health. Shared by every request to the deployment.
#[derive(Debug)]
pub(crate) struct Health {
    outstanding: AtomicUsize,
    state: Mutex<State>,
}

/// The result of recording an outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Change {
    /// The deployment was just ejected (or put to rest).
    pub(crate) ejected: bool,
    /// The deployment was just brought back.
    pub(crate) restored: bool,
}

impl Health {
    pub(crate) fn new() -> Self {
        let now = Instant::now();
        Health {
            outstanding: AtomicUsize::new(0),
            state: Mutex::new(State {
                rtt: DEFAULT_RTT.as_secs_f64(),
                rtt_at: now,
                consecutive: 0,
                window_start: now,
                window_total: 0,
                window_failed: 0,
                ejected_until: None,
                probing: false,
                ejections: 0,
                restored_at: None,
                last_failure: None,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state consistent, so a poisoned lock's state is usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Requests sent and not finished (a stream counts until its end).
    pub(crate) fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    pub(crate) fn started(&self) {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn finished(&self) {
        // Never below zero, whatever the order of drops.
        let _ = self
            .outstanding
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    pub(crate) fn admission(&self, now: Instant) -> Admission {
        let s = self.state();
        match s.ejected_until {
            None => Admission::Open,
            Some(until) if now < until || s.probing => Admission::Closed,
            Some(_) => Admission::Probe,
        }
    }

    /// Claims the half-open probe; `false` when the deployment is not half-open or another
    /// request holds the probe.
    pub(crate) fn claim_probe(&self, now: Instant) -> bool {
        let mut s = self.state();
        match s.ejected_until {
            Some(until) if now >= until && !s.probing => {
                s.probing = true;
                true
            }
            _ => false,
        }
    }

    /// When the deployment last failed (`None`: never).
    pub(crate) fn last_failure(&self) -> Option<Instant> {
        self.state().last_failure
    }

    pub(crate) fn state_at(&self, now: Instant) -> DeploymentState {
        let s = self.state();
        match s.ejected_until {
            None => DeploymentState::Serving,
            Some(until) if now < until => DeploymentState::Ejected,
            Some(_) => DeploymentState::HalfOpen,
        }
    }

    /// The peak-EWMA latency estimate, decayed to `now`.
    pub(crate) fn latency(&self, now: Instant) -> f64 {
        let mut s = self.state();
        decay(&mut s, now, 0.0);
        s.rtt
    }

    /// Records one attempt's outcome; `latency` is its time to the first byte (successes and
    /// timeouts feed the latency estimate, fast failures would flatter it). Requests already on
    /// their way when the deployment was ejected neither bring it back nor extend its cooldown:
    /// only a probe, or a request sent to it while ejected, decides.
    pub(crate) fn record(
        &self,
        verdict: Verdict,
        latency: Option<Duration>,
        pass: Pass,
        settings: &OutlierSettings,
        now: Instant,
    ) -> Change {
        let mut s = self.state();
        if let Some(sample) = latency {
            let sample = sample.as_secs_f64();
            if sample > s.rtt {
                s.rtt = sample;
                s.rtt_at = now;
            } else {
                decay(&mut s, now, sample);
            }
        }
        if now.saturating_duration_since(s.window_start) >= settings.interval {
            s.window_start = now;
            s.window_total = 0;
            s.window_failed = 0;
        }
        if pass == Pass::Probe {
            // Whatever the outcome, this probe is over.
            s.probing = false;
        }
        let trial = pass != Pass::Open;
        let mut change = Change::default();
        match verdict {
            Verdict::Neutral => {}
            Verdict::Success => {
                s.consecutive = 0;
                s.window_total = s.window_total.saturating_add(1);
                if trial && s.ejected_until.take().is_some() {
                    s.restored_at = Some(now);
                    change.restored = true;
                }
            }
            Verdict::Failure { rest } => {
                s.consecutive = s.consecutive.saturating_add(1);
                s.window_total = s.window_total.saturating_add(1);
                s.window_failed = s.window_failed.saturating_add(1);
                s.last_failure = Some(now);
                let cooling = s.ejected_until.is_some_and(|until| now < until);
                let half_open = s.ejected_until.is_some_and(|until| now >= until);
                let by_count = settings.consecutive_failures > 0
                    && s.consecutive >= settings.consecutive_failures;
                let by_rate = settings.failure_rate > 0.0
                    && s.window_total >= settings.min_requests.max(1)
                    && f64::from(s.window_failed)
                        >= settings.failure_rate * f64::from(s.window_total);
                if !cooling && ((half_open && trial) || by_count || by_rate) {
                    eject(&mut s, settings, now);
                    change.ejected = true;
                }
                if let Some(rest) = rest {
                    let until = now + rest.min(settings.max_ejection);
                    if s.ejected_until.is_none_or(|u| u < until) {
                        s.ejected_until = Some(until);
                        change.ejected = true;
                    }
                }
            }
        }
        change
    }
}

/// Pulls the estimate towards `sample` by the time passed since the last update.
fn decay(s: &mut State, now: Instant, sample: f64) {
    let elapsed = now.saturating_duration_since(s.rtt_at).as_secs_f64();
    let w = (-elapsed / DECAY.as_secs_f64()).exp();
    s.rtt = s.rtt * w + sample * (1.0 - w);
    s.rtt_at = now;
}

/// Ejects for the next cooldown in the doubling series.
fn eject(s: &mut State, settings: &OutlierSettings, now: Instant) {
    let healthy_long = s
        .restored_at
        .is_some_and(|at| now.saturating_duration_since(at) >= settings.max_ejection);
    if healthy_long {
        s.ejections = 0;
    }
    s.ejections = s.ejections.saturating_add(1);
    let cooldown = settings
        .base_ejection
        .saturating_mul(1u32 << (s.ejections - 1).min(16))
        .min(settings.max_ejection);
    s.ejected_until = Some(now + cooldown);
    s.consecutive = 0;
    s.window_start = now;
    s.window_total = 0;
    s.window_failed = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> OutlierSettings {
        OutlierSettings {
            consecutive_failures: 3,
            failure_rate: 0.0,
            min_requests: 10,
            interval: Duration::from_secs(10),
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(100),
        }
    }

    const FAIL: Verdict = Verdict::Failure { rest: None };

    #[tokio::test(start_paused = true)]
    async fn consecutive_failures_eject_with_a_cooldown_that_grows_on_repeat() {
        let h = Health::new();
        let s = settings();
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(h.admission(t0), Admission::Open, "failure {i}");
            h.record(FAIL, None, Pass::Open, &s, t0);
        }
        assert_eq!(h.admission(t0), Admission::Closed);
        assert_eq!(h.state_at(t0), DeploymentState::Ejected);
        let t1 = t0 + Duration::from_secs(30);
        assert_eq!(
            h.admission(t1 - Duration::from_millis(1)),
            Admission::Closed
        );
        assert_eq!(h.admission(t1), Admission::Probe);
        assert!(h.claim_probe(t1));
        assert!(!h.claim_probe(t1), "one probe at a time");
        assert_eq!(
            h.admission(t1),
            Admission::Closed,
            "others wait for the probe"
        );
        // The probe fails: ejected again, for twice as long.
        let change = h.record(FAIL, None, Pass::Probe, &s, t1);
        assert!(change.ejected);
        assert_eq!(h.admission(t1 + Duration::from_secs(59)), Admission::Closed);
        let t2 = t1 + Duration::from_secs(60);
        assert!(h.claim_probe(t2));
        // Then twice again would be 120 s: capped at 100 s.
        h.record(FAIL, None, Pass::Probe, &s, t2);
        assert_eq!(h.admission(t2 + Duration::from_secs(99)), Admission::Closed);
        let t3 = t2 + Duration::from_secs(100);
        assert!(h.claim_probe(t3));
        let change = h.record(Verdict::Success, None, Pass::Probe, &s, t3);
        assert!(change.restored);
        assert_eq!(h.admission(t3), Admission::Open);
        // Healthy for max_ejection: the next ejection starts over at the base.
        let t4 = t3 + Duration::from_secs(100);
        for _ in 0..3 {
            h.record(FAIL, None, Pass::Open, &s, t4);
        }
        assert_eq!(h.admission(t4 + Duration::from_secs(30)), Admission::Probe);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_already_on_their_way_do_not_decide() {
        let h = Health::new();
        let s = settings();
        let now = Instant::now();
        for _ in 0..3 {
            h.record(FAIL, None, Pass::Open, &s, now);
        }
        // Ten more that were in flight fail: the cooldown does not grow…
        for _ in 0..10 {
            assert!(!h.record(FAIL, None, Pass::Open, &s, now).ejected);
        }
        assert_eq!(h.admission(now + Duration::from_secs(30)), Admission::Probe);
        // …and one that succeeds does not end it.
        assert!(
            !h.record(Verdict::Success, None, Pass::Open, &s, now)
                .restored
        );
        assert_eq!(h.admission(now), Admission::Closed);
        // A request sent while every deployment was ejected does.
        assert!(
            h.record(Verdict::Success, None, Pass::Forced, &s, now)
                .restored
        );
        assert_eq!(h.admission(now), Admission::Open);
    }

    #[test]
    fn a_success_resets_the_count() {
        let h = Health::new();
        let s = settings();
        let now = Instant::now();
        for _ in 0..5 {
            h.record(FAIL, None, Pass::Open, &s, now);
            h.record(FAIL, None, Pass::Open, &s, now);
            h.record(Verdict::Success, None, Pass::Open, &s, now);
        }
        assert_eq!(h.admission(now), Admission::Open);
    }

    #[test]
    fn a_failure_rate_ejects_once_enough_requests_are_seen() {
        let h = Health::new();
        let s = OutlierSettings {
            consecutive_failures: 0,
            failure_rate: 0.5,
            min_requests: 10,
            ..settings()
        };
        let now = Instant::now();
        for _ in 0..4 {
            h.record(Verdict::Success, None, Pass::Open, &s, now);
            h.record(FAIL, None, Pass::Open, &s, now);
        }
        assert_eq!(h.admission(now), Admission::Open, "8 attempts are too few");
        h.record(Verdict::Success, None, Pass::Open, &s, now);
        h.record(FAIL, None, Pass::Open, &s, now);
        assert_eq!(h.admission(now), Admission::Closed, "5 of 10 failed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_deployment_rests_for_its_retry_after() {
        let h = Health::new();
        let s = settings();
        let now = Instant::now();
        let throttled = Verdict::Failure {
            rest: Some(Duration::from_secs(7)),
        };
        assert!(h.record(throttled, None, Pass::Open, &s, now).ejected);
        assert_eq!(h.admission(now + Duration::from_secs(6)), Admission::Closed);
        assert_eq!(h.admission(now + Duration::from_secs(7)), Admission::Probe);
        // A Retry-After longer than max_ejection is capped.
        let h = Health::new();
        let throttled = Verdict::Failure {
            rest: Some(Duration::from_secs(3600)),
        };
        h.record(throttled, None, Pass::Open, &s, now);
        assert_eq!(
            h.admission(now + Duration::from_secs(100)),
            Admission::Probe
        );
    }

    #[test]
    fn a_neutral_probe_frees_the_probe() {
        let h = Health::new();
        let s = settings();
        let now = Instant::now();
        for _ in 0..3 {
            h.record(FAIL, None, Pass::Open, &s, now);
        }
        let later = now + Duration::from_secs(30);
        assert!(h.claim_probe(later));
        h.record(Verdict::Neutral, None, Pass::Probe, &s, later);
        assert_eq!(h.admission(later), Admission::Probe);
    }

    #[tokio::test(start_paused = true)]
    async fn latency_is_a_peak_ewma() {
        let h = Health::new();
        let s = settings();
        let now = Instant::now();
        h.record(
            Verdict::Success,
            Some(Duration::from_millis(500)),
            Pass::Open,
            &s,
            now,
        );
        assert!(
            (h.latency(now) - 0.5).abs() < 1e-9,
            "a peak is taken at once"
        );
        let later = now + DECAY;
        h.record(
            Verdict::Success,
            Some(Duration::from_millis(100)),
            Pass::Open,
            &s,
            later,
        );
        let expected = 0.5 * (-1f64).exp() + 0.1 * (1.0 - (-1f64).exp());
        assert!((h.latency(later) - expected).abs() < 1e-9);
        assert!(
            h.latency(later + DECAY * 10) < 0.001,
            "idle: decays towards 0"
        );
    }

    #[test]
    fn outstanding_never_goes_below_zero() {
        let h = Health::new();
        h.started();
        h.finished();
        h.finished();
        assert_eq!(h.outstanding(), 0);
    }
}
