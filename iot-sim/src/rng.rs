//! The simulator's seeded randomness: every random choice of a run (send times, jitter, QoS,
//! values, churn, command targets) comes from one of these generators, so a seed gives the
//! same run.

/// A small deterministic generator (splitmix64), so a seed gives the same run.
#[derive(Debug, Clone)]
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A factor that varies an interval by up to `fraction` either way (one draw).
    pub(crate) fn jitter(&mut self, fraction: f64) -> f64 {
        1.0 + fraction * (2.0 * self.unit() - 1.0)
    }
}
