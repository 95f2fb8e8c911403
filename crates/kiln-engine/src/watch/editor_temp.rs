//! Editor temporaries and backups: files a save writes on its way that are never a change.

/// Whether a file name is an editor's temporary or backup file.
pub fn is_editor_temp(name: &str) -> bool {
    name == "4913"
        || name.ends_with(".swp")
        || name.ends_with(".swx")
        || name.ends_with(".swo")
        || name.ends_with('~')
        || (name.starts_with('#') && name.ends_with('#'))
        || name.starts_with(".#")
        || name.ends_with("___jb_tmp___")
        || name.ends_with("___jb_old___")
}
