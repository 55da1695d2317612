//! The event watermark: the highest stream sequence at or below which every event has been
//! applied (or discarded as junk). Events are applied mostly in order, but after a restart the
//! events the previous coordinator had received and not acknowledged come back only after their
//! AckWait, behind newer ones; the reconciler must not take those newer ones for "everything
//! applied", so the watermark moves only over closed gaps.

use std::collections::BTreeSet;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Watermark {
    /// Every event up to this sequence has been applied.
    through: u64,
    /// Events applied above `through`, waiting for the gap below them to close.
    above: BTreeSet<u64>,
}

impl Watermark {
    /// A watermark starting at the consumer's ack floor: every event at or below it was
    /// acknowledged by an earlier run, so applied.
    pub fn new(floor: u64) -> Watermark {
        Watermark {
            through: floor,
            above: BTreeSet::new(),
        }
    }

    /// Every event up to this sequence has been applied.
    pub fn through(&self) -> u64 {
        self.through
    }

    /// Whether every event up to `seq` has been applied.
    pub fn covers(&self, seq: u64) -> bool {
        self.through >= seq
    }

    /// Records event `seq` as applied and moves the watermark over every gap that closed.
    pub fn mark(&mut self, seq: u64) {
        if seq <= self.through {
            return;
        }
        self.above.insert(seq);
        self.close_gaps();
    }

    /// Raises the watermark to the server's ack floor: every event at or below it was
    /// acknowledged, so applied. It also carries the watermark over sequences the stream no
    /// longer holds, which would otherwise stay gaps for ever.
    pub fn raise_floor(&mut self, floor: u64) {
        if floor <= self.through {
            return;
        }
        self.through = floor;
        self.above = self.above.split_off(&(floor + 1));
        self.close_gaps();
    }

    fn close_gaps(&mut self) {
        while self.above.remove(&(self.through + 1)) {
            self.through += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (starting floor, sequences marked in order, expected watermark after each).
    #[test]
    fn marks_move_the_watermark_only_over_closed_gaps() {
        let cases: Vec<(u64, Vec<u64>, Vec<u64>)> = vec![
            // In order.
            (0, vec![1, 2, 3], vec![1, 2, 3]),
            // A gap holds the watermark until it closes, then it jumps over what came after.
            (0, vec![1, 3, 4, 2], vec![1, 1, 1, 4]),
            // Entirely out of order (a restart's redeliveries behind newer events).
            (0, vec![5, 4, 3, 2, 1], vec![0, 0, 0, 0, 5]),
            // Duplicates change nothing.
            (0, vec![1, 1, 3, 3, 2, 2], vec![1, 1, 1, 1, 3, 3]),
            // At or below the floor: already applied.
            (10, vec![3, 10, 11, 13], vec![10, 10, 11, 11]),
            // Sequence 0 (an event whose metadata could not be read) never moves it.
            (0, vec![0, 1], vec![0, 1]),
        ];
        for (floor, marks, expected) in cases {
            let mut watermark = Watermark::new(floor);
            let got: Vec<u64> = marks
                .iter()
                .map(|seq| {
                    watermark.mark(*seq);
                    watermark.through()
                })
                .collect();
            assert_eq!(got, expected, "floor {floor}, marks {marks:?}");
        }
    }

    #[test]
    fn the_floor_raises_over_gaps_and_joins_what_was_above() {
        let mut watermark = Watermark::new(0);
        for seq in [2, 5, 6, 9] {
            watermark.mark(seq);
        }
        assert_eq!(watermark.through(), 0);
        // The floor at 4 passes the gaps at 1, 3 and 4, and the applied 5 and 6 follow.
        watermark.raise_floor(4);
        assert_eq!(watermark.through(), 6);
        assert!(watermark.covers(6) && !watermark.covers(7));
        // A lower floor (an older answer) changes nothing.
        watermark.raise_floor(3);
        assert_eq!(watermark.through(), 6);
        // Past everything marked: what was above is gone, not counted twice.
        watermark.raise_floor(20);
        assert_eq!(watermark, Watermark::new(20));
        watermark.mark(21);
        assert_eq!(watermark.through(), 21);
    }

    #[test]
    fn covers_is_at_or_below() {
        let watermark = Watermark::new(7);
        assert!(watermark.covers(0));
        assert!(watermark.covers(7));
        assert!(!watermark.covers(8));
    }
}
