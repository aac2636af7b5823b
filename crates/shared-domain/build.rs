//! Compiles `proto/warmup.proto` with a vendored `protoc`, so a fresh machine
//! needs no system protobuf compiler.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=../../proto/warmup.proto");
    prost_build::Config::new().compile_protos(&["../../proto/warmup.proto"], &["../../proto"])?;
    Ok(())
}
