//! The typed views' shared shape: a [`Packet`](super::Packet) known to be of given types.

/// Defines a typed view over a [`Packet`](super::Packet): the struct, its checked and unchecked
/// constructors (the checked one also requires one of `$types`), and `Deref` to the common
/// header so that its accessors apply.
macro_rules! typed_view {
    ($(#[$doc:meta])* $name:ident, $($types:pat_param)|+) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name<T: AsRef<[u8]>> {
            inner: super::Packet<T>,
        }

        impl<T: AsRef<[u8]>> $name<T> {
            /// Wraps a buffer without checking it; accessors may panic on a bad buffer.
            pub const fn new_unchecked(buffer: T) -> Self {
                Self { inner: super::Packet::new_unchecked(buffer) }
            }

            /// Wraps a buffer after [`Packet::check_len`](super::Packet::check_len) and a check
            /// that the packet is of this view's type.
            pub fn new_checked(buffer: T) -> super::Result<Self> {
                let inner = super::Packet::new_checked(buffer)?;
                match inner.packet_type() {
                    $($types)|+ => Ok(Self { inner }),
                    other => Err(super::WireError::BadType(other.code())),
                }
            }

            /// Gives back the buffer.
            pub fn into_inner(self) -> T {
                self.inner.into_inner()
            }
        }

        impl<T: AsRef<[u8]>> core::ops::Deref for $name<T> {
            type Target = super::Packet<T>;

            fn deref(&self) -> &Self::Target {
                &self.inner
            }
        }

        impl<T: AsRef<[u8]>> core::ops::DerefMut for $name<T> {
            fn deref_mut(&mut self) -> &mut Self::Target {
                &mut self.inner
            }
        }

        impl<T: AsRef<[u8]>> core::fmt::Display for $name<T> {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                core::fmt::Display::fmt(&self.inner, f)
            }
        }
    };
}

pub(crate) use typed_view;
