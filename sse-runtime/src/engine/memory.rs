//! The default engine: this process is the whole deployment.

use super::Engine;

/// Each group numbers its events with its own sequence and keeps its history in its ring here;
/// presence is this process's, and a close has nobody else to tell: every answer of
/// [`Engine`]'s defaults.
pub(crate) struct Memory;

impl Engine for Memory {}
