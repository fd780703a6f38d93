//! What of a stream's URL and of a server's text may be shown.
//!
//! A URL may carry credentials in its user information (`user:pass@`) or its query
//! (`?key=...`): messages show it without the query and with the password (or a lone
//! user name, often a key) replaced by `***`. A server's text is untrusted: shown on a
//! terminal, its control characters would move the cursor, clear the screen or set the
//! window title, so they are written out as escapes instead.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `url` as messages may show it: without its query and fragment, and with the
/// credentials of its user information hidden (`user:***@`, or `***@` for a lone name).
///
/// # Examples
///
/// ```
/// use clearvox::stream::redact_url;
///
/// assert_eq!(redact_url("wss://user:pa55@host/v1?key=k"), "wss://user:***@host/v1");
/// assert_eq!(redact_url("wss://sk-123@host/"), "wss://***@host/");
/// assert_eq!(redact_url("wss://host/v1"), "wss://host/v1");
/// ```
pub fn redact_url(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    let (scheme, rest) = match url.find("://") {
        Some(i) => (&url[..i + 3], &url[i + 3..]),
        None => ("", url),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let shown = match authority.rfind('@') {
        Some(at) => {
            let (userinfo, host) = (&authority[..at], &authority[at + 1..]);
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}:***@{host}", escape_controls(user)),
                None => format!("***@{host}"),
            }
        }
        None => authority.to_string(),
    };
    escape_controls(&format!("{scheme}{shown}{path}")).into_owned()
}

/// Whether `url`'s authority holds user information (`user[:password]@host`).
pub(crate) fn has_credentials(url: &str) -> bool {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    let rest = url.find("://").map_or(url, |i| &url[i + 3..]);
    let authority = rest.split('/').next().unwrap_or_default();
    authority.contains('@')
}

/// `text` with every control character (C0, DEL, C1) and every bidirectional-text
/// control written as an escape (`\x1b`, `\u{9b}`, `\u{202e}`), so that a server's text
/// cannot drive the terminal it is shown on. Everything else is kept as it is.
///
/// # Examples
///
/// ```
/// use clearvox::stream::escape_controls;
///
/// assert_eq!(escape_controls("\x1b]0;pwned\x07hi\r"), r"\x1b]0;pwned\x07hi\r");
/// assert_eq!(escape_controls(r#"{"text":"héllo"}"#), r#"{"text":"héllo"}"#);
/// ```
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if !needs_escape(c) {
            out.push(c);
            continue;
        }
        let _ = match c {
            '\n' => out.write_str(r"\n"),
            '\r' => out.write_str(r"\r"),
            '\t' => out.write_str(r"\t"),
            c if (c as u32) < 0x80 => write!(out, r"\x{:02x}", c as u32),
            c => write!(out, r"\u{{{:x}}}", c as u32),
        };
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_secrets() {
        for (url, shown) in [
            (
                "ws://user:pass@127.0.0.1:9/x?k=1",
                "ws://user:***@127.0.0.1:9/x",
            ),
            ("ws://user:p@ss@h/", "ws://user:***@h/"),
            ("wss://token@h", "wss://***@h"),
            ("wss://h/p#frag", "wss://h/p"),
            ("wss://h/a@b", "wss://h/a@b"),
            ("not a url", "not a url"),
            ("wss://h/\x1b[2J", r"wss://h/\x1b[2J"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
        assert!(has_credentials("ws://u:p@h/"));
        assert!(has_credentials("ws://u@h"));
        assert!(!has_credentials("ws://h/a@b?x=@"));
    }

    #[test]
    fn control_characters_are_escaped() {
        assert!(matches!(
            escape_controls("plain {\"a\":1}"),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            escape_controls("a\x1b[2J\x1b]0;title\x07\r\n\tb\x7f\u{9b}c\u{202e}d"),
            r"a\x1b[2J\x1b]0;title\x07\r\n\tb\x7f\u{9b}c\u{202e}d"
        );
        assert_eq!(escape_controls("日本語 ✓"), "日本語 ✓");
    }
}
