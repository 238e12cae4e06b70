fn from_sync_code(from: &str, to: &str) -> Result<sse::EventId, sse::PublishError> {
    sse::publish!("yo", "yo", "yo from a to b")?;
    sse::publish!("yo", "yo", "yo from {} to {}", from, to)?;
    sse::publish!("yo", "yo", "yo from {from} to {to}")?;
    sse::publish!("yo", "a message event")?;
    let group = sse::GroupName::new(format!("yo.{to}")).unwrap();
    sse::publish!(&group, "yo", "typed group")?;
    sse::publish!(group.as_str(), String::from("yo"), String::from("owned data"))?;
    let event = sse::EventName::new("yo").unwrap();
    sse::publish!(&group, &event, "typed event")?;
    sse::publish!(group, event, 42)
}

async fn from_async_code() -> Result<(), sse::PublishError> {
    sse::publish!("yo", "yo", "from async, no .await needed")?;
    Ok(())
}

fn main() {
    let _ = from_sync_code("a", "b");
    let _ = from_async_code();
}
