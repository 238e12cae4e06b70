fn main() {
    let _ = sse::publish!("yo yo", "yo", "data");
}
