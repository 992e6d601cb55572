//! Header values formatted on the stack: what a writer writes goes into a fixed buffer and is
//! copied once into the [`HeaderValue`], instead of into a `String` first and copied again. Used
//! for the per-request values the gateway computes (`x-gateway-cost`, `x-ratelimit-reset-*`),
//! whose writers put their pieces with `write_str` alone: `core::fmt::write` between them cost
//! several hundred instructions per value (callgrind, issue 18).
//!
//! Integers go through [`int`]: `http`'s own `HeaderValue::from(u64)` writes the digits into a
//! 20-byte `BytesMut` and freezes it, two heap blocks per value (the buffer, then the shared
//! header `Bytes` needs for a buffer longer than its contents); [`int`] copies the digits once,
//! one block sized to them.

use std::cell::RefCell;
use std::fmt;

use http::HeaderValue;

/// What `write` writes, as a header value; `None` when it is longer than 48 bytes or not a valid
/// header value.
pub(crate) fn written(write: impl FnOnce(&mut Stack) -> fmt::Result) -> Option<HeaderValue> {
    let mut out = Stack {
        buf: [0; 48],
        len: 0,
    };
    write(&mut out).ok()?;
    HeaderValue::from_bytes(&out.buf[..out.len]).ok()
}

/// `n` as a header value, in one heap block (see the module docs).
pub(crate) fn int(n: impl itoa::Integer) -> HeaderValue {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(n).as_bytes();
    // Digits (and a leading `-`) are always a valid header value; the fallback is not reached.
    HeaderValue::from_maybe_shared(bytes::Bytes::copy_from_slice(digits))
        .unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// The last header value made at one place on this thread, to reuse for the next value with the
/// same bytes: a configured limit or a provider's name is the same on nearly every response, and a
/// [`HeaderValue`] clone is a reference count where making one is a heap block and a copy.
///
/// Kept per thread (`thread_local!`, one per call site), so no lock; one value per thread and
/// site is held.
pub(crate) struct LastValue(RefCell<Option<HeaderValue>>);

impl LastValue {
    pub(crate) const fn new() -> Self {
        LastValue(RefCell::new(None))
    }

    /// `bytes` as a header value: the one kept when it has these bytes, else a new one (then
    /// kept); `None` when `bytes` is not a valid header value.
    pub(crate) fn get(&self, bytes: &[u8]) -> Option<HeaderValue> {
        let mut last = self.0.borrow_mut();
        if let Some(kept) = last.as_ref().filter(|v| v.as_bytes() == bytes) {
            return Some(kept.clone());
        }
        let value = HeaderValue::from_maybe_shared(bytes::Bytes::copy_from_slice(bytes)).ok()?;
        *last = Some(value.clone());
        Some(value)
    }

    /// [`get`](Self::get) for `n`'s digits.
    pub(crate) fn int(&self, n: impl itoa::Integer) -> HeaderValue {
        let mut digits = itoa::Buffer::new();
        // Digits (and a leading `-`) are always a valid header value; the fallback is not reached.
        self.get(digits.format(n).as_bytes())
            .unwrap_or_else(|| HeaderValue::from_static("0"))
    }
}

/// A fixed buffer that refuses what does not fit.
pub(crate) struct Stack {
    buf: [u8; 48],
    len: usize,
}

impl fmt::Write for Stack {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;

    fn display(value: impl fmt::Display) -> Option<HeaderValue> {
        written(|out| write!(out, "{value}"))
    }

    #[test]
    fn formats_what_fits_and_refuses_the_rest() {
        assert_eq!(
            display(1.25).as_ref().map(HeaderValue::as_bytes),
            Some(&b"1.25"[..])
        );
        assert_eq!(display("x".repeat(48)).map(|v| v.len()), Some(48));
        assert_eq!(display("x".repeat(49)), None, "too long for the buffer");
        assert_eq!(display("a\nb"), None, "not a header value");
    }

    #[test]
    fn the_last_value_is_reused_for_the_same_bytes_only() {
        let last = LastValue::new();
        let a = last.int(600u32);
        let b = last.int(600u32);
        assert_eq!(a, "600");
        // The same bytes, not a copy of them: the kept value was cloned.
        assert_eq!(a.as_bytes().as_ptr(), b.as_bytes().as_ptr());
        let c = last.int(7u32);
        assert_eq!(c, "7");
        assert_ne!(c.as_bytes().as_ptr(), a.as_bytes().as_ptr());
        assert_eq!(last.get(b"openai").unwrap(), "openai");
        assert_eq!(last.get(b"a\nb"), None, "not a header value");
        assert_eq!(last.get(b"openai").unwrap(), "openai");
    }

    #[test]
    fn integers_are_their_digits() {
        assert_eq!(int(0u32), HeaderValue::from(0u32));
        assert_eq!(int(u64::MAX), HeaderValue::from(u64::MAX));
        assert_eq!(int(-17i64).as_bytes(), b"-17");
        assert_eq!(int(1_000_000_000u32).to_str().ok(), Some("1000000000"));
    }
}
