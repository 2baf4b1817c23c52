//! Dot-segment handling, so that a path is routed and forwarded as the upstream will read it,
//! and the same rules for the prefixes routes are configured with. A leaf: pure functions on
//! text, below both `config` (which validates prefixes) and `routing` (which matches paths).
//!
//! `/api/icalink/../admin` must not be routed to icalink and then resolved by the backend into
//! `/admin`. We resolve `.` and `..` (RFC 3986 section 5.2.4) before routing, treating the
//! percent-encoded forms (`%2e%2e`) as dots too since many backends decode before resolving.
//! A `..` that would climb above the root, or one hidden behind an encoded slash
//! (`..%2f..%2fadmin`), has no safe meaning and is refused.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

/// Normalizes a configured prefix to its matching form: a leading `/`, no trailing `/`
/// (so `/api/icalink/` and `/api/icalink` mean the same route), `""` for the root route.
pub fn normalize_prefix(prefix: &str) -> Result<String, String> {
    if !prefix.starts_with('/') {
        return Err(format!("{prefix:?} must start with '/'"));
    }
    if prefix.contains(['?', '#']) || prefix.chars().any(|c| c.is_whitespace()) {
        return Err(format!(
            "{prefix:?} must be a plain path (no query, fragment or spaces)"
        ));
    }
    match normalize_path(prefix) {
        Ok(Cow::Borrowed(_)) => {}
        _ => return Err(format!("{prefix:?} must not contain '.' or '..' segments")),
    }
    Ok(prefix.trim_end_matches('/').to_owned())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path climbs above the root with '..'")]
    AboveRoot,
    #[error("path hides a '..' segment behind an encoded slash")]
    EncodedTraversal,
}

enum Segment {
    Dot,
    DotDot,
    Plain,
}

fn classify(raw: &str) -> Result<Segment, PathError> {
    if !raw.contains('%') {
        if raw.contains('\\') && raw.split('\\').any(|c| c == "..") {
            return Err(PathError::EncodedTraversal);
        }
        return Ok(match raw {
            "." => Segment::Dot,
            ".." => Segment::DotDot,
            _ => Segment::Plain,
        });
    }
    let decoded = percent_decode_str(raw).decode_utf8_lossy();
    match &*decoded {
        "." => Ok(Segment::Dot),
        ".." => Ok(Segment::DotDot),
        d if d.split(['/', '\\']).any(|c| c == "..") => Err(PathError::EncodedTraversal),
        _ => Ok(Segment::Plain),
    }
}

/// Resolves dot segments in an absolute path (no query). Borrows when there is nothing to do,
/// which is every request from a well-behaved client.
pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, PathError> {
    // Fast path: without a '.' there can be neither dot segments nor `%2e` (the encoding of '.'
    // has no '.', so look for '%' too) nor a backslash traversal.
    if !path
        .as_bytes()
        .iter()
        .any(|b| matches!(b, b'.' | b'%' | b'\\'))
    {
        return Ok(Cow::Borrowed(path));
    }
    let mut changed = false;
    let mut out: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    // Skip the leading '/' so the first split item is the first segment.
    let rest = path.strip_prefix('/').unwrap_or(path);
    for raw in rest.split('/') {
        trailing_slash = false;
        match classify(raw)? {
            Segment::Plain => out.push(raw),
            Segment::Dot => {
                changed = true;
                trailing_slash = true;
            }
            Segment::DotDot => {
                changed = true;
                trailing_slash = true;
                if out.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
            }
        }
    }
    if !changed {
        return Ok(Cow::Borrowed(path));
    }
    let mut s = String::with_capacity(path.len());
    for seg in &out {
        s.push('/');
        s.push_str(seg);
    }
    if trailing_slash || s.is_empty() {
        s.push('/');
    }
    Ok(Cow::Owned(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> Result<String, PathError> {
        normalize_path(p).map(Cow::into_owned)
    }

    #[test]
    fn clean_paths_are_borrowed() {
        for p in [
            "/",
            "/api/icalink/v1/attendance/19644/checkin",
            "/a/b.json",
            "/a/%20b",
            "/a/...b",
        ] {
            assert!(matches!(normalize_path(p), Ok(Cow::Borrowed(_))), "{p}");
        }
    }

    #[test]
    fn dot_segments_are_resolved() {
        assert_eq!(
            norm("/api/icalink/../workflows/x").unwrap(),
            "/api/workflows/x"
        );
        assert_eq!(norm("/api/./icalink/x").unwrap(), "/api/icalink/x");
        assert_eq!(norm("/api/icalink/x/..").unwrap(), "/api/icalink/");
        assert_eq!(norm("/api/icalink/x/.").unwrap(), "/api/icalink/x/");
        assert_eq!(norm("/a/..").unwrap(), "/");
    }

    #[test]
    fn encoded_dots_are_dots() {
        assert_eq!(
            norm("/api/icalink/%2e%2e/workflows").unwrap(),
            "/api/workflows"
        );
        assert_eq!(
            norm("/api/icalink/%2E%2e/workflows").unwrap(),
            "/api/workflows"
        );
        assert_eq!(
            norm("/api/icalink/.%2e/workflows").unwrap(),
            "/api/workflows"
        );
        assert_eq!(norm("/api/icalink/%2e/x").unwrap(), "/api/icalink/x");
    }

    #[test]
    fn climbing_above_root_is_refused() {
        assert_eq!(norm("/.."), Err(PathError::AboveRoot));
        assert_eq!(norm("/api/../../etc/passwd"), Err(PathError::AboveRoot));
        assert_eq!(norm("/%2e%2e/x"), Err(PathError::AboveRoot));
    }

    #[test]
    fn traversal_behind_encoded_slashes_is_refused() {
        assert_eq!(
            norm("/api/icalink/..%2f..%2fadmin"),
            Err(PathError::EncodedTraversal)
        );
        assert_eq!(
            norm("/api/icalink/%2e%2e%2Fadmin"),
            Err(PathError::EncodedTraversal)
        );
        assert_eq!(
            norm("/api/icalink/..%5cadmin"),
            Err(PathError::EncodedTraversal)
        );
        assert_eq!(
            norm("/api/icalink/..\\admin"),
            Err(PathError::EncodedTraversal)
        );
        // An encoded slash without a dot-dot is just data.
        assert_eq!(norm("/api/icalink/a%2fb").unwrap(), "/api/icalink/a%2fb");
    }
}
