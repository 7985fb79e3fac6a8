//! The flags and verbs, as runc spells them.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// The runtime root when `--root` is not given, as runc's /run/runc.
pub const DEFAULT_ROOT: &str = "/run/atoll";

#[derive(Parser, Debug)]
#[command(
    name = "atoll",
    version,
    about = "Linux islands for many tenants, on a runc-compatible OCI runtime"
)]
pub struct Cli {
    /// Where container state lives.
    #[arg(long, global = true, default_value = DEFAULT_ROOT)]
    pub root: PathBuf,
    /// Write errors and debug lines to this file instead of stderr only (a path, as runc takes
    /// it; empty means stderr). A file that cannot be opened is an error.
    #[arg(long, global = true, value_parser = crate::flags::log_path)]
    pub log: Option<crate::flags::LogPath>,
    #[arg(long = "log-format", global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    #[arg(long, global = true)]
    pub debug: bool,
    /// Accepted for runc compatibility: cgroupsPath "slice:prefix:name" is mapped onto cgroupfs.
    #[arg(long = "systemd-cgroup", global = true)]
    pub systemd_cgroup: bool,
    /// The CRIU binary `checkpoint` and `restore` drive (default: $ATOLL_CRIU, then
    /// /usr/local/sbin/criu as scripts/criu.sh installs it, then `criu` on PATH).
    #[arg(long, global = true, hide = true)]
    pub criu: Option<PathBuf>,
    #[command(subcommand)]
    pub verb: Verb,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

#[derive(clap::Args, Debug, Clone)]
pub struct CreateArgs {
    /// Path to the bundle (the directory with config.json).
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    #[arg(long = "preserve-fds", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=crate::flags::MAX_PRESERVE_FDS))]
    pub preserve_fds: u32,
    pub id: String,
}

/// The flags `checkpoint` and `restore` share, as runc spells them.
#[derive(clap::Args, Debug, Clone)]
pub struct CriuArgs {
    /// Where CRIU writes (checkpoint) or reads (restore) the images.
    #[arg(long = "image-path", default_value = "checkpoint")]
    pub image_path: PathBuf,
    /// Where CRIU writes its log and work files (default: the image path).
    #[arg(long = "work-path")]
    pub work_path: Option<PathBuf>,
    /// Checkpoint or restore established TCP connections.
    #[arg(long = "tcp-established")]
    pub tcp_established: bool,
    /// Allow external unix sockets.
    #[arg(long = "ext-unix-sk")]
    pub ext_unix_sk: bool,
    /// Allow a shell job (a process attached to the caller's session).
    #[arg(long = "shell-job")]
    pub shell_job: bool,
    /// Handle file locks.
    #[arg(long = "file-locks")]
    pub file_locks: bool,
    /// CRIU's cgroup handling: soft, full, strict or ignore.
    #[arg(long = "manage-cgroups-mode", default_value = "soft")]
    pub manage_cgroups_mode: String,
    /// Create this namespace but do not restore its contents (only "network").
    #[arg(long = "empty-ns")]
    pub empty_ns: Option<String>,
    /// Deduplicate memory pages against the parent images.
    #[arg(long = "auto-dedup")]
    pub auto_dedup: bool,
    /// Lazy migration of memory pages (userfaultfd).
    #[arg(long = "lazy-pages")]
    pub lazy_pages: bool,
    /// An fd CRIU writes to when the lazy-pages server is ready.
    #[arg(long = "status-fd")]
    pub status_fd: Option<i32>,
    /// ADDRESS:PORT of a CRIU page server.
    #[arg(long = "page-server")]
    pub page_server: Option<String>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct CheckpointArgs {
    #[command(flatten)]
    pub criu: CriuArgs,
    /// Leave the container running after the checkpoint.
    #[arg(long = "leave-running")]
    pub leave_running: bool,
    /// Only dump memory, for a later full checkpoint (refused: needs soft-dirty tracking).
    #[arg(long = "pre-dump")]
    pub pre_dump: bool,
    /// A previous (pre-dump) image directory, relative to the image path.
    #[arg(long = "parent-path")]
    pub parent_path: Option<PathBuf>,
    /// Islands: ID is an island (ISLAND or PROJECT/ISLAND); write an island archive (CRIU
    /// images, manifest, plan) to this new directory, for `atoll restore ARCHIVE`.
    #[arg(long)]
    pub to: Option<PathBuf>,
    /// With --to: put the island's data directory in the archive (moving hosts).
    #[arg(long = "with-data", requires = "to")]
    pub with_data: bool,
    /// With --to: the island moves to the host at this address on the wire; once the archive
    /// is written its addresses are routed there and it no longer lives here.
    #[arg(long, requires = "to")]
    pub via: Option<std::net::Ipv4Addr>,
    /// With --to: print the report as JSON.
    #[arg(long, requires = "to")]
    pub json: bool,
    pub id: String,
}

#[derive(clap::Args, Debug, Clone)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub criu: CriuArgs,
    /// Path to the bundle (the directory with config.json).
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Return once the container is restored instead of waiting for it to exit.
    #[arg(short, long)]
    pub detach: bool,
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Without --detach: do not become the subreaper that reaps the restored container.
    #[arg(long = "no-subreaper")]
    pub no_subreaper: bool,
    /// For an island archive (ID is its directory): print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// A container id, or the directory of an island archive (`checkpoint ISLAND --to`).
    pub id: String,
}

#[derive(Subcommand, Debug)]
pub enum Verb {
    /// Create a container (stopped before the user's process; `start` releases it).
    Create(CreateArgs),
    /// Start a created container.
    Start { id: String },
    /// Print the runtime-spec state of a container.
    State { id: String },
    /// Send a signal to the container's init (or all its processes).
    Kill {
        #[arg(short, long)]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a stopped or created container (a created one's init is killed, as in runc).
    Delete {
        /// Kill a running or paused container first; a missing container is no error.
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Create and start; wait for it and pass its exit code through unless --detach.
    Run {
        #[arg(short, long)]
        detach: bool,
        /// Do not delete the container after it exits (it stays, stopped, until `delete`).
        /// With --detach nothing is deleted anyway.
        #[arg(long)]
        keep: bool,
        #[command(flatten)]
        create: CreateArgs,
    },
    /// Run another process in a running container.
    Exec(ExecArgs),
    /// List a container's processes.
    Ps(PsArgs),
    /// List containers.
    List {
        #[arg(short, long, value_enum, default_value = "table")]
        format: Format,
        #[arg(short, long)]
        quiet: bool,
    },
    /// Freeze every process of a container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// Change a running container's resource limits.
    Update(UpdateArgs),
    /// Print container events (resource statistics), or with --alerts follow the escape
    /// guard's alerts for this container.
    Events(EventsArgs),
    /// Print what this runtime supports (runtime-spec features.md).
    Features,
    /// Checkpoint a running container with CRIU (docs/checkpoint.md).
    Checkpoint(CheckpointArgs),
    /// Restore a container from a checkpoint (docs/checkpoint.md).
    Restore(RestoreArgs),
    /// Islands: create everything an islands file describes and start the islands.
    Up(UpArgs),
    /// Islands: remove everything a project made (also after a crash or `kill -9` of `up`).
    Down {
        /// Project name or islands file (default: every project that is up).
        project: Option<String>,
    },
    /// Islands: what is up (islands, pids, addresses, links, border-guard counters).
    Status {
        #[arg(long)]
        json: bool,
        project: Option<String>,
    },
    /// Islands: copy an island's data (or with --share, a share's directory) from the host
    /// side, never following its symlinks.
    Backup {
        /// Freeze the island (with --share: every island that mounts it) while copying.
        #[arg(long)]
        freeze: bool,
        #[arg(long)]
        json: bool,
        /// ISLAND names a `[[share]]` (SHARE or PROJECT/SHARE): copy its host directory, the
        /// files as they are on disk, whatever idmapped mounts the islands see them through.
        #[arg(long)]
        share: bool,
        /// Keep each file's owner and whole mode (as `cp -a` does), so that an island can run on
        /// the copy (its uid range follows the data dir's owner). Without it the copy is root's,
        /// modes kept without set-id bits: a backup no tenant can change.
        #[arg(long = "keep-owners")]
        keep_owners: bool,
        island: String,
        dest: PathBuf,
    },
    /// Islands: move a running island with CRIU into a fresh network namespace, pid namespace
    /// and cgroup with the same addresses, links and guard rules; its peers' TCP connections
    /// carry on. Prints each phase with its time and the outage.
    Migrate {
        #[arg(long)]
        json: bool,
        /// Where CRIU's images go (default: the project's state directory).
        #[arg(long)]
        images: Option<PathBuf>,
        /// Keep the images after a successful migration.
        #[arg(long = "keep-images")]
        keep_images: bool,
        /// ISLAND or PROJECT/ISLAND.
        island: String,
    },
    /// Islands: the container images in atoll's store (sizes, and which islands use each);
    /// `images prune` removes those no island that is up uses.
    Images {
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        verb: Option<ImagesVerb>,
    },
    /// Islands: exec, ps, events and logs for one island, by its name in the islands file.
    #[command(subcommand)]
    Island(IslandVerb),
    /// Walk an island's (or a container's) layers: process, files, network, border guard,
    /// peer; stop at the first at fault and say why, with the evidence and a fix. Exit 0: no
    /// fault; 1: a fault was found; 2: doctor could not run.
    Doctor(DoctorArgs),
    /// Islands: draw a project (islands, links with their addresses, allowed flows with live
    /// counters, drops per link, guard alerts) as SVG on stdout, or into --svg FILE, or as DOT.
    Graph(GraphArgs),
    /// Bring up the built-in example, prove each point live, print the proof, tear it down.
    Demo {
        /// Leave the demo running (take it down with `atoll down demo`).
        #[arg(long)]
        keep: bool,
    },
    /// Write a default config.json into the bundle.
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        #[arg(long)]
        rootless: bool,
    },
    /// The seccomp-notify guard: serve as the seccomp agent, or read its alerts.
    #[command(subcommand)]
    Guard(GuardVerb),
}

#[derive(Subcommand, Debug)]
pub enum ImagesVerb {
    /// Remove every image (and layer) that no island of a project that is up uses.
    Prune,
}

#[derive(Subcommand, Debug)]
pub enum GuardVerb {
    /// Run the supervisor: the OCI seccomp agent at --socket (a container's listenerPath), with
    /// a keeper process that holds every tenant's notify fd across a supervisor restart.
    /// Defaults come from the node file (/etc/atoll/config.toml) and --root.
    Serve {
        #[arg(long)]
        socket: Option<PathBuf>,
        #[arg(long)]
        alerts: Option<PathBuf>,
        /// Mode for tenants whose listenerMetadata sets none.
        #[arg(long, value_parser = ["enforce", "detect"])]
        mode: Option<String>,
        /// Leave after this many milliseconds without a tenant (what `create` asks for).
        #[arg(long = "idle-exit-ms")]
        idle_exit_ms: Option<u64>,
        /// Detach (own session, outside the caller's cgroups, stdio on --log-file) and return
        /// once the supervisor listens: how `create` starts one.
        #[arg(long)]
        daemon: bool,
        /// With --daemon: the supervisor's log.
        #[arg(long = "log-file")]
        log_file: Option<PathBuf>,
        /// Write "ready" to stdout once listening (for --daemon's wait).
        #[arg(long = "notify-ready", hide = true)]
        notify_ready: bool,
        /// The container whose `create` starts this supervisor: it registers itself, so the
        /// adoption of lost tenants passes it over.
        #[arg(long, hide = true)]
        registering: Option<String>,
    },
    /// The supervisor proper, started by `serve`'s keeper: the listener on stdin, the keeper's
    /// channel on stdout.
    #[command(hide = true)]
    Worker {
        #[arg(long)]
        socket: PathBuf,
        #[arg(long)]
        alerts: PathBuf,
        #[arg(long)]
        mode: Option<String>,
        #[arg(long = "idle-exit-ms")]
        idle_exit_ms: Option<u64>,
        #[arg(long = "keeper-pid")]
        keeper_pid: i32,
    },
    /// The effective policy (node file, defaults) and the supervisor of --root: JSON.
    Status,
    /// Print alert lines (JSON, one per event).
    Events {
        /// Keep printing new lines as they are appended.
        #[arg(short, long)]
        follow: bool,
        /// Default: the node file's alert_log, else <root>/.guard/alerts.jsonl.
        #[arg(long)]
        alerts: Option<PathBuf>,
    },
}

/// `atoll doctor`'s question.
#[derive(clap::Args, Debug)]
pub struct DoctorArgs {
    /// PROJECT/ISLAND, an island name found in one project, or a container id (with `--root`
    /// given, only a container of that root).
    pub what: String,
    /// What it cannot reach: PEER[:PORT][/PROTO] (an island of the same project) or
    /// ADDRESS:PORT[/PROTO].
    #[arg(long)]
    pub to: Option<String>,
    /// A name it cannot resolve.
    #[arg(long)]
    pub dns: Option<String>,
    #[arg(long)]
    pub json: bool,
}

/// `atoll graph`'s arguments.
#[derive(clap::Args, Debug)]
pub struct GraphArgs {
    /// A project that is up (default: the only one that is up), or an islands file to preview
    /// before `up` (no live counters).
    pub project: Option<String>,
    /// Write the SVG to FILE instead of stdout.
    #[arg(long, value_name = "FILE", conflicts_with = "dot")]
    pub svg: Option<PathBuf>,
    /// Print the graph as Graphviz DOT instead of SVG.
    #[arg(long)]
    pub dot: bool,
    /// Who lays the SVG out: Graphviz's `dot` (auto: when installed) or the built-in grid.
    /// ATOLL_GRAPH_LAYOUT (auto, graphviz, builtin) sets it when the flag is not given.
    #[arg(long, value_enum, default_value = "auto")]
    pub layout: GraphLayout,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphLayout {
    Auto,
    Graphviz,
    Builtin,
}

/// The verbs that act on one island. They live under `atoll island` so that a runc verb's
/// container id is only ever looked up in `--root`: a shim driving atoll as runc with its own
/// `--root` cannot reach a tenant's island by naming it.
#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)] // one value per process, parsed once
pub enum IslandVerb {
    /// Run a process in an island, as its user and with its capabilities.
    Exec(ExecArgs),
    /// List an island's processes.
    Ps(PsArgs),
    /// Print an island's resource statistics, or with --alerts follow the guard's alerts on it.
    Events(EventsArgs),
    /// Print an island's output (its init's stdout and stderr).
    Logs {
        #[arg(short, long)]
        follow: bool,
        /// ISLAND, or PROJECT/ISLAND when several projects have one of that name.
        island: String,
    },
}

#[derive(clap::Args, Debug)]
pub struct PsArgs {
    #[arg(short, long, value_enum, default_value = "table")]
    pub format: Format,
    pub id: String,
    /// Arguments for ps(1) (default -ef).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct EventsArgs {
    #[arg(long)]
    pub stats: bool,
    #[arg(long, default_value = "5s", allow_hyphen_values = true,
          value_parser = crate::flags::interval)]
    pub interval: std::time::Duration,
    /// Follow the escape guard's alerts (JSON lines) about this container or island.
    #[arg(long, conflicts_with = "stats")]
    pub alerts: bool,
    /// The guard's alert log (default: the island project's, or the node file's alert_log, else <root>/.guard/alerts.jsonl).
    #[arg(long = "alerts-file", requires = "alerts")]
    pub alerts_file: Option<PathBuf>,
    pub id: String,
}

#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// The islands file (see docs/islands-file.md).
    #[arg(default_value = "islands.toml")]
    pub file: PathBuf,
    /// Where projects' state lives.
    #[arg(long = "state-dir", default_value = atoll_islands::plan::STATE_ROOT)]
    pub state_dir: PathBuf,
    /// Build links and the border guard, start no island (for benchmarks).
    #[arg(long = "net-only")]
    pub net_only: bool,
    /// Islands created at once.
    #[arg(long, default_value_t = 8)]
    pub parallel: usize,
    /// This host is a migration's target: make only this island, stopped, in a locked netns,
    /// for `atoll restore ARCHIVE` (docs/migrate.md, "Between hosts").
    #[arg(long, requires = "via", conflicts_with = "net_only")]
    pub arriving: Option<String>,
    /// With --arriving: the other host's address on the wire; the project's other islands live
    /// there and their addresses are routed to it.
    #[arg(long, requires = "arriving")]
    pub via: Option<std::net::Ipv4Addr>,
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ExecArgs {
    /// A process.json (runtime-spec process object) instead of the command line.
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    #[arg(short, long)]
    pub tty: bool,
    #[arg(short, long)]
    pub detach: bool,
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    #[arg(short, long)]
    pub env: Vec<String>,
    /// uid[:gid]
    #[arg(short, long)]
    pub user: Option<String>,
    #[arg(short = 'g', long = "additional-gids")]
    pub additional_gids: Vec<u32>,
    #[arg(short, long)]
    pub cap: Vec<String>,
    #[arg(long = "no-new-privs")]
    pub no_new_privs: bool,
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    #[arg(long = "preserve-fds", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=crate::flags::MAX_PRESERVE_FDS))]
    pub preserve_fds: u32,
    #[arg(long = "process-label", hide = true)]
    pub process_label: Option<String>,
    #[arg(long = "apparmor", hide = true)]
    pub apparmor: Option<String>,
    /// Run the process in an existing sub-cgroup of the container: PATH (every hierarchy), or
    /// CONTROLLER[,CONTROLLER]:PATH (those v1 hierarchies; repeat the flag for others).
    #[arg(long = "cgroup")]
    pub cgroup: Vec<String>,
    /// Exec into a paused container too (the process stays frozen until `resume`).
    #[arg(long = "ignore-paused")]
    pub ignore_paused: bool,
    pub id: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct UpdateArgs {
    /// A JSON file with a runtime-spec linux.resources object ("-" for stdin). Flags given
    /// with it override its fields.
    #[arg(short, long)]
    pub resources: Option<PathBuf>,
    /// Memory limit in bytes, or with a unit (512m, 1.5g, 1GiB); -1 for unlimited.
    #[arg(long, allow_hyphen_values = true, value_parser = crate::flags::size)]
    pub memory: Option<i64>,
    /// Total of memory and swap, in bytes or with a unit; -1 for unlimited swap.
    #[arg(long = "memory-swap", allow_hyphen_values = true, value_parser = crate::flags::size)]
    pub memory_swap: Option<i64>,
    /// Memory reservation (soft limit), in bytes or with a unit.
    #[arg(long = "memory-reservation", allow_hyphen_values = true,
          value_parser = crate::flags::size)]
    pub memory_reservation: Option<i64>,
    /// CPU shares (relative weight against other containers).
    #[arg(long = "cpu-share", visible_alias = "cpu-shares")]
    pub cpu_shares: Option<u64>,
    /// CFS quota in microseconds per period; -1 for no limit.
    #[arg(long = "cpu-quota", allow_hyphen_values = true, value_parser = crate::flags::limit)]
    pub cpu_quota: Option<i64>,
    /// CFS period in microseconds (0 leaves it unchanged).
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<u64>,
    /// Realtime period in microseconds (0 leaves it unchanged).
    #[arg(long = "cpu-rt-period")]
    pub cpu_rt_period: Option<u64>,
    /// Realtime runtime in microseconds per realtime period; -1 for no limit.
    #[arg(long = "cpu-rt-runtime", allow_hyphen_values = true,
          value_parser = crate::flags::limit)]
    pub cpu_rt_runtime: Option<i64>,
    /// CPUs the container may use ("0-2,4").
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the container may use ("0").
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Most processes the container may have; -1 for unlimited, 0 leaves it unchanged.
    #[arg(long = "pids-limit", allow_hyphen_values = true, value_parser = crate::flags::limit)]
    pub pids_limit: Option<i64>,
    /// Block IO weight, 10 to 1000 (0 leaves it unchanged).
    #[arg(long = "blkio-weight", value_parser = crate::flags::blkio_weight)]
    pub blkio_weight: Option<u16>,
    pub id: String,
}
