//! Test payloads and their checksums: deterministic pseudo-random files and
//! bytes (SplitMix64), and lowercase-hex SHA-256 of files and bytes.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

/// Lowercase hex SHA-256 of a file's contents.
pub fn sha256_file(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    let mut file = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hex(&hasher.finalize())
}

/// Lowercase hex SHA-256 of bytes.
pub fn sha256_bytes(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `len` bytes of deterministic pseudo-random content to `path`
/// (the same `len` always gives the same bytes; different lengths give
/// unrelated streams) and returns its SHA-256 in lowercase hex.
pub fn write_random_file(path: impl AsRef<Path>, len: u64) -> String {
    let path = path.as_ref();
    let mut file = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut rng = SplitMix64(0x5eed_f7b5_9a7e_0000 ^ len);
    let mut hasher = Sha256::new();
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = usize::try_from(left.min(chunk.len() as u64)).expect("chunk fits usize");
        rng.fill(&mut chunk[..n]);
        hasher.update(&chunk[..n]);
        file.write_all(&chunk[..n])
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        left -= n as u64;
    }
    file.sync_all().ok();
    hex(&hasher.finalize())
}

/// Deterministic pseudo-random bytes (same `seed` and `len`, same bytes).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; len];
    SplitMix64(seed).fill(&mut out);
    out
}

/// SplitMix64: tiny, fast, good enough for test payloads.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next().to_le_bytes();
        let n = rest.len();
        rest.copy_from_slice(&last[..n]);
    }
}
