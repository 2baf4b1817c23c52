//! Which build this is: stamped at compile time by `build.rs` (the image's `VERSION` build
//! argument and the git revision), so that `--version`, the startup line, `/status` and
//! `gateway_build_info` all name the same build.

/// The version the binary was built as (the image tag), else the crate's version.
pub const VERSION: &str = env!("STRATIX_BUILD_VERSION");

/// The git revision it was built from, `unknown` when the build had none.
pub const REVISION: &str = env!("STRATIX_BUILD_REVISION");

/// `VERSION (REVISION)`, as `--version` prints it.
pub const LONG: &str = concat!(
    env!("STRATIX_BUILD_VERSION"),
    " (",
    env!("STRATIX_BUILD_REVISION"),
    ")"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_is_named() {
        assert!(!VERSION.is_empty());
        assert!(!REVISION.is_empty());
        assert_eq!(LONG, format!("{VERSION} ({REVISION})"));
    }
}
