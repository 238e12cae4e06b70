fn main() {
    let _ = sse::publish_json!("yo", "yo\n", &1);
}
