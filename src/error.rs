//! The error vocabulary every layer shares: the boxed error bodies and services carry, and
//! how an error is written with its whole chain of causes.

use std::error::Error;
use std::fmt;

/// The error type of streamed bodies and of anything that crosses a crate boundary (hyper,
/// tower) without a type of its own.
pub type BoxError = Box<dyn Error + Send + Sync>;

/// Displays an error with all its sources: `connecting to 10.0.1.5:3000 failed: ... refused`.
#[derive(Debug)]
pub struct ErrorChain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cur = self.0.source();
        while let Some(e) = cur {
            write!(f, ": {e}")?;
            cur = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn chain_lists_every_source() {
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(ErrorChain(&e).to_string(), "outer: inner");
    }
}
