//! The web pages, compiled into the binary: no frontend build step, no
//! external network. The dashboard and the backoffice are plain HTML and
//! JavaScript over the JSON API; charts use the vendored uPlot (MIT).

use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};

macro_rules! asset {
    ($name:ident, $path:literal, $mime:literal) => {
        pub(crate) async fn $name() -> Response {
            (
                [(header::CONTENT_TYPE, $mime), (header::CACHE_CONTROL, "no-cache")],
                include_str!(concat!("../assets/", $path)),
            )
                .into_response()
        }
    };
}

asset!(dashboard, "dashboard.html", "text/html; charset=utf-8");
asset!(backoffice, "backoffice.html", "text/html; charset=utf-8");
asset!(common_js, "common.js", "text/javascript; charset=utf-8");
asset!(dashboard_js, "dashboard.js", "text/javascript; charset=utf-8");
asset!(fleet_js, "fleet.js", "text/javascript; charset=utf-8");
asset!(notify_js, "notify.js", "text/javascript; charset=utf-8");
asset!(backoffice_js, "backoffice.js", "text/javascript; charset=utf-8");
asset!(style_css, "style.css", "text/css; charset=utf-8");
asset!(uplot_js, "vendor/uPlot.iife.min.js", "text/javascript; charset=utf-8");
asset!(uplot_css, "vendor/uPlot.min.css", "text/css; charset=utf-8");

pub(crate) async fn root() -> Redirect {
    Redirect::to("/dashboard")
}
