//! The expansion of `#[sse::subscribe]`.
//!
//! ```text
//! #[sse::subscribe("yo")]
//! async fn yo_events(State(db): State<Db>) -> Result<(), Response> { body }
//! ```
//! becomes, in substance,
//! ```text
//! async fn yo_events(opening: sse::__private::Opening, arg0: State<Db>) -> Response {
//!     let output: Result<(), Response> = async move { let State(db) = arg0; body }.await;
//!     sse::__private::respond_fixed(opening, "yo", 0, FixedOutput::into_outcome(output))
//! }
//! ```
//! where `opening` is the client's `Last-Event-ID` and the hub a layer put in the request
//! (`Hub::layer`), if any, and `0` the `rewind` option.

use proc_macro2::{Literal, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::{spanned::Spanned, AttrStyle, Attribute, FnArg, Item, ItemFn, ReturnType};

use crate::attr::Args;

/// On error the item is emitted unchanged next to the error, so one mistake gives one
/// diagnostic and the rest of the crate still sees the function.
pub(crate) fn subscribe(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(args, item.clone()).unwrap_or_else(|error| {
        let mut out = item;
        out.extend(error.into_compile_error());
        out
    })
}

fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let args: Args = syn::parse2(args)?;
    let handler = match syn::parse2::<Item>(item)? {
        Item::Fn(handler) => handler,
        other => {
            return Err(syn::Error::new_spanned(
                other,
                "#[sse::subscribe] goes on an `async fn` axum handler",
            ))
        }
    };
    check_signature(&handler)?;
    Ok(rewrite(&args, handler))
}

fn check_signature(handler: &ItemFn) -> syn::Result<()> {
    let sig = &handler.sig;
    if sig.asyncness.is_none() {
        return Err(syn::Error::new_spanned(
            sig.fn_token,
            "an #[sse::subscribe] handler must be an `async fn`",
        ));
    }
    if let Some(receiver) = sig.receiver() {
        return Err(syn::Error::new_spanned(
            receiver,
            "an #[sse::subscribe] handler is a free function: it cannot take `self`",
        ));
    }
    if let Some(variadic) = &sig.variadic {
        return Err(syn::Error::new_spanned(
            variadic,
            "an #[sse::subscribe] handler cannot be variadic",
        ));
    }
    Ok(())
}

fn rewrite(args: &Args, handler: ItemFn) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = handler;
    // syn keeps a body's inner attributes (`#![allow(..)]`) with the outer ones; inside the
    // async block they would be illegal, so they open the generated function's body instead.
    let (outer_attrs, inner_attrs): (Vec<Attribute>, Vec<Attribute>) = attrs
        .into_iter()
        .partition(|attr| matches!(attr.style, AttrStyle::Outer));
    let krate = match &args.krate {
        Some(path) => path.to_token_stream(),
        None => quote!(::sse),
    };
    let private = quote!(#krate::__private);

    // Each argument is taken whole by the endpoint, then destructured by the user's pattern.
    let mut params = Vec::new();
    let mut bindings = Vec::new();
    for (i, input) in sig.inputs.iter().enumerate() {
        if let FnArg::Typed(arg) = input {
            let name = format_ident!("__sse_arg{}", i);
            let (attrs, pat, ty) = (&arg.attrs, &arg.pat, &arg.ty);
            params.push(quote!(#(#attrs)* #name: #ty));
            bindings.push(quote!(let #pat: #ty = #name;));
        }
    }

    // Type errors about the return type point at the user's return type.
    let (output, output_span) = match &sig.output {
        ReturnType::Type(_, ty) => (ty.to_token_stream(), ty.span()),
        ReturnType::Default => (quote!(()), sig.ident.span()),
    };
    let opening = quote!(__sse_opening);
    // Checked by the parser: a count that fits.
    let rewind = args
        .rewind
        .as_ref()
        .map_or(0, |n| n.base10_parse().unwrap_or(0));
    let rewind = Literal::usize_unsuffixed(rewind);
    let finish = match &args.group {
        Some(group) => {
            let outcome = spanned_call(output_span, quote!(#private::FixedOutput::into_outcome));
            quote!(#private::respond_fixed(#opening, #group, #rewind, #outcome))
        }
        None => {
            let outcome = spanned_call(output_span, quote!(#private::BareOutput::into_groups));
            quote!(#private::respond_bare(#opening, #rewind, #outcome))
        }
    };

    let ident = &sig.ident;
    let generics = &sig.generics;
    let where_clause = &sig.generics.where_clause;
    quote! {
        #(#outer_attrs)*
        #vis async fn #ident #generics (
            #opening: #private::Opening,
            #(#params),*
        ) -> #private::Response #where_clause {
            #(#inner_attrs)*
            let __sse_handler = async move {
                #(#bindings)*
                #block
            };
            // Gives the block its declared return type, so `?` and `return` infer as in an fn.
            let __sse_handler: #private::Pin<
                &mut (dyn #private::Future<Output = #output> + #private::Send)
            > = #private::pin!(__sse_handler);
            let __sse_output = __sse_handler.await;
            #finish
        }
    }
}

fn spanned_call(span: Span, function: TokenStream) -> TokenStream {
    quote_spanned!(span=> #function(__sse_output))
}
