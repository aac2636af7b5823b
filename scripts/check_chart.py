#!/usr/bin/env python3
"""Checks the Helm chart offline, with no helm binary and no cluster.

1. `helm lint --strict` (the Helm SDK bundled by the helm-python-sdk package),
   with the default values and with ci/all-features-values.yaml; the values
   are validated against values.schema.json on the way.
2. Renders both and validates every manifest against the Kubernetes OpenAPI
   schemas (kubernetes-validate, strict: unknown fields are errors). The
   ServiceMonitor and PrometheusRule are CRDs with no bundled schema; they
   are checked by hand.
4. Every metric the Grafana dashboard and the alert rules query is one the
   services export (listed in docs/operations.md).
3. Keeps the chart and the settings in step: the PREWARM_* variables the chart
   renders are exactly the keys documented in docs/configuration.md (the Rust
   test `config_consistency` keeps those keys and the settings structs in step).

Exit status 0 when everything passes; prints what failed otherwise.
"""
import os
import re
import sys

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHART = os.path.join(ROOT, "deploy", "helm", "prewarm")
KUBE_VERSION = "1.30.0"
failures = []


def fail(message):
    failures.append(message)
    print(f"FAIL {message}")


def documented_keys():
    keys = set()
    with open(os.path.join(ROOT, "docs", "configuration.md")) as f:
        for line in f:
            if line.startswith("| `"):
                first_cell = line.split("|")[1]
                keys.update(re.findall(r"`([a-z0-9_.]+)`", first_cell))
    return keys


def rendered_env(docs):
    """PREWARM_* names set by ConfigMaps and container env, as dotted keys."""
    keys = set()
    for doc in docs:
        if doc.get("kind") == "ConfigMap" and doc["metadata"]["name"].endswith("-config"):
            names = doc.get("data", {}).keys()
        elif doc.get("kind") == "ConfigMap":
            continue
        elif doc.get("kind") in ("Deployment", "Job"):
            containers = doc["spec"]["template"]["spec"]["containers"]
            names = [e["name"] for c in containers for e in c.get("env", [])]
        else:
            continue
        for name in names:
            m = re.fullmatch(r"PREWARM_([A-Z0-9_]+?)(?:__([A-Z0-9_]+))?", name)
            if not m:
                fail(f"unexpected variable {name}")
                continue
            section, key = m.group(1).lower(), (m.group(2) or "").lower()
            # A map setting (kafka.properties) renders one variable per entry.
            key = key.split("__")[0]
            keys.add(f"{section}.{key}" if key else section)
    return keys


def check(values_file):
    label = os.path.basename(values_file) if values_file else "default values"
    values = None
    if values_file:
        with open(values_file) as f:
            values = yaml.safe_load(f)
    report = helm.lint(CHART, values, strict=True, kube_version=f"v{KUBE_VERSION}")
    for msg in report.get("messages", []):
        if msg["severity"] >= 2:
            fail(f"lint ({label}): {msg['path']}: {msg['error']}")
    for err in report.get("errors", []) or []:
        fail(f"lint ({label}): {err}")

    chart = helm.Chart.load(CHART)
    manifests = chart.render(values, name="ci", namespace="prewarm", is_install=True)
    docs = []
    for path, text in sorted(manifests.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                docs.append(doc)
                validate(doc, f"{label}: {path}")
    return docs


def validate(doc, where):
    kind = doc.get("kind")
    if kind == "ServiceMonitor":
        spec = doc.get("spec", {})
        if doc.get("apiVersion") != "monitoring.coreos.com/v1" or not spec.get("endpoints"):
            fail(f"{where}: malformed ServiceMonitor")
        return
    if kind == "PrometheusRule":
        groups = doc.get("spec", {}).get("groups", [])
        rules = [r for g in groups for r in g.get("rules", [])]
        if doc.get("apiVersion") != "monitoring.coreos.com/v1" or not rules:
            fail(f"{where}: malformed PrometheusRule")
        for rule in rules:
            if not rule.get("alert") or not rule.get("expr"):
                fail(f"{where}: a rule without alert or expr: {rule}")
        return
    try:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        fail(f"{where}: {kind} {doc['metadata'].get('name')}: {e.message} at {list(e.path)}")


def exported_metrics():
    """Metric names listed in docs/operations.md (first cell of its tables)."""
    names = set()
    with open(os.path.join(ROOT, "docs", "operations.md")) as f:
        for line in f:
            if line.startswith("| `prewarm_"):
                names.update(re.findall(r"`(prewarm_[a-z0-9_]+)`", line.split("|")[1]))
    return names


def queried_metrics(expr):
    """prewarm_* names in a PromQL expression, histogram suffixes removed."""
    return {re.sub(r"_(bucket|sum|count)$", "", m) for m in re.findall(r"prewarm_[a-z0-9_]+", expr)}


def check_queries(docs):
    exported = exported_metrics()
    exprs = []
    for doc in docs:
        if doc.get("kind") == "PrometheusRule":
            exprs += [r["expr"] for g in doc["spec"]["groups"] for r in g["rules"]]
        if doc.get("kind") == "ConfigMap" and "prewarm.json" in doc.get("data", {}):
            import json
            dashboard = json.loads(doc["data"]["prewarm.json"])
            exprs += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    if not exprs:
        fail("the all-features render has no dashboard or alert queries")
    for expr in exprs:
        for name in sorted(queried_metrics(str(expr)) - exported):
            fail(f"{name} is queried by the dashboard or an alert but not exported")
    print(f"{len(exprs)} dashboard and alert queries use exported metrics")


def main():
    default_docs = check(None)
    full_docs = check(os.path.join(CHART, "ci", "all-features-values.yaml"))
    kinds = sorted({d["kind"] for d in full_docs})
    print(f"rendered kinds (all features): {', '.join(kinds)}")
    for required in ("ConfigMap", "Deployment", "Service", "Job", "HorizontalPodAutoscaler",
                     "PodDisruptionBudget", "ServiceMonitor", "PrometheusRule", "ServiceAccount"):
        if required not in kinds:
            fail(f"all-features render has no {required}")
    check_queries(full_docs)

    docs_keys = documented_keys()
    env_keys = rendered_env(full_docs)
    for key in sorted(docs_keys - env_keys):
        fail(f"documented setting {key} is not set by the chart")
    for key in sorted(env_keys - docs_keys):
        fail(f"the chart sets {key}, which docs/configuration.md does not document")
    print(f"{len(env_keys)} settings rendered, {len(docs_keys)} documented")
    if len(default_docs) == 0:
        fail("default render is empty")
    if failures:
        print(f"chart check: {len(failures)} failure(s)")
        sys.exit(1)
    print("chart check: ok")


if __name__ == "__main__":
    main()
