//! Failpoints: named places in the mirror worker where a test can stop the process.
//!
//! With the cargo feature `failpoints` (off by default; the server forwards it as its own `failpoints`
//! feature) and the environment variable `CUSTODY_FAILPOINT` set to a point's name, the worker logs
//! `failpoint reached; parked` with the field `failpoint = <name>` when it gets there and then waits forever,
//! so that a test can SIGKILL the process at exactly that step and check that a restart loses nothing and
//! mints nothing twice. The points are the steps of an issuance: `stored`, `batched`, `signed`, `submitted`,
//! `mined` and `recorded`. Without the feature, [`hit`] is an empty function and the variable is never read.

/// Parks the calling task forever if `CUSTODY_FAILPOINT` names `point`.
#[cfg(feature = "failpoints")]
pub(crate) async fn hit(point: &'static str) {
    if std::env::var("CUSTODY_FAILPOINT").is_ok_and(|armed| armed == point) {
        tracing::info!(failpoint = point, "failpoint reached; parked");
        std::future::pending::<()>().await;
    }
}

/// Nothing: failpoints are compiled in with the `failpoints` feature only.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) async fn hit(_point: &'static str) {}
