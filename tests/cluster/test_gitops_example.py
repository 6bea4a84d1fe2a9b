"""examples/gitops/ is what a GitOps tool would apply: rendered by kustomize (kubectl's) and accepted by the
apiserver (server-side dry run against the chart's CRD, its CEL rules included), in a fresh namespace."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from test_chart import CHART, _kubectl
from test_chart import chart_crds as chart_crds  # the fixtures
from test_chart import namespaces as namespaces

pytestmark = pytest.mark.cluster

GITOPS = Path(__file__).resolve().parents[2] / "examples" / "gitops"
assert CHART.is_dir()


def test_gitops_example_renders_and_passes_server_side_dry_run(kube, namespaces, chart_crds):
    ns = namespaces("reel-gitops-")
    rendered = subprocess.run([_kubectl(), "kustomize", str(GITOPS)], capture_output=True, text=True, timeout=60)
    assert rendered.returncode == 0, rendered.stderr
    docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    assert [d["kind"] for d in docs] == ["RecordingSession"]
    for d in docs:
        d["metadata"]["namespace"] = ns
    proc = subprocess.run([_kubectl(), "--kubeconfig", str(kube.kubeconfig), "apply", "--dry-run=server", "-f", "-"],
                          input=yaml.safe_dump_all(docs), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "recordingsession.reel.dev/standup created (server dry run)" in proc.stdout, proc.stdout
