//! The projection digest, kept up to date row by row: a sum (mod 2^256) of one sha256 per
//! row, so a changed row costs one hash, not a pass over the whole fleet. `Fleet::apply`
//! marks a row key dirty (`DirtyRows`); the first `digest()` or `take_dirty_rows` after it
//! folds that row's new hash into the sum (`RowDigest`). The sum does not depend on the
//! order the rows were added in, so `digest_rows` over stored rows (`rebuild`) and the live
//! sum of a fleet with the same rows agree.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use sha2::{Digest, Sha256};

/// Domain separation of the digest text: a digest of the older, ordered form can never
/// equal one of this form by accident.
const DOMAIN: &[u8] = b"opsfleet/projection-rows/sum-of-sha256/v2";

/// One row's contribution: sha256 over its length-prefixed key and value.
pub(super) fn row_hash(key: &str, value: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update((key.len() as u64).to_be_bytes());
    hasher.update(key.as_bytes());
    hasher.update((value.len() as u64).to_be_bytes());
    hasher.update(value);
    hasher.finalize().into()
}

/// A 256-bit sum of row hashes, as four little-endian limbs (wrapping: mod 2^256).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Sum([u64; 4]);

impl Sum {
    fn limbs(h: &[u8; 32]) -> [u64; 4] {
        let mut out = [0u64; 4];
        for (limb, chunk) in out.iter_mut().zip(h.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            *limb = u64::from_le_bytes(b);
        }
        out
    }

    pub(super) fn add(&mut self, h: &[u8; 32]) {
        let mut carry = false;
        for (a, b) in self.0.iter_mut().zip(Self::limbs(h)) {
            let (s1, c1) = a.overflowing_add(b);
            let (s2, c2) = s1.overflowing_add(u64::from(carry));
            *a = s2;
            carry = c1 || c2;
        }
    }

    pub(super) fn sub(&mut self, h: &[u8; 32]) {
        let mut borrow = false;
        for (a, b) in self.0.iter_mut().zip(Self::limbs(h)) {
            let (d1, b1) = a.overflowing_sub(b);
            let (d2, b2) = d1.overflowing_sub(u64::from(borrow));
            *a = d2;
            borrow = b1 || b2;
        }
    }

    /// The digest text of `count` rows summing to `self`: hex sha256.
    pub(super) fn text(&self, count: u64) -> String {
        let mut hasher = Sha256::new();
        hasher.update(DOMAIN);
        for limb in self.0 {
            hasher.update(limb.to_le_bytes());
        }
        hasher.update(count.to_be_bytes());
        hex::encode(hasher.finalize())
    }
}

/// Row keys changed (or removed) since the last `take`, each with whether `RowDigest` has
/// absorbed its current value. Inserting a key again marks it not absorbed.
#[derive(Debug, Default)]
pub(super) struct DirtyRows(BTreeMap<String, AtomicBool>);

impl DirtyRows {
    pub(super) fn insert(&mut self, key: String) {
        self.0.insert(key, AtomicBool::new(false));
    }

    /// Marks `key` changed again (not absorbed) if it is already dirty, without allocating;
    /// false if it is not dirty yet (then the caller `insert`s it).
    pub(super) fn mark_again(&mut self, key: &str) -> bool {
        match self.0.get_mut(key) {
            Some(absorbed) => {
                *absorbed.get_mut() = false;
                true
            }
            None => false,
        }
    }

    /// Every dirty key, ascending, and whether the digest absorbed it; empties the set.
    pub(super) fn take(&mut self) -> Vec<(String, bool)> {
        std::mem::take(&mut self.0)
            .into_iter()
            .map(|(k, absorbed)| (k, absorbed.into_inner()))
            .collect()
    }

    /// The keys whose current value the digest has not absorbed yet; marks them absorbed.
    fn claim_unabsorbed(&self) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(|(_, absorbed)| !absorbed.swap(true, Ordering::Relaxed))
            .map(|(k, _)| k.as_str())
    }

    fn mark_all_absorbed(&self) {
        for absorbed in self.0.values() {
            absorbed.store(true, Ordering::Relaxed);
        }
    }
}

impl Clone for DirtyRows {
    fn clone(&self) -> Self {
        DirtyRows(
            self.0
                .iter()
                .map(|(k, a)| (k.clone(), AtomicBool::new(a.load(Ordering::Relaxed))))
                .collect(),
        )
    }
}

/// Two fleets are equal whatever their digest bookkeeping: the keys still to write count.
impl PartialEq for DirtyRows {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len() && self.0.keys().eq(other.0.keys())
    }
}

/// The running sum and every row's hash in it (to take out when the row changes).
#[derive(Debug, Default, Clone)]
struct State {
    sum: Sum,
    hashes: HashMap<String, [u8; 32]>,
    /// Rows were loaded without being hashed: the next `digest` hashes every row.
    stale: bool,
}

impl State {
    fn put(&mut self, key: &str, hash: [u8; 32]) {
        match self.hashes.get_mut(key) {
            Some(old) => {
                self.sum.sub(old);
                *old = hash;
            }
            None => {
                self.hashes.insert(key.to_owned(), hash);
            }
        }
        self.sum.add(&hash);
    }

    fn remove(&mut self, key: &str) {
        if let Some(old) = self.hashes.remove(key) {
            self.sum.sub(&old);
        }
    }

    fn text(&self) -> String {
        self.sum.text(self.hashes.len() as u64)
    }
}

/// The digest's state, behind a lock so that `Fleet::digest(&self)` (under the fleet's read
/// lock) can absorb dirty rows. Derived: ignored by `==`, copied by `clone`.
#[derive(Debug, Default)]
pub(super) struct RowDigest(Mutex<State>);

impl RowDigest {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Only whole-row updates happen under the lock; a poisoned one still holds a sum
        // that `stale` makes the next digest recompute.
        self.0.lock().unwrap_or_else(|e| {
            let mut s = e.into_inner();
            s.stale = true;
            s
        })
    }

    /// After loading rows without hashing them: the next digest hashes every row.
    pub(super) fn mark_stale(&mut self) {
        if let Ok(s) = self.0.get_mut() {
            s.stale = true;
        }
    }

    /// The digest with every dirty row absorbed. `row` serialises a row by key (None: no such
    /// row any more); `each_row` visits every row (only used when the sum is stale).
    pub(super) fn digest(
        &self,
        dirty: &DirtyRows,
        row: impl Fn(&str) -> Option<Vec<u8>>,
        each_row: impl FnOnce(&mut dyn FnMut(&str, &[u8])),
    ) -> String {
        let mut s = self.lock();
        if s.stale {
            let mut fresh = State::default();
            each_row(&mut |k, v| fresh.put(k, row_hash(k, v)));
            *s = fresh;
            dirty.mark_all_absorbed();
        } else {
            for key in dirty.claim_unabsorbed() {
                match row(key) {
                    Some(value) => s.put(key, row_hash(key, &value)),
                    None => s.remove(key),
                }
            }
        }
        s.text()
    }

    /// Absorbs one taken dirty row (`value` empty: removed) unless it was absorbed already.
    pub(super) fn absorb_taken(&mut self, key: &str, value: &[u8], absorbed: bool) {
        let Ok(s) = self.0.get_mut() else {
            return;
        };
        if absorbed || s.stale {
            return;
        }
        if value.is_empty() {
            s.remove(key);
        } else {
            s.put(key, row_hash(key, value));
        }
    }
}

impl Clone for RowDigest {
    fn clone(&self) -> Self {
        RowDigest(Mutex::new(self.lock().clone()))
    }
}

impl PartialEq for RowDigest {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// The digest of `rows` (each key once): what `Fleet::digest` answers for a fleet whose rows
/// these are.
pub fn digest_rows<'a>(rows: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut sum = Sum::default();
    let mut count = 0u64;
    for (key, value) in rows {
        sum.add(&row_hash(key, value));
        count += 1;
    }
    sum.text(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn sum_is_order_free_and_sub_undoes_add(
            hashes in proptest::collection::vec(any::<[u8; 32]>(), 0..20),
            seed in any::<u64>(),
        ) {
            let mut forward = Sum::default();
            hashes.iter().for_each(|h| forward.add(h));
            let mut backward = Sum::default();
            hashes.iter().rev().for_each(|h| backward.add(h));
            prop_assert_eq!(forward, backward);
            let mut extra = [0u8; 32];
            extra[..8].copy_from_slice(&seed.to_le_bytes());
            extra[24..].copy_from_slice(&seed.to_be_bytes());
            let mut round = forward;
            round.add(&extra);
            round.sub(&extra);
            prop_assert_eq!(round, forward);
        }
    }

    #[test]
    fn carries_cross_limbs() {
        let mut s = Sum::default();
        let mut max = [0u8; 32];
        max[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        let mut one = [0u8; 32];
        one[0] = 1;
        s.add(&max);
        s.add(&one);
        assert_eq!(s.0, [0, 1, 0, 0]);
        s.sub(&one);
        assert_eq!(s.0, [u64::MAX, 0, 0, 0]);
    }

    #[test]
    fn a_removed_row_leaves_the_sum() {
        let mut dirty = DirtyRows::default();
        let digest = RowDigest::default();
        dirty.insert("cmd/a".to_owned());
        dirty.insert("cmd/b".to_owned());
        let both = digest.digest(&dirty, |_| Some(b"x".to_vec()), |_| {});
        assert_eq!(
            both,
            digest_rows([("cmd/a", b"x".as_slice()), ("cmd/b", b"x".as_slice())])
        );
        assert_eq!(dirty.take().len(), 2);
        dirty.insert("cmd/a".to_owned());
        let one = digest.digest(&dirty, |_| None, |_| {});
        assert_eq!(one, digest_rows([("cmd/b", b"x".as_slice())]));
    }

    #[test]
    fn the_digest_covers_keys_values_and_count() {
        let a = digest_rows([("host/a", b"1".as_slice())]);
        assert_ne!(a, digest_rows([("host/a", b"2".as_slice())]));
        assert_ne!(a, digest_rows([("host/b", b"1".as_slice())]));
        assert_ne!(a, digest_rows(std::iter::empty()));
        assert_eq!(a.len(), 64);
    }
}
