//! Sequence numbers with serial-number arithmetic (§3.2).

use core::fmt;

/// A PGM sequence number: 32 bits that wrap, compared in serial-number arithmetic (§3.2, as in
/// RFC 1982): `a` precedes `b` when `b - a`, taken modulo 2^32, is in `1..2^31`.
///
/// Comparison is not a total order (two numbers exactly 2^31 apart precede neither one
/// another), so `Sqn` offers named predicates instead of `Ord`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Sqn(pub u32);

impl Sqn {
    /// `self` strictly precedes `other`.
    pub fn lt(self, other: Self) -> bool {
        let d = other.0.wrapping_sub(self.0);
        d != 0 && d < 0x8000_0000
    }

    /// `self` precedes or equals `other`.
    pub fn le(self, other: Self) -> bool {
        self == other || self.lt(other)
    }

    /// `self` strictly follows `other`.
    pub fn gt(self, other: Self) -> bool {
        other.lt(self)
    }

    /// `self` follows or equals `other`.
    pub fn ge(self, other: Self) -> bool {
        other.le(self)
    }

    /// The next sequence number.
    #[must_use]
    pub fn next(self) -> Self {
        self + 1
    }

    /// How many sequence numbers `self` is after `earlier`, or `None` if `self` precedes
    /// `earlier` (or is 2^31 away from it). Unlike smoltcp's `SeqNumber`, never panics.
    pub fn since(self, earlier: Self) -> Option<u32> {
        earlier.le(self).then(|| self.0.wrapping_sub(earlier.0))
    }

    /// `self` lies in the closed serial interval `[low, high]`.
    pub fn in_range(self, low: Self, high: Self) -> bool {
        low.le(self) && self.le(high)
    }
}

impl core::ops::Add<u32> for Sqn {
    type Output = Self;

    /// The sequence number `n` after this one, wrapping.
    fn add(self, n: u32) -> Self {
        Self(self.0.wrapping_add(n))
    }
}

impl core::ops::Sub<u32> for Sqn {
    type Output = Self;

    /// The sequence number `n` before this one, wrapping.
    fn sub(self, n: u32) -> Self {
        Self(self.0.wrapping_sub(n))
    }
}

impl core::ops::AddAssign<u32> for Sqn {
    fn add_assign(&mut self, n: u32) {
        *self = *self + n;
    }
}

impl From<u32> for Sqn {
    fn from(v: u32) -> Self {
        Self(v)
    }
}

impl From<Sqn> for u32 {
    fn from(v: Sqn) -> Self {
        v.0
    }
}

impl fmt::Debug for Sqn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

impl fmt::Display for Sqn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn wraps() {
        let max = Sqn(u32::MAX);
        assert_eq!(max.next(), Sqn(0));
        assert!(max.lt(Sqn(0)));
        assert!(Sqn(0).gt(max));
        assert_eq!(Sqn(2).since(max), Some(3));
        assert_eq!(max.since(Sqn(2)), None);
        assert!(Sqn(0).in_range(max, Sqn(1)));
        // Half the space apart: neither precedes the other.
        assert!(!Sqn(0).lt(Sqn(0x8000_0000)));
        assert!(!Sqn(0x8000_0000).lt(Sqn(0)));
    }

    proptest! {
        #[test]
        fn add_then_since(a: u32, n in 0u32..0x8000_0000) {
            let a = Sqn(a);
            prop_assert_eq!((a + n).since(a), Some(n));
            prop_assert_eq!(a + n - n, a);
            prop_assert!(a.le(a + n));
            if n > 0 {
                prop_assert!(a.lt(a + n));
                prop_assert!(!(a + n).le(a));
            }
        }

        #[test]
        fn antisymmetric(a: u32, b: u32) {
            let (a, b) = (Sqn(a), Sqn(b));
            prop_assert!(!(a.lt(b) && b.lt(a)));
            prop_assert_eq!(a.lt(b), b.gt(a));
        }
    }
}
