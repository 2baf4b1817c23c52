//! The identity headers a task is told, from a verified token's claims, exactly as the old
//! gateway wrote them (pinned by `../shared/compat/identity-vectors.json`):
//! `X-User-Id`, `-Type`, `-Number`, `-Email`, `-Phone` as the claims hold them (numbers as
//! their decimal text); `-Name` (from `username`, else `userName`), `-College`, `-Major`,
//! `-Class` with control characters removed, trimmed and percent-encoded as JavaScript's
//! `encodeURIComponent` does, and left out when that leaves nothing; `-Roles` and
//! `-Permissions` as compact JSON when not empty.

use http::{HeaderName, HeaderValue};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

use super::jwt::Claims;

pub const X_USER_ID: HeaderName = HeaderName::from_static("x-user-id");
pub const X_USER_NAME: HeaderName = HeaderName::from_static("x-user-name");
pub const X_USER_TYPE: HeaderName = HeaderName::from_static("x-user-type");
pub const X_USER_NUMBER: HeaderName = HeaderName::from_static("x-user-number");
pub const X_USER_EMAIL: HeaderName = HeaderName::from_static("x-user-email");
pub const X_USER_PHONE: HeaderName = HeaderName::from_static("x-user-phone");
pub const X_USER_COLLEGE: HeaderName = HeaderName::from_static("x-user-college");
pub const X_USER_MAJOR: HeaderName = HeaderName::from_static("x-user-major");
pub const X_USER_CLASS: HeaderName = HeaderName::from_static("x-user-class");
pub const X_USER_ROLES: HeaderName = HeaderName::from_static("x-user-roles");
pub const X_USER_PERMISSIONS: HeaderName = HeaderName::from_static("x-user-permissions");
/// `X-Request-Timestamp`, when the request was received: written inline, not through a map.
pub const X_REQUEST_TIMESTAMP: &str = "x-request-timestamp";

/// What `encodeURIComponent` leaves as it is: letters, digits and `-_.!~*'()`.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// The identity headers for `claims`, in the old gateway's order.
pub fn headers(claims: &Claims) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::with_capacity(11);
    let mut plain = |name: HeaderName, claim: &str| {
        if let Some(v) = claims
            .get(claim)
            .filter(|v| truthy(v))
            .and_then(as_text)
            .and_then(value)
        {
            out.push((name, v));
        }
    };
    plain(X_USER_ID, "userId");
    plain(X_USER_TYPE, "userType");
    plain(X_USER_NUMBER, "userNumber");
    plain(X_USER_EMAIL, "email");
    plain(X_USER_PHONE, "phone");
    let name = claims
        .get("username")
        .filter(|v| truthy(v))
        .or_else(|| claims.get("userName"));
    let mut encoded = |header: HeaderName, claim: Option<&Value>| {
        if let Some(v) = claim
            .and_then(as_text)
            .map(|t| encode_component(&t))
            .filter(|t| !t.is_empty())
            .and_then(value)
        {
            out.push((header, v));
        }
    };
    encoded(X_USER_NAME, name);
    encoded(X_USER_COLLEGE, claims.get("collegeName"));
    encoded(X_USER_MAJOR, claims.get("majorName"));
    encoded(X_USER_CLASS, claims.get("className"));
    for (header, claim) in [(X_USER_ROLES, "roles"), (X_USER_PERMISSIONS, "permissions")] {
        let list = claims.get(claim).filter(|v| match v {
            Value::Array(a) => !a.is_empty(),
            Value::String(s) => !s.is_empty(),
            _ => false,
        });
        if let Some(v) = list
            .and_then(|l| serde_json::to_string(l).ok())
            .and_then(value)
        {
            out.push((header, v));
        }
    }
    out
}

/// A claim as header text: strings as they are, numbers and booleans as JavaScript prints
/// them; null, arrays and objects are not sent.
fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// JavaScript's truthiness, for `username || userName`.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// Control characters (C0, DEL and C1) removed, whitespace trimmed as JavaScript's `trim`
/// does (which counts U+FEFF too), then `encodeURIComponent`.
pub fn encode_component(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .filter(|&c| !matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}'))
        .collect();
    let trimmed = cleaned.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
    utf8_percent_encode(trimmed, URI_COMPONENT).to_string()
}

/// A header value, or nothing for text a header cannot carry (a line break in a claim).
fn value(text: impl AsRef<str>) -> Option<HeaderValue> {
    let v = HeaderValue::from_bytes(text.as_ref().as_bytes()).ok();
    if v.is_none() {
        tracing::debug!("an identity claim cannot be sent as a header; left out");
    }
    v
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn of(claims: Value) -> Vec<(String, String)> {
        let Value::Object(map) = claims else {
            panic!("not an object")
        };
        headers(&map)
            .into_iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect()
    }

    #[test]
    fn encode_component_is_javascripts() {
        assert_eq!(
            encode_component("A&B/C 学院?"),
            "A%26B%2FC%20%E5%AD%A6%E9%99%A2%3F"
        );
        assert_eq!(encode_component("-_.!~*'()az09"), "-_.!~*'()az09");
        assert_eq!(encode_component("\u{7} 王五 \t"), "%E7%8E%8B%E4%BA%94");
        assert_eq!(encode_component("\u{feff}\u{3000}x\u{85}y\u{a0}"), "xy");
        assert_eq!(encode_component("\u{1}\u{9f}"), "");
    }

    #[test]
    fn claims_map_to_headers_and_empty_ones_are_left_out() {
        assert_eq!(
            of(
                json!({"userId": 7, "userNumber": 2.5, "username": "", "userName": "b",
                      "roles": [], "permissions": ["p"], "email": "", "phone": null,
                      "className": " \u{1} "})
            ),
            [
                ("x-user-id".into(), "7".into()),
                ("x-user-number".into(), "2.5".into()),
                ("x-user-name".into(), "b".into()),
                ("x-user-permissions".into(), "[\"p\"]".into()),
            ]
        );
        assert!(
            of(json!({"userId": "a\nb"})).is_empty(),
            "a line break cannot be sent"
        );
    }
}
