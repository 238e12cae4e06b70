fn main() -> Result<(), sse::PublishError> {
    let id = 17;
    let group = format!("answer.{id}");
    let name = sse::GroupName::new("answer.18").unwrap();
    sse::finish!("answer.16")?;
    sse::finish!(group)?;
    sse::finish!(name)?;
    sse::finish!(format!("answer.{}", id + 2),)?;
    sse::finish!(&String::from("answer.20"))?;
    Ok(())
}
