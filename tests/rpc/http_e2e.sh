#!/usr/bin/env bash
# The OpenAI-compatible HTTP front end end to end, with the real `openai` client from PyPI
# (tests/rpc/openai_client_e2e.py), and the web chat page in headless Chromium
# (tests/rpc/chat_page_e2e.py). The test set-up makes the virtualenv itself (build/python-env,
# kept between runs); without PyPI the test is skipped (ctest exit code 77), saying so.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${TPSERVE_BIN:?}" "${TPSERVE_FIXTURES:?}" "${TPSERVE_MPIRUN:?}"
venv=${TPSERVE_PYTHON_ENV:-$(dirname "$(dirname "$TPSERVE_BIN")")/python-env}
if ! "$venv/bin/python" -c "import openai" 2>/dev/null; then
  # --system-site-packages: Debian's python3-selenium, for the page test.
  python3 -m venv --system-site-packages "$venv" || { echo "SKIP: python3 -m venv failed"; exit 77; }
  if ! "$venv/bin/pip" install --quiet --disable-pip-version-check openai; then
    echo "SKIP: cannot install the openai client from PyPI (no network?)"
    exit 77
  fi
fi
"$venv/bin/python" "$here/openai_client_e2e.py" || exit 1
