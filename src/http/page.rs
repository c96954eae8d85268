//! The sample peers, embedded in the binary: no build step, no files to ship.
//! Plain HTML, CSS and ES modules, served under a Content-Security-Policy that
//! allows nothing from elsewhere (no CDN, no inline script or style).

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

/// Same-origin only; `data:` for the empty favicon. `connect-src 'self'`
/// covers fetch and the signaling WebSocket on this host.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   media-src 'self' blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// Each file of the page: (path, content type, text).
const FILES: &[(&str, &str, &str)] = &[
    ("/", "text/html; charset=utf-8", include_str!("page/index.html")),
    ("/style.css", "text/css; charset=utf-8", include_str!("page/style.css")),
    ("/app.js", "text/javascript; charset=utf-8", include_str!("page/app.js")),
    (
        "/tester.js",
        "text/javascript; charset=utf-8",
        include_str!("page/tester.js"),
    ),
    (
        "/stats.js",
        "text/javascript; charset=utf-8",
        include_str!("page/stats.js"),
    ),
];

/// `GET` routes for every file of the page.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    FILES.iter().fold(Router::new(), |router, &(path, content_type, text)| {
        router.route(
            path,
            get(move || async move {
                (
                    [
                        (header::CONTENT_TYPE, content_type),
                        (header::CONTENT_SECURITY_POLICY, CSP),
                        (header::CACHE_CONTROL, "no-cache"),
                    ],
                    text,
                )
                    .into_response()
            }),
        )
    })
}
