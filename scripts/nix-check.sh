#!/usr/bin/env bash
# Checks the Nix side without a Nix store: every .nix file parses, and, where
# nixpkgs' lib is available, the NixOS modules evaluate for every example
# machine to exactly the committed fixtures (nix/fixtures/*.json, which the
# Rust tests feed to check-config and the VM scenarios boot), refuse the
# configurations in nix/eval/refused/, and pass the evaluation tests.
#
#   scripts/nix-check.sh            # check
#   scripts/nix-check.sh --update   # rewrite the fixtures from the modules
#
# nixpkgs' lib: $LETHE_NIXPKGS_LIB, else /var/cache/lethe/nixpkgs.lib (a
# checkout of github:nix-community/nixpkgs.lib).
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

lib=${LETHE_NIXPKGS_LIB:-/var/cache/lethe/nixpkgs.lib}
if [ ! -f "$lib/lib/default.nix" ]; then
  echo "nix-check: no nixpkgs lib at $lib (set LETHE_NIXPKGS_LIB): module evaluation NOT checked;" \
    "the committed fixtures are still checked by check-config and booted by vm-tests" >&2
  exit 0
fi
export LETHE_NIXPKGS_LIB=$lib
eval_json() { nix-instantiate --eval --strict --json nix/eval "$@"; }
canonical() { python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin), indent=2, sort_keys=True))'; }

machines=$(eval_json -A machineNames | python3 -c 'import json, sys; print(" ".join(json.load(sys.stdin)))')
[ -n "$machines" ] || { echo "nix-check: no machines in nix/eval/machines" >&2; exit 1; }
for m in $machines; do
  failed=$(eval_json -A "machines.$m.failedAssertions")
  if [ "$failed" != "[]" ]; then
    echo "nix-check: machine $m fails assertions: $failed" >&2
    bad=1
    continue
  fi
  got=$(eval_json -A "machines.$m.settings" | canonical)
  fixture=nix/fixtures/$m.json
  if $update; then
    printf '%s\n' "$got" > "$fixture"
    echo "nix-check: wrote $fixture"
  elif ! diff -u "$fixture" <(printf '%s\n' "$got"); then
    echo "nix-check: $fixture differs from what the module writes for nix/eval/machines/$m.nix (scripts/nix-check.sh --update)" >&2
    bad=1
  fi
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
  out=$(nix-instantiate --eval --strict --json -E "import ./$t { lib = import $lib/lib; }")
  if [ "$out" = "[]" ]; then
    echo "nix-check: $t passed"
  else
    echo "nix-check: $t failed: $out" >&2
    bad=1
  fi
done
[ $bad = 0 ] && echo "nix-check: modules evaluate to the committed fixtures for: $machines"
exit $bad
