//! The catalogue scenario's workload, generated once from a fixed seed and
//! played to every strategy (and given whole to the oracle): the numbers
//! ([`Params`]), the live trace ([`Trace::generate`]) and the history the
//! forecast learns from ([`Trace::history`]). Pure: no I/O.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::scenarios::sizing::zipf_cdf;

/// Seconds in a day: the peak recurs at the same time of day.
const DAY: f64 = 86_400.0;

/// The scenario's numbers; offsets are seconds from the run's start.
#[derive(Debug, Clone)]
pub struct Params {
    pub templates: usize,
    pub secs: f64,
    /// Background designs per second, templates drawn Zipf(`zipf_s`).
    pub rate: f64,
    pub zipf_s: f64,
    /// Images per template: 1 to this, seeded, independent of popularity.
    pub max_images: u32,
    /// The daily peak: `peak_templates` templates from popularity rank
    /// `peak_first_rank` (0 = most popular) get `peak_rate` designs/s more
    /// between them, from `peak_at` for `peak_secs`.
    pub peak_templates: usize,
    pub peak_first_rank: usize,
    pub peak_rate: f64,
    pub peak_at: f64,
    pub peak_secs: f64,
    /// The scheduled launch: a new template gets `launch_rate` designs/s
    /// from `launch_at` for `launch_secs`; its window (set in advance with
    /// the forecast strategy) asks `launch_target` items for
    /// `launch_window_secs` from `launch_at`.
    pub launch_rate: f64,
    pub launch_at: f64,
    pub launch_secs: f64,
    pub launch_window_secs: f64,
    pub launch_target: u32,
    /// The unannounced burst: `burst` designs at once at `burst_at` on the
    /// least popular template.
    pub burst: usize,
    pub burst_at: f64,
    /// The measured start of the peak and of the launch.
    pub first_secs: f64,
    /// After the trace, the background alone goes on for this long: the
    /// day continuing, so that what the pools hold at the trace's end is
    /// used or retired before the copies are counted.
    pub tail_secs: f64,
    /// History: the peak on each of the `history_days` days before, and the
    /// background at `history_share` of its rate for `history_hours`.
    pub history_days: u32,
    pub history_hours: f64,
    pub history_share: f64,
    pub seed: u64,
}

impl Params {
    /// The scenario for `templates` templates over `secs` seconds, with
    /// `history_hours` of background history; events scale with `secs`.
    pub fn new(templates: usize, secs: f64, history_hours: f64) -> Params {
        Params {
            templates,
            secs,
            rate: 10.0,
            zipf_s: 1.1,
            max_images: 8,
            peak_templates: 20,
            // Mid popularity: rank 200 of 10^4, 40 of 2,000.
            peak_first_rank: templates / 50,
            peak_rate: 10.0,
            peak_at: (0.2 * secs).round(),
            peak_secs: (0.3 * secs).min(60.0).round(),
            launch_rate: 4.0,
            launch_at: (0.5 * secs).round(),
            launch_secs: (0.25 * secs).min(30.0).round(),
            launch_window_secs: 60.0,
            // The launch's rate x refill time (~0.5 s) is 2 items in
            // flight; 8 covers its Poisson bursts.
            launch_target: 8,
            burst: 30,
            burst_at: (0.8 * secs).round(),
            first_secs: 30.0,
            tail_secs: (0.8 * secs).min(120.0).round(),
            history_days: 14,
            history_hours,
            history_share: 0.1,
            seed: 20_261_207,
        }
    }
}

/// Why a design of the trace is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Background,
    Peak,
    Launch,
    Burst,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event {
    /// Seconds from the run's start.
    pub at: f64,
    /// Template index (`Trace::launch` for the launch template).
    pub template: usize,
    pub kind: Kind,
}

/// The trace and the catalogue it runs on.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// In order of time.
    pub events: Vec<Event>,
    /// Images of each template index, the launch template last.
    pub images: Vec<u32>,
    /// Template index by popularity rank.
    pub ranked: Vec<usize>,
    /// The peak subset's template indices.
    pub peak: Vec<usize>,
    pub launch: usize,
    pub burst_template: usize,
    /// The background after the trace (`tail_secs` from `secs`), in order;
    /// not part of the trace the oracle and the warm shares see.
    pub tail: Vec<Event>,
}

/// Seeded arrival times of a Poisson process of `rate` in `[from, to)`.
fn poisson(rng: &mut impl Rng, rate: f64, from: f64, to: f64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut t = from;
    loop {
        let u: f64 = rng.random();
        t += -(1.0 - u).ln() / rate;
        if t >= to {
            return out;
        }
        out.push(t);
    }
}

/// Independent streams of one seed, so that the history never moves the trace.
fn stream(p: &Params, which: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(p.seed.wrapping_mul(31).wrapping_add(which))
}

impl Trace {
    pub fn generate(p: &Params) -> Trace {
        let n = p.templates;
        let mut ranked: Vec<usize> = (0..n).collect();
        ranked.shuffle(&mut stream(p, 1));
        let mut rng = stream(p, 2);
        let images: Vec<u32> = (0..=n)
            .map(|_| rng.random_range(1..=p.max_images))
            .collect();
        let first = p.peak_first_rank.min(n.saturating_sub(p.peak_templates));
        let peak: Vec<usize> = ranked[first..(first + p.peak_templates).min(n)].to_vec();
        let (launch, burst_template) = (n, ranked[n - 1]);

        let mut events = Vec::new();
        let cdf = zipf_cdf(n, p.zipf_s);
        let mut rng = stream(p, 3);
        for at in poisson(&mut rng, p.rate, 0.0, p.secs) {
            let template = zipf(&mut rng, &cdf, &ranked);
            events.push(Event {
                at,
                template,
                kind: Kind::Background,
            });
        }
        let mut rng = stream(p, 4);
        let each = p.peak_rate / peak.len().max(1) as f64;
        for &template in &peak {
            for at in poisson(&mut rng, each, p.peak_at, p.peak_at + p.peak_secs) {
                events.push(Event {
                    at,
                    template,
                    kind: Kind::Peak,
                });
            }
        }
        let end = p.launch_at + p.launch_secs;
        for at in poisson(&mut stream(p, 5), p.launch_rate, p.launch_at, end) {
            events.push(Event {
                at,
                template: launch,
                kind: Kind::Launch,
            });
        }
        events.extend((0..p.burst).map(|_| Event {
            at: p.burst_at,
            template: burst_template,
            kind: Kind::Burst,
        }));
        events.sort_by(|a, b| a.at.total_cmp(&b.at));
        let mut rng = stream(p, 7);
        let tail = poisson(&mut rng, p.rate, p.secs, p.secs + p.tail_secs)
            .into_iter()
            .map(|at| Event {
                at,
                template: zipf(&mut rng, &cdf, &ranked),
                kind: Kind::Background,
            })
            .collect();
        Trace {
            events,
            images,
            ranked,
            peak,
            launch,
            burst_template,
            tail,
        }
    }

    /// The designs before the run, as (seconds from the run's start, all
    /// negative, template index): the peak subset's daily peak on each of
    /// the days before, and the light background. A daily peak lasts
    /// [`HISTORY_PEAK`] (the run plays a minute of it), from
    /// [`HISTORY_PEAK_BEFORE`] before the live peak's time of day: so the
    /// 15-minute slot of the week the live peak starts in is covered whole,
    /// wherever in its slot the run happens to start -- as a real peak at
    /// 09:00 covers the 09:00 slot.
    pub fn history(&self, p: &Params) -> Vec<(f64, usize)> {
        let mut out = Vec::new();
        let mut rng = stream(p, 6);
        let each = p.peak_rate / self.peak.len().max(1) as f64;
        for day in 1..=p.history_days {
            let from = p.peak_at - HISTORY_PEAK_BEFORE - f64::from(day) * DAY;
            for &template in &self.peak {
                for at in poisson(&mut rng, each, from, from + HISTORY_PEAK) {
                    out.push((at, template));
                }
            }
        }
        let cdf = zipf_cdf(p.templates, p.zipf_s);
        let rate = p.rate * p.history_share;
        for at in poisson(&mut rng, rate, -p.history_hours * 3600.0, 0.0) {
            out.push((at, zipf(&mut rng, &cdf, &self.ranked)));
        }
        out
    }

    /// Objects of the whole catalogue (the launch template too) at one item
    /// per template.
    pub fn objects_at_one_item(&self) -> u64 {
        self.images.iter().map(|&o| u64::from(o)).sum()
    }

    /// The peak subset's designs in the peak's first `first_secs`.
    pub fn in_peak_start(&self, p: &Params, e: &Event) -> bool {
        self.peak.contains(&e.template) && e.at >= p.peak_at && e.at < p.peak_at + p.first_secs
    }

    /// The launch template's designs in the launch's first `first_secs`.
    pub fn in_launch_start(&self, p: &Params, e: &Event) -> bool {
        e.template == self.launch && e.at >= p.launch_at && e.at < p.launch_at + p.first_secs
    }
}

/// How long each day's peak lasted in the history, and how long before the
/// live peak's time of day it began.
pub const HISTORY_PEAK: f64 = 2700.0;
pub const HISTORY_PEAK_BEFORE: f64 = 900.0;

fn zipf(rng: &mut impl Rng, cdf: &[f64], ranked: &[usize]) -> usize {
    let u: f64 = rng.random();
    ranked[cdf.partition_point(|&c| c < u).min(ranked.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_seed_one_trace() {
        let p = Params::new(2_000, 75.0, 6.0);
        assert_eq!(Trace::generate(&p), Trace::generate(&p));
        assert_eq!(
            Trace::generate(&p).history(&p),
            Trace::generate(&p).history(&p)
        );
    }

    #[test]
    fn the_events_are_where_the_params_put_them() {
        let p = Params::new(10_000, 240.0, 24.0);
        let t = Trace::generate(&p);
        let count = |k: Kind| t.events.iter().filter(|e| e.kind == k).count() as f64;
        // Poisson counts within 5 standard deviations of their means.
        let near = |n: f64, mean: f64| (n - mean).abs() < 5.0 * mean.sqrt();
        assert!(near(count(Kind::Background), p.rate * p.secs));
        assert!(near(count(Kind::Peak), p.peak_rate * p.peak_secs));
        assert!(near(count(Kind::Launch), p.launch_rate * p.launch_secs));
        assert_eq!(count(Kind::Burst) as usize, p.burst);
        assert!(t.events.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(t.events.iter().all(|e| e.at >= 0.0 && e.at < p.secs));
        assert!(near(t.tail.len() as f64, p.rate * p.tail_secs));
        assert!(t.tail.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(t
            .tail
            .iter()
            .all(|e| e.kind == Kind::Background && e.at >= p.secs && e.template != t.launch));
        assert!(t.images.iter().all(|&o| (1..=p.max_images).contains(&o)));
        assert_eq!(t.images.len(), p.templates + 1);
        assert_eq!(t.peak.len(), p.peak_templates);
        assert!(!t.peak.contains(&t.burst_template));
        // The launch template appears only in its launch.
        assert!(t
            .events
            .iter()
            .all(|e| (e.template == t.launch) == (e.kind == Kind::Launch)));
        // The events do not overlap one another.
        assert!(p.peak_at + p.peak_secs <= p.launch_at);
        assert!(p.launch_at + p.launch_secs <= p.burst_at);
    }

    #[test]
    fn the_quick_events_do_not_overlap_either() {
        let p = Params::new(2_000, 75.0, 6.0);
        assert!(p.peak_at + p.peak_secs <= p.launch_at);
        assert!(p.launch_at + p.launch_secs <= p.burst_at);
        assert!(p.burst_at < p.secs);
    }

    #[test]
    fn the_history_is_before_the_run_and_small() {
        let p = Params::new(10_000, 240.0, 24.0);
        let t = Trace::generate(&p);
        let h = t.history(&p);
        assert!(h.iter().all(|&(at, _)| at < 0.0 && at > -15.0 * DAY));
        assert!(h.len() < 500_000, "{} rows", h.len());
        // Each day's peak covers the live peak's time of day, from 15 min
        // before it (the background left out).
        let peaks_only = Params {
            history_hours: 0.0,
            ..p.clone()
        };
        let yesterday: Vec<f64> = t
            .history(&peaks_only)
            .iter()
            .filter(|(at, _)| *at > -DAY - 3600.0 && *at < -DAY + 3600.0)
            .map(|(at, _)| at + DAY)
            .collect();
        assert!(!yesterday.is_empty());
        assert!(yesterday
            .iter()
            .all(|&at| at >= p.peak_at - HISTORY_PEAK_BEFORE
                && at < p.peak_at - HISTORY_PEAK_BEFORE + HISTORY_PEAK + 1e-9));
        assert!(
            yesterday.iter().any(|&at| at < p.peak_at)
                && yesterday.iter().any(|&at| at > p.peak_at + 900.0)
        );
    }
}
