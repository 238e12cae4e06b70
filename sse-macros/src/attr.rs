//! The arguments of `#[sse::subscribe(...)]`.

use syn::{
    ext::IdentExt,
    parse::{Parse, ParseStream},
    Ident, LitInt, LitStr, Path, Token,
};

use crate::names;

/// `#[sse::subscribe]`, `#[sse::subscribe("group")]`, each optionally followed by options.
pub(crate) struct Args {
    /// The fixed group; `None` is the bare form, where the handler picks its group.
    pub(crate) group: Option<LitStr>,
    /// Where the `sse` crate is, for users who renamed it (`crate = "my_sse"`).
    pub(crate) krate: Option<Path>,
    /// How many of each group's last events a client without `Last-Event-ID` gets first
    /// (`rewind = 1`).
    pub(crate) rewind: Option<LitInt>,
}

const OPTIONS: &str = "`rewind = N`, `crate = \"path\"`";

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut args = Args {
            group: None,
            krate: None,
            rewind: None,
        };
        if input.peek(LitStr) {
            let group: LitStr = input.parse()?;
            names::check_group(&group)?;
            args.group = Some(group);
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        while !input.is_empty() {
            if !(input.peek(Ident::peek_any) && input.peek2(Token![=])) {
                return Err(input.error(format!(
                    "expected a group name as a string literal, like `#[sse::subscribe(\"yo\")]`, \
                     or an option: {OPTIONS}"
                )));
            }
            let key = Ident::parse_any(input)?;
            input.parse::<Token![=]>()?;
            match key.to_string().as_str() {
                "crate" if args.krate.is_none() => {
                    args.krate = Some(input.parse::<LitStr>()?.parse()?);
                }
                "rewind" if args.rewind.is_none() => {
                    let count = |span| {
                        syn::Error::new(span, "`rewind` takes a count of events, like `rewind = 1`")
                    };
                    let events: LitInt = input.parse().map_err(|e| count(e.span()))?;
                    // Checked here, so a bad count is an error on the user's literal.
                    events
                        .base10_parse::<u32>()
                        .map_err(|_| count(events.span()))?;
                    args.rewind = Some(events);
                }
                "crate" | "rewind" => {
                    return Err(syn::Error::new(key.span(), format!("`{key}` given twice")))
                }
                other => {
                    return Err(syn::Error::new(
                        key.span(),
                        format!("unknown option `{other}`; the options are: {OPTIONS}"),
                    ))
                }
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(args)
    }
}
