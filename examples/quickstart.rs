//! Quickstart: starts a throwaway plaintext FTP server (a tiny demo server
//! serving a temporary directory, user `demo` / password `demo`) and ftpsgate
//! in front of it on 127.0.0.1:2121, then prints the curl commands to try.
//!
//!     cargo run --example quickstart
//!
//! The demo server is only for this example: it understands just enough FTP
//! (USER, PASS, PWD, CWD, TYPE, PASV, EPSV, LIST, NLST, RETR, STOR, SIZE,
//! FEAT, QUIT) to show the proxy working.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ftpsgate::{Server, Settings};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("hello.txt"),
        b"Hello from the legacy server, delivered over FTPS.\n",
    )?;
    let backend = TcpListener::bind("127.0.0.1:0").await?;
    let backend_addr = backend.local_addr()?;
    let root = dir.path().to_path_buf();
    tokio::spawn(async move {
        while let Ok((s, _)) = backend.accept().await {
            tokio::spawn(demo_session(s, root.clone()));
        }
    });

    let listen: SocketAddr = std::env::var("FTPSGATE_QUICKSTART_LISTEN")
        .unwrap_or("127.0.0.1:2121".into())
        .parse()?;
    let server = Server::bind(Settings::new(vec![listen], backend_addr.into())).await?;
    let addr = server.local_addrs()[0].1;
    println!("\nftpsgate is listening on {addr} (explicit FTPS) in front of a plaintext demo server on {backend_addr}.");
    println!("Certificate SHA-256: {}\n", server.fingerprint());
    println!("Try it (the certificate is self-signed, hence -k):");
    println!("  curl -k --ssl-reqd ftp://demo:demo@{addr}/");
    println!("  curl -k --ssl-reqd ftp://demo:demo@{addr}/hello.txt");
    println!("  curl -k --ssl-reqd -T README.md ftp://demo:demo@{addr}/README.md");
    println!("And see the policy at the edge (plaintext login refused with 530):");
    println!("  curl ftp://demo:demo@{addr}/\n");
    println!("Ctrl-C to stop.");
    let stop = CancellationToken::new();
    let trigger = stop.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        trigger.cancel();
    });
    server.run(stop).await;
    Ok(())
}

async fn demo_session(stream: TcpStream, root: PathBuf) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    w.write_all(b"220 demo FTP server (plaintext)\r\n").await?;
    let mut pasv: Option<TcpListener> = None;
    while let Some(line) = lines.next_line().await? {
        let (verb, arg) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let reply: String = match verb.to_ascii_uppercase().as_str() {
            "USER" => "331 Password please\r\n".into(),
            "PASS" if arg == "demo" => "230 Logged in\r\n".into(),
            "PASS" => "530 Login incorrect\r\n".into(),
            "PWD" => "257 \"/\"\r\n".into(),
            "FEAT" => "211-Features:\r\n SIZE\r\n211 End\r\n".into(),
            "SIZE" => match std::fs::metadata(file(&root, arg)) {
                Ok(m) => format!("213 {}\r\n", m.len()),
                Err(_) => "550 No such file\r\n".into(),
            },
            "PASV" | "EPSV" => {
                let l = TcpListener::bind("127.0.0.1:0").await?;
                let port = l.local_addr()?.port();
                pasv = Some(l);
                if verb.eq_ignore_ascii_case("PASV") {
                    format!(
                        "227 Entering Passive Mode (127,0,0,1,{},{})\r\n",
                        port >> 8,
                        port & 0xff
                    )
                } else {
                    format!("229 Entering Extended Passive Mode (|||{port}|)\r\n")
                }
            }
            "LIST" | "NLST" | "RETR" | "STOR" => {
                let Some(l) = pasv.take() else {
                    w.write_all(b"425 Use PASV first\r\n").await?;
                    continue;
                };
                w.write_all(b"150 Opening data connection\r\n").await?;
                let (mut data, _) = l.accept().await?;
                match verb.to_ascii_uppercase().as_str() {
                    "RETR" => match std::fs::read(file(&root, arg)) {
                        Ok(bytes) => data.write_all(&bytes).await?,
                        Err(_) => {
                            drop(data);
                            w.write_all(b"550 No such file\r\n").await?;
                            continue;
                        }
                    },
                    "STOR" => {
                        let mut bytes = Vec::new();
                        data.read_to_end(&mut bytes).await?;
                        std::fs::write(file(&root, arg), bytes)?;
                    }
                    _ => {
                        let mut listing = String::new();
                        for e in std::fs::read_dir(&root)?.flatten() {
                            listing.push_str(&format!("{}\r\n", e.file_name().to_string_lossy()));
                        }
                        data.write_all(listing.as_bytes()).await?;
                    }
                }
                data.shutdown().await?;
                "226 Transfer complete\r\n".into()
            }
            "QUIT" => {
                w.write_all(b"221 Bye\r\n").await?;
                return Ok(());
            }
            _ => "200 OK\r\n".into(),
        };
        w.write_all(reply.as_bytes()).await?;
    }
    Ok(())
}

/// A file name inside the root (no directories, no escaping it).
fn file(root: &Path, name: &str) -> PathBuf {
    let base = Path::new(name)
        .file_name()
        .map(|n| n.to_owned())
        .unwrap_or_default();
    root.join(base)
}
