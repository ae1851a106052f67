//! Whether this process runs rootless — as root of a user namespace whose root is an ordinary
//! user outside (what `rbuild` enters for a non-root caller, see
//! `rbuild_executor::sandbox::userns`) — and the one thing that changes for files the store and
//! the executor write because of it: the xattr namespace of overlayfs's own markers. The kernel
//! lets only the initial namespace's root set `trusted.*` attributes, so an overlay mounted in a
//! user namespace (with `userxattr`) reads `user.overlay.*` instead; every writer of an opaque
//! marker asks [`opaque_xattr`], readers accept both forms.
//!
//! The answer is read from `/proc/self/uid_map` at each call (a process enters its namespace
//! after it starts): in the initial namespace it maps 0 to 0; rootless it maps 0 to the
//! caller's uid.

/// The overlayfs opaque-directory marker for this process's mounts: `user.overlay.opaque`
/// rootless, `trusted.overlay.opaque` otherwise.
pub fn opaque_xattr() -> &'static str {
    if rootless() {
        "user.overlay.opaque"
    } else {
        "trusted.overlay.opaque"
    }
}

/// Whether this process is rootless with one id only (`--userns=single`: only the caller's
/// uid, as 0): layers are unpacked with every owner 0, and no other owner can be set.
pub fn single_id() -> bool {
    std::fs::read_to_string("/proc/self/uid_map")
        .map(|map| maps_root_elsewhere(&map) && mapped_count(&map) == 1)
        .unwrap_or(false)
}

/// How many ids a `uid_map` maps.
fn mapped_count(map: &str) -> u64 {
    map.lines()
        .filter_map(|l| l.split_whitespace().nth(2)?.parse::<u64>().ok())
        .sum()
}

/// Whether this process is in a user namespace whose uid 0 is not the host's root.
pub fn rootless() -> bool {
    std::fs::read_to_string("/proc/self/uid_map")
        .map(|map| maps_root_elsewhere(&map))
        .unwrap_or(false)
}

/// Whether a `uid_map`'s line for inside id 0 maps it to an outside id other than 0 (or
/// nothing maps it: a namespace whose maps are not written yet).
fn maps_root_elsewhere(map: &str) -> bool {
    let mut mapped = false;
    for line in map.lines() {
        let mut fields = line.split_whitespace().map(|f| f.parse::<u64>().ok());
        let (Some(Some(inside)), Some(Some(outside)), Some(Some(count))) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if inside == 0 && count > 0 {
            mapped = true;
            if outside != 0 {
                return true;
            }
        }
    }
    !mapped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_namespace_and_rootless_maps() {
        assert!(!maps_root_elsewhere("         0          0 4294967295\n"));
        assert!(maps_root_elsewhere(
            "         0       1000          1\n         1     100000      65536\n"
        ));
        assert!(maps_root_elsewhere("         0       1000          1\n"));
        // Nothing written yet: not the host's root either.
        assert!(maps_root_elsewhere(""));
        // A namespace that maps root to root (a privileged container's) is not rootless.
        assert!(!maps_root_elsewhere("0 0 65536\n"));
        assert_eq!(mapped_count("0 1000 1\n"), 1);
        assert_eq!(mapped_count("0 1000 1\n1 100000 65536\n"), 65537);
    }

    #[test]
    fn this_test_process_agrees_with_its_uid_map() {
        let map = std::fs::read_to_string("/proc/self/uid_map").unwrap();
        assert_eq!(rootless(), maps_root_elsewhere(&map));
        assert_eq!(
            opaque_xattr(),
            if rootless() {
                "user.overlay.opaque"
            } else {
                "trusted.overlay.opaque"
            }
        );
    }
}
