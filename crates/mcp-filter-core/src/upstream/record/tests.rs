//! State-machine tests with an injected clock.

use super::*;
use crate::upstream::config::ErrorRateConfig;
use std::time::Duration;

const SEC: u64 = 1_000_000;
const MS: u64 = 1_000;
/// An arbitrary epoch-ish start, so nothing depends on time zero.
const T0: u64 = 1_700_000_000 * SEC;

fn cfg() -> UpstreamConfig {
    UpstreamConfig::default()
}

fn ok() -> CallResult {
    CallResult {
        outcome: Outcome::Success,
        latency: Duration::from_millis(10),
        probe: None,
    }
}

fn fail(kind: FailureKind) -> CallResult {
    CallResult {
        outcome: Outcome::Error(kind),
        latency: Duration::from_millis(50),
        probe: None,
    }
}

fn timeout() -> CallResult {
    fail(FailureKind::Timeout)
}

fn probe(mut r: CallResult, ticket: ProbeTicket) -> CallResult {
    r.probe = Some(ticket);
    r
}

fn ticket(a: Admission) -> ProbeTicket {
    match a {
        Admission::Probe(t) => t,
        other => panic!("expected a probe, got {other:?}"),
    }
}

/// Fails `n` times at `at`, returning the transition of the last failure.
fn fail_n(r: &mut UpstreamRecord, c: &BreakerConfig, n: u32, at: u64) -> Option<Transition> {
    let mut last = None;
    for _ in 0..n {
        last = r.record(c, at, 0, &timeout());
    }
    last
}

/// A record opened at T0 by consecutive failures.
fn opened(c: &BreakerConfig) -> UpstreamRecord {
    let mut r = UpstreamRecord::new(T0);
    let t = fail_n(&mut r, c, c.failure_threshold, T0).expect("opens");
    assert_eq!(t.to, StateKind::Open);
    r
}

#[test]
fn closed_opens_after_failure_threshold_consecutive_failures() {
    let c = cfg().breaker;
    let mut r = UpstreamRecord::new(T0 - 10 * SEC);
    assert_eq!(fail_n(&mut r, &c, 4, T0), None);
    assert_eq!(r.admit(&c, T0), (Admission::Allow, None));
    let t = r
        .record(&c, T0, 0, &timeout())
        .expect("fifth failure opens");
    assert_eq!(t.event_name(), "circuit.opened");
    assert_eq!(t.from, StateKind::Closed);
    assert_eq!(t.reason, TransitionReason::ConsecutiveFailures);
    assert_eq!(t.consecutive_failures, 5);
    assert_eq!(t.previous_state_ms, 10_000);
    assert_eq!(t.window_calls, 5);
    assert_eq!(t.window_failures, 5);
    assert_eq!(t.consecutive_opens, 1);
    assert_eq!(t.open_for_ms, Some(30_000));
    assert_eq!(
        r.state(),
        &BreakerState::Open {
            since_us: T0,
            until_us: T0 + 30 * SEC
        }
    );
}

#[test]
fn a_success_resets_the_consecutive_count() {
    let c = cfg().breaker;
    let mut r = UpstreamRecord::new(T0);
    assert_eq!(fail_n(&mut r, &c, 4, T0), None);
    assert_eq!(r.record(&c, T0, 0, &ok()), None);
    assert_eq!(fail_n(&mut r, &c, 4, T0), None);
    assert_eq!(r.state().kind(), StateKind::Closed);
    assert!(r.record(&c, T0, 0, &timeout()).is_some());
}

#[test]
fn jsonrpc_and_tool_errors_do_not_trip_by_default() {
    let c = cfg().breaker;
    let mut r = UpstreamRecord::new(T0);
    for _ in 0..20 {
        assert_eq!(r.record(&c, T0, 0, &fail(FailureKind::JsonrpcError)), None);
        assert_eq!(r.record(&c, T0, 0, &fail(FailureKind::ToolError)), None);
        assert_eq!(r.record(&c, T0, 0, &fail(FailureKind::Http4xx)), None);
    }
    assert_eq!(r.state().kind(), StateKind::Closed);
    assert_eq!(r.ignored_errors(), 60);
    assert_eq!(r.failures(), 0);
    assert!(r.healthy(&cfg()));
    // An ignored error proves the upstream answers: it resets the consecutive count.
    fail_n(&mut r, &c, 4, T0);
    r.record(&c, T0, 0, &fail(FailureKind::JsonrpcError));
    assert_eq!(r.consecutive_failures(), 0);
}

#[test]
fn every_default_failure_kind_counts() {
    let c = cfg().breaker;
    for kind in [
        FailureKind::ConnectFailure,
        FailureKind::Reset,
        FailureKind::Timeout,
        FailureKind::Http5xx,
    ] {
        let mut r = UpstreamRecord::new(T0);
        let mut t = None;
        for _ in 0..5 {
            t = r.record(&c, T0, 0, &fail(kind));
        }
        assert!(t.is_some(), "{kind:?}");
    }
}

#[test]
fn failure_kinds_are_configurable() {
    let mut c = cfg().breaker;
    c.failure_kinds = [FailureKind::JsonrpcError, FailureKind::Http4xx]
        .into_iter()
        .collect();
    let mut r = UpstreamRecord::new(T0);
    for _ in 0..10 {
        assert_eq!(r.record(&c, T0, 0, &timeout()), None);
    }
    for _ in 0..4 {
        r.record(&c, T0, 0, &fail(FailureKind::JsonrpcError));
    }
    let t = r.record(&c, T0, 0, &fail(FailureKind::Http429));
    assert_eq!(t.map(|t| t.to), Some(StateKind::Open), "429 is a 4xx");
}

#[test]
fn error_rate_opens_only_with_min_calls() {
    let mut c = cfg().breaker;
    c.error_rate = Some(ErrorRateConfig {
        threshold: 0.5,
        window_secs: 10,
        min_calls: 10,
    });
    let mut r = UpstreamRecord::new(T0);
    // Alternate so the consecutive rule never fires: 4 failures in 8 calls, under min_calls.
    for i in 0..4 {
        assert_eq!(r.record(&c, T0 + i * SEC, 0, &ok()), None);
        assert_eq!(r.record(&c, T0 + i * SEC, 0, &timeout()), None);
    }
    assert_eq!(r.record(&c, T0 + 5 * SEC, 0, &ok()), None);
    // 10th call, 5/10 = 0.5 >= threshold.
    let t = r.record(&c, T0 + 5 * SEC, 0, &timeout()).expect("opens");
    assert_eq!(t.reason, TransitionReason::ErrorRate);
    assert_eq!((t.window_calls, t.window_failures), (10, 5));
    assert_eq!(t.consecutive_failures, 1);
}

#[test]
fn error_rate_below_threshold_stays_closed() {
    let mut c = cfg().breaker;
    c.error_rate = Some(ErrorRateConfig {
        threshold: 0.5,
        window_secs: 10,
        min_calls: 4,
    });
    let mut r = UpstreamRecord::new(T0);
    for _ in 0..30 {
        r.record(&c, T0, 0, &ok());
        r.record(&c, T0, 0, &ok());
        assert_eq!(r.record(&c, T0, 0, &timeout()), None, "1/3 < 0.5");
    }
}

#[test]
fn error_rate_window_forgets_old_calls() {
    let mut c = cfg().breaker;
    c.error_rate = Some(ErrorRateConfig {
        threshold: 0.5,
        window_secs: 10,
        min_calls: 6,
    });
    let mut r = UpstreamRecord::new(T0);
    for _ in 0..3 {
        r.record(&c, T0, 0, &ok());
        r.record(&c, T0, 0, &timeout());
    }
    // That was 3/6 at T0 and would have opened; start over to test expiry.
    let mut r = UpstreamRecord::new(T0);
    for _ in 0..3 {
        r.record(&c, T0, 0, &timeout());
        r.record(&c, T0, 0, &ok());
    }
    // 6 calls, but the last was a success: no evaluation. 11 s later they are out of window.
    let later = T0 + 11 * SEC;
    let snap = r.snapshot("a", &cfg_with(&c), later);
    assert_eq!((snap.window_calls, snap.window_failures), (0, 0));
    assert_eq!(
        r.record(&c, later, 0, &timeout()),
        None,
        "1 call < min_calls"
    );
    // Within the window they still count.
    let mut r = UpstreamRecord::new(T0);
    for _ in 0..3 {
        r.record(&c, T0, 0, &timeout());
        r.record(&c, T0, 0, &ok());
    }
    let t = r
        .record(&c, T0 + 9 * SEC, 0, &timeout())
        .expect("4/7 in window");
    assert_eq!((t.window_calls, t.window_failures), (7, 4));
}

#[test]
fn window_slides_sub_window_by_sub_window() {
    let mut w = ErrorWindow::default();
    let width = SEC; // 10 s window
    for s in 0..10 {
        w.add(width, T0 + s * SEC, s % 2 == 0);
    }
    assert_eq!(w.totals(width, T0 + 9 * SEC), (10, 5));
    assert_eq!(w.totals(width, T0 + 10 * SEC), (9, 4), "second 0 dropped");
    w.add(width, T0 + 12 * SEC, true);
    assert_eq!(w.totals(width, T0 + 12 * SEC), (8, 4));
    // A late writer's call still lands in its (kept) sub-window.
    w.add(width, T0 + 5 * SEC, true);
    assert_eq!(w.totals(width, T0 + 12 * SEC), (9, 5));
    // Far past the window is dropped, far future clears.
    w.add(width, T0, true);
    assert_eq!(w.totals(width, T0 + 12 * SEC), (9, 5));
    w.add(width, T0 + 100 * SEC, false);
    assert_eq!(w.totals(width, T0 + 100 * SEC), (1, 0));
    // A different width (reconfiguration) reads empty and restarts.
    assert_eq!(w.totals(2 * SEC, T0 + 100 * SEC), (0, 0));
}

fn cfg_with(b: &BreakerConfig) -> UpstreamConfig {
    UpstreamConfig {
        breaker: b.clone(),
        ..UpstreamConfig::default()
    }
}

#[test]
fn open_rejects_with_retry_after_until_reset() {
    let c = cfg().breaker;
    let mut r = opened(&c);
    let before = r.clone();
    assert_eq!(
        r.admit(&c, T0),
        (
            Admission::Reject {
                retry_after_secs: 30
            },
            None
        )
    );
    assert_eq!(
        r.admit(&c, T0 + 29 * SEC + 1),
        (
            Admission::Reject {
                retry_after_secs: 1
            },
            None
        )
    );
    assert_eq!(
        r.admit(&c, T0 + 500 * MS).0,
        Admission::Reject {
            retry_after_secs: 30
        },
        "rounded up"
    );
    assert_eq!(r, before, "rejecting writes nothing");
}

#[test]
fn results_while_open_update_health_not_state() {
    let c = cfg().breaker;
    let mut r = opened(&c);
    let state = r.state().clone();
    assert_eq!(r.record(&c, T0 + SEC, 0, &ok()), None);
    assert_eq!(r.record(&c, T0 + SEC, 0, &timeout()), None);
    assert_eq!(r.state(), &state);
    assert_eq!(r.successes(), 1);
    assert_eq!(r.failures(), 6);
}

#[test]
fn open_to_half_open_to_closed() {
    let c = cfg().breaker;
    let mut r = opened(&c);
    let at = T0 + 30 * SEC;
    let (a, t) = r.admit(&c, at);
    let t = t.expect("half-opens");
    assert_eq!(t.event_name(), "circuit.half_opened");
    assert_eq!(t.reason, TransitionReason::ResetTimeoutElapsed);
    assert_eq!(t.previous_state_ms, 30_000);
    assert_eq!(t.from, StateKind::Open);
    let first = ticket(a);
    // Only one probe at a time (default).
    assert_eq!(
        r.admit(&c, at),
        (
            Admission::Reject {
                retry_after_secs: 15
            },
            None
        )
    );
    assert_eq!(r.record(&c, at + SEC, 0, &probe(ok(), first)), None);
    let second = ticket(r.admit(&c, at + SEC).0);
    assert_eq!(r.record(&c, at + 2 * SEC, 0, &probe(ok(), second)), None);
    let third = ticket(r.admit(&c, at + 2 * SEC).0);
    let t = r
        .record(&c, at + 3 * SEC, 0, &probe(ok(), third))
        .expect("third success closes");
    assert_eq!(t.event_name(), "circuit.closed");
    assert_eq!(t.reason, TransitionReason::ProbesSucceeded);
    assert_eq!(t.half_open_successes, 3);
    assert_eq!(t.previous_state_ms, 3_000);
    assert_eq!(t.consecutive_opens, 0);
    assert_eq!(r.admit(&c, at + 3 * SEC), (Admission::Allow, None));
    // The fresh closed breaker needs a full run of failures again.
    assert_eq!(fail_n(&mut r, &c, 4, at + 4 * SEC), None);
}

#[test]
fn probe_failure_reopens_with_backoff_up_to_the_cap() {
    let mut c = cfg().breaker;
    c.reset_timeout_ms = 1_000;
    c.max_reset_timeout_ms = Some(5_000);
    let mut r = opened(&c);
    let mut now = T0;
    for expected_ms in [2_000, 4_000, 5_000, 5_000] {
        let until = match r.state() {
            BreakerState::Open { until_us, .. } => *until_us,
            s => panic!("{s:?}"),
        };
        now = until;
        let t = ticket(r.admit(&c, now).0);
        let tr = r
            .record(&c, now + MS, 0, &probe(timeout(), t))
            .expect("probe failure reopens");
        assert_eq!(tr.event_name(), "circuit.opened");
        assert_eq!(tr.reason, TransitionReason::ProbeFailed);
        assert_eq!(tr.from, StateKind::HalfOpen);
        assert_eq!(tr.open_for_ms, Some(expected_ms));
        assert_eq!(tr.previous_state_ms, 1);
    }
    // Closing resets the backoff.
    let until = match r.state() {
        BreakerState::Open { until_us, .. } => *until_us,
        s => panic!("{s:?}"),
    };
    now = now.max(until);
    for _ in 0..3 {
        let t = ticket(r.admit(&c, now).0);
        r.record(&c, now, 0, &probe(ok(), t));
    }
    assert_eq!(r.state().kind(), StateKind::Closed);
    let t = fail_n(&mut r, &c, 5, now).expect("reopens");
    assert_eq!(t.open_for_ms, Some(1_000));
}

#[test]
fn without_a_cap_the_reset_timeout_is_constant() {
    let c = cfg().breaker;
    let mut r = opened(&c);
    let t = ticket(r.admit(&c, T0 + 30 * SEC).0);
    let tr = r.record(&c, T0 + 31 * SEC, 0, &probe(timeout(), t));
    assert_eq!(tr.and_then(|t| t.open_for_ms), Some(30_000));
}

#[test]
fn jitter_spreads_the_reset_timeout() {
    let mut c = cfg().breaker;
    c.jitter = 0.2;
    let open_ms = |random: u64| {
        let mut r = UpstreamRecord::new(T0);
        for _ in 0..4 {
            r.record(&c, T0, random, &timeout());
        }
        r.record(&c, T0, random, &timeout())
            .and_then(|t| t.open_for_ms)
            .expect("opens")
    };
    assert_eq!(open_ms(0), 24_000);
    assert_eq!(open_ms(1 << 63), 30_000);
    let max = open_ms(u64::MAX);
    assert!((35_999..=36_000).contains(&max), "{max}");
}

#[test]
fn half_open_admits_a_bounded_number_of_probes() {
    let mut c = cfg().breaker;
    c.half_open_max_probes = 3;
    let mut r = opened(&c);
    let at = T0 + 30 * SEC;
    let (a, t) = r.admit(&c, at);
    assert!(t.is_some());
    let tickets = [
        ticket(a),
        ticket(r.admit(&c, at).0),
        ticket(r.admit(&c, at).0),
    ];
    let slots: Vec<u8> = tickets.iter().map(|t| t.slot).collect();
    assert_eq!(slots, vec![0, 1, 2]);
    for _ in 0..5 {
        assert!(matches!(r.admit(&c, at + SEC).0, Admission::Reject { .. }));
    }
    // A finished probe frees its slot for exactly one more.
    r.record(&c, at + SEC, 0, &probe(ok(), tickets[1]));
    let again = ticket(r.admit(&c, at + SEC).0);
    assert_eq!(again.slot, 1);
    assert!(matches!(r.admit(&c, at + SEC).0, Admission::Reject { .. }));
}

#[test]
fn stale_probes_free_their_slot_and_their_late_result_is_ignored() {
    let c = cfg().breaker; // probe_timeout 15 s
    let mut r = opened(&c);
    let at = T0 + 30 * SEC;
    let stale = ticket(r.admit(&c, at).0);
    assert_eq!(
        r.admit(&c, at + 14 * SEC).0,
        Admission::Reject {
            retry_after_secs: 1
        }
    );
    let fresh = ticket(r.admit(&c, at + 15 * SEC).0);
    assert_eq!(fresh.slot, stale.slot, "slot reused");
    assert_ne!(fresh, stale);
    // The stale probe's failure arrives late: health counts it, the breaker does not.
    let failures = r.failures();
    assert_eq!(
        r.record(&c, at + 16 * SEC, 0, &probe(timeout(), stale)),
        None
    );
    assert_eq!(r.state().kind(), StateKind::HalfOpen);
    assert_eq!(r.failures(), failures + 1);
    // The fresh probe still holds its slot.
    assert!(matches!(
        r.admit(&c, at + 16 * SEC).0,
        Admission::Reject { .. }
    ));
    let t = r.record(&c, at + 17 * SEC, 0, &probe(timeout(), fresh));
    assert_eq!(t.map(|t| t.reason), Some(TransitionReason::ProbeFailed));
}

#[test]
fn non_probe_results_in_half_open_do_not_decide() {
    let c = cfg().breaker;
    let mut r = opened(&c);
    let at = T0 + 30 * SEC;
    let _probe = ticket(r.admit(&c, at).0);
    assert_eq!(r.record(&c, at, 0, &timeout()), None);
    assert_eq!(r.record(&c, at, 0, &ok()), None);
    assert_eq!(r.state().kind(), StateKind::HalfOpen);
    if let BreakerState::HalfOpen { successes, .. } = r.state() {
        assert_eq!(*successes, 0);
    }
    // A made-up ticket is not a probe either.
    let fake = ProbeTicket {
        slot: 200,
        started_us: at,
    };
    assert_eq!(r.record(&c, at, 0, &probe(timeout(), fake)), None);
}

#[test]
fn probe_result_after_close_counts_as_a_normal_call() {
    let mut c = cfg().breaker;
    c.half_open_max_probes = 2;
    c.success_threshold = 1;
    let mut r = opened(&c);
    let at = T0 + 30 * SEC;
    let a = ticket(r.admit(&c, at).0);
    let b = ticket(r.admit(&c, at).0);
    assert!(r.record(&c, at, 0, &probe(ok(), a)).is_some());
    assert_eq!(r.record(&c, at, 0, &probe(timeout(), b)), None);
    assert_eq!(r.consecutive_failures(), 1);
    assert_eq!(r.state().kind(), StateKind::Closed);
}

#[test]
fn healthy_flag_follows_consecutive_failures() {
    let c = cfg();
    let mut r = UpstreamRecord::new(T0);
    assert!(r.healthy(&c));
    r.record(&c.breaker, T0, 0, &timeout());
    r.record(&c.breaker, T0, 0, &timeout());
    assert!(r.healthy(&c));
    r.record(&c.breaker, T0, 0, &timeout());
    assert!(!r.healthy(&c), "unhealthy after 3");
    r.record(&c.breaker, T0, 0, &ok());
    assert!(r.healthy(&c), "healthy again on the first success");
}

#[test]
fn disabled_breaker_allows_everything_and_still_tracks_health() {
    let mut c = cfg();
    c.breaker.enabled = false;
    let mut r = UpstreamRecord::new(T0);
    assert_eq!(fail_n(&mut r, &c.breaker, 50, T0), None);
    assert_eq!(r.admit(&c.breaker, T0), (Admission::Allow, None));
    assert!(!r.healthy(&c));
    assert_eq!(r.latency().total(), 50);
}

#[test]
fn latency_includes_failures_and_timeouts() {
    let c = cfg().breaker;
    let mut r = UpstreamRecord::new(T0);
    for _ in 0..90 {
        r.record(&c, T0, 0, &ok());
    }
    for _ in 0..10 {
        let mut t = timeout();
        t.latency = Duration::from_secs(15);
        r.record(&c, T0, 0, &t);
        r.record(&c, T0, 0, &ok()); // keep it closed
    }
    let snap = r.snapshot("a", &cfg(), T0);
    assert_eq!(snap.latency_samples, 110);
    let p95 = snap.p95_ms.expect("samples");
    assert!(p95 > 13_000.0 && p95 < 17_000.0, "{p95}");
    let p50 = snap.p50_ms.expect("samples");
    assert!(p50 > 9.0 && p50 < 11.5, "{p50}");
}

#[test]
fn snapshot_serializes_the_health_view() {
    let c = cfg();
    let mut r = opened(&c.breaker);
    r.record(&c.breaker, T0 + SEC, 0, &fail(FailureKind::JsonrpcError));
    let snap = r.snapshot("weather", &c, T0 + 10 * SEC);
    let json = serde_json::to_value(&snap).expect("serializes");
    assert_eq!(json["instance"], "weather");
    assert_eq!(json["healthy"], true, "last call answered");
    assert_eq!(json["state"], "open");
    assert_eq!(json["retry_after_secs"], 20);
    assert_eq!(json["state_for_ms"], 10_000);
    assert_eq!(json["failures"], 5);
    assert_eq!(json["ignored_errors"], 1);
    assert_eq!(json["last_failure"], "timeout");
    assert_eq!(json["last_failure_ms"], T0 / 1_000);
    assert!(json["p99_ms"].as_f64().is_some());
    let fresh = UpstreamRecord::new(T0).snapshot("x", &c, T0);
    let json = serde_json::to_value(&fresh).expect("serializes");
    assert_eq!(json["state"], "closed");
    assert!(json["p50_ms"].is_null());
    assert!(json.get("retry_after_secs").is_none());
}

#[test]
fn transition_serializes_with_fixed_names() {
    let c = cfg().breaker;
    let mut r = UpstreamRecord::new(T0);
    let t = fail_n(&mut r, &c, 5, T0).expect("opens");
    let json = serde_json::to_value(&t).expect("serializes");
    assert_eq!(json["reason"], "consecutive_failures");
    assert_eq!(json["from"], "closed");
    assert_eq!(json["to"], "open");
    for reason in [
        TransitionReason::ConsecutiveFailures,
        TransitionReason::ErrorRate,
        TransitionReason::ResetTimeoutElapsed,
        TransitionReason::ProbeFailed,
        TransitionReason::ProbesSucceeded,
    ] {
        assert_eq!(
            serde_json::to_value(reason).expect("serializes"),
            reason.as_str()
        );
    }
}

// ---- encoding ----

fn records_in_every_state() -> Vec<UpstreamRecord> {
    let mut c = cfg().breaker;
    c.half_open_max_probes = 16;
    c.error_rate = Some(ErrorRateConfig::default());
    let mut out = vec![UpstreamRecord::new(T0)];
    let mut r = UpstreamRecord::new(T0);
    r.record(&c, T0, 0, &fail(FailureKind::JsonrpcError));
    r.record(&c, T0, 0, &ok());
    out.push(r.clone());
    fail_n(&mut r, &c, 5, T0 + SEC);
    out.push(r.clone());
    r.admit(&c, T0 + 60 * SEC);
    out.push(r.clone());
    for i in 0..15 {
        r.admit(&c, T0 + 61 * SEC + i);
    }
    out.push(r.clone());
    out
}

#[test]
fn encoding_round_trips_in_every_state() {
    for r in records_in_every_state() {
        let bytes = r.encode();
        assert_eq!(UpstreamRecord::decode(&bytes).as_ref(), Some(&r));
        assert!(bytes.len() < 300, "{} bytes", bytes.len());
    }
}

#[test]
fn encoded_size_is_small() {
    let fresh = UpstreamRecord::new(T0).encode().len();
    assert!(fresh <= 110, "fresh: {fresh}");
    let c = cfg().breaker;
    let mut busy = UpstreamRecord::new(T0);
    let mut rng = crate::trace::IdGenerator::new(3);
    for i in 0..20_000u64 {
        let mut call = if i % 10 == 0 { timeout() } else { ok() };
        call.latency = Duration::from_micros(200 + rng.next_u64() % 2_000_000);
        busy.record(&c, T0 + i * MS, 0, &call);
    }
    let busy = busy.encode().len();
    assert!(busy <= 240, "busy: {busy}");
}

#[test]
fn corrupt_values_decode_to_none() {
    let good = records_in_every_state().pop().expect("records").encode();
    assert_eq!(UpstreamRecord::decode(&[]), None);
    for cut in 0..good.len() {
        assert_eq!(
            UpstreamRecord::decode(&good[..cut]),
            None,
            "truncated at {cut}"
        );
    }
    let mut trailing = good.clone();
    trailing.push(0);
    assert_eq!(UpstreamRecord::decode(&trailing), None);
    let mut version = good.clone();
    version[0] = 2;
    assert_eq!(UpstreamRecord::decode(&version), None);
    let mut state = good.clone();
    state[1] = 9;
    assert_eq!(UpstreamRecord::decode(&state), None);
    // Overlong varint.
    assert_eq!(
        UpstreamRecord::decode(&[1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),
        None
    );
    // Random bytes never panic.
    let mut rng = crate::trace::IdGenerator::new(9);
    for _ in 0..2_000 {
        let len = (rng.next_u64() % 200) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        if let Some(b) = bytes.first_mut() {
            *b = ENCODING_VERSION;
        }
        let _ = UpstreamRecord::decode(&bytes);
    }
    // Single-byte flips of a valid record never panic either.
    for i in 0..good.len() {
        let mut flipped = good.clone();
        flipped[i] ^= 0x55;
        let _ = UpstreamRecord::decode(&flipped);
    }
}
