fn main() {
    let _ = sse::publish!("yo", "yo\n", "data");
}
