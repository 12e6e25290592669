#!/usr/bin/env bash
# Validates what is under deploy/ without running it (no Docker, no Kubernetes here):
#
#   - deploy/k8s/*.yaml against the Kubernetes $K8S_VERSION schemas, strict (unknown fields are
#     errors), with kubernetes-validate, which ships the schemas; kustomization.yaml lists only
#     files that exist, and the policies volume matches the shipped policies;
#   - deploy/compose.yaml against the Compose Specification schema that check-jsonschema ships
#     (vendor.compose-spec);
#   - the HAProxy configs with `haproxy -c` (deploy/haproxy/*.cfg, and the one cluster.sh
#     generates);
#   - the Prometheus rule files with `promtool check rules` and their unit tests
#     (`promtool test rules`), and the Grafana dashboard as JSON;
#   - the shell scripts with `bash -n` (and shellcheck when it is installed);
#   - the gateway configs with `switchyard check`, when a binary is there (SWITCHYARD_BIN or
#     target/debug/switchyard).
#
# The validators are pinned and installed into .ci/.venv (offline after the first run). Exits
# non-zero on the first kind of problem found, after reporting all of that kind.
#
#   bash .ci/validate-deploy.sh [DEPLOY_DIR]     (default: deploy/)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEPLOY=${1:-$ROOT/deploy}
DEPLOY=$(cd "$DEPLOY" && pwd)

K8S_VERSION=1.34.0
VENV=$ROOT/.ci/.venv
# Pinned, with everything they pull in, so a new release upstream changes nothing here.
REQUIREMENTS=(
  kubernetes-validate==1.37.0
  check-jsonschema==0.39.0
  attrs==26.1.0
  certifi==2026.10.19.post1
  charset-normalizer==3.5.3
  click==8.5.1
  idna==3.20
  importlib_resources==7.1.0
  jsonschema==4.26.0
  jsonschema-specifications==2025.9.1
  packaging==26.4
  PyYAML==6.0.4
  referencing==0.37.0
  regress==2026.9.1
  requests==2.34.2
  rpds-py==2026.9.1
  ruamel.yaml==0.19.1
  typing_extensions==4.16.0
  urllib3==2.8.0
)

step() { printf '\n--> %s\n' "$*"; }
fail() {
  echo "validate-deploy: FAILED: $*" >&2
  exit 1
}

step "validators (.ci/.venv)"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
stamp=$VENV/.requirements
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "${REQUIREMENTS[*]}" ]; then
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${REQUIREMENTS[@]}"
  echo "${REQUIREMENTS[*]}" >"$stamp"
fi
"$VENV/bin/kubernetes-validate" --version
"$VENV/bin/check-jsonschema" --version

step "kubernetes manifests (Kubernetes $K8S_VERSION, strict)"
manifests=()
for f in "$DEPLOY"/k8s/*.yaml; do
  # kustomization.yaml is kustomize's, not a Kubernetes object: checked below.
  [ "${f##*/}" = kustomization.yaml ] || manifests+=("$f")
done
[ ${#manifests[@]} -gt 0 ] || fail "no manifests in $DEPLOY/k8s"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
if ! "$VENV/bin/kubernetes-validate" --strict -k "$K8S_VERSION" "${manifests[@]}" 2>&1 | tee "$out"; then
  fail "a Kubernetes manifest is invalid"
fi
# A kind it has no schema for is only a warning there; here every file must be checked.
if grep -q "^WARN" "$out"; then
  fail "a manifest was not checked against a schema (see WARN above)"
fi

step "kustomization.yaml and the policies volume"
"$VENV/bin/python" - "$DEPLOY/k8s" "$ROOT/policies" <<'PY' || fail "kustomization.yaml or the policies volume is inconsistent"
import pathlib, re, sys
import yaml

k8s, policies = map(pathlib.Path, sys.argv[1:3])
errors = []
kust = yaml.safe_load((k8s / "kustomization.yaml").read_text())
if kust.get("apiVersion") != "kustomize.config.k8s.io/v1beta1" or kust.get("kind") != "Kustomization":
    errors.append("kustomization.yaml: not a kustomize.config.k8s.io/v1beta1 Kustomization")
allowed = {"apiVersion", "kind", "resources", "labels", "commonLabels", "namespace", "images",
           "configMapGenerator", "secretGenerator", "patches", "generatorOptions", "namePrefix"}
errors += [f"kustomization.yaml: unexpected field {k}" for k in kust if k not in allowed]
listed = kust.get("resources") or []
for r in listed:
    if not (k8s / r).is_file():
        errors.append(f"kustomization.yaml lists {r}, which does not exist")
# Every manifest is either applied by the kustomization or one of the documented extras.
extras = {"hpa-inflight.yaml", "secret.example.yaml"}
for f in sorted(k8s.glob("*.yaml")):
    if f.name != "kustomization.yaml" and f.name not in listed and f.name not in extras:
        errors.append(f"{f.name} is neither in kustomization.yaml nor a documented extra")
if "secret.example.yaml" in listed:
    errors.append("secret.example.yaml (placeholders) must not be applied by the kustomization")

# The policies: the config's [policies] dir is the gateway's mount of the volume the init
# container unpacks the `switchyard-policies` archive into.
import tomllib
deployment = yaml.safe_load((k8s / "deployment.yaml").read_text())
pod = deployment["spec"]["template"]["spec"]
volumes = {v["name"]: v for v in pod["volumes"]}
config = yaml.safe_load((k8s / "configmap.yaml").read_text())["data"]["switchyard.toml"]
policies_dir = tomllib.loads(config)["policies"]["dir"]
gateway = next(c for c in pod["containers"] if c["name"] == "switchyard")
mounts = {m["mountPath"]: m["name"] for m in gateway["volumeMounts"]}
vol = mounts.get(policies_dir)
if vol is None or "emptyDir" not in volumes.get(vol, {}):
    errors.append(f"[policies] dir {policies_dir} is not an emptyDir mount of the gateway")
init = {c["name"]: c for c in pod.get("initContainers", [])}.get("policies")
if init is None:
    errors.append("no init container `policies`")
else:
    init_mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    cmd = init["command"]
    if init_mounts.get(vol) != cmd[cmd.index("-C") + 1]:
        errors.append("the init container does not unpack into the policies volume")
    archive = next(a for a in cmd if a.endswith(".tar.gz"))
    src = next((n for n, p in init_mounts.items() if archive.startswith(p + "/")), None)
    if volumes.get(src, {}).get("configMap", {}).get("name") != "switchyard-policies":
        errors.append("the init container's archive is not from the ConfigMap switchyard-policies")
    key = archive.rsplit("/", 1)[1]
    if f"--from-file={key}=" not in (k8s / "kustomization.yaml").read_text():
        errors.append(f"kustomization.yaml's configmap command does not make key {key}")
if init is not None and init["image"] != gateway["image"]:
    errors.append("the init container's image differs from the gateway's")
# Every file a shipped manifest needs must be in the archive the documented command makes.
for manifest in sorted(policies.glob("*/policy.toml")):
    for line in manifest.read_text().splitlines():
        m = re.match(r'^(?:input|expect) = "(.*)"$', line)
        if m and not m.group(1).startswith("tests/"):
            errors.append(f"{manifest}: test file {m.group(1)} is outside tests/, which the archive holds")

for e in errors:
    print("error:", e)
if errors:
    sys.exit(1)
print(f"ok: {len(listed)} resources listed; policies unpacked into {policies_dir}")
PY

step "compose (Compose Specification schema)"
"$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec "$DEPLOY/compose.yaml" ||
  fail "deploy/compose.yaml does not follow the Compose Specification"
# Files the compose file mounts or builds from must exist.
"$VENV/bin/python" - "$DEPLOY" <<'PY' || fail "deploy/compose.yaml names a missing file"
import pathlib, sys
import yaml

deploy = pathlib.Path(sys.argv[1])
compose = yaml.safe_load((deploy / "compose.yaml").read_text())
missing = [c["file"] for c in compose.get("configs", {}).values() if not (deploy / c["file"]).is_file()]
for name, svc in compose["services"].items():
    build = svc.get("build")
    if isinstance(build, dict):
        ctx = deploy / build.get("context", ".")
        if not (ctx / build.get("dockerfile", "Dockerfile")).is_file():
            missing.append(f"{name}: {build.get('dockerfile')}")
for m in missing:
    print("missing:", m)
sys.exit(1 if missing else 0)
PY

step "Dockerfile (dockerfile-utils lint; COPY sources exist)"
# npm's package, kept inside .ci/.venv so that it is ignored by git with the venv.
NODE_PREFIX=$VENV/node
DFU_VERSION=0.16.3
if command -v npm >/dev/null; then
  if [ "$(cat "$NODE_PREFIX/.version" 2>/dev/null)" != "$DFU_VERSION" ]; then
    npm install --silent --no-audit --no-fund --prefix "$NODE_PREFIX" "dockerfile-utils@$DFU_VERSION" >/dev/null
    echo "$DFU_VERSION" >"$NODE_PREFIX/.version"
  fi
  "$NODE_PREFIX/node_modules/.bin/dockerfile-utils" lint "$DEPLOY/Dockerfile" || fail "deploy/Dockerfile"
else
  echo "npm not installed: Dockerfile syntax not linted"
fi
# The build context is the repository root (compose.yaml: context ..).
"$VENV/bin/python" - "$DEPLOY/Dockerfile" "$DEPLOY/.." <<'PY' || fail "deploy/Dockerfile copies a missing file"
import pathlib, shlex, sys

dockerfile, context = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
missing = []
for line in dockerfile.read_text().splitlines():
    words = shlex.split(line) if line.startswith("COPY ") else []
    if not words or any(w.startswith("--from=") for w in words):
        continue
    missing += [src for src in words[1:-1] if not src.startswith("--") and not (context / src).exists()]
for m in missing:
    print("missing:", m)
sys.exit(1 if missing else 0)
PY
echo "ok"

step "haproxy configs"
if ! command -v haproxy >/dev/null && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "installing haproxy"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy; } \
    </dev/null >/dev/null 2>&1 || fail "installing haproxy failed"
fi
command -v haproxy >/dev/null || fail "haproxy is not installed (apt-get install haproxy)"
for cfg in "$DEPLOY"/haproxy/*.cfg; do
  haproxy -c -f "$cfg" || fail "$cfg is invalid"
done
# The config cluster.sh generates, for two replicas, into a scratch state folder.
scratch=$(mktemp -d)
trap 'rm -f "$out"; rm -rf "$scratch"' EXIT
(
  export SWITCHYARD_CLUSTER_DIR=$scratch
  # shellcheck disable=SC1091 # checked on its own below
  source "$DEPLOY/local/cluster.sh"
  mkdir -p "$RUN"
  write_haproxy_config 18081 18082 || true
  haproxy -c -f "$STATE/haproxy.cfg"
) || fail "the HAProxy config cluster.sh generates is invalid"

step "prometheus rules (promtool)"
if ! command -v promtool >/dev/null && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "installing prometheus (for promtool)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; } \
    </dev/null >/dev/null 2>&1 || fail "installing prometheus failed"
fi
if command -v promtool >/dev/null; then
  promtool check rules "$DEPLOY"/prometheus/{alerts,recording}.yml || fail "deploy/prometheus rules"
  promtool test rules "$DEPLOY"/prometheus/rules_test.yml || fail "deploy/prometheus/rules_test.yml"
else
  echo "promtool not installed: rule files not checked (apt-get install prometheus)"
fi
"$VENV/bin/python" -c 'import json, sys; json.load(open(sys.argv[1]))' "$DEPLOY/grafana/switchyard.json" \
  || fail "deploy/grafana/switchyard.json is not JSON"

step "shell scripts"
# Syntax of every script; shellcheck on those of the deployment (the others predate it).
scripts=("$DEPLOY"/local/*.sh "$ROOT"/.ci/*.sh "$ROOT"/policies/build.sh "$ROOT"/demo.sh)
for s in "${scripts[@]}"; do
  bash -n "$s" || fail "$s: syntax error"
done
if command -v shellcheck >/dev/null; then
  shellcheck "$DEPLOY"/local/*.sh "$ROOT/.ci/validate-deploy.sh" "$ROOT/.ci/redis.sh" || fail "shellcheck"
else
  echo "shellcheck not installed: bash -n only"
fi

step "gateway configs (switchyard check)"
bin=${SWITCHYARD_BIN:-$ROOT/target/debug/switchyard}
if [ -x "$bin" ]; then
  cfgdir=$(mktemp -d)
  trap 'rm -f "$out"; rm -rf "$scratch" "$cfgdir"' EXIT
  "$VENV/bin/python" -c '
import sys, yaml
cm = yaml.safe_load(open(sys.argv[1]))
open(sys.argv[2], "w").write(cm["data"]["switchyard.toml"])
' "$DEPLOY/k8s/configmap.yaml" "$cfgdir/k8s.toml"
  # Placeholders for what the Secret and the environment give; `check` connects to nothing.
  for cfg in "$DEPLOY/local/switchyard.toml" "$cfgdir/k8s.toml"; do
    env SWITCHYARD_STORE_URL=postgres://u:p@127.0.0.1:5432/db \
      SWITCHYARD_REDIS_URL=redis://127.0.0.1:6390/0 SWITCHYARD_REDIS_CACHE_URL=redis://127.0.0.1:6391/0 \
      SWITCHYARD_ADMIN_KEY=placeholder-admin-key-for-check OPENAI_API_KEY=x ANTHROPIC_API_KEY=x GEMINI_API_KEY=x \
      SWITCHYARD_POLICIES="$ROOT/policies" \
      "$bin" check --config "$cfg" >/dev/null || fail "switchyard check rejects $cfg"
    echo "ok: $cfg"
  done
else
  echo "no switchyard binary at $bin: configs not checked"
fi

echo
echo "validate-deploy: all deploy files valid"
