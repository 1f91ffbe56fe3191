//! `hsm-sim`: provisions a SoftHSM2 token in a directory and prints how to use it.

use std::path::PathBuf;

use clap::Parser;
use custody_hsm_sim::SoftHsm;
use secrecy::ExposeSecret;

/// Provision (or reuse) a persistent SoftHSM2 token under a directory.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Directory that holds the token, its softhsm2.conf and token.json.
    #[arg(long, default_value = ".devnet/softhsm")]
    dir: PathBuf,
    /// Token label.
    #[arg(long, default_value = "custody")]
    label: String,
    /// Print the user PIN too (it is stored in DIR/token.json, mode 0600).
    #[arg(long)]
    show_pin: bool,
}

#[expect(clippy::print_stdout, reason = "a command-line tool prints its answer")]
fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.dir)?;
    let hsm = SoftHsm::persistent(&args.dir, &args.label)?;
    println!("export SOFTHSM2_CONF={}", hsm.conf_path().display());
    println!("export CUSTODY_PKCS11_MODULE={}", hsm.module().display());
    println!("export CUSTODY_PKCS11_TOKEN={}", hsm.label());
    if args.show_pin {
        println!("export CUSTODY_PKCS11_PIN={}", hsm.user_pin().expose_secret());
    } else {
        println!("# user PIN: in {}/token.json (or pass --show-pin)", hsm.dir().display());
    }
    Ok(())
}
