//! The fleet's traffic counters, summed for rollout guards. Each instance publishes
//! its per-pool counters (cumulative since it started) every second; this turns
//! those snapshots into one cumulative count per pool that only grows: an instance
//! that restarts starts from zero again (its new counts are added whole), and one
//! that leaves keeps what it had contributed. A rollout step subtracts two of these
//! sums, exactly as it does with one instance's counters.

use std::collections::{BTreeMap, HashMap};

use super::records::{Counters, Presence};
use crate::rollout::TrafficSample;

#[derive(Debug, Default)]
struct Seen {
    boot: String,
    pools: BTreeMap<String, Counters>,
}

/// Cumulative fleet counters per pool (see the module docs).
#[derive(Debug, Default)]
pub struct FleetCounters {
    by_instance: HashMap<String, Seen>,
    totals: BTreeMap<String, Counters>,
}

impl FleetCounters {
    /// Takes in an instance's latest heartbeat.
    pub fn observe(&mut self, name: &str, presence: &Presence) {
        let seen = self.by_instance.entry(name.to_string()).or_default();
        let restarted = seen.boot != presence.boot;
        if restarted {
            seen.boot.clone_from(&presence.boot);
            seen.pools.clear();
        }
        for (pool, now) in &presence.pools {
            let before = seen.pools.get(pool);
            let total = self.totals.entry(pool.clone()).or_default();
            add_delta(total, before, now);
            seen.pools.insert(pool.clone(), now.clone());
        }
    }

    /// The fleet's cumulative counters of a pool (zero before any heartbeat).
    pub fn sample(&self, pool: &str) -> TrafficSample {
        self.totals
            .get(pool)
            .and_then(|c| TrafficSample::from_parts(c.requests, c.failures, &c.latency))
            .unwrap_or_default()
    }
}

/// Adds what `now` counted since `before` to `total`. Counters that went down
/// belong to a fresh process: all of `now` is new.
fn add_delta(total: &mut Counters, before: Option<&Counters>, now: &Counters) {
    let fresh = before.is_none_or(|b| now.requests < b.requests || now.failures < b.failures);
    let zero = Counters::default();
    let before = if fresh {
        &zero
    } else {
        before.unwrap_or(&zero)
    };
    total.requests += now.requests.saturating_sub(before.requests);
    total.failures += now.failures.saturating_sub(before.failures);
    if total.latency.len() < now.latency.len() {
        total.latency.resize(now.latency.len(), 0);
    }
    for (i, n) in now.latency.iter().enumerate() {
        let b = before.latency.get(i).copied().unwrap_or(0);
        total.latency[i] += n.saturating_sub(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presence(boot: &str, requests: u64, failures: u64) -> Presence {
        let latency = {
            let mut l = vec![0; TrafficSample::default().buckets().len()];
            l[0] = requests - failures;
            l
        };
        Presence {
            instance: "x".into(),
            boot: boot.into(),
            version: String::new(),
            admin: None,
            heartbeat_ms: 0,
            state_revision: 0,
            config: Default::default(),
            backends: BTreeMap::new(),
            pools: BTreeMap::from([(
                "green".to_string(),
                Counters {
                    requests,
                    failures,
                    latency,
                },
            )]),
        }
    }

    #[test]
    fn sums_grow_across_restarts_and_departures() {
        let mut f = FleetCounters::default();
        f.observe("a", &presence("1", 10, 1));
        f.observe("b", &presence("1", 5, 0));
        let start = f.sample("green");
        assert_eq!((start.requests, start.failures), (15, 1));
        f.observe("a", &presence("1", 30, 11));
        // `b` restarted: its counters begin again and all of them are new.
        f.observe("b", &presence("2", 4, 4));
        let window = f.sample("green").since(&start);
        assert_eq!((window.requests, window.failures), (24, 14));
        // A repeated heartbeat adds nothing.
        f.observe("a", &presence("1", 30, 11));
        assert_eq!(f.sample("green").since(&start).requests, 24);
        assert_eq!(f.sample("blue"), TrafficSample::default());
    }
}
