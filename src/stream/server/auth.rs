//! Who may connect: the bearer token every handshake must carry when the receiver has
//! one. The token is kept as its SHA-256 digest and compared in constant time, so that
//! neither its value nor its length can be learnt from how long a refusal takes.

use ring::digest::{digest, SHA256};
use tokio_tungstenite::tungstenite::handshake::server::Request;
use tokio_tungstenite::tungstenite::http::header::AUTHORIZATION;

/// Longest token taken, bytes.
const MAX_TOKEN_LEN: usize = 1024;

/// A SHA-256 digest.
pub(super) type Digest = [u8; 32];

/// The SHA-256 digest of `bytes`.
pub(super) fn sha256(bytes: &[u8]) -> Digest {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

/// Whether `a` and `b` are equal, in a time that does not depend on where they differ.
pub(super) fn same_digest(a: &Digest, b: &Digest) -> bool {
    let diff = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| acc | std::hint::black_box(x ^ y));
    std::hint::black_box(diff) == 0
}

/// Why `token` cannot be a receiver's token, if it cannot: it must fit a header as a
/// bearer token (1 to 1024 visible ASCII characters).
pub(super) fn token_problem(token: &str) -> Option<&'static str> {
    if token.is_empty() {
        Some("the token is empty")
    } else if token.len() > MAX_TOKEN_LEN {
        Some("the token is longer than 1024 characters")
    } else if !token.bytes().all(|b| b.is_ascii_graphic()) {
        Some("the token holds characters other than visible ASCII")
    } else {
        None
    }
}

/// Checks the request's `Authorization: Bearer` header against the digest of the
/// receiver's token; the error is the one-line reason of the 401 answer.
pub(super) fn check_bearer(expected: &Digest, request: &Request) -> Result<(), &'static str> {
    let mut values = request.headers().get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err("missing Authorization: Bearer token");
    };
    if values.next().is_some() {
        return Err("more than one Authorization header");
    }
    let value = value.as_bytes();
    let scheme_ok = value.len() > 7 && value[..7].eq_ignore_ascii_case(b"bearer ");
    if !scheme_ok {
        return Err("Authorization must be a Bearer token");
    }
    let token = value[7..].trim_ascii();
    if same_digest(&sha256(token), expected) {
        Ok(())
    } else {
        Err("wrong token")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(auth: &[&str]) -> Request {
        let mut builder = Request::builder().uri("/");
        for a in auth {
            builder = builder.header(AUTHORIZATION, *a);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn only_the_right_bearer_token_passes() {
        let expected = sha256(b"s3cret-token");
        assert_eq!(
            check_bearer(&expected, &request(&["Bearer s3cret-token"])),
            Ok(())
        );
        assert_eq!(
            check_bearer(&expected, &request(&["bearer  s3cret-token "])),
            Ok(())
        );
        assert_eq!(
            check_bearer(&expected, &request(&[])),
            Err("missing Authorization: Bearer token")
        );
        assert_eq!(
            check_bearer(&expected, &request(&["Bearer s3cret-tokeN"])),
            Err("wrong token")
        );
        assert!(check_bearer(&expected, &request(&["Bearer "])).is_err());
        assert!(check_bearer(&expected, &request(&["Basic czNjcmV0"])).is_err());
        assert!(check_bearer(&expected, &request(&["Bearer x", "Bearer s3cret-token"])).is_err());
    }

    #[test]
    fn tokens_must_fit_a_header() {
        assert_eq!(token_problem("abc-DEF_123.~+/="), None);
        assert!(token_problem("").is_some());
        assert!(token_problem("two words").is_some());
        assert!(token_problem("é").is_some());
        assert!(token_problem(&"x".repeat(1025)).is_some());
        assert!(same_digest(&sha256(b"a"), &sha256(b"a")));
        assert!(!same_digest(&sha256(b"a"), &sha256(b"b")));
    }
}
