//! Bounded label values for per-endpoint and per-tenant metrics.
//!
//! An installation may have millions of endpoints; a series per endpoint would swamp
//! Prometheus. The first `limit` distinct values a process sees keep their own label; later ones
//! share `other`. A limit of 0 switches the label off: every value becomes `all`.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

/// The label value of every value past the limit.
pub const OVERFLOW: &str = "other";
/// The label value of every value when the label is switched off.
pub const OFF: &str = "all";

/// Which values of one label get a series of their own.
pub struct LabelCap {
    limit: usize,
    seen: Mutex<HashSet<String>>,
}

impl LabelCap {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            seen: Mutex::new(HashSet::new()),
        }
    }

    /// `value` itself while it is among the first `limit` values seen, else a shared value.
    pub fn label<'a>(&self, value: &'a str) -> &'a str {
        match (self.admits(value), self.limit) {
            (true, _) => value,
            (false, 0) => OFF,
            (false, _) => OVERFLOW,
        }
    }

    /// Whether `value` has (or now gets) a series of its own.
    pub fn admits(&self, value: &str) -> bool {
        if self.limit == 0 {
            return false;
        }
        // The set holds only strings; a panic elsewhere cannot leave it inconsistent.
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains(value) {
            return true;
        }
        if seen.len() < self.limit {
            seen.insert(value.to_owned());
            return true;
        }
        false
    }
}

static ENDPOINTS: OnceLock<LabelCap> = OnceLock::new();
static TENANTS: OnceLock<LabelCap> = OnceLock::new();

/// The default number of endpoints and tenants that get series of their own.
pub const DEFAULT_LIMIT: usize = 100;

/// Sets the limits; the first call wins (a service calls it once at start-up).
pub fn install(endpoints: usize, tenants: usize) {
    let _ = ENDPOINTS.set(LabelCap::new(endpoints));
    let _ = TENANTS.set(LabelCap::new(tenants));
}

/// The cap on `endpoint` label values.
pub fn endpoints() -> &'static LabelCap {
    ENDPOINTS.get_or_init(|| LabelCap::new(DEFAULT_LIMIT))
}

/// The cap on `tenant` label values.
pub fn tenants() -> &'static LabelCap {
    TENANTS.get_or_init(|| LabelCap::new(DEFAULT_LIMIT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_past_the_limit_share_one_label() {
        let cap = LabelCap::new(2);
        assert_eq!(cap.label("a"), "a");
        assert_eq!(cap.label("b"), "b");
        assert_eq!(cap.label("c"), OVERFLOW);
        assert_eq!(cap.label("a"), "a", "a value seen before keeps its label");
        assert!(!cap.admits("d"));
    }

    #[test]
    fn a_limit_of_zero_switches_the_label_off() {
        let cap = LabelCap::new(0);
        assert_eq!(cap.label("a"), OFF);
        assert!(!cap.admits("a"));
    }
}
