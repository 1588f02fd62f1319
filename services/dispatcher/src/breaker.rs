//! Circuit breakers, one per endpoint, kept by the dispatcher that owns the endpoint's
//! partition (so no coordination is needed). Pure state, no I/O.
//!
//! Closed: tasks go out; `threshold` retryable failures in a row open it. Open: tasks wait,
//! spending no attempts, until `open_for` has passed. Then one probe goes out: success closes
//! the breaker, failure opens it again.

use std::collections::HashMap;
use std::time::Duration;

use time::OffsetDateTime;

use hookstream_model::ids::EndpointId;

/// Where an endpoint's breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    Closed {
        failures: u32,
    },
    Open {
        until: OffsetDateTime,
    },
    /// A probe is out; others wait for its result.
    Probing,
}

impl Circuit {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Closed { .. } => "closed",
            Self::Open { .. } => "open",
            Self::Probing => "half_open",
        }
    }
}

/// What to do with an endpoint's next task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Send it.
    Send,
    /// Send it as the probe that decides whether the breaker closes.
    Probe,
    /// Do not send; try again at this time.
    WaitUntil(OffsetDateTime),
}

/// A change of state worth recording (for the API and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub to: Circuit,
}

/// The breakers of every endpoint this dispatcher serves.
#[derive(Debug)]
pub struct Breakers {
    threshold: u32,
    open_for: Duration,
    circuits: HashMap<EndpointId, Circuit>,
}

impl Breakers {
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            open_for,
            circuits: HashMap::new(),
        }
    }

    /// Takes up an endpoint's breaker where it was recorded, the first time this dispatcher sees
    /// the endpoint: after a restart or a rebalance the new owner carries on instead of starting
    /// closed. A recorded probe that never reported is treated as open until now (probe again).
    pub fn seed(&mut self, endpoint: EndpointId, recorded: Circuit) {
        self.circuits.entry(endpoint).or_insert(match recorded {
            Circuit::Probing => Circuit::Open {
                until: OffsetDateTime::UNIX_EPOCH,
            },
            other => other,
        });
    }

    /// Whether `endpoint`'s next task may go out now.
    pub fn admit(
        &mut self,
        endpoint: EndpointId,
        now: OffsetDateTime,
    ) -> (Admission, Option<Transition>) {
        let circuit = self
            .circuits
            .entry(endpoint)
            .or_insert(Circuit::Closed { failures: 0 });
        match *circuit {
            Circuit::Closed { .. } => (Admission::Send, None),
            Circuit::Open { until } if now < until => (Admission::WaitUntil(until), None),
            Circuit::Open { .. } => {
                *circuit = Circuit::Probing;
                (
                    Admission::Probe,
                    Some(Transition {
                        to: Circuit::Probing,
                    }),
                )
            }
            // One probe at a time; the others look again shortly.
            Circuit::Probing => (Admission::WaitUntil(now + Duration::from_secs(1)), None),
        }
    }

    /// The probe admitted last was not sent after all: the next task probes instead.
    pub fn probe_not_sent(&mut self, endpoint: EndpointId) {
        if let Some(circuit @ Circuit::Probing) = self.circuits.get_mut(&endpoint) {
            *circuit = Circuit::Open {
                until: OffsetDateTime::UNIX_EPOCH,
            };
        }
    }

    /// Records the result of a task that was sent. Only failures the endpoint is to blame for
    /// (those that are retried) count against it; a 2xx, or a permanent 4xx, counts as an answer.
    pub fn record(
        &mut self,
        endpoint: EndpointId,
        failed: bool,
        now: OffsetDateTime,
    ) -> Option<Transition> {
        let circuit = self
            .circuits
            .entry(endpoint)
            .or_insert(Circuit::Closed { failures: 0 });
        let before = *circuit;
        *circuit = match (before, failed) {
            (Circuit::Closed { .. }, false) | (Circuit::Probing, false) => {
                Circuit::Closed { failures: 0 }
            }
            (Circuit::Closed { failures }, true) if failures + 1 < self.threshold => {
                Circuit::Closed {
                    failures: failures + 1,
                }
            }
            (Circuit::Closed { .. }, true) | (Circuit::Probing, true) => Circuit::Open {
                until: now + self.open_for,
            },
            // A task admitted before the breaker opened finished late; the breaker stays open.
            (open @ Circuit::Open { .. }, _) => open,
        };
        let changed = before.name() != circuit.name()
            || matches!((before, *circuit), (Circuit::Probing, Circuit::Open { .. }));
        changed.then_some(Transition { to: *circuit })
    }

    /// Up to `most` endpoints whose breaker is not closed, and whether there are more: probing
    /// ones first, then the latest to open (a breaker this dispatcher still holds for a
    /// partition that moved on is old, and goes last).
    pub fn open_endpoints(&self, most: usize) -> (Vec<EndpointId>, bool) {
        let mut open: Vec<(Option<OffsetDateTime>, EndpointId)> = self
            .circuits
            .iter()
            .filter_map(|(id, circuit)| match circuit {
                Circuit::Closed { .. } => None,
                Circuit::Probing => Some((None, *id)),
                Circuit::Open { until } => Some((Some(*until), *id)),
            })
            .collect();
        // `None` (probing) first, then the latest `until`.
        open.sort_by(|a, b| match (a.0, b.0) {
            (None, None) => a.1.cmp(&b.1),
            (None, Some(_)) => std::cmp::Ordering::Less,
            (Some(_), None) => std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => y.cmp(&x).then(a.1.cmp(&b.1)),
        });
        let more = open.len() > most;
        (
            open.into_iter().take(most).map(|(_, id)| id).collect(),
            more,
        )
    }

    /// Endpoints whose breaker is not closed.
    pub fn open_count(&self) -> usize {
        self.circuits
            .values()
            .filter(|c| !matches!(c, Circuit::Closed { .. }))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(seconds)
    }

    #[test]
    fn it_opens_after_the_threshold_of_failures_in_a_row() {
        let mut b = Breakers::new(3, Duration::from_secs(60));
        let ep = EndpointId::generate();
        assert_eq!(b.admit(ep, at(0)).0, Admission::Send);
        assert_eq!(b.record(ep, true, at(0)), None);
        assert_eq!(b.record(ep, true, at(1)), None);
        let opened = b.record(ep, true, at(2)).expect("opens");
        assert_eq!(opened.to, Circuit::Open { until: at(62) });
        assert_eq!(b.admit(ep, at(30)).0, Admission::WaitUntil(at(62)));
        assert_eq!(b.open_count(), 1);
    }

    #[test]
    fn a_success_resets_the_count() {
        let mut b = Breakers::new(3, Duration::from_secs(60));
        let ep = EndpointId::generate();
        b.record(ep, true, at(0));
        b.record(ep, true, at(1));
        b.record(ep, false, at(2));
        b.record(ep, true, at(3));
        b.record(ep, true, at(4));
        assert_eq!(
            b.admit(ep, at(5)).0,
            Admission::Send,
            "two in a row since the success"
        );
    }

    #[test]
    fn after_the_open_period_one_probe_decides() {
        let mut b = Breakers::new(1, Duration::from_secs(60));
        let ep = EndpointId::generate();
        b.record(ep, true, at(0));
        let (admission, transition) = b.admit(ep, at(60));
        assert_eq!(admission, Admission::Probe);
        assert_eq!(transition.map(|t| t.to), Some(Circuit::Probing));
        // Only one probe at a time.
        assert!(matches!(b.admit(ep, at(60)).0, Admission::WaitUntil(_)));
        // The probe fails: open again for the full period.
        assert_eq!(
            b.record(ep, true, at(61)).map(|t| t.to),
            Some(Circuit::Open { until: at(121) })
        );
        // The next probe succeeds: closed.
        assert_eq!(b.admit(ep, at(121)).0, Admission::Probe);
        assert_eq!(
            b.record(ep, false, at(122)).map(|t| t.to),
            Some(Circuit::Closed { failures: 0 })
        );
        assert_eq!(b.admit(ep, at(122)).0, Admission::Send);
        assert_eq!(b.open_count(), 0);
    }

    #[test]
    fn a_new_owner_carries_on_from_the_recorded_state() {
        let mut b = Breakers::new(3, Duration::from_secs(60));
        let open = EndpointId::generate();
        b.seed(open, Circuit::Open { until: at(100) });
        assert_eq!(b.admit(open, at(50)).0, Admission::WaitUntil(at(100)));
        let probing = EndpointId::generate();
        b.seed(probing, Circuit::Probing);
        assert_eq!(
            b.admit(probing, at(50)).0,
            Admission::Probe,
            "a lost probe is sent again"
        );
        // Seeding does not overwrite what this dispatcher already knows.
        b.seed(open, Circuit::Closed { failures: 0 });
        assert!(matches!(b.admit(open, at(50)).0, Admission::WaitUntil(_)));
    }

    #[test]
    fn a_probe_not_sent_is_admitted_again() {
        let mut b = Breakers::new(1, Duration::from_secs(60));
        let endpoint = EndpointId::generate();
        b.record(endpoint, true, at(0));
        assert_eq!(b.admit(endpoint, at(61)).0, Admission::Probe);
        b.probe_not_sent(endpoint);
        assert_eq!(b.admit(endpoint, at(62)).0, Admission::Probe);
        // Only a probe is taken back: a closed breaker stays closed.
        let closed = EndpointId::generate();
        b.probe_not_sent(closed);
        assert_eq!(b.admit(closed, at(62)).0, Admission::Send);
    }

    #[test]
    fn endpoints_have_their_own_breakers() {
        let mut b = Breakers::new(1, Duration::from_secs(60));
        let broken = EndpointId::generate();
        let fine = EndpointId::generate();
        b.record(broken, true, at(0));
        assert!(matches!(b.admit(broken, at(1)).0, Admission::WaitUntil(_)));
        assert_eq!(b.admit(fine, at(1)).0, Admission::Send);
    }

    #[test]
    fn open_endpoints_list_probing_then_the_latest_opened_within_the_bound() {
        let mut b = Breakers::new(1, Duration::from_secs(60));
        let (old, newer, probing, closed) = (
            EndpointId::generate(),
            EndpointId::generate(),
            EndpointId::generate(),
            EndpointId::generate(),
        );
        b.seed(old, Circuit::Open { until: at(100) });
        b.seed(newer, Circuit::Open { until: at(900) });
        b.seed(closed, Circuit::Closed { failures: 0 });
        b.seed(probing, Circuit::Open { until: at(0) });
        b.admit(probing, at(10));
        assert_eq!(b.open_endpoints(10), (vec![probing, newer, old], false));
        assert_eq!(b.open_endpoints(2), (vec![probing, newer], true));
    }
}
