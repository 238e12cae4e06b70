use axum::response::Response;

#[sse::subscribe]
async fn yo_events() -> Result<String, Response> {
    Ok("yo".to_owned())
}

fn main() {}
