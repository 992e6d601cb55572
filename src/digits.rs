//! Numbers written by hand on the per-request path, without `format!` and its `String`s:
//! zero-padded hex (the gateway's ids, JSON's `\u00XX` escapes), zero-padded decimals and decimal
//! fractions with their trailing zeros dropped (costs, rate-limit resets, log timestamps).

use std::fmt;

/// `v` in lower-case hex, zero-padded to `min_width` digits (`format!("{v:0min_width$x}")`),
/// into any writer (a `String` takes every write; a fixed buffer may refuse what does not fit).
pub(crate) fn write_hex(out: &mut impl fmt::Write, v: u64, min_width: usize) -> fmt::Result {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = (64 - v.leading_zeros() as usize)
        .div_ceil(4)
        .max(min_width)
        .max(1);
    for i in (0..digits).rev() {
        let nibble = if i < 16 { (v >> (i * 4)) & 0xf } else { 0 };
        out.write_char(char::from(HEX[nibble as usize]))?;
    }
    Ok(())
}

/// `v` in decimal, zero-padded to `width` digits (`format!("{v:0width$}")`).
pub(crate) fn write_padded(out: &mut impl fmt::Write, v: u64, width: usize) -> fmt::Result {
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(v);
    for _ in digits.len()..width {
        out.write_str("0")?;
    }
    out.write_str(digits)
}

/// The fraction `frac / 10^width` as `.` and its digits with the trailing zeros dropped (`500`
/// of width 3: `.5`; `7`: `.007`); nothing for 0.
pub(crate) fn write_fraction(out: &mut impl fmt::Write, frac: u64, width: usize) -> fmt::Result {
    if frac == 0 {
        return Ok(());
    }
    let (mut frac, mut width) = (frac, width);
    while frac % 10 == 0 {
        frac /= 10;
        width -= 1;
    }
    out.write_str(".")?;
    write_padded(out, frac, width)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written hex is `format!`'s, padding and all.
    #[test]
    fn hex_is_formats_hex() {
        for v in [
            0,
            1,
            0xf,
            0x10,
            0xdead_beef,
            0x1_0000_0000,
            u64::MAX,
            1 << 63,
        ] {
            for width in [0, 2, 8, 16, 20] {
                let mut out = String::new();
                write_hex(&mut out, v, width).unwrap();
                assert_eq!(out, format!("{v:0width$x}"), "{v:#x} at {width}");
            }
        }
    }

    #[test]
    fn decimals_and_fractions_are_formats_with_trailing_zeros_dropped() {
        let padded = |v: u64, width: usize| {
            let mut out = String::new();
            write_padded(&mut out, v, width).map(|()| out)
        };
        for (v, width) in [
            (0, 0),
            (0, 6),
            (7, 6),
            (120_000, 6),
            (999_999, 6),
            (1234, 2),
        ] {
            assert_eq!(padded(v, width), Ok(format!("{v:0width$}")));
        }
        let fraction = |frac: u64, width: usize| {
            let mut out = String::new();
            write_fraction(&mut out, frac, width).map(|()| out)
        };
        assert_eq!(fraction(0, 9).as_deref(), Ok(""));
        assert_eq!(fraction(500, 3).as_deref(), Ok(".5"));
        assert_eq!(fraction(20, 3).as_deref(), Ok(".02"));
        assert_eq!(fraction(7, 3).as_deref(), Ok(".007"));
        assert_eq!(fraction(2_660_000, 9).as_deref(), Ok(".00266"));
        assert_eq!(fraction(999_999_999, 9).as_deref(), Ok(".999999999"));
    }
}
