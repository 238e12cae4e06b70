fn main() {
    let format = String::from("{}");
    let _ = sse::publish!("yo", "yo", format, 1);
}
