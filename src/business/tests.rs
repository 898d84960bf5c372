//! The business core end to end: exact figures on a small known set, segments and `other`, quote
//! distances, the disparity alarm on seeded synthetic events, and a verdict for any payload.

use super::*;
use proptest::prelude::*;

const T0: i64 = 1_709_546_400_000_000; // 2024-03-04T10:00:00Z
const MIN: i64 = 60_000_000;

fn usdmxn() -> Pair {
    Pair::parse("USDMXN").unwrap()
}

fn key() -> MaskKey {
    MaskKey::new(b"unit-test masking key, 32 bytes!").unwrap()
}

fn business() -> Business {
    Business::new(&BusinessConfig::default(), Some(key()), 8).unwrap()
}

fn event(ts_us: i64, client: &str, kind: &str, rate: f64, amount: Option<f64>, segment: Option<&str>) -> Vec<u8> {
    let mut v = serde_json::json!({
        "ts": crate::time::format_ts(ts_us), "client": client, "event": kind, "rate": rate,
    });
    if let Some(a) = amount {
        v["amount"] = a.into();
    }
    if let Some(s) = segment {
        v["segment"] = s.into();
    }
    serde_json::to_vec(&v).unwrap()
}

fn feed(b: &mut Business, payload: &[u8], quote: Option<QuoteRef>) -> Vec<BusinessOutput> {
    let mut out = Vec::new();
    b.on_event(usdmxn(), payload, None, quote, &mut out);
    out
}

#[test]
fn exact_figures_per_segment_and_period() {
    let mut b = business();
    let q = QuoteRef::new(17.0, 17.01, 0.02);
    // retail: 3 offers (one before any forecast), 2 accepted; sme: 1 offer, rejected; "vip" and none: other.
    let events = [
        (0, "CLIENT-A", "offered", 17.02, Some(1000.0), Some("retail"), None),
        (1, "CLIENT-A", "accepted", 17.02, Some(1000.0), Some("retail"), q),
        (2, "CLIENT-B", "offered", 17.04, Some(3000.0), Some("retail"), q),
        (3, "CLIENT-B", "accepted", 17.04, Some(3000.0), Some("retail"), q),
        (4, "CLIENT-C", "offered", 17.00, None, Some("retail"), q),
        (5, "CLIENT-D", "offered", 17.05, Some(500.0), Some("sme"), q),
        (6, "CLIENT-D", "rejected", 17.05, Some(500.0), Some("sme"), q),
        (7, "CLIENT-E", "offered", 17.01, Some(100.0), Some("vip"), q),
        (8, "CLIENT-F", "offered", 17.01, Some(100.0), None, q),
        (9, "CLIENT-F", "accepted", 17.01, Some(100.0), None, q),
    ];
    for (m, client, kind, rate, amount, segment, quote) in events {
        let quote = if m == 0 { None } else { quote };
        // Each counted event comes back in its masked form (for the data lake), and nothing else.
        let out = feed(&mut b, &event(T0 + m * MIN, client, kind, rate, amount, segment), quote);
        let [BusinessOutput::Accepted(e)] = out.as_slice() else {
            panic!("{out:?}")
        };
        let want_segment = segment.filter(|s| *s != "vip").unwrap_or("other");
        assert_eq!(
            (e.event, e.rate, e.amount, e.segment.as_str()),
            (kind, rate, amount, want_segment)
        );
        assert_eq!(e.client.len(), 32);
        assert!(!serde_json::to_string(e).unwrap().contains(client), "{e:?}");
    }
    let s = b.stats(usdmxn()).unwrap();
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["type"], "business_stats");
    assert_eq!(s.last_event_ts.as_deref(), Some("2024-03-04T10:09:00.000Z"));
    let names: Vec<&str> = s.events.iter().map(|e| e.segment.as_str()).collect();
    assert_eq!(names, ["retail", "sme", "corporate", "other"]);
    assert_eq!(
        (s.events[0].offered, s.events[0].accepted, s.events[0].rejected),
        (3, 2, 0)
    );
    assert_eq!((s.events[3].offered, s.events[3].accepted), (2, 1));
    assert_eq!(s.periods.len(), 2);
    for p in &s.periods {
        let seg = |name: &str| p.segments.iter().find(|x| x.segment == name).unwrap();
        let retail = seg("retail");
        assert_eq!((retail.offers, retail.acceptances, retail.rejections), (3, 2, 0));
        assert_eq!(retail.uptake, Some(2.0 / 3.0));
        assert_eq!(retail.offered_amount, 4000.0);
        assert_eq!(retail.amount_uptake, Some(1.0));
        assert_eq!(retail.distinct_clients, 3);
        let d = retail.quote_distance;
        assert_eq!((d.offers_with_reference, d.offers_without_reference), (2, 1));
        // |17.04 − 17| / 0.02 = 2 and |17.00 − 17| = 0: mean 1; from the forecast 1.5 and 0.5: mean 1.
        assert!((d.mid_sigmas.unwrap() - 1.0).abs() < 1e-9, "{d:?}");
        assert!((d.forecast_sigmas.unwrap() - 1.0).abs() < 1e-9, "{d:?}");
        let sme = seg("sme");
        assert_eq!((sme.offers, sme.rejections, sme.uptake), (1, 1, Some(0.0)));
        assert_eq!(sme.amount_uptake, Some(0.0));
        assert_eq!(seg("corporate").offers, 0);
        assert_eq!(seg("corporate").uptake, None);
        let other = seg("other");
        assert_eq!((other.offers, other.acceptances, other.distinct_clients), (2, 1, 2));
        let all = seg("all");
        assert_eq!((all.offers, all.acceptances, all.rejections), (6, 3, 1));
        assert_eq!(all.uptake, Some(0.5));
        assert_eq!(all.distinct_clients, 6);
        assert!(all.disparity.is_none());
        // Too few offers for any disparity statistic.
        assert_eq!(retail.disparity.unwrap().statistic, None);
    }
    assert_eq!(s.periods[0].period, "1h");
    assert_eq!(s.periods[1].period, "1d");
    assert!(b.stats(Pair::parse("EURUSD").unwrap()).is_none());
}

#[test]
fn refusals_are_records_with_reasons_and_pseudonyms() {
    let mut b = business();
    let out = feed(
        &mut b,
        br#"{"client":"CLIENT-7731-SECRET","ts":"yesterday","event":"offered","rate":17}"#,
        None,
    );
    let [BusinessOutput::Quarantined(q)] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert_eq!(q.reason, "bad_ts");
    assert_eq!(q.client, Some(key().pseudonym("CLIENT-7731-SECRET").to_string()));
    let text = String::from_utf8(crate::contract::to_json_vec(q)).unwrap();
    assert!(!text.contains("7731"), "{text}");
    assert!(text.starts_with(r#"{"type":"business_quarantined""#), "{text}");
    // Future-dated against the arrival.
    let mut out = Vec::new();
    b.on_event(
        usdmxn(),
        &event(T0 + 3_600 * 1_000_000, "C", "offered", 17.0, None, None),
        Some(T0),
        None,
        &mut out,
    );
    assert!(matches!(&out[..], [BusinessOutput::Quarantined(q)] if q.reason == "future_ts"));
    let refused: BTreeMap<_, _> = b.refused().collect();
    assert_eq!(refused[&RefusalReason::BadTs], 1);
    assert_eq!(refused[&RefusalReason::FutureTs], 1);
    assert!(b.stats(usdmxn()).is_none(), "refused events start no book");

    // No key: every event is refused, none is hashed.
    let mut nokey = Business::new(&BusinessConfig::default(), None, 8).unwrap();
    let out = feed(
        &mut nokey,
        &event(T0, "CLIENT-7731-SECRET", "offered", 17.0, None, None),
        None,
    );
    let [BusinessOutput::Quarantined(q)] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert_eq!(q.reason, "no_mask_key");
    assert_eq!(q.client, None);
    assert!(q.detail.contains("CAMBIO_MASK_KEY"), "{}", q.detail);

    // The pair limit.
    let mut one = Business::new(&BusinessConfig::default(), Some(key()), 1).unwrap();
    feed(&mut one, &event(T0, "C", "offered", 17.0, None, None), None);
    let mut out = Vec::new();
    one.on_event(
        Pair::parse("EURUSD").unwrap(),
        &event(T0, "C", "offered", 1.1, None, None),
        None,
        None,
        &mut out,
    );
    assert!(matches!(&out[..], [BusinessOutput::Quarantined(q)] if q.reason == "too_many_pairs"));
}

/// A seeded stream: every segment gets offers; `accept(segment, u)` decides acceptance from a uniform draw.
fn synthetic(b: &mut Business, n: usize, seed: u64, accept: impl Fn(usize, f64) -> bool) -> Vec<BusinessDisparity> {
    let mut s = seed;
    let mut uniform = move || {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    let segments = ["retail", "sme", "corporate"];
    let q = QuoteRef::new(17.0, 17.0, 0.02);
    let mut alarms = Vec::new();
    for i in 0..n {
        let seg = i % 3;
        let ts = T0 + i as i64 * 1_000_000;
        let client = format!("C{}", (uniform() * 500.0) as u32);
        // Quotes at a distance of about 1 sigma for everyone.
        let rate = 17.0 + 0.02 * (0.5 + uniform());
        let mut out = feed(
            b,
            &event(ts, &client, "offered", rate, Some(1000.0), Some(segments[seg])),
            q,
        );
        if accept(seg, uniform()) {
            out.extend(feed(
                b,
                &event(ts, &client, "accepted", rate, Some(1000.0), Some(segments[seg])),
                q,
            ));
        }
        alarms.extend(out.into_iter().filter_map(|o| match o {
            BusinessOutput::Disparity(d) => Some(d),
            BusinessOutput::Accepted(_) => None,
            BusinessOutput::Quarantined(q) => panic!("{q:?}"),
        }));
    }
    alarms
}

#[test]
fn a_biased_segment_raises_the_disparity_alarm_once() {
    let mut b = business();
    // sme clients take the rate 20% of the time, the others 60%.
    let alarms = synthetic(&mut b, 1_500, 7, |seg, u| u < if seg == 1 { 0.2 } else { 0.6 });
    let sme: Vec<_> = alarms.iter().filter(|a| a.segment == "sme").collect();
    // One alarm per period, not one per event.
    assert_eq!(sme.len(), 2, "{alarms:?}");
    assert!(
        sme.iter().all(|a| a.statistic < -4.0 && a.uptake_z.is_some()),
        "{sme:?}"
    );
    // The pooled others include sme, so the others may cross too; sme is the one furthest out.
    for a in &alarms {
        let own = sme.iter().find(|s| s.period == a.period).unwrap();
        assert!(own.statistic.abs() >= a.statistic.abs(), "{alarms:?}");
    }
    let stats = b.stats(usdmxn()).unwrap();
    assert_eq!(stats.events[1].disparity_alarms, 2);
    let d = stats.periods[0].segments[1].disparity.unwrap();
    assert!(d.alarm && d.statistic.unwrap() < -4.0, "{d:?}");
}

#[test]
fn balanced_segments_raise_nothing() {
    for seed in 1..=5 {
        let mut b = business();
        let alarms = synthetic(&mut b, 1_500, seed, |_, u| u < 0.5);
        assert!(alarms.is_empty(), "seed {seed}: {alarms:?}");
        let stats = b.stats(usdmxn()).unwrap();
        let d = stats.periods[0].segments[0].disparity.unwrap();
        assert!(d.uptake_z.is_some() && d.distance_z.is_some() && !d.alarm, "{d:?}");
    }
}

#[test]
fn quote_ref_comes_from_the_one_step_horizon() {
    assert_eq!(QuoteRef::new(17.0, 17.0, 0.0), None);
    assert_eq!(QuoteRef::new(f64::NAN, 17.0, 0.1), None);
    let q = QuoteRef::new(17.0, 17.1, 0.1).unwrap();
    assert_eq!((q.mid, q.forecast, q.sigma), (17.0, 17.1, 0.1));
}

proptest! {
    /// Any bytes get a verdict: counted, or refused with a reason; never a panic.
    #[test]
    fn a_verdict_for_any_payload(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut b = business();
        let out = feed(&mut b, &bytes, QuoteRef::new(17.0, 17.0, 0.01));
        let counted = b.stats(usdmxn()).is_some();
        prop_assert!(counted || matches!(&out[..], [BusinessOutput::Quarantined(_)]));
    }

    /// Event-shaped JSON with arbitrary field values: a verdict too, and a refusal never quotes a value.
    #[test]
    fn a_verdict_for_any_event_shaped_payload(
        ts in prop_oneof![Just("2024-03-04T10:00:00Z".to_string()), "\\PC{0,30}"],
        kind in prop_oneof![Just("offered".to_string()), Just("accepted".to_string()), "\\PC{0,12}"],
        rate in prop_oneof![Just(serde_json::json!(17.1)), any::<f64>().prop_map(|f| serde_json::json!(f)), Just(serde_json::json!("x"))],
        segment in proptest::option::of("\\PC{0,20}"),
    ) {
        let mut b = business();
        let mut v = serde_json::json!({"ts": ts, "client": "SECRET-ID-42", "event": kind, "rate": rate});
        if let Some(s) = segment {
            v["segment"] = s.into();
        }
        let out = feed(&mut b, &serde_json::to_vec(&v).unwrap(), None);
        for o in &out {
            if let BusinessOutput::Quarantined(q) = o {
                prop_assert!(!q.detail.contains("SECRET-ID-42"));
            }
        }
        prop_assert!(b.stats(usdmxn()).is_some() || !out.is_empty());
    }
}
