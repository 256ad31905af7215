//! The circuit breaker state machine: CLOSED → OPEN → HALF_OPEN → CLOSED.
//!
//! Why this shape: a breaker sits on every call, so it must cost nanoseconds, must never hold a
//! lock while the protected call runs (pybreaker serialises all threads that way), and must not
//! let a stampede through when it half-opens (circuitbreaker and aiobreaker have no gate). So:
//!
//! - Decisions are values. [`Breaker::acquire`] returns a [`Admission`]: admit with a
//!   [`Permit`], or reject with the time left until a trial call may go. The caller runs the call
//!   with no lock held and hands the permit back to [`Breaker::record`] with an
//!   [`Outcome`], or to [`Breaker::release`] when the call never finished (a control-flow
//!   exception). Permits are moved in, so each is returned at most once. Every operation returns
//!   the state [`Transition`] it made, if any, so the caller can notify listeners after the lock
//!   is gone.
//! - Shared state is one short mutex (windows, counters and the phase change together) plus one
//!   atomic word publishing `(phase, generation)`: while CLOSED, [`Breaker::try_acquire_closed`]
//!   admits with a single atomic load and no clock read.
//! - Every transition starts a new *generation*. A permit remembers its generation; an outcome
//!   from an earlier generation (a call admitted before the breaker opened, or a trial call
//!   presumed lost) still counts in the lifetime totals but no longer moves the state machine or
//!   the window. So a late failure cannot re-open a breaker or fire a transition twice
//!   (App-vNext/Polly#216), and a lost trial call cannot pin HALF_OPEN (resilience4j#935).
//!
//! The rules (">", "exceeds" are strict; "reaches" is `>=`):
//!
//! - CLOSED → OPEN after a counted outcome when consecutive failures reach `failure_threshold`,
//!   or the window holds at least `minimum_calls` calls and their failure rate exceeds
//!   `failure_rate_threshold`, or (with `slow_call_duration`) at least `minimum_calls` calls and
//!   their slow-call rate reaches `slow_call_rate_threshold`. A call is slow when it lasted at least
//!   `slow_call_duration`; a slow failure counts as a failure and as slow.
//! - OPEN rejects until `timeout` has passed since it opened; the first look after that (a call, a
//!   state or stats read) finds HALF_OPEN.
//! - HALF_OPEN admits at most `half_open_max_calls` trial calls at once. `success_threshold`
//!   successes close it (and clear the window); any failure re-opens it. An ignored outcome or a
//!   release gives the trial slot back. When every slot is taken and no trial call was admitted
//!   for `timeout`, the slots are presumed lost: the next caller starts a new trial generation.
//! - The window is cleared only when the breaker closes; while OPEN it reports the calls as they
//!   stood (minus those that age out of the window).
//!
//! ```
//! use riprap_core::{BreakerConfig, Breaker, Admission, Outcome, State};
//! let b = Breaker::new(BreakerConfig { failure_threshold: 2, ..BreakerConfig::default() })
//!     .unwrap();
//! for t in [10, 20] {
//!     let Admission::Admit { permit, .. } = b.acquire(t) else { unreachable!() };
//!     b.record(t, permit, Outcome::Failure);
//! }
//! assert_eq!(b.state(30).0, State::Open);
//! let Admission::Reject { retry_after } = b.acquire(30) else { unreachable!() };
//! assert_eq!(retry_after, 60_000_000_000 - 10); // opened at 20 ns, 60 s timeout
//! ```

mod config;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::clock::secs_to_nanos;
use crate::error::ConfigError;
use crate::fork::ForkLocal;
use crate::window::{Counts, Window};
pub use config::BreakerConfig;

/// Source of breaker ids (each permit names its breaker).
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// The window's number of buckets: its far edge moves in steps of `monitoring_window / 60`.
pub const WINDOW_BUCKETS: usize = 60;

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Calls flow; outcomes are counted.
    Closed,
    /// Calls are rejected until the open timeout has passed.
    Open,
    /// A limited number of trial calls decide whether to close or re-open.
    HalfOpen,
}

impl State {
    /// The public value string: `"closed"`, `"open"` or `"half_open"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }

    fn bits(self) -> u64 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
        }
    }
}

/// Permission for one call. Hand it back exactly once: to [`Breaker::record`] with the
/// outcome, or to [`Breaker::release`] when the call did not finish. A permit handed to
/// another breaker is ignored there.
#[derive(Debug, PartialEq, Eq)]
pub struct Permit {
    owner: u64,
    generation: u64,
    trial: bool,
    start: u64,
}

impl Permit {
    /// Whether this is a half-open trial call.
    pub fn is_trial(&self) -> bool {
        self.trial
    }

    /// When the call was admitted (ns); `0` when the breaker does not measure durations.
    pub fn start(&self) -> u64 {
        self.start
    }
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It returned.
    Success,
    /// It raised an exception the breaker counts.
    Failure,
    /// It raised an exception the breaker does not count (outside `expected_exception`, or in
    /// `excluded_exceptions`): neither success nor failure; a trial slot is given back.
    Ignored,
}

/// A state change, reported so listeners can run after the lock is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The state before.
    pub from: State,
    /// The state after.
    pub to: State,
}

/// What [`Breaker::acquire`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Run the call; hand the permit back when it ends.
    Admit {
        /// The permit.
        permit: Permit,
        /// The transition this call caused (OPEN → HALF_OPEN), if any.
        transition: Option<Transition>,
    },
    /// Do not run the call.
    Reject {
        /// Nanoseconds until a trial call may go (0 when half-open and its slots are taken).
        retry_after: u64,
    },
}

/// Lifetime counters (never reset, so metrics built on them are monotone).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Calls that succeeded.
    pub successes: u64,
    /// Calls that failed.
    pub failures: u64,
    /// Calls whose exception was not counted.
    pub ignored: u64,
    /// Calls that ended with a control-flow exception (released permits).
    pub cancelled: u64,
    /// Calls rejected.
    pub rejected: u64,
    /// Trial calls presumed lost (see the module docs).
    pub lost_trials: u64,
}

impl Totals {
    /// Every call decided and finished: successes, failures, ignored, cancelled and rejected.
    pub fn calls(&self) -> u64 {
        self.successes
            .saturating_add(self.failures)
            .saturating_add(self.ignored)
            .saturating_add(self.cancelled)
            .saturating_add(self.rejected)
    }
}

/// A snapshot of a breaker (times in ns on the breaker's clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerStats {
    /// The state.
    pub state: State,
    /// The window's counts.
    pub window: Counts,
    /// Failures since the last success (or since the breaker closed).
    pub consecutive_failures: u64,
    /// Trial calls in flight (HALF_OPEN only, else 0).
    pub half_open_in_flight: u64,
    /// Trial successes so far (HALF_OPEN only, else 0).
    pub half_open_successes: u64,
    /// When the breaker last opened (OPEN only).
    pub opened_at: Option<u64>,
    /// When the breaker last left CLOSED (OPEN or HALF_OPEN only).
    pub open_since: Option<u64>,
    /// When the last failure was recorded.
    pub last_failure: Option<u64>,
    /// Nanoseconds until a trial call may go (OPEN only, else 0).
    pub retry_after: u64,
    /// Lifetime counters.
    pub totals: Totals,
    /// The time of the snapshot.
    pub now: u64,
}

impl BreakerStats {
    /// Nanoseconds since the last failure was recorded (`None` if never).
    pub fn time_since_last_failure(&self) -> Option<u64> {
        self.last_failure.map(|t| self.now.saturating_sub(t))
    }

    /// Nanoseconds since the breaker left CLOSED, across re-opens (0 while CLOSED).
    pub fn open_duration(&self) -> u64 {
        self.open_since.map_or(0, |t| self.now.saturating_sub(t))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Closed,
    Open {
        opened_at: u64,
    },
    HalfOpen {
        in_flight: u64,
        successes: u64,
        last_admit: u64,
    },
}

impl Phase {
    fn state(self) -> State {
        match self {
            Self::Closed => State::Closed,
            Self::Open { .. } => State::Open,
            Self::HalfOpen { .. } => State::HalfOpen,
        }
    }
}

#[derive(Debug)]
struct Inner {
    phase: Phase,
    generation: u64,
    window: Window,
    consecutive_failures: u64,
    last_failure: Option<u64>,
    open_since: Option<u64>,
    totals: Totals,
}

/// A thread-safe circuit breaker (see the module docs). All methods take `&self`.
#[derive(Debug)]
pub struct Breaker {
    /// Tells this breaker's permits from another's.
    id: u64,
    config: BreakerConfig,
    timeout: u64,
    slow: Option<u64>,
    /// An empty window of the configured span (a forked child starts from a copy).
    empty_window: Window,
    shared: ForkLocal<Shared>,
}

/// The breaker's state: what a forked child starts afresh (closed, empty window, no totals).
#[derive(Debug)]
struct Shared {
    /// `generation << 2 | state bits`, written under the lock at every change.
    published: AtomicU64,
    inner: Mutex<Inner>,
}

impl Shared {
    /// A closed breaker in `generation`.
    fn closed(window: Window, generation: u64) -> Self {
        Self {
            published: AtomicU64::new((generation << 2) | State::Closed.bits()),
            inner: Mutex::new(Inner {
                phase: Phase::Closed,
                generation,
                window,
                consecutive_failures: 0,
                last_failure: None,
                open_since: None,
                totals: Totals::default(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while the lock is held; recover from poisoning anyway.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, s: &Inner) {
        self.published.store(
            (s.generation << 2) | s.phase.state().bits(),
            Ordering::Release,
        );
    }
}

impl Breaker {
    /// A closed breaker with an empty window.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first bad field (see [`BreakerConfig::validate`]).
    pub fn new(config: BreakerConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        // Durations are whole nanoseconds, at least one.
        let timeout = secs_to_nanos(config.timeout).max(1);
        let slow = config.slow_call_duration.map(|d| secs_to_nanos(d).max(1));
        let span = secs_to_nanos(config.monitoring_window).max(1);
        let window = Window::new(span, WINDOW_BUCKETS)?;
        Ok(Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            config,
            timeout,
            slow,
            shared: ForkLocal::new(Shared::closed(window.clone(), 0)),
            empty_window: window,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// Whether outcomes need the call's duration (`slow_call_duration` is set): then pass the
    /// current time as `start` to [`Breaker::try_acquire_closed`].
    pub fn measures_duration(&self) -> bool {
        self.slow.is_some()
    }

    /// The width of one window bucket in nanoseconds.
    pub fn bucket_width(&self) -> u64 {
        self.empty_window.width()
    }

    /// The state of this process. A forked child starts closed, in a generation after every
    /// permit its parent issued, so a call admitted before the fork moves nothing in the child.
    #[inline]
    fn shared(&self) -> &Shared {
        self.shared.get(|inherited| {
            let generation = inherited.published.load(Ordering::Acquire) >> 2;
            Shared::closed(self.empty_window.clone(), generation.wrapping_add(1))
        })
    }

    /// Whether `permit` was issued by this breaker.
    pub fn owns(&self, permit: &Permit) -> bool {
        permit.owner == self.id
    }

    /// The fast path: a permit without taking the lock or reading the clock, when the breaker
    /// is CLOSED. `start` is stored in the permit (the current time when
    /// [`measures_duration`](Self::measures_duration), else anything). `None`: use
    /// [`acquire`](Self::acquire).
    #[inline]
    pub fn try_acquire_closed(&self, start: u64) -> Option<Permit> {
        let word = self.shared().published.load(Ordering::Acquire);
        (word & 3 == State::Closed.bits()).then_some(Permit {
            owner: self.id,
            generation: word >> 2,
            trial: false,
            start,
        })
    }

    /// Admit or reject a call at `now`.
    pub fn acquire(&self, now: u64) -> Admission {
        let sh = self.shared();
        let mut guard = sh.lock();
        let s = &mut *guard;
        let transition = self.poll(sh, s, now);
        let generation = s.generation;
        match &mut s.phase {
            Phase::Closed => Admission::Admit {
                permit: Permit {
                    owner: self.id,
                    generation,
                    trial: false,
                    start: now,
                },
                transition,
            },
            Phase::Open { opened_at } => {
                let retry_after = opened_at.saturating_add(self.timeout).saturating_sub(now);
                s.totals.rejected = s.totals.rejected.saturating_add(1);
                debug_assert!(transition.is_none());
                Admission::Reject { retry_after }
            }
            Phase::HalfOpen {
                in_flight,
                last_admit,
                ..
            } => {
                if *in_flight < self.config.half_open_max_calls {
                    *in_flight += 1;
                    *last_admit = now;
                } else if now.saturating_sub(*last_admit) >= self.timeout {
                    // Every slot is taken and no trial call was admitted for a whole open
                    // timeout: presume them lost and start a new trial generation.
                    s.totals.lost_trials = s.totals.lost_trials.saturating_add(*in_flight);
                    *in_flight = 1;
                    *last_admit = now;
                    s.generation = s.generation.wrapping_add(1);
                    sh.publish(s);
                } else {
                    s.totals.rejected = s.totals.rejected.saturating_add(1);
                    return Admission::Reject { retry_after: 0 };
                }
                Admission::Admit {
                    permit: Permit {
                        owner: self.id,
                        generation: s.generation,
                        trial: true,
                        start: now,
                    },
                    transition,
                }
            }
        }
    }

    /// Records how an admitted call ended, at `now`. Returns the transition it caused.
    pub fn record(&self, now: u64, permit: Permit, outcome: Outcome) -> Option<Transition> {
        let slow = self
            .slow
            .is_some_and(|s| now.saturating_sub(permit.start) >= s);
        if permit.owner != self.id {
            return None; // another breaker's permit: nothing to count here
        }
        let sh = self.shared();
        let mut guard = sh.lock();
        let s = &mut *guard;
        let current = permit.generation == s.generation;
        let t = &mut s.totals;
        match outcome {
            Outcome::Ignored => t.ignored = t.ignored.saturating_add(1),
            Outcome::Success => t.successes = t.successes.saturating_add(1),
            Outcome::Failure => {
                t.failures = t.failures.saturating_add(1);
                s.last_failure = Some(now);
            }
        }
        if !current {
            return None; // a call from an earlier generation: counted, but moves nothing
        }
        if outcome == Outcome::Ignored {
            if let Phase::HalfOpen { in_flight, .. } = &mut s.phase {
                *in_flight = in_flight.saturating_sub(1);
            }
            return None;
        }
        let failed = outcome == Outcome::Failure;
        s.window.record(now, failed, slow);
        if failed {
            s.consecutive_failures = s.consecutive_failures.saturating_add(1);
        } else {
            s.consecutive_failures = 0;
        }
        match &mut s.phase {
            Phase::Closed => {
                debug_assert!(!permit.trial);
                if self.trips(s) {
                    return Some(Self::open(sh, s, now));
                }
                None
            }
            Phase::HalfOpen {
                in_flight,
                successes,
                ..
            } => {
                debug_assert!(permit.trial);
                if failed {
                    return Some(Self::open(sh, s, now));
                }
                *in_flight = in_flight.saturating_sub(1);
                *successes += 1;
                if *successes >= self.config.success_threshold {
                    return Some(Self::close(sh, s));
                }
                None
            }
            Phase::Open { .. } => {
                debug_assert!(false, "a current permit while open");
                None
            }
        }
    }

    /// Gives back the permit of a call that did not finish (a control-flow exception): nothing
    /// is counted but the lifetime `cancelled` total, and a trial slot is freed.
    pub fn release(&self, permit: Permit) {
        if permit.owner != self.id {
            return;
        }
        let sh = self.shared();
        let mut guard = sh.lock();
        let s = &mut *guard;
        s.totals.cancelled = s.totals.cancelled.saturating_add(1);
        if permit.generation == s.generation
            && let Phase::HalfOpen { in_flight, .. } = &mut s.phase
        {
            *in_flight = in_flight.saturating_sub(1);
        }
    }

    /// The state at `now` (a due OPEN → HALF_OPEN happens here) and the transition made.
    pub fn state(&self, now: u64) -> (State, Option<Transition>) {
        let sh = self.shared();
        let mut guard = sh.lock();
        let transition = self.poll(sh, &mut guard, now);
        (guard.phase.state(), transition)
    }

    /// A snapshot at `now` (a due OPEN → HALF_OPEN happens here) and the transition made.
    pub fn stats(&self, now: u64) -> (BreakerStats, Option<Transition>) {
        let sh = self.shared();
        let mut guard = sh.lock();
        let s = &mut *guard;
        let transition = self.poll(sh, s, now);
        let (opened_at, retry_after, in_flight, successes) = match s.phase {
            Phase::Closed => (None, 0, 0, 0),
            Phase::Open { opened_at } => (
                Some(opened_at),
                opened_at.saturating_add(self.timeout).saturating_sub(now),
                0,
                0,
            ),
            Phase::HalfOpen {
                in_flight,
                successes,
                ..
            } => (None, 0, in_flight, successes),
        };
        let stats = BreakerStats {
            state: s.phase.state(),
            window: s.window.counts(now),
            consecutive_failures: s.consecutive_failures,
            half_open_in_flight: in_flight,
            half_open_successes: successes,
            opened_at,
            open_since: s.open_since,
            last_failure: s.last_failure,
            retry_after,
            totals: s.totals,
            now,
        };
        (stats, transition)
    }

    /// Back to CLOSED with an empty window and no consecutive failures; calls in flight become
    /// an earlier generation. Lifetime totals are kept.
    pub fn reset(&self) -> Option<Transition> {
        let sh = self.shared();
        let mut guard = sh.lock();
        let s = &mut *guard;
        let from = s.phase.state();
        s.window.clear();
        s.consecutive_failures = 0;
        s.open_since = None;
        s.phase = Phase::Closed;
        s.generation = s.generation.wrapping_add(1);
        sh.publish(s);
        (from != State::Closed).then_some(Transition {
            from,
            to: State::Closed,
        })
    }

    /// Opens the breaker at `now` as if it had just tripped: it rejects for `timeout`, then
    /// half-opens as usual.
    pub fn force_open(&self, now: u64) -> Option<Transition> {
        let sh = self.shared();
        let mut guard = sh.lock();
        let s = &mut *guard;
        let from = s.phase.state();
        let t = Self::open(sh, s, now);
        (from != State::Open).then_some(t)
    }

    /// A due OPEN → HALF_OPEN.
    fn poll(&self, sh: &Shared, s: &mut Inner, now: u64) -> Option<Transition> {
        if let Phase::Open { opened_at } = s.phase
            && now.saturating_sub(opened_at) >= self.timeout
        {
            s.phase = Phase::HalfOpen {
                in_flight: 0,
                successes: 0,
                last_admit: now,
            };
            s.generation = s.generation.wrapping_add(1);
            sh.publish(s);
            return Some(Transition {
                from: State::Open,
                to: State::HalfOpen,
            });
        }
        None
    }

    fn trips(&self, s: &Inner) -> bool {
        let c = &self.config;
        if s.consecutive_failures >= c.failure_threshold {
            return true;
        }
        let w = s.window.peek();
        if w.calls() < c.minimum_calls {
            return false;
        }
        w.failure_rate() > c.failure_rate_threshold
            || (self.slow.is_some() && w.slow_rate() >= c.slow_call_rate_threshold)
    }

    fn open(sh: &Shared, s: &mut Inner, now: u64) -> Transition {
        let from = s.phase.state();
        s.phase = Phase::Open { opened_at: now };
        s.open_since.get_or_insert(now);
        s.generation = s.generation.wrapping_add(1);
        sh.publish(s);
        Transition {
            from,
            to: State::Open,
        }
    }

    fn close(sh: &Shared, s: &mut Inner) -> Transition {
        let from = s.phase.state();
        s.phase = Phase::Closed;
        s.window.clear();
        s.consecutive_failures = 0;
        s.open_since = None;
        s.generation = s.generation.wrapping_add(1);
        sh.publish(s);
        Transition {
            from,
            to: State::Closed,
        }
    }
}
