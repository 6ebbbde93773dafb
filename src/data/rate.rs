//! Bandwidth caps (`rate_session`, `rate_total`): a token bucket per cap.
//! A transfer reserves each chunk it read before writing it and waits as
//! long as the fullest bucket asks; the average rate is exact, a burst is at
//! most one chunk.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One bandwidth cap in bytes per second.
#[derive(Debug)]
pub struct Rate {
    per_second: f64,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Bytes that may go now; negative while paying off a chunk.
    level: f64,
    at: Instant,
}

impl Rate {
    /// A cap of `bytes_per_second` (at least 1).
    pub fn new(bytes_per_second: u64) -> Arc<Rate> {
        Arc::new(Rate {
            per_second: bytes_per_second.max(1) as f64,
            bucket: Mutex::new(Bucket {
                level: 0.0,
                at: Instant::now(),
            }),
        })
    }

    /// The cap in bytes per second.
    pub fn per_second(&self) -> u64 {
        self.per_second as u64
    }

    /// Takes `n` bytes from the bucket; returns how long to wait before
    /// sending them. An idle bucket holds at most one second's worth.
    pub fn reserve(&self, n: usize) -> Duration {
        // The lock guards two numbers; a poisoned bucket is still a bucket.
        let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let refill = now.duration_since(b.at).as_secs_f64() * self.per_second;
        b.level = (b.level + refill).min(self.per_second);
        b.at = now;
        b.level -= n as f64;
        if b.level >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-b.level / self.per_second)
        }
    }
}

/// Waits until `n` bytes may go under every cap in `rates`.
pub async fn pace(rates: &[Arc<Rate>], n: usize) {
    let wait = rates
        .iter()
        .map(|r| r.reserve(n))
        .max()
        .unwrap_or(Duration::ZERO);
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
}

/// The largest chunk to read under `rates`: a quarter second's worth of the
/// slowest cap (at least 4 KiB), so a capped transfer still shows progress
/// several times per stall period.
pub fn chunk(rates: &[Arc<Rate>], buffer: usize) -> usize {
    rates
        .iter()
        .map(|r| (r.per_second() / 4).max(4096) as usize)
        .min()
        .unwrap_or(buffer)
        .min(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_pays_off_chunks_at_the_rate() {
        let r = Rate::new(1000);
        // The first chunk starts from an empty bucket: a full second's wait for 1000 bytes.
        let w = r.reserve(1000);
        assert!((w.as_secs_f64() - 1.0).abs() < 0.05, "{w:?}");
        // The next chunk queues behind it.
        let w = r.reserve(500);
        assert!((w.as_secs_f64() - 1.5).abs() < 0.05, "{w:?}");
        assert_eq!(chunk(std::slice::from_ref(&r), 256 * 1024), 4096);
        assert_eq!(chunk(&[Rate::new(10 << 20)], 256 * 1024), 256 * 1024);
        assert_eq!(chunk(&[], 1000), 1000);
    }
}
