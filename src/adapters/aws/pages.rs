//! Following AWS `NextToken`s without trusting them: every paginator of the AWS source (Cloud
//! Control, Organizations, `account:ListRegions`) ends on a missing or empty token and fails on
//! a token it was given before or on too many pages, instead of asking forever.

use std::collections::HashSet;

/// A listing that keeps returning `NextToken` past this many pages is broken, not large: Cloud
/// Control pages hold ~25 items, so this is ~250,000 resources of one type in one region;
/// Organizations pages hold 20 accounts, and `ListRegions` has a few dozen regions in all.
pub(crate) const MAX_PAGES: usize = 10_000;

/// Why a paginated listing was given up.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PaginationError {
    #[error("returned a NextToken it had returned before")]
    Loop,
    #[error("still returning NextToken after {pages} pages")]
    Limit { pages: usize },
}

impl PaginationError {
    /// The error code a failed scope reports.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            PaginationError::Loop => "PaginationLoop",
            PaginationError::Limit { .. } => "PaginationLimit",
        }
    }
}

/// The tokens of one listing so far.
#[derive(Debug)]
pub(crate) struct Pages {
    seen: HashSet<String>,
    pages: usize,
    max_pages: usize,
}

impl Pages {
    pub(crate) fn new() -> Pages {
        Pages::with_limit(MAX_PAGES)
    }

    pub(crate) fn with_limit(max_pages: usize) -> Pages {
        Pages {
            seen: HashSet::new(),
            pages: 0,
            max_pages,
        }
    }

    /// Takes the `NextToken` of the page just received: `Ok(None)` when the listing is done,
    /// else the token to ask for the next page with.
    pub(crate) fn follow(
        &mut self,
        token: Option<&str>,
    ) -> Result<Option<String>, PaginationError> {
        self.pages += 1;
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        if !self.seen.insert(token.to_string()) {
            return Err(PaginationError::Loop);
        }
        if self.pages >= self.max_pages {
            return Err(PaginationError::Limit { pages: self.pages });
        }
        Ok(Some(token.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_token_ends_the_listing() {
        assert_eq!(Pages::new().follow(None), Ok(None));
        assert_eq!(Pages::new().follow(Some("")), Ok(None));
    }

    #[test]
    fn a_token_given_before_is_a_loop() {
        let mut pages = Pages::new();
        assert_eq!(pages.follow(Some("a")), Ok(Some("a".into())));
        assert_eq!(pages.follow(Some("b")), Ok(Some("b".into())));
        assert_eq!(pages.follow(Some("a")), Err(PaginationError::Loop));
    }

    #[test]
    fn new_tokens_past_the_page_limit_end_the_listing_with_an_error() {
        let mut pages = Pages::with_limit(3);
        assert_eq!(pages.follow(Some("1")), Ok(Some("1".into())));
        assert_eq!(pages.follow(Some("2")), Ok(Some("2".into())));
        assert_eq!(
            pages.follow(Some("3")),
            Err(PaginationError::Limit { pages: 3 })
        );
        // The last page may still end the listing.
        let mut pages = Pages::with_limit(2);
        assert_eq!(pages.follow(Some("1")), Ok(Some("1".into())));
        assert_eq!(pages.follow(None), Ok(None));
    }
}
