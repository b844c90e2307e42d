use super::*;
use std::fs;

/// A fresh folder under the system temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("ade-pack-{}", uuid::Uuid::now_v7()));
        fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, rel: &str, data: &[u8]) {
        let path = self.0.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, data).unwrap();
    }

    /// A minimal package: pyproject.toml and src/ade_config/__init__.py.
    fn package() -> Self {
        let s = Self::new();
        s.write("pyproject.toml", b"[project]\nname = \"ade-config\"\n");
        s.write("src/ade_config/__init__.py", b"");
        s
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn names_in(archive: &[u8]) -> Vec<String> {
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    let mut names: Vec<String> = tar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_package_is_packed_without_caches_vcs_or_venvs() {
    let s = Scratch::package();
    s.write("src/ade_config/columns.py", b"FIELDS = []\n");
    s.write("src/ade_config/__pycache__/columns.cpython-311.pyc", b"x");
    s.write("src/ade_config/stale.pyc", b"x");
    s.write(".git/HEAD", b"ref: refs/heads/main\n");
    s.write("env-by-another-name/pyvenv.cfg", b"home = /usr\n");
    s.write("env-by-another-name/lib/site.py", b"");
    s.write("ade_config.egg-info/PKG-INFO", b"");
    let packed = pack_dir(&s.0).unwrap();
    assert_eq!(
        names_in(&packed.archive),
        [
            "pyproject.toml",
            "src/ade_config/__init__.py",
            "src/ade_config/columns.py"
        ]
    );
    assert_eq!(packed.files, 3);
    let mut skipped = packed.skipped.clone();
    skipped.sort();
    assert_eq!(
        skipped,
        [
            ".git/",
            "ade_config.egg-info/",
            "env-by-another-name/",
            "src/ade_config/__pycache__/",
            "src/ade_config/stale.pyc"
        ]
    );
}

#[test]
fn symlinks_are_refused_by_name() {
    let s = Scratch::package();
    std::os::unix::fs::symlink("/etc/passwd", s.0.join("src/ade_config/data.txt")).unwrap();
    let error = pack_dir(&s.0).unwrap_err();
    assert!(matches!(error, PackError::Symlink(_)), "{error}");
    assert!(error.to_string().contains("data.txt"), "{error}");
}

#[test]
fn folders_that_are_not_packages_are_refused() {
    let s = Scratch::new();
    s.write("README.md", b"hi");
    assert!(matches!(
        pack_dir(&s.0).unwrap_err(),
        PackError::NoPyproject(_)
    ));
    s.write("pyproject.toml", b"");
    assert!(matches!(
        pack_dir(&s.0).unwrap_err(),
        PackError::NoConfigPackage(_)
    ));
    assert!(matches!(
        pack_dir(&s.0.join("README.md")).unwrap_err(),
        PackError::NotADir(_)
    ));
}

#[test]
fn the_apis_limits_are_kept() {
    let s = Scratch::package();
    for i in 0..MAX_ENTRIES - 1 {
        s.write(&format!("data/{i}.txt"), b"x");
    }
    assert!(pack_dir(&s.0).is_err_and(|e| matches!(e, PackError::TooManyFiles)));

    let s = Scratch::package();
    s.write(&format!("{}.py", "a".repeat(MAX_PATH_LEN)), b"");
    assert!(pack_dir(&s.0).is_err_and(|e| matches!(e, PackError::PathTooLong(_))));

    let s = Scratch::package();
    let big = vec![b'x'; (MAX_EXPANDED_BYTES / 2) as usize + 1];
    s.write("a.bin", &big);
    s.write("b.bin", &big);
    assert!(pack_dir(&s.0).is_err_and(|e| matches!(e, PackError::TooLarge(_))));
}

#[test]
fn an_archive_that_compresses_badly_is_refused_before_upload() {
    let s = Scratch::package();
    // Incompressible bytes: a simple xorshift stream.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let noise: Vec<u8> = (0..MAX_ARCHIVE_BYTES + 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    s.write("noise.bin", &noise);
    let error = pack_dir(&s.0).unwrap_err();
    assert!(matches!(error, PackError::ArchiveTooLarge(_)), "{error}");
    assert!(error.to_string().contains("at most 5.0 MiB"), "{error}");
}
