#[derive(serde::Serialize)]
struct Yo<'a> {
    id: u64,
    from: &'a str,
    to: &'a str,
}

fn publish_values(to: &str) -> Result<sse::EventId, sse::PublishError> {
    let yo = Yo { id: 1, from: "alice", to };
    sse::publish_json!("yo", "yo", &yo)?;
    sse::publish_json!("yo", &yo)?;
    sse::publish_json!(format!("yo.{to}"), String::from("yo"), &yo)?;
    sse::publish_json!("yo", "list", &[1, 2, 3][..])?;
    sse::publish_json!("yo", "text", "a str is fine")
}

fn main() {
    let _ = publish_values("bob");
}
