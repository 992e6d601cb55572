//! Header values formatted on the stack: what a writer writes goes into a fixed buffer and is
//! copied once into the [`HeaderValue`], instead of into a `String` first and copied again. Used
//! for the per-request values the gateway computes (`x-gateway-cost`, `x-ratelimit-reset-*`),
//! whose writers put their pieces with `write_str` alone: `core::fmt::write` between them cost
//! several hundred instructions per value (callgrind, issue 18).
//!
//! Integers go through [`int`]: `http`'s own `HeaderValue::from(u64)` writes the digits into a
//! 20-byte `BytesMut` and freezes it, two heap blocks per value (the buffer, then the shared
//! header `Bytes` needs for a buffer longer than its contents); [`int`] copies the digits once,
//! into the buffer below.
//!
//! A value that repeats response after response at one place (a configured limit, a provider's
//! name) is made once per thread and then cloned, a reference count ([`LastValue`]).
//!
//! The others are short (digits, a price) and live as long as their response's head: their bytes
//! are carved from one buffer per thread ([`carved`]), a reference count each instead of a heap
//! block each. When the buffer is full it is reused in place if none of its values is left, and
//! replaced otherwise (the old one is freed with its last value).
//!
//! A carved value is marked never to be indexed by HTTP/2's header compression
//! ([`HeaderValue::set_sensitive`]): h2 would keep it in the connection's table for the
//! connection's life, and with it its whole buffer. The values carved change from response to
//! response, so indexing them saved nothing; values that repeat ([`LastValue`]'s kept ones) have
//! bytes of their own and are indexed as before.

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
    carved(&out.buf[..out.len])
}

/// `n` as a header value, its digits [`carved`] from this thread's buffer (see the module docs).
pub(crate) fn int(n: impl itoa::Integer) -> HeaderValue {
    with_digits(n, carved)
}

/// `bytes` copied into a header value of their own (one heap block), if they are a valid one.
fn copied(bytes: &[u8]) -> Option<HeaderValue> {
    HeaderValue::from_maybe_shared(bytes::Bytes::copy_from_slice(bytes)).ok()
}

/// The size of the buffer [`carved`] values share: a hundred responses' values or more.
const CARVED_BUFFER: usize = 4096;

/// The longest value [`carved`] takes from the shared buffer; a longer one is [`copied`].
const MAX_CARVED: usize = 64;

/// `bytes` copied into this thread's buffer of value bytes, and the header value a slice of it
/// (a reference count on the buffer, not a heap block), if they are a valid one. Marked never to
/// be indexed (see the module docs).
///
/// For values dropped with their response: a value kept for long keeps its whole buffer
/// ([`LastValue`] keeps [`copied`] ones).
fn carved(bytes: &[u8]) -> Option<HeaderValue> {
    thread_local! {
        static BUFFER: RefCell<bytes::BytesMut> = RefCell::new(bytes::BytesMut::new());
    }
    if bytes.len() > MAX_CARVED {
        return copied(bytes);
    }
    let slice = BUFFER.with(|b| {
        let mut b = b.borrow_mut();
        if b.capacity() < bytes.len() {
            // The same buffer from its start when no value sliced from it is left; otherwise a
            // new one, and the old one is freed by the last of its values.
            b.reserve(CARVED_BUFFER);
        }
        b.extend_from_slice(bytes);
        b.split_to(bytes.len()).freeze()
    });
    let mut value = HeaderValue::from_maybe_shared(slice).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// `n`'s digits made into a header value by `make`.
fn with_digits(
    n: impl itoa::Integer,
    make: impl FnOnce(&[u8]) -> Option<HeaderValue>,
) -> HeaderValue {
    let mut digits = itoa::Buffer::new();
    // Digits (and a leading `-`) are always a valid header value; the fallback is not reached.
    make(digits.format(n).as_bytes()).unwrap_or_else(|| HeaderValue::from_static("0"))
}

/// The header value made at one place on this thread for the bytes that place gives again and
/// again, to reuse: a configured limit or a provider's name is the same on nearly every response,
/// and a [`HeaderValue`] clone is a reference count where making one is a heap block and a copy.
///
/// A value is kept once the same bytes come twice in a row (keeping it costs one more block: the
/// count its clones share), so bytes that differ each time cost what they cost without it (each
/// [`carved`]) and bytes that repeat cost none from their third time on. Per thread
/// (`thread_local!`, one per call site): no lock; one value and 32 bytes held per thread and site.
pub(crate) struct LastValue(RefCell<Memo>);

/// What [`LastValue`] holds.
struct Memo {
    /// The value reused while the bytes asked for are its own.
    kept: Option<HeaderValue>,
    /// The bytes asked for last when they were not `kept`'s (`len` `None`: none, or longer than
    /// the array): the same bytes again make the new value the kept one.
    seen: [u8; SEEN],
    seen_len: Option<u8>,
}

/// The longest bytes [`LastValue`] keeps (a provider's name, a number's digits).
const SEEN: usize = 32;

impl LastValue {
    pub(crate) const fn new() -> Self {
        LastValue(RefCell::new(Memo {
            kept: None,
            seen: [0; SEEN],
            seen_len: None,
        }))
    }

    /// `bytes` as a header value (see the type's docs for when it is a kept one); `None` when
    /// `bytes` is not a valid header value.
    pub(crate) fn get(&self, bytes: &[u8]) -> Option<HeaderValue> {
        let mut memo = self.0.borrow_mut();
        if let Some(kept) = memo.kept.as_ref().filter(|v| v.as_bytes() == bytes) {
            return Some(kept.clone());
        }
        let seen = memo.seen_len.map(|n| &memo.seen[..usize::from(n)]);
        if seen == Some(bytes) {
            // Kept for long: bytes of its own, not a slice that would keep a shared buffer.
            let value = copied(bytes)?;
            memo.kept = Some(value.clone());
            memo.seen_len = None;
            return Some(value);
        }
        let value = carved(bytes)?;
        memo.seen_len = memo.seen.get_mut(..bytes.len()).map(|to| {
            to.copy_from_slice(bytes);
            // At most `SEEN` (32), which a `u8` holds.
            bytes.len() as u8
        });
        Some(value)
    }

    /// [`get`](Self::get) for `n`'s digits.
    pub(crate) fn int(&self, n: impl itoa::Integer) -> HeaderValue {
        with_digits(n, |digits| self.get(digits))
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

    /// Where a value's bytes live: a clone of a kept value shares them.
    fn at(v: &HeaderValue) -> *const u8 {
        v.as_bytes().as_ptr()
    }

    #[test]
    fn a_value_asked_for_twice_in_a_row_is_kept_and_reused() {
        let last = LastValue::new();
        let first = last.int(600u32);
        let second = last.int(600u32);
        assert!(first == "600" && second == "600");
        // Made each time until the second: that one is kept, and the third is a clone of it.
        assert_ne!(at(&first), at(&second));
        let third = last.int(600u32);
        assert_eq!(at(&third), at(&second));
        // Kept: bytes of its own, indexed by HTTP/2's header compression like any value.
        assert!(first.is_sensitive() && !second.is_sensitive());
        // Not a header value: refused, and the kept one stays.
        assert_eq!(last.get(b"a\nb"), None);
        assert_eq!(at(&last.int(600u32)), at(&second));
        // Another value once: made, and the kept one stays.
        assert_eq!(last.int(7u32), "7");
        assert_eq!(at(&last.int(600u32)), at(&second));
    }

    #[test]
    fn values_that_alternate_are_made_each_time_and_never_kept() {
        let last = LastValue::new();
        let made: Vec<HeaderValue> = (0..6)
            .map(|i| {
                last.get(if i % 2 == 0 { b"openai" } else { b"bedrock" })
                    .unwrap()
            })
            .collect();
        for (i, v) in made.iter().enumerate() {
            assert_eq!(v, if i % 2 == 0 { "openai" } else { "bedrock" });
            assert!(
                made[..i].iter().all(|earlier| at(earlier) != at(v)),
                "{i} reused"
            );
        }
        // Longer than what is kept: never kept.
        let long = "x".repeat(SEEN + 1);
        let (a, b, c) = (
            last.get(long.as_bytes()).unwrap(),
            last.get(long.as_bytes()).unwrap(),
            last.get(long.as_bytes()).unwrap(),
        );
        assert!(at(&a) != at(&b) && at(&b) != at(&c) && at(&a) != at(&c));
    }

    #[test]
    fn short_values_are_slices_of_one_buffer_until_it_is_full() {
        // From a buffer of this test's thread alone: a fresh one, so the first value starts it.
        std::thread::spawn(|| {
            let first = int(12345u32);
            let second = written(|out| out.write_str("0.0042")).unwrap();
            assert!(first == "12345" && second == "0.0042");
            // Side by side in one buffer.
            assert_eq!(at(&second), at(&first).wrapping_add(5));
            // Fill the buffer: every value is its own bytes, and the one that did not fit starts
            // a new buffer.
            let mut values = vec![first, second];
            let mut filled = 11;
            while filled + 8 <= CARVED_BUFFER {
                values.push(int(10_000_000u32 + filled as u32));
                filled += 8;
            }
            let next = int(99_999_999u32);
            let last = values.last().unwrap();
            assert_ne!(at(&next), at(last).wrapping_add(8), "a new buffer");
            for (i, v) in values.iter().enumerate().skip(2) {
                let n = 10_000_000 + 11 + 8 * (i - 2);
                assert_eq!(v.to_str().unwrap(), n.to_string());
            }
            // The old buffer stays while its values do; they read the same after it is replaced.
            drop(values.drain(..values.len() - 1));
            assert_eq!(values[0].len(), 8);
            assert_eq!(next, "99999999");
            // Never indexed by HTTP/2's header compression (it would keep the buffer).
            assert!(next.is_sensitive());
            // A full buffer none of whose values is left is reused from its start.
            let start = at(&next);
            drop((values, next));
            let reused = (0..CARVED_BUFFER / 8 + 1).any(|_| at(&int(10_000_000u32)) == start);
            assert!(reused, "the buffer was not reused in place");
            // Too long to carve, or not a header value.
            let long = "x".repeat(MAX_CARVED + 1);
            assert_eq!(
                written(|out| out.write_str(&long[..48])).map(|v| v.len()),
                Some(48)
            );
            assert_eq!(
                carved(long.as_bytes()).map(|v| v.len()),
                Some(MAX_CARVED + 1)
            );
            assert_eq!(carved(b"a\nb"), None);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn integers_are_their_digits() {
        assert_eq!(int(0u32), HeaderValue::from(0u32));
        assert_eq!(int(u64::MAX), HeaderValue::from(u64::MAX));
        assert_eq!(int(-17i64).as_bytes(), b"-17");
        assert_eq!(int(1_000_000_000u32).to_str().ok(), Some("1000000000"));
    }
}
