//! Settings whose range is part of their type: a [`PositiveDuration`] cannot be zero, so a
//! configuration that sets one to `0s` is refused while it is read, and the reader names the
//! key (`… expected a duration greater than zero for key "LEDGER.TIMEOUT"`), with no check
//! to remember in a `validate`. Counts that must be at least one are `std::num::NonZero…`.

use std::fmt;
use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::time::Duration;

use serde::de::{self, Deserializer, Unexpected};
use serde::{Deserialize, Serialize, Serializer};

/// A duration greater than zero, written as humantime does (`"25ms"`, `"1m 30s"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PositiveDuration(Duration);

impl PositiveDuration {
    /// `d`, unless it is zero.
    pub const fn new(d: Duration) -> Option<PositiveDuration> {
        if d.is_zero() {
            None
        } else {
            Some(PositiveDuration(d))
        }
    }

    /// `ms` milliseconds; for constants (zero fails to compile in a `const`).
    pub const fn millis(ms: u64) -> PositiveDuration {
        assert!(ms > 0, "a PositiveDuration is not zero");
        PositiveDuration(Duration::from_millis(ms))
    }

    /// `s` seconds; for constants (zero fails to compile in a `const`).
    pub const fn secs(s: u64) -> PositiveDuration {
        assert!(s > 0, "a PositiveDuration is not zero");
        PositiveDuration(Duration::from_secs(s))
    }

    pub const fn get(self) -> Duration {
        self.0
    }
}

impl std::ops::Deref for PositiveDuration {
    type Target = Duration;

    fn deref(&self) -> &Duration {
        &self.0
    }
}

impl From<PositiveDuration> for Duration {
    fn from(d: PositiveDuration) -> Duration {
        d.0
    }
}

impl fmt::Display for PositiveDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for PositiveDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PositiveDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PositiveDuration, D::Error> {
        let text = String::deserialize(d)?;
        let parsed = humantime::parse_duration(&text).map_err(|e| {
            de::Error::invalid_value(
                Unexpected::Str(&text),
                &format!("a duration ({e})").as_str(),
            )
        })?;
        PositiveDuration::new(parsed).ok_or_else(|| {
            de::Error::invalid_value(Unexpected::Str(&text), &"a duration greater than zero")
        })
    }
}

/// `n` as a count that is at least one; for defaults and constants (zero fails to compile in a
/// `const`).
pub const fn at_least_one(n: u64) -> NonZeroU64 {
    assert!(n > 0, "a count that is at least one");
    match NonZeroU64::new(n) {
        Some(v) => v,
        None => NonZeroU64::MIN,
    }
}

/// [`at_least_one`] for small counts.
pub const fn at_least_one_u32(n: u32) -> NonZeroU32 {
    assert!(n > 0, "a count that is at least one");
    match NonZeroU32::new(n) {
        Some(v) => v,
        None => NonZeroU32::MIN,
    }
}

/// [`at_least_one`] for sizes.
pub const fn at_least_one_usize(n: usize) -> NonZeroUsize {
    assert!(n > 0, "a count that is at least one");
    match NonZeroUsize::new(n) {
        Some(v) => v,
        None => NonZeroUsize::MIN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    struct Section {
        timeout: PositiveDuration,
    }

    #[test]
    fn zero_and_nonsense_are_refused_with_what_was_expected() {
        let ok: Section = serde_json::from_str(r#"{"timeout": "25ms"}"#).unwrap();
        assert_eq!(ok.timeout.get(), Duration::from_millis(25));
        assert_eq!(serde_json::to_string(&ok).unwrap(), r#"{"timeout":"25ms"}"#);
        let zero = serde_json::from_str::<Section>(r#"{"timeout": "0s"}"#).unwrap_err();
        assert!(
            zero.to_string()
                .contains(r#"invalid value: string "0s", expected a duration greater than zero"#),
            "{zero}"
        );
        let bad = serde_json::from_str::<Section>(r#"{"timeout": "soon"}"#).unwrap_err();
        assert!(bad.to_string().contains("expected a duration ("), "{bad}");
        assert_eq!(PositiveDuration::new(Duration::ZERO), None);
        assert_eq!(PositiveDuration::secs(90).to_string(), "1m 30s");
    }
}
