//! Compile-time checks of literal names, with the runtime's own rules.

use syn::LitStr;

/// Checks a literal group name; the error points at the literal.
pub(crate) fn check_group(lit: &LitStr) -> syn::Result<()> {
    sse_names::check_group(&lit.value()).map_err(|e| syn::Error::new(lit.span(), e))
}

/// Checks a literal event name; the error points at the literal.
pub(crate) fn check_event(lit: &LitStr) -> syn::Result<()> {
    sse_names::check_event(&lit.value()).map_err(|e| syn::Error::new(lit.span(), e))
}
