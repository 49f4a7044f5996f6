//! Memory held by per-IP rate limiting state after floods of distinct
//! client addresses: ours (default configuration: a cap of about 64 MiB,
//! eviction on the insertion path) against tower_governor's limiter (a
//! governor DashMap with no cleanup thread running), measured in the same
//! process with a counting allocator.
//!
//! Run with: cargo bench -p watchpost-benches --bench ratelimit_memory

#![allow(missing_docs)]
#![allow(clippy::expect_used)] // a bench that cannot set up should stop

use std::alloc::System;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU32;

use cap::Cap;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::SmartIpKeyExtractor;
use watchpost::ratelimit::{Quota, RateLimiter};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// The i-th distinct client: IPv4 below 2^32, then distinct IPv6 /64s.
fn client(i: u64) -> IpAddr {
    match u32::try_from(i) {
        Ok(v4) => IpAddr::V4(Ipv4Addr::from(v4.wrapping_add(0x0100_0000))),
        Err(_) => IpAddr::V6(Ipv6Addr::from(u128::from(i) << 64)),
    }
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let quota = Quota::per_minute(NonZeroU32::new(60).expect("non-zero"));
    let floods = [1_000_000_u64, 4_000_000];

    println!("distinct IPs | watchpost (keys, MiB) | tower_governor's limiter (keys, MiB)");
    for &n in &floods {
        let before = ALLOCATOR.allocated();
        let ours = RateLimiter::per_ip(quota);
        for i in 0..n {
            ours.check(client(i));
        }
        let ours_bytes = ALLOCATOR.allocated() - before;
        let ours_keys = ours.len();
        drop(ours);

        let before = ALLOCATOR.allocated();
        // tower_governor's per-IP config, 60/min: its limiter is governor's
        // keyed DashMap, which grows until something calls retain_recent.
        let theirs = GovernorConfigBuilder::default()
            .per_second(1)
            .burst_size(60)
            .key_extractor(SmartIpKeyExtractor)
            .finish()
            .expect("config");
        for i in 0..n {
            let _ = theirs.limiter().check_key(&client(i));
        }
        let theirs_bytes = ALLOCATOR.allocated() - before;
        let theirs_keys = theirs.limiter().len();
        drop(theirs);

        println!(
            "{n:>12} | {ours_keys:>9} keys, {:>7.1} MiB | {theirs_keys:>9} keys, {:>7.1} MiB",
            mib(ours_bytes),
            mib(theirs_bytes)
        );
    }
}
