//! Redis key names: `{prefix}:{kind}:{alert key}`, long alert keys hashed.

/// Alert keys longer than this are shortened to a readable head and a hash.
const MAX_KEY: usize = 200;
/// How much of a long key is kept readable.
const HEAD: usize = 64;

/// The Redis key for `kind` (`dedupe`, `suppressed`, `incident`) of the
/// alert key `key`. Any byte is fine in a Redis key; only the length is
/// bounded, with a hash that is the same in every process and version.
pub(crate) fn redis_key(prefix: &str, kind: &str, key: &str) -> String {
    if key.len() <= MAX_KEY {
        return format!("{prefix}:{kind}:{key}");
    }
    let mut head = HEAD;
    while !key.is_char_boundary(head) {
        head -= 1;
    }
    let (a, b) = (
        fnv1a(key, 0xcbf2_9ce4_8422_2325),
        fnv1a(key, 0x6c62_272e_07bb_0142),
    );
    format!("{prefix}:{kind}:{}#{a:016x}{b:016x}", &key[..head])
}

/// 64-bit FNV-1a from `basis`: stable, unlike `std`'s `RandomState`.
fn fnv1a(s: &str, basis: u64) -> u64 {
    s.bytes().fold(basis, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_are_kept_as_they_are() {
        assert_eq!(
            redis_key("wp", "dedupe", "db down: {x}"),
            "wp:dedupe:db down: {x}"
        );
    }

    #[test]
    fn long_keys_are_bounded_stable_and_distinct() {
        let a = "é".repeat(500);
        let b = format!("{a}!");
        let ka = redis_key("wp", "dedupe", &a);
        assert!(ka.len() < 120, "{ka}");
        assert_eq!(ka, redis_key("wp", "dedupe", &a));
        assert_ne!(ka, redis_key("wp", "dedupe", &b));
    }
}
