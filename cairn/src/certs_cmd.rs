//! `cairn certs`: the cluster CA and the certificates it issues (see `cairn_wire::certs`).

use std::path::PathBuf;

use anyhow::Context;
use cairn_wire::certs;
use cairn_wire::tls::PeerRole;
use clap::{Args, Subcommand, ValueEnum};

/// Arguments of `cairn certs`.
#[derive(Args)]
pub(crate) struct CertsArgs {
    #[command(subcommand)]
    command: CertsCommand,
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Create a cluster CA: writes DIR/ca.pem and DIR/ca.key (never overwrites).
    Init {
        /// The directory to write to (created if missing).
        #[arg(long)]
        dir: PathBuf,
        /// The cluster's name, written into the CA certificate.
        #[arg(long, default_value = "cairn")]
        cluster: String,
    },
    /// Issue a certificate signed by the CA in DIR: writes DIR/NAME.pem and DIR/NAME.key
    /// (never overwrites).
    Issue {
        /// The directory holding ca.pem and ca.key.
        #[arg(long)]
        dir: PathBuf,
        /// The certificate's name (its common name and file name). A node's certificate must be
        /// named node-ID (ID: the node id), or as its `cert_name` in the peers' configuration says.
        #[arg(long)]
        name: String,
        /// What the certificate lets its holder be.
        #[arg(long, value_enum)]
        role: Role,
        /// An extra subject alternative name (IP address or DNS name); repeat for more. Node
        /// certificates always carry cairn-node, localhost and 127.0.0.1.
        #[arg(long = "san", value_name = "SAN")]
        sans: Vec<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Role {
    /// A node of the cluster.
    Node,
    /// A client or operator tool.
    Client,
}

impl From<Role> for PeerRole {
    fn from(role: Role) -> Self {
        match role {
            Role::Node => Self::Node,
            Role::Client => Self::Client,
        }
    }
}

/// Runs `cairn certs`.
pub(crate) fn run(args: CertsArgs) -> anyhow::Result<()> {
    match args.command {
        CertsCommand::Init { dir, cluster } => {
            certs::init_ca_dir(&dir, &cluster)
                .with_context(|| format!("cannot create a CA in {}", dir.display()))?;
            println!(
                "wrote {} (the CA certificate: give it to every node and client)",
                dir.join("ca.pem").display()
            );
            println!(
                "wrote {} (the CA key: keep it secret, it issues certificates)",
                dir.join("ca.key").display()
            );
        }
        CertsCommand::Issue {
            dir,
            name,
            role,
            sans,
        } => {
            let peer_role = PeerRole::from(role);
            let (cert, key) =
                certs::issue_to_dir(&dir, peer_role, &name, &sans).with_context(|| {
                    format!(
                        "cannot issue a {peer_role} certificate for {name:?} with the CA in {}",
                        dir.display()
                    )
                })?;
            println!(
                "wrote {} ({peer_role} certificate of {name})",
                cert.display()
            );
            println!("wrote {} (its private key)", key.display());
        }
    }
    Ok(())
}
