"""Known-vulnerability audit of the installed environment: ``make audit-deps`` (issue #7).

Runs pip-audit (PyPA) against the virtualenv it is started from and decides:

- any dependency with a known vulnerability fails the audit (exit 1), naming each advisory and
  the versions that fix it: raise the pin in pyproject.toml;
- a dependency pip-audit could not look up is never passed over in silence. pip-audit itself
  prints "No known vulnerabilities found" and exits 0 when its service answered nothing (e.g.
  PyPI's per-version JSON API answering 404, or api.osv.dev not resolving), which would be a
  false green; here such a run reports "audit NOT performed" with the reason, and fails
  (exit 2) when ``--require`` is given (``make audit-deps AUDIT_REQUIRED=1``), as it should
  wherever the vulnerability service is known to be reachable.

The project itself (an editable install, not on PyPI) is left out.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter
from typing import Any

__all__ = ["verdict", "main"]


def verdict(report: dict[str, Any], *, required: bool) -> tuple[int, str]:
    """Exit code and message for pip-audit's JSON report (``--format json``)."""
    # The project's own editable install is not on PyPI: not a dependency to audit.
    deps = [d for d in report.get("dependencies", []) if "editable" not in d.get("skip_reason", "")]
    vulnerable = [d for d in deps if d.get("vulns")]
    skipped = [d for d in deps if "skip_reason" in d]
    audited = len(deps) - len(skipped)
    lines: list[str] = []
    for dep in vulnerable:
        for vuln in dep["vulns"]:
            fixed = ", ".join(vuln.get("fix_versions") or []) or "no fixed version yet"
            lines.append(f"VULNERABLE {dep['name']} {dep['version']}: {vuln['id']} (fixed in {fixed})")
    if skipped:
        reasons = Counter(d["skip_reason"].split(":")[0] for d in skipped)
        lines.append(
            f"pip-audit could not audit {len(skipped)} of {len(deps)} dependencies: "
            + "; ".join(f"{reason} ({n})" for reason, n in reasons.most_common())
        )
    if vulnerable:
        return 1, "\n".join(lines)
    if audited == 0:
        lines.append(
            "audit NOT performed: the vulnerability service answered for no dependency "
            "(check that the PyPI JSON API or api.osv.dev is reachable)"
        )
        return (2 if required else 0), "\n".join(lines)
    if skipped and required:
        return 2, "\n".join(lines)
    lines.append(f"no known vulnerabilities in {audited} audited dependencies")
    return 0, "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--require", action="store_true", help="fail unless every dependency was audited")
    parser.add_argument("--service", default="pypi", choices=["pypi", "osv"], help="pip-audit's vulnerability service")
    args = parser.parse_args(argv)
    cmd = [
        sys.executable, "-m", "pip_audit", "--format", "json", "--progress-spinner", "off",
        "--skip-editable", "--desc", "off", "--vulnerability-service", args.service,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        # pip-audit could not even produce a report (e.g. the service's host does not resolve).
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"audit NOT performed: pip-audit failed (exit {proc.returncode}): {tail}", file=sys.stderr)
        return 2 if args.require else 0
    code, message = verdict(report, required=args.require)
    print(message, file=sys.stderr if code else sys.stdout)
    return code


if __name__ == "__main__":
    sys.exit(main())
