//! Header values formatted on the stack: what a `Display` writes goes into a fixed buffer and is
//! copied once into the [`HeaderValue`], instead of into a `String` first and copied again. Used
//! for the per-request values the gateway computes (`x-gateway-cost`, `x-ratelimit-reset-*`).

use std::fmt::{self, Write as _};

use http::HeaderValue;

/// `value` as a header value; `None` when it is longer than 48 bytes or not a valid value.
pub(crate) fn display(value: impl fmt::Display) -> Option<HeaderValue> {
    let mut out = Stack {
        buf: [0; 48],
        len: 0,
    };
    write!(out, "{value}").ok()?;
    HeaderValue::from_bytes(&out.buf[..out.len]).ok()
}

/// A fixed buffer that refuses what does not fit.
struct Stack {
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
}
