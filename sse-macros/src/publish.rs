//! `sse::publish!`: checks literal names at compile time and calls the runtime.
//!
//! Input: `$crate, group, [event,] data | format, args..`, where `$crate` is the path of the `sse`
//! crate as the calling `macro_rules!` knows it.

use proc_macro2::{TokenStream, TokenTree};
use quote::{quote, ToTokens};
use syn::{
    parse::{ParseStream, Parser},
    punctuated::Punctuated,
    Expr, ExprLit, Lit, LitStr, Token,
};

use crate::names;

const USAGE: &str = "expected `sse::publish!(group, data)`, `sse::publish!(group, event, data)` \
                     or `sse::publish!(group, event, \"format {}\", args..)`";

pub(crate) fn expand(input: TokenStream) -> TokenStream {
    parse
        .parse2(input)
        .unwrap_or_else(syn::Error::into_compile_error)
}

fn parse(input: ParseStream<'_>) -> syn::Result<TokenStream> {
    let krate = crate_path(input)?;
    let call_site = input.span();
    let args: Vec<Expr> = Punctuated::<Expr, Token![,]>::parse_terminated(input)?
        .into_iter()
        .collect();
    let private = quote!(#krate::__private);
    match args.as_slice() {
        [group, data] => {
            let group = name(group, names::check_group)?;
            let data = data_tokens(&private, data, &[])?;
            Ok(quote!(#private::publish_message(#group, #data)))
        }
        [group, event, data, format_args @ ..] => {
            let group = name(group, names::check_group)?;
            let event = name(event, names::check_event)?;
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
