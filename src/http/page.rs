//! `GET /` (SPEC §12): the live cluster page, one self-contained HTML file (inline CSS and
//! plain JavaScript, `page/index.html`) embedded in the binary at compile time: no build
//! step, nothing fetched from elsewhere, works offline.
//!
//! The page reads every node directly from the browser (their `/health`, `/messages`,
//! `/events`; CORS, see `super`), so what it shows of a node does not depend on the node
//! that served it being up. Its Content-Security-Policy lets it load nothing but itself.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// The page.
pub const PAGE: &str = include_str!("page/index.html");

/// What the page may load: nothing but its own inline script and style; it may connect to
/// any node.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
img-src data:; connect-src *; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `GET /`.
pub async fn page() -> Response {
    let mut r = PAGE.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::PAGE;

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for needle in ["src=\"http", "href=\"http", "@import", "//cdn", "url(http"] {
            assert!(!PAGE.contains(needle), "the page refers to {needle}");
        }
        assert!(PAGE.starts_with("<!doctype html>"));
    }
}
