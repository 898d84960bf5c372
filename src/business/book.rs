//! One pair's business figures: a sliding window per period (per segment inside), the events counted since
//! start, and the disparity alarms. Fed one masked event at a time; read as a [`BusinessStatsReply`].

use super::disparity::{self, AlarmState, DisparityRule};
use super::event::{Event, EventKind};
use super::window::{Counts, Window};
use super::{QuoteRef, Setup};
use crate::contract::{
    BusinessDisparity, BusinessStatsReply, DisparityStat, PeriodStats, QuoteDistance, SegmentEvents, SegmentStats,
};
use crate::tick::Pair;
use crate::time::format_ts;

/// A pair's business state.
#[derive(Debug, Clone)]
pub struct PairBook {
    /// One window per configured period.
    windows: Vec<Window>,
    /// `[period][segment]` alarm states.
    alarms: Vec<Vec<AlarmState>>,
    /// Events since start, `[segment][kind]`.
    events: Vec<[u64; 3]>,
    /// Disparity alarms raised since start, per segment.
    alarms_total: Vec<u64>,
    /// The latest event's time.
    last_ts_us: Option<i64>,
}

impl PairBook {
    /// An empty book for `setup`'s periods and segments.
    pub fn new(setup: &Setup) -> PairBook {
        let n = setup.segment_count();
        PairBook {
            windows: setup.periods.iter().map(|(_, us)| Window::new(*us, n)).collect(),
            alarms: vec![vec![AlarmState::default(); n]; setup.periods.len()],
            events: vec![[0; 3]; n],
            alarms_total: vec![0; n],
            last_ts_us: None,
        }
    }

    /// Counts one event of segment index `segment`; pushes the disparity alarms it raises.
    pub fn record(
        &mut self,
        pair: Pair,
        event: &Event,
        segment: usize,
        quote: Option<QuoteRef>,
        setup: &Setup,
        alarms: &mut Vec<BusinessDisparity>,
    ) {
        let kind = match event.kind {
            EventKind::Offered => 0,
            EventKind::Accepted => 1,
            EventKind::Rejected => 2,
        };
        if let Some(e) = self.events.get_mut(segment) {
            e[kind] += 1;
        }
        self.last_ts_us = Some(self.last_ts_us.map_or(event.ts_us, |t| t.max(event.ts_us)));
        let update = |c: &mut Counts| {
            let amount = event.amount.unwrap_or(0.0);
            match event.kind {
                EventKind::Offered => {
                    c.offers += 1;
                    c.offered_amount += amount;
                    match quote {
                        Some(q) => {
                            let to_forecast = (event.rate - q.forecast).abs() / q.sigma;
                            c.with_reference += 1;
                            c.mid_sum += (event.rate - q.mid).abs() / q.sigma;
                            c.forecast_sum += to_forecast;
                            c.forecast_sumsq += to_forecast * to_forecast;
                        }
                        None => c.without_reference += 1,
                    }
                }
                EventKind::Accepted => {
                    c.acceptances += 1;
                    c.accepted_amount += amount;
                }
                EventKind::Rejected => c.rejections += 1,
            }
        };
        let client = event.client.hash64();
        for w in &mut self.windows {
            w.record(event.ts_us, segment, client, update);
        }
        self.check_disparity(pair, event.ts_us, setup, alarms);
    }

    /// Updates every segment's alarm in every period (another segment's event moves the pooled side too).
    fn check_disparity(&mut self, pair: Pair, ts_us: i64, setup: &Setup, out: &mut Vec<BusinessDisparity>) {
        for (p, (window, (period, span_us))) in self.windows.iter().zip(&setup.periods).enumerate() {
            let counts = window.counts();
            for (s, alarm) in self.alarms[p].iter_mut().enumerate() {
                let d = disparity_of(&counts, s, &setup.rule);
                if alarm.update(d.statistic, ts_us, &setup.rule, *span_us)
                    && let Some(stat) = d.statistic
                {
                    if let Some(t) = self.alarms_total.get_mut(s) {
                        *t += 1;
                    }
                    out.push(BusinessDisparity {
                        pair,
                        ts: format_ts(ts_us),
                        segment: setup.segment_name(s).to_string(),
                        period: period.clone(),
                        statistic: stat,
                        uptake_z: d.uptake_z,
                        distance_z: d.distance_z,
                        threshold: setup.rule.threshold,
                        offers: counts[s].offers,
                        offers_others: others(&counts, s).offers,
                    });
                }
            }
        }
    }

    /// The figures of every period, as the stats reply carries them.
    pub fn stats(&self, pair: Pair, setup: &Setup) -> BusinessStatsReply {
        let events = self
            .events
            .iter()
            .zip(&self.alarms_total)
            .enumerate()
            .map(|(s, (e, alarms))| SegmentEvents {
                segment: setup.segment_name(s).to_string(),
                offered: e[0],
                accepted: e[1],
                rejected: e[2],
                disparity_alarms: *alarms,
            })
            .collect();
        let periods = self
            .windows
            .iter()
            .zip(&setup.periods)
            .zip(&self.alarms)
            .map(|((w, (period, _)), alarms)| {
                let counts = w.counts();
                let mut segments: Vec<SegmentStats> = counts
                    .iter()
                    .enumerate()
                    .map(|(s, c)| {
                        let mut d = disparity_of(&counts, s, &setup.rule);
                        d.alarm = alarms.get(s).is_some_and(AlarmState::standing);
                        segment_stats(setup.segment_name(s), c, w.clients(Some(s)).estimate(), Some(d))
                    })
                    .collect();
                let mut all = Counts::default();
                for c in &counts {
                    all.add(c);
                }
                segments.push(segment_stats("all", &all, w.clients(None).estimate(), None));
                PeriodStats {
                    period: period.clone(),
                    from: self.last_ts_us.and(w.from_us()).map(format_ts),
                    to: self.last_ts_us.map(format_ts),
                    segments,
                }
            })
            .collect();
        BusinessStatsReply {
            pair,
            last_event_ts: self.last_ts_us.map(format_ts),
            events,
            periods,
        }
    }
}

/// Every segment but `s`, pooled.
fn others(counts: &[Counts], s: usize) -> Counts {
    let mut o = Counts::default();
    for (i, c) in counts.iter().enumerate() {
        if i != s {
            o.add(c);
        }
    }
    o
}

fn disparity_of(counts: &[Counts], s: usize, rule: &DisparityRule) -> DisparityStat {
    let Some(seg) = counts.get(s) else {
        return DisparityStat {
            uptake_z: None,
            distance_z: None,
            statistic: None,
            alarm: false,
        };
    };
    let o = others(counts, s);
    let uptake_z = disparity::uptake_z(seg, &o, rule.min_count);
    let distance_z = disparity::distance_z(seg, &o, rule.min_count);
    DisparityStat {
        uptake_z,
        distance_z,
        statistic: disparity::statistic(uptake_z, distance_z),
        alarm: false,
    }
}

fn segment_stats(name: &str, c: &Counts, clients: f64, disparity: Option<DisparityStat>) -> SegmentStats {
    let per = |x: f64, n: u64| (n > 0).then(|| x / n as f64);
    SegmentStats {
        segment: name.to_string(),
        offers: c.offers,
        acceptances: c.acceptances,
        rejections: c.rejections,
        uptake: per(c.acceptances as f64, c.offers),
        offered_amount: c.offered_amount,
        accepted_amount: c.accepted_amount,
        amount_uptake: (c.offered_amount > 0.0).then(|| c.accepted_amount / c.offered_amount),
        distinct_clients: clients.round().max(0.0) as u64,
        quote_distance: QuoteDistance {
            offers_with_reference: c.with_reference,
            offers_without_reference: c.without_reference,
            mid_sigmas: per(c.mid_sum, c.with_reference),
            forecast_sigmas: per(c.forecast_sum, c.with_reference),
        },
        disparity,
    }
}
