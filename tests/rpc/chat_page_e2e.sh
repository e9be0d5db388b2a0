#!/usr/bin/env bash
# The web chat page in headless Chromium (tests/rpc/chat_page_e2e.py). Needs Debian's chromium,
# chromium-driver and python3-selenium (launch/setup.sh installs them); without them the test is
# skipped (ctest exit code 77), saying which is missing. The screenshot lands in
# $TPSERVE_ARTIFACTS (default: build/test-artifacts).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${TPSERVE_BIN:?}" "${TPSERVE_FIXTURES:?}" "${TPSERVE_MPIRUN:?}"
for need in /usr/bin/chromium /usr/bin/chromedriver; do
  [[ -x $need ]] || { echo "SKIP: $need is not installed (apt-get install chromium chromium-driver)"; exit 77; }
done
/usr/bin/python3 -c "import selenium" 2>/dev/null ||
  { echo "SKIP: python3-selenium is not installed"; exit 77; }
export TPSERVE_ARTIFACTS=${TPSERVE_ARTIFACTS:-$(dirname "$(dirname "$TPSERVE_BIN")")/test-artifacts}
exec /usr/bin/python3 "$here/chat_page_e2e.py"
