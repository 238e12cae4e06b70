//! Compile-time behaviour of the macros: what must compile, and what must not, with the error
//! pointing at the offending tokens.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("ui/pass/*.rs");
    cases.compile_fail("ui/fail/*.rs");
}
