# Shared by deploy/prometheus/{up,status,down}: options, the state directory, and helpers.
# Sourced, not run.

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
die() { echo "prometheus: $*" >&2; exit 1; }
usage() { sed -n '2,/^$/p' "$root/deploy/prometheus/up" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }

# Options (every command takes --dir; the others matter to `up` only).
dir=/var/tmp/cairn-prometheus listen=127.0.0.1:9090 interval=5s cluster=""
managers=() hosts=() routers=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir="$2"; shift 2 ;;
    --listen) listen="$2"; shift 2 ;;
    --interval) interval="$2"; shift 2 ;;
    --manager) managers+=("$2"); shift 2 ;;
    --host) hosts+=("$2"); shift 2 ;;
    --router) routers+=("$2"); shift 2 ;;
    -h|--help) usage 0 ;;
    -*) die "unknown argument $1 (see --help)" ;;
    *) [ -z "$cluster" ] || die "one cluster directory only"; cluster="$1"; shift ;;
  esac
done

running() { [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; }
url() { echo "http://$(cat "$dir/listen" 2>/dev/null || echo "$listen")"; }
dir_flag() { [ "$dir" = /var/tmp/cairn-prometheus ] || echo " --dir $dir"; }

need_tools() {
  if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
    die "prometheus is not installed: apt-get install --no-install-recommends prometheus (scripts/setup does)"
  fi
}

show_status() {
  echo "prometheus: up at $(url) (pid $(cat "$dir/pid")), files in $dir"
  echo "targets (1 = scraped):"
  promtool query instant "$(url)" 'sort_desc(up)' | sed 's/^/  /'
  echo "leaders per shard:"
  promtool query instant "$(url)" 'count by (shard) (cairn_raft_is_leader == 1)' | sed 's/^/  /'
  echo "alerts pending or firing:"
  local alerts
  alerts=$(promtool query instant "$(url)" 'ALERTS')
  if [ -n "${alerts//[[:space:]]/}" ]; then sed 's/^/  /' <<<"$alerts"; else echo "  none"; fi
}
