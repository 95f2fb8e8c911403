//! The dashboard's files, embedded in the binary (no network access, nothing to install):
//! `GET /` is `assets/dashboard/index.html`, `GET /assets/app.js` and `/assets/style.css`
//! the script and style sheet it loads. Each is answered with its content type,
//! `Cache-Control: no-cache` (a browser revalidates, so a new kiln's page is never mixed
//! with an old script) and headers that keep the page to itself: a Content-Security-Policy
//! that allows scripts, connections and images from its own origin only (styles may also
//! be inline attributes, which an SVG drawn by script uses), no framing by another page,
//! no referrer, no content sniffing.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// One embedded file.
pub struct Asset {
    pub content_type: &'static str,
    pub body: &'static str,
}

const INDEX: Asset =
    Asset { content_type: "text/html; charset=utf-8", body: include_str!("../assets/dashboard/index.html") };
const SCRIPT: Asset =
    Asset { content_type: "text/javascript; charset=utf-8", body: include_str!("../assets/dashboard/app.js") };
const STYLE: Asset =
    Asset { content_type: "text/css; charset=utf-8", body: include_str!("../assets/dashboard/style.css") };

/// What the page may load and who may frame it.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

impl Asset {
    /// The file served at `path`, if any.
    pub fn at(path: &str) -> Option<&'static Asset> {
        match path {
            "/" => Some(&INDEX),
            "/assets/app.js" => Some(&SCRIPT),
            "/assets/style.css" => Some(&STYLE),
            _ => None,
        }
    }

    pub fn response(&self) -> Response {
        page(StatusCode::OK, self.content_type, self.body)
    }
}

/// Whether a request for `path` is the browser's (the page or its files): refusals are
/// then a page to read rather than JSON.
pub fn is_page_path(path: &str) -> bool {
    path == "/" || path.starts_with("/assets/")
}

fn page(code: StatusCode, content_type: &'static str, body: impl Into<String>) -> Response {
    let mut response = (code, body.into()).into_response();
    page_headers(response.headers_mut(), content_type);
    response
}

fn page_headers(headers: &mut HeaderMap, content_type: &'static str) {
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
}

/// The 401 page of a browser that has no token, or a wrong one (`stale`: a link of an
/// earlier `kiln up`, whose token has changed since).
pub fn unauthorized_page(stale: bool) -> Response {
    let why = if stale {
        "The token in this link is not the running session's: it may be of an earlier <code>kiln up</code>."
    } else {
        "This page needs the token of the running <code>kiln up</code>."
    };
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>kiln: not signed in</title></head>\n\
         <body><h1>kiln: not signed in</h1>\n<p>{why}</p>\n\
         <p>Open the URL <code>kiln dashboard</code> prints (run it in the project's directory), \
         or the <code>dashboard:</code> line <code>kiln up</code> printed when it started.</p>\n</body></html>\n"
    );
    let mut response = page(StatusCode::UNAUTHORIZED, "text/html; charset=utf-8", body);
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_files_are_found_with_their_types() {
        assert!(Asset::at("/").is_some_and(|a| a.content_type.starts_with("text/html") && a.body.contains("<html")));
        assert!(Asset::at("/assets/app.js").is_some_and(|a| a.content_type.starts_with("text/javascript")));
        assert!(Asset::at("/assets/style.css").is_some_and(|a| a.content_type.starts_with("text/css")));
        assert!(Asset::at("/assets/../kiln.toml").is_none());
        assert!(Asset::at("/api/status").is_none());
    }
}
