//! When a model node's partial batch leaves: the batching policy.
//!
//! A full batch (`max_batch_size` rows) always leaves at once. A partial one leaves by
//! the node's policy:
//!
//! - [`BatchPolicy::Fixed`] (`max_wait_ms` given): when its oldest row has waited
//!   `max_wait` (or, with `max_wait` zero, as soon as one of the node's replicas is free),
//!   or earlier when a row's deadline needs it.
//! - [`BatchPolicy::Adaptive`] (the default): when a replica is free, at once, unless
//!   waiting is expected to serve more rows per second of replica time. It measures the
//!   cost of a batch as a function of its size, `c(b) = α + β·b` (α: what a batch costs
//!   whatever its size, the forward pass's fixed part and the trip to the replica and
//!   back; β: each row), fitted online to the batches it sent; and the rate `λ` at which
//!   rows arrive. Sending the `q` queued rows now costs `α/q + β` of replica time per
//!   row; idling `w` first and sending `q + λw` rows costs `(w + α)/(q + λw) + β`, which
//!   is less exactly when `q < α·λ`: when more rows arrive during one fixed cost than are
//!   queued. It waits when they are at least twice as many (`q ≤ α·λ/2`: a wait of `α`
//!   then at least triples the batch, so the gain is worth the latency; nearer the
//!   break-even point the gain is small and the latency is not), at most `α` (so a batch at most doubles its cost for the
//!   rows it gathers), no longer than the batch takes to fill at `λ`, never past the
//!   time a row's deadline needs it to leave, and it stops waiting once rows stop
//!   coming (no row for three mean gaps between arrivals, `3/λ`): clients that send
//!   their next request when the last is answered come back together, and the wait
//!   gathers them into one batch instead of a small one and the rest (the pattern of
//!   `max_wait_ms` 0 under such load: 1 + 15, 4 + 12). At low load `λ` is small and a lone
//!   row leaves at once; under load rows gather while the replicas compute, as with
//!   `max_wait_ms` 0, and waits happen only where batches stay small for a model whose
//!   fixed cost dominates, and only while the node's replicas computed at least half of
//!   the time over the last 100 ms: waiting spends the rows' latency to save replica
//!   time, which buys nothing while the replicas are idle half the time (on a small
//!   machine under load the cores, not the replicas, are then what limits; waiting
//!   there cost digits 1.2-1.5x the p99 of `max_wait_ms 0` at 16 connections for no
//!   throughput). While every replica is busy, a partial batch does not wait
//!   for one to be free once its oldest row has waited one mean forward pass: it queues
//!   behind them ([`SendReason::Behind`]), as long as fewer than one batch per replica
//!   waits in line; with a line that long its rows keep gathering until a batch is done
//!   (a replica rings when it starts the last batch in its queue). Without the first
//!   rule, at saturation (full batches queued several deep at the replicas) the partial
//!   rows waited for the whole queue to drain, and MiniLM's p99 at 64 and 256
//!   connections was 1.5 to 1.8 times the fixed waits'; without the second, small
//!   partial batches queued one after another, and digits at 256 connections ran at 0.74
//!   of `max_wait_ms 5` (BENCHMARKS.md, "Batching").
//!
//!   Before all of this, a partial batch that is expected to fill within 2 ms waits to
//!   fill where that has been seen to pay: rows keep coming after a full batch leaves, so
//!   at least two batches' worth circulate (fill mode, [`Fill`]). On a machine whose
//!   cores are all busy, full batches let the threads that make the rows sleep between
//!   them instead of losing their core at a scheduler tick (digits at 64 connections:
//!   p99 2.0-2.3 ms at `max_wait_ms 1`, whose batches fill, against 4.2-4.4 ms at
//!   `max_wait_ms 0`).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How a model node's partial batches leave (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchPolicy {
    /// Decide from measured costs and arrivals (the default).
    Adaptive,
    /// Leave when the oldest row has waited this long; zero: when a replica is free.
    Fixed(Duration),
}

/// Why a batch left: what `/metrics` counts per node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendReason {
    /// It was full.
    Full,
    /// A replica was free and waiting would not pay (adaptive), or `max_wait_ms` is 0.
    Now,
    /// After an adaptive wait.
    Waited,
    /// Its oldest row had waited `max_wait_ms`.
    MaxWait,
    /// Every replica was busy, fewer than one batch per replica waited in line, and its
    /// oldest row had waited one mean forward pass: it queued behind them (adaptive).
    Behind,
    /// A row's deadline needed it to leave.
    Deadline,
}

impl SendReason {
    /// Every reason, in the order of [`SendReason::index`].
    pub const ALL: [SendReason; 6] = [
        SendReason::Full,
        SendReason::Now,
        SendReason::Waited,
        SendReason::MaxWait,
        SendReason::Behind,
        SendReason::Deadline,
    ];

    /// The label `/metrics` gives it.
    pub fn label(self) -> &'static str {
        match self {
            SendReason::Full => "full",
            SendReason::Now => "now",
            SendReason::Waited => "waited",
            SendReason::MaxWait => "max_wait",
            SendReason::Behind => "behind",
            SendReason::Deadline => "deadline",
        }
    }

    /// Its position in [`SendReason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What the adaptive policy decided for the partial batch at the front of the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Send it now.
    Send(SendReason),
    /// Wait until then (a new decision is taken at the latest then, or when rows come).
    WaitUntil(Instant),
    /// As `WaitUntil`, and the wait begins now (for counting waits).
    StartWait(Instant),
}

/// Arrivals are counted over this window to estimate their rate.
const RATE_WINDOW: Duration = Duration::from_millis(100);

/// A partial batch waits only if this many times its rows arrive during one fixed cost.
const WAIT_GAIN: f64 = 2.0;

/// A wait ends early when no row came for this many mean gaps between arrivals.
const QUIET_GAPS: f64 = 3.0;

/// A partial batch waits only while the node's replicas were computing at least this
/// share of the time lately: waiting trades the rows' latency for replica time, which
/// limits nothing while the replicas are idle half the time.
const WAIT_BUSY: f64 = 0.5;

/// The replicas' busy share is measured over at least this long.
const BUSY_MIN_SPAN: Duration = Duration::from_millis(10);

/// The longest wait for the rows the latest batch answered, as a share of its forward
/// pass (see [`Adaptive::returning`]).
const RETURN_SHARE: f64 = 0.1;

/// A partial batch waits to fill (fill mode, see [`Fill`]) only if it is expected to fill
/// within this, and waits at most this long.
const FILL_CAP: Duration = Duration::from_millis(2);

/// While fill mode is off, it is tried again (a probe) at most this often.
const FILL_PROBE: Duration = Duration::from_millis(100);

/// After a full batch left, the next row is late (the batch took every row in
/// circulation) if it comes more than this many mean gaps between arrivals later.
const STALL_GAPS: f64 = 8.0;

/// The weight of the latest observation in fill mode's share of stalls: about the last
/// fifty full batches count.
const STALL_WEIGHT: f64 = 0.02;

/// A wait shorter than this is not worth a timer.
const MIN_WAIT: Duration = Duration::from_micros(20);

/// The weight of the past in the cost fit: each batch counts this much less than the
/// next (the fit follows a model whose cost changes, e.g. with the machine's load).
const COST_DECAY: f64 = 0.97;

/// The adaptive policy's measurements, per batching operator.
#[derive(Debug, Default)]
pub struct Adaptive {
    /// Rows that arrived in the last [`RATE_WINDOW`], by arrival.
    arrivals: VecDeque<(Instant, usize)>,
    arrived: usize,
    cost: CostFit,
    /// The latest arrival.
    last_arrival: Option<Instant>,
    /// The wait in progress: until when at the latest, the gap between arrivals that
    /// ends it early, and the batch it is for (its oldest row: chunk key, row).
    waiting: Option<Wait>,
    /// Samples of the node's total forward-pass time over the last [`RATE_WINDOW`]
    /// (when, total), one per millisecond at most.
    computed: VecDeque<(Instant, Duration)>,
    /// The share of the time the node's replicas computed over those samples, once
    /// they span [`BUSY_MIN_SPAN`].
    busy: Option<f64>,
    /// The latest batch that finished: when, its rows, its forward pass's time.
    last_done: Option<Done>,
    /// Rows that arrived since it finished.
    since_done: usize,
    /// Fill mode: whether partial batches wait to fill.
    fill: Fill,
}

/// Fill mode: on a saturated machine, batches that fill.
///
/// Under load on a machine whose cores are all busy (a 2-core machine serving 64
/// connections to a client on the same machine), sending what is queued whenever a
/// replica is free makes many small batches, and every thread of the path stays busy;
/// busy threads lose their core at a scheduler tick and wait for the next one, and about
/// one request in seventy waited a tick (4 ms): digits at 64 connections had a p99 of
/// 4.2-4.4 ms at `max_wait_ms 0` and 2.0-2.3 ms at `max_wait_ms 1`, whose batches fill
/// to 32 and leave the HTTP threads idle between them, at 0.90-1.03 of the throughput
/// (BENCHMARKS.md, "Batching"). That pays only while at least two full batches' worth
/// of rows circulate: where one full batch holds every row (diamond's `max_batch_size`
/// of 64 at 64 connections), every row waits for all the others each round, and the
/// fixed waits lost 12-21% of the throughput there.
///
/// So a partial batch that is expected to fill within [`FILL_CAP`] at the current rate of
/// arrivals, with at least two rows queued, waits to fill: a probe, at most once per
/// [`FILL_PROBE`] while the mode is off. The wait ends when the batch is full (it leaves
/// as a full batch), or as any adaptive wait when rows stop coming for [`QUIET_GAPS`]
/// mean gaps, or at twice the expected fill time (at most [`FILL_CAP`]), or for a
/// deadline. A probe that ends without filling ends the try. After a full batch leaves,
/// the next arrival tells whether rows keep coming: one more than [`STALL_GAPS`] mean
/// gaps later is a stall (that batch took every row in circulation). A probe whose full
/// batch is followed in time by the next row turns the mode on; while on, every partial
/// batch with a replica free waits to fill, and the mode turns off once stalls are over
/// half of the recent observations, weighed over many batches ([`STALL_WEIGHT`]): rows
/// come in bursts from the HTTP threads, and a third of them came late at digits' 64
/// connections, where the mode pays, against 86% at diamond's 64, where one batch holds
/// every row. A wait that ends unfilled while the mode is on is not counted either way
/// (counted as a stall, it held the share near one half at digits and the mode flipped).
#[derive(Debug, Default)]
struct Fill {
    on: bool,
    /// The recent share of stalls, while on.
    stalls: f64,
    /// While off: no probe before then.
    next_probe: Option<Instant>,
    /// The wait in progress is a fill wait.
    waiting: bool,
    /// A full batch left then, from a fill wait or in fill mode: the next arrival is timed.
    full_left: Option<Instant>,
}

#[derive(Clone, Copy, Debug)]
struct Wait {
    until: Instant,
    gap: Duration,
    oldest: (u64, usize),
    /// Enough rows queued to end the wait at once.
    enough: usize,
}

#[derive(Clone, Copy, Debug)]
struct Done {
    at: Instant,
    rows: usize,
    took: Duration,
}

impl Adaptive {
    /// `rows` arrived at `now`.
    pub fn arrived(&mut self, now: Instant, rows: usize) {
        if let Some(left) = self.fill.full_left.take() {
            // Did rows keep coming after the full batch, or had it taken them all?
            self.forget(now);
            let rate = self.arrived as f64 / RATE_WINDOW.as_secs_f64();
            let late = rate <= 0.0 || now.saturating_duration_since(left).as_secs_f64() * rate > STALL_GAPS;
            self.fill_observed(now, late);
        }
        self.arrivals.push_back((now, rows));
        self.arrived += rows;
        self.since_done += rows;
        self.last_arrival = Some(now);
        self.forget(now);
    }

    fn forget(&mut self, now: Instant) {
        while let Some(&(at, rows)) = self.arrivals.front() {
            if now.saturating_duration_since(at) <= RATE_WINDOW {
                break;
            }
            self.arrivals.pop_front();
            self.arrived -= rows;
        }
    }

    /// The node's forward passes (on every replica and worker) have taken `computed`
    /// in all by `now`; it has `replicas` replicas.
    pub fn computed(&mut self, now: Instant, computed: Duration, replicas: usize) {
        if self.computed.back().is_none_or(|&(at, _)| now.saturating_duration_since(at) >= Duration::from_millis(1)) {
            self.computed.push_back((now, computed));
        }
        while self.computed.len() > 2 && self.computed.get(1).is_some_and(|&(at, _)| now - at >= RATE_WINDOW) {
            self.computed.pop_front();
        }
        self.busy = self.computed.front().and_then(|&(at, then)| {
            let span = now.saturating_duration_since(at);
            (span >= BUSY_MIN_SPAN)
                .then(|| computed.saturating_sub(then).as_secs_f64() / (span.as_secs_f64() * replicas.max(1) as f64))
        });
    }

    /// A batch of `rows` took `took` from leaving to its results (with a replica free
    /// when it left).
    pub fn measured(&mut self, rows: usize, took: Duration) {
        self.cost.add(rows as f64, took.as_secs_f64());
    }

    /// A batch of `rows` finished at `now`, its forward pass having taken `took`
    /// (every batch, whether or not it was timed for the cost line).
    pub fn completed(&mut self, now: Instant, rows: usize, took: Duration) {
        self.last_done = Some(Done { at: now, rows, took });
        self.since_done = 0;
    }

    /// The rate of arrivals, rows per second, not counting the `queued` rows (the
    /// latest arrivals): a lone row after a quiet spell sees a rate of zero.
    pub fn rate(&mut self, now: Instant, queued: usize) -> f64 {
        self.forget(now);
        self.arrived.saturating_sub(queued) as f64 / RATE_WINDOW.as_secs_f64()
    }

    /// The decision for a partial batch of `queued` rows whose oldest row is `oldest`
    /// (chunk key, row), with a replica free; `latest` is the last moment it may leave
    /// for its rows' deadlines, if any.
    pub fn decide(
        &mut self,
        now: Instant,
        queued: usize,
        oldest: (u64, usize),
        max_batch_size: usize,
        latest: Option<Instant>,
    ) -> Decision {
        if let Some(wait) = self.waiting {
            if wait.oldest == oldest {
                // One wait per batch: when it ends, or rows stop coming, or enough came,
                // the batch goes.
                let quiet_from = self.last_arrival.map_or(now, |a| a + wait.gap);
                return if now >= wait.until || now >= quiet_from || queued >= wait.enough {
                    self.waiting = None;
                    // A fill wait that ended short of a full batch: a probe's ends the try
                    // (the next comes after FILL_PROBE); in fill mode it is not evidence
                    // either way.
                    self.fill.waiting = false;
                    Decision::Send(SendReason::Waited)
                } else {
                    Decision::WaitUntil(wait.until.min(quiet_from))
                };
            }
            self.waiting = None;
            self.fill.waiting = false;
        }
        if let Some(wait) = self.fill_wait(now, queued, oldest, max_batch_size, latest) {
            return wait;
        }
        if self.busy.is_none_or(|busy| busy < WAIT_BUSY) {
            return Decision::Send(SendReason::Now);
        }
        if let Some(wait) = self.returning(now, queued, oldest, max_batch_size, latest) {
            return wait;
        }
        let Some((alpha, _beta)) = self.cost.line() else { return Decision::Send(SendReason::Now) };
        let rate = self.rate(now, queued);
        if (queued as f64) * WAIT_GAIN > alpha * rate {
            return Decision::Send(SendReason::Now);
        }
        let fill = (max_batch_size - queued) as f64 / rate;
        let mut wait = Duration::from_secs_f64(alpha.min(fill));
        if let Some(latest) = latest {
            wait = wait.min(latest.saturating_duration_since(now));
        }
        if wait < MIN_WAIT {
            return Decision::Send(if latest.is_some_and(|l| l <= now + MIN_WAIT) {
                SendReason::Deadline
            } else {
                SendReason::Now
            });
        }
        let until = now + wait;
        let gap = Duration::from_secs_f64(QUIET_GAPS / rate).max(MIN_WAIT);
        self.waiting = Some(Wait { until, gap, oldest, enough: max_batch_size });
        Decision::StartWait(until.min(now + gap))
    }

    /// A wait for the rows the latest batch answered, if they are coming back: fewer
    /// rows are queued than that batch had, not all of them came back yet, and it
    /// finished less than [`RETURN_SHARE`] of its forward pass ago. Clients that send
    /// their next request once the last is answered come back together within a round
    /// trip; sending the few rows that came first alone makes the rest wait for that
    /// pass, then go together, and the batches alternate, small and large (MiniLM at 16
    /// connections: 1 + 15, p99 1.35x `max_wait_ms 1`'s). The wait ends once the batch
    /// has as many rows as the last, or at that share of its pass: for a pass shorter
    /// than [`MIN_WAIT`] / [`RETURN_SHARE`] (digits, diamond) it never starts.
    fn returning(
        &mut self,
        now: Instant,
        queued: usize,
        oldest: (u64, usize),
        max_batch_size: usize,
        latest: Option<Instant>,
    ) -> Option<Decision> {
        let done = self.last_done?;
        let enough = done.rows.min(max_batch_size);
        if queued >= enough || self.since_done >= done.rows {
            return None;
        }
        let until = wait_until(now, done.at + done.took.mul_f64(RETURN_SHARE), latest)?;
        self.waiting = Some(Wait { until, gap: until.saturating_duration_since(now), oldest, enough });
        Some(Decision::StartWait(until))
    }

    /// A wait for a full batch, in fill mode or as its probe (see [`Fill`]).
    fn fill_wait(
        &mut self,
        now: Instant,
        queued: usize,
        oldest: (u64, usize),
        max_batch_size: usize,
        latest: Option<Instant>,
    ) -> Option<Decision> {
        if queued < 2 || (!self.fill.on && self.fill.next_probe.is_some_and(|at| now < at)) {
            return None;
        }
        let rate = self.rate(now, queued);
        if rate <= 0.0 {
            return None;
        }
        let fill = max_batch_size.saturating_sub(queued) as f64 / rate;
        if fill > FILL_CAP.as_secs_f64() {
            return None;
        }
        let until = wait_until(now, now + Duration::from_secs_f64(2.0 * fill).min(FILL_CAP), latest)?;
        let gap = Duration::from_secs_f64(QUIET_GAPS / rate).max(MIN_WAIT);
        self.waiting = Some(Wait { until, gap, oldest, enough: max_batch_size });
        self.fill.waiting = true;
        if !self.fill.on {
            // The probe: the next one no sooner than this, whatever this one shows.
            self.fill.next_probe = Some(now + FILL_PROBE);
        }
        Some(Decision::StartWait(until.min(now + gap)))
    }

    /// A full batch left at `now`.
    pub fn left_full(&mut self, now: Instant) {
        if std::mem::take(&mut self.fill.waiting) || self.fill.on {
            self.waiting = None;
            self.fill.full_left = Some(now);
        }
    }

    /// One observation for fill mode: whether rows stalled (see [`Fill`]).
    fn fill_observed(&mut self, now: Instant, stalled: bool) {
        let fill = &mut self.fill;
        if fill.on {
            fill.stalls += STALL_WEIGHT * (f64::from(u8::from(stalled)) - fill.stalls);
            if fill.stalls > 0.5 {
                fill.on = false;
                fill.next_probe = Some(now + FILL_PROBE);
            }
        } else if !stalled {
            fill.on = true;
            fill.stalls = 0.0;
        }
    }

    /// Whether partial batches wait to fill (see [`Fill`]).
    #[cfg(test)]
    fn filling(&self) -> bool {
        self.fill.on
    }

    /// The fitted cost line `(α, β)` in seconds, if the batches so far vary enough in
    /// size to fit one.
    pub fn cost(&self) -> Option<(f64, f64)> {
        self.cost.line()
    }
}

/// The end of a wait meant to last until `until`, brought forward to `latest` (the rows'
/// deadlines); `None` if what is left of it is shorter than [`MIN_WAIT`].
fn wait_until(now: Instant, until: Instant, latest: Option<Instant>) -> Option<Instant> {
    let until = latest.map_or(until, |latest| until.min(latest));
    (until.saturating_duration_since(now) >= MIN_WAIT).then_some(until)
}

/// A least-squares line through (batch size, seconds), each point weighted
/// [`COST_DECAY`] less than the next.
#[derive(Debug, Default)]
struct CostFit {
    w: f64,
    b: f64,
    bb: f64,
    t: f64,
    bt: f64,
}

impl CostFit {
    fn add(&mut self, b: f64, t: f64) {
        for s in [&mut self.w, &mut self.b, &mut self.bb, &mut self.t, &mut self.bt] {
            *s *= COST_DECAY;
        }
        self.w += 1.0;
        self.b += b;
        self.bb += b * b;
        self.t += t;
        self.bt += b * t;
    }

    /// `(α, β)`, both at least 0; none until the sizes vary (a variance of at least a
    /// quarter of a row²: batches of one size tell the fixed cost from the per-row cost
    /// apart no better than a guess).
    fn line(&self) -> Option<(f64, f64)> {
        if self.w < 2.0 {
            return None;
        }
        let variance = self.bb / self.w - (self.b / self.w).powi(2);
        if variance < 0.25 {
            return None;
        }
        let beta = ((self.w * self.bt - self.b * self.t) / (self.w * self.bb - self.b * self.b)).max(0.0);
        let alpha = ((self.t - beta * self.b) / self.w).max(0.0);
        Some((alpha, beta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A policy whose cost line is `alpha + beta·b`, for one replica busy all the time.
    fn fitted(alpha: f64, beta: f64) -> Adaptive {
        let mut a = Adaptive::default();
        for b in [1usize, 4, 2, 8, 3, 16, 1, 5] {
            a.measured(b, Duration::from_secs_f64(alpha + beta * b as f64));
        }
        busy_for(&mut a, 1.0);
        a
    }

    /// Its replica computed `share` of the last 20 ms.
    fn busy_for(a: &mut Adaptive, share: f64) {
        let t = Instant::now();
        let span = Duration::from_millis(20);
        a.computed(t, Duration::ZERO, 1);
        a.computed(t + span, span.mul_f64(share), 1);
    }

    #[test]
    fn it_does_not_wait_while_the_replicas_are_idle_half_the_time() {
        let mut a = fitted(0.010, 0.0001);
        busy_for(&mut a, 0.3);
        let start = Instant::now();
        // As below: 2000 rows/s, 20 rows per fixed cost, which would make it wait.
        for i in 0..200 {
            a.arrived(start + Duration::from_micros(500 * i), 1);
        }
        let now = start + Duration::from_micros(500 * 199);
        assert_eq!(a.decide(now, 2, (7, 0), 32, None), Decision::Send(SendReason::Now));
        busy_for(&mut a, 0.9);
        assert!(matches!(a.decide(now, 2, (7, 0), 32, None), Decision::StartWait(_)));
    }

    #[test]
    fn the_cost_line_is_fitted_from_batches_of_several_sizes() {
        let (alpha, beta) = fitted(0.002, 0.0005).cost().unwrap();
        assert!((alpha - 0.002).abs() < 1e-9 && (beta - 0.0005).abs() < 1e-9, "{alpha} {beta}");
        // Batches of one size: no line.
        let mut a = Adaptive::default();
        (0..10).for_each(|_| a.measured(1, Duration::from_millis(3)));
        assert_eq!(a.cost(), None);
    }

    #[test]
    fn a_lone_row_goes_at_once() {
        let mut a = fitted(0.010, 0.0001);
        let now = Instant::now();
        a.arrived(now, 1);
        // Its own arrival is no evidence of others: rate 0.
        assert_eq!(a.decide(now, 1, (0, 0), 32, None), Decision::Send(SendReason::Now));
    }

    #[test]
    fn it_waits_when_more_rows_come_during_one_fixed_cost_than_are_queued() {
        let mut a = fitted(0.010, 0.0001);
        let start = Instant::now();
        // 2000 rows/s: 20 rows per fixed cost of 10 ms.
        for i in 0..200 {
            a.arrived(start + Duration::from_micros(500 * i), 1);
        }
        let now = start + Duration::from_micros(500 * 199);
        // The first check comes after three mean gaps (1.5 ms) without a row.
        let Decision::StartWait(check) = a.decide(now, 2, (7, 0), 32, None) else { panic!("expected a wait") };
        let first = check - now;
        assert!(first > Duration::from_micros(1400) && first < Duration::from_micros(1600), "{first:?}");
        // Rows keep coming: the wait goes on, at most α (10 ms; the batch would take 15 ms
        // to fill at 2000 rows/s).
        let mut t = now;
        for _ in 0..30 {
            t += Duration::from_micros(500);
            a.arrived(t, 1);
            match a.decide(t, 3, (7, 0), 32, None) {
                Decision::WaitUntil(_) | Decision::StartWait(_) => {}
                Decision::Send(why) => {
                    assert_eq!(why, SendReason::Waited);
                    assert!(t - now >= Duration::from_millis(10), "sent after {:?}", t - now);
                    break;
                }
            }
        }
        assert!(t - now <= Duration::from_micros(10_500), "{:?}", t - now);
        // Rows stop coming: the next batch's wait ends after three gaps.
        let Decision::StartWait(check) = a.decide(t, 2, (8, 0), 32, None) else { panic!("expected a wait") };
        assert_eq!(a.decide(check, 2, (8, 0), 32, None), Decision::Send(SendReason::Waited));
        let until = check;
        // Enough rows queued: at once.
        assert_eq!(a.decide(until, 25, (9, 0), 32, None), Decision::Send(SendReason::Now));
        // A deadline that cannot wait: at once.
        let latest = Some(now + Duration::from_micros(5));
        assert_eq!(a.decide(now, 2, (10, 0), 32, latest), Decision::Send(SendReason::Deadline));
    }

    #[test]
    fn it_waits_for_the_rows_the_last_batch_answered() {
        let mut a = fitted(0.001, 0.005);
        let done = Instant::now();
        // A batch of 15 took 76 ms; one row is queued when it finishes: it waits up to
        // 7.6 ms for the 15 to come back, and goes once 15 are queued.
        a.completed(done, 15, Duration::from_millis(76));
        a.arrived(done, 1);
        let Decision::StartWait(until) = a.decide(done, 1, (3, 0), 32, None) else { panic!("expected a wait") };
        assert_eq!(until - done, Duration::from_micros(7600));
        let t = done + Duration::from_micros(300);
        a.arrived(t, 10);
        assert_eq!(a.decide(t, 11, (3, 0), 32, None), Decision::WaitUntil(until));
        a.arrived(t, 4);
        assert_eq!(a.decide(t, 15, (3, 0), 32, None), Decision::Send(SendReason::Waited));
        // A short pass (digits: 50 µs) is not worth waiting a tenth of.
        a.completed(t, 15, Duration::from_micros(50));
        a.arrived(t, 1);
        assert_eq!(a.decide(t, 1, (4, 0), 32, None), Decision::Send(SendReason::Now));
    }

    /// Rows at `per_second` for 100 ms up to `end`.
    fn steady(a: &mut Adaptive, end: Instant, per_second: u64) {
        let gap = Duration::from_nanos(1_000_000_000 / per_second);
        let n = (RATE_WINDOW.as_nanos() / gap.as_nanos()) as u32;
        for i in (0..n).rev() {
            a.arrived(end - gap * i, 1);
        }
    }

    #[test]
    fn it_fills_batches_while_rows_keep_coming_after_a_full_one() {
        let mut a = Adaptive::default();
        let now = Instant::now() + Duration::from_secs(1);
        // 64,000 rows/s: 28 more rows take 0.44 ms, within FILL_CAP. A probe: wait to fill.
        steady(&mut a, now, 64_000);
        let Decision::StartWait(check) = a.decide(now, 4, (1, 0), 32, None) else { panic!("expected a fill wait") };
        assert!(check - now < Duration::from_micros(60), "first check after three gaps: {:?}", check - now);
        assert!(!a.filling(), "a probe, the mode is not on yet");
        // The batch filled and left; the next row comes 20 µs later: rows keep coming.
        let left = now + Duration::from_micros(450);
        a.left_full(left);
        a.arrived(left + Duration::from_micros(20), 1);
        assert!(a.filling());
        // On: every partial batch with a replica free waits to fill.
        let t = left + Duration::from_micros(30);
        assert!(matches!(a.decide(t, 2, (2, 0), 32, None), Decision::StartWait(_)));
        // Full batches followed by late rows (the batch took every row there was): off
        // once they are over half of the recent ones, weighed over many batches.
        let mut t = t;
        let mut late = 0;
        while a.filling() {
            t += Duration::from_micros(500);
            a.left_full(t);
            t += Duration::from_micros(400);
            a.arrived(t, 1);
            late += 1;
            assert!(late < 100, "still on after {late} late rows");
        }
        assert!(late > 20, "one late row in a burst does not turn it off: {late}");
        // And no probe before FILL_PROBE has passed.
        assert_eq!(a.decide(t, 4, (3, 0), 32, None), Decision::Send(SendReason::Now));
    }

    #[test]
    fn a_probe_whose_batch_takes_every_row_leaves_the_mode_off() {
        let mut a = Adaptive::default();
        let now = Instant::now() + Duration::from_secs(1);
        steady(&mut a, now, 64_000);
        assert!(matches!(a.decide(now, 4, (1, 0), 32, None), Decision::StartWait(_)));
        let left = now + Duration::from_micros(450);
        a.left_full(left);
        a.arrived(left + Duration::from_micros(500), 1);
        assert!(!a.filling());
        // A probe that does not fill (rows stop coming) ends after three gaps, sent as it is.
        let later = now + FILL_PROBE + Duration::from_millis(1);
        steady(&mut a, later, 64_000);
        let Decision::StartWait(check) = a.decide(later, 4, (2, 0), 32, None) else { panic!("expected a probe") };
        assert_eq!(a.decide(check, 4, (2, 0), 32, None), Decision::Send(SendReason::Waited));
        assert!(!a.filling());
    }

    #[test]
    fn it_does_not_wait_to_fill_where_the_batch_would_take_long_or_a_row_is_alone() {
        let mut a = Adaptive::default();
        let now = Instant::now() + Duration::from_secs(1);
        // 5,000 rows/s: 28 rows take 5.6 ms, past FILL_CAP.
        steady(&mut a, now, 5_000);
        assert_eq!(a.decide(now, 4, (1, 0), 32, None), Decision::Send(SendReason::Now));
        // Fast rows, but one queued: it goes at once.
        steady(&mut a, now + Duration::from_millis(200), 64_000);
        assert_eq!(a.decide(now + Duration::from_millis(200), 1, (2, 0), 32, None), Decision::Send(SendReason::Now));
    }

    #[test]
    fn the_rate_forgets_old_arrivals() {
        let mut a = Adaptive::default();
        let start = Instant::now();
        a.arrived(start, 50);
        assert_eq!(a.rate(start, 0), 500.0);
        assert_eq!(a.rate(start + RATE_WINDOW * 2, 0), 0.0);
    }
}
