//! A sliding 60-second window of one-second buckets (requests or tokens per minute).

use std::time::Duration;

const SLOTS: usize = 60;

#[derive(Debug, Clone)]
pub struct RateWindow {
    /// `counts[s % 60]` holds second `s`, valid when `secs[s % 60] == s`.
    counts: [u64; SLOTS],
    secs: [i64; SLOTS],
}

impl Default for RateWindow {
    fn default() -> Self {
        RateWindow {
            counts: [0; SLOTS],
            // Long ago: no slot holds a second of the window.
            secs: [i64::MIN / 2; SLOTS],
        }
    }
}

impl RateWindow {
    fn slot(s: i64) -> usize {
        s.rem_euclid(SLOTS as i64) as usize
    }

    /// (second, units) of the slots in the 60 seconds ending at `now_s` (inclusive).
    fn live(&self, now_s: i64) -> impl Iterator<Item = (i64, u64)> + '_ {
        (0..SLOTS)
            .filter(move |&i| now_s - self.secs[i] < SLOTS as i64 && self.secs[i] <= now_s)
            .map(|i| (self.secs[i], self.counts[i]))
    }

    /// Units in the 60 seconds ending at `now_s` (inclusive).
    pub fn sum(&self, now_s: i64) -> u64 {
        self.live(now_s).map(|(_, n)| n).sum()
    }

    pub fn add(&mut self, now_s: i64, n: u64) {
        let i = Self::slot(now_s);
        if self.secs[i] != now_s {
            self.secs[i] = now_s;
            self.counts[i] = 0;
        }
        self.counts[i] += n;
    }

    /// Replace `reserved` units added at `at_s` by `actual` (if that second is still held).
    pub fn adjust(&mut self, at_s: i64, reserved: u64, actual: u64) {
        let i = Self::slot(at_s);
        if self.secs[i] == at_s {
            self.counts[i] = self.counts[i].saturating_sub(reserved) + actual;
        }
    }

    /// How long until `need` units have left the window.
    pub fn wait_for(&self, now_s: i64, need: u64) -> Duration {
        let mut live: Vec<(i64, u64)> = self.live(now_s).collect();
        live.sort_unstable();
        let mut freed = 0;
        for (s, n) in live {
            freed += n;
            if freed >= need {
                let secs = (s + SLOTS as i64 - now_s).max(1);
                return Duration::from_secs(secs.unsigned_abs());
            }
        }
        Duration::from_secs(SLOTS as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_slide_out_after_a_minute() {
        let mut w = RateWindow::default();
        w.add(1000, 3);
        w.add(1030, 2);
        assert_eq!(w.sum(1030), 5);
        assert_eq!(w.sum(1059), 5);
        assert_eq!(w.sum(1060), 2);
        assert_eq!(w.sum(1090), 0);
        // Reusing a slot a minute later starts it from zero.
        w.add(1060, 1);
        assert_eq!(w.sum(1060), 3);
    }

    #[test]
    fn wait_is_until_enough_leaves() {
        let mut w = RateWindow::default();
        w.add(100, 2);
        w.add(120, 2);
        assert_eq!(w.wait_for(130, 1), Duration::from_secs(30));
        assert_eq!(w.wait_for(130, 3), Duration::from_secs(50));
        assert_eq!(w.wait_for(130, 9), Duration::from_secs(60));
    }

    #[test]
    fn adjust_replaces_a_reservation() {
        let mut w = RateWindow::default();
        w.add(5, 100);
        w.adjust(5, 100, 40);
        assert_eq!(w.sum(5), 40);
        // Too old: nothing to adjust.
        w.adjust(-100, 10, 0);
        assert_eq!(w.sum(5), 40);
    }
}
