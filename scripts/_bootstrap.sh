# Shared by scripts/serve and scripts/test: a project virtualenv with the locked dependencies.
# Idempotent: a second run with an unchanged lock file skips pip entirely.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"

pip_install() {
  # this machine's pip configuration may name local indexes that do not exist: hide that noise
  "$VENV/bin/python" -m pip install "$@" 2>&1 | { grep -v '^WARNING: Location' || true; }
}

bootstrap_python() {
  local lock="$1"  # requirements file to install
  local stamp="$VENV/.installed-$(basename "$lock")"
  local want
  want="$(cat "$lock" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
  if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating virtualenv in .venv"
    "$PY" -m venv "$VENV"
  fi
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  echo "==> installing Python dependencies ($(basename "$lock"))"
  pip_install --quiet --upgrade pip >/dev/null
  if grep -q '^llama-cpp-python' "$lock" && ! "$VENV/bin/python" -c 'import llama_cpp' 2>/dev/null; then
    echo "==> building llama.cpp for the local model (first run only: about 10 minutes on 2 cores;"
    echo "    pip reuses the built wheel afterwards). Progress:"
    CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
      "$VENV/bin/python" -m pip install -v "$(grep '^llama-cpp-python' "$lock" | sed 's/\[server\]//')" 2>&1 \
      | grep --line-buffered -E '^\s*\[[0-9]+/[0-9]+\]|Successfully|ERROR|error:' \
      | sed -u -E 's/^\s*(\[[0-9]+\/[0-9]+\]).*/    \1 compiling llama.cpp/' || true
  fi
  pip_install --quiet -r "$lock"
  pip_install --quiet --no-deps -e "$ROOT"
  echo "$want" > "$stamp"
}
