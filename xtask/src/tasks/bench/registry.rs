//! A throwaway registry for `bench`: `docker-registry serve` on a free loopback port.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// `docker-registry serve` on a free loopback port, stopped (by its pid) on drop.
pub(crate) struct RegistryServer {
    pub(crate) port: u16,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl RegistryServer {
    pub(crate) fn start() -> Result<RegistryServer> {
        let dir = tempfile::Builder::new()
            .prefix("xtask-bench-registry.")
            .tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: warn}}\nstorage: {{filesystem: {{rootdirectory: {}}}}}\nhttp: {{addr: 127.0.0.1:{port}}}\n",
                dir.path().join("data").display()
            ),
        )?;
        // A server for the whole run, not a command that ends: started here, stopped on drop.
        let mut command = std::process::Command::new("docker-registry");
        // Like every `Cmd`: the secrets we were given are not the registry's.
        for key in crate::secret::ENV_VARS {
            command.env_remove(key);
        }
        let child = command
            .arg("serve")
            .arg(&config)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("registry.log"))?)
            .spawn()
            .context("cannot start `docker-registry serve` (apt-get install docker-registry, or pass --registry HOST:PORT/NAMESPACE)")?;
        let server = RegistryServer {
            port,
            child,
            _dir: dir,
        };
        let until = Instant::now() + Duration::from_secs(20);
        while crate::http::get(port, "/v2/").map_or(true, |r| r.status != 200) {
            if Instant::now() > until {
                bail!("the registry on 127.0.0.1:{port} did not answer within 20 s");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(server)
    }
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}
