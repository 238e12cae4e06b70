//! A handler's inner attributes stay inside it and take effect there: this file denies
//! warnings, and each handler allows the one it would otherwise raise.
#![deny(warnings)]

#[sse::subscribe("yo")]
async fn fixed() {
    #![allow(unused_variables)]
    let unused = 1;
}

#[sse::subscribe]
async fn bare() -> Result<sse::GroupName, axum::http::StatusCode> {
    #![allow(unused_variables)]
    //! Inner doc comments are inner attributes too.
    let unused = 1;
    sse::GroupName::new("yo").map_err(|_| axum::http::StatusCode::BAD_REQUEST)
}

fn main() {
    let _app: axum::Router = axum::Router::new()
        .route("/fixed", axum::routing::get(fixed))
        .route("/bare", axum::routing::get(bare));
}
