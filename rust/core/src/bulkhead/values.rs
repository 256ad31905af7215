//! The values a bulkhead answers with: slots, admission decisions, claims, endings, stats.

/// One slot of a bulkhead. Hand it back exactly once, to [`super::Bulkhead::try_release`] or
/// [`super::Bulkhead::release`]; a slot handed to another bulkhead is ignored there.
#[derive(Debug, PartialEq, Eq)]
pub struct Slot {
    pub(crate) owner: u64,
    pub(crate) generation: u64,
    pub(crate) start: Option<u64>,
    pub(crate) in_flight: u64,
    pub(crate) epoch: u64,
    pub(crate) timed_out: bool,
}

impl Slot {
    /// When the call was admitted, if its duration is measured.
    pub fn start(&self) -> Option<u64> {
        self.start
    }

    /// Calls in flight when it was admitted (its own included).
    pub fn in_flight(&self) -> u64 {
        self.in_flight
    }

    /// Whether a timeout was recorded for it ([`super::Bulkhead::record_timeout`]).
    pub fn timed_out(&self) -> bool {
        self.timed_out
    }
}

/// What the caller knows about itself when it may have to wait.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Request {
    /// The caller already holds a slot of this bulkhead: waiting for another could deadlock,
    /// so it is rejected instead of queued (it is still admitted when a slot is free).
    pub reentrant: bool,
    /// Nanoseconds left before the caller's own deadline (`None`: no deadline).
    pub deadline_left: Option<u64>,
}

/// Why a call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Every slot busy and the queue full.
    QueueFull,
    /// The caller holds a slot of this bulkhead and would have had to wait for another.
    Reentrant,
    /// The caller's deadline comes before its expected turn.
    Deadline {
        /// Nanoseconds left before the caller's deadline.
        left: u64,
        /// The expected wait at its queue position (`None`: no estimate yet).
        expected_wait: Option<u64>,
    },
    /// It waited `max_wait` without getting a slot.
    MaxWait,
    /// The ticket is unknown (collected already, cancelled, or from before a fork).
    Gone,
}

/// What [`super::Bulkhead::acquire`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Entry {
    /// Run the call; hand the slot back when it ends.
    Admit(Slot),
    /// Wait; when woken (or when `expires_at` comes), [`super::Bulkhead::claim`] the ticket.
    Queued {
        /// Identifies the waiter.
        ticket: u64,
        /// 1-based position in the queue.
        position: u64,
        /// When `max_wait` runs out (`None`: never).
        expires_at: Option<u64>,
    },
    /// Do not run the call.
    Reject(Rejection),
}

/// What [`super::Bulkhead::claim`] found for a ticket.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// A slot was handed over: the waiter owns it now.
    Granted(Slot),
    /// Still queued.
    Waiting {
        /// 1-based position in the queue.
        position: u64,
        /// When `max_wait` runs out (`None`: never).
        expires_at: Option<u64>,
    },
    /// No slot will come ([`Rejection::MaxWait`] or [`Rejection::Gone`]).
    Rejected(Rejection),
}

/// How an admitted call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// It returned (a sample: a drop if it was slow).
    Success,
    /// It raised an error that speaks about the dependency (a drop).
    Failure,
    /// It ended in a way that says nothing about the dependency (another layer's rejection):
    /// not a sample.
    Ignored,
    /// It was interrupted (a control-flow exception): not a sample.
    Cancelled,
}

/// Tickets whose waiters must be woken: they were granted a slot or ran out of `max_wait`.
pub type Woken = Vec<u64>;

/// Rejections since the bulkhead was made, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rejections {
    /// The queue was full.
    pub queue_full: u64,
    /// `max_wait` ran out.
    pub max_wait: u64,
    /// The caller's deadline came before its expected turn.
    pub deadline: u64,
    /// A caller holding a slot would have had to wait for another.
    pub reentrant: u64,
}

impl Rejections {
    /// All rejections.
    pub fn total(&self) -> u64 {
        self.queue_full
            .saturating_add(self.max_wait)
            .saturating_add(self.deadline)
            .saturating_add(self.reentrant)
    }
}

/// A snapshot of a bulkhead (times in ns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkheadStats {
    /// Slots held (calls running, including calls that timed out but have not ended yet).
    pub active: u64,
    /// Callers waiting in the queue.
    pub queued: u64,
    /// Waiters handed a slot that have not collected it yet (they hold it).
    pub granted: u64,
    /// The admission limit now.
    pub limit: u64,
    /// Calls admitted since creation (at once, or after waiting).
    pub admitted: u64,
    /// Calls admitted after waiting.
    pub waited: u64,
    /// Rejections by reason.
    pub rejected: Rejections,
    /// Waiters that gave up (cancelled, interrupted, past their deadline).
    pub cancelled_waits: u64,
    /// Calls that timed out.
    pub timed_out: u64,
    /// Calls that timed out and still hold their slot (abandoned sync work still running).
    pub running_after_timeout: u64,
    /// The mean slot-holding time of the measured calls (`None`: none measured yet).
    pub average_duration: Option<u64>,
}

impl BulkheadStats {
    /// Every call that asked for a slot: admitted, waiting, rejected or gave up.
    pub fn total_calls(&self) -> u64 {
        self.admitted
            .saturating_add(self.queued)
            .saturating_add(self.granted)
            .saturating_add(self.rejected.total())
            .saturating_add(self.cancelled_waits)
    }
}
