//! The WIT doc comments of a component's exports, for `runner inspect`.
//!
//! A component keeps doc comments only in a `package-docs` custom section
//! (wit-component's format), keyed by the world the component decodes to.
//! The usual toolchains (wasm-component-ld for Rust, componentize-py,
//! componentize-js) do not write one into the components they build, so
//! most components carry no docs and this finds none.

use std::collections::BTreeMap;

use wit_parser::decoding::{DecodedWasm, decode};
use wit_parser::{WorldItem, WorldKey};

/// The name of the custom section that holds a package's doc comments.
pub const DOCS_SECTION: &str = "package-docs";

/// The doc comment of each export that has one, by task name as the
/// sandbox names tasks (`func`, or `iface.func` inside an exported
/// interface). Empty when the component carries no docs or cannot be
/// decoded as WIT (the sandbox reports real load errors).
pub fn export_docs(component: &[u8]) -> BTreeMap<String, String> {
    let mut docs = BTreeMap::new();
    if !has_docs_section(component) {
        return docs;
    }
    let Ok(DecodedWasm::Component(resolve, world)) = decode(component) else {
        return docs;
    };
    for (key, item) in &resolve.worlds[world].exports {
        match item {
            WorldItem::Function(f) => {
                if let Some(text) = &f.docs.contents {
                    docs.insert(f.name.clone(), text.trim().to_owned());
                }
            }
            WorldItem::Interface { id, .. } => {
                let iface = &resolve.interfaces[*id];
                let prefix = match key {
                    WorldKey::Name(name) => name.clone(),
                    WorldKey::Interface(_) => match &iface.name {
                        Some(name) => name.clone(),
                        None => continue,
                    },
                };
                for (name, f) in &iface.functions {
                    if let Some(text) = &f.docs.contents {
                        docs.insert(format!("{prefix}.{name}"), text.trim().to_owned());
                    }
                }
            }
            WorldItem::Type { .. } => {}
        }
    }
    docs
}

/// Whether the component has a top-level `package-docs` section: without
/// one there is nothing to find, and decoding the whole component as WIT
/// would be wasted.
fn has_docs_section(component: &[u8]) -> bool {
    let mut depth = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(component) {
        match payload {
            Ok(wasmparser::Payload::CustomSection(s)) if depth == 0 => {
                if s.name() == DOCS_SECTION {
                    return true;
                }
            }
            Ok(
                wasmparser::Payload::ModuleSection { .. }
                | wasmparser::Payload::ComponentSection { .. },
            ) => depth += 1,
            Ok(wasmparser::Payload::End(_)) => depth = depth.saturating_sub(1),
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_component_without_a_docs_section_has_no_docs() {
        // The smallest component: magic, version 0x0d, layer 1.
        let empty = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
        assert!(!has_docs_section(&empty));
        assert!(export_docs(&empty).is_empty());
    }

    #[test]
    fn a_top_level_docs_section_is_found_and_bytes_that_are_not_wasm_have_none() {
        let mut with = vec![0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
        let name = DOCS_SECTION.as_bytes();
        let body_len = 1 + name.len() + 2;
        with.extend([
            0,
            u8::try_from(body_len).unwrap(),
            u8::try_from(name.len()).unwrap(),
        ]);
        with.extend(name);
        with.extend(b"{}");
        assert!(has_docs_section(&with));
        assert!(!has_docs_section(b"not wasm at all"));
    }
}
