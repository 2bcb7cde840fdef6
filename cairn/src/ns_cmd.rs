//! `cairn ns`: create, list, show and delete namespaces through the manager.
//!
//! Names and sites are checked here before anything is sent, with the same rules and messages
//! as the manager's (`Namespace::new`, `validate_site`).

use cairn_client::{ApiError, Namespace};
use cairn_wire::catalog::{
    ManagerRequest, ManagerResponse, NamespaceInfo, PlacementPolicy, validate_site,
};
use clap::{Args, Subcommand};

use crate::catalog_cmd::{ManagerArgs, PlacementArgs, ask_manager, rfc3339_utc, table, unexpected};

/// How long `create` and `delete` may take by default: the manager answers only once the
/// namespace is active (possibly on a shard it creates for it) or gone.
const CHANGE_TIMEOUT_MS_DEFAULT: u64 = 30_000;

/// Arguments of `cairn ns`.
#[derive(Args)]
#[command(after_help = "\
Talks to the managers of the cluster file (its leader answers). --timeout-ms defaults to 30000 \
for create and delete (the manager answers once the namespace is active, or gone) and to 5000 \
otherwise; a create or delete that times out may still complete (exit code 5): run `cairn ns \
show` to find out.")]
pub(crate) struct NsArgs {
    #[command(flatten)]
    manager: ManagerArgs,
    #[command(subcommand)]
    op: NsOp,
}

#[derive(Subcommand)]
enum NsOp {
    /// Create a namespace and print it once it is active (exit code 3 if it exists).
    Create {
        /// The name: 1 to 128 bytes of A-Z a-z 0-9 _ . -
        name: String,
        /// The site (datacenter) it should be served from: its shard has a replica there and
        /// prefers a leader there.
        #[arg(long, value_name = "SITE")]
        home_site: Option<String>,
        /// Where its shard's replicas go, when not the cluster's default placement (options
        /// not given are the default's).
        #[command(flatten)]
        placement: PlacementArgs,
    },
    /// Print every namespace as a table, by name.
    List,
    /// Print one namespace (exit code 2 if it does not exist).
    Show {
        /// The name.
        name: String,
    },
    /// Delete a namespace and all its data; returns once the name is reusable (exit code 2 if
    /// it does not exist).
    Delete {
        /// The name.
        name: String,
    },
}

/// Runs `cairn ns`.
pub(crate) async fn run(args: NsArgs) -> anyhow::Result<()> {
    // Arguments first: a bad name is reported whatever the cluster file says.
    let (request, default_timeout_ms) = request(&args.op)?;
    let client = args.manager.client(default_timeout_ms)?;
    let result = ask_manager(&client, request).await;
    client.close().await;
    print!("{}", output(&args.op, result?)?);
    Ok(())
}

/// The manager request for `op`, checked, and the timeout it gets by default.
fn request(op: &NsOp) -> anyhow::Result<(ManagerRequest, u64)> {
    let quick = cairn_client::REQUEST_TIMEOUT_MS_DEFAULT;
    Ok(match op {
        NsOp::Create {
            name,
            home_site,
            placement,
        } => {
            if let Some(site) = home_site {
                validate_site(site).map_err(ApiError::InvalidArgument)?;
            }
            let placement = placement
                .given()
                .then(|| placement.apply(&PlacementPolicy::default()))
                .transpose()?;
            let request = ManagerRequest::CreateNamespace {
                name: Namespace::new(name.as_str())?,
                home_site: home_site.clone(),
                placement,
            };
            (request, CHANGE_TIMEOUT_MS_DEFAULT)
        }
        NsOp::List => (ManagerRequest::ListNamespaces, quick),
        NsOp::Show { name } => {
            let name = Namespace::new(name.as_str())?;
            (ManagerRequest::ShowNamespace { name }, quick)
        }
        NsOp::Delete { name } => {
            let name = Namespace::new(name.as_str())?;
            (
                ManagerRequest::DeleteNamespace { name },
                CHANGE_TIMEOUT_MS_DEFAULT,
            )
        }
    })
}

/// What to print for the manager's answer to `op`.
fn output(op: &NsOp, response: ManagerResponse) -> anyhow::Result<String> {
    Ok(match (op, response) {
        (NsOp::Create { .. } | NsOp::Show { .. }, ManagerResponse::Namespace(info)) => show(&info),
        (NsOp::List, ManagerResponse::Namespaces(namespaces)) => list(namespaces),
        (NsOp::Delete { name }, ManagerResponse::Done) => format!("ok: namespace {name} deleted\n"),
        (NsOp::Create { .. } | NsOp::Show { .. }, other) => {
            return Err(unexpected("a namespace", &other));
        }
        (NsOp::List, other) => return Err(unexpected("namespaces", &other)),
        (NsOp::Delete { .. }, other) => return Err(unexpected("done", &other)),
    })
}

/// One namespace, one field per line.
fn show(info: &NamespaceInfo) -> String {
    format!(
        "name:       {}\n\
         id:         {}\n\
         shard:      {}\n\
         epoch:      {}\n\
         state:      {}\n\
         home site:  {}\n\
         placement:  {}\n\
         created at: {}\n",
        info.name,
        info.id,
        info.shard,
        info.epoch,
        info.state,
        info.home_site.as_deref().unwrap_or("-"),
        info.placement
            .as_ref()
            .map_or_else(|| "cluster default".to_owned(), ToString::to_string),
        rfc3339_utc(info.created_at_ms),
    )
}

/// The namespaces as a table, by name.
fn list(mut namespaces: Vec<NamespaceInfo>) -> String {
    namespaces.sort_by(|a, b| a.name.cmp(&b.name));
    let rows = namespaces
        .iter()
        .map(|ns| {
            vec![
                ns.name.to_string(),
                ns.id.to_string(),
                ns.shard.to_string(),
                ns.epoch.to_string(),
                ns.state.to_string(),
                ns.home_site.clone().unwrap_or_else(|| "-".into()),
                rfc3339_utc(ns.created_at_ms),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "ID",
            "SHARD",
            "EPOCH",
            "STATE",
            "HOME SITE",
            "CREATED AT",
        ],
        rows,
    )
}

#[cfg(test)]
mod tests {
    use cairn_client::{Error, ShardId};
    use cairn_wire::api::Epoch;
    use cairn_wire::catalog::NamespaceState;

    use super::*;

    fn info(name: &str, home_site: Option<&str>) -> NamespaceInfo {
        NamespaceInfo {
            name: Namespace::new(name).unwrap(),
            id: 12,
            shard: ShardId(3),
            epoch: Epoch(5),
            state: NamespaceState::Active,
            home_site: home_site.map(String::from),
            placement: None,
            created_at_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn bad_names_and_sites_are_refused_before_anything_is_sent() {
        let create = |name: &str, site: Option<&str>| {
            request(&NsOp::Create {
                name: name.into(),
                home_site: site.map(String::from),
                placement: PlacementArgs::default(),
            })
        };
        let err = create("a b", None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid argument: namespace \"a b\" contains ' '; allowed are A-Z a-z 0-9 _ . -"
        );
        assert_eq!(crate::exit_code(&err), 1);
        let err = create("ok", Some("dc 1")).unwrap_err().to_string();
        assert!(err.starts_with("invalid argument: site"), "{err}");
        let err = request(&NsOp::Delete {
            name: String::new(),
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("1 to 128 bytes"), "{err}");
        let (request, timeout_ms) = create("photos", Some("dc-1")).unwrap();
        assert_eq!(
            request,
            ManagerRequest::CreateNamespace {
                name: Namespace::new("photos").unwrap(),
                home_site: Some("dc-1".into()),
                placement: None,
            }
        );
        assert_eq!(timeout_ms, CHANGE_TIMEOUT_MS_DEFAULT);
        let (placed, _) = super::request(&NsOp::Create {
            name: "placed".into(),
            home_site: None,
            placement: PlacementArgs {
                required_sites: Some(vec!["dc2".into(), "dc1".into()]),
                ..PlacementArgs::default()
            },
        })
        .unwrap();
        let ManagerRequest::CreateNamespace { placement, .. } = placed else {
            panic!("{placed:?}");
        };
        let placement = placement.unwrap();
        assert_eq!(placement.required_sites, ["dc1", "dc2"]);
        assert_eq!(placement.replicas, 3);
        let bad = super::request(&NsOp::Create {
            name: "placed".into(),
            home_site: None,
            placement: PlacementArgs {
                replicas: Some(0),
                ..PlacementArgs::default()
            },
        });
        assert!(bad.unwrap_err().to_string().contains("replicas must be"));
    }

    #[test]
    fn a_namespace_shows_one_field_per_line() {
        let text = show(&info("photos", None));
        assert_eq!(
            text,
            "name:       photos\n\
             id:         12\n\
             shard:      3\n\
             epoch:      5\n\
             state:      active\n\
             home site:  -\n\
             placement:  cluster default\n\
             created at: 2023-11-14T22:13:20.000Z\n"
        );
    }

    #[test]
    fn namespaces_are_listed_by_name() {
        let text = list(vec![info("zeta", Some("dc-2")), info("alpha", None)]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "NAME   ID  SHARD  EPOCH  STATE   HOME SITE  CREATED AT",
                "alpha  12  3      5      active  -          2023-11-14T22:13:20.000Z",
                "zeta   12  3      5      active  dc-2       2023-11-14T22:13:20.000Z",
            ]
        );
    }

    #[test]
    fn an_answer_of_the_wrong_kind_is_a_protocol_error() {
        let err = output(&NsOp::List, ManagerResponse::Done).unwrap_err();
        assert!(err.to_string().contains("where namespaces"), "{err}");
        let delete = NsOp::Delete { name: "x".into() };
        assert_eq!(
            output(&delete, ManagerResponse::Done).unwrap(),
            "ok: namespace x deleted\n"
        );
    }

    #[test]
    fn errors_map_to_their_exit_codes() {
        let ns = Namespace::new("x").unwrap();
        let api = |e: ApiError| anyhow::Error::from(Error::Api(e));
        let code = |e: anyhow::Error| crate::exit_code(&e.context("while testing"));
        assert_eq!(code(api(ApiError::NotFound { key: vec![] })), 2);
        assert_eq!(code(api(ApiError::ObjectNotFound { name: "o".into() })), 2);
        assert_eq!(code(api(ApiError::UnknownNamespace(ns.clone()))), 2);
        assert_eq!(code(api(ApiError::AssertionFailed { key: vec![] })), 3);
        assert_eq!(code(api(ApiError::ObjectExists { name: "o".into() })), 3);
        assert_eq!(
            code(api(ApiError::ObjectChanged {
                name: "o".into(),
                current: None
            })),
            3
        );
        assert_eq!(code(api(ApiError::NamespaceExists(ns))), 3);
        assert_eq!(code(api(ApiError::NoQuorum { proposed: false })), 4);
        assert_eq!(code(api(ApiError::NoQuorum { proposed: true })), 4);
        assert_eq!(code(api(ApiError::Unavailable("no hosts".into()))), 4);
        let unavailable = Error::Unavailable {
            reason: "r".into(),
            last_error: "e".into(),
        };
        assert_eq!(code(unavailable.into()), 4);
        assert_eq!(code(Error::Ambiguous { reason: "r".into() }.into()), 5);
        assert_eq!(code(api(ApiError::Internal("disk".into()))), 5);
        assert_eq!(code(api(ApiError::InvalidManifest("m".into()))), 1);
        assert_eq!(code(ApiError::InvalidArgument("local".into()).into()), 1);
        assert_eq!(
            code(ApiError::ObjectNotFound { name: "o".into() }.into()),
            2
        );
        assert_eq!(code(anyhow::anyhow!("other")), 1);
    }
}
