//! An output file's previous version, moved out of the way and deleted on a thread of
//! its own, so that replacing a large output does not hold up the replay.
//!
//! Truncating or deleting a file frees its pages, and waits for any of them still being
//! written back to disk. Replaying into the output of a replay that finished moments ago
//! (the common loop: change the graph, replay again) met exactly that: on the 2-core VM
//! (ext4), `File::create` over the last 100,000-row output took up to 5 ms of a 30 ms
//! replay, deleting a 1,000,000-row output (48 MB) 10-18 ms; and ext4 flushes a file
//! that was truncated to zero and rewritten when it is closed (`auto_da_alloc`), about
//! another millisecond at the end.
//!
//! So when the output path names an existing regular file, [`set_aside`] renames it to a
//! hidden name beside it (`.NAME.replaced-PID-N`, an atomic rename in the same directory)
//! and deletes that on a new thread, and the output is created afresh. The deletion is
//! joined when the [`Replaced`] is dropped (the output's writer keeps it until it is
//! finished or dropped), so no hidden file outlives a replay that ends; a process killed
//! in the few milliseconds the deletion takes leaves it behind. Anything else at the path
//! (nothing, a symbolic link, a device such as `/dev/null`, a FIFO) is left to
//! `File::create`, as is a file whose directory refuses the rename.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

/// The deletion of an output's previous version, joined on drop.
#[derive(Default)]
pub struct Replaced {
    deleting: Option<JoinHandle<()>>,
}

impl Drop for Replaced {
    fn drop(&mut self) {
        if let Some(thread) = self.deleting.take() {
            // The thread only deletes one file; a failure to delete leaves it behind,
            // which is all a join could report.
            let _ = thread.join();
        }
    }
}

/// Moves the regular file at `path`, if there is one, out of the way and starts deleting
/// it (see the module's docs). The returned value joins the deletion when dropped.
pub fn set_aside(path: &Path) -> Replaced {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let is_file = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file());
    let Some(name) = path.file_name().filter(|_| is_file) else { return Replaced::default() };
    let aside: PathBuf = path.with_file_name(format!(
        ".{}.replaced-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    if std::fs::rename(path, &aside).is_err() {
        return Replaced::default();
    }
    let spawned = std::thread::Builder::new().name("weir-replaced".into()).spawn({
        let aside = aside.clone();
        move || drop(std::fs::remove_file(aside))
    });
    match spawned {
        Ok(thread) => Replaced { deleting: Some(thread) },
        Err(_) => {
            // No thread to spare: delete it here, as `File::create` would have.
            drop(std::fs::remove_file(&aside));
            Replaced::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_existing_file_is_moved_aside_and_deleted_and_nothing_is_left_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.arrow");
        std::fs::write(&path, b"old output").expect("write");
        let replaced = set_aside(&path);
        assert!(!path.exists(), "the old file must be out of the way before the new one is created");
        std::fs::write(&path, b"new").expect("write");
        drop(replaced);
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["out.arrow"]);
        assert_eq!(std::fs::read(&path).expect("read"), b"new");
    }

    #[test]
    fn nothing_a_symlink_or_a_device_is_left_where_it_is() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(set_aside(&dir.path().join("missing.arrow")));
        let target = dir.path().join("target.arrow");
        std::fs::write(&target, b"kept").expect("write");
        let link = dir.path().join("link.arrow");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        drop(set_aside(&link));
        assert!(std::fs::symlink_metadata(&link).expect("link").file_type().is_symlink());
        drop(set_aside(Path::new("/dev/null")));
        assert!(Path::new("/dev/null").exists());
        assert_eq!(std::fs::read_dir(dir.path()).expect("read_dir").count(), 2);
    }
}
