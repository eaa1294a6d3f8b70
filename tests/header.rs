//! include/wsclient.h must be exactly what cbindgen generates from the source.
//! `WSC_BLESS=1 cargo test --test header` rewrites it.

#[test]
fn header_is_current() {
    let root = env!("CARGO_MANIFEST_DIR");
    let config =
        cbindgen::Config::from_file(format!("{root}/cbindgen.toml")).expect("cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(root)
        .with_config(config)
        .generate()
        .expect("cbindgen failed")
        .write(&mut generated);
    let path = format!("{root}/include/wsclient.h");
    if std::env::var_os("WSC_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let checked_in = std::fs::read(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "include/wsclient.h is stale: run `WSC_BLESS=1 cargo test --test header` and commit it"
    );
}
