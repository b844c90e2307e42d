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

/// A tar.gz whose first entry is a PAX header of `size` bytes, streamed
/// through the compressor so the test never holds it whole.
fn pax_bomb(size: usize) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut header = tar::Header::new_ustar();
    header.set_path("PaxHeaders/x").unwrap();
    header.set_size(size as u64);
    header.set_entry_type(tar::EntryType::XHeader);
    header.set_cksum();
    gz.write_all(header.as_bytes()).unwrap();
    let chunk = vec![b'a'; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len());
        gz.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
    gz.finish().unwrap()
}

#[test]
fn a_huge_pax_header_is_refused_before_the_tar_reader_buffers_it() {
    let bomb = pax_bomb(128 << 20);
    assert!(
        bomb.len() < MAX_ARCHIVE_BYTES,
        "small upload: {} bytes",
        bomb.len()
    );
    assert!(matches!(from_upload(&bomb), Err(PackageError::TooLarge(_))));
}

#[test]
fn duplicate_names_are_refused() {
    // The same path spelled twice (the archivers would refuse an exact repeat).
    let entries = [
        GOOD[0],
        GOOD[1],
        ("./src/ade_config/__init__.py", b"again".as_slice()),
    ];
    for archive in [zip_of(&entries), tar_gz_of(&entries)] {
        let err = from_upload(&archive).err().unwrap();
        assert!(err.to_string().contains("appears twice"), "{err}");
    }
}

#[test]
fn non_utf8_names_are_refused() {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(1);
    header.as_gnu_mut().unwrap().name[..5].copy_from_slice(b"a\xffb.p");
    header.set_cksum();
    tar.append(&header, b"x".as_slice()).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar.into_inner().unwrap()).unwrap();
    let err = from_upload(&gz.finish().unwrap()).err().unwrap();
    assert!(err.to_string().contains("UTF-8"), "{err}");
}

#[test]
fn folders_count_toward_the_entry_limit() {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for i in 0..MAX_ENTRIES {
        zip.add_directory(format!("d{i}/"), zip::write::SimpleFileOptions::default())
            .unwrap();
    }
    for (name, data) in GOOD {
        zip.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(data).unwrap();
    }
    let archive = zip.finish().unwrap().into_inner();
    assert!(matches!(
        from_upload(&archive),
        Err(PackageError::TooLarge(_))
    ));
}
