//! `[profile.NAME]`: a table deep-merged over the rest of the file when selected.

use toml::de::{DeTable, DeValue};

/// Merges `overlay` into `base`: tables merge key by key, anything else replaces.
pub(crate) fn deep_merge<'i>(base: &mut DeTable<'i>, overlay: &DeTable<'i>) {
    for (key, value) in overlay.iter() {
        let existing = base.get_mut(key.get_ref().as_ref());
        match (existing, value.get_ref()) {
            (Some(existing), DeValue::Table(over)) if existing.get_ref().is_table() => {
                if let DeValue::Table(base_table) = existing.get_mut() {
                    deep_merge(base_table, over);
                }
            }
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_nested_tables_and_replaces_scalars() {
        let src = "[target.a]\ncmd = \"x\"\nimage = { stage = \"production\", name = \"n\" }\n\
                   [profile.debug]\ntarget.a.image.stage = \"debug\"\n";
        let mut doc = DeTable::parse(src).expect("valid toml").into_inner();
        let profile = doc.remove("profile").expect("has profile");
        let debug = profile.get_ref().get("debug").expect("has debug");
        let DeValue::Table(debug) = debug.get_ref() else { panic!("not a table") };
        deep_merge(&mut doc, debug);
        let image = doc["target"].get_ref().get("a").and_then(|a| a.get_ref().get("image")).expect("image");
        assert_eq!(image.get_ref().get("stage").and_then(|s| s.get_ref().as_str()), Some("debug"));
        assert_eq!(image.get_ref().get("name").and_then(|s| s.get_ref().as_str()), Some("n"));
    }
}
