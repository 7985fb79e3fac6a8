//! Create N network namespaces joined in a chain by N-1 routed links, then tear them down, and
//! print the time per island for each phase. Run as root: `cargo run --release --example chain 100`.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Instant;

use atoll_net::netns::{self, Netns};
use atoll_net::p2p::{self, End, LinkSpec};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u32 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100);
    let one_by_one = std::env::args().any(|a| a == "--one-by-one");
    let pid = std::process::id();
    let dir = PathBuf::from(format!("/run/atoll-net-chain-{pid}"));
    let group = 0x7a00_0000 | (pid & 0xff_ffff);
    let paths: Vec<PathBuf> = (0..n).map(|i| dir.join(format!("i{i}"))).collect();
    let result = run(n, group, &paths, one_by_one);
    // Whatever happened, leave nothing behind.
    let cleanup = atoll_net::teardown(&[group], &paths, None);
    let _ = std::fs::remove_dir(&dir);
    result?;
    cleanup?;
    Ok(())
}

fn run(
    n: u32,
    group: u32,
    paths: &[PathBuf],
    one_by_one: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let per = |d: std::time::Duration| d.as_secs_f64() * 1e3 / f64::from(n);
    let t0 = Instant::now();
    let _pinned: Vec<Netns> = paths
        .iter()
        .map(|p| Netns::create(p))
        .collect::<Result<_, _>>()?;
    let t_ns = t0.elapsed();

    let links: Vec<LinkSpec> = (1..n)
        .map(|i| link(group, i, &paths[i as usize - 1], &paths[i as usize]))
        .collect();
    let t1 = Instant::now();
    let plan = p2p::plan(&links);
    plan.apply()?;
    let t_links = t1.elapsed();
    let up = t0.elapsed();
    let host_links = p2p::group_links(group)?.len();
    if std::env::var_os("ATOLL_CHAIN_HOLD").is_some() {
        eprintln!(
            "holding: {} (press enter to tear down)",
            paths[0].parent().unwrap().display()
        );
        std::io::stdin().read_line(&mut String::new())?;
    }

    let t2 = Instant::now();
    if one_by_one {
        p2p::delete_group_one_by_one(group)?;
    } else {
        p2p::delete_group(group)?;
    }
    let t_del = t2.elapsed();
    let t3 = Instant::now();
    drop(_pinned);
    for p in paths {
        netns::remove(p)?;
    }
    let t_rm = t3.elapsed();
    let down = t2.elapsed();
    println!(
        "N={n} links={} host_ends={host_links} | up {:.3} ms/island (netns create {:.3}, links {:.3}) | down {:.3} ms/island ({} {:.3}, netns remove {:.3}) | total {:.3} ms/island",
        n - 1,
        per(up),
        per(t_ns),
        per(t_links),
        per(down),
        if one_by_one { "delete one-by-one" } else { "delete_group" },
        per(t_del),
        per(t_rm),
        per(up + down),
    );
    Ok(())
}

/// Link i joins island i-1 (side a) and island i (side b); addresses from 10.200.0.0/16 are
/// private to the two islands (nothing else routes them).
fn link(group: u32, i: u32, a: &std::path::Path, b: &std::path::Path) -> LinkSpec {
    let addr = |side: u32| Ipv4Addr::from(0x0ac8_0000 | (i * 2 + side));
    let end = |netns: &std::path::Path, side: u32| End {
        netns: netns.to_owned(),
        ifname: format!("l{i}{}", if side == 0 { "a" } else { "b" }),
        host_ifname: format!(
            "atch{:x}{i}{}",
            group & 0xffff,
            if side == 0 { "a" } else { "b" }
        ),
        addr: addr(side),
        mac: p2p::mac_for(group, i, side as u8 * 2),
        host_mac: p2p::mac_for(group, i, side as u8 * 2 + 1),
    };
    LinkSpec {
        a: end(a, 0),
        b: end(b, 1),
        group,
    }
}
