//! Time and peak memory of `create --template` for a rack (not a test):
//! 1,000 host bundles rendered, packed, compressed, encrypted (to each
//! node and one admin) and signed by the real binary, against the shell
//! pipeline an admin would otherwise run, `tar | zstd -3 | age -r -r`, on
//! the same trees already rendered and on as many cores (`xargs -P`), with
//! no signing. Prints a Markdown table of the median of the runs.
//!
//!     cargo bench -p satchel-bundle --bench template [-- NODES RUNS]

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use satchel_format::{Identities, SigningKey};

const BIN: &str = env!("CARGO_BIN_EXE_satchel-bundle");

/// Runs `cmd` under python3 and returns (seconds, peak RSS of the command in KiB).
fn measure(cmd: &[&str], dir: &Path) -> (f64, u64) {
    let script = "import resource, subprocess, sys\n\
                  r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)\n\
                  print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n\
                  sys.exit(r.returncode)";
    let start = Instant::now();
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(cmd)
        .current_dir(dir)
        .env("HOME", dir)
        .env_remove("SATCHEL_ADMIN_CONFIG")
        .output()
        .expect("python3");
    let secs = start.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rss = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .expect("maxrss");
    (secs, rss)
}

fn mac(i: usize) -> String {
    format!("52-54-00-20-{:02x}-{:02x}", (i >> 8) as u8, i as u8)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let nodes = args.first().copied().unwrap_or(1000);
    let runs = args.get(1).copied().unwrap_or(3);
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path();

    // A template of a typical node: rendered identity files, a rendered
    // service config with a loop, and static files (one of 64 KiB).
    let tpl = d.join("template");
    std::fs::create_dir_all(tpl.join("etc/app/conf.d")).expect("mkdir");
    std::fs::write(tpl.join("etc/hostname.j2"), "{{ hostname }}\n").expect("t");
    std::fs::write(
        tpl.join("etc/hosts.j2"),
        "127.0.0.1 localhost\n{{ ip }} {{ hostname }}.{{ site }} {{ hostname }}\n",
    )
    .expect("t");
    std::fs::write(
        tpl.join("etc/app/app.conf.j2"),
        "[node]\nname = {{ hostname }}\nrole = {{ role }}\n\
         {% for n in range(8) %}\nshard{{ n }} = {{ hostname }}-{{ n }}\n{% endfor %}\n",
    )
    .expect("t");
    std::fs::write(tpl.join("etc/motd"), "managed by satchel\n").expect("t");
    std::fs::write(tpl.join("etc/app/conf.d/limits.conf"), "nofile = 65536\n").expect("t");
    let blob: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(tpl.join("etc/app/table.bin"), &blob).expect("t");

    let admin = Identities::generate().recipients()[0].to_string();
    let mut inventory = String::from("mac,site,hostname,ip,role\n");
    let mut recipients = String::new();
    let mut node_rcpt = Vec::new();
    for i in 0..nodes {
        let r = Identities::generate().recipients()[0].to_string();
        inventory.push_str(&format!(
            "{},dc1,node-{i:04},10.0.{}.{},web\n",
            mac(i),
            i / 250,
            i % 250 + 1
        ));
        recipients.push_str(&format!("host/{} {r}\n", mac(i)));
        node_rcpt.push(r);
    }
    std::fs::write(d.join("inventory.csv"), inventory).expect("inventory");
    std::fs::write(d.join("recipients.txt"), recipients).expect("recipients");
    let key = SigningKey::generate();
    std::fs::write(d.join("sign.key"), key.to_pem().expect("pem").as_bytes()).expect("key");

    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut ours = Vec::new();
    let mut our_rss = 0;
    for run in 0..runs {
        let out = d.join(format!("out-{run}"));
        let (secs, rss) = measure(
            &[
                BIN,
                "create",
                "--template",
                "template",
                "--inventory",
                "inventory.csv",
                "--out-dir",
                out.to_str().expect("utf8"),
                "--serial",
                "1",
                "--expires",
                "30d",
                "--sign-key",
                "sign.key",
                "--recipients",
                "recipients.txt",
                "--recipient",
                &admin,
            ],
            d,
        );
        ours.push(secs);
        our_rss = our_rss.max(rss);
    }

    // The peer gets the trees already rendered (by satchel-bundle's own
    // `open` would need the nodes' identities; plain files written here are
    // the same content), one `tar | zstd | age` per node, `cores` at a time.
    let trees = d.join("trees");
    for (i, rcpt) in node_rcpt.iter().enumerate() {
        let t = trees.join(mac(i));
        std::fs::create_dir_all(t.join("etc/app/conf.d")).expect("mkdir");
        let host = format!("node-{i:04}");
        std::fs::write(t.join("etc/hostname"), format!("{host}\n")).expect("w");
        std::fs::write(
            t.join("etc/hosts"),
            format!("127.0.0.1 localhost\n10.0.0.1 {host}.dc1 {host}\n"),
        )
        .expect("w");
        let mut conf = format!("[node]\nname = {host}\nrole = web\n");
        for n in 0..8 {
            conf.push_str(&format!("shard{n} = {host}-{n}\n"));
        }
        std::fs::write(t.join("etc/app/app.conf"), conf).expect("w");
        std::fs::write(t.join("etc/motd"), "managed by satchel\n").expect("w");
        std::fs::write(t.join("etc/app/conf.d/limits.conf"), "nofile = 65536\n").expect("w");
        std::fs::write(t.join("etc/app/table.bin"), &blob).expect("w");
        std::fs::write(trees.join(format!("{}.rcpt", mac(i))), rcpt).expect("w");
    }
    let script = format!(
        "cd trees && ls -d */ | tr -d / | xargs -P {cores} -I@ sh -c \
         'tar -C @ -c . | zstd -3 -q | age -r \"$(cat @.rcpt)\" -r {admin} > @.age'"
    );
    let mut peer = Vec::new();
    let mut peer_rss = 0;
    for _ in 0..runs {
        let (secs, rss) = measure(&["bash", "-c", &script], d);
        peer.push(secs);
        peer_rss = peer_rss.max(rss);
    }
    let (o, p) = (median(ours), median(peer));
    println!("| {nodes} host bundles, {cores} cores | wall (median of {runs}) | peak RSS |");
    println!("| --- | ---: | ---: |");
    println!(
        "| satchel-bundle create --template (render, pack, zstd, age, sign) | {o:.2} s | {:.1} MiB |",
        our_rss as f64 / 1024.0
    );
    println!(
        "| tar · zstd -3 · age per node, xargs -P {cores} (pre-rendered, unsigned) | {p:.2} s | {:.1} MiB (largest process) |",
        peer_rss as f64 / 1024.0
    );
    println!("| ratio satchel / pipeline | {:.2}× | |", o / p);
}
