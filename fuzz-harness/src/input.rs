//! The fuzz input as a stream of choices. Every read succeeds: once the bytes run out, reads
//! return the smallest choice (what `arbitrary::Unstructured` does), and the run loop stops.

use arbitrary::Unstructured;

/// Choices decoded from the fuzz input.
pub(crate) struct Input<'a> {
    u: Unstructured<'a>,
}

impl<'a> Input<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self {
            u: Unstructured::new(data),
        }
    }

    /// Whether the input is used up.
    pub(crate) fn is_empty(&self) -> bool {
        self.u.is_empty()
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub(crate) fn below(&mut self, n: u32) -> u32 {
        if n <= 1 {
            return 0;
        }
        self.u.int_in_range(0..=n - 1).unwrap_or(0)
    }

    pub(crate) fn bool(&mut self) -> bool {
        self.below(2) == 1
    }

    /// True one time in `n`.
    pub(crate) fn one_in(&mut self, n: u32) -> bool {
        self.below(n) == 0 && n > 0
    }

    pub(crate) fn u8(&mut self) -> u8 {
        self.u.arbitrary().unwrap_or(0)
    }

    pub(crate) fn u16(&mut self) -> u16 {
        self.u.arbitrary().unwrap_or(0)
    }

    pub(crate) fn u32(&mut self) -> u32 {
        self.u.arbitrary().unwrap_or(0)
    }

    /// One of `xs` (which must not be empty).
    pub(crate) fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u32) as usize]
    }

    /// One of `xs` by weight: `(weight, value)`.
    pub(crate) fn weighted<T: Copy>(&mut self, xs: &[(u32, T)]) -> T {
        let total: u32 = xs.iter().map(|(w, _)| w).sum();
        let mut r = self.below(total);
        for &(w, v) in xs {
            if r < w {
                return v;
            }
            r -= w;
        }
        xs[xs.len() - 1].1
    }

    /// Up to `n` raw bytes (fewer when the input runs out).
    pub(crate) fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.u.len());
        self.u.bytes(n).unwrap_or(&[])
    }
}
