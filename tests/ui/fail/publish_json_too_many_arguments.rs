fn main() {
    let _ = sse::publish_json!("yo", "yo", &1, "format args are not for JSON");
}
