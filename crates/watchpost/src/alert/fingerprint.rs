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
    hex(fingerprint_u64(title.as_bytes()))
}

/// Byte classes, one table lookup per byte.
const DIGIT: u8 = 1;
const ALPHA: u8 = 2;
const HEX: u8 = 4;
const CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = if c.is_ascii_digit() {
            DIGIT | HEX
        } else if c.is_ascii_hexdigit() {
            ALPHA | HEX
        } else if c.is_ascii_alphabetic() {
            ALPHA
        } else {
            0
        };
        b += 1;
    }
    table
};

/// The hash behind [`fingerprint`], in one pass over each alphanumeric run
/// (this runs on the caller's thread for every `send` without a key).
fn fingerprint_u64(bytes: &[u8]) -> u64 {
    let mut hash = Fnv::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if CLASS[usize::from(b)] & (DIGIT | ALPHA) == 0 {
            hash.write(b);
            i += 1;
            continue;
        }
        // Only a run of 8 hex digits and a dash can start a UUID.
        if bytes.get(i + 8) == Some(&b'-') {
            if let Some(end) = uuid_at(bytes, i) {
                hash.token();
                i = end;
                continue;
            }
        }
        // An alphanumeric run, hashed as words and digit tokens while
        // finding out whether it is a hex id (then it is one token).
        let start = i;
        let mut words = hash;
        let mut in_digits = false;
        // The AND of the classes of the bytes after the first two, the OR
        // of all of them.
        let mut all_after_2 = HEX;
        let mut any = 0;
        for &b in &bytes[start..] {
            let class = CLASS[usize::from(b)];
            if class & DIGIT != 0 {
                if !in_digits {
                    words.token();
                }
                in_digits = true;
            } else if class & ALPHA != 0 {
                words.write(b);
                in_digits = false;
            } else {
                break;
            }
            if i - start >= 2 {
                all_after_2 &= class;
            }
            any |= class;
            i += 1;
        }
        let word = &bytes[start..i];
        let hex_after_2 = all_after_2 & HEX != 0;
        let hex_id = match *word {
            // `0x` and hex digits.
            [b'0', b'x' | b'X', _, ..] => hex_after_2,
            // Four or more hex digits, one of them decimal.
            [a, b, _, _, ..] => {
                hex_after_2
                    && CLASS[usize::from(a)] & CLASS[usize::from(b)] & HEX != 0
                    && any & DIGIT != 0
            }
            _ => false,
        };
        if hex_id {
            hash.token();
        } else {
            hash = words;
        }
    }
    hash.0
}

/// `{:016x}` without the formatting machinery.
fn hex(n: u64) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 16];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = DIGITS[(n >> (60 - 4 * i)) as usize & 0xf];
    }
    // ASCII: the check always passes.
    std::str::from_utf8(&out)
        .map(str::to_owned)
        .unwrap_or_default()
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

/// 64-bit FNV-1a: tiny, and stable everywhere (unlike std's hashers).
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    const fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    #[inline]
    fn write(&mut self, b: u8) {
        self.0 ^= u64::from(b);
        self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
    }

    /// A normalised variable part. 0xff never occurs in UTF-8.
    #[inline]
    fn token(&mut self) {
        self.write(0xff);
    }
}

#[cfg(test)]
mod tests {
    use super::{fingerprint, uuid_at, Fnv};
    use proptest::prelude::*;

    /// A hex id: 4+ hex digits with a decimal one, or `0x` and hex digits.
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

    /// The first implementation, kept to prove the fast one gives the same
    /// keys (replicas of different versions compare them).
    fn reference(title: &str) -> String {
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

    proptest! {
        #[test]
        fn matches_the_reference(title in "[0-9a-fA-FxXg-z \\-.:/_ü]{0,60}") {
            prop_assert_eq!(fingerprint(&title), reference(&title));
        }

        #[test]
        fn matches_the_reference_on_id_shaped_text(
            parts in proptest::collection::vec(
                proptest::sample::select(vec![
                    "550e8400-e29b-41d4-a716-446655440000", "550e8400-", "0x", "0X", "ab", "12",
                    "-", " ", "x", "deadbeef", "g", "1", "f", "ü",
                ]),
                0..12,
            )
        ) {
            let title = parts.concat();
            prop_assert_eq!(fingerprint(&title), reference(&title));
        }

        #[test]
        fn matches_the_reference_on_any_text(title in any::<String>()) {
            prop_assert_eq!(fingerprint(&title), reference(&title));
        }
    }

    #[test]
    fn matches_the_reference_on_known_shapes() {
        for title in [
            "",
            "0x",
            "0x1",
            "0xg",
            "0X12ab",
            "0xdeadbeef",
            "x0abc",
            "abcd",
            "abc1",
            "ab12",
            "1x23",
            "00x1",
            "12345678-1234-1234-1234-123456789012",
            "12345678-1234-1234-1234-123456789012x",
            "12345678-1234-1234-1234-12345678901",
            "12345678-",
            "a2345678-1234-1234-1234-123456789012 then 42",
            "timeout after 1012 ms on db-primary (pool 3/10)",
        ] {
            assert_eq!(fingerprint(title), reference(title), "{title:?}");
        }
    }

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
