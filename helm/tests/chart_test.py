"""Renders helm/hookstream with the real Helm engine (helm-python-sdk), lints it, and validates
every rendered object against the Kubernetes schemas (kubernetes-validate), for the default
values and for ci/production-values.yaml. Exits non-zero with the findings on any failure.

Run: python3 helm/tests/chart_test.py   (cargo test runs it: tests/e2e/tests/helm_chart.rs)
With CHART_TEST_CONFIG_DIR set, each rendering's configuration file is written there
(`default.toml`, `production.toml`), for the services themselves to read.
"""

import json
import os
import pathlib
import sys
import tomllib

import helm_python as helm
import kubernetes_validate
import yaml

CHART = pathlib.Path(__file__).resolve().parent.parent / "hookstream"
REPO = CHART.parent.parent
KUBERNETES_VERSIONS = ["1.29.0", "1.37.0"]
# Minimal values a user must give on top of the defaults.
DEFAULT = {
    "secrets": {
        "apiToken": "a-long-admin-token-for-tests",
        "secretKey": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    }
}
PRODUCTION = yaml.safe_load((CHART / "ci" / "production-values.yaml").read_text())
# Kinds of the Prometheus Operator: not in the Kubernetes schemas, checked by hand below.
OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}
COMPONENTS = {"ingest": 8080, "dispatcher": 9091, "retry-tier": 9093, "replay": 9094}
INGEST_OPS_PORT = 9096
INGEST_MANAGEMENT_PORT = 8081

failures = []


def check(condition, message):
    if not condition:
        failures.append(message)


def render(values):
    chart = helm.Chart.load(str(CHART))
    chart.validate_schema(values)
    manifests = chart.render(values, name="hs", namespace="webhooks", is_install=True)
    objects = []
    for path, text in manifests.items():
        if path.endswith("NOTES.txt"):
            continue
        for document in yaml.safe_load_all(text):
            if document:
                objects.append((path, document))
    return objects


def lint(name, values):
    report = helm.lint(str(CHART), values, strict=True, namespace="webhooks")
    serious = [m for m in report["messages"] if m["severity"] >= 2] + report.get("errors", [])
    check(not serious, f"{name}: helm lint --strict: {serious}")


def validate(name, objects):
    for path, obj in objects:
        kind = obj.get("kind")
        if kind in OPERATOR_KINDS:
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except Exception as err:  # the library raises several error types
                failures.append(f"{name}: {path} {kind}/{obj['metadata']['name']} on Kubernetes {version}: {err}")


def by_kind(objects, kind):
    return [obj for _, obj in objects if obj.get("kind") == kind]


def config_file(objects):
    """The configuration file the chart renders, parsed, and its text."""
    data = [c for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"] == "hs-hookstream"][0]["data"]
    text = data["hookstream.toml"]
    return tomllib.loads(text), text


SECTIONS = {"ingest": "ingest", "dispatcher": "dispatcher", "retry-tier": "retry_tier", "replay": "replay"}


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def check_deployments(name, objects):
    deployments = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in by_kind(objects, "Deployment")}
    check(set(deployments) == set(COMPONENTS), f"{name}: deployments {sorted(deployments)}")
    services = {s["metadata"]["labels"]["app.kubernetes.io/component"] for s in by_kind(objects, "Service")}
    check(services == set(COMPONENTS), f"{name}: services {sorted(services)}")
    # The API Service (which may be public) carries the API alone; health and metrics are on
    # a cluster-internal Service of their own.
    by_name = {s["metadata"]["name"]: s for s in by_kind(objects, "Service")}
    api_ports = {p["name"] for p in by_name["hs-hookstream-ingest"]["spec"]["ports"]}
    check(api_ports == {"http"}, f"{name}: the ingest API Service exposes {api_ports}")
    ops = by_name["hs-hookstream-ingest-ops"]["spec"]
    check(ops["type"] == "ClusterIP" and [p["name"] for p in ops["ports"]] == ["ops"], f"{name}: ingest ops Service {ops}")
    # The management API, apart from intake, inside the cluster only.
    management = by_name["hs-hookstream-ingest-management"]["spec"]
    check(management["type"] == "ClusterIP" and [p["name"] for p in management["ports"]] == ["management"],
          f"{name}: ingest management Service {management}")
    for component, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        check(container["command"] == [f"hookstream-{component}"], f"{name}: {component} command {container['command']}")
        check(container["livenessProbe"]["httpGet"]["path"] == "/healthz", f"{name}: {component} liveness probe")
        check(container["readinessProbe"]["httpGet"]["path"] == "/readyz", f"{name}: {component} readiness probe")
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        expected = (
            {"http": COMPONENTS[component], "ops": INGEST_OPS_PORT, "management": INGEST_MANAGEMENT_PORT}
            if component == "ingest"
            else {"ops": COMPONENTS[component]}
        )
        check(ports == expected, f"{name}: {component} ports {ports}")
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            check(container[probe]["httpGet"]["port"] == "ops", f"{name}: {component} {probe} is not on the ops port")
        config, _ = config_file(objects)
        section = config[SECTIONS[component]]
        listen = sorted(v for k, v in section.items() if k.endswith("_addr"))
        check(listen == sorted(f"0.0.0.0:{p}" for p in ports.values()), f"{name}: {component} listens on {listen}")
        check(section.get("create_topics", config["create_topics"]) == ("true" if component == "ingest" else "false"),
              f"{name}: only ingest creates topics at start ({component})")
        check(not any(e["name"].endswith("_ADDR") for e in container["env"]), f"{name}: {component} addresses belong in the file")
        check(pod["terminationGracePeriodSeconds"] > 15, f"{name}: {component} has no time to drain")
        if component == "dispatcher":
            # Its drain (15 s) and then its consumer's commit and leave (up to 15 s more).
            check(pod["terminationGracePeriodSeconds"] > 30, f"{name}: the dispatcher's stop is cut short")
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            check(container[probe].get("timeoutSeconds", 1) > 2, f"{name}: {component} {probe} gives up before the 2 s checks behind it")
        restricted(name, component, pod, container)
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        check("checksum/config" in annotations, f"{name}: {component} does not roll on a config change")
        env = env_of(container)
        check(env["HOOKSTREAM_CONFIG"]["value"] == "/etc/hookstream/config/hookstream.toml", f"{name}: {component} is not given the file")
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        check(volumes[mounts["/etc/hookstream/config"]]["configMap"]["name"] == "hs-hookstream", f"{name}: {component} does not mount the file")
        check(("HOOKSTREAM_API_TOKEN" in env) == (component == "ingest"), f"{name}: the API token reaches {component}")
        check("HOOKSTREAM_SECRET_KEY" in env, f"{name}: {component} cannot open signing secrets")


def restricted(name, component, pod, container):
    """The Kubernetes "restricted" Pod Security Standard, as far as a chart decides it."""
    pod_ctx = pod.get("securityContext", {})
    ctx = container.get("securityContext", {})
    check(pod_ctx.get("runAsNonRoot") or ctx.get("runAsNonRoot"), f"{name}: {component} may run as root")
    seccomp = ctx.get("seccompProfile", pod_ctx.get("seccompProfile", {})).get("type")
    check(seccomp in ("RuntimeDefault", "Localhost"), f"{name}: {component} seccompProfile {seccomp}")
    check(ctx.get("allowPrivilegeEscalation") is False, f"{name}: {component} may escalate privileges")
    check(ctx.get("capabilities", {}).get("drop") == ["ALL"], f"{name}: {component} keeps capabilities")
    check(pod_ctx.get("runAsUser", 1) != 0 and ctx.get("runAsUser", 1) != 0, f"{name}: {component} runs as uid 0")


def check_image():
    dockerfile = (REPO / "Dockerfile").read_text()
    check("--locked" in dockerfile, "image: cargo build without --locked")
    user = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    check(user and user[-1].split(":")[0].isdigit() and user[-1].split(":")[0] != "0",
          f"image: the final USER is not a numeric non-root user: {user}")
    ignored = (REPO / ".dockerignore").read_text().split()
    check("HOOKSTREAM_CONSOLE_DIR=" in dockerfile, "image: ingest is not told where the console's files are")
    for path in ("target/", ".hookstream/", "console/node_modules/"):
        check(path in ignored, f"image: {path} is not kept out of the build context")


def check_default(objects):
    check_deployments("default", objects)
    check(len(by_kind(objects, "Secret")) == 1, "default: the chart's Secret")
    for deployment in by_kind(objects, "Deployment"):
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        check("checksum/secret" in annotations, "default: pods do not roll when the chart's Secret changes")
    check(len(by_kind(objects, "Job")) == 1, "default: the topics Job")
    check(not by_kind(objects, "HorizontalPodAutoscaler"), "default: no autoscaler unless asked")
    check(len(by_kind(objects, "PodDisruptionBudget")) == 3, "default: budgets for ingest, dispatcher, retry tier")
    check(not by_kind(objects, "NetworkPolicy"), "default: no network policy unless asked")
    check(not any(by_kind(objects, k) for k in OPERATOR_KINDS), "default: no Prometheus Operator objects")
    config, _ = config_file(objects)
    check(config["store"] == "scylla://scylla-client.scylla.svc:9042/hookstream?replication_factor=3", f"default: store {config['store']}")
    # Topics are created with explicit settings, by the services and by the topics Job alike.
    job_env = env_of(by_kind(objects, "Job")[0]["spec"]["template"]["spec"]["containers"][0])
    for key, value in [("HOOKSTREAM_REPLICATION_FACTOR", "3"), ("HOOKSTREAM_MIN_INSYNC_REPLICAS", "2"),
                       ("HOOKSTREAM_DELIVERIES_RETENTION", "7d"), ("HOOKSTREAM_RETRY_RETENTION_MARGIN", "7d"),
                       ("HOOKSTREAM_DLQ_RETENTION", "30d")]:
        file_key = key.removeprefix("HOOKSTREAM_").lower()
        check(config.get(file_key) == value, f"default: the file's {file_key}={config.get(file_key)}")
        check(job_env.get(key, {}).get("value") == value, f"default: topics Job {key}")


def check_production(objects):
    check_deployments("production", objects)
    check(not by_kind(objects, "Secret"), "production: the existing Secret is used, none is made")
    hpas = {h["spec"]["scaleTargetRef"]["name"] for h in by_kind(objects, "HorizontalPodAutoscaler")}
    check(hpas == {"hs-hookstream-ingest", "hs-hookstream-dispatcher"}, f"production: autoscalers {hpas}")
    check(len(by_kind(objects, "PodDisruptionBudget")) == 3, "production: three budgets (replay runs one replica)")
    check(len(by_kind(objects, "NetworkPolicy")) == 4, "production: four network policies")
    policies = {p["metadata"]["name"]: p["spec"]["ingress"] for p in by_kind(objects, "NetworkPolicy")}
    ingest = {rule["ports"][0]["port"]: rule["from"] for rule in policies["hs-hookstream-ingest"]}
    check(set(ingest) == {"http", "ops", "management"}, f"production: ingest ingress rules {ingest}")
    check(ingest["http"] != ingest["ops"], "production: the API and the ops port are reached from different places")
    check(ingest["management"] not in (ingest["http"], ingest["ops"]),
          "production: the management API is reached from a place of its own")
    check([rule["ports"][0]["port"] for rule in policies["hs-hookstream-dispatcher"]] == ["ops"],
          "production: the dispatcher takes traffic on its ops port only")
    for deployment in by_kind(objects, "Deployment"):
        component = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
        check("replicas" not in deployment["spec"] or component not in ("ingest", "dispatcher"), f"production: {component} replicas fight the autoscaler")
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        env = env_of(container)
        properties = env["HOOKSTREAM_KAFKA_PROPERTIES"]["value"]
        for expected in ["security.protocol=SASL_SSL", "sasl.mechanism=SCRAM-SHA-512", "sasl.username=hookstream",
                         "sasl.password=$(HOOKSTREAM_KAFKA_SASL_PASSWORD)", "ssl.ca.location=/etc/hookstream/kafka-ca/ca.crt",
                         "compression.type=zstd"]:
            check(expected in properties.split(","), f"production: {component} Kafka properties lack {expected}: {properties}")
        names = [e["name"] for e in container["env"]]
        check(names.index("HOOKSTREAM_KAFKA_SASL_PASSWORD") < names.index("HOOKSTREAM_KAFKA_PROPERTIES"),
              f"production: {component}: the password must be defined before the properties refer to it")
        check(env["HOOKSTREAM_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "hookstream-prod", f"production: {component} SASL secret")
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        check("/etc/hookstream/kafka-ca" in mounts, f"production: {component} has no Kafka CA")
    config, _ = config_file(objects)
    check(config["kafka_produce_timeout"] == "10s", "production: `config` reaches the top of the file")
    check(config["ingest"]["tenant_rate"] == "500" and config["ingest"]["schema_registry_url"] == "http://schema-registry:8081",
          f"production: ingest's `config` reaches its section: {config['ingest']}")
    check(config["dispatcher"]["max_in_flight_bytes"] == "67108864", f"production: a large number is written whole: {config['dispatcher']}")
    check(config["dispatcher"]["allowed_destinations"] == "10.20.0.0/16", "production: a list is written as its variable would be")
    job = by_kind(objects, "Job")[0]
    check(job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade", "production: the topics Job is a hook")
    job_env = env_of(job["spec"]["template"]["spec"]["containers"][0])
    check(job_env["HOOKSTREAM_TOPIC_PREFIX"]["value"] == "prod.hookstream.", "production: the Job creates the prefixed topics")
    monitor = by_kind(objects, "ServiceMonitor")[0]
    check(monitor["apiVersion"] == "monitoring.coreos.com/v1" and monitor["spec"]["endpoints"][0]["path"] == "/metrics",
          "production: ServiceMonitor scrapes /metrics")
    check(monitor["metadata"]["labels"].get("release") == "kube-prometheus-stack", "production: ServiceMonitor labels")
    rule = by_kind(objects, "PrometheusRule")[0]
    alerts = yaml.safe_load((REPO / "deploy" / "prometheus" / "alerts.yml").read_text())
    check(rule["spec"] == alerts, "production: the PrometheusRule carries deploy/prometheus/alerts.yml")
    dashboards = [c for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"].endswith("-dashboards")]
    check(len(dashboards) == 1 and len(dashboards[0]["data"]) == 4, "production: four dashboards for the Grafana sidecar")
    for file, text in dashboards[0]["data"].items():
        check(json.loads(text) == json.loads((REPO / "deploy" / "grafana" / file).read_text()), f"production: dashboard {file}")


def check_copies():
    # The chart carries copies of the alerts and dashboards (Helm reads files only inside the chart).
    pairs = [(CHART / "files" / "alerts.yml", REPO / "deploy" / "prometheus" / "alerts.yml")]
    pairs += [(CHART / "files" / p.name, p) for p in (REPO / "deploy" / "grafana").glob("*.json")]
    for copy, source in pairs:
        check(copy.exists() and copy.read_bytes() == source.read_bytes(), f"{copy} differs from {source}: copy it again")


def check_runbooks():
    # Every alert links to its own section of the README's runbook.
    alerts = yaml.safe_load((REPO / "deploy" / "prometheus" / "alerts.yml").read_text())
    readme = (REPO / "README.md").read_text()
    headings = {line[4:].strip().lower() for line in readme.splitlines() if line.startswith("### ")}
    base = "https://github.com/hookstream/hookstream/blob/main/README.md#"
    rules = [r for group in alerts["groups"] for r in group["rules"] if "alert" in r]
    check(len(rules) >= 11, f"alerts: {len(rules)}")
    for rule in rules:
        url = rule["annotations"].get("runbook_url", "")
        anchor = rule["alert"].lower()
        check(url == base + anchor, f"{rule['alert']}: runbook_url {url!r}")
        check(anchor in headings, f"{rule['alert']}: no runbook section in the README")
    for name in ["HookstreamIngestErrors", "HookstreamStoreErrors", "HookstreamSourceRecordsRejected",
                 "HookstreamServiceAbsent"]:
        check(any(r["alert"] == name for r in rules), f"no alert {name}")
    absent = next(r for r in rules if r["alert"] == "HookstreamServiceAbsent")
    for service in ["ingest", "dispatcher", "retry-tier", "replay"]:
        check(f'"service", "{service}"' in absent["expr"], f"HookstreamServiceAbsent misses {service}")


def check_refusals():
    chart = helm.Chart.load(str(CHART))
    bad = [
        ({"dispatcher": {"replicas": "two"}}, "replicas"),
        ({"retry": {"jitter": 0.9}}, "jitter"),
        ({"logFormat": "xml"}, "logFormat"),
        ({"kafka": {"sasl": {"mechanism": "GSSAPI"}}}, "mechanism"),
        ({"secrets": {"apiToken": "short"}}, "apiToken"),
        ({"retry": {"schedule": "5 seconds"}}, "schedule"),
        ({"kafka": {"retention": {"dlq": "30 days"}}}, "dlq"),
        ({"secrets": {"keyRing": True, "secretKeys": "no id"}}, "secretKeys"),
        ({"secrets": {"keyRing": "yes"}}, "keyRing"),
    ]
    for override, key in bad:
        try:
            # The schema is checked against the chart's defaults merged with these values.
            chart.validate_schema(deep_merge(DEFAULT, override))
            failures.append(f"values.schema.json accepted {override}")
        except helm.HelmValuesError as err:
            check(key in str(err), f"the refusal of {override} does not name {key}: {err}")
    try:
        chart.render(deep_merge(DEFAULT, {"kafka": {"replicationFactor": 1}}), name="hs", namespace="webhooks")
        failures.append("rendered with min.insync.replicas above the replication factor")
    except helm.HelmRenderError as err:
        check("kafka.minInsyncReplicas" in str(err), f"the min ISR refusal is not explained: {err}")
    try:
        blocking = {"replay": {"replicas": 1, "podDisruptionBudget": {"enabled": True, "minAvailable": 1}}}
        chart.render(deep_merge(DEFAULT, blocking), name="hs", namespace="webhooks")
        failures.append("rendered a disruption budget that blocks every drain")
    except helm.HelmRenderError as err:
        check("replay.podDisruptionBudget.minAvailable" in str(err), f"the blocking budget is not explained: {err}")
    for override, named in [({"config": {"topic_prefix": "x."}}, "config.topic_prefix"),
                            ({"dispatcher": {"config": {"dispatcher_ops_addr": "0.0.0.0:1"}}}, "dispatcher.config.dispatcher_ops_addr"),
                            ({"config": {"http_addr": "0.0.0.0:1"}}, "config.http_addr"),
                            ({"dispatcher": {"config": {"retry_schedule": "5s"}}}, "dispatcher.config.retry_schedule")]:
        try:
            chart.render(deep_merge(DEFAULT, override), name="hs", namespace="webhooks")
            failures.append(f"rendered {override}, which the chart sets from its other values")
        except helm.HelmRenderError as err:
            check(named in str(err) and "set it there" in str(err), f"the refusal of {override} is not explained: {err}")
    try:
        chart.render(deep_merge(DEFAULT, {"retryTier": {"extraEnv": {"HOOKSTREAM_RETRY_SCHEDULE": "5s"}}}), name="hs", namespace="webhooks")
        failures.append("rendered one service's own retry schedule")
    except helm.HelmRenderError as err:
        check("retryTier.extraEnv.HOOKSTREAM_RETRY_SCHEDULE" in str(err), f"the own-schedule refusal is not explained: {err}")
    for override, named in [({"config": {"kafka_properties": "a=b"}}, "config.kafka_properties"),
                            ({"ingest": {"config": {"api_token": "x" * 20}}}, "ingest.config.api_token")]:
        try:
            chart.render(deep_merge(DEFAULT, override), name="hs", namespace="webhooks")
            failures.append(f"rendered {override}, which a variable would override")
        except helm.HelmRenderError as err:
            check(named in str(err) and "as a variable" in str(err), f"the refusal of {override} is not explained: {err}")
    try:
        chart.validate_schema(deep_merge(DEFAULT, {"config": {"Max-In-Flight": 1}}))
        failures.append("values.schema.json accepted a config key that is not a setting name")
    except helm.HelmValuesError as err:
        check("Max-In-Flight" in str(err), f"the bad config key is not named: {err}")
    try:
        chart.render({}, name="hs", namespace="webhooks")
        failures.append("rendered without an API token or an existing Secret")
    except helm.HelmRenderError as err:
        check("secrets.apiToken" in str(err), f"the missing token is not explained: {err}")


def check_key_ring():
    # Rotating the sealing key: every service gets the ring from the Secret's secret-keys, and
    # none gets the single key.
    ring = "2026-12=ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=,2026-06=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    values = deep_merge(DEFAULT, {"secrets": {"secretKey": "", "keyRing": True, "secretKeys": ring}})
    lint("key ring", values)
    objects = render(values)
    validate("key ring", objects)
    secret = by_kind(objects, "Secret")[0]["stringData"]
    check(secret.get("secret-keys") == ring and "secret-key" not in secret, f"key ring: Secret {sorted(secret)}")
    # (The topics Job opens no store.)
    for container in [d["spec"]["template"]["spec"]["containers"][0] for d in by_kind(objects, "Deployment")]:
        env = env_of(container)
        ref = env.get("HOOKSTREAM_SECRET_KEYS", {}).get("valueFrom", {}).get("secretKeyRef", {})
        check(ref.get("key") == "secret-keys", f"key ring: {container['name']} has no HOOKSTREAM_SECRET_KEYS")
        check("HOOKSTREAM_SECRET_KEY" not in env, f"key ring: {container['name']} also has HOOKSTREAM_SECRET_KEY")
    # Each step of a rotation changes the chart's Secret, which rolls every pod.
    promoted = ",".join(reversed(ring.split(",")))
    stepped = render(deep_merge(values, {"secrets": {"secretKeys": promoted}}))
    checksums = lambda objects: {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["annotations"]["checksum/secret"]
                                 for d in by_kind(objects, "Deployment")}
    before, after = checksums(objects), checksums(stepped)
    check(before.keys() == after.keys() and all(before[n] != after[n] for n in before),
          "key ring: a step of the rotation does not roll every pod")
    try:
        helm.Chart.load(str(CHART)).render(deep_merge(DEFAULT, {"secrets": {"keyRing": True}}), name="hs", namespace="webhooks")
        failures.append("rendered a key ring without its keys")
    except helm.HelmRenderError as err:
        check("secrets.secretKeys" in str(err), f"the missing ring is not explained: {err}")


def deep_merge(base, override):
    out = dict(base)
    for key, value in override.items():
        out[key] = deep_merge(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def main():
    for name, values, extra in [("default", DEFAULT, check_default), ("production", PRODUCTION, check_production)]:
        lint(name, values)
        objects = render(values)
        validate(name, objects)
        extra(objects)
        if os.environ.get("CHART_TEST_CONFIG_DIR"):
            pathlib.Path(os.environ["CHART_TEST_CONFIG_DIR"], f"{name}.toml").write_text(config_file(objects)[1])
        print(f"{name}: {len(objects)} objects rendered and validated")
    check_copies()
    check_runbooks()
    check_refusals()
    check_key_ring()
    check_image()
    if failures:
        print("\n".join(failures), file=sys.stderr)
        sys.exit(1)
    print("chart ok")


if __name__ == "__main__":
    main()
