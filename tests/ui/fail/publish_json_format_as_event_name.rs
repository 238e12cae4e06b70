fn main() {
    let n = 1;
    let _ = sse::publish_json!("yo", "x = {}", &n);
}
