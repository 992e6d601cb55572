//! [`ModelPattern`]: one entry of a key's model allowlist (or of the `[prices]` table): a model
//! name, or a glob with `*` (any run of characters, `/`, `.` and `:` included) and `?` (one
//! character).
//!
//! Hand-written rather than taken from a glob crate: model ids are not paths (`*` must cross `/`
//! and `.`), only `*` and `?` are needed, and the matcher is a dozen lines with no allocation —
//! the greedy two-pointer algorithm with a single backtrack point, linear for the patterns people
//! write and quadratic at worst.

use std::fmt;
use std::sync::Arc;

/// A model name or glob. A group name (from the routing configuration) is matched like any other
/// name: the allowlist is checked against the model the client asks for, before routing.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ModelPattern {
    text: Arc<str>,
    glob: bool,
}

impl ModelPattern {
    /// `text`: a glob when it contains `*` or `?`, else an exact name.
    pub fn new(text: &str) -> Self {
        ModelPattern {
            text: Arc::from(text),
            glob: text.contains(['*', '?']),
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `model` matches.
    ///
    /// ```
    /// use open_bedrock_server::keys::ModelPattern;
    ///
    /// assert!(ModelPattern::new("gpt-4o*").matches("gpt-4o-mini"));
    /// assert!(ModelPattern::new("*.anthropic.claude-*").matches("us.anthropic.claude-3-5-haiku-20241022-v1:0"));
    /// assert!(ModelPattern::new("mock/?cho").matches("mock/echo"));
    /// assert!(!ModelPattern::new("gpt-4o").matches("gpt-4o-mini"));
    /// ```
    pub fn matches(&self, model: &str) -> bool {
        if !self.glob {
            return *self.text == *model;
        }
        glob_match(self.text.as_bytes(), model.as_bytes())
    }
}

fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where to resume after the last `*`: (pattern index after it, text index it matched up to).
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p + 1, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

impl fmt::Debug for ModelPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.text, f)
    }
}

impl serde::Serialize for ModelPattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_and_names() {
        let cases = [
            ("*", "anything/at:all", true),
            ("*", "", true),
            ("", "", true),
            ("", "x", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("a*b", "abab", true),
            ("*-mini", "gpt-4o-mini", true),
            ("*-mini", "gpt-4o-mini-2024", false),
            ("anthropic.*", "us.anthropic.claude", false),
            ("*anthropic.*", "us.anthropic.claude", true),
            ("g?t", "gpt", true),
            ("g?t", "gt", false),
            ("**a", "a", true),
            ("mock/echo", "mock/echo", true),
            ("mock/echo", "mock/ech", false),
        ];
        for (p, t, want) in cases {
            assert_eq!(ModelPattern::new(p).matches(t), want, "{p} ~ {t}");
        }
        assert!(!ModelPattern::new("gpt-4o").glob);
    }
}
