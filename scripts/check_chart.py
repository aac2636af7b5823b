#!/usr/bin/env python3
"""Checks the Helm chart offline, with no helm binary and no cluster.

1. `helm lint --strict` (the Helm SDK bundled by the helm-python-sdk package)
   of the default values, ci/all-features-values.yaml and
   examples/managed-values.yaml, for the oldest and the newest Kubernetes
   version kubernetes-validate ships; the values are validated against
   values.schema.json on the way (also by every render below).
2. Renders the chart for every branch of its values (defaults, all features,
   the managed example, NetworkPolicy off, KEDA on, KEDA and the worker's HPA
   both on -- which must fail --, each anti-affinity preset, fullnameOverride,
   the worker's HPA) and validates every manifest against the Kubernetes
   OpenAPI schemas of both of those versions (kubernetes-validate, strict:
   unknown fields are errors). The ServiceMonitor, PrometheusRule and KEDA
   ScaledObject are CRDs with no bundled schema; they are checked by hand.
3. Asserts what each branch renders: the objects and fields its values turn
   on, off or change (`expect` below; each assertion names its branch).
4. Every metric the Grafana dashboard, the alert rules and KEDA's trigger
   query is one the services export (listed in docs/operations.md).
5. Keeps the chart and the settings in step: the PREWARM_* variables the chart
   renders are exactly the keys documented in docs/configuration.md (the Rust
   test `config_consistency` keeps those keys and the settings structs in step).
6. The `helm test` pod calls routes the API serves (docs/openapi.json), with
   the statuses and error codes it documents (docs/api.md).

PREWARM_CHART=<dir> checks a copy of the chart instead (used to see the
assertions fail on a deliberately broken template).

Exit status 0 when everything passes; prints what failed otherwise.
"""
import copy
import json
import os
import re
import sys

import helm_python as helm
import kubernetes_validate
import yaml
from kubernetes_validate import utils as kv_utils

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHART = os.environ.get("PREWARM_CHART") or os.path.join(ROOT, "deploy", "helm", "prewarm")
RELEASE, NAMESPACE = "ci", "prewarm"
failures = []
assertions = 0


def kube_versions():
    """The oldest and the newest Kubernetes version whose schemas the
    installed kubernetes-validate ships (its list has duplicates: a plain and
    a strict directory per version)."""
    versions = sorted(set(kv_utils.all_versions()), key=lambda v: tuple(int(x) for x in v.split(".")))
    return versions[0], versions[-1]


KUBE_VERSIONS = kube_versions()


def fail(message):
    failures.append(message)
    print(f"FAIL {message}")


def expect(condition, message):
    """One assertion over a render: `message` says what should hold."""
    global assertions
    assertions += 1
    if not condition:
        fail(message)
    return condition


def load_values(path):
    with open(path) as f:
        return yaml.safe_load(f)


def deep_merge(base, extra):
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# ---------------------------------------------------------------- rendering


def lint(values, label):
    for version in KUBE_VERSIONS:
        report = helm.lint(CHART, values, strict=True, kube_version=f"v{version}")
        for msg in report.get("messages", []):
            if msg["severity"] >= 2:
                fail(f"lint ({label}, Kubernetes {version}): {msg['path']}: {msg['error']}")
        for err in report.get("errors", []) or []:
            fail(f"lint ({label}, Kubernetes {version}): {err}")


def render_raw(values):
    chart = helm.Chart.load(CHART)
    manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs = []
    for path, text in sorted(manifests.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                docs.append((path, doc))
    return docs


class Render:
    """One render of the chart and lookups into it."""

    def __init__(self, label, values):
        self.label = label
        self.values = values or {}
        # The values the templates saw: the chart's defaults and these.
        self.merged = helm.Chart.load(CHART).merge_values(values)
        self.paths = render_raw(values)
        self.docs = [doc for _, doc in self.paths]

    def all(self, kind):
        return [d for d in self.docs if d.get("kind") == kind]

    def get(self, kind, name):
        found = [d for d in self.all(kind) if d["metadata"]["name"] == name]
        return found[0] if found else None

    @property
    def fullname(self):
        v = self.merged
        if v.get("fullnameOverride"):
            return v["fullnameOverride"]
        return f"{RELEASE}-{v.get('nameOverride') or 'prewarm'}"

    def deployment(self, component):
        return self.get("Deployment", f"{self.fullname}-{component}")

    def pod(self, component):
        d = self.deployment(component)
        return d["spec"]["template"]["spec"] if d else {}

    def container(self, component):
        containers = self.pod(component).get("containers", [])
        return containers[0] if containers else {}

    def policy(self, component):
        return self.get("NetworkPolicy", f"{self.fullname}-{component}")

    def test_pod(self):
        pods = [d for d in self.all("Pod")
                if d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
        return pods[0] if pods else None


def check(label, values):
    """Renders `values` and validates every manifest; None if it fails to render."""
    try:
        r = Render(label, values)
    except helm.HelmError as e:
        fail(f"{label}: does not render: {e}")
        return None
    for path, doc in r.paths:
        validate(doc, f"{label}: {path}", r)
    return r


def validate(doc, where, r):
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
    if kind == "ScaledObject":
        validate_scaled_object(doc, where, r)
        return
    for version in KUBE_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            fail(f"{where}: {kind} {doc['metadata'].get('name')} (Kubernetes {version}): "
                 f"{e.message} at {list(e.path)}")
        except kubernetes_validate.SchemaNotFoundError:
            fail(f"{where}: {kind} {doc.get('apiVersion')} has no schema in Kubernetes {version}")


def validate_scaled_object(doc, where, r):
    """KEDA's CRD is not in kubernetes-validate: its shape by hand."""
    spec = doc.get("spec") or {}
    worker = r.deployment("warmup-worker")
    expect(doc.get("apiVersion") == "keda.sh/v1alpha1", f"{where}: ScaledObject apiVersion is keda.sh/v1alpha1")
    expect(set(doc) <= {"apiVersion", "kind", "metadata", "spec"}, f"{where}: ScaledObject has only apiVersion/kind/metadata/spec")
    target = spec.get("scaleTargetRef") or {}
    expect(worker is not None and target.get("name") == worker["metadata"]["name"],
           f"{where}: scaleTargetRef.name ({target.get('name')}) is the worker Deployment's name")
    expect(target.get("kind", "Deployment") == "Deployment", f"{where}: scaleTargetRef.kind is Deployment")
    lo, hi = spec.get("minReplicaCount"), spec.get("maxReplicaCount")
    expect(isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi,
           f"{where}: 1 <= minReplicaCount ({lo}) <= maxReplicaCount ({hi})")
    triggers = spec.get("triggers") or [{}]
    expect(triggers[0].get("type") == "prometheus", f"{where}: triggers[0].type is prometheus")
    meta = triggers[0].get("metadata") or {}
    for key in ("serverAddress", "query", "threshold"):
        expect(isinstance(meta.get(key), str) and meta[key] != "",
               f"{where}: triggers[0].metadata.{key} is a non-empty string (got {meta.get(key)!r})")
    for key, value in meta.items():
        expect(isinstance(value, str), f"{where}: triggers[0].metadata.{key} is a string (KEDA's metadata is map[string]string)")
    expect(re.fullmatch(r"[0-9]+(\.[0-9]+)?", str(meta.get("threshold"))) is not None,
           f"{where}: threshold {meta.get('threshold')!r} is a number")
    behavior = spec.get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior")
    if behavior is not None:
        expect(set(behavior) <= {"scaleUp", "scaleDown"}, f"{where}: HPA behavior has only scaleUp/scaleDown")


# ------------------------------------------------------------- assertions


def rule_ports(rule):
    return {(p.get("port"), p.get("protocol", "TCP")) for p in rule.get("ports", [])}


def find_rule(rules, port, protocol="TCP"):
    return [rule for rule in rules or [] if (port, protocol) in rule_ports(rule)]


def labels_of(doc):
    return doc.get("metadata", {}).get("labels") or {}


def pod_templates(r):
    """(where, pod metadata, pod spec) of every pod the chart renders."""
    out = []
    for d in r.docs:
        if d.get("kind") in ("Deployment", "Job"):
            out.append((f"{d['kind']} {d['metadata']['name']}", d["spec"]["template"]["metadata"], d["spec"]["template"]["spec"]))
        elif d.get("kind") == "Pod":
            out.append((f"Pod {d['metadata']['name']}", d["metadata"], d["spec"]))
    return out


def selector(component):
    return {"app.kubernetes.io/name": component, "app.kubernetes.io/instance": RELEASE}


def assert_security_defaults(r):
    label = r.label
    for where, _, spec in pod_templates(r):
        expect(spec.get("automountServiceAccountToken") is False,
               f"{label}: {where}: automountServiceAccountToken is false")
        sc = spec.get("securityContext") or {}
        expect(sc.get("runAsNonRoot") is True and sc.get("seccompProfile") == {"type": "RuntimeDefault"},
               f"{label}: {where}: pod securityContext runAsNonRoot and seccomp RuntimeDefault")
        for c in spec.get("containers", []):
            csc = c.get("securityContext") or {}
            expect(csc.get("readOnlyRootFilesystem") is True and csc.get("allowPrivilegeEscalation") is False
                   and csc.get("capabilities") == {"drop": ["ALL"]} and csc.get("runAsNonRoot") is True
                   and csc.get("seccompProfile") == {"type": "RuntimeDefault"},
                   f"{label}: {where}: container {c['name']} is read-only, non-root, no privilege escalation, "
                   f"drops ALL capabilities, seccomp RuntimeDefault")


def assert_default_policies(r):
    """NetworkPolicy with the default values."""
    label = r.label
    api, worker = r.policy("template-api"), r.policy("warmup-worker")
    if not (expect(api is not None and worker is not None,
                   f"{label}: a NetworkPolicy per component (api, worker)")):
        return
    expect(len(r.all("NetworkPolicy")) == 2, f"{label}: exactly two NetworkPolicies")
    monitoring = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    for component, policy, metrics_port in (("template-api", api, 9090), ("warmup-worker", worker, 9091)):
        spec = policy["spec"]
        expect(spec["podSelector"] == {"matchLabels": selector(component)},
               f"{label}: {component} NetworkPolicy selects the component's pods")
        expect(sorted(spec.get("policyTypes", [])) == ["Egress", "Ingress"],
               f"{label}: {component} NetworkPolicy restricts ingress and egress")
        rules = find_rule(spec.get("ingress"), metrics_port)
        expect(len(rules) == 1 and rules[0].get("from") == monitoring,
               f"{label}: {component} metrics port {metrics_port} only from namespace monitoring")
        egress = spec.get("egress", [])
        for port in (5432, 6379, 9092, 443):
            rules = find_rule(egress, port)
            expect(len(rules) == 1 and "to" not in rules[0],
                   f"{label}: {component} egress to port {port} (any destination)")
        dns = find_rule(egress, 53, "UDP")
        expect(len(dns) == 1 and (53, "TCP") in rule_ports(dns[0])
               and dns[0].get("to") == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
               f"{label}: {component} DNS egress (53 UDP and TCP) to kube-system")
    http = find_rule(api["spec"].get("ingress"), 8080)
    expect(len(http) == 1 and "from" not in http[0], f"{label}: API port 8080 open to anywhere")
    expect(not find_rule(worker["spec"].get("ingress"), 8080), f"{label}: worker has no ingress on the API's port")
    expect(len(worker["spec"].get("ingress", [])) == 1, f"{label}: worker ingress is the metrics port only")
    # similar.upstream_url http://recommendations:8080: the API's only.
    expect(len(find_rule(api["spec"]["egress"], 8080)) == 1, f"{label}: API egress to the recommender's port 8080 (from config)")
    expect(not find_rule(worker["spec"]["egress"], 8080), f"{label}: worker has no egress to the recommender")


def assert_preset(r, preset):
    label = r.label
    for component in ("template-api", "warmup-worker"):
        aff = r.pod(component).get("affinity")
        term = {"labelSelector": {"matchLabels": selector(component)}, "topologyKey": "kubernetes.io/hostname"}
        if preset == "soft":
            expect(aff == {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 1, "podAffinityTerm": term}]}},
                f"{label}: {component} soft anti-affinity (preferred, weight 1, by hostname, own pods)")
        elif preset == "hard":
            expect(aff == {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}},
                   f"{label}: {component} hard anti-affinity (required, by hostname, own pods)")
        else:
            expect(aff is None, f"{label}: {component} no affinity with an empty preset")


def assert_test_pod(r, image):
    label = r.label
    pod = r.test_pod()
    if not expect(pod is not None, f"{label}: a helm test pod (helm.sh/hook: test)"):
        return
    spec = pod["spec"]
    c = spec["containers"][0]
    expect(spec.get("restartPolicy") == "Never", f"{label}: test pod restartPolicy Never")
    expect(c["image"] == image, f"{label}: test image {c['image']} is {image}")
    expect(not c["image"].endswith(":latest") and re.search(r":[0-9][^:/]*$", c["image"]),
           f"{label}: test image tag pinned to a version")
    service = r.get("Service", f"{r.fullname}-template-api")
    port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "http") if service else None
    env = {e["name"]: e for e in c.get("env", [])}
    expect(env.get("API", {}).get("value") == f"http://{r.fullname}-template-api.{NAMESPACE}.svc:{port}",
           f"{label}: test pod calls the API Service's http port ({env.get('API', {}).get('value')})")
    token = r.merged["secrets"]["adminToken"]
    expect(env.get("ADMIN_TOKEN", {}).get("valueFrom") == {"secretKeyRef": {"name": token["name"], "key": token["key"]}},
           f"{label}: test pod reads the admin token from secrets.adminToken")
    check_test_script(label, " ".join(c.get("command", []) + c.get("args", [])))


def check_test_script(label, script):
    """The test's calls are routes the API serves, with documented answers."""
    with open(os.path.join(ROOT, "docs", "openapi.json")) as f:
        api = json.load(f)
    with open(os.path.join(ROOT, "docs", "api.md")) as f:
        codes = dict(re.findall(r"^\| `([a-z_]+)` \| (\d{3}) \|", f.read(), re.M))
    script = script.replace("\\\n", " ")
    calls = re.findall(r"^\s*expect \"[^\"]+\" (\d{3}) '([^']*)' (.*)$", script, re.M)
    expect(len(calls) >= 2, f"{label}: test script makes its checks with expect (found {len(calls)})")
    ready = authed = False
    for status, fragment, args in calls:
        m = re.search(r"\$API(/[^\"\s]*)", args)
        if not expect(m, f"{label}: test call {args!r} targets $API"):
            continue
        path = m.group(1).replace("$nobody", "{id}")
        op = api["paths"].get(path, {}).get("get")
        if not expect(op is not None, f"{label}: test calls GET {path}, which docs/openapi.json serves"):
            continue
        expect(status in op.get("responses", {}), f"{label}: GET {path} documents status {status}")
        code = re.search(r'"code":"([a-z_]+)"', fragment)
        if code:
            expect(codes.get(code.group(1)) == status,
                   f"{label}: error code {code.group(1)} is {status} in docs/api.md")
        if path == "/readyz" and status == "200" and '"status":"ready"' in fragment:
            ready = True
        if "Authorization: Bearer $ADMIN_TOKEN" in args and op.get("security") and status != "401":
            schemes = [name for s in op["security"] for name in s]
            scheme = api["components"]["securitySchemes"].get(schemes[0], {}) if schemes else {}
            authed = scheme.get("scheme") == "bearer"
    expect(ready, f"{label}: the test checks GET /readyz answers 200 ready")
    expect(authed, f"{label}: the test makes an authenticated call (Bearer admin token, not refused)")


# ------------------------------------------------------------- the branches


def check_defaults(r):
    label = r.label
    expect(r.get("ConfigMap", "ci-prewarm-config") is not None, f"{label}: objects are named <release>-prewarm-*")
    for d in r.docs:
        expect(d["metadata"]["name"].startswith("ci-prewarm-") or d["metadata"]["name"] == "ci-prewarm",
               f"{label}: {d['kind']} {d['metadata']['name']} is named ci-prewarm-*")
        expect(labels_of(d).get("app.kubernetes.io/part-of") == "prewarm"
               and labels_of(d).get("app.kubernetes.io/instance") == RELEASE,
               f"{label}: {d['kind']} {d['metadata']['name']} has the standard labels")
    assert_default_policies(r)
    assert_security_defaults(r)
    assert_preset(r, "soft")
    assert_test_pod(r, "docker.io/curlimages/curl:8.11.1")
    expect(not r.all("ServiceAccount"), f"{label}: no ServiceAccount by default")
    expect(not r.all("ScaledObject") and not r.all("HorizontalPodAutoscaler"), f"{label}: no autoscaler by default")
    for component, replicas in (("template-api", 2), ("warmup-worker", 1)):
        d, pod = r.deployment(component), r.pod(component)
        expect(d["spec"].get("replicas") == replicas, f"{label}: {component} replicas {replicas}")
        expect(d["spec"].get("revisionHistoryLimit") == 10, f"{label}: {component} revisionHistoryLimit 10")
        expect(d["spec"]["template"]["metadata"]["labels"] == selector(component),
               f"{label}: {component} pod labels are the selector only")
        for key in ("priorityClassName", "topologySpreadConstraints", "initContainers", "volumes"):
            expect(key not in pod, f"{label}: {component} has no {key}")
        expect([c["name"] for c in pod["containers"]] == [component], f"{label}: {component} has one container")
        c = r.container(component)
        expect(c["envFrom"] == [{"configMapRef": {"name": "ci-prewarm-config"}}],
               f"{label}: {component} envFrom is the chart's ConfigMap only")
        expect(all(e["name"].startswith("PREWARM_") for e in c["env"]), f"{label}: {component} env is the chart's only")
        expect("volumeMounts" not in c, f"{label}: {component} has no volume mounts")


def check_all_features(r):
    label = r.label
    v = r.values
    fn = r.fullname
    expect(r.get("ConfigMap", "ci-designs-config") is not None,
           f"{label}: nameOverride gives objects named ci-designs-* "
           f"({sorted(d['metadata']['name'] for d in r.all('ConfigMap'))})")
    common = v["commonLabels"]
    for d in r.docs:
        name, labels = d["metadata"]["name"], labels_of(d)
        expect(name.startswith(fn), f"{label}: {d['kind']} {name} is named {fn}*")
        expect(labels.get("app.kubernetes.io/part-of") == "designs", f"{label}: {d['kind']} {name} part-of is nameOverride")
        expect(labels.get("example.com/cost-center") == "design-platform",
               f"{label}: {d['kind']} {name} carries commonLabels")
        expect(labels.get("app.kubernetes.io/name") != "ignored",
               f"{label}: {d['kind']} {name}: a common label does not replace app.kubernetes.io/name")
    for where, meta, _ in pod_templates(r):
        expect(meta["labels"].get("example.com/cost-center") == common["example.com/cost-center"],
               f"{label}: {where} pods carry commonLabels")
    for component, values_key, tier in (("template-api", "api", "frontend"), ("warmup-worker", "worker", "batch")):
        cv = v[values_key]
        d, pod, c = r.deployment(component), r.pod(component), r.container(component)
        labels = d["spec"]["template"]["metadata"]["labels"]
        expect(labels.get("example.com/tier") == tier and labels.get("app.kubernetes.io/name") == component,
               f"{label}: {component} podLabels on the pods, selector kept")
        expect(d["spec"]["selector"]["matchLabels"] == selector(component),
               f"{label}: {component} selector unchanged by podLabels/commonLabels")
        expect(pod.get("priorityClassName") == cv["priorityClassName"], f"{label}: {component} priorityClassName")
        expect([i["name"] for i in pod.get("initContainers", [])] == [i["name"] for i in cv["initContainers"]],
               f"{label}: {component} initContainers")
        expect([x["name"] for x in pod["containers"]] == [component] + [s["name"] for s in cv["sidecars"]],
               f"{label}: {component} sidecars after the service's container")
        volumes = [x["name"] for x in pod.get("volumes", [])]
        expect(volumes == ["ca-bundle"] + [x["name"] for x in cv["extraVolumes"]],
               f"{label}: {component} volumes: the CA bundle, then extraVolumes ({volumes})")
        mounts = [m["mountPath"] for m in c.get("volumeMounts", [])]
        expect(mounts == ["/etc/prewarm/ca"] + [m["mountPath"] for m in cv["extraVolumeMounts"]],
               f"{label}: {component} mounts: the CA bundle, then extraVolumeMounts ({mounts})")
        names = [e["name"] for e in c["env"]]
        extra = [e["name"] for e in cv["extraEnvVars"]]
        expect(names[-len(extra):] == extra and all(n.startswith("PREWARM_") for n in names[:-len(extra)]),
               f"{label}: {component} extraEnvVars after the chart's env")
        secret_refs = [e["secretRef"]["name"] for e in c["envFrom"] if "secretRef" in e]
        expected_secret = cv["extraEnvVarsSecret"].replace('{{ include "prewarm.fullname" . }}', fn)
        expect(secret_refs == [expected_secret], f"{label}: {component} envFrom extraEnvVarsSecret {expected_secret} ({secret_refs})")
        spreads = pod.get("topologySpreadConstraints", [])
        expect(len(spreads) == len(cv["topologySpreadConstraints"])
               and spreads[0].get("labelSelector") == {"matchLabels": selector(component)},
               f"{label}: {component} topologySpreadConstraints, the first given the component's labelSelector")
    api_env = {e["name"]: e.get("value") for e in r.container("template-api")["env"]}
    expect(api_env.get("RELEASE_PREFIX") == fn, f"{label}: extraEnvVars are rendered as templates ({api_env.get('RELEASE_PREFIX')})")
    worker_env = {e["name"]: e for e in r.container("warmup-worker")["env"]}
    expect(worker_env.get("POD_NAME", {}).get("valueFrom") == {"fieldRef": {"fieldPath": "metadata.name"}},
           f"{label}: extraEnvVars keep valueFrom")
    api_spreads = r.pod("template-api").get("topologySpreadConstraints", [{}, {}])
    expect(api_spreads[-1].get("labelSelector") == {"matchLabels": {"example.com/tier": "frontend"}},
           f"{label}: a constraint's own labelSelector is kept")
    # The API's affinity replaces its preset; the worker's preset is hard.
    expect(r.pod("template-api").get("affinity") == v["api"]["affinity"], f"{label}: user affinity replaces the preset")
    term = {"labelSelector": {"matchLabels": selector("warmup-worker")}, "topologyKey": "kubernetes.io/hostname"}
    expect(r.pod("warmup-worker").get("affinity") == {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}},
           f"{label}: worker hard anti-affinity preset")
    expect(r.deployment("template-api")["spec"].get("revisionHistoryLimit") == 3, f"{label}: api revisionHistoryLimit 3")
    # Security contexts: configurable (the API's podSecurityContext adds
    # fsGroup; the migration Job and the test pod run with the API's).
    for where, _, spec in pod_templates(r):
        if "warmup-worker" in where:
            continue
        expect(spec.get("securityContext", {}).get("fsGroup") == 10001,
               f"{label}: {where} has the API's podSecurityContext (fsGroup)")
    # Service account tokens.
    sa = r.all("ServiceAccount")
    expect(len(sa) == 1 and sa[0].get("automountServiceAccountToken") is False,
           f"{label}: the ServiceAccount has automountServiceAccountToken false")
    expect(r.pod("warmup-worker").get("automountServiceAccountToken") is True
           and r.pod("template-api").get("automountServiceAccountToken") is False,
           f"{label}: automountServiceAccountToken per component (worker true, api false)")
    # HPA behavior (API), KEDA (worker).
    hpas = r.all("HorizontalPodAutoscaler")
    expect([h["metadata"]["name"] for h in hpas] == [f"{fn}-template-api"], f"{label}: an HPA for the API only")
    if hpas:
        expect(hpas[0]["spec"].get("behavior") == v["api"]["autoscaling"]["behavior"], f"{label}: HPA behavior passed through")
    so = r.all("ScaledObject")
    if expect(len(so) == 1, f"{label}: a KEDA ScaledObject for the worker"):
        spec = so[0]["spec"]
        meta = spec["triggers"][0]["metadata"]
        keda = v["worker"]["keda"]
        expect(meta["threshold"] == "4" and meta.get("activationThreshold") == "1"
               and meta["serverAddress"] == keda["serverAddress"], f"{label}: KEDA trigger metadata from values")
        expect(spec["triggers"][0].get("authenticationRef") == {"name": keda["authenticationRef"]}, f"{label}: KEDA authenticationRef")
        expect(spec["maxReplicaCount"] == 8, f"{label}: KEDA maxReplicaCount")
        expect(spec.get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior") == keda["behavior"],
               f"{label}: KEDA HPA behavior")
    expect("replicas" not in r.deployment("warmup-worker")["spec"], f"{label}: KEDA owns the worker's replicas")
    expect("replicas" not in r.deployment("template-api")["spec"], f"{label}: the HPA owns the API's replicas")
    # NetworkPolicy with peers.
    np = v["networkPolicy"]
    api, worker = r.policy("template-api"), r.policy("warmup-worker")
    if expect(api is not None and worker is not None, f"{label}: NetworkPolicies rendered"):
        http = find_rule(api["spec"]["ingress"], 8080)
        test_peer = {"podSelector": {"matchLabels": selector("prewarm-test")}}
        expect(len(http) == 1 and http[0].get("from") == np["ingress"]["http"]["from"] + [test_peer],
               f"{label}: API port only from ingress.http.from and the helm test pod")
        test_labels = labels_of(r.test_pod() or {})
        expect(all(test_labels.get(k) == val for k, val in selector("prewarm-test").items()),
               f"{label}: the helm test pod carries the labels the policy lets in")
        metrics = np["ingress"]["metrics"]
        for component, policy, port in (("template-api", api, 9090), ("warmup-worker", worker, 9091)):
            rules = find_rule(policy["spec"]["ingress"], port)
            expect(rules and rules[0].get("from") == [{"namespaceSelector": metrics["namespaceSelector"],
                                                      "podSelector": metrics["podSelector"]}],
                   f"{label}: {component} metrics from the configured namespace and pods")
            expect(np["extraIngress"][0] in policy["spec"]["ingress"], f"{label}: {component} extraIngress")
            egress = policy["spec"]["egress"]
            for service in ("postgres", "redis", "kafka", "s3"):
                peer = np["egress"][service]
                rules = [rule for rule in egress if rule_ports(rule) == {(p, "TCP") for p in peer["ports"]}]
                expect(len(rules) >= 1 and rules[0].get("to") == peer["to"],
                       f"{label}: {component} egress to {service} on {peer['ports']} to {peer['to']}")
            expect(find_rule(egress, 53, "UDP")[0].get("to") == np["egress"]["dns"]["to"], f"{label}: {component} DNS peers")
            expect(np["extraEgress"][0] in egress, f"{label}: {component} extraEgress")
            expect(len(find_rule(egress, 4318)) == 1, f"{label}: {component} egress to the OTLP port 4318 (from config)")
        # https://recommender.internal: 443 twice for the API (S3's, the recommender's).
        expect(len(find_rule(api["spec"]["egress"], 443)) == 2 and len(find_rule(worker["spec"]["egress"], 443)) == 1,
               f"{label}: API egress to the recommender's https port (from config), not the worker's")
    assert_test_pod(r, "registry.example.com/mirror/curlimages/curl:8.11.1")
    expect((r.test_pod() or {}).get("spec", {}).get("imagePullSecrets") == v["imagePullSecrets"], f"{label}: test pod imagePullSecrets")


def check_policy_off(r, defaults):
    label = r.label
    expect(not r.all("NetworkPolicy"), f"{label}: no NetworkPolicy")
    before = {(d["kind"], d["metadata"]["name"]) for d in defaults.docs if d["kind"] != "NetworkPolicy"}
    after = {(d["kind"], d["metadata"]["name"]) for d in r.docs}
    expect(before == after, f"{label}: every other object unchanged ({sorted(before ^ after)})")


def check_keda(r):
    label = r.label
    so = r.all("ScaledObject")
    if not expect(len(so) == 1, f"{label}: a ScaledObject"):
        return
    spec = so[0]["spec"]
    keda = r.merged["worker"]["keda"]
    meta = spec["triggers"][0]["metadata"]
    expect(meta == {"serverAddress": keda["serverAddress"], "query": keda["query"], "threshold": str(keda["threshold"])},
           f"{label}: trigger metadata is serverAddress, query, threshold from values ({meta})")
    expect(keda["query"] == "max(prewarm_pools_below_target)", f"{label}: the default query is the pool deficit")
    expect(spec["scaleTargetRef"]["name"] == f"{r.fullname}-warmup-worker", f"{label}: scales the worker")
    expect(spec["minReplicaCount"] == 1 and spec["maxReplicaCount"] == 4, f"{label}: replica bounds from values")
    expect("advanced" not in spec, f"{label}: no behavior by default")
    expect(not r.all("HorizontalPodAutoscaler"), f"{label}: no HPA of the chart's")
    expect("replicas" not in r.deployment("warmup-worker")["spec"], f"{label}: KEDA owns the worker's replicas")
    expect(r.deployment("template-api")["spec"].get("replicas") == 2, f"{label}: the API keeps its replicas")


# Values values.schema.json must refuse (it is strict: unknown keys, wrong
# types and values that would render a broken or wide-open object).
REJECTED = [
    {"networkPolicy": {"bogus": True}},
    # A rule with no ports and no peers would allow all egress.
    {"networkPolicy": {"egress": {"postgres": {"ports": [], "to": []}}}},
    {"networkPolicy": {"ingress": {"http": {"from": [{"ipblock": {"cidr": "10.0.0.0/8"}}]}}}},
    {"networkPolicy": {"ingress": {"metrics": {"namespaceSelector": {"matchLabel": {"a": "b"}}}}}},
    {"worker": {"keda": {"minReplicaCount": 0}}},
    {"worker": {"keda": {"threshold": "eight"}}},
    {"worker": {"keda": {"serverAddress": "prometheus:9090"}}},
    {"worker": {"keda": {"bogus": 1}}},
    {"api": {"podAntiAffinityPreset": "medium"}},
    {"api": {"podSecurityContext": {"runAsNonroot": True}}},
    {"worker": {"containerSecurityContext": {"readOnlyRootFs": True}}},
    {"api": {"extraEnvVars": [{"value": "no name"}]}},
    {"worker": {"sidecars": [{"name": "no-image"}]}},
    {"worker": {"extraVolumeMounts": [{"name": "v"}]}},
    {"api": {"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone"}]}},
    {"api": {"autoscaling": {"behavior": {"scaleup": {}}}}},
    {"fullnameOverride": "Prewarm_Prod"},
    {"commonLabels": {"team": 5}},
    {"serviceAccount": {"automountServiceAccountToken": "no"}},
    {"tests": {"image": {"tag": ""}}},
]


def check_schema():
    chart = helm.Chart.load(CHART)
    for values in ({"worker": {"keda": {"threshold": 4}}}, {"api": {"podAntiAffinityPreset": ""}}):
        try:
            chart.validate_schema(values)
            accepted = True
        except helm.HelmError:
            accepted = False
        expect(accepted, f"values.schema.json accepts {json.dumps(values)}")
    for values in REJECTED:
        try:
            chart.validate_schema(values)
            refused = False
        except helm.HelmError:
            refused = True
        expect(refused, f"values.schema.json refuses {json.dumps(values)}")


def check_both_autoscalers(values):
    label = "KEDA and worker HPA both on"
    try:
        render_raw(values)
    except helm.HelmError as e:
        expect("worker.keda.enabled and worker.autoscaling.enabled" in str(e),
               f"{label}: fails with a message naming both values ({e})")
        return
    expect(False, f"{label}: must fail to render")


def check_fullname_override(r):
    label = r.label
    fn = "pw"
    for d in r.docs:
        expect(d["metadata"]["name"].startswith(f"{fn}-"), f"{label}: {d['kind']} {d['metadata']['name']} is named {fn}-*")
    expect(r.deployment("template-api") is not None and r.deployment("warmup-worker") is not None,
           f"{label}: Deployments {fn}-template-api, {fn}-warmup-worker")
    expect(r.get("ConfigMap", f"{fn}-config") is not None
           and r.container("template-api")["envFrom"][0]["configMapRef"]["name"] == f"{fn}-config",
           f"{label}: the pods read ConfigMap {fn}-config")
    expect(r.get("Service", f"{fn}-template-api") is not None, f"{label}: Service {fn}-template-api")
    expect(r.get("ServiceAccount", f"{fn}-prewarm") is not None
           and r.pod("template-api")["serviceAccountName"] == f"{fn}-prewarm", f"{label}: ServiceAccount {fn}-prewarm used")
    hpa = r.get("HorizontalPodAutoscaler", f"{fn}-template-api")
    expect(hpa is not None and hpa["spec"]["scaleTargetRef"]["name"] == f"{fn}-template-api", f"{label}: HPA targets {fn}-template-api")
    so = r.all("ScaledObject")
    expect(len(so) == 1 and so[0]["spec"]["scaleTargetRef"]["name"] == f"{fn}-warmup-worker", f"{label}: ScaledObject targets {fn}-warmup-worker")
    expect(r.policy("template-api") is not None and r.policy("warmup-worker") is not None, f"{label}: NetworkPolicies {fn}-*")
    expect(labels_of(r.deployment("template-api")).get("app.kubernetes.io/part-of") == "prewarm",
           f"{label}: fullnameOverride leaves the name label part-of prewarm")
    assert_test_pod(r, "docker.io/curlimages/curl:8.11.1")


def check_worker_hpa(r):
    label = r.label
    hpa = r.get("HorizontalPodAutoscaler", f"{r.fullname}-warmup-worker")
    if expect(hpa is not None, f"{label}: an HPA for the worker"):
        expect(hpa["spec"].get("behavior") == r.values["worker"]["autoscaling"]["behavior"], f"{label}: worker HPA behavior")
    expect(not r.all("ScaledObject"), f"{label}: no ScaledObject")
    expect("replicas" not in r.deployment("warmup-worker")["spec"], f"{label}: the HPA owns the worker's replicas")


def check_managed(r):
    label = r.label
    v = r.values
    for component in ("template-api", "warmup-worker"):
        names = [e["name"] for e in r.container(component)["env"]]
        expect("PREWARM_S3__ACCESS_KEY_ID" not in names, f"{label}: {component} uses the pod's role, no static S3 keys")
        expect("PREWARM_KAFKA__PROPERTIES__SASL_PASSWORD" in names, f"{label}: {component} reads the Kafka SASL password")
        policy = r.policy(component)
        if expect(policy is not None, f"{label}: {component} NetworkPolicy"):
            for service in ("postgres", "redis", "kafka"):
                peer = v["networkPolicy"]["egress"][service]
                rules = [rule for rule in policy["spec"]["egress"] if rule_ports(rule) == {(p, "TCP") for p in peer["ports"]}]
                expect(rules and rules[0].get("to") == peer["to"], f"{label}: {component} egress to {service} on {peer['ports']}")
    sa = r.all("ServiceAccount")
    expect(len(sa) == 1 and "eks.amazonaws.com/role-arn" in sa[0]["metadata"].get("annotations", {}),
           f"{label}: a ServiceAccount annotated for IRSA")
    expect(len(r.all("ScaledObject")) == 1, f"{label}: the worker scaled by KEDA")
    assert_security_defaults(r)


# ---------------------------------------------------------- settings, metrics


def documented_keys():
    keys = set()
    with open(os.path.join(ROOT, "docs", "configuration.md")) as f:
        for line in f:
            if line.startswith("| `"):
                first_cell = line.split("|")[1]
                keys.update(re.findall(r"`([a-z0-9_.]+)`", first_cell))
    return keys


def rendered_env(docs, ignore=()):
    """PREWARM_* names set by ConfigMaps and the services' env, as dotted
    keys (the service container only; `ignore`: names of extraEnvVars)."""
    keys = set()
    for doc in docs:
        if doc.get("kind") == "ConfigMap" and doc["metadata"]["name"].endswith("-config"):
            names = doc.get("data", {}).keys()
        elif doc.get("kind") == "ConfigMap":
            continue
        elif doc.get("kind") in ("Deployment", "Job"):
            container = doc["spec"]["template"]["spec"]["containers"][0]
            names = [e["name"] for e in container.get("env", []) if e["name"] not in ignore]
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
            dashboard = json.loads(doc["data"]["prewarm.json"])
            exprs += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
        if doc.get("kind") == "ScaledObject":
            exprs += [t["metadata"]["query"] for t in doc["spec"]["triggers"] if t.get("type") == "prometheus"]
    if not exprs:
        fail("the all-features render has no dashboard, alert or KEDA queries")
    for expr in exprs:
        if not queried_metrics(str(expr)):
            fail(f"query {expr!r} uses no prewarm metric")
        for name in sorted(queried_metrics(str(expr)) - exported):
            fail(f"{name} is queried by the dashboard, an alert or KEDA but not exported")
    print(f"{len(exprs)} dashboard, alert and KEDA queries use exported metrics")


def main():
    print(f"Kubernetes schemas: {KUBE_VERSIONS[0]} (oldest) and {KUBE_VERSIONS[1]} (newest) of "
          f"kubernetes-validate {kubernetes_validate.__version__}")
    full_values = load_values(os.path.join(CHART, "ci", "all-features-values.yaml"))
    managed_values = load_values(os.path.join(CHART, "examples", "managed-values.yaml"))
    lint(None, "default values")
    lint(full_values, "all-features-values.yaml")
    lint(managed_values, "examples/managed-values.yaml")

    renders = []

    def branch(label, values, checker, *args):
        r = check(label, values)
        if r is not None:
            try:
                checker(r, *args)
            except Exception as e:  # a missing object or field: report it, check the rest
                fail(f"{label}: the assertions stopped at {type(e).__name__}: {e}")
            renders.append(r)
        return r

    defaults = branch("default values", None, check_defaults)
    full = branch("all-features-values.yaml", full_values, check_all_features)
    branch("examples/managed-values.yaml", managed_values, check_managed)
    if defaults:
        branch("networkPolicy off", {"networkPolicy": {"enabled": False}}, check_policy_off, defaults)
    branch("KEDA on, worker HPA off", {"worker": {"keda": {"enabled": True}}}, check_keda)
    check_both_autoscalers({"worker": {"keda": {"enabled": True}, "autoscaling": {"enabled": True}}})
    check_schema()
    for preset in ("soft", "hard", ""):
        branch(f"podAntiAffinityPreset {preset or '(empty)'}",
               {"api": {"podAntiAffinityPreset": preset}, "worker": {"podAntiAffinityPreset": preset}},
               assert_preset, preset)
    branch("fullnameOverride", {"fullnameOverride": "pw", "serviceAccount": {"create": True},
                                "api": {"autoscaling": {"enabled": True}}, "worker": {"keda": {"enabled": True}}},
           check_fullname_override)
    branch("worker HPA", {"worker": {"autoscaling": {"enabled": True, "behavior": {
        "scaleDown": {"stabilizationWindowSeconds": 900}}}}}, check_worker_hpa)
    print(f"{len(renders)} renders validated against Kubernetes {' and '.join(KUBE_VERSIONS)}; "
          f"{assertions} assertions")

    if full:
        kinds = sorted({d["kind"] for d in full.docs})
        print(f"rendered kinds (all features): {', '.join(kinds)}")
        for required in ("ConfigMap", "Deployment", "Service", "Job", "HorizontalPodAutoscaler",
                         "PodDisruptionBudget", "ServiceMonitor", "PrometheusRule", "ServiceAccount",
                         "NetworkPolicy", "ScaledObject", "Pod"):
            if required not in kinds:
                fail(f"all-features render has no {required}")
        check_queries(full.docs)

        docs_keys = documented_keys()
        extra = {e["name"] for c in ("api", "worker") for e in full_values[c].get("extraEnvVars", [])}
        env_keys = rendered_env(full.docs, extra)
        for key in sorted(docs_keys - env_keys):
            fail(f"documented setting {key} is not set by the chart")
        for key in sorted(env_keys - docs_keys):
            fail(f"the chart sets {key}, which docs/configuration.md does not document")
        print(f"{len(env_keys)} settings rendered, {len(docs_keys)} documented")
    if defaults is None or len(defaults.docs) == 0:
        fail("default render is empty")
    if failures:
        print(f"chart check: {len(failures)} failure(s)")
        sys.exit(1)
    print("chart check: ok")


if __name__ == "__main__":
    main()
