//! The override file a compose service's deploy owns: `<project_dir>/opsfleet.<service>.override.yml`
//! with `services: {<service>: {image: "<image>:<version>"}}`, written atomically (a temp
//! file renamed over it); the compose driver passes it as an extra `-f` on every command once
//! it exists, so `up -d` runs the deployed tag. The tag it holds is the previous version of
//! the next deploy.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::random_tag;
use crate::config::ComposeSection;
use crate::modules::service::driven::compose::image_tag;
pub use crate::modules::service::driven::compose::override_file;

/// The override's text: the service's image at `tag` (both JSON-quoted, valid YAML). Pure.
pub fn override_text(service: &str, image: &str, tag: &str) -> String {
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_default();
    format!(
        "# Written by opsfleet's agent (service_deploy); do not edit.\nservices:\n  {}:\n    image: {}\n",
        quote(service),
        quote(&format!("{image}:{tag}"))
    )
}

/// The tag the override file at `path` sets; `None` without one.
pub fn override_tag(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find_map(|l| l.trim().strip_prefix("image:"))?;
    let image: String = serde_json::from_str(line.trim()).ok()?;
    Some(image_tag(&image))
}

/// Writes the override for `image:tag` (temp file beside it, renamed over it).
pub fn write_override(
    section: &ComposeSection,
    image: &str,
    tag: &str,
) -> std::io::Result<PathBuf> {
    let path = override_file(section);
    let temp = section.project_dir.join(format!(
        ".opsfleet.{}.{}.tmp",
        section.service,
        random_tag()
    ));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        f.write_all(override_text(&section.service, image, tag).as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&temp, &path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written.map(|()| path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_override_names_the_tag_and_is_read_back() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let section = ComposeSection {
            project_dir: tmp.path().to_owned(),
            file: None,
            project: None,
            service: "web".to_owned(),
            command: None,
        };
        assert_eq!(override_tag(&override_file(&section)), None);
        let path = write_override(&section, "registry.local:5000/app", "1.4.2").expect("write");
        assert_eq!(path, tmp.path().join("opsfleet.web.override.yml"));
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(
            text.contains("services:\n  \"web\":\n    image: \"registry.local:5000/app:1.4.2\""),
            "{text}"
        );
        assert_eq!(override_tag(&path).as_deref(), Some("1.4.2"));
        write_override(&section, "registry.local:5000/app", "1.5").expect("write");
        assert_eq!(override_tag(&path).as_deref(), Some("1.5"));
    }
}
