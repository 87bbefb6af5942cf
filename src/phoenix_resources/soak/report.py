"""The table a campaign prints: faults planned and injected, then each invariant."""

from __future__ import annotations

from phoenix_resources.soak.campaign import KINDS, Report
from phoenix_resources.soak.cluster import CLUSTER_KINDS


def render(report: Report) -> str:
    plan = report.plan
    lines = [f"soak campaign, seed {plan.seed}: {report.workload.summary()}",
             f"{len(report.workload.commands):,} commands driven in {report.elapsed_s:.0f} s", "",
             f"{'fault':<26}{'planned':>9}{'injected':>10}  detail"]
    for kind in KINDS:
        if kind in CLUSTER_KINDS and not (plan.faults.get(kind) or report.not_injected[kind]):
            continue
        detail = ""
        if kind in CLUSTER_KINDS and report.fault_s.get(kind):
            detail = "healed after " + ", ".join(f"{s:.1f} s" for s in report.fault_s[kind])
        if kind == "sigkill" and report.killed:
            detail = ", ".join(f"{k} {n}" for k, n in sorted(report.killed.items()))
        if kind == "hung-relay" and report.takeovers_s:
            detail = "standby led after " + ", ".join(f"{s:.1f} s" for s in report.takeovers_s)
        if report.not_injected[kind]:
            detail = (detail + "; " if detail else "") + \
                f"{report.not_injected[kind]} NOT injected (no way to)"
        lines.append(f"{kind:<26}{plan.faults.get(kind, 0):>9}{report.injected[kind]:>10}"
                     f"  {detail}")
    if report.exits:
        lines.append("processes that exited by themselves (restarted): " + ", ".join(
            f"{k} {n}" for k, n in sorted(report.exits.items())))
    lines += ["", f"{'invariant':<34}{'checked':>9}{'violations':>12}  status"]
    if not report.converged:
        lines.append(f"{'converged after the window':<34}{1:>9}{1:>12}  FAIL")
    for c in report.checks:
        lines.append(f"{c.name:<34}{c.checked:>9}{c.violations:>12}  "
                     f"{'ok' if c.ok else 'FAIL'}")
        lines += [f"    {e}" for e in c.examples]
    lines += ["", f"lost: {report.violations('nothing lost')}, applied twice: "
              f"{report.violations('nothing applied twice')} — "
              f"{'PASSED' if report.ok else 'FAILED'}"]
    return "\n".join(lines)
