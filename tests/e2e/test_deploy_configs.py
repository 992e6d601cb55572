"""Static checks of the deployment files (Dockerfile, Kubernetes, ECS, Compose).

Nothing here builds an image or talks to a cluster: every file is parsed and its
required fields are asserted, so a broken or weakened deployment file fails CI.

    pip install pyyaml pytest
    python3 -m pytest tests/e2e/test_deploy_configs.py -q
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
DEPLOY = ROOT / "deploy"
SIDECAR = DEPLOY / "kubernetes" / "sidecar.yaml"
STANDALONE = DEPLOY / "kubernetes" / "standalone.yaml"
K8S_FILES = [SIDECAR, STANDALONE]
ECS_TASK = DEPLOY / "ecs" / "task-definition.json"
ECS_TASK_POLICY = DEPLOY / "ecs" / "task-role-policy.json"
ECS_EXEC_POLICY = DEPLOY / "ecs" / "execution-role-policy.json"
COMPOSE = DEPLOY / "docker-compose.yml"
README = DEPLOY / "README.md"

PORT = 8000
GATEWAY_IMAGE = "open-bedrock-server"
IRSA_ANNOTATION = "eks.amazonaws.com/role-arn"
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
# Env var names that carry credentials: they must never hold a literal value.
SECRET_ENV = re.compile(r"(^|_)(API_KEY|SECRET|TOKEN|PASSWORD|ACCESS_KEY)", re.I)


# --------------------------------------------------------------------------- helpers


def load_docs(path: Path) -> list[dict]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs, f"{path} has no YAML documents"
    return docs


def of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d.get("kind") == kind]


def pod_spec(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]


def all_containers(deployment: dict) -> list[dict]:
    spec = pod_spec(deployment)
    return list(spec.get("initContainers", [])) + list(spec.get("containers", []))


def gateway_containers(docs: list[dict]) -> list[dict]:
    found = [
        c
        for d in of_kind(docs, "Deployment")
        for c in all_containers(d)
        if GATEWAY_IMAGE in c.get("image", "").rsplit("/", 1)[-1]
    ]
    assert found, "no container runs the open-bedrock-server image"
    return found


def gateway_deployments(docs: list[dict]) -> list[dict]:
    found = [
        d
        for d in of_kind(docs, "Deployment")
        if any(GATEWAY_IMAGE in c.get("image", "").rsplit("/", 1)[-1] for c in all_containers(d))
    ]
    assert found, "no Deployment runs the open-bedrock-server image"
    return found


def env_map(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def probe_targets_health(probe: dict | None) -> bool:
    """True if the probe checks GET /health on port 8000 (httpGet, or exec curl on loopback)."""
    if not probe:
        return False
    if "httpGet" in probe:
        get = probe["httpGet"]
        return get.get("path") == "/health" and get.get("port") == PORT
    if "exec" in probe:
        cmd = " ".join(probe["exec"].get("command", []))
        return re.search(rf"https?://(127\.0\.0\.1|localhost):{PORT}/health\b", cmd) is not None
    return False


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, comments dropped and continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "Dockerfile ends with a line continuation"
    return out


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for ins, args in dockerfile_instructions():
        if ins == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((ins, args))
    return stages


def image_uid() -> str:
    users = [args for ins, args in dockerfile_stages()[-1] if ins == "USER"]
    return users[-1].split(":")[0]


# --------------------------------------------------------------------------- Dockerfile


def test_dockerfile_is_multi_stage_and_builds_locked_dist_profile():
    stages = dockerfile_stages()
    assert len(stages) >= 2, "expected a builder stage and a runtime stage"
    builds = [b for ins, args in stages[0] if ins == "RUN" for b in re.findall(r"cargo build[^&;|]*", args)]
    assert len(builds) >= 2, "expected a dependency-only build and the real build"
    for b in builds:
        # `dist`: the fully optimised profile (fat LTO), not the quicker `release` of `cargo run`.
        words = b.split()
        assert "--locked" in words and "--profile" in words, b
        assert words[words.index("--profile") + 1] == "dist", b
    # Dependency-caching layer: manifests are copied (and built) before the sources.
    copies = [args for ins, args in stages[0] if ins == "COPY"]
    manifest = next(i for i, a in enumerate(copies) if "Cargo.lock" in a)
    sources = next(i for i, a in enumerate(copies) if a.split()[0] == "src")
    assert manifest < sources
    # The hot code placed together by the linker (build.rs reads link/symbol-order.txt).
    layout = [i for i, a in enumerate(copies) if a.split()[0] in ("build.rs", "link")]
    assert len(layout) == 2 and min(layout) > manifest, copies
    final_from = stages[-1][0][1]
    assert "rust" not in final_from.split()[0].split(":")[0], "runtime stage must not be the Rust toolchain image"
    assert any(ins == "COPY" and "--from=" in args for ins, args in stages[-1])


def test_dockerfile_runs_as_non_root_numeric_user():
    uid = image_uid()
    assert uid not in ("root", "0"), "final USER must not be root"
    # Numeric, so that Kubernetes runAsNonRoot can verify it.
    assert uid.isdigit(), f"USER {uid!r} should be numeric"


def test_dockerfile_healthcheck_uses_health_endpoint_with_available_tool():
    final = dockerfile_stages()[-1]
    checks = [args for ins, args in final if ins == "HEALTHCHECK"]
    assert checks, "runtime stage has no HEALTHCHECK"
    assert "/health" in checks[-1]
    if "curl" in checks[-1]:
        base = final[0][1]
        assert "distroless" not in base, "distroless has no curl"
        installs = " ".join(args for ins, args in final if ins == "RUN")
        assert re.search(r"apt-get install[^&]*\bcurl\b", installs), "curl is used but not installed"


def test_dockerfile_installs_ca_certificates():
    installs = " ".join(args for ins, args in dockerfile_stages()[-1] if ins == "RUN")
    assert "ca-certificates" in installs


def test_dockerfile_exposes_8000_and_entrypoint():
    ins = dockerfile_instructions()
    exposed = [p.split("/")[0] for i, a in ins if i == "EXPOSE" for p in a.split()]
    assert str(PORT) in exposed
    entry = [a for i, a in ins if i == "ENTRYPOINT"]
    assert entry and json.loads(entry[-1]) == ["open-bedrock-server"]


def test_dockerignore_excludes_build_output_and_git():
    lines = {l.strip() for l in DOCKERIGNORE.read_text().splitlines() if l.strip() and not l.startswith("#")}
    assert lines & {"target", "target/", "/target"}
    assert lines & {".git", ".git/"}
    assert lines & {".env", ".env*"}, "local secrets must not reach the build context"
    # The build needs these: make sure they are not ignored.
    assert not lines & {"src", "src/", "Cargo.lock", "Cargo.toml"}


# --------------------------------------------------------------------------- Kubernetes


@pytest.mark.parametrize("path", K8S_FILES, ids=lambda p: p.name)
def test_k8s_documents_have_identity(path):
    text = path.read_text()
    assert text.count("\n---") + text.startswith("---") >= 1, "documents must be separated by ---"
    for doc in load_docs(path):
        assert isinstance(doc, dict)
        assert doc.get("apiVersion"), doc
        assert doc.get("kind"), doc
        assert doc.get("metadata", {}).get("name"), doc


@pytest.mark.parametrize("path", K8S_FILES, ids=lambda p: p.name)
def test_k8s_gateway_has_readiness_and_liveness_on_health(path):
    for c in gateway_containers(load_docs(path)):
        assert probe_targets_health(c.get("readinessProbe")), f"{c['name']}: readinessProbe"
        assert probe_targets_health(c.get("livenessProbe")), f"{c['name']}: livenessProbe"


@pytest.mark.parametrize("path", K8S_FILES, ids=lambda p: p.name)
def test_k8s_security_context_everywhere(path):
    for dep in of_kind(load_docs(path), "Deployment"):
        pod_sc = pod_spec(dep).get("securityContext", {})
        for c in all_containers(dep):
            sc = c.get("securityContext", {})
            who = f"{dep['metadata']['name']}/{c['name']}"
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, f"{who}: runAsNonRoot"
            assert sc.get("readOnlyRootFilesystem") is True, f"{who}: readOnlyRootFilesystem"
            assert sc.get("allowPrivilegeEscalation") is False, f"{who}: allowPrivilegeEscalation"
            assert "ALL" in sc.get("capabilities", {}).get("drop", []), f"{who}: drop ALL"
            assert not sc.get("privileged", False), who


@pytest.mark.parametrize("path", K8S_FILES, ids=lambda p: p.name)
def test_k8s_gateway_uid_matches_image(path):
    uid = int(image_uid())
    for dep in gateway_deployments(load_docs(path)):
        pod_sc = pod_spec(dep).get("securityContext", {})
        for c in all_containers(dep):
            if GATEWAY_IMAGE in c.get("image", "").rsplit("/", 1)[-1]:
                assert c.get("securityContext", {}).get("runAsUser", pod_sc.get("runAsUser")) == uid


@pytest.mark.parametrize("path", K8S_FILES, ids=lambda p: p.name)
def test_k8s_resources_set(path):
    for dep in of_kind(load_docs(path), "Deployment"):
        for c in all_containers(dep):
            res = c.get("resources", {})
            assert res.get("requests", {}).get("cpu"), c["name"]
            assert res.get("requests", {}).get("memory"), c["name"]
            assert res.get("limits", {}).get("memory"), c["name"]


@pytest.mark.parametrize("path", K8S_FILES, ids=lambda p: p.name)
def test_k8s_keys_come_from_secrets(path):
    docs = load_docs(path)
    assert not of_kind(docs, "Secret"), "do not ship Secret objects with key material"
    for dep in of_kind(docs, "Deployment"):
        for c in all_containers(dep):
            for name, e in env_map(c).items():
                if SECRET_ENV.search(name):
                    assert "value" not in e, f"{c['name']}: {name} has a literal value"
                    assert e.get("valueFrom", {}).get("secretKeyRef"), f"{c['name']}: {name} not from a Secret"
    for c in gateway_containers(docs):
        assert "API_KEY" in env_map(c), "the gateway needs API_KEY"


@pytest.mark.parametrize("path", K8S_FILES, ids=lambda p: p.name)
def test_k8s_service_account_for_irsa(path):
    docs = load_docs(path)
    accounts = {sa["metadata"]["name"]: sa for sa in of_kind(docs, "ServiceAccount")}
    for dep in gateway_deployments(docs):
        name = pod_spec(dep).get("serviceAccountName")
        assert name in accounts, f"{dep['metadata']['name']} must use a ServiceAccount defined in {path.name}"
        arn = accounts[name]["metadata"].get("annotations", {}).get(IRSA_ANNOTATION, "")
        assert ROLE_ARN.match(arn), f"ServiceAccount {name}: {IRSA_ANNOTATION} is {arn!r}"


@pytest.mark.parametrize("path", K8S_FILES, ids=lambda p: p.name)
def test_k8s_selectors_match_pod_labels(path):
    docs = load_docs(path)
    pod_labels = [d["spec"]["template"]["metadata"]["labels"] for d in of_kind(docs, "Deployment")]
    for dep in of_kind(docs, "Deployment"):
        sel = dep["spec"]["selector"]["matchLabels"]
        assert sel.items() <= dep["spec"]["template"]["metadata"]["labels"].items(), dep["metadata"]["name"]
    for obj in of_kind(docs, "Service") + of_kind(docs, "PodDisruptionBudget"):
        sel = obj["spec"]["selector"]
        sel = sel.get("matchLabels", sel) if obj["kind"] == "PodDisruptionBudget" else sel
        assert any(sel.items() <= labels.items() for labels in pod_labels), f"{obj['kind']} {obj['metadata']['name']} selects no pod"


def test_sidecar_gateway_listens_on_loopback_beside_an_app():
    docs = load_docs(SIDECAR)
    (dep,) = gateway_deployments(docs)
    containers = all_containers(dep)
    assert len(containers) >= 2, "sidecar pattern: an app container plus the gateway"
    (gw,) = gateway_containers(docs)
    env = env_map(gw)
    assert env["HOST"].get("value") == "127.0.0.1"
    assert env.get("PORT", {}).get("value", str(PORT)) == str(PORT)
    assert "ports" not in gw, "a loopback-only sidecar should not declare container ports"
    assert not of_kind(docs, "Service"), "the sidecar must not be exposed through a Service"
    app_env = " ".join(str(e.get("value", "")) for c in containers if c is not gw for e in c.get("env", []))
    assert f"127.0.0.1:{PORT}" in app_env or f"localhost:{PORT}" in app_env, "app must point at the sidecar"


def test_standalone_replicas_redis_service_and_pdb():
    docs = load_docs(STANDALONE)
    (dep,) = gateway_deployments(docs)
    assert dep["spec"]["replicas"] >= 2
    (gw,) = gateway_containers(docs)
    redis_url = env_map(gw)["REDIS_URL"]
    url = redis_url.get("value") or ""
    assert url.startswith(("redis://", "rediss://")) or redis_url.get("valueFrom", {}).get("secretKeyRef")
    if url:
        parts = urlsplit(url)
        services = {s["metadata"]["name"]: s for s in of_kind(docs, "Service")}
        short = parts.hostname.split(".")[0]
        assert short in services, f"REDIS_URL host {parts.hostname} is not a Service in {STANDALONE.name}"
        assert any(p["port"] == (parts.port or 6379) for p in services[short]["spec"]["ports"])
    assert any(p.get("containerPort") == PORT for p in gw.get("ports", []))
    # The gateway Service reaches port 8000.
    gw_labels = dep["spec"]["template"]["metadata"]["labels"]
    gw_services = [s for s in of_kind(docs, "Service") if s["spec"]["selector"].items() <= gw_labels.items()]
    assert gw_services, "no Service selects the gateway pods"
    for s in gw_services:
        targets = [p.get("targetPort", p["port"]) for p in s["spec"]["ports"]]
        named = {p["name"]: p["containerPort"] for p in gw.get("ports", []) if "name" in p}
        assert any(t == PORT or named.get(t) == PORT for t in targets), targets
    pdbs = [p for p in of_kind(docs, "PodDisruptionBudget") if p["spec"]["selector"]["matchLabels"].items() <= gw_labels.items()]
    assert pdbs, "no PodDisruptionBudget covers the gateway"
    spec = pdbs[0]["spec"]
    assert "minAvailable" in spec or "maxUnavailable" in spec
    if isinstance(spec.get("minAvailable"), int):
        assert spec["minAvailable"] < dep["spec"]["replicas"], "minAvailable would block every drain"
    redis_deps = [d for d in of_kind(docs, "Deployment") + of_kind(docs, "StatefulSet")
                  if any("redis" in c.get("image", "") for c in all_containers(d))]
    assert redis_deps or "managed redis" in STANDALONE.read_text().lower()


# --------------------------------------------------------------------------- ECS


def ecs_task() -> dict:
    return json.loads(ECS_TASK.read_text())


def ecs_gateway(task: dict) -> dict:
    (c,) = [c for c in task["containerDefinitions"] if GATEWAY_IMAGE in c["image"].rsplit("/", 1)[-1]]
    return c


def test_ecs_task_definition_fargate_and_roles():
    task = ecs_task()
    assert "FARGATE" in task["requiresCompatibilities"]
    assert task["networkMode"] == "awsvpc"
    assert isinstance(task["cpu"], str) and isinstance(task["memory"], str)
    assert ROLE_ARN.match(task["taskRoleArn"])
    assert ROLE_ARN.match(task["executionRoleArn"])
    assert task["taskRoleArn"] != task["executionRoleArn"]


def test_ecs_container_port_health_logs():
    c = ecs_gateway(ecs_task())
    assert c.get("essential") is True
    assert any(p["containerPort"] == PORT for p in c["portMappings"])
    for p in c["portMappings"]:
        assert p.get("hostPort", p["containerPort"]) == p["containerPort"], "awsvpc requires hostPort == containerPort"
    cmd = c["healthCheck"]["command"]
    assert cmd[0] == "CMD-SHELL"
    assert re.search(rf"curl .*http://(localhost|127\.0\.0\.1):{PORT}/health", cmd[1])
    env = {e["name"]: e["value"] for e in c.get("environment", [])}
    assert env.get("LOG_FORMAT") == "json"
    log = c["logConfiguration"]
    assert log["logDriver"] == "awslogs"
    for key in ("awslogs-group", "awslogs-region", "awslogs-stream-prefix"):
        assert log["options"].get(key), key
    assert c.get("user", "").split(":")[0] == image_uid()
    assert c.get("readonlyRootFilesystem") is True


def test_ecs_keys_from_secrets_manager():
    c = ecs_gateway(ecs_task())
    secrets = {s["name"]: s["valueFrom"] for s in c["secrets"]}
    for name in ("API_KEY", "OPENAI_API_KEY"):
        assert secrets.get(name, "").startswith("arn:aws:secretsmanager:"), name
    for e in c.get("environment", []):
        assert not SECRET_ENV.search(e["name"]), f"{e['name']} must be a secret, not an environment value"


def test_ecs_execution_role_can_read_the_secrets():
    policy = json.loads(ECS_EXEC_POLICY.read_text())
    grants = [
        r
        for st in policy["Statement"]
        if st["Effect"] == "Allow" and "secretsmanager:GetSecretValue" in _as_list(st["Action"])
        for r in _as_list(st["Resource"])
    ]
    for name, arn in ((s["name"], s["valueFrom"]) for s in ecs_gateway(ecs_task())["secrets"]):
        secret_arn = ":".join(arn.split(":")[:7])
        assert any(re.fullmatch(re.escape(g).replace(r"\*", ".*"), secret_arn) for g in grants), name


def _as_list(v):
    return v if isinstance(v, list) else [v]


def test_ecs_task_role_policy_least_privilege():
    policy = json.loads(ECS_TASK_POLICY.read_text())
    assert policy["Version"] == "2012-10-17"
    actions: set[str] = set()
    for st in policy["Statement"]:
        assert st["Effect"] == "Allow"
        acts = set(_as_list(st["Action"]))
        actions |= acts
        assert not any(a in ("*", "bedrock:*") or a.endswith(":*") for a in acts), acts
        if acts & {"bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"}:
            resources = _as_list(st["Resource"])
            assert "*" not in resources, "model invocation should be scoped to model / inference-profile ARNs"
            assert all(r.startswith("arn:aws:bedrock:") for r in resources)
            assert any(":foundation-model/" in r for r in resources)
    # Converse / ConverseStream are authorised by InvokeModel / InvokeModelWithResponseStream;
    # there is no bedrock:Converse IAM action.
    assert {
        "bedrock:InvokeModel",
        "bedrock:InvokeModelWithResponseStream",
        "bedrock:ListFoundationModels",
        "bedrock:ListInferenceProfiles",
    } <= actions
    assert not {a for a in actions if a.startswith("bedrock:Converse")}


# --------------------------------------------------------------------------- Compose


def compose() -> dict:
    (doc,) = load_docs(COMPOSE)
    return doc


def test_compose_services_and_dependencies():
    services = compose()["services"]
    assert {"gateway", "redis"} <= services.keys()
    gw = services["gateway"]
    build = gw["build"]
    context = build if isinstance(build, str) else build["context"]
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert (COMPOSE.parent / context / dockerfile).resolve() == DOCKERFILE
    dep = gw["depends_on"]
    assert isinstance(dep, dict), "depends_on must use the long form with a condition"
    assert dep["redis"]["condition"] == "service_healthy"
    assert any(str(p).split(":")[-1] == str(PORT) for p in gw["ports"])


def test_compose_healthchecks():
    services = compose()["services"]
    for name in ("gateway", "redis"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    test = services["gateway"]["healthcheck"]["test"]
    assert "/health" in (test if isinstance(test, str) else " ".join(test))


def test_compose_env_redis_and_no_literal_keys():
    env = compose()["services"]["gateway"]["environment"]
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, None) for e in env)
    assert re.match(r"rediss?://redis(:\d+)?", env["REDIS_URL"])
    for name, value in env.items():
        if SECRET_ENV.search(name) and value is not None:
            assert str(value).startswith("${"), f"{name} must come from the environment, not a literal"
    assert "API_KEY" in env


# --------------------------------------------------------------------------- README


def test_readme_documents_every_file():
    text = README.read_text()
    for path in [DOCKERFILE, *K8S_FILES, ECS_TASK, ECS_TASK_POLICY, ECS_EXEC_POLICY, COMPOSE]:
        assert path.name in text, f"deploy/README.md does not mention {path.name}"
    for word in ("role-arn", "taskRoleArn", "executionRoleArn", "secret"):
        assert word in text, word
