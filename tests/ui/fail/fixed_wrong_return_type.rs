#[sse::subscribe("yo")]
async fn yo_events() -> String {
    "yo".to_owned()
}

fn main() {}
