fn main() {
    let _ = sse::finish!("answer 17");
}
