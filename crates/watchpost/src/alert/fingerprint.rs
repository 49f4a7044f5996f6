//! Title fingerprints: one key for alerts that differ only in their numbers.

/// The dedupe key for a title: a 64-bit FNV-1a hash, as 16 hex digits, of
/// the title with its variable parts normalised.
///
/// - UUIDs (`550e8400-e29b-41d4-a716-446655440000`) become one token;
/// - hex ids (a run of 4 or more hex digits with at least one decimal digit,
///   with or without `0x`) become one token;
/// - every other run of decimal digits becomes one token (`1012 ms`,
///   `1012ms`, `3.5s`, `10.0.0.7` all lose their numbers);
/// - everything else, including case, is kept.
///
/// The hash is stable across processes and platforms, so replicas sharing a
/// store agree on keys.
///
/// # Examples
///
/// ```
/// use watchpost::alert::fingerprint;
///
/// assert_eq!(fingerprint("timeout after 1012 ms"), fingerprint("timeout after 987 ms"));
/// assert_eq!(
///     fingerprint("order 550e8400-e29b-41d4-a716-446655440000 failed"),
///     fingerprint("order 6ba7b810-9dad-11d1-80b4-00c04fd430c8 failed"),
/// );
/// assert_ne!(fingerprint("timeout on db"), fingerprint("timeout on redis"));
/// ```
pub fn fingerprint(title: &str) -> String {
    let mut hash = Fnv::new();
    let bytes = title.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if !b.is_ascii_alphanumeric() {
            hash.write(b);
            i += 1;
            continue;
        }
        if let Some(end) = uuid_at(bytes, i) {
            hash.token();
            i = end;
            continue;
        }
        // An alphanumeric run.
        let end = bytes[i..]
            .iter()
            .position(|b| !b.is_ascii_alphanumeric())
            .map_or(bytes.len(), |p| i + p);
        let word = &bytes[i..end];
        if is_hex_id(word) {
            hash.token();
        } else {
            let mut in_digits = false;
            for &b in word {
                if b.is_ascii_digit() {
                    if !in_digits {
                        hash.token();
                    }
                    in_digits = true;
                } else {
                    hash.write(b);
                    in_digits = false;
                }
            }
        }
        i = end;
    }
    format!("{:016x}", hash.0)
}

/// The end of a UUID starting at `i`, if there is one (8-4-4-4-12 hex
/// digits, not glued to more alphanumerics).
fn uuid_at(bytes: &[u8], i: usize) -> Option<usize> {
    const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
    let mut pos = i;
    for (n, len) in GROUPS.iter().enumerate() {
        let group = bytes.get(pos..pos + len)?;
        if !group.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        pos += len;
        if n < GROUPS.len() - 1 {
            if bytes.get(pos) != Some(&b'-') {
                return None;
            }
            pos += 1;
        }
    }
    match bytes.get(pos) {
        Some(b) if b.is_ascii_alphanumeric() => None,
        _ => Some(pos),
    }
}

fn is_hex_id(word: &[u8]) -> bool {
    let digits = match word {
        [b'0', b'x' | b'X', rest @ ..] if !rest.is_empty() => rest,
        _ => word,
    };
    digits.len() >= 4
        && digits.iter().all(u8::is_ascii_hexdigit)
        && digits.iter().any(u8::is_ascii_digit)
        || (digits.len() < word.len() && digits.iter().all(u8::is_ascii_hexdigit))
}

/// 64-bit FNV-1a: tiny, and stable everywhere (unlike std's hashers).
struct Fnv(u64);

impl Fnv {
    const fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, b: u8) {
        self.0 ^= u64::from(b);
        self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
    }

    /// A normalised variable part. 0xff never occurs in UTF-8.
    fn token(&mut self) {
        self.write(0xff);
    }
}

#[cfg(test)]
mod tests {
    use super::fingerprint;

    #[track_caller]
    fn same(a: &str, b: &str) {
        assert_eq!(fingerprint(a), fingerprint(b), "{a:?} vs {b:?}");
    }

    #[track_caller]
    fn differ(a: &str, b: &str) {
        assert_ne!(fingerprint(a), fingerprint(b), "{a:?} vs {b:?}");
    }

    #[test]
    fn numbers_are_normalised() {
        same("timeout after 1012 ms", "timeout after 987 ms");
        same("timeout after 1012ms", "timeout after 9ms");
        same("took 3.5s", "took 12.25s");
        same(
            "connect to 10.0.0.7:5432 refused",
            "connect to 10.0.0.12:5432 refused",
        );
        same("user 42 not found", "user 7 not found");
    }

    #[test]
    fn hex_ids_and_uuids_are_normalised() {
        same("job 5f2b9c1e failed", "job 0a1b2c3d failed");
        same("at 0x7ffd5e8a", "at 0xdeadbeef");
        same(
            "request 550e8400-e29b-41d4-a716-446655440000",
            "request 6ba7b810-9dad-11d1-80b4-00c04fd430c8",
        );
        same(
            "request 550e8400-e29b-41d4-a716-446655440000",
            "request facecafe-beef-dead-abcd-abcdefabcdef",
        );
    }

    #[test]
    fn words_are_kept() {
        differ("timeout on db", "timeout on redis");
        differ("Payment failed", "payment failed");
        differ("dead beef", "cafe face");
        differ("db timeout", "db refused");
    }

    #[test]
    fn is_stable() {
        // Replicas compare these: the value must never change between
        // builds or platforms.
        assert_eq!(fingerprint(""), "cbf29ce484222325");
        assert_eq!(
            fingerprint("timeout after 1 ms"),
            fingerprint("timeout after 2 ms")
        );
        assert_eq!(fingerprint("a").len(), 16);
    }

    #[test]
    fn any_input_is_fine() {
        for s in [
            "\u{0}",
            "ü-ß 1",
            "----",
            "0x",
            "0x-",
            "12345678-1234-1234-1234-12345678901",
        ] {
            let _ = fingerprint(s);
        }
    }
}
