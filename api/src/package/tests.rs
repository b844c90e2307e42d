use super::*;
use std::io::Write as _;

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in entries {
        zip.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

fn tar_gz_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o600);
        header.set_mtime(1_700_000_000);
        // set_path refuses `..`; write the raw name to test the reader's checks.
        header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_cksum();
        tar.append(&header, *data).unwrap();
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar.into_inner().unwrap()).unwrap();
    gz.finish().unwrap()
}

const GOOD: &[(&str, &[u8])] = &[
    ("pyproject.toml", b"[project]\nname='ade-config'\n"),
    ("src/ade_config/__init__.py", b""),
];

#[test]
fn zip_and_tar_of_the_same_files_have_one_digest() {
    let a = from_upload(&zip_of(GOOD)).unwrap();
    let b = from_upload(&tar_gz_of(GOOD)).unwrap();
    assert_eq!(a.digest, b.digest);
    assert_eq!(files_of(&a.archive).unwrap().len(), 2);
}

#[test]
fn a_single_top_level_folder_is_stripped() {
    let wrapped: Vec<(String, &[u8])> = GOOD
        .iter()
        .map(|(p, d)| (format!("my-config/{p}"), *d))
        .collect();
    let wrapped: Vec<(&str, &[u8])> = wrapped.iter().map(|(p, d)| (p.as_str(), *d)).collect();
    assert_eq!(
        from_upload(&zip_of(&wrapped)).unwrap().digest,
        from_upload(&zip_of(GOOD)).unwrap().digest
    );
}

#[test]
fn traversal_and_absolute_paths_are_refused() {
    for bad in ["../evil.py", "a/../../evil.py", "/etc/passwd", "a\\b.py"] {
        let entries = [GOOD[0], GOOD[1], (bad, b"x".as_slice())];
        assert!(
            matches!(
                from_upload(&zip_of(&entries)),
                Err(PackageError::UnsafeEntry(..))
            ),
            "{bad}"
        );
        assert!(
            matches!(
                from_upload(&tar_gz_of(&entries)),
                Err(PackageError::UnsafeEntry(..))
            ),
            "{bad}"
        );
    }
}

#[test]
fn symlinks_in_tars_are_refused() {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_size(0);
    tar.append_link(&mut header, "src/ade_config/__init__.py", "/etc/passwd")
        .unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar.into_inner().unwrap()).unwrap();
    assert!(matches!(
        from_upload(&gz.finish().unwrap()),
        Err(PackageError::UnsafeEntry(..))
    ));
}

#[test]
fn expansion_bombs_are_stopped() {
    let big = vec![0u8; (MAX_EXPANDED_BYTES + 1) as usize];
    let entries = [GOOD[0], GOOD[1], ("data.bin", big.as_slice())];
    assert!(matches!(
        from_upload(&tar_gz_of(&entries)),
        Err(PackageError::TooLarge(_))
    ));
}

#[test]
fn non_packages_and_garbage_are_refused() {
    assert!(matches!(
        from_upload(b"hello"),
        Err(PackageError::UnknownFormat)
    ));
    assert!(matches!(
        from_upload(&zip_of(&[GOOD[0]])),
        Err(PackageError::NotAPackage(_))
    ));
    assert!(matches!(
        from_upload(&zip_of(&[GOOD[1]])),
        Err(PackageError::NotAPackage(_))
    ));
}

#[test]
fn the_template_is_a_package() {
    let t = template();
    assert!(
        files_of(&t.archive)
            .unwrap()
            .contains_key("src/ade_config/columns.py")
    );
    assert_eq!(t.digest, template().digest);
}
