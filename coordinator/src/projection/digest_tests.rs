//! Property tests of the incremental digest: whatever folds, snapshots (`take_dirty_rows`),
//! reloads and digest requests interleave, `Fleet::digest` equals the digest of every row
//! serialised afresh, and paging from a cursor (`hosts_after`) sees the hosts after it.

use super::tests::{disk, heartbeat, inc};
use super::*;
use opsfleet_proto::pb;
use proptest::prelude::*;

fn fresh(f: &Fleet) -> String {
    digest_rows(f.rows().iter().map(|(k, v)| (k.as_str(), v.as_slice())))
}

#[derive(Debug, Clone)]
enum Op {
    Heartbeat(usize),
    Disk(usize, u32),
    Take,
    Digest,
    Reload,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..6).prop_map(Op::Heartbeat),
        3 => (0usize..6, 0u32..10_000).prop_map(|(h, bp)| Op::Disk(h, bp)),
        1 => Just(Op::Take),
        2 => Just(Op::Digest),
        1 => Just(Op::Reload),
    ]
}

proptest! {
    #[test]
    fn the_running_digest_equals_a_full_one(ops in proptest::collection::vec(op(), 1..80)) {
        let mut fleet = Fleet::new();
        let mut seqs = [0u64; 6];
        for op in ops {
            match op {
                Op::Heartbeat(h) | Op::Disk(h, _) => {
                    seqs[h] += 1;
                    let host = format!("web-{h:02}");
                    let ev = match op {
                        Op::Disk(_, bp) => disk(&host, inc(1), seqs[h], bp, pb::DiskLevel::Ok),
                        _ => heartbeat(&host, inc(1), seqs[h]),
                    };
                    fleet.apply(&ev);
                }
                Op::Take => {
                    fleet.take_dirty_rows();
                }
                Op::Digest => prop_assert_eq!(fleet.digest(), fresh(&fleet)),
                Op::Reload => {
                    let mut back = Fleet::from_rows(fleet.rows()).unwrap();
                    prop_assert_eq!(back.digest(), fresh(&fleet));
                    back.take_dirty_rows();
                    fleet = back;
                }
            }
        }
        prop_assert_eq!(fleet.digest(), fresh(&fleet));
    }

    #[test]
    fn hosts_after_a_cursor_are_the_later_ones(
        names in proptest::collection::btree_set("[a-d]{1,3}", 0..12),
        cursor in proptest::option::of("[a-d]{0,3}"),
    ) {
        let mut fleet = Fleet::new();
        for name in &names {
            fleet.apply(&heartbeat(name, inc(1), 1));
        }
        let got: Vec<&str> = fleet.hosts_after(cursor.as_deref()).map(|h| h.host.as_str()).collect();
        let want: Vec<&str> = names
            .iter()
            .map(String::as_str)
            .filter(|n| cursor.as_deref().is_none_or(|c| *n > c))
            .collect();
        prop_assert_eq!(got, want);
    }
}
