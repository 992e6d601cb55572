//! Choosing one deployment among the candidates of a tier: weighted random, or the power of two
//! choices (two drawn by weight, the less loaded one taken; a tie goes to the first drawn).
//!
//! Weights bias which two are drawn; load alone decides between them. So an idle group splits its
//! traffic by weight (every comparison is a tie), and a busy one sends each request to the less
//! loaded of its two candidates. (Dividing load by weight instead would send every request of an
//! idle group to the heaviest deployment.)
//!
//! `tower::balance::p2c` is the same algorithm, but it balances over services that are ready in
//! `poll_ready`, with uniform draws, and it is not `Clone` (it would need a `Buffer`): it has no
//! place for weights, priority tiers, deployments this request already tried or ejected ones. The
//! load it would read (`tower::load::PeakEwma`, `PendingRequests`) counts with handles tied to one
//! service value, which clones do not share, so the load is kept in the deployment's health
//! instead and read here.

use rand::Rng;

use crate::config::BalanceStrategy;

/// Picks one of `candidates` (non-empty) by `strategy`. `weight(i)` is at least 1; `load(i)` is
/// the candidate's load (outstanding requests + 1, times its latency for
/// [`BalanceStrategy::LowestLatency`]).
pub(crate) fn choose<R: Rng>(
    rng: &mut R,
    strategy: BalanceStrategy,
    candidates: &[usize],
    weight: impl Fn(usize) -> u32,
    load: impl Fn(usize) -> f64,
) -> Option<usize> {
    let first = draw(rng, candidates, &weight, None)?;
    if strategy == BalanceStrategy::Weighted || candidates.len() == 1 {
        return Some(first);
    }
    let Some(second) = draw(rng, candidates, &weight, Some(first)) else {
        return Some(first);
    };
    Some(if load(second) < load(first) {
        second
    } else {
        first
    })
}

/// One candidate at random in proportion to its weight, `except` one.
fn draw<R: Rng>(
    rng: &mut R,
    candidates: &[usize],
    weight: &impl Fn(usize) -> u32,
    except: Option<usize>,
) -> Option<usize> {
    let total: u64 = candidates
        .iter()
        .filter(|&&i| Some(i) != except)
        .map(|&i| u64::from(weight(i).max(1)))
        .sum();
    if total == 0 {
        return None;
    }
    let mut ticket = rng.gen_range(0..total);
    for &i in candidates.iter().filter(|&&i| Some(i) != except) {
        let w = u64::from(weight(i).max(1));
        if ticket < w {
            return Some(i);
        }
        ticket -= w;
    }
    None
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn weighted_follows_the_weights() {
        let mut rng = StdRng::seed_from_u64(7);
        let weights = [6u32, 3, 1];
        let mut seen = [0u32; 3];
        for _ in 0..10_000 {
            let i = choose(
                &mut rng,
                BalanceStrategy::Weighted,
                &[0, 1, 2],
                |i| weights[i],
                |_| 1.0,
            )
            .unwrap();
            seen[i] += 1;
        }
        for (i, w) in weights.iter().enumerate() {
            let share = f64::from(seen[i]) / 10_000.0;
            assert!((share - f64::from(*w) / 10.0).abs() < 0.02, "{seen:?}");
        }
    }

    #[test]
    fn two_choices_take_the_less_loaded() {
        let mut rng = StdRng::seed_from_u64(7);
        // With two candidates both are always drawn: the lighter one always wins.
        for _ in 0..100 {
            let i = choose(
                &mut rng,
                BalanceStrategy::LeastOutstanding,
                &[3, 4],
                |_| 1,
                |i| if i == 3 { 5.0 } else { 1.0 },
            );
            assert_eq!(i, Some(4));
        }
        // Equal loads: the first drawn, so an idle group splits by weight.
        let mut seen = [0u32; 2];
        for _ in 0..10_000 {
            let i = choose(
                &mut rng,
                BalanceStrategy::LeastOutstanding,
                &[0, 1],
                |i| if i == 0 { 3 } else { 1 },
                |_| 1.0,
            )
            .unwrap();
            seen[i] += 1;
        }
        let share = f64::from(seen[0]) / 10_000.0;
        assert!((share - 0.75).abs() < 0.02, "{seen:?}");
        // Latency decides between two equally busy ones, whatever their weights.
        let i = choose(
            &mut rng,
            BalanceStrategy::LowestLatency,
            &[0, 1],
            |i| if i == 0 { 9 } else { 1 },
            |i| if i == 0 { 0.5 } else { 0.1 },
        );
        assert_eq!(i, Some(1));
        // Among many, the heaviest is never chosen (it loses to whichever it is drawn with).
        let loads = [1.0, 2.0, 3.0, 100.0];
        for _ in 0..1000 {
            let i = choose(
                &mut rng,
                BalanceStrategy::LeastOutstanding,
                &[0, 1, 2, 3],
                |_| 1,
                |i| loads[i],
            )
            .unwrap();
            assert_ne!(i, 3);
        }
    }

    #[test]
    fn nothing_to_choose_from_is_none() {
        let mut rng = StdRng::seed_from_u64(7);
        assert_eq!(
            choose(&mut rng, BalanceStrategy::Weighted, &[], |_| 1, |_| 1.0),
            None
        );
    }
}
