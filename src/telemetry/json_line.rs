//! The JSON log line, written by hand.
//!
//! `LOG_FORMAT=json` used tracing-subscriber's JSON formatter, which collects an event's fields
//! in a `BTreeMap` of `serde_json::Value`s, serializes the map through serde into a byte buffer,
//! checks that buffer as UTF-8 and copies it into the line: callgrind put that at about 60 % of
//! the gateway's instructions per relayed request (BENCHMARKS.md, issue 18). [`JsonLine`] writes
//! the same object — `timestamp`, `level`, the event's fields flattened (`message` among them),
//! `target` — straight into the line, escaping only what JSON requires. No library formats a
//! `tracing` event as JSON without the intermediate map, hence this module.
//!
//! The line is built in a per-thread buffer with plain pushes and handed to the writer once:
//! numbers through `itoa` and `ryu` (serde_json's own, so the digits are the library's), strings
//! escaped only when a scan finds a byte JSON requires escaping, and the timestamp's date and time
//! of day formatted once per second per thread (`Timestamp`).
//!
//! The access log line does not come through here as an event in the binary: `observe` hands its
//! fields to [`access_line`], which writes the same line without the event's dispatch and
//! field-by-field visit (`telemetry`). [`JsonLine`] writes every other line, and the access line
//! wherever it is still an event.
//!
//! An event inside a span is handed to tracing-subscriber's own JSON formatter, which adds the
//! `span` and `spans` members (the gateway's access log is not emitted inside a span, so its
//! lines take the fast path). Field order follows the event's declaration; a field named like one
//! of the line's own members (`timestamp`, `level`, `target`) is written as well, as the
//! flattened formatter does.

use std::cell::Cell;
use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Json, Writer};
use tracing_subscriber::fmt::time::SystemTime as LibraryTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::format::scan::{is_string_special as must_escape, string_special};
use crate::observe::{AccessFields, AccessLine, Key};

/// Formats events as one JSON object per line, by hand (see the module docs).
pub(crate) struct JsonLine {
    /// For events inside a span: the library's formatter, configured as before.
    in_span: Format<Json, LibraryTime>,
}

impl JsonLine {
    pub(crate) fn new() -> Self {
        JsonLine {
            in_span: tracing_subscriber::fmt::format()
                .json()
                .flatten_event(true)
                .with_target(true),
        }
    }
}

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        if event.is_contextual() && ctx.lookup_current().is_some() || event.parent().is_some() {
            return self.in_span.format_event(ctx, writer, event);
        }
        let now = SystemTime::now();
        with_line_buffer(|out| {
            line(out, event, now);
            writer.write_str(out)
        })
    }
}

/// Formats an access line straight from its fields (`observe::AccessLine`), with `now` as its
/// timestamp, and hands it to `write`: the line the access event would have made through
/// [`JsonLine`] (a test compares them), without the event's dispatch and field-by-field visit.
pub(crate) fn access_line(now: SystemTime, line: &AccessLine<'_>, write: impl FnOnce(&[u8])) {
    with_line_buffer(|out| {
        out.push_str("{\"timestamp\":\"");
        Timestamp::push(out, now);
        out.push_str("\",\"level\":\"INFO\"");
        line.fields(&mut Object { out });
        out.push_str(",\"target\":\"access\"}\n");
        write(out.as_bytes());
    });
}

/// Writes each field of an access line as `,"name":value`.
struct Object<'a> {
    out: &'a mut String,
}

// The methods are inlined into `AccessLine::fields`, where each key is a constant: one copy of it,
// with no `memcpy` call.
impl AccessFields for Object<'_> {
    #[inline(always)]
    fn str(&mut self, key: Key, value: &str) {
        self.out.push_str(key.quoted);
        push_escaped(self.out, value);
        self.out.push('"');
    }

    /// Not scanned for bytes to escape (`AccessFields::word`).
    #[inline(always)]
    fn word(&mut self, key: Key, value: &str) {
        debug_assert!(!needs_escaping(value.as_bytes()), "{}{value:?}", key.bare);
        self.out.push_str(key.quoted);
        self.out.push_str(value);
        self.out.push('"');
    }

    #[inline(always)]
    fn u64(&mut self, key: Key, value: u64) {
        self.out.push_str(key.bare);
        self.out.push_str(itoa::Buffer::new().format(value));
    }

    #[inline(always)]
    fn f64(&mut self, key: Key, value: f64) {
        self.out.push_str(key.bare);
        push_f64(self.out, value);
    }

    #[inline(always)]
    fn bool(&mut self, key: Key, value: bool) {
        self.out.push_str(key.bare);
        self.out.push_str(if value { "true" } else { "false" });
    }

    #[inline(always)]
    fn text(&mut self, key: Key, write: &dyn Fn(&mut String)) {
        self.out.push_str(key.quoted);
        push_written(self.out, write);
        self.out.push('"');
    }
}

/// The capacity a line buffer starts with: an access log line fits.
const LINE: usize = 1024;

/// A line buffer grown past this (a long error message) is dropped after its line.
const MAX_KEPT_LINE: usize = 16 * 1024;

thread_local! {
    /// This thread's line buffer, taken while a line is formatted in it.
    static SCRATCH: Cell<String> = Cell::new(String::with_capacity(LINE));
}

/// Runs `f` on this thread's line buffer, emptied. A line formatted while another is (a field's
/// `Display` logged: a global subscriber dispatches that nested event, a scoped one drops it), or
/// while the thread's locals are torn down, finds the buffer taken and gets one of its own.
fn with_line_buffer<R>(f: impl FnOnce(&mut String) -> R) -> R {
    let mut out = SCRATCH.try_with(Cell::take).unwrap_or_default();
    out.clear();
    out.reserve(LINE);
    let r = f(&mut out);
    if out.capacity() <= MAX_KEPT_LINE {
        // Gone with the thread's locals: the buffer is dropped instead.
        let _ = SCRATCH.try_with(|scratch| scratch.set(out));
    }
    r
}

/// Writes the whole line for an event outside any span into `out`, `now` as its timestamp.
fn line(out: &mut String, event: &Event<'_>, now: SystemTime) {
    let meta = event.metadata();
    out.push_str("{\"timestamp\":\"");
    Timestamp::push(out, now);
    out.push_str("\",\"level\":\"");
    out.push_str(meta.level().as_str());
    out.push('"');
    let mut fields = Fields { out };
    event.record(&mut fields);
    out.push_str(",\"target\":");
    push_string(out, meta.target());
    out.push_str("}\n");
}

/// `,"name":`, the name escaped.
fn push_name(out: &mut String, name: &str) {
    out.push(',');
    push_string(out, name);
    out.push(':');
}

/// Writes each field as `,"name":value`.
struct Fields<'a> {
    out: &'a mut String,
}

impl Fields<'_> {
    fn name(&mut self, field: &Field) {
        push_name(self.out, field.name());
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.name(field);
        push_string(self.out, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.name(field);
        self.out.push_str(itoa::Buffer::new().format(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.name(field);
        self.out.push_str(itoa::Buffer::new().format(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.name(field);
        self.out.push_str(if value { "true" } else { "false" });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.name(field);
        push_f64(self.out, value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.name(field);
        push_formatted(self.out, format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.name(field);
        push_formatted(self.out, format_args!("{value:?}"));
    }
}

/// `v` as `ryu` writes it (the shortest digits that read back as `v`; `null` for NaN and the
/// infinities, which JSON lacks, as serde_json does). A value of whole thousandths below a billion — the access log's
/// `latency_ms` and `ttft_ms`, which are rounded to the microsecond — is written from its
/// integer digits: the same text (no shorter decimal lies within half an ulp of it), for about a
/// tenth of `ryu`'s instructions.
fn push_f64(out: &mut String, v: f64) {
    if !v.is_finite() {
        out.push_str("null");
        return;
    }
    if v.is_sign_positive() && v < 1e9 {
        let thousandths = (v * 1000.0).round();
        if thousandths / 1000.0 == v {
            // Whole and below 10^12: exact as an integer.
            let k = thousandths as u64;
            out.push_str(itoa::Buffer::new().format(k / 1000));
            if k.is_multiple_of(1000) {
                out.push_str(".0");
            } else {
                // Writing to a `String` cannot fail.
                let _ = crate::digits::write_fraction(out, k % 1000, 3);
            }
            return;
        }
    }
    out.push_str(ryu::Buffer::new().format_finite(v));
}

/// `s` as a JSON string: quoted, with `"`, `\` and control characters escaped.
fn push_string(out: &mut String, s: &str) {
    out.push('"');
    push_escaped(out, s);
    out.push('"');
}

/// What `args` formats, as a JSON string (see [`push_written`]).
fn push_formatted(out: &mut String, args: fmt::Arguments<'_>) {
    out.push('"');
    match args.as_str() {
        Some(s) => push_escaped(out, s),
        None => push_written(out, |out| {
            // Writing to a `String` cannot fail.
            let _ = out.write_fmt(args);
        }),
    }
    out.push('"');
}

/// What `write` appends to `out`, escaped as a JSON string's inside. The text is written straight
/// into the line and scanned once there; only text with a byte JSON must escape (rare: these are
/// methods, paths, attempt lists, error texts) is taken back out and escaped — not each piece a
/// formatter hands over, which cost each `Display` field of the access event about 650
/// instructions.
fn push_written(out: &mut String, write: impl FnOnce(&mut String)) {
    let start = out.len();
    write(out);
    if let Some(at) = string_special(&out.as_bytes()[start..]) {
        let raw = out.split_off(start + at);
        push_escaped(out, &raw);
    }
}

/// Whether any byte of `b` must be escaped.
fn needs_escaping(b: &[u8]) -> bool {
    string_special(b).is_some()
}

/// `s` escaped for a JSON string's inside. The common case — nothing to escape — is one word-wise
/// scan and one copy.
fn push_escaped(out: &mut String, s: &str) {
    if !needs_escaping(s.as_bytes()) {
        out.push_str(s);
        return;
    }
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        if !must_escape(b) {
            continue;
        }
        out.push_str(&s[start..i]);
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            _ => {
                out.push_str("\\u00");
                // A `String` takes every write.
                let _ = crate::digits::write_hex(out, u64::from(b), 2);
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
}

/// The timestamp as tracing-subscriber writes it (RFC 3339 in UTC, microseconds:
/// `2026-12-02T08:53:50.716092Z`), with the `YYYY-MM-DDTHH:MM:SS` part kept per thread for the
/// second it names.
struct Timestamp;

thread_local! {
    /// The last second formatted on this thread and its `YYYY-MM-DDTHH:MM:SS`.
    static SECOND: Cell<(u64, [u8; 19])> = const { Cell::new((u64::MAX, [0; 19])) };
}

impl Timestamp {
    fn push(out: &mut String, now: SystemTime) {
        // Before 1970 (a clock set wrong) is written as the epoch, not a panic.
        let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs();
        let (cached, mut text) = SECOND.get();
        if cached != secs {
            text = Self::date_time(secs);
            SECOND.set((secs, text));
        }
        // Only ASCII digits and separators are ever written to `text`.
        out.push_str(std::str::from_utf8(&text).unwrap_or("1970-01-01T00:00:00"));
        out.push('.');
        // Writing to a `String` cannot fail.
        let _ = crate::digits::write_padded(out, u64::from(since.subsec_micros()), 6);
        out.push('Z');
    }

    /// `YYYY-MM-DDTHH:MM:SS` for seconds since the epoch (the proleptic Gregorian calendar,
    /// [`crate::sigv4::civil_from_days`]).
    fn date_time(secs: u64) -> [u8; 19] {
        let rem = secs % 86_400;
        let days = i64::try_from(secs / 86_400).unwrap_or(0);
        let (year, month, day) = crate::sigv4::civil_from_days(days);
        let [year, month, day] = [year, month, day].map(|n| u64::try_from(n).unwrap_or(0));
        let mut t = *b"0000-00-00T00:00:00";
        let mut put = |at: usize, width: usize, mut n: u64| {
            for i in (at..at + width).rev() {
                t[i] = b'0' + (n % 10) as u8;
                n /= 10;
            }
        };
        put(0, 4, year.min(9999));
        put(5, 2, month);
        put(8, 2, day);
        put(11, 2, rem / 3_600);
        put(14, 2, rem / 60 % 60);
        put(17, 2, rem % 60);
        t
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::telemetry::capture::Capture;
    use serde_json::Value;

    fn emit(fast: bool, f: impl FnOnce()) -> Vec<Value> {
        let capture = Capture::default();
        let builder = tracing_subscriber::fmt()
            .with_writer(capture.clone())
            .with_target(true)
            .json()
            .flatten_event(true);
        if fast {
            tracing::subscriber::with_default(builder.event_format(JsonLine::new()).finish(), f);
        } else {
            tracing::subscriber::with_default(builder.finish(), f);
        }
        let text = capture.text();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// Dates across leap days, centuries and the cached second: the formatted timestamp.
    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        let at = |secs: u64, micros: u32| {
            let mut out = String::new();
            let t = UNIX_EPOCH + std::time::Duration::new(secs, micros * 1_000 + 999);
            Timestamp::push(&mut out, t);
            out
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(951_782_400, 7), "2000-02-29T00:00:00.000007Z");
        assert_eq!(at(951_868_799, 999_999), "2000-02-29T23:59:59.999999Z");
        assert_eq!(at(1_700_000_000, 120_000), "2023-11-14T22:13:20.120000Z");
        assert_eq!(
            at(1_700_000_000, 5),
            "2023-11-14T22:13:20.000005Z",
            "cached"
        );
        assert_eq!(at(1_700_000_001, 5), "2023-11-14T22:13:21.000005Z");
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000000Z");
        assert_eq!(at(1_798_761_599, 0), "2026-12-31T23:59:59.000000Z");
    }

    /// A string with nothing to escape is copied; every escape JSON requires is written.
    #[test]
    fn strings_are_escaped_only_where_json_requires() {
        let esc = |s: &str| {
            let mut out = String::new();
            push_string(&mut out, s);
            out
        };
        assert_eq!(esc("plain/path é ✓"), "\"plain/path é ✓\"");
        assert_eq!(
            esc("a\"b\\c\nd\re\tf\u{1}g\u{1f}"),
            r#""a\"b\\c\nd\re\tf\u0001g\u001f""#
        );
        let long = format!("{}\"", "x".repeat(100));
        assert_eq!(serde_json::from_str::<String>(&esc(&long)).unwrap(), long);
        // The word-wise scan itself is tested with `format::scan::string_special`.
        assert_eq!(esc(&"é".repeat(9)), format!("\"{}\"", "é".repeat(9)));
    }

    /// The thousandths written by hand are `ryu`'s text, and everything else is `ryu`'s.
    #[test]
    fn numbers_are_written_as_ryu_writes_them() {
        let as_serde = |v: f64| ryu::Buffer::new().format_finite(v).to_owned();
        let mine = |v: f64| {
            let mut out = String::new();
            push_f64(&mut out, v);
            out
        };
        let mut values: Vec<f64> = (0..200_000u64).map(|k| k as f64 / 1000.0).collect();
        values.extend((0..2_000u64).map(|k| (k * 7_919_993 + 999_000_000_000 - k) as f64 / 1000.0));
        values.extend([
            0.0,
            -0.0,
            -1.5,
            0.1 + 0.2,
            1e-7,
            0.000_5,
            999_999_999.999,
            1e9,
            1e9 + 0.5,
            1e300,
            f64::MIN_POSITIVE,
            5e-324,
            0.412_345_678_9,
            12.345_6,
        ]);
        for v in values {
            assert_eq!(mine(v), as_serde(v), "{v:e}");
            // and the round trip
            let back: f64 = serde_json::from_str(&mine(v)).unwrap();
            assert_eq!(back.to_bits(), v.to_bits(), "{v:e}");
        }
        assert_eq!(mine(f64::NAN), "null");
        assert_eq!(mine(f64::INFINITY), "null");
        assert_eq!(mine(f64::NEG_INFINITY), "null");
        assert_eq!(mine(0.412), "0.412");
        assert_eq!(mine(7.0), "7.0");
    }

    fn without_timestamp(mut v: Value) -> Value {
        let ts = v.as_object_mut().unwrap().remove("timestamp").unwrap();
        assert!(ts.as_str().unwrap().ends_with('Z'), "{ts}");
        v
    }

    /// Every kind of field, with characters JSON must escape: the hand-written line parses to
    /// the same object as tracing-subscriber's JSON line, timestamp aside.
    #[test]
    fn the_line_is_the_library_s_json_object() {
        let multi = String::from("é✓");
        let special = String::from("a\"b\n\u{1f}");
        let events = || {
            let method = http::Method::POST;
            tracing::info!(
                target: "access",
                method = %method,
                path = "/v1/chat/\"completions\"\\\n\t\u{1}é",
                status = 200u16,
                delta = -3i64,
                stream = true,
                latency_ms = 1.25f64,
                whole = 2.0f64,
                nan = f64::NAN,
                debug = ?Some("x"),
                // Formatted in pieces (runtime values: literals would be folded into one string),
                // the byte to escape in a later piece, after multi-byte text.
                pieces = %format_args!("{}:{}:{}", multi, special, 7),
                clean = %format_args!("{}-{}", multi, 1),
                "request"
            );
            tracing::warn!(error = %std::io::Error::other("bad \"thing\""), "failed: {}", 7);
            let span = tracing::info_span!("outer", id = 1);
            let _in = span.enter();
            tracing::info!(inside = 1, "in a span");
        };
        let fast = emit(true, events);
        let slow = emit(false, events);
        assert_eq!(fast.len(), 3);
        for (f, s) in fast.into_iter().zip(slow) {
            assert_eq!(without_timestamp(f), without_timestamp(s));
        }
    }

    /// Two callsites in turn, and an event logged from inside another's formatting (a scoped
    /// subscriber drops it, for the library's formatter too): every line is still the library's.
    #[test]
    fn callsites_in_turn_and_an_event_inside_another_are_written_whole() {
        struct Noisy;
        impl fmt::Display for Noisy {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                tracing::info!(inner = "from \"inside\"", "nested");
                f.write_str("noisy")
            }
        }
        let events = || {
            for i in 0..3u64 {
                tracing::info!(target: "access", first = i, second = "a", "one");
                tracing::info!(other = i, "two");
            }
            tracing::info!(outer = %Noisy, after = 1u8, "outer");
            tracing::info!(target: "access", first = 9u64, second = "b", "one");
        };
        let fast = emit(true, events);
        let slow = emit(false, events);
        assert_eq!(slow.len(), 8);
        assert_eq!(fast.len(), 8);
        assert_eq!(fast[6]["outer"], "noisy");
        for (f, s) in fast.into_iter().zip(slow) {
            assert_eq!(without_timestamp(f), without_timestamp(s));
        }
    }

    /// With the thread's buffer taken (as when a field's `Display` logs under the global
    /// subscriber), a line is written from a buffer of its own, the same line.
    #[test]
    fn a_line_written_while_the_buffer_is_taken_is_the_same_line() {
        let events = || {
            tracing::info!(target: "access", method = %http::Method::GET, status = 404u16, "request");
        };
        let taken = SCRATCH.with(Cell::take);
        let fast = emit(true, events);
        SCRATCH.with(|scratch| scratch.set(taken));
        let slow = emit(false, events);
        assert_eq!(fast.len(), 1);
        assert_eq!(fast[0]["method"], "GET");
        assert_eq!(
            without_timestamp(fast[0].clone()),
            without_timestamp(slow[0].clone())
        );
    }
}
