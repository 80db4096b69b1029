//! Scheduling policy for wisp, free of I/O and of any clock: callers pass the time in, so
//! the same code runs under the server's clock and a simulator's virtual one.
//!
//! - [`Admission`] decides whether one more invocation may run now, under the node-wide
//!   limit and each function's reserved concurrency.
//! - [`IdlePool`] keeps warm instances per key, hands out the most recently used one (so
//!   a burst's extra instances go cold and expire while a steady core stays warm), and says
//!   which instances have outlived their keep-alive or must make room for others.

use std::collections::HashMap;
use std::hash::Hash;

/// Why an invocation may not start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttle {
    /// The function's reserved concurrency is in use (or is 0).
    Function,
    /// The node-wide concurrency limit is in use.
    Node,
}

impl Throttle {
    /// Lambda's `Reason` for this throttle.
    pub fn reason(self) -> &'static str {
        match self {
            Throttle::Function => "ReservedFunctionConcurrentInvocationLimitExceeded",
            Throttle::Node => "ConcurrentInvocationLimitExceeded",
        }
    }
}

/// Counts of running invocations, node-wide and per function.
#[derive(Debug)]
pub struct Admission {
    node_max: u32,
    node_active: u32,
    per_function: HashMap<String, u32>,
}

impl Admission {
    pub fn new(node_max: u32) -> Self {
        Admission {
            node_max,
            node_active: 0,
            per_function: HashMap::new(),
        }
    }

    /// Takes a slot for `function` if its reserved concurrency (if any) and the node limit
    /// allow it.
    pub fn try_admit(&mut self, function: &str, reserved: Option<u32>) -> Result<(), Throttle> {
        let active = self.per_function.get(function).copied().unwrap_or(0);
        if let Some(reserved) = reserved {
            if active >= reserved {
                return Err(Throttle::Function);
            }
        }
        if self.node_active >= self.node_max {
            return Err(Throttle::Node);
        }
        self.node_active += 1;
        *self.per_function.entry(function.to_string()).or_insert(0) += 1;
        Ok(())
    }

    /// Gives back a slot taken by [`Admission::try_admit`].
    pub fn release(&mut self, function: &str) {
        if let Some(active) = self.per_function.get_mut(function) {
            *active = active.saturating_sub(1);
            if *active == 0 {
                self.per_function.remove(function);
            }
            self.node_active = self.node_active.saturating_sub(1);
        }
    }

    pub fn active(&self, function: &str) -> u32 {
        self.per_function.get(function).copied().unwrap_or(0)
    }

    pub fn node_active(&self) -> u32 {
        self.node_active
    }
}

struct Idle<I> {
    instance: I,
    since_ms: u64,
}

/// Warm instances waiting for work, per key (a function version and its revision).
pub struct IdlePool<K, I> {
    by_key: HashMap<K, Vec<Idle<I>>>,
    count: usize,
}

impl<K: Eq + Hash + Clone, I> Default for IdlePool<K, I> {
    fn default() -> Self {
        IdlePool {
            by_key: HashMap::new(),
            count: 0,
        }
    }
}

impl<K: Eq + Hash + Clone, I> IdlePool<K, I> {
    /// The most recently used idle instance for `key`.
    pub fn checkout(&mut self, key: &K) -> Option<I> {
        let list = self.by_key.get_mut(key)?;
        let idle = list.pop()?;
        if list.is_empty() {
            self.by_key.remove(key);
        }
        self.count -= 1;
        Some(idle.instance)
    }

    pub fn checkin(&mut self, key: K, instance: I, now_ms: u64) {
        self.by_key.entry(key).or_default().push(Idle {
            instance,
            since_ms: now_ms,
        });
        self.count += 1;
    }

    /// Removes and returns the instances idle for `keep_alive_ms` or longer.
    pub fn expire(&mut self, now_ms: u64, keep_alive_ms: u64) -> Vec<I> {
        let mut out = Vec::new();
        self.by_key.retain(|_, list| {
            // Lists are ordered by check-in time, oldest first.
            let fresh = list
                .iter()
                .position(|i| now_ms.saturating_sub(i.since_ms) < keep_alive_ms)
                .unwrap_or(list.len());
            out.extend(list.drain(..fresh).map(|i| i.instance));
            !list.is_empty()
        });
        self.count -= out.len();
        out
    }

    /// Removes and returns every idle instance for which `stale` holds (for instance those
    /// of a function whose code or configuration changed).
    pub fn remove_where(&mut self, mut stale: impl FnMut(&K) -> bool) -> Vec<I> {
        let keys: Vec<K> = self.by_key.keys().filter(|k| stale(k)).cloned().collect();
        let mut out = Vec::new();
        for key in keys {
            if let Some(list) = self.by_key.remove(&key) {
                out.extend(list.into_iter().map(|i| i.instance));
            }
        }
        self.count -= out.len();
        out
    }

    /// Removes the instance idle the longest, across all keys, to make room.
    pub fn evict_oldest(&mut self) -> Option<I> {
        let key = self
            .by_key
            .iter()
            .filter_map(|(k, list)| list.first().map(|i| (k, i.since_ms)))
            .min_by_key(|(_, since)| *since)
            .map(|(k, _)| k.clone())?;
        let list = self.by_key.get_mut(&key)?;
        let idle = list.remove(0);
        if list.is_empty() {
            self.by_key.remove(&key);
        }
        self.count -= 1;
        Some(idle.instance)
    }

    /// Removes everything (at shutdown).
    pub fn drain_all(&mut self) -> Vec<I> {
        self.count = 0;
        self.by_key
            .drain()
            .flat_map(|(_, list)| list.into_iter().map(|i| i.instance))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_respects_reserved_and_node_limits() {
        let mut a = Admission::new(3);
        assert_eq!(a.try_admit("f", Some(0)), Err(Throttle::Function));
        assert!(a.try_admit("f", Some(2)).is_ok());
        assert!(a.try_admit("f", Some(2)).is_ok());
        assert_eq!(a.try_admit("f", Some(2)), Err(Throttle::Function));
        assert!(a.try_admit("g", None).is_ok());
        assert_eq!(a.try_admit("h", None), Err(Throttle::Node));
        a.release("f");
        assert_eq!(a.active("f"), 1);
        assert!(a.try_admit("h", None).is_ok());
        // Releasing an unknown function does not free node capacity.
        a.release("nope");
        assert_eq!(a.node_active(), 3);
    }

    #[test]
    fn pool_hands_out_most_recent_and_expires_oldest() {
        let mut p: IdlePool<&str, u32> = IdlePool::default();
        p.checkin("f", 1, 0);
        p.checkin("f", 2, 10);
        p.checkin("g", 3, 5);
        assert_eq!(p.checkout(&"f"), Some(2));
        p.checkin("f", 2, 20);
        let mut expired = p.expire(25, 10);
        expired.sort();
        assert_eq!(expired, vec![1, 3]);
        assert_eq!(p.len(), 1);
        assert_eq!(p.evict_oldest(), Some(2));
        assert!(p.is_empty());
        assert_eq!(p.checkout(&"f"), None);
    }

    #[test]
    fn pool_removes_stale_keys() {
        let mut p: IdlePool<(&str, u32), u32> = IdlePool::default();
        p.checkin(("f", 1), 1, 0);
        p.checkin(("f", 2), 2, 0);
        assert_eq!(p.remove_where(|k| k.0 == "f" && k.1 != 2), vec![1]);
        assert_eq!(p.len(), 1);
    }
}
