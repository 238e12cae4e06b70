#[sse::subscribe("yo")]
struct YoEvents;

fn main() {}
