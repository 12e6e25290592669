//! `GET /dashboard` and its assets: a static page, embedded at build time, that draws the live
//! feed (`GET /ai/stream`). The files live in `assets/dashboard/` (uPlot vendored under
//! `vendor/`, refreshed by `vendor.sh`), so the binary serves them with no npm and no disk.
//!
//! The page and its files are public: they hold no data. Everything shown arrives over the
//! authenticated WebSocket and admin API, and is drawn with `textContent` only. The Content
//! Security Policy allows scripts and styles from this origin alone (no inline script), so a
//! hostile model name or alert text that slipped into markup still could not run.

use std::sync::LazyLock;

use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::ApiError;

/// One embedded file: its name under `/dashboard/`, its media type and its bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// The page itself, at `/dashboard`.
const PAGE: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    body: include_bytes!("../../assets/dashboard/index.html"),
};

/// The page's files, at `/dashboard/{name}`.
const FILES: [Asset; 5] = [
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/dashboard/app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../assets/dashboard/app.css"),
    },
    Asset {
        name: "uplot.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/dashboard/vendor/uPlot.iife.min.js"),
    },
    Asset {
        name: "uplot.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../assets/dashboard/vendor/uPlot.min.css"),
    },
    Asset {
        name: "uplot-license.txt",
        content_type: "text/plain; charset=utf-8",
        body: include_bytes!("../../assets/dashboard/vendor/LICENSE"),
    },
];

/// Scripts and styles from this origin only; the WebSocket and `fetch` to this origin only
/// (`'self'` covers `ws:`/`wss:` to the same host); no frames, plugins, or foreign forms.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
                   form-action 'self'; frame-ancestors 'none'";

/// Revalidate every time (the URLs carry no version): a 304 costs one round trip, and a new
/// binary's page is never mixed with an old binary's script.
const CACHE: &str = "no-cache";

/// Each asset's strong ETag (a digest of its bytes), computed once.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    std::iter::once(&PAGE)
        .chain(FILES.iter())
        .map(|a| etag(a.body))
        .collect()
});

fn etag(body: &[u8]) -> HeaderValue {
    let digest = Sha256::digest(body);
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    HeaderValue::from_str(&format!("\"{hex}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// Whether admission lets anyone `GET` `path`: the page and any one name beside it (a file, or
/// a 404 for every caller alike), except `/dashboard/session`, which is not a file.
pub fn is_public_path(path: &str) -> bool {
    path == "/dashboard"
        || path
            .strip_prefix("/dashboard/")
            .is_some_and(|name| !name.is_empty() && !name.contains('/') && name != "session")
}

/// `GET /dashboard`: the page.
pub async fn page(headers: HeaderMap) -> Response {
    serve(0, &PAGE, &headers)
}

/// `GET /dashboard/{asset}`: the page's script, styles, and uPlot with its licence.
pub async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    match FILES.iter().position(|a| a.name == name) {
        Some(i) => serve(i + 1, &FILES[i], &headers),
        None => ApiError::not_found(&format!("/dashboard/{name}")).into_response(),
    }
}

fn serve(index: usize, asset: &Asset, request: &HeaderMap) -> Response {
    let tag = ETAGS.get(index).cloned();
    let fresh = tag.as_ref().is_some_and(|t| {
        request
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|v| v.trim() == "*" || v.trim().trim_start_matches("W/") == t)
    });
    let (status, body) = if fresh {
        (StatusCode::NOT_MODIFIED, Body::empty())
    } else {
        (StatusCode::OK, Body::from(asset.body))
    };
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if let Some(t) = tag {
        h.insert(header::ETAG, t);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(a: &Asset) -> &str {
        std::str::from_utf8(a.body).expect("utf-8")
    }

    #[test]
    fn the_page_loads_only_its_own_files_and_no_inline_script() {
        let html = text(&PAGE);
        for a in &FILES[..4] {
            assert!(
                html.contains(&format!("\"/dashboard/{}\"", a.name)),
                "index.html does not load {}",
                a.name
            );
        }
        // Every <script> has a src (the CSP would block inline code anyway: keep them aligned).
        for (i, _) in html.match_indices("<script") {
            let tag = &html[i..i + html[i..].find('>').expect("closed tag")];
            assert!(tag.contains(" src=\"/dashboard/"), "inline script: {tag}");
        }
        assert!(!html.contains(" style=\""), "inline style attribute");
        assert!(!html.contains("<style"), "inline style element");
    }

    #[test]
    fn the_script_writes_text_never_markup() {
        let js = text(&FILES[0]);
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!js.contains(banned), "app.js uses {banned}");
        }
        assert!(!js.contains("localStorage") && !js.contains("sessionStorage"));
    }

    #[test]
    fn public_paths_are_the_page_and_single_names_beside_it() {
        assert!(is_public_path("/dashboard"));
        assert!(is_public_path("/dashboard/app.js"));
        assert!(is_public_path("/dashboard/uplot-license.txt"));
        assert!(
            is_public_path("/dashboard/no-such-file.js"),
            "a 404 for everyone"
        );
        assert!(!is_public_path("/dashboard/session"));
        assert!(!is_public_path("/dashboard/../admin/keys"));
        assert!(!is_public_path("/dashboardx"));
        assert!(!is_public_path("/dashboard/"));
    }

    #[test]
    fn a_matching_etag_is_a_304_and_others_get_the_body() {
        let tag = ETAGS[1].clone();
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, tag.clone());
        let r = serve(1, &FILES[0], &h);
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(r.headers()[header::ETAG], tag);
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        let r = serve(1, &FILES[0], &h);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert!(
            r.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .is_ok_and(|c| c.contains("script-src 'self'") && !c.contains("unsafe"))
        );
    }
}
