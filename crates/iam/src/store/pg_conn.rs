//! One PostgreSQL connection on a thread of its own ([`PgWorker`]): the synchronous `postgres`
//! client blocks on a runtime of its own, so it must not run on a tokio worker; callers hand it
//! work over a channel. TLS as the URL's `sslmode` says; a connection the server ended is made
//! again at the next use.

use std::collections::HashMap;
use std::sync::mpsc;

use super::db::{Access, PG_CONNECT_TIMEOUT, postgres_query};
use super::location::{HostKind, TlsPlan, redact_url, split_tls_params, tcp_host_kind, tls_plan};
use super::pg_tls;
use crate::{IamError, Result};

/// A PostgreSQL connection and its prepared statements (by query text in the shared dialect),
/// with what it takes to connect again.
pub(crate) struct PgConn {
    pub(crate) client: postgres::Client,
    statements: HashMap<String, postgres::Statement>,
    config: postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    access: Access,
    redacted: String,
    /// Between `BEGIN` and `COMMIT`/`ROLLBACK`: a lost connection lost the transaction, and
    /// nothing is retried.
    pub(crate) in_transaction: bool,
}

impl PgConn {
    pub(crate) fn open(
        config: postgres::Config,
        tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
        access: Access,
        redacted: String,
    ) -> Result<PgConn> {
        let client = pg_client(&config, tls.as_ref(), access, &redacted)?;
        Ok(PgConn {
            client,
            statements: HashMap::new(),
            config,
            tls,
            access,
            redacted,
            in_transaction: false,
        })
    }

    pub(crate) fn reconnect(&mut self) -> Result<()> {
        self.client = pg_client(&self.config, self.tls.as_ref(), self.access, &self.redacted)?;
        self.statements.clear();
        self.in_transaction = false;
        Ok(())
    }

    pub(crate) fn prepare(&mut self, sql: &str) -> Result<postgres::Statement> {
        if let Some(stmt) = self.statements.get(sql) {
            return Ok(stmt.clone());
        }
        let stmt = self.client.prepare(&postgres_query(sql))?;
        self.statements.insert(sql.to_owned(), stmt.clone());
        Ok(stmt)
    }

    /// Runs `work`; when the connection turns out lost (the server restarted, or ended this
    /// session) outside a transaction, connects again and runs it once more.
    pub(crate) fn run<T>(&mut self, work: &dyn Fn(&mut PgConn) -> Result<T>) -> Result<T> {
        if self.client.is_closed() && !self.in_transaction {
            self.reconnect()?;
        }
        match work(self) {
            Err(err) if connection_lost(&err) => {
                if self.in_transaction {
                    self.in_transaction = false;
                    return Err(err);
                }
                tracing::warn!(store = %self.redacted, "IAM store connection lost; connecting again");
                self.reconnect()?;
                work(self)
            }
            done => done,
        }
    }
}

/// The connection is gone (closed, or the server ended the session), as opposed to a refusal
/// of the statement.
fn connection_lost(err: &IamError) -> bool {
    match err {
        IamError::StorePostgres(e) => {
            e.is_closed()
                || e.code().is_some_and(|code| {
                    code.code().starts_with("57P") || code.code().starts_with("08")
                })
                || (e.code().is_none()
                    && std::error::Error::source(e)
                        .is_some_and(|source| source.is::<std::io::Error>()))
        }
        _ => false,
    }
}

/// A connection: in clear without `tls` (the config's `sslmode` is then `disable`), else with
/// TLS as the config's `sslmode` (`prefer` or `require`) says.
fn pg_client(
    config: &postgres::Config,
    tls: Option<&tokio_postgres_rustls::MakeRustlsConnect>,
    access: Access,
    redacted: &str,
) -> Result<postgres::Client> {
    let connected = match tls {
        None => config.connect(postgres::NoTls),
        Some(tls) => config.connect(tls.clone()),
    };
    let mut client = connected.map_err(|source| IamError::StoreConnect {
        url: redacted.to_owned(),
        source,
    })?;
    if access == Access::ReadOnly {
        client.batch_execute("SET default_transaction_read_only = on")?;
    }
    Ok(client)
}

type Job = Box<dyn FnOnce(&mut PgConn) + Send>;

/// A PostgreSQL connection on a thread of its own; [`PgWorker::run`] hands it work and waits
/// for the answer. Dropping the worker ends the thread and closes the connection. A lost
/// connection is made again on the next use (see [`PgConn::run`]).
pub(crate) struct PgWorker {
    jobs: mpsc::Sender<Job>,
}

impl PgWorker {
    pub(crate) fn connect(url: &str, access: Access) -> Result<PgWorker> {
        let url_tls = split_tls_params(url).map_err(IamError::InvalidStoreUrl)?;
        let mut config = url_tls
            .url
            .parse::<postgres::Config>()
            .map_err(|e| IamError::InvalidStoreUrl(e.to_string()))?;
        let plan = tls_plan(
            url_tls.mode,
            url_tls.root_certs.is_some(),
            &host_kinds(&config),
        );
        let tls = match plan {
            TlsPlan::Off => {
                config.ssl_mode(postgres::config::SslMode::Disable);
                None
            }
            TlsPlan::Prefer(verify) => {
                config.ssl_mode(postgres::config::SslMode::Prefer);
                Some(pg_tls::connector(verify, url_tls.root_certs.as_ref())?)
            }
            TlsPlan::Require(verify) => {
                config.ssl_mode(postgres::config::SslMode::Require);
                Some(pg_tls::connector(verify, url_tls.root_certs.as_ref())?)
            }
        };
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(PG_CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("esprit-iam");
        }
        let redacted = redact_url(url);
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready_tx, ready) = mpsc::sync_channel::<Result<()>>(1);
        std::thread::Builder::new()
            .name("iam-store-pg".into())
            .spawn(move || {
                let mut conn = match PgConn::open(config, tls, access, redacted) {
                    Ok(conn) => conn,
                    Err(err) => {
                        let _ = ready_tx.send(Err(err));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                while let Ok(job) = queue.recv() {
                    job(&mut conn);
                }
            })
            .map_err(|e| IamError::StoreWorker(e.to_string()))?;
        ready.recv().map_err(|_| IamError::StoreGone)??;
        Ok(PgWorker { jobs })
    }

    /// Runs `work` on the connection's thread and returns its result.
    pub(crate) fn run<T, F>(&self, work: F) -> Result<T>
    where
        F: Fn(&mut PgConn) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let (answer_tx, answer) = mpsc::sync_channel(1);
        self.jobs
            .send(Box::new(move |conn| {
                let _ = answer_tx.send(conn.run(&work));
            }))
            .map_err(|_| IamError::StoreGone)?;
        answer.recv().map_err(|_| IamError::StoreGone)?
    }
}

/// Where each of the config's hosts is (its `hostaddr`, when given, is where TCP goes).
fn host_kinds(config: &postgres::Config) -> Vec<HostKind> {
    let (hosts, addrs) = (config.get_hosts(), config.get_hostaddrs());
    (0..hosts.len().max(addrs.len()))
        .map(|i| match hosts.get(i) {
            #[cfg(unix)]
            Some(postgres::config::Host::Unix(_)) => HostKind::Socket,
            Some(postgres::config::Host::Tcp(name)) => {
                tcp_host_kind(Some(name), addrs.get(i).copied())
            }
            None => tcp_host_kind(None, addrs.get(i).copied()),
        })
        .collect()
}
