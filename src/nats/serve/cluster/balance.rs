//! Who should own which partition: the pure part of the leases, with no I/O and no clock.
//!
//! Each instance reads the lease bucket (partition keys and the instances' heartbeat keys) into a
//! [`View`] and asks [`plan`] what to do. Every instance aims at `ceil(P / N)` partitions: it claims free
//! partitions up to that and releases the ones above it, so three instances spread eight partitions
//! 3/3/2 after a few rounds whatever order they start in. Claims are atomic in the bucket (create only
//! if absent), so two instances racing for one partition cannot both win; the plan only says what is
//! worth trying.

use std::collections::{BTreeMap, BTreeSet};

/// The lease bucket as one instance read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    /// Number of partitions of the pair space.
    pub partitions: u32,
    /// Current owner of each leased partition (a partition absent here is free).
    pub owners: BTreeMap<u32, String>,
    /// Instances alive (their heartbeat key has not expired), this one included.
    pub instances: BTreeSet<String>,
}

/// One change of ownership worth trying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Create the partition's lease (it is free).
    Claim(u32),
    /// Checkpoint the partition's pairs, then delete its lease (this instance holds more than its share).
    Release(u32),
}

impl View {
    /// The share each instance aims at: `ceil(P / N)`, where `N` counts this instance even before its first
    /// heartbeat is visible.
    pub fn target(&self, me: &str) -> u32 {
        let mut n = self.instances.len();
        if !self.instances.contains(me) {
            n += 1;
        }
        let n = u32::try_from(n.max(1)).unwrap_or(u32::MAX);
        self.partitions.div_ceil(n)
    }

    /// The partitions `me` holds in this view.
    pub fn held_by(&self, me: &str) -> BTreeSet<u32> {
        self.owners
            .iter()
            .filter(|(_, o)| o.as_str() == me)
            .map(|(p, _)| *p)
            .collect()
    }
}

/// What `me` should try next, in order: claims of free partitions up to its target (lowest first, after
/// an offset taken from its name so instances starting together do not all race for partition 0), or
/// releases of the partitions above the target (highest first). At most one release per round, so the
/// others see a partition free before the next one goes.
pub fn plan(me: &str, view: &View) -> Vec<Step> {
    let held = view.held_by(me);
    let target = view.target(me) as usize;
    if held.len() > target {
        // Release only when another instance can take it: someone below the target, or a newcomer.
        let below = view.instances.iter().filter(|i| i.as_str() != me).any(|i| {
            let h = view.owners.values().filter(|o| *o == i).count();
            h < target
        });
        return match held.last() {
            Some(&p) if below => vec![Step::Release(p)],
            _ => Vec::new(),
        };
    }
    let want = target - held.len();
    if want == 0 || view.partitions == 0 {
        return Vec::new();
    }
    let offset = fnv1a32(me.as_bytes()) % view.partitions;
    (0..view.partitions)
        .map(|i| (i + offset) % view.partitions)
        .filter(|p| !view.owners.contains_key(p))
        .take(want)
        .map(Step::Claim)
        .collect()
}

/// 32-bit FNV-1a, the hash nats-server's `{{partition(P,1)}}` subject transform uses.
pub fn fnv1a32(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The partition of a pair: `fnv1a32(pair) % partitions`, as the stream's `{{partition(P,1)}}` computes it
/// on the subject's last token (a single token is hashed as it is).
pub fn partition_of(pair: &str, partitions: u32) -> u32 {
    fnv1a32(pair.as_bytes()) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(partitions: u32, owners: &[(u32, &str)], instances: &[&str]) -> View {
        View {
            partitions,
            owners: owners.iter().map(|(p, o)| (*p, (*o).to_string())).collect(),
            instances: instances.iter().map(|i| (*i).to_string()).collect(),
        }
    }

    /// Runs rounds of every instance's plan against a shared view (claims and releases applied at once,
    /// as the bucket would) until nothing changes; returns the holdings.
    fn settle(partitions: u32, instances: &[&str], mut v: View) -> BTreeMap<String, usize> {
        v.instances = instances.iter().map(|i| (*i).to_string()).collect();
        for _ in 0..50 {
            let mut changed = false;
            for me in instances {
                for step in plan(me, &v) {
                    match step {
                        Step::Claim(p) => {
                            if let std::collections::btree_map::Entry::Vacant(e) = v.owners.entry(p) {
                                e.insert((*me).to_string());
                                changed = true;
                            }
                        }
                        Step::Release(p) => {
                            v.owners.remove(&p);
                            changed = true;
                        }
                    }
                }
            }
            if !changed {
                break;
            }
        }
        assert_eq!(v.owners.len() as u32, partitions, "every partition owned");
        let mut held = BTreeMap::new();
        for o in v.owners.values() {
            *held.entry(o.clone()).or_insert(0) += 1;
        }
        held
    }

    #[test]
    fn the_fnv_hash_is_the_one_nats_uses() {
        // FNV-1a test vectors.
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9c_f968);
        assert!(partition_of("USDMXN", 8) < 8);
        assert_eq!(partition_of("USDMXN", 1), 0);
    }

    #[test]
    fn alone_an_instance_claims_everything() {
        let v = view(8, &[], &["a"]);
        let steps = plan("a", &v);
        assert_eq!(steps.len(), 8);
        assert!(steps.iter().all(|s| matches!(s, Step::Claim(_))));
    }

    #[test]
    fn before_its_heartbeat_shows_an_instance_counts_itself() {
        let v = view(8, &[], &["a", "b"]);
        assert_eq!(v.target("c"), 3);
        assert_eq!(v.target("a"), 4);
    }

    #[test]
    fn three_instances_spread_eight_partitions_3_3_2() {
        let held = settle(
            8,
            &["a", "b", "c"],
            View {
                partitions: 8,
                ..View::default()
            },
        );
        let mut counts: Vec<usize> = held.values().copied().collect();
        counts.sort_unstable();
        assert_eq!(counts, vec![2, 3, 3]);
    }

    #[test]
    fn a_newcomer_gets_partitions_released_by_the_others() {
        // "a" holds everything; "b" and "c" join.
        let all: Vec<(u32, &str)> = (0..8).map(|p| (p, "a")).collect();
        let v = view(8, &all, &["a"]);
        let held = settle(8, &["a", "b", "c"], v);
        let mut counts: Vec<usize> = held.values().copied().collect();
        counts.sort_unstable();
        assert_eq!(counts, vec![2, 3, 3]);
    }

    #[test]
    fn the_survivors_take_a_dead_instance_s_partitions() {
        // "c" died: its leases expired (gone from the view), and so did its heartbeat.
        let owners = [(0, "a"), (1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "b")];
        let held = settle(8, &["a", "b"], view(8, &owners, &["a", "b"]));
        assert_eq!(held.values().copied().collect::<Vec<_>>(), vec![4, 4]);
    }

    #[test]
    fn no_release_when_nobody_can_take_it() {
        // "a" holds 4 of 8 with "b" holding 4: the share is 4, nothing moves.
        let owners: Vec<(u32, &str)> = (0..8).map(|p| (p, if p < 4 { "a" } else { "b" })).collect();
        assert!(plan("a", &view(8, &owners, &["a", "b"])).is_empty());
        // At its share with a partition free: nothing for "a" (the free one is "b"'s to claim).
        let owners: Vec<(u32, &str)> = (0..7).map(|p| (p, if p < 4 { "a" } else { "b" })).collect();
        let steps = plan("a", &view(8, &owners, &["a", "b"]));
        assert!(steps.is_empty(), "{steps:?}");
    }
}
