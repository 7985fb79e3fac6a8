//! Real services in islands, and the small things they expect: an island's user reopens its own
//! /dev/stdout, `tmpfs` and `writable` give it state dirs without a shell wrapper, and nginx and
//! PostgreSQL from the host's /usr run as tenants (docs/islands-file.md, "Services").

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::project::{state_dir, Project, BB};
use common::{can_run, can_run_also, Bundle};

/// The newest PostgreSQL server Debian's packages installed (15 on Debian 12).
fn pg_bin() -> Option<String> {
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|v| Path::new(&format!("/usr/lib/postgresql/{v}/bin/postgres")).exists())
        .collect();
    versions.sort();
    versions
        .last()
        .map(|v| format!("/usr/lib/postgresql/{v}/bin"))
}
const NGINX: &str = "/usr/sbin/nginx";

/// Poll `f` until it returns Some, or panic with `what` and the last value seen.
fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) if Instant::now() > deadline => {
                panic!("{what}: gave up after {secs}s: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// A host dir for a test's config files, removed when the test ends, also when it fails.
struct ConfDir(std::path::PathBuf);

impl ConfDir {
    fn new(what: &str) -> ConfDir {
        let d = std::env::temp_dir().join(format!("svc-{what}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        ConfDir(d)
    }
}

impl Drop for ConfDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn logs(p: &Project, island: &str) -> String {
    let (_, out, err) = p.atoll(&["island", "logs", &format!("{}/{island}", p.name)]);
    format!("{out}{err}")
}

/// The island's host uid and gid, as its plan records them.
fn host_ids(p: &Project, island: &str, uid: u32) -> (u32, u32) {
    let base = p.island_plan(island)["host_base"].as_u64().unwrap() as u32;
    (base + uid, base + uid)
}

#[test]
fn svc_an_island_user_reopens_its_stdout_and_no_one_else_reads_it() {
    if !can_run() {
        return;
    }
    let p = Project::started(
        "svco",
        &format!(
            "[[island]]\nname = \"out\"\ncommand = [\"{BB}\", \"sh\", \"-c\", \"echo svc-reopened-out >> /dev/stdout && echo svc-reopened-err >> /dev/stderr; exec {BB} sleep 1000\"]\n\n[[island]]\nname = \"peer\"\ncommand = [\"{BB}\", \"sleep\", \"1000\"]\n"
        ),
    );
    let log = wait_for("the island's lines in its log", 10, || {
        let l = logs(&p, "out");
        (l.contains("svc-reopened-out") && l.contains("svc-reopened-err"))
            .then_some(l.clone())
            .ok_or(l)
    });
    assert!(!log.contains("Permission denied"), "{log}");
    // The log belongs to the island's user as the host sees it, and to no one else.
    let file = Path::new("/var/log/atoll/islands")
        .join(&p.name)
        .join("out.log");
    let m = std::fs::metadata(&file).unwrap();
    assert_eq!((m.uid(), m.gid()), host_ids(&p, "out", 1000), "{file:?}");
    assert_eq!(m.mode() & 0o777, 0o600, "{file:?}");
    // Its own host uid can read it; the peer island's host uid cannot.
    let read_as = |(uid, gid): (u32, u32)| {
        std::process::Command::new("setpriv")
            .args([
                &format!("--reuid={uid}"),
                &format!("--regid={gid}"),
                "--clear-groups",
                "cat",
            ])
            .arg(&file)
            .output()
            .unwrap()
    };
    let own = read_as(host_ids(&p, "out", 1000));
    assert!(
        String::from_utf8_lossy(&own.stdout).contains("svc-reopened-out"),
        "{own:?}"
    );
    let peer = read_as(host_ids(&p, "peer", 1000));
    assert!(!peer.status.success(), "{peer:?}");
    assert!(
        String::from_utf8_lossy(&peer.stderr).contains("Permission denied"),
        "{peer:?}"
    );
}

#[test]
fn svc_plain_run_gives_stdio_to_the_process_user() {
    if !can_run() {
        return;
    }
    // As runc: a non-root process can reopen the pipe it was given as stdout.
    let mut b = Bundle::new("svc-stdio");
    b.config["process"]["user"] = serde_json::json!({"uid": 1000, "gid": 1000});
    b.save();
    let out = b.sh("echo svc-via-dev-stdout > /dev/stdout && stat -c %u /proc/self/fd/1");
    assert!(out.contains("svc-via-dev-stdout"), "{out}");
    assert!(out.trim_end().ends_with("1000"), "{out}");
    // In a user namespace where the pipe's owner (host root) is not mapped, the chown cannot
    // happen; the container still runs and writes through the fd it holds (runc's rule).
    let mut u = Bundle::new("svc-stdio-userns");
    u.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"type": "user"}));
    u.config["linux"]["uidMappings"] =
        serde_json::json!([{"containerID": 0, "hostID": 210000, "size": 65536}]);
    u.config["linux"]["gidMappings"] =
        serde_json::json!([{"containerID": 0, "hostID": 210000, "size": 65536}]);
    u.config["process"]["user"] = serde_json::json!({"uid": 1000, "gid": 1000});
    u.save();
    let _ = std::process::Command::new("chown")
        .args(["-R", "210000:210000"])
        .arg(u.rootfs())
        .status();
    let out = u.sh("echo svc-userns-fd");
    assert!(out.contains("svc-userns-fd"), "{out}");
    // A file the container's root owns (mapped) is handed on to the user, who reopens it.
    let file = u.dir.join("svc-out.log");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&file)
        .unwrap();
    std::os::unix::fs::fchown(&f, Some(210000), Some(210000)).unwrap();
    u.set_args(&[
        "sh",
        "-c",
        "echo svc-mapped >> /dev/stdout && stat -c %u /proc/self/fd/1",
    ]);
    let id = u.id("svc-mapped");
    let st = u
        .atoll()
        .args(["run", "--bundle"])
        .arg(&u.dir)
        .arg(&id)
        .stdout(f)
        .status()
        .unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(st.success(), "{text}");
    assert_eq!(text, "svc-mapped\n1000\n");
    assert_eq!(std::fs::metadata(&file).unwrap().uid(), 211000);
}

#[test]
fn svc_tmpfs_and_writable_dirs_need_no_wrapper_and_writable_ones_last() {
    if !can_run() {
        return;
    }
    let conf_dir = ConfDir::new("conf");
    let conf = &conf_dir.0;
    std::fs::write(conf.join("app.conf"), "svc-config\n").unwrap();
    let body = format!(
        "[[island]]\nname = \"app\"\ncommand = [\"{BB}\", \"sleep\", \"1000\"]\nbinds = [\"{}:/etc/svcapp\"]\ntmpfs = [\"/run/svcapp\"]\nwritable = [\"/var/lib/svcapp\", \"/srv/svc/state\"]\n",
        conf.display()
    );
    let mut p = Project::started("svcw", &body);
    let script = "cat /etc/svcapp/app.conf && echo t > /run/svcapp/pid && echo kept > /var/lib/svcapp/f && echo kept2 > /srv/svc/state/g && stat -c '%u %a' /run/svcapp /var/lib/svcapp && ! touch /etc/svcapp/x 2>/dev/null && echo ro-ok";
    let (code, out) = p.exec("app", &[BB, "sh", "-c", script]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("svc-config"), "{out}");
    assert!(out.contains("1000 755\n1000 700"), "{out}");
    assert!(out.contains("ro-ok"), "{out}");
    // On the host, the writable dirs sit in the data root, owned by the island's user.
    let kept = p.dir.join("data/.writable/app/var/lib/svcapp");
    let m = std::fs::metadata(&kept).unwrap();
    assert_eq!((m.uid(), m.gid()), host_ids(&p, "app", 1000));
    assert_eq!(m.mode() & 0o777, 0o700);
    assert_eq!(std::fs::read_to_string(kept.join("f")).unwrap(), "kept\n");
    // down/up: writable dirs keep what the island wrote, a tmpfs starts empty.
    let (code, out, err) = p.atoll(&["down", &p.name]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = p.up();
    assert_eq!(code, 0, "{out}{err}");
    let (code, out) = p.exec(
        "app",
        &[
            BB,
            "sh",
            "-c",
            "cat /var/lib/svcapp/f /srv/svc/state/g; ls /run/svcapp | wc -l",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, "kept\nkept2\n0\n");
    // A new writable dir below one the island owns is refused: its entries are the tenant's
    // to swap for symlinks between the check and the mount.
    let (code, out) = p.exec("app", &[BB, "ln", "-s", "/", "/var/lib/svcapp/inner"]);
    assert_eq!(code, 0, "{out}");
    let (code, out, err) = p.atoll(&["down", &p.name]);
    assert_eq!(code, 0, "{out}{err}");
    let text = std::fs::read_to_string(&p.file)
        .unwrap()
        .replace("\"/var/lib/svcapp\", ", "\"/var/lib/svcapp/inner/x\", ");
    std::fs::write(&p.file, text).unwrap();
    let (code, out, err) = p.up();
    assert_ne!(code, 0, "{out}");
    assert!(
        err.contains("island app: writable /var/lib/svcapp/inner/x: "),
        "{err}"
    );
    assert!(
        err.contains("/var/lib/svcapp (above it) belongs to uid"),
        "{err}"
    );
    assert!(!Path::new("/x").exists());
    // The same with a plain dir of the tenant's there: refused for its owner.
    std::fs::remove_file(kept.join("inner")).unwrap();
    std::fs::create_dir(kept.join("inner")).unwrap();
    std::os::unix::fs::chown(kept.join("inner"), Some(m.uid()), Some(m.gid())).unwrap();
    let (code, out, err) = p.up();
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("not to root"), "{err}");
    assert!(!kept.join("inner/x").exists(), "nothing is made below it");
}

#[test]
fn svc_bad_state_paths_name_the_field_and_make_nothing() {
    if !can_run() {
        return;
    }
    for (bad, says) in [
        (
            "tmpfs = [\"/usr/x\"]",
            "island[0] (a).tmpfs[0]: \"/usr/x\" cannot be mounted on",
        ),
        (
            "writable = [\"/var/lib/a\", \"/var/lib/a/b\"]",
            "island[0] (a).writable[1]: /var/lib/a/b meets writable /var/lib/a",
        ),
        (
            "writable = [\"/etc/passwd\"]",
            "island[0] (a).writable[0]: \"/etc/passwd\"",
        ),
    ] {
        let mut p = Project::new(
            "svcb",
            &format!("[[island]]\nname = \"a\"\ncommand = [\"{BB}\", \"sleep\", \"9\"]\n{bad}\n"),
        );
        let (code, out, err) = p.up();
        assert_ne!(code, 0, "{bad}: {out}");
        assert!(err.contains("islands.toml:6:"), "the line of {bad}: {err}");
        assert!(err.contains(says), "{bad}: {err}");
        assert!(!p.dir.join("data").exists(), "{bad}: a data root was made");
        assert!(!state_dir(&p.name).exists(), "{bad}: a state dir was made");
    }
}

/// nginx from the host, as uid 1000 with CAP_NET_BIND_SERVICE on port 80, its config bound
/// from the host, logging to /dev/stdout: a peer's request through the guard is in its log.
#[test]
fn svc_nginx_logs_a_peers_request_to_stdout() {
    let missing = (!Path::new(NGINX).exists())
        .then(|| format!("{NGINX} is missing (apt-get install nginx-light)"));
    if !can_run_also(missing) {
        return;
    }
    let conf_dir = ConfDir::new("nginx");
    let conf = &conf_dir.0;
    std::fs::write(
        conf.join("nginx.conf"),
        "worker_processes 1;\npid /run/nginx/nginx.pid;\nerror_log /dev/stderr info;\nevents { worker_connections 64; }\nhttp {\n  access_log /dev/stdout;\n  server {\n    listen 80;\n    location / { return 200 \"svc-nginx-ok\\n\"; }\n  }\n}\n",
    )
    .unwrap();
    let body = format!(
        "[[island]]\nname = \"web\"\ncommand = [\"{NGINX}\", \"-g\", \"daemon off;\"]\ncaps = [\"CAP_NET_BIND_SERVICE\"]\nbinds = [\"{}:/etc/nginx\"]\ntmpfs = [\"/run/nginx\"]\nwritable = [\"/var/lib/nginx\", \"/var/log/nginx\"]\n\n[[island]]\nname = \"client\"\ncommand = [\"{BB}\", \"sleep\", \"1000\"]\n\n[[link]]\nbetween = [\"web\", \"client\"]\n\n[[allow]]\nfrom = \"client\"\nto = \"web\"\nproto = \"tcp\"\nports = [80]\n",
        conf.display()
    );
    let p = Project::started("svcn", &body);
    let web = p.addr("web", "client");
    let client = p.addr("client", "web");
    let url = format!("http://{web}/svc-{}", std::process::id());
    let got = wait_for("nginx answers the client", 20, || {
        let (code, out) = p.exec("client", &[BB, "wget", "-q", "-O", "-", &url]);
        (code == 0 && out.contains("svc-nginx-ok"))
            .then_some(out.clone())
            .ok_or(format!(
                "exit {code}: {out}\nweb's log: {}",
                logs(&p, "web")
            ))
    });
    assert!(got.contains("svc-nginx-ok"));
    let line = wait_for("the request in web's log", 10, || {
        let l = logs(&p, "web");
        l.lines()
            .find(|x| x.contains(&format!("GET /svc-{}", std::process::id())))
            .map(str::to_string)
            .ok_or(l)
    });
    assert!(
        line.starts_with(&client),
        "the client's address leads: {line}"
    );
    assert!(!logs(&p, "web").contains("Permission denied"));
    assert!(p.counter("allow:client->web:tcp/80") > 0);
}

/// The shop with Debian's PostgreSQL 15: `db` runs initdb + postgres in its data dir, `backup`
/// reaches it through the guard with psql and pg_dump, `atoll backup --freeze` copies the live
/// cluster, and a second `db` started on the copy answers the same query.
#[test]
fn svc_postgres_shop_dump_freeze_backup_and_restore() {
    let bin = pg_bin();
    let missing = bin.is_none().then(|| {
        "no PostgreSQL server in /usr/lib/postgresql/*/bin (apt-get install postgresql)".to_string()
    });
    if !can_run_also(missing) {
        return;
    }
    let pg = bin.expect("checked above");
    let pg = pg.as_str();
    let pid = std::process::id();
    let db_island = |cmd_extra: &str| {
        format!(
            "[[island]]\nname = \"db\"\ncommand = [\"/bin/sh\", \"-c\", \"{cmd_extra}exec {pg}/postgres -D /data/pg -k /run/postgresql -c listen_addresses='*'\"]\ntmpfs = [\"/run/postgresql\"]\nenv = {{ LC_ALL = \"C\" }}\n"
        )
    };
    let init = format!(
        "test -f /data/pg/PG_VERSION || {{ {pg}/initdb -D /data/pg -U postgres --auth=trust --no-locale -E UTF8 >/data/initdb.log && echo 'host all all 0.0.0.0/0 trust' >> /data/pg/pg_hba.conf; }}; "
    );
    let shop = format!(
        "{}\n[[island]]\nname = \"backup\"\ncommand = [\"{BB}\", \"sleep\", \"100000\"]\n\n[[link]]\nbetween = [\"db\", \"backup\"]\n\n[[allow]]\nfrom = \"backup\"\nto = \"db\"\nproto = \"tcp\"\nports = [5432]\n",
        db_island(&init)
    );
    let p = Project::started("svcp", &shop);
    let db = p.addr("db", "backup");
    let psql = |p: &Project, from: &str, host: &str, sql: &str| {
        p.exec(
            from,
            &[
                &format!("{pg}/psql"),
                "-h",
                host,
                "-U",
                "postgres",
                "-At",
                "-c",
                sql,
            ],
        )
    };
    wait_for("postgres accepts the backup island", 120, || {
        let (code, out) = psql(&p, "backup", &db, "select 1");
        (code == 0)
            .then_some(())
            .ok_or(format!("{out}\ndb's log: {}", logs(&p, "db")))
    });
    let row = format!("svc-row-{pid}");
    let (code, out) = psql(
        &p,
        "backup",
        &db,
        &format!("create table shop(item text); insert into shop values ('{row}')"),
    );
    assert_eq!(code, 0, "{out}");
    let (code, dump) = p.exec(
        "backup",
        &[
            &format!("{pg}/pg_dump"),
            "-h",
            &db,
            "-U",
            "postgres",
            "-t",
            "shop",
            "postgres",
        ],
    );
    assert_eq!(code, 0, "{dump}");
    assert!(
        dump.contains("CREATE TABLE public.shop") && dump.contains(&row),
        "{dump}"
    );
    assert!(p.counter("allow:backup->db:tcp/5432") > 0);

    // A frozen copy of the live cluster, restored as the data of a `db` in another project.
    let restored = Project::new("svcr", &db_island(""));
    std::fs::create_dir_all(restored.dir.join("data")).unwrap();
    let copy = restored.dir.join("data/db");
    let (code, out, err) = p.atoll(&[
        "backup",
        "--freeze",
        "--keep-owners",
        &format!("{}/db", p.name),
        copy.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "backup --freeze --keep-owners: {out}{err}");
    assert!(copy.join("pg/PG_VERSION").exists(), "{out}");
    // The copy keeps the island's owners, so the restored island runs as the original's uid
    // range once the original is down (the range follows the data dir's owner, plan.rs): no
    // chown by hand.
    let (uid, gid) = host_ids(&p, "db", 1000);
    let st = std::fs::metadata(copy.join("pg/PG_VERSION")).unwrap();
    assert_eq!((st.uid(), st.gid()), (uid, gid), "the copy keeps the owner");
    let (code, out, err) = p.atoll(&["down", &p.name]);
    assert_eq!(code, 0, "{out}{err}");
    let mut restored = restored;
    let (code, out, err) = restored.up();
    assert_eq!(code, 0, "up on the copy: {out}{err}");
    let answer = wait_for("the restored db answers", 120, || {
        let (code, out) = restored.exec(
            "db",
            &[
                &format!("{pg}/psql"),
                "-h",
                "/run/postgresql",
                "-U",
                "postgres",
                "-At",
                "-c",
                "select item from shop",
            ],
        );
        (code == 0)
            .then_some(out.clone())
            .ok_or(format!("{out}\ndb's log: {}", logs(&restored, "db")))
    });
    assert_eq!(answer.trim(), row);
}
