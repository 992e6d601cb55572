//! [`BodyBudget`]: one global budget of request-body bytes in flight.
//!
//! The size limit bounds one body; this bounds them all together. Detection takes bytes from the
//! budget chunk by chunk as a body arrives and
//! gives them back when the request has been answered (for a stream, when its reply has started:
//! the body and its decoded request are dropped by then). When the budget is spent a new body is
//! refused at once with 503 and `Retry-After`, so memory stops growing under load instead of
//! queueing bodies.
//!
//! ```
//! use open_bedrock_server::detect::BodyBudget;
//!
//! let budget = BodyBudget::new(1000);
//! let first = budget.try_take(600).unwrap();
//! assert!(budget.try_take(600).is_none(), "spent");
//! assert_eq!(budget.in_flight(), 600);
//! drop(first);
//! assert!(budget.try_take(600).is_some());
//! ```

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A shared budget of request-body bytes in flight. Cheap to clone (the clones share it).
#[derive(Debug, Clone)]
pub struct BodyBudget {
    semaphore: Arc<Semaphore>,
    max: usize,
}

/// Bytes taken from a [`BodyBudget`]; given back on drop.
#[derive(Debug)]
pub struct BodyBytes {
    permit: Option<OwnedSemaphorePermit>,
}

impl BodyBudget {
    /// A budget of `max` bytes (at most [`Semaphore::MAX_PERMITS`]).
    pub fn new(max: usize) -> Self {
        let max = max.min(Semaphore::MAX_PERMITS);
        BodyBudget {
            semaphore: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// A budget that never refuses.
    pub fn unlimited() -> Self {
        BodyBudget::new(Semaphore::MAX_PERMITS)
    }

    /// Takes `n` bytes, or `None` when fewer are left.
    pub fn try_take(&self, n: usize) -> Option<BodyBytes> {
        if n == 0 {
            return Some(BodyBytes { permit: None });
        }
        let n = u32::try_from(n).ok()?;
        self.semaphore
            .clone()
            .try_acquire_many_owned(n)
            .ok()
            .map(|permit| BodyBytes {
                permit: Some(permit),
            })
    }

    /// Bytes in flight now.
    pub fn in_flight(&self) -> usize {
        self.max - self.semaphore.available_permits()
    }

    /// The budget.
    pub fn max(&self) -> usize {
        self.max
    }
}

impl BodyBytes {
    /// No bytes.
    pub fn none() -> Self {
        BodyBytes { permit: None }
    }

    /// Adds `more` to these bytes.
    pub fn merge(&mut self, more: BodyBytes) {
        match (&mut self.permit, more.permit) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (mine @ None, theirs) => *mine = theirs,
            (Some(_), None) => {}
        }
    }

    /// How many bytes these are.
    pub fn len(&self) -> usize {
        self.permit.as_ref().map_or(0, |p| p.num_permits())
    }

    /// Whether these are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
