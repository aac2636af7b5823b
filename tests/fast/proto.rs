//! The warm-up message's generated code is committed
//! (`crates/shared-domain/src/generated/`) so that no build compiles
//! prost-build and protoc on its way: this check regenerates it from
//! `proto/warmup.proto` and fails when the committed file differs.
//! `PREWARM_UPDATE_PROTO=1` rewrites it instead.

use std::path::{Path, PathBuf};

const GENERATED: &str = "prewarm.warmup.v1.rs";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn the_committed_warmup_message_code_matches_the_proto() {
    let out = std::env::temp_dir().join(format!("prewarm-proto-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let protoc = protoc_bin_vendored::protoc_bin_path().unwrap();
    prost_build::Config::new()
        .protoc_executable(protoc)
        .out_dir(&out)
        .compile_protos(
            &[root().join("proto/warmup.proto")],
            &[root().join("proto")],
        )
        .unwrap();
    let fresh = std::fs::read_to_string(out.join(GENERATED)).unwrap();
    std::fs::remove_dir_all(&out).ok();
    let committed_path = root()
        .join("crates/shared-domain/src/generated")
        .join(GENERATED);
    if std::env::var_os("PREWARM_UPDATE_PROTO").is_some() {
        std::fs::write(&committed_path, &fresh).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap();
    assert!(
        committed == fresh,
        "{} is stale: run `PREWARM_UPDATE_PROTO=1 cargo test --test fast proto` and commit it",
        committed_path.display()
    );
}
