//! The arguments of `#[sse::subscribe(...)]`.

use syn::{
    ext::IdentExt,
    parse::{Parse, ParseStream},
    Ident, LitStr, Path, Token,
};

use crate::names;

/// `#[sse::subscribe]`, `#[sse::subscribe("group")]`, each optionally followed by options.
pub(crate) struct Args {
    /// The fixed group; `None` is the bare form, where the handler picks its group.
    pub(crate) group: Option<LitStr>,
    /// Where the `sse` crate is, for users who renamed it (`crate = "my_sse"`).
    pub(crate) krate: Option<Path>,
}

const OPTIONS: &str = "`crate = \"path\"`";

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut args = Args {
            group: None,
            krate: None,
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
                "crate" => return Err(syn::Error::new(key.span(), "`crate` given twice")),
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
