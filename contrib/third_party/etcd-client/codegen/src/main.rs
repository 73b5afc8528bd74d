//! Writes the prost/tonic code for etcd's protos into `src/rpc/generated/`,
//! exactly as upstream etcd-client's build script would into `OUT_DIR`.
//! Needs a `protoc` (on PATH, or named by `PROTOC`).

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let proto = root.join("proto");
    let out = root.join("src/rpc/generated");
    std::fs::create_dir_all(&out).expect("creating src/rpc/generated");
    let files = [
        "etcd/api/authpb/auth.proto",
        "etcd/api/etcdserverpb/rpc.proto",
        "etcd/api/mvccpb/kv.proto",
        "etcd/server/etcdserver/api/v3election/v3electionpb/v3election.proto",
        "etcd/server/etcdserver/api/v3lock/v3lockpb/v3lock.proto",
    ]
    .map(|f| proto.join(f));
    tonic_prost_build::configure()
        .build_server(false)
        .out_dir(&out)
        .compile_protos(&files, &[proto])
        .expect("compiling etcd's protos");
    // Only the packages src/rpc/pb.rs includes are kept; the rest are
    // imports of the gateway annotations, unused by a client.
    for entry in std::fs::read_dir(&out).expect("reading the output") {
        let path = entry.expect("entry").path();
        let keep = ["authpb.rs", "etcdserverpb.rs", "mvccpb.rs", "v3electionpb.rs", "v3lockpb.rs"];
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !keep.contains(&name) {
            std::fs::remove_file(&path).expect("removing an unused file");
        }
    }
}
