#!/usr/bin/env bash
# Checks the Nix side without a Nix store: every .nix file parses, and
# lethe's NixOS modules, evaluated beside NixOS's own initrd modules (systemd
# stage 1, LUKS, LVM, file systems, initrd network, SSH and secrets; see
# nix/eval/nixos.nix), give exactly the committed fixtures for every example
# machine: nix/fixtures/<machine>.json (the JSON config the Rust tests feed to
# check-config and the VM scenarios boot) and, per mode (systemd, init,
# scripted), nix/fixtures/initrd/<machine>-<mode>.json (lethe's units as
# NixOS's systemd-lib renders them, the links generateUnits makes, the
# upstream units, contents; or the scripted hooks). They also refuse the
# configurations in nix/eval/refused/ and pass the evaluation tests.
#
#   scripts/nix-check.sh            # check
#   scripts/nix-check.sh --update   # rewrite the fixtures from the modules
#
# NixOS's sources: $LETHE_NIXPKGS, else ../shared/nixpkgs beside the
# repository (lib/ and nixos/). Without them the check fails: an evaluation
# is never skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

update=false
[ "${1:-}" = --update ] && update=true

command -v nix-instantiate >/dev/null || { echo "nix-check: nix-instantiate missing (apt-get install nix-bin)" >&2; exit 1; }

bad=0
files=$(git ls-files '*.nix'; git ls-files --others --exclude-standard '*.nix')
for f in $files; do
  if ! nix-instantiate --parse "$f" >/dev/null; then
    echo "nix-check: $f does not parse" >&2
    bad=1
  fi
done
[ $bad = 0 ] || exit 1
echo "nix-check: $(echo "$files" | wc -w) .nix files parse"

nixpkgs=${LETHE_NIXPKGS:-$PWD/../shared/nixpkgs}
if [ ! -f "$nixpkgs/lib/default.nix" ] || [ ! -f "$nixpkgs/nixos/modules/system/boot/systemd/initrd.nix" ]; then
  echo "nix-check: no NixOS sources at $nixpkgs (lib/ and nixos/; set LETHE_NIXPKGS): the modules cannot be evaluated" >&2
  exit 1
fi
export LETHE_NIXPKGS=$(cd "$nixpkgs" && pwd)
eval_json() { nix-instantiate --eval --strict --json nix/eval "$@"; }
canonical() { python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin), indent=2, sort_keys=True))'; }
# Writes or compares one fixture with what the modules give.
fixture() {
  local file=$1 got=$2 source=$3
  if $update; then
    mkdir -p "$(dirname "$file")"
    printf '%s\n' "$got" > "$file"
    echo "nix-check: wrote $file"
  elif ! diff -u "$file" <(printf '%s\n' "$got"); then
    echo "nix-check: $file differs from what the modules give for $source (scripts/nix-check.sh --update)" >&2
    bad=1
  fi
}

machines=$(eval_json -A machineNames | python3 -c 'import json, sys; print(" ".join(json.load(sys.stdin)))')
[ -n "$machines" ] || { echo "nix-check: no machines in nix/eval/machines" >&2; exit 1; }
for m in $machines; do
  failed=$(eval_json -A "machines.$m.failedAssertions")
  if [ "$failed" != "[]" ]; then
    echo "nix-check: machine $m fails assertions: $failed" >&2
    bad=1
    continue
  fi
  fixture "nix/fixtures/$m.json" "$(eval_json -A "machines.$m.settings" | canonical)" "nix/eval/machines/$m.nix"
done
# Every machine in every mode: what its initrd gets, by NixOS's own code.
initrds=$(eval_json -A initrds | canonical)
names=$(printf '%s' "$initrds" | python3 -c 'import json, sys; print(" ".join(sorted(json.load(sys.stdin))))')
for n in $names; do
  one=$(printf '%s' "$initrds" | python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)[sys.argv[1]], indent=2, sort_keys=True))' "$n")
  failed=$(printf '%s' "$one" | python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["failedAssertions"]))')
  if [ "$failed" != "[]" ]; then
    echo "nix-check: $n fails assertions: $failed" >&2
    bad=1
  fi
  fixture "nix/fixtures/initrd/$n.json" "$one" "machine ${n%-*} in mode ${n##*-}"
done
for f in nix/fixtures/initrd/*.json; do
  n=$(basename "$f" .json)
  case " $names " in *" $n "*) ;; *) echo "nix-check: $f has no machine and mode in nix/eval" >&2; bad=1 ;; esac
done
for f in nix/fixtures/*.json; do
  m=$(basename "$f" .json)
  case " $machines " in *" $m "*) ;; *) echo "nix-check: $f has no machine nix/eval/machines/$m.nix" >&2; bad=1 ;; esac
done

# Every refused configuration fails an assertion with the expected message.
eval_json -A refused | python3 -c '
import json, sys
bad = 0
cases = json.load(sys.stdin)
for name, r in sorted(cases.items()):
    if r["refused"]:
        print("nix-check: refused %s: %r" % (name, r["expect"]))
    else:
        print("nix-check: %s was not refused with %r; failed assertions: %s" % (name, r["expect"], r["failed"]), file=sys.stderr)
        bad = 1
if not cases:
    print("nix-check: no refused cases", file=sys.stderr)
    bad = 1
sys.exit(bad)
' || bad=1

# The evaluation tests: each file returns a list of failures.
for t in nix/eval/*-tests.nix; do
  out=$(nix-instantiate --eval --strict --json -E "import ./$t { nixpkgs = $LETHE_NIXPKGS; }")
  if [ "$out" = "[]" ]; then
    echo "nix-check: $t passed"
  else
    echo "nix-check: $t failed: $out" >&2
    bad=1
  fi
done
[ $bad = 0 ] && echo "nix-check: modules evaluated beside NixOS's own give the committed fixtures for: $names"
exit $bad
