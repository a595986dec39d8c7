//! Sentence-probability diagnostics, above the engine and below the LSP layer: which text of a
//! document is checked, and what the model's findings mean in the document.

pub mod checker;
pub mod dictionary;
pub mod ignore;
pub mod prose;
