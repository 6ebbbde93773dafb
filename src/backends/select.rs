//! The order in which a session tries the pool's backends (pure): healthy
//! ones (and those not checked yet) first, in the order the selection
//! policy gives, then those the last check found down, as a last resort in
//! list order, since a check can be stale and a 421 is worse than a try.

use crate::config::Selection;

/// What the selection knows of one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// The latest health check failed (or a session could not connect since).
    pub down: bool,
    /// Sessions connected to it now.
    pub sessions: usize,
}

/// Indexes into `members`, in the order to try them. `turn` is a counter
/// that advances once per session (round-robin's position, and the
/// tie-break of least-connections so equal backends share the load).
pub fn order(selection: Selection, members: &[Candidate], turn: usize) -> Vec<usize> {
    let n = members.len();
    let start = match selection {
        Selection::FirstAvailable => 0,
        Selection::RoundRobin | Selection::LeastConnections => turn % n.max(1),
    };
    let rotated = (0..n).map(|i| (start + i) % n);
    let mut healthy: Vec<usize> = rotated.clone().filter(|&i| !members[i].down).collect();
    if selection == Selection::LeastConnections {
        healthy.sort_by_key(|&i| members[i].sessions); // stable: ties keep the rotation
    }
    healthy.extend((0..n).filter(|&i| members[i].down));
    healthy
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn up(sessions: usize) -> Candidate {
        Candidate {
            down: false,
            sessions,
        }
    }
    const DOWN: Candidate = Candidate {
        down: true,
        sessions: 0,
    };

    #[test]
    fn first_available_is_a_primary_with_standbys() {
        let m = [up(9), up(0), up(0)];
        assert_eq!(order(Selection::FirstAvailable, &m, 7), [0, 1, 2]);
        assert_eq!(
            order(Selection::FirstAvailable, &[DOWN, up(0), up(0)], 7),
            [1, 2, 0]
        );
    }

    #[test]
    fn round_robin_takes_turns_and_skips_the_down() {
        let m = [up(0), DOWN, up(0)];
        let firsts: Vec<usize> = (0..6)
            .map(|t| order(Selection::RoundRobin, &m, t)[0])
            .collect();
        assert_eq!(firsts, [0, 2, 2, 0, 2, 2]);
        assert_eq!(order(Selection::RoundRobin, &m, 1), [2, 0, 1]);
    }

    #[test]
    fn least_connections_prefers_the_idle_and_shares_ties() {
        assert_eq!(
            order(Selection::LeastConnections, &[up(5), up(2), up(9)], 0),
            [1, 0, 2]
        );
        let tie = [up(1), up(1)];
        assert_eq!(order(Selection::LeastConnections, &tie, 0)[0], 0);
        assert_eq!(order(Selection::LeastConnections, &tie, 1)[0], 1);
        assert_eq!(
            order(Selection::LeastConnections, &[DOWN, up(50)], 0),
            [1, 0]
        );
    }

    #[test]
    fn an_empty_pool_orders_nothing() {
        assert!(order(Selection::RoundRobin, &[], 3).is_empty());
    }

    proptest! {
        /// Every backend is tried exactly once, the healthy ones before the down ones.
        #[test]
        fn a_permutation_healthy_first(
            states in proptest::collection::vec((any::<bool>(), 0usize..5), 0..8),
            turn in 0usize..100,
            pick in 0u8..3,
        ) {
            let members: Vec<Candidate> =
                states.iter().map(|&(down, sessions)| Candidate { down, sessions }).collect();
            let selection = [Selection::FirstAvailable, Selection::RoundRobin, Selection::LeastConnections][pick as usize];
            let o = order(selection, &members, turn);
            let mut sorted = o.clone();
            sorted.sort_unstable();
            prop_assert_eq!(sorted, (0..members.len()).collect::<Vec<_>>());
            let first_down = o.iter().position(|&i| members[i].down).unwrap_or(o.len());
            prop_assert!(o[first_down..].iter().all(|&i| members[i].down));
        }
    }
}
