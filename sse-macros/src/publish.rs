//! `sse::publish!`: checks literal names at compile time and calls the runtime.
//!
//! Input: `$crate, group, [event,] data | format, args..`, where `$crate` is the path of the `sse`
//! crate as the calling `macro_rules!` knows it.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{quote, ToTokens};
use syn::{
    parse::{ParseStream, Parser},
    punctuated::Punctuated,
    Expr, ExprLit, Lit, LitStr, Token,
};

use crate::names;

const USAGE: &str = "expected `sse::publish!(group, data)`, `sse::publish!(group, event, data)` \
                     or `sse::publish!(group, event, \"format {}\", args..)`";

const JSON_USAGE: &str =
    "expected `sse::publish_json!(group, &value)` or `sse::publish_json!(group, event, &value)`";

pub(crate) fn expand(input: TokenStream) -> TokenStream {
    parse
        .parse2(input)
        .unwrap_or_else(syn::Error::into_compile_error)
}

pub(crate) fn expand_json(input: TokenStream) -> TokenStream {
    parse_json
        .parse2(input)
        .unwrap_or_else(syn::Error::into_compile_error)
}

/// The path to `$crate::__private`, the span of the arguments (for "too few"), the arguments.
fn crate_and_args(input: ParseStream<'_>) -> syn::Result<(TokenStream, Span, Vec<Expr>)> {
    let krate = crate_path(input)?;
    let call_site = input.span();
    let args = Punctuated::<Expr, Token![,]>::parse_terminated(input)?
        .into_iter()
        .collect();
    Ok((quote!(#krate::__private), call_site, args))
}

fn parse_json(input: ParseStream<'_>) -> syn::Result<TokenStream> {
    let (private, call_site, args) = crate_and_args(input)?;
    match args.as_slice() {
        [group, value] => {
            let group = name(group, names::check_group)?;
            Ok(quote!(#private::publish_json_message(#group, #value)))
        }
        [group, event, value] => {
            let group = name(group, names::check_group)?;
            let event = event_name(event, |_| {
                "`sse::publish_json!` sends its value as JSON and takes no format string; \
                 this place is the event name's: `sse::publish_json!(group, \"event\", &value)`"
                    .to_owned()
            })?;
            Ok(quote!(#private::publish_json(#group, #event, #value)))
        }
        [] => Err(syn::Error::new(call_site, JSON_USAGE)),
        [only] => Err(syn::Error::new_spanned(
            only,
            format!("missing the value to send: {JSON_USAGE}"),
        )),
        [_, _, _, extra, ..] => Err(syn::Error::new_spanned(
            extra,
            format!("too many arguments: {JSON_USAGE}"),
        )),
    }
}

fn parse(input: ParseStream<'_>) -> syn::Result<TokenStream> {
    let (private, call_site, args) = crate_and_args(input)?;
    match args.as_slice() {
        [group, data] => {
            let group = name(group, names::check_group)?;
            let data = data_tokens(&private, data, &[])?;
            Ok(quote!(#private::publish_message(#group, #data)))
        }
        [group, event, data, format_args @ ..] => {
            let group = name(group, names::check_group)?;
            let event = event_name(event, |format| {
                format!(
                    "the event name comes before the format string: \
                     `sse::publish!(group, \"event\", {}, ..)`",
                    format.token()
                )
            })?;
            let data = data_tokens(&private, data, format_args)?;
            Ok(quote!(#private::publish(#group, #event, #data)))
        }
        [] => Err(syn::Error::new(call_site, USAGE)),
        [only] => Err(syn::Error::new_spanned(
            only,
            format!("missing the data to send: {USAGE}"),
        )),
    }
}

/// The tokens up to the first comma: `$crate` as the `macro_rules!` passed it.
fn crate_path(input: ParseStream<'_>) -> syn::Result<TokenStream> {
    let mut path = TokenStream::new();
    while !input.peek(Token![,]) {
        path.extend([input.parse::<TokenTree>()?]);
    }
    input.parse::<Token![,]>()?;
    Ok(path)
}

fn string_literal(expr: &Expr) -> Option<&LitStr> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => Some(lit),
        _ => None,
    }
}

/// A literal name is checked now; any other expression is checked at run time.
fn name(expr: &Expr, check: fn(&LitStr) -> syn::Result<()>) -> syn::Result<TokenStream> {
    if let Some(lit) = string_literal(expr) {
        check(lit)?;
    }
    Ok(expr.to_token_stream())
}

/// An event name, checked like [`name`], that is not a format string in the wrong place:
/// `publish!("yo", "x = {}", n)` reads as group, format, argument, but would compile into an
/// event named `x = {}` whose data is `n`. A literal name with a brace is taken for that mistake,
/// which `explain`s; a name with braces can still come from a value.
fn event_name(expr: &Expr, explain: impl FnOnce(&LitStr) -> String) -> syn::Result<TokenStream> {
    match string_literal(expr) {
        Some(lit) if lit.value().contains(['{', '}']) => {
            Err(syn::Error::new(lit.span(), explain(lit)))
        }
        _ => name(expr, names::check_event),
    }
}

/// A literal is a format string (like `println!`), so `{name}` captures work; anything else
/// is data as it is, and then takes no format arguments.
fn data_tokens(private: &TokenStream, data: &Expr, args: &[Expr]) -> syn::Result<TokenStream> {
    if let Some(format) = string_literal(data) {
        return Ok(quote!(#private::format_args!(#format #(, #args)*)));
    }
    match args.first() {
        None => Ok(data.to_token_stream()),
        Some(_) => Err(syn::Error::new_spanned(
            data,
            "format arguments follow a string literal: `sse::publish!(group, event, \"{} and {}\", a, b)`",
        )),
    }
}
