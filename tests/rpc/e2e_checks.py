"""What the Python end-to-end tests share: named checks that print ok/FAIL and are tallied, the
exit status from the tally, and reading one of the server's Prometheus metrics."""
import re
import sys
import urllib.request

failures = []


def check(label, condition, detail=""):
    print(f"ok: {label}" if condition else f"FAIL: {label} {detail}")
    if not condition:
        failures.append(label)


def finish():
    if failures:
        print(f"{len(failures)} check(s) failed: {failures}")
        sys.exit(1)
    print("all checks passed")


def metric(port, name):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    return float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))
