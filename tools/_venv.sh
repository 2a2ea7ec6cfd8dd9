# Sourced by tools/demo and tools/test: makes .venv (when missing) and installs the project into it.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
extras=${1:-}
stamp=".venv/.installed${extras:+-$extras}"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# Reinstall only when the packaging or a C extension's source changed since the last install
# for these extras (the extensions are built in place by the editable install).
stale=$([ -f "$stamp" ] || echo missing)
for source in pyproject.toml setup.py dtn/*/*.c; do
  if [ "$source" -nt "$stamp" ]; then stale=changed; fi
done
if [ -n "$stale" ]; then
  echo "installing dtn into .venv (log: .venv/install.log)" >&2
  if ! { .venv/bin/python -m pip install --upgrade pip \
         && .venv/bin/python -m pip install -e ".${extras:+[$extras]}"; } >.venv/install.log 2>&1
  then
    tail -n 30 .venv/install.log >&2
    exit 1
  fi
  touch "$stamp"
fi
export PATH="$root/.venv/bin:$PATH"
