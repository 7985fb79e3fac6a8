//! Root integration tests on real kernel objects: three islands, two routed links through the host,
//! the border-guard table, and traffic between them with std sockets. Everything is created under
//! names carrying this process's pid and removed by a guard, also when an assertion fails.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use atoll_net::firewall::{self, Allow, Proto, Ruleset};
use atoll_net::netns::{self, Netns};
use atoll_net::p2p::{self, End, LinkSpec};
use atoll_net::NetError;

/// Root is required; in CI (ATOLL_TESTS_MUST_RUN=1) its absence is a failure, locally a skip.
fn require_root() -> bool {
    atoll_testkit::gate::gate(
        "atoll-net integration tests",
        atoll_testkit::gate::missing_root(),
    )
}

/// Owns everything one test creates; tears it all down on drop.
struct Guard {
    dir: PathBuf,
    groups: Vec<u32>,
    netns: Vec<PathBuf>,
    table: String,
}

impl Guard {
    /// `tag` keeps tests of this binary apart (names, groups, addresses).
    fn new(tag: u8) -> Guard {
        let pid = std::process::id();
        Guard {
            dir: PathBuf::from(format!("/run/atoll-net-test-{pid}-{tag}")),
            groups: vec![group(tag), group(tag) + 1],
            netns: Vec::new(),
            table: format!("atoll_test_{pid}_{tag}"),
        }
    }

    fn netns(&mut self, name: &str) -> Netns {
        let path = self.dir.join(name);
        self.netns.push(path.clone());
        Netns::create(&path).expect("create netns")
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let res = atoll_net::teardown(&self.groups, &self.netns, Some(&self.table));
        let _ = std::fs::remove_dir(&self.dir);
        if !std::thread::panicking() {
            res.expect("teardown");
        }
    }
}

fn group(tag: u8) -> u32 {
    0x6100_0000 | ((std::process::id() & 0xffff) << 8) | (u32::from(tag) << 1)
}

/// Host interface names: `atlt<pid hex><tag><n>`, at most 15 bytes.
fn host_if(tag: u8, n: u32) -> String {
    format!("atlt{:x}{tag}h{n}", std::process::id() & 0xfffff)
}

/// Addresses private to this test: 10.213.<tag>.x; only our namespaces route them.
fn addr(tag: u8, x: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 213, tag, x)
}

fn end(tag: u8, ns: &Netns, ifname: &str, n: u32, x: u8) -> End {
    End {
        netns: ns.path().to_owned(),
        ifname: ifname.into(),
        host_ifname: host_if(tag, n),
        addr: addr(tag, x),
        mac: p2p::mac_for(group(tag), n, 0),
        host_mac: p2p::mac_for(group(tag), n, 1),
    }
}

/// Connect from inside `ns`; Ok(true) connected, Ok(false) timed out (dropped), Err otherwise.
fn connect(ns: &Netns, to: Ipv4Addr, port: u16) -> std::io::Result<bool> {
    let to = SocketAddr::from((to, port));
    match ns
        .enter(|| TcpStream::connect_timeout(&to, Duration::from_millis(400)))
        .unwrap()
    {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::TimedOut => Ok(false),
        Err(e) => Err(e),
    }
}

fn listen(ns: &Netns, port: u16) -> TcpListener {
    ns.enter(|| TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)))
        .unwrap()
        .unwrap()
}

fn counter(table: &str, rule: &str) -> u64 {
    let all = firewall::counters(table).unwrap();
    if rule == firewall::DROP_RULE {
        // The default deny counts per host end and in a catch-all: all of them.
        return firewall::total_drops(&all).0;
    }
    all.into_iter()
        .find(|c| c.rule == rule)
        .unwrap_or_else(|| panic!("no counter {rule:?}"))
        .packets
}

fn read_sysctl(key: &str) -> String {
    atoll_net::sysctl::read(key).unwrap()
}

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("run ip");
    assert!(st.success(), "ip {args:?}: {st}");
}

#[test]
fn islands_reach_only_what_the_firewall_allows() {
    if !require_root() {
        return;
    }
    const TAG: u8 = 1;
    let mut g = Guard::new(TAG);
    let (a, b, c) = (g.netns("a"), g.netns("b"), g.netns("c"));
    let ip_forward_before = read_sysctl("net.ipv4.ip_forward");

    // A(.1) – B(.2) and C(.5) – B(.6).
    let ab = LinkSpec {
        a: end(TAG, &a, "to-b", 1, 1),
        b: end(TAG, &b, "to-a", 2, 2),
        group: group(TAG),
    };
    let cb = LinkSpec {
        a: end(TAG, &c, "to-b", 3, 5),
        b: end(TAG, &b, "to-c", 4, 6),
        group: group(TAG),
    };
    p2p::plan(&[ab.clone(), cb.clone()])
        .apply()
        .expect("apply links");

    let ruleset = Ruleset {
        table: g.table.clone(),
        host_ifaces: (1..=4).map(|n| host_if(TAG, n)).collect(),
        allows: vec![Allow {
            id: "a-to-b-5432".into(),
            from_if: ab.a.host_ifname.clone(),
            to_if: ab.b.host_ifname.clone(),
            saddr: ab.a.addr,
            daddr: ab.b.addr,
            proto: Proto::Tcp,
            ports: vec![(5432, 5432)],
        }],
        log_drops: false,
    };
    ruleset.apply().expect("apply firewall");
    ruleset.apply().expect("re-apply firewall (idempotent)");

    // The kernel state the plan promises.
    let links = p2p::group_links(group(TAG)).unwrap();
    assert_eq!(links.len(), 4, "{links:?}");
    assert!(links.iter().all(|l| l.up), "{links:?}");
    for n in 1..=4 {
        let h = host_if(TAG, n);
        assert_eq!(read_sysctl(&format!("net.ipv4.conf.{h}.forwarding")), "1");
        assert_eq!(read_sysctl(&format!("net.ipv6.conf.{h}.disable_ipv6")), "1");
    }
    let inside = a
        .enter(|| {
            (
                read_sysctl("net.ipv6.conf.to-b.disable_ipv6"),
                read_sysctl("net.ipv4.conf.to-b.forwarding"),
            )
        })
        .unwrap();
    assert_eq!(inside, ("1".into(), "0".into()));

    let _b5432 = listen(&b, 5432);
    let _b5433 = listen(&b, 5433);
    let _a5432 = listen(&a, 5432);
    let _c5432 = listen(&c, 5432);
    let drops0 = counter(&g.table, "drop");

    assert!(
        connect(&a, ab.b.addr, 5432).unwrap(),
        "A -> B:5432 is allowed"
    );
    assert!(
        !connect(&a, ab.b.addr, 5433).unwrap(),
        "A -> B:5433 must be dropped"
    );
    assert!(
        !connect(&b, ab.a.addr, 5432).unwrap(),
        "B -> A:5432 (reverse) must be dropped"
    );
    assert!(
        !connect(&c, cb.b.addr, 5432).unwrap(),
        "C -> B:5432 must be dropped"
    );
    // C has no route to A's address at all: the kernel refuses before any packet leaves C.
    let e = connect(&c, ab.a.addr, 5432).unwrap_err();
    assert_eq!(
        e.raw_os_error(),
        Some(rustix::io::Errno::NETUNREACH.raw_os_error()),
        "{e}"
    );

    assert!(counter(&g.table, "a-to-b-5432") >= 1);
    assert!(
        counter(&g.table, "drop") >= drops0 + 3,
        "one SYN per denied flow at least"
    );
    assert_eq!(
        read_sysctl("net.ipv4.ip_forward"),
        ip_forward_before,
        "global forwarding untouched"
    );

    // Nothing reaches the host: give the host a local address (on a host-only veth pair in the
    // guard's second group) and let A route to it through its link; the input hook drops it.
    let (local, local_peer) = (host_if(TAG, 8), host_if(TAG, 9));
    let host_addr = addr(TAG, 254);
    let g2 = (group(TAG) + 1).to_string();
    ip(&[
        "link",
        "add",
        &local,
        "group",
        &g2,
        "type",
        "veth",
        "peer",
        "name",
        &local_peer,
    ]);
    ip(&["addr", "add", &format!("{host_addr}/32"), "dev", &local]);
    ip(&["link", "set", &local, "up"]);
    let host_listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
    let host_port = host_listener.local_addr().unwrap().port();
    a.enter(|| ip(&["route", "add", &format!("{host_addr}/32"), "dev", "to-b"]))
        .unwrap();
    a.enter(|| {
        ip(&[
            "neigh",
            "replace",
            &host_addr.to_string(),
            "lladdr",
            &mac(ab.a.host_mac),
            "dev",
            "to-b",
            "nud",
            "permanent",
        ])
    })
    .unwrap();
    let input0 = counter(&g.table, "host-input-drop");
    assert!(
        !connect(&a, host_addr, host_port).unwrap(),
        "A -> host must be dropped"
    );
    assert!(counter(&g.table, "host-input-drop") > input0);
    host_listener.set_nonblocking(true).unwrap();
    assert_eq!(
        host_listener.accept().unwrap_err().kind(),
        ErrorKind::WouldBlock,
        "host listener got a connection"
    );

    // Teardown leaves nothing.
    let paths = g.netns.clone();
    let groups = g.groups.clone();
    let table = g.table.clone();
    drop((a, b, c));
    atoll_net::teardown(&groups, &paths, Some(&table)).unwrap();
    assert!(p2p::group_links(group(TAG)).unwrap().is_empty());
    assert!(p2p::group_links(group(TAG) + 1).unwrap().is_empty());
    assert!(paths.iter().all(|p| !p.exists()));
    assert!(
        firewall::counters(&table).is_err(),
        "table {table} still exists"
    );
}

fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[test]
fn errors_name_the_request_and_reapply_is_refused() {
    if !require_root() {
        return;
    }
    const TAG: u8 = 2;
    let mut g = Guard::new(TAG);
    let (a, b) = (g.netns("a"), g.netns("b"));
    let link = LinkSpec {
        a: end(TAG, &a, "eth-b", 1, 1),
        b: end(TAG, &b, "eth-a", 2, 2),
        group: group(TAG),
    };
    let plan = p2p::plan(&[link]);
    plan.apply().unwrap();
    let err = plan.apply().unwrap_err().to_string();
    let want = format!(
        "RTM_NEWLINK veth {:?} peer \"eth-b\" in {:?}: EEXIST",
        host_if(TAG, 1),
        a.path()
    );
    assert!(err.starts_with(&want), "{err}\nwant: {want}");

    // Group delete takes the island ends with the host ends; a second delete is a no-op.
    p2p::delete_group(group(TAG)).unwrap();
    p2p::delete_group(group(TAG)).unwrap();
    let left = a
        .enter(|| read_sysctl("net.ipv6.conf.default.disable_ipv6"))
        .unwrap();
    assert_eq!(left, "1");
    assert!(!Path::new(&format!("/proc/sys/net/ipv4/conf/{}", host_if(TAG, 1))).exists());
}

#[test]
fn netns_create_open_enter_remove() {
    if !require_root() {
        return;
    }
    const TAG: u8 = 3;
    let mut g = Guard::new(TAG);
    let ns = g.netns("x");
    let again = Netns::create(ns.path()).unwrap_err();
    assert!(matches!(again, NetError::NetnsExists { .. }), "{again}");

    let home = std::fs::metadata("/proc/thread-self/ns/net")
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap();
    let inside = ns
        .enter(|| {
            std::fs::metadata("/proc/thread-self/ns/net")
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
                .unwrap()
        })
        .unwrap();
    let after = std::fs::metadata("/proc/thread-self/ns/net")
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap();
    assert_ne!(home, inside);
    assert_eq!(home, after, "enter switched the thread back");
    // lo is up in a fresh namespace.
    let lo = ns
        .enter(|| {
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .and_then(|l| TcpStream::connect(l.local_addr()?))
        })
        .unwrap();
    assert!(lo.is_ok(), "{lo:?}");

    let reopened = Netns::open(ns.path()).unwrap();
    assert_eq!(reopened.path(), ns.path());
    let plain = g.dir.join("plain");
    std::fs::write(&plain, b"").unwrap();
    assert!(matches!(
        Netns::open(&plain),
        Err(NetError::NotNetns { .. })
    ));
    std::fs::remove_file(&plain).unwrap();

    drop((ns, reopened));
    let path = g.netns[0].clone();
    netns::remove(&path).unwrap();
    assert!(!path.exists());
    netns::remove(&path).unwrap();
}

/// `nft list table inet atoll_lock` in `ns`, without handles.
fn list_lock(ns: &Netns) -> String {
    ns.enter(|| {
        let out = Command::new("/usr/sbin/nft")
            .args(["list", "table", "inet", firewall::LOCK_TABLE])
            .output()
            .expect("nft");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    })
    .unwrap()
}

/// The migration lock's netlink batches (lock, lock again over a held lock, open) build exactly
/// the ruleset nft builds from `firewall::lock_script` (and the two inserted accepts), as `nft
/// list` prints them.
#[test]
fn the_lock_sent_as_netlink_is_the_ruleset_nft_makes() {
    if !require_root() {
        return;
    }
    let mut g = Guard::new(9);
    let by_nft = g.netns("by-nft");
    let by_batch = g.netns("by-batch");
    by_nft
        .enter(|| {
            let mut child = Command::new("/usr/sbin/nft")
                .args(["-f", "-"])
                .stdin(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            let script = format!(
                "{}insert rule inet {t} input accept\ninsert rule inet {t} output accept\n",
                firewall::lock_script(),
                t = firewall::LOCK_TABLE
            );
            child
                .stdin
                .take()
                .unwrap()
                .write_all(script.as_bytes())
                .unwrap();
            assert!(child.wait().unwrap().success());
        })
        .unwrap();
    firewall::lock_fresh(&by_batch).unwrap();
    let locked = list_lock(&by_batch);
    // Locked twice: the replace preamble takes the held lock's place in one transaction.
    firewall::lock(&by_batch).unwrap();
    assert_eq!(list_lock(&by_batch), locked);
    assert!(firewall::locked(&by_batch).unwrap());
    firewall::open(&by_batch).unwrap();
    assert_eq!(list_lock(&by_batch), list_lock(&by_nft));
    assert!(
        list_lock(&by_nft).contains("icmp type destination-unreachable accept"),
        "{}",
        list_lock(&by_nft)
    );
    firewall::unlock(&by_batch).unwrap();
    assert!(!firewall::locked(&by_batch).unwrap());
    // Opening a netns that holds no lock: the kernel refuses the batch (ENOENT); the error
    // names the table and what was refused.
    let e = firewall::open(&by_batch).unwrap_err().to_string();
    assert!(e.contains("atoll_lock") && e.contains("rule"), "{e}");
    eprintln!("{e}");
}

/// The table names of the calling thread's netns, `table FAMILY NAME` per line.
fn tables() -> String {
    let out = Command::new("/usr/sbin/nft")
        .args(["list", "tables"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// A hold keeps the packets sent to an island's address on the host (none reaches it), gives
/// every one back, in order, at `pass`, and lets later ones through unheld; `end` removes its
/// table, and `unhold` removes the table of a holder that never ended; a guard rewrite during
/// the hold loses nothing. The "host" is a netns of its own: any hook unregistered in the host
/// netns (another test deleting its table) makes the kernel flush every queue there
/// (nfqueue.rs).
#[test]
fn a_hold_keeps_packets_on_the_host_and_delivers_them_at_pass() {
    if !require_root() {
        return;
    }
    const TAG: u8 = 10;
    let mut g = Guard::new(TAG);
    let (mid, a, b) = (g.netns("mid"), g.netns("a"), g.netns("b"));
    mid.enter(|| hold_in_this_netns(TAG, &g, &a, &b)).unwrap();
}

fn hold_in_this_netns(tag: u8, g: &Guard, a: &Netns, b: &Netns) {
    let ab = LinkSpec {
        a: end(tag, a, "to-b", 1, 1),
        b: end(tag, b, "to-a", 2, 2),
        group: group(tag),
    };
    p2p::plan(std::slice::from_ref(&ab)).apply().unwrap();
    let guard = Ruleset {
        table: g.table.clone(),
        host_ifaces: (1..=2).map(|n| host_if(tag, n)).collect(),
        allows: vec![Allow {
            id: "a-to-b-9".into(),
            from_if: ab.a.host_ifname.clone(),
            to_if: ab.b.host_ifname.clone(),
            saddr: ab.a.addr,
            daddr: ab.b.addr,
            proto: Proto::Udp,
            ports: vec![(9, 9)],
        }],
        log_drops: false,
    };
    guard.apply().unwrap();
    let rx = b
        .enter(|| std::net::UdpSocket::bind((ab.b.addr, 9)))
        .unwrap()
        .unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let tx = a
        .enter(|| std::net::UdpSocket::bind((ab.a.addr, 0)))
        .unwrap()
        .unwrap();
    let send = |m: &str| {
        tx.send_to(m.as_bytes(), (ab.b.addr, 9)).unwrap();
    };
    let recv = || {
        let mut buf = [0u8; 16];
        rx.recv(&mut buf)
            .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    send("0");
    assert_eq!(recv().unwrap(), "0", "before the hold");

    let table = "atoll_hold_test";
    // An IPv6 address gets a table of its own family (the kernel takes the rule: the x_tables
    // target exists for both).
    let v6: std::net::IpAddr = "fd00:213::2".parse().unwrap();
    let mut hold = firewall::hold(table, &[ab.b.addr.into(), v6]).unwrap();
    assert!(tables().contains(&format!("table ip {table}")));
    assert!(tables().contains(&format!("table ip6 {table}")));
    for m in ["1", "2", "3"] {
        send(m);
    }
    // Only a wait can show an absence; that the three were held is what `pass` counts.
    let early = recv();
    assert!(early.is_err(), "a held packet arrived: {early:?}");
    // The guard rewritten meanwhile (as another project's `up` would): it keeps its hooks, so
    // the kernel does not flush the queue.
    guard.apply().unwrap();
    assert_eq!(hold.pass().unwrap(), 3, "three packets held and delivered");
    let got: Vec<String> = (0..3).map(|_| recv().unwrap()).collect();
    assert_eq!(got, ["1", "2", "3"]);
    send("4");
    assert_eq!(recv().unwrap(), "4", "after the pass");
    assert_eq!(hold.end().unwrap(), 0);
    assert!(!tables().contains(table), "{}", tables());

    // A holder that never ends (as if killed): its table stays, and a new hold takes it over.
    let stuck = firewall::hold(table, &[ab.b.addr.into()]).unwrap();
    std::mem::forget(stuck);
    let mut again = firewall::hold(table, &[ab.b.addr.into()]).unwrap();
    send("5");
    assert!(recv().is_err(), "held again");
    assert_eq!(again.pass().unwrap(), 1, "the new holder's queue has it");
    assert_eq!(recv().unwrap(), "5");
    std::mem::forget(again);
    // `unhold` removes what they left, and packets pass again.
    firewall::unhold(table).unwrap();
    assert!(!tables().contains(table), "{}", tables());
    send("6");
    assert_eq!(recv().unwrap(), "6", "after unhold");
    firewall::unhold(table).unwrap();
}

/// `sockdiag::tcp_states` looks each connection up by its 4-tuple in the namespace it is asked
/// about: both ends of a connection there are ESTABLISHED; a 4-tuple of no socket, or one of
/// another namespace, has none.
#[test]
fn tcp_states_are_looked_up_by_four_tuple_in_their_netns() {
    if !require_root() {
        return;
    }
    let mut g = Guard::new(11);
    let (a, other) = (g.netns("a"), g.netns("other"));
    let (server, client, accepted) = a
        .enter(|| {
            ip(&["link", "set", "lo", "up"]);
            let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
            let (s, _) = l.accept().unwrap();
            (l, c, s)
        })
        .unwrap();
    let (c, s) = (client.local_addr().unwrap(), accepted.local_addr().unwrap());
    let nowhere: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let conns = [(c, s), (s, c), (c, nowhere)];
    assert_eq!(
        atoll_net::sockdiag::tcp_states(&a, &conns).unwrap(),
        [
            Some(atoll_net::sockdiag::TCP_ESTABLISHED),
            Some(atoll_net::sockdiag::TCP_ESTABLISHED),
            None
        ]
    );
    assert_eq!(
        atoll_net::sockdiag::tcp_states(&other, &conns[..1]).unwrap(),
        [None]
    );
    drop((server, client, accepted));
}
