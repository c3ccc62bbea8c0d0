//! A slab: values in numbered slots, so that queues can refer to a value by its 4-byte slot
//! number instead of looking it up by key in a hash table.
//!
//! Freed slots are reused first-freed, first-reused. When values are created and removed
//! mostly in order (repair states: created per NAK, evicted oldest first), slots then come
//! back in the same order, and walking the values in creation order walks memory
//! sequentially: what hardware prefetching needs, where hash-table slots are spread at
//! random. Memory is allocated in chunks of [`Slab::CHUNK`] slots (the first grows
//! geometrically up to that), so it stays within one chunk of the most values ever held at
//! once, and is never copied to grow past a chunk.

use super::timers::Fifo;

/// Values in numbered slots; see the [module documentation](self).
#[derive(Debug, Clone)]
pub(crate) struct Slab<T> {
    /// Slot `i` is `chunks[i / CHUNK][i % CHUNK]`; every chunk but the last is full.
    chunks: Vec<Vec<Option<T>>>,
    /// Free slots, in the order they were freed.
    free: Fifo<u32>,
    /// Slots in use.
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Self {
            chunks: Vec::new(),
            free: Fifo::default(),
            len: 0,
        }
    }
}

impl<T: Copy> Slab<T> {
    /// Slots per chunk.
    pub(crate) const CHUNK: usize = 4096;
    /// Stores `x` in a free slot (the one freed longest ago) or a new one; `None` if all
    /// 2^32 - 1 slots are in use.
    pub(crate) fn insert(&mut self, x: T) -> Option<u32> {
        if let Some(i) = self.free.pop_front() {
            if let Some(slot) = self.slot_mut(i) {
                *slot = Some(x);
                self.len += 1;
                return Some(i);
            }
        }
        let slots = self.chunks.len().saturating_sub(1) * Self::CHUNK
            + self.chunks.last().map_or(0, Vec::len);
        let i = u32::try_from(slots).ok().filter(|&i| i < u32::MAX)?;
        let chunk = match self.chunks.last_mut() {
            Some(c) if c.len() < Self::CHUNK => c,
            _ => {
                // The first chunk grows geometrically; later ones are allocated whole.
                let cap = if self.chunks.is_empty() {
                    64
                } else {
                    Self::CHUNK
                };
                self.chunks.push(Vec::with_capacity(cap));
                let last = self.chunks.len() - 1;
                &mut self.chunks[last]
            }
        };
        if chunk.len() == chunk.capacity() {
            chunk.reserve_exact(chunk.len().min(Self::CHUNK - chunk.len()));
        }
        chunk.push(Some(x));
        self.len += 1;
        Some(i)
    }

    /// The value in slot `i`, if in use.
    pub(crate) fn get(&self, i: u32) -> Option<&T> {
        let i = i as usize;
        self.chunks
            .get(i / Self::CHUNK)?
            .get(i % Self::CHUNK)?
            .as_ref()
    }

    /// The value in slot `i`, if in use.
    pub(crate) fn get_mut(&mut self, i: u32) -> Option<&mut T> {
        self.slot_mut(i)?.as_mut()
    }

    /// Frees slot `i`, returning its value (`None` if it was not in use).
    pub(crate) fn remove(&mut self, i: u32) -> Option<T> {
        let x = self.slot_mut(i)?.take()?;
        self.len -= 1;
        self.free.push_back(i);
        Some(x)
    }

    /// Slots in use.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.len
    }

    /// Frees every slot and the memory.
    pub(crate) fn clear(&mut self) {
        *self = Self::default();
    }

    fn slot_mut(&mut self, i: u32) -> Option<&mut Option<T>> {
        let i = i as usize;
        self.chunks
            .get_mut(i / Self::CHUNK)?
            .get_mut(i % Self::CHUNK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused_first_freed_first() {
        let mut s = Slab::default();
        let ids: Vec<u32> = (0..10u64).map(|v| s.insert(v).expect("room")).collect();
        assert_eq!(ids, (0..10).collect::<Vec<u32>>());
        assert_eq!(s.remove(3), Some(3));
        assert_eq!(s.remove(3), None, "already free");
        assert_eq!(s.remove(7), Some(7));
        assert_eq!(s.remove(1), Some(1));
        assert_eq!((s.get(3), s.get(4)), (None, Some(&4)));
        assert_eq!(s.len(), 7);
        assert_eq!(s.insert(30), Some(3));
        assert_eq!(s.insert(70), Some(7));
        assert_eq!(s.insert(10), Some(1));
        assert_eq!(s.insert(100), Some(10));
        *s.get_mut(10).expect("in use") += 1;
        assert_eq!(s.get(10), Some(&101));
        assert_eq!(s.get(11), None);
        assert_eq!(s.get(u32::MAX), None);
        assert_eq!(s.remove(u32::MAX), None);
        s.clear();
        assert_eq!((s.len(), s.get(0)), (0, None));
    }

    #[test]
    fn memory_stays_within_a_chunk_of_the_slots_used() {
        let mut s = Slab::default();
        for v in 0..3 * Slab::<u64>::CHUNK as u64 + 5 {
            s.insert(v).expect("room");
            let cap: usize = s.chunks.iter().map(Vec::capacity).sum();
            assert!(cap <= 2 * s.len() + 64, "{cap} slots for {}", s.len());
            assert!(
                cap <= s.len() + Slab::<u64>::CHUNK,
                "{cap} slots for {}",
                s.len()
            );
        }
        for (i, c) in s.chunks.iter().enumerate().rev().skip(1) {
            assert_eq!(c.len(), Slab::<u64>::CHUNK, "chunk {i} full");
        }
        let n = s.len() as u32;
        assert!((0..n).all(|i| s.get(i) == Some(&u64::from(i))));
    }
}
