fn main() {
    let _ = sse::publish!("yo");
    let _ = sse::publish!();
}
