//! Passive health (outlier ejection) policy: how long an ejection lasts and whether one more
//! endpoint may be ejected. Plain code; the controller applies it.

use std::time::Duration;

use crate::config::OutlierConfig;

/// How long the `n`-th ejection (0-based, after decay) lasts: `base * 2^n`, capped.
pub fn ejection_time(cfg: &OutlierConfig, prior: u32) -> Duration {
    let factor = 1u32.checked_shl(prior.min(31)).unwrap_or(u32::MAX);
    cfg.base_ejection
        .checked_mul(factor)
        .unwrap_or(cfg.max_ejection)
        .min(cfg.max_ejection)
}

/// Repeat ejections are forgiven one step per `base_ejection` spent back in rotation, so a task
/// that failed once last week does not start at the cap.
pub fn decay(prior: u32, back_in_rotation: Duration, cfg: &OutlierConfig) -> u32 {
    if cfg.base_ejection.is_zero() {
        return 0;
    }
    let steps = back_in_rotation.as_nanos() / cfg.base_ejection.as_nanos();
    prior.saturating_sub(u32::try_from(steps).unwrap_or(u32::MAX))
}

/// Whether one more endpoint may be ejected when `ejected` of `total` already are. At least
/// one may always be ejected (a single-task upstream can still shed a dead task and answer 503
/// fast), but never more than `max_ejection_percent` of the set.
pub fn may_eject(ejected: usize, total: usize, max_ejection_percent: u8) -> bool {
    let cap = (total * usize::from(max_ejection_percent) / 100).max(1);
    ejected < cap
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> OutlierConfig {
        OutlierConfig {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(60),
            max_ejection_percent: 50,
        }
    }

    #[test]
    fn ejection_time_doubles_up_to_the_cap() {
        let c = cfg();
        let times: Vec<_> = (0..6).map(|n| ejection_time(&c, n).as_secs()).collect();
        assert_eq!(times, [10, 20, 40, 60, 60, 60]);
        assert_eq!(ejection_time(&c, u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn repeat_count_decays_while_back_in_rotation() {
        let c = cfg();
        assert_eq!(decay(3, Duration::from_secs(9), &c), 3);
        assert_eq!(decay(3, Duration::from_secs(25), &c), 1);
        assert_eq!(decay(3, Duration::from_secs(3600), &c), 0);
    }

    #[test]
    fn ejection_share_is_capped_but_one_is_always_allowed() {
        assert!(may_eject(0, 1, 50));
        assert!(!may_eject(1, 1, 50));
        assert!(may_eject(0, 3, 50));
        assert!(!may_eject(1, 3, 50));
        assert!(may_eject(1, 4, 50));
        assert!(!may_eject(2, 4, 50));
        assert!(may_eject(2, 3, 100));
        assert!(!may_eject(3, 3, 100));
        assert!(may_eject(0, 10, 0));
        assert!(!may_eject(1, 10, 0));
    }
}
