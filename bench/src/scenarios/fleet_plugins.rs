//! `fleet-plugin`: time from `weir plugin upload --fleet` to the component
//! active on all of 3 PoPs (three `weir serve` processes, one local
//! nats-server with JetStream), for components no PoP has compiled yet; and
//! from `weir plugin rollback --fleet` to all 3 back on an earlier one (no
//! compile: the PoPs re-activate a stored version). "Active" is read from
//! each PoP's `GET /v1/fleet/plugins`, polled every 5 ms.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::{Ctx, Plugins};
use crate::client;
use crate::report::{Metric, Report, Unit};
use crate::servers::free_port;
use crate::weir::{Setup, TOKEN, Tenant, Weir};

const POPS: [&str; 3] = ["pop1", "pop2", "pop3"];
/// Components no PoP has seen, uploaded in turn (each compiles on every PoP).
const UPLOADS: [&str; 3] = ["passthrough", "json_transform", "hmac_verify"];

pub async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let plugins = Plugins::ensure()?;
    let work = ctx.workdir("fleet-plugin")?;
    let nats = Nats::start(&work.path().join("nats"))?;
    let mut report = Report::new(
        "fleet-plugin",
        format!(
            "3 PoPs (weir serve, tenant acme without a local plugin) and one nats-server (JetStream, file storage) on loopback; \
             {} uploads of components no PoP has compiled ({}), then {} rollbacks; each timed from the CLI's start to the \
             component active in GET /v1/fleet/plugins of all 3 (polled every 5 ms)",
            UPLOADS.len(),
            UPLOADS.join(", "),
            UPLOADS.len() - 1
        ),
    );
    let mut pops = Vec::new();
    for name in POPS {
        let dir = work.path().join(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut setup = Setup::new(vec![Tenant::plain("acme")]);
        setup.extra = format!("[fleet]\nnats_urls = [\"{}\"]\npop = \"{name}\"\n", nats.url);
        pops.push(Weir::start(ctx.weir()?, &dir, &setup, ctx.start_timeout()).await?);
    }
    let (mut upload_all, mut upload_cli, mut upload_first) = (
        Metric::new("upload --fleet → active on all 3 PoPs", Unit::Seconds),
        Metric::new("  of which the CLI (checks, local test compile, publish)", Unit::Seconds),
        Metric::new("upload --fleet → active on the first PoP", Unit::Seconds),
    );
    for name in UPLOADS {
        let file = plugins.path(name);
        let sha = sha256_of(&file)?;
        eprintln!("  upload {name}");
        let started = Instant::now();
        cli(ctx.weir()?, &["plugin", "upload", "--fleet", "--nats", &nats.url, "--tenant", "acme"], Some(&file))?;
        upload_cli.samples.push(started.elapsed().as_secs_f64());
        let (first, all) = wait_active(&pops, &sha, started, ctx.start_timeout()).await?;
        upload_first.samples.push(first.as_secs_f64());
        upload_all.samples.push(all.as_secs_f64());
    }
    let mut rollback_all = Metric::new("rollback --fleet → active on all 3 PoPs (stored version, no compile)", Unit::Seconds);
    for name in UPLOADS.iter().rev().skip(1) {
        let sha = sha256_of(&plugins.path(name))?;
        eprintln!("  rollback to {name}");
        let started = Instant::now();
        cli(ctx.weir()?, &["plugin", "rollback", "--fleet", "--nats", &nats.url, "--tenant", "acme"], None)?;
        rollback_all.samples.push(wait_active(&pops, &sha, started, ctx.start_timeout()).await?.1.as_secs_f64());
    }
    for pop in &mut pops {
        pop.stop().await?;
    }
    let m = upload_all.median();
    report.goal("upload --fleet to active on all of 3 PoPs ≤ 2 s (loopback)", format!("{m:.3} s (median)"), Some(m <= 2.0));
    report.note("a component compiles twice per upload: once in the CLI (refused before NATS if it fails) and once on each PoP");
    report.push(upload_all);
    report.push(upload_cli);
    report.push(upload_first);
    report.push(rollback_all);
    Ok(report)
}

/// Runs `weir ARGS [FILE]` and fails with its stderr unless it exits 0.
fn cli(weir: &Path, args: &[&str], file: Option<&Path>) -> anyhow::Result<()> {
    let mut cmd = Command::new(weir);
    cmd.args(args);
    if let Some(f) = file {
        cmd.arg(f);
    }
    let out = cmd.output().with_context(|| format!("running weir {}", args.join(" ")))?;
    if !out.status.success() {
        bail!("weir {} failed ({}): {}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Polls every PoP until `sha` is its tenant's active fleet plugin; returns
/// (first PoP, last PoP) times since `started`.
async fn wait_active(pops: &[Weir], sha: &str, started: Instant, timeout: Duration) -> anyhow::Result<(Duration, Duration)> {
    let mut done: Vec<Option<Duration>> = vec![None; pops.len()];
    while done.iter().any(Option::is_none) {
        for (pop, at) in pops.iter().zip(done.iter_mut()).filter(|(_, at)| at.is_none()) {
            let s = client::get_json(pop.admin, "/v1/fleet/plugins", Some(TOKEN)).await?;
            let t = &s["tenants"]["acme"];
            if t["state"] == "active" && t["active_sha256"] == sha {
                *at = Some(started.elapsed());
            }
        }
        if started.elapsed() > timeout {
            bail!("{sha} was not active on every PoP within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let times: Vec<Duration> = done.into_iter().flatten().collect();
    Ok((times.iter().copied().min().unwrap_or_default(), times.iter().copied().max().unwrap_or_default()))
}

fn sha256_of(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(weir::plugin::sha256_hex(&bytes))
}

/// A local nats-server with JetStream (file storage in `dir`), killed on drop.
struct Nats {
    child: Child,
    url: String,
}

impl Nats {
    fn start(dir: &Path) -> anyhow::Result<Nats> {
        let bin = ["/usr/sbin/nats-server", "/usr/local/bin/nats-server", "/usr/bin/nats-server"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("nats-server"));
        let port = free_port()?.port();
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut child = Command::new(&bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {} (install the nats-server package)", bin.display()))?;
        let stderr = child.stderr.take().context("nats-server stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("Server is ready")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(());
                }
            }
        });
        if rx.recv_timeout(Duration::from_secs(30)).is_err() {
            let _ = child.kill();
            bail!("nats-server was not ready within 30 s");
        }
        Ok(Nats { child, url: format!("nats://127.0.0.1:{port}") })
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
