fn main() {
    let n = 1;
    let _ = sse::publish!("yo", "x = {}", n);
    let _ = sse::publish!("yo", "x = {n} and {}", "y", 2);
}
