//! MariaDB for tests: a database of the test's own on the shared server at 127.0.0.1:3306
//! (root, no password), created at the start and dropped at the end, and a TCP proxy in
//! front of that server that the test cuts (the database is "down") and restores; and a
//! MariaDB server of the test's own with TLS on, which the shared one does not have.

use std::future::Future;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use sqlx::mysql::MySqlPool;

use crate::paths::{free_port, unique_suffix, TestDir};
use crate::poll::{wait_until, POLL};
use crate::process::Proc;
use crate::tls::{signed_by_ca, ServerCert};

/// The port of the shared MariaDB server.
pub const MARIADB_PORT: u16 = 3306;

/// Runs `sql` with the `mysql` client (in `database` if given); returns its tab-separated
/// output without headers.
pub fn mysql(database: Option<&str>, sql: &str) -> String {
    let mut command = Command::new("mysql");
    command.args([
        "-h",
        "127.0.0.1",
        "-P",
        "3306",
        "-u",
        "root",
        "-N",
        "-B",
        "-e",
        sql,
    ]);
    if let Some(db) = database {
        command.arg(db);
    }
    let out = command.output().expect("the mysql client runs");
    assert!(
        out.status.success(),
        "mysql failed ({sql}): {}\nMariaDB must be running at 127.0.0.1:{MARIADB_PORT} (user root, \
         empty password); start it with `start-stop-daemon --start --oknodo --background --exec \
         /usr/sbin/mariadbd`",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A database of this test's own on the shared server, dropped on drop (also when the test
/// panics).
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    pub fn create(label: &str) -> Self {
        let db = TestDb::reserve(label);
        db.create_now();
        db
    }

    /// A name for a database the test creates later ([`TestDb::create_now`]); dropped on
    /// drop like the others.
    pub fn reserve(label: &str) -> Self {
        let name = format!("t_{label}_{}", unique_suffix());
        mysql(None, &format!("DROP DATABASE IF EXISTS {name}"));
        TestDb { name }
    }

    pub fn create_now(&self) {
        mysql(None, &format!("CREATE DATABASE {}", self.name));
    }

    /// The URL of the database on the shared server.
    pub fn url(&self) -> String {
        self.url_via(MARIADB_PORT)
    }

    /// The URL reaching the database through a proxy on `port`.
    pub fn url_via(&self, port: u16) -> String {
        format!("mysql://root@127.0.0.1:{port}/{}", self.name)
    }

    pub fn query(&self, sql: &str) -> String {
        mysql(Some(&self.name), sql)
    }

    /// A single number `sql` selects (0 when it selects none).
    pub fn count(&self, sql: &str) -> u64 {
        self.query(sql).parse().unwrap_or(0)
    }

    /// Rows of the collector's table.
    pub fn rows(&self) -> u64 {
        self.count("SELECT COUNT(*) FROM mcp_gateway_log")
    }

    /// Rows the database refused for good, kept by the collector in its dead letters.
    pub fn dead_letters(&self) -> u64 {
        self.count("SELECT COUNT(*) FROM mcp_dead_letters")
    }

    pub async fn pool(&self) -> MySqlPool {
        MySqlPool::connect(&self.url())
            .await
            .expect("connect to test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = Command::new("mysql")
            .args(["-h", "127.0.0.1", "-u", "root", "-e"])
            .arg(format!("DROP DATABASE IF EXISTS {}", self.name))
            .status();
    }
}

/// Runs the async `test` with a fresh database, dropped afterwards even if the test panics.
pub async fn with_mariadb<F, Fut>(test: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = ()>,
{
    test(TestDb::create("hc")).await;
}

/// Runs `sql` with `psql` on the shared PostgreSQL (127.0.0.1:5432, trust auth) in
/// `database`; returns its unaligned output without headers.
pub fn psql(database: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            "5432",
            "-U",
            "root",
            "-d",
            database,
        ])
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("the psql client runs");
    assert!(
        out.status.success(),
        "psql failed ({sql}): {}\nPostgreSQL must be running at 127.0.0.1:5432 (trust auth, \
         user root)",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A PostgreSQL database of this test's own on the shared server, dropped on drop.
pub struct TestPg {
    pub name: String,
}

impl TestPg {
    pub fn create(label: &str) -> Self {
        let db = TestPg::reserve(label);
        db.create_now();
        db
    }

    /// A name for a database the test creates later ([`TestPg::create_now`]).
    pub fn reserve(label: &str) -> Self {
        let name = format!("t_{label}_{}", unique_suffix());
        psql("postgres", &format!("DROP DATABASE IF EXISTS {name}"));
        TestPg { name }
    }

    pub fn create_now(&self) {
        psql("postgres", &format!("CREATE DATABASE {}", self.name));
    }

    pub fn url(&self) -> String {
        format!("postgres://root@127.0.0.1:5432/{}", self.name)
    }

    pub fn query(&self, sql: &str) -> String {
        psql(&self.name, sql)
    }
}

impl Drop for TestPg {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "root", "-d", "postgres", "-c"])
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .output();
    }
}

/// A TCP proxy in front of a local port. Cut: every open connection is shut down and new
/// ones are closed at once, which is what a client sees when the database is stopped.
/// Restore: connections pass again. Threads, no runtime: usable from any test.
pub struct DbProxy {
    pub port: u16,
    up: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    accept: Option<thread::JoinHandle<()>>,
}

impl DbProxy {
    /// A proxy in front of the shared MariaDB.
    pub fn mariadb() -> DbProxy {
        DbProxy::start(MARIADB_PORT)
    }

    pub fn start(target_port: u16) -> DbProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let up = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (up2, stop2, conns2) = (up.clone(), stop.clone(), conns.clone());
        let accept = thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        if !up2.load(Ordering::SeqCst) {
                            let _ = client.shutdown(Shutdown::Both);
                            continue;
                        }
                        let _ = client.set_nonblocking(false);
                        let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)) else {
                            continue;
                        };
                        let mut list = conns2.lock().unwrap();
                        list.retain(|s| s.peer_addr().is_ok());
                        for s in [&client, &server] {
                            if let Ok(c) = s.try_clone() {
                                list.push(c);
                            }
                        }
                        drop(list);
                        pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                        pipe(server, client);
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        DbProxy {
            port,
            up,
            stop,
            conns,
            accept: Some(accept),
        }
    }

    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for s in self.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

impl Drop for DbProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cut();
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// A MariaDB server of the test's own, with TLS on (the shared server runs without): a data
/// directory made by `mariadb-install-db` in a test directory, `mariadbd` on a free port with
/// a certificate from a CA made for it, stopped and removed on drop. Its user
/// [`TlsMariaDb::USER`] may only connect over TLS (`REQUIRE SSL`): a connection without TLS
/// is refused at login, so a client that logs in as it used TLS.
pub struct TlsMariaDb {
    pub port: u16,
    pub cert: ServerCert,
    server: Proc,
    dir: TestDir,
}

impl TlsMariaDb {
    pub const USER: &'static str = "tls_only";
    pub const PASSWORD: &'static str = "tls-only-password";
    pub const DATABASE: &'static str = "audit";

    pub fn start() -> Self {
        let dir = TestDir::new("mariadb-tls");
        let cert = signed_by_ca(&dir.path);
        let data = dir.file("data");
        // mariadbd refuses to run as root unless told to; as anyone else it runs as them.
        let as_root: &[&str] = if running_as_root() {
            &["--user=root"]
        } else {
            &[]
        };
        let installed = Command::new("mariadb-install-db")
            .args(["--no-defaults", "--auth-root-authentication-method=normal"])
            .arg("--skip-test-db")
            .args(as_root)
            .arg(format!("--datadir={}", data.display()))
            .output()
            .expect("mariadb-install-db runs (Debian package mariadb-server)");
        assert!(
            installed.status.success(),
            "mariadb-install-db: {}",
            String::from_utf8_lossy(&installed.stderr)
        );
        let port = free_port();
        let mut command = Command::new("/usr/sbin/mariadbd");
        command
            .args(["--no-defaults", "--skip-log-bin"])
            .args(as_root)
            .args(["--bind-address=127.0.0.1", "--skip-name-resolve"])
            .arg(format!("--port={port}"))
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", dir.file("sock").display()))
            .arg(format!("--pid-file={}", dir.file("pid").display()))
            .arg(format!("--ssl-ca={}", cert.ca.display()))
            .arg(format!("--ssl-cert={}", cert.cert.display()))
            .arg(format!("--ssl-key={}", cert.key.display()));
        let server = Proc::spawn("mariadbd", command, &dir.path).expect("mariadbd starts");
        let db = TlsMariaDb {
            port,
            cert,
            server,
            dir,
        };
        let up = wait_until(Duration::from_secs(30), POLL, || {
            db.root_sql("SELECT 1").ok().filter(|out| out == "1")
        });
        assert!(
            up.is_some(),
            "mariadbd never answered: {}",
            db.server.logs()
        );
        let (user, password, database) = (Self::USER, Self::PASSWORD, Self::DATABASE);
        let setup = db.root_sql(&format!(
            "CREATE DATABASE {database}; \
             CREATE USER '{user}'@'%' IDENTIFIED BY '{password}' REQUIRE SSL; \
             GRANT ALL ON {database}.* TO '{user}'@'%'; \
             SELECT @@have_ssl"
        ));
        assert_eq!(setup.as_deref(), Ok("YES"), "TLS on in the private server");
        db
    }

    /// The URL of its database as the TLS-only user, with `params` as the query.
    pub fn url(&self, params: &str) -> String {
        format!(
            "mysql://{}:{}@127.0.0.1:{}/{}?{params}",
            Self::USER,
            Self::PASSWORD,
            self.port,
            Self::DATABASE
        )
    }

    /// Runs `sql` as root over the server's socket; its tab-separated output, or the error.
    pub fn root_sql(&self, sql: &str) -> Result<String, String> {
        let out = Command::new("mysql")
            .arg(format!("--socket={}", self.dir.file("sock").display()))
            .args(["-u", "root", "-N", "-B", "-e", sql])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}
