//! Compiling a component in a child process: the gateway side (fairness,
//! spawn, kill at the deadline, reading the outcome) and the child side
//! (`weir compile-plugin`: lower priority, kernel limits, then wasmtime).
//!
//! Why a process: a hostile component can make Cranelift take minutes and
//! gigabytes, and wasmtime leaves compile-time denial of service to the
//! embedder. In a child the kernel enforces the memory and CPU limits, a
//! timeout really ends the work (a thread cannot be killed), and what the
//! compile allocated goes back to the system when the child exits instead of
//! staying in the gateway's heap.
//!
//! Protocol: the gateway writes the component on the child's stdin and closes
//! it; the child writes [`MAGIC`] at once, then (on success) the artifact, on
//! stdout; diagnostics go to stderr; the exit code says what happened.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::sync::Semaphore;

use super::upload::UploadError;
use crate::config::PluginsConfig;

/// The hidden subcommand of the `weir` binary that compiles one component.
pub const SUBCOMMAND: &str = "compile-plugin";
/// First bytes on the child's stdout, written before any work: output without
/// them means `plugins.compiler` is not a weir binary.
const MAGIC: &[u8; 8] = b"WEIRAOT1";
/// Exit codes of the child (clap exits 2 on bad arguments, a panic 101).
const EXIT_COMPILE_FAILED: i32 = 10;
const EXIT_SETUP_FAILED: i32 = 11;
const EXIT_OUT_OF_MEMORY: i32 = 12;
/// Diagnostics kept from the child's stderr (the rest is read and dropped).
const MAX_STDERR: usize = 16 * 1024;
/// The child's nice value: a compile yields the CPU to serving triggers.
const NICE: i32 = 19;
/// The child's stderr line with its resource use (read by the gateway's log).
const STATS: &str = "weir-compile-stats";

/// Arguments of `weir compile-plugin`. The engine's two parameters make the
/// child build the same engine as the host, so the artifact deserializes
/// there (same `precompile_compatibility_hash`).
#[derive(Debug, Clone, clap::Args)]
pub struct CompileArgs {
    #[arg(long)]
    pub pool_concurrency: u32,
    #[arg(long)]
    pub pool_memory_bytes: u64,
    /// Memory the compile may allocate beyond the engine's setup, MiB.
    #[arg(long)]
    pub memory_mb: u64,
    /// CPU seconds (all threads) before the kernel stops the child.
    #[arg(long)]
    pub cpu_secs: u64,
    /// Largest input accepted on stdin.
    #[arg(long)]
    pub max_input_bytes: u64,
}

/// The gateway's side: compiles at most `compile_concurrency` components at
/// once and one per tenant, each in its own limited child process.
pub struct Compiler {
    program: PathBuf,
    pool_concurrency: u32,
    pool_memory_bytes: u64,
    timeout: Duration,
    memory_mb: u64,
    slots: Semaphore,
    /// Tenants with a compile queued or running.
    busy: Mutex<HashSet<String>>,
}

/// A tenant's one compile; dropping it (also when the request is dropped) frees the tenant.
struct Turn<'a> {
    busy: &'a Mutex<HashSet<String>>,
    tenant: String,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.busy.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.tenant);
    }
}

/// What the child said, before it is judged.
struct Exchange {
    status: ExitStatus,
    stdout: Vec<u8>,
    stdout_overflow: bool,
    stderr: String,
}

impl Compiler {
    /// `pool_*` are the host engine's parameters (see [`super::engine::build`]).
    pub fn new(limits: &PluginsConfig, pool_concurrency: u32, pool_memory_bytes: u64) -> Compiler {
        Compiler {
            program: limits.compiler.clone().unwrap_or_else(running_executable),
            pool_concurrency,
            pool_memory_bytes,
            timeout: Duration::from_millis(limits.compile_timeout_ms),
            memory_mb: limits.compile_memory_mb,
            slots: Semaphore::new(limits.compile_concurrency as usize),
            busy: Mutex::new(HashSet::new()),
        }
    }

    /// Compiles `wasm` into an artifact of the host's engine. A tenant with a
    /// compile already queued or running is refused (not queued), so one
    /// tenant holds at most one place in the queue and one slot.
    pub async fn compile(&self, tenant: &str, wasm: &[u8]) -> Result<Vec<u8>, UploadError> {
        let _turn = self.claim(tenant)?;
        let _slot = self.slots.acquire().await.map_err(|_| UploadError::CompilerUnavailable("the plugin host is shutting down".into()))?;
        let started = Instant::now();
        let mut child = self.spawn(wasm.len())?;
        let pid = child.id();
        let outcome = tokio::time::timeout(self.timeout, exchange(&mut child, wasm, self.max_artifact_bytes())).await;
        // No compiler outlives its compile: after a timeout, an oversized
        // artifact or a failed read, the child is killed and reaped here.
        if child.try_wait().ok().flatten().is_none() {
            let _ = child.kill().await;
        }
        let result = match outcome {
            Err(_) => Err(UploadError::CompileTimeout { ms: self.timeout.as_millis() as u64 }),
            Ok(Err(e)) => Err(UploadError::CompilerUnavailable(format!("talking to the plugin compiler failed: {e}"))),
            Ok(Ok(x)) => {
                log_stats(tenant, pid, started, &x.stderr);
                self.judge(x)
            }
        };
        if let Err(e) = &result {
            tracing::info!(tenant, pid, elapsed_ms = started.elapsed().as_millis() as u64, error = %e, "plugin compile failed");
        }
        result
    }

    fn claim(&self, tenant: &str) -> Result<Turn<'_>, UploadError> {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        if !busy.insert(tenant.to_string()) {
            return Err(UploadError::CompileBusy(tenant.to_string()));
        }
        Ok(Turn { busy: &self.busy, tenant: tenant.to_string() })
    }

    /// CPU seconds the child may use: twice the wall-clock limit on every
    /// core (compilation is parallel). The gateway's timeout comes first;
    /// this bounds a child whose gateway is gone or late.
    fn cpu_secs(&self) -> u64 {
        let cores = std::thread::available_parallelism().map(|n| n.get() as u64).unwrap_or(1);
        (2 * self.timeout.as_millis()).div_ceil(1000) as u64 * cores
    }

    /// An artifact cannot be larger than the memory the compile had.
    fn max_artifact_bytes(&self) -> usize {
        (self.memory_mb as usize).saturating_mul(1024 * 1024) + MAGIC.len()
    }

    /// `input_len`: the child reads exactly this much (a stored component
    /// may be larger than today's `max_component_bytes`).
    fn spawn(&self, input_len: usize) -> Result<Child, UploadError> {
        Command::new(&self.program)
            .arg(SUBCOMMAND)
            .arg("--pool-concurrency")
            .arg(self.pool_concurrency.to_string())
            .arg("--pool-memory-bytes")
            .arg(self.pool_memory_bytes.to_string())
            .arg("--memory-mb")
            .arg(self.memory_mb.to_string())
            .arg("--cpu-secs")
            .arg(self.cpu_secs().to_string())
            .arg("--max-input-bytes")
            .arg(input_len.to_string())
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                UploadError::CompilerUnavailable(format!(
                    "cannot start the plugin compiler {} ({e}); set plugins.compiler to the weir binary",
                    self.program.display()
                ))
            })
    }

    /// Turns the child's exit into the artifact or an error naming the limit.
    fn judge(&self, x: Exchange) -> Result<Vec<u8>, UploadError> {
        let Exchange { status, mut stdout, stdout_overflow, stderr } = x;
        let detail = diagnostics(&stderr);
        if !stdout.starts_with(MAGIC) {
            return Err(UploadError::CompilerUnavailable(format!(
                "{} is not a weir binary that compiles plugins ({status}: {detail}); set plugins.compiler to the weir binary",
                self.program.display()
            )));
        }
        let memory = || UploadError::CompileMemory { mb: self.memory_mb };
        match (status.code(), status.signal()) {
            (Some(0), _) if stdout_overflow => Err(memory()),
            (Some(0), _) => {
                stdout.drain(..MAGIC.len());
                Ok(stdout)
            }
            (Some(EXIT_COMPILE_FAILED), _) => Err(UploadError::Compile(detail)),
            (Some(EXIT_OUT_OF_MEMORY), _) => Err(memory()),
            // Rust's allocation-failure handler prints this, then aborts.
            (_, Some(libc::SIGABRT)) if stderr.contains("memory allocation of") => Err(memory()),
            (_, Some(libc::SIGXCPU)) => Err(UploadError::CompileCpu { secs: self.cpu_secs(), ms: self.timeout.as_millis() as u64 }),
            (Some(101), _) => Err(UploadError::Compile(format!("the compiler crashed on this component: {detail}"))),
            _ => Err(UploadError::CompilerUnavailable(format!("the plugin compiler ended with {status}: {detail}"))),
        }
    }
}

/// Feeds the component, reads both outputs to the end (so the child never
/// blocks on a full pipe), then reaps the child.
async fn exchange(child: &mut Child, wasm: &[u8], max_stdout: usize) -> std::io::Result<Exchange> {
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let write = async move {
        if let Some(mut stdin) = stdin {
            // A child that exits early (bad input, limits) closes its end:
            // its exit status tells why, not this write error.
            let _ = stdin.write_all(wasm).await;
        }
    };
    let ((), out, err) = tokio::join!(write, read_capped(stdout, max_stdout), read_capped(stderr, MAX_STDERR));
    let ((stdout, stdout_overflow), (stderr, _)) = (out?, err?);
    let status = child.wait().await?;
    Ok(Exchange { status, stdout, stdout_overflow, stderr: String::from_utf8_lossy(&stderr).into_owned() })
}

/// Reads to the end, keeping at most `cap` bytes; true when more came.
async fn read_capped(reader: Option<impl AsyncRead + Unpin>, cap: usize) -> std::io::Result<(Vec<u8>, bool)> {
    let Some(mut reader) = reader else {
        return Ok((Vec::new(), false));
    };
    let (mut kept, mut overflow, mut buf) = (Vec::new(), false, vec![0u8; 64 * 1024]);
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return Ok((kept, overflow));
        }
        let room = cap.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
        overflow |= n > room;
    }
}

/// The child's stderr without its statistics line, bounded for messages.
fn diagnostics(stderr: &str) -> String {
    let text: Vec<&str> = stderr.lines().filter(|l| !l.starts_with(STATS)).collect();
    let text = text.join("\n");
    let text = text.trim();
    if text.is_empty() { "no diagnostics".into() } else { crate::trigger::note(text) }
}

fn log_stats(tenant: &str, pid: Option<u32>, started: Instant, stderr: &str) {
    let Some(line) = stderr.lines().find(|l| l.starts_with(STATS)) else {
        return;
    };
    let mut fields = line.split_whitespace().skip(1).map(|v| v.parse::<u64>().unwrap_or(0));
    let (peak_rss_kib, cpu_ms) = (fields.next().unwrap_or(0), fields.next().unwrap_or(0));
    tracing::info!(tenant, pid, elapsed_ms = started.elapsed().as_millis() as u64, peak_rss_kib, cpu_ms, "plugin compiler finished");
}

/// The default compiler: this very executable. `/proc/self/exe` names it even
/// when the file was replaced on disk since (an upgrade in place), so the
/// child is always the same build as the engine that loads its artifact.
fn running_executable() -> PathBuf {
    let proc_exe = PathBuf::from("/proc/self/exe");
    if proc_exe.exists() {
        return proc_exe;
    }
    std::env::current_exe().unwrap_or_else(|_| PathBuf::from("weir"))
}

/// The child: `weir compile-plugin`.
pub fn child_main(args: &CompileArgs) -> std::process::ExitCode {
    // The codes are small constants.
    std::process::ExitCode::from(run_child(args) as u8)
}

fn run_child(args: &CompileArgs) -> i32 {
    let mut stdout = std::io::stdout().lock();
    if stdout.write_all(MAGIC).and_then(|()| stdout.flush()).is_err() {
        return EXIT_SETUP_FAILED;
    }
    if let Err(e) = contain(args.cpu_secs) {
        eprintln!("cannot limit the compiler process: {e}");
        return EXIT_SETUP_FAILED;
    }
    let mut wasm = Vec::new();
    match std::io::stdin().lock().take(args.max_input_bytes.saturating_add(1)).read_to_end(&mut wasm) {
        Ok(n) if n as u64 > args.max_input_bytes => {
            eprintln!("the component is over {} bytes", args.max_input_bytes);
            return EXIT_SETUP_FAILED;
        }
        Ok(_) => {}
        Err(e) => {
            eprintln!("cannot read the component from stdin: {e}");
            return EXIT_SETUP_FAILED;
        }
    }
    let engine = match super::engine::build(args.pool_concurrency, args.pool_memory_bytes) {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_SETUP_FAILED;
        }
    };
    // The limit counts from here: the engine's fixed setup (its pool's
    // writable bookkeeping) and the input are not the compile's doing.
    if let Err(e) = limit_data(args.memory_mb) {
        eprintln!("cannot limit the compiler's memory: {e}");
        return EXIT_SETUP_FAILED;
    }
    let result = engine.precompile_component(&wasm);
    drop(wasm);
    match result {
        Ok(artifact) => {
            if stdout.write_all(&artifact).and_then(|()| stdout.flush()).is_err() {
                return EXIT_SETUP_FAILED;
            }
            let (peak_rss_kib, cpu_ms) = usage();
            eprintln!("{STATS} {peak_rss_kib} {cpu_ms}");
            0
        }
        Err(e) => {
            let message = format!("{e:#}");
            eprintln!("{message}");
            // Allocation failures inside wasmtime that surface as errors.
            if message.contains("os error 12") || message.contains("out of memory") { EXIT_OUT_OF_MEMORY } else { EXIT_COMPILE_FAILED }
        }
    }
}

/// Lowest priority, first in line for the OOM killer, no core dumps, a CPU
/// limit, and death with the gateway.
fn contain(cpu_secs: u64) -> std::io::Result<()> {
    // SAFETY: plain syscalls on this process, with valid arguments and no
    // pointers kept; they run before any other thread of the child exists, so
    // every compiler thread inherits the nice value.
    unsafe {
        #[cfg(target_os = "linux")]
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::setpriority(libc::PRIO_PROCESS as _, 0, NICE) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        set_limit(libc::RLIMIT_CORE, 0, 0)?;
        // SIGXCPU at the soft limit, SIGKILL one second later.
        set_limit(libc::RLIMIT_CPU, cpu_secs.max(1), cpu_secs.max(1) + 1)?;
    }
    // Best effort: when memory runs out machine-wide, the compile goes first.
    let _ = std::fs::write("/proc/self/oom_score_adj", "1000");
    Ok(())
}

/// Caps the data segment (heap and private writable mappings: what Cranelift
/// allocates) at what is in use now plus `mb`. Not RLIMIT_AS: the engine's
/// pool reserves address space it never touches.
fn limit_data(mb: u64) -> std::io::Result<()> {
    let in_use = data_in_use().unwrap_or(0);
    let limit = in_use.saturating_add(mb.saturating_mul(1024 * 1024));
    set_limit(libc::RLIMIT_DATA, limit, limit)
}

/// VmData of this process, bytes.
fn data_in_use() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmData:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(target_os = "linux")]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(target_os = "linux"))]
type Resource = libc::c_int;

fn set_limit(resource: Resource, soft: u64, hard: u64) -> std::io::Result<()> {
    let limit = libc::rlimit { rlim_cur: soft as libc::rlim_t, rlim_max: hard as libc::rlim_t };
    // SAFETY: setrlimit reads the struct we pass and keeps no pointer.
    if unsafe { libc::setrlimit(resource, &limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Peak RSS (KiB) and CPU time (ms) of this process.
fn usage() -> (u64, u64) {
    // SAFETY: getrusage fills the zeroed struct we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return (0, 0);
    }
    let ms = |t: libc::timeval| t.tv_sec as u64 * 1000 + t.tv_usec as u64 / 1000;
    (u.ru_maxrss as u64, ms(u.ru_utime) + ms(u.ru_stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiler() -> Compiler {
        let limits = PluginsConfig { compile_memory_mb: 64, compile_timeout_ms: 1500, ..PluginsConfig::default() };
        Compiler::new(&limits, 4, 1 << 20)
    }

    fn exit(raw: i32, stdout: &[u8], stderr: &str) -> Exchange {
        Exchange { status: ExitStatus::from_raw(raw), stdout: stdout.to_vec(), stdout_overflow: false, stderr: stderr.to_string() }
    }

    /// A wait status: exit code in the second byte, or the signal number.
    fn code(c: i32) -> i32 {
        c << 8
    }

    #[test]
    fn each_way_a_child_ends_maps_to_its_error() {
        let c = compiler();
        let magic_and = |rest: &[u8]| [MAGIC.as_slice(), rest].concat();
        let ok = c.judge(exit(code(0), &magic_and(b"artifact"), &format!("{STATS} 1 2\n")));
        assert_eq!(ok.expect("artifact"), b"artifact");
        let cases: Vec<(Exchange, &str)> = vec![
            (exit(code(EXIT_COMPILE_FAILED), MAGIC, "bad opcode"), "compile_failed"),
            (exit(code(EXIT_OUT_OF_MEMORY), MAGIC, "os error 12"), "compile_memory"),
            (exit(libc::SIGABRT, MAGIC, "memory allocation of 4096 bytes failed"), "compile_memory"),
            (exit(libc::SIGXCPU, MAGIC, ""), "compile_timeout"),
            (exit(code(101), MAGIC, "panicked at"), "compile_failed"),
            (exit(code(EXIT_SETUP_FAILED), MAGIC, "no engine"), "compiler_unavailable"),
            (exit(libc::SIGABRT, MAGIC, "something else"), "compiler_unavailable"),
            // Not weir at all: no magic, whatever the status.
            (exit(code(0), b"", ""), "compiler_unavailable"),
            (exit(code(EXIT_COMPILE_FAILED), b"usage", ""), "compiler_unavailable"),
        ];
        for (x, want) in cases {
            let status = x.status;
            let err = c.judge(x).expect_err("an error");
            assert_eq!(err.status_and_code().1, want, "{status}: {err}");
        }
    }

    #[test]
    fn limit_errors_name_their_key() {
        let c = compiler();
        let memory = c.judge(exit(libc::SIGABRT, MAGIC, "memory allocation of 1 bytes failed")).expect_err("memory");
        assert!(memory.to_string().contains("64 MiB") && memory.to_string().contains("plugins.compile_memory_mb"), "{memory}");
        let cpu = c.judge(exit(libc::SIGXCPU, MAGIC, "")).expect_err("cpu");
        assert!(cpu.to_string().contains("plugins.compile_timeout_ms"), "{cpu}");
    }

    #[test]
    fn one_compile_per_tenant_until_its_turn_ends() {
        let c = compiler();
        let turn = c.claim("acme").expect("first");
        assert!(matches!(c.claim("acme"), Err(UploadError::CompileBusy(t)) if t == "acme"));
        let other = c.claim("globex").expect("another tenant is not held up");
        drop(turn);
        c.claim("acme").expect("free again once the first ended");
        drop(other);
    }

    #[test]
    fn the_cpu_backstop_is_twice_the_timeout_per_core() {
        let cores = std::thread::available_parallelism().map(|n| n.get() as u64).unwrap_or(1);
        assert_eq!(compiler().cpu_secs(), 3 * cores);
    }
}
