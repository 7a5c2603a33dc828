//! Which replica owns which account: `--shard INDEX/COUNT`, `shard: {index, count}` and the
//! StatefulSet pod name, and the stable assignment of account ids to shards. Pure: no I/O.
//!
//! Every replica discovers the whole organisation and keeps the accounts that [`Shard::owns`].
//! The assignment is rendezvous (highest random weight) hashing of the account id: each shard
//! scores every account and the highest score wins. It depends on nothing but the account id and
//! the shard count, so replicas agree without talking to each other, an account that is no
//! longer discovered still has exactly one owner (the one that may prove it gone), and going
//! from `n` to `n + 1` shards moves only the accounts whose new top score is the new shard's:
//! about `1 / (n + 1)` of them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One replica's share: shard `index` of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

/// The most shards a deployment may have. Far more replicas than accounts only adds idle pods,
/// and a bound keeps a typo (`--shard 0/1000000`) from scoring accounts a million times each.
pub const MAX_SHARDS: u32 = 1024;

/// Why a shard setting is not usable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("shard {0:?} is not INDEX/COUNT, like 0/3")]
    Malformed(String),
    #[error("shard count must be from 1 to {MAX_SHARDS}, found {0}")]
    Count(u64),
    #[error("shard index {index} is not below the shard count {count}")]
    Index { index: u64, count: u32 },
    #[error(
        "shard index auto needs a StatefulSet pod name like tidemark-3 in HOSTNAME, found {0:?}"
    )]
    NoPodIndex(Option<String>),
}

/// A shard index as configured: a number, or `auto` (from the pod name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardIndex {
    Fixed(u32),
    Auto,
}

/// `shard: {index, count}` as written in the config, before `auto` is resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardSetting {
    pub index: ShardIndex,
    pub count: u32,
}

impl ShardSetting {
    /// The shard this process is, taking an `auto` index from `hostname` (a StatefulSet pod is
    /// named `<statefulset>-<ordinal>`, and Kubernetes sets `HOSTNAME` to the pod name).
    pub fn resolve(&self, hostname: Option<&str>) -> Result<Shard, ShardError> {
        let index = match self.index {
            ShardIndex::Fixed(i) => i,
            ShardIndex::Auto => index_from_pod_name(hostname.unwrap_or_default())
                .ok_or_else(|| ShardError::NoPodIndex(hostname.map(str::to_string)))?,
        };
        Shard::new(u64::from(index), u64::from(self.count))
    }
}

impl Shard {
    /// Shard `index` of `count`, checked.
    pub fn new(index: u64, count: u64) -> Result<Shard, ShardError> {
        let count = check_count(count)?;
        if index >= u64::from(count) {
            return Err(ShardError::Index { index, count });
        }
        Ok(Shard {
            index: index as u32,
            count,
        })
    }

    /// Parses `INDEX/COUNT` (`--shard 1/3`).
    pub fn parse(text: &str) -> Result<Shard, ShardError> {
        let malformed = || ShardError::Malformed(text.to_string());
        let (index, count) = text.trim().split_once('/').ok_or_else(malformed)?;
        let number = |s: &str| -> Result<u64, ShardError> {
            // `+1` and ` 1` parse as numbers in Rust; a shard is written in plain digits.
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(malformed());
            }
            s.parse().map_err(|_| malformed())
        };
        Shard::new(number(index)?, number(count)?)
    }

    /// Whether this shard owns `account`.
    pub fn owns(&self, account: &str) -> bool {
        owner_of(account, self.count) == self.index
    }

    /// Whether this shard bootstraps the blueprints: only shard 0 does, so two replicas never
    /// race to create the same blueprint.
    pub fn bootstraps_blueprints(&self) -> bool {
        self.index == 0
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Whether `shard` (none: the process owns every account) owns `account`.
pub fn owns(shard: Option<&Shard>, account: &str) -> bool {
    shard.is_none_or(|s| s.owns(account))
}

/// Checks a shard count.
pub fn check_count(count: u64) -> Result<u32, ShardError> {
    if (1..=u64::from(MAX_SHARDS)).contains(&count) {
        Ok(count as u32)
    } else {
        Err(ShardError::Count(count))
    }
}

/// The ordinal at the end of a StatefulSet pod name: `tidemark-3` → 3. The name may itself
/// contain dashes (`aws-tidemark-12`); only the part after the last one counts.
pub fn index_from_pod_name(name: &str) -> Option<u32> {
    let (_, ordinal) = name.trim().rsplit_once('-')?;
    if ordinal.is_empty() || !ordinal.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    ordinal.parse().ok()
}

/// The shard of `count` that owns `account`: the one with the highest score.
pub fn owner_of(account: &str, count: u32) -> u32 {
    let key = fnv1a(account.as_bytes());
    (0..count.max(1))
        // Ties (probability 2^-64) go to the lowest index, so the answer is still a function.
        .max_by_key(|&shard| (score(key, shard), std::cmp::Reverse(shard)))
        .unwrap_or(0)
}

/// The score of shard `shard` for an account whose id hashes to `key`. Both functions are
/// written out here rather than taken from `std::hash`, whose output may change between Rust
/// releases: replicas built by different compilers must agree on every assignment.
fn score(key: u64, shard: u32) -> u64 {
    splitmix64(key ^ splitmix64(u64::from(shard).wrapping_add(0x5348_4152_4400_0000)))
}

/// 64-bit FNV-1a.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// SplitMix64's finaliser: spreads FNV's weak low bits over the whole word.
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1,000 account ids shaped like the ones Organizations hands out.
    fn accounts(n: u64) -> Vec<String> {
        (0..n)
            .map(|i| format!("{:012}", 100_000_000_000 + i * 7_919))
            .collect()
    }

    fn counts(accounts: &[String], count: u32) -> Vec<usize> {
        let mut out = vec![0; count as usize];
        for a in accounts {
            out[owner_of(a, count) as usize] += 1;
        }
        out
    }

    #[test]
    fn a_thousand_accounts_spread_over_four_shards_within_ten_percent() {
        for n in counts(&accounts(1000), 4) {
            assert!((225..=275).contains(&n), "{n} is not within 10% of 250");
        }
    }

    #[test]
    fn every_account_has_exactly_one_owner() {
        for account in accounts(1000) {
            let owners: Vec<u32> = (0..3)
                .filter(|&i| Shard { index: i, count: 3 }.owns(&account))
                .collect();
            assert_eq!(owners.len(), 1, "{account}: {owners:?}");
        }
    }

    #[test]
    fn going_from_three_to_four_shards_moves_about_a_quarter_and_only_to_the_new_shard() {
        let all = accounts(1000);
        let moved: Vec<&String> = all
            .iter()
            .filter(|a| owner_of(a, 3) != owner_of(a, 4))
            .collect();
        assert!(moved.len() <= 300, "{} of 1000 moved", moved.len());
        assert!(moved.len() >= 200, "{} of 1000 moved", moved.len());
        // Rendezvous hashing never moves an account between two shards that both stay.
        assert!(moved.iter().all(|a| owner_of(a, 4) == 3));
    }

    #[test]
    fn the_assignment_is_a_fixed_function_of_the_account_id() {
        // Pinned values: if these change, a rolling upgrade would hand accounts between replicas
        // running different versions.
        assert_eq!(owner_of("111111111111", 3), owner_of("111111111111", 3));
        let pinned: Vec<u32> = [
            "111111111111",
            "222222222222",
            "333333333333",
            "123456789012",
        ]
        .iter()
        .map(|a| owner_of(a, 4))
        .collect();
        assert_eq!(pinned, PINNED_OWNERS_OF_FOUR);
        assert_eq!(owner_of("111111111111", 1), 0);
    }

    const PINNED_OWNERS_OF_FOUR: [u32; 4] = [2, 2, 1, 2];

    #[test]
    fn shards_parse_from_index_slash_count() {
        assert_eq!(Shard::parse("1/3"), Ok(Shard { index: 1, count: 3 }));
        assert_eq!(Shard::parse("0/1"), Ok(Shard { index: 0, count: 1 }));
        assert_eq!(
            Shard::parse("3/3"),
            Err(ShardError::Index { index: 3, count: 3 })
        );
        assert_eq!(Shard::parse("0/0"), Err(ShardError::Count(0)));
        for bad in ["1", "a/3", "1/", "/3", "-1/3", "+1/3", "1/3/4", ""] {
            assert!(
                matches!(Shard::parse(bad), Err(ShardError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_pod_name_gives_the_index() {
        assert_eq!(index_from_pod_name("tidemark-3"), Some(3));
        assert_eq!(index_from_pod_name("aws-tidemark-12"), Some(12));
        assert_eq!(index_from_pod_name("tidemark"), None);
        assert_eq!(index_from_pod_name("tidemark-"), None);
        assert_eq!(index_from_pod_name("tidemark-7f9c-x"), None);
        let auto = ShardSetting {
            index: ShardIndex::Auto,
            count: 4,
        };
        assert_eq!(
            auto.resolve(Some("tidemark-2")),
            Ok(Shard { index: 2, count: 4 })
        );
        assert_eq!(
            auto.resolve(Some("tidemark-4")),
            Err(ShardError::Index { index: 4, count: 4 })
        );
        assert_eq!(auto.resolve(None), Err(ShardError::NoPodIndex(None)));
    }

    #[test]
    fn no_shard_owns_every_account() {
        assert!(owns(None, "111111111111"));
        let only = Shard { index: 0, count: 1 };
        assert!(accounts(100).iter().all(|a| only.owns(a)));
    }
}
