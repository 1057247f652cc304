"""Validates a directory of Kubernetes manifests (deploy/k8s) and describes what they run.

Usage: validate_manifests.py DIR KUBERNETES_VERSION [--outside-kustomization FILE]...

- Every document of every *.yaml file but kustomization.yaml is validated with the
  kubernetes-validate package against that Kubernetes release's schema, strictly: an unknown
  field is an error, as are a wrong type and a missing required field.
- kustomization.yaml must list every other file of DIR as a resource, except the files named by
  --outside-kustomization, which it must not list.
- Every pod template (Deployment, StatefulSet, DaemonSet, Job) must meet what the deployment
  promises: runAsNonRoot; for each container, resource requests and a memory limit, no privilege
  escalation, a read-only root filesystem, all capabilities dropped; for each long-running
  container of the esprit image (esprit and the Bookstore), readiness and liveness probes.
- Each absolute file path an esprit container is given (`--flag=/path`) lies in one of its
  volume mounts, and when that volume is a ConfigMap or Secret of DIR, the key exists; so does
  the key of each env entry taken from a ConfigMap or Secret of DIR.

Prints JSON on stdout: {"resources": [{"file", "kind", "name"}], "containers": [{"file",
"workload", "container", "init", "image", "command", "args", "env"}], "configmaps": {name: data}}.
On any problem, prints one line per problem on stderr and exits 1.
"""
import json
import os
import sys

import yaml
import kubernetes_validate.utils as kv

KUSTOMIZATION = "kustomization.yaml"
POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
# The image the manifests name for esprit's binaries (set by `kustomize edit set image`).
ESPRIT_IMAGE = "registry.example/esprit"


def load(path):
    with open(path, encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def describe_error(err):
    where = "/".join(str(p) for p in err.absolute_path) or "(top)"
    return f"{where}: {err.message}"


def pod_spec(doc):
    spec = doc.get("spec", {})
    if doc["kind"] == "Job":
        return spec.get("template", {}).get("spec", {})
    return spec.get("template", {}).get("spec", {})


def check_pod_policies(file, name, spec, problems):
    where = f"{file}: {name}"
    if spec.get("securityContext", {}).get("runAsNonRoot") is not True:
        problems.append(f"{where}: pod securityContext.runAsNonRoot is not true")
    containers = [(c, False) for c in spec.get("containers", [])]
    containers += [(c, True) for c in spec.get("initContainers", [])]
    for container, init in containers:
        cwhere = f"{where}: container {container['name']}"
        resources = container.get("resources", {})
        if not resources.get("requests"):
            problems.append(f"{cwhere}: no resources.requests")
        if "memory" not in resources.get("limits", {}):
            problems.append(f"{cwhere}: no memory limit")
        sc = container.get("securityContext", {})
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{cwhere}: allowPrivilegeEscalation is not false")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{cwhere}: readOnlyRootFilesystem is not true")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            problems.append(f"{cwhere}: capabilities.drop is not [ALL]")
        # esprit's image runs esprit and the Bookstore: each long-running container of it
        # needs both probes.
        ours = container.get("image", "").split("@")[0].split(":")[0] == ESPRIT_IMAGE
        if ours and not init:
            for probe in ("readinessProbe", "livenessProbe"):
                if probe not in container:
                    problems.append(f"{cwhere}: no {probe}")


def check_references(file, name, spec, sources, problems):
    """Keys of ConfigMaps and Secrets of DIR named by env entries exist; absolute paths in
    esprit's flags lie in a volume mount and name an existing key."""
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for container in spec.get("containers", []) + spec.get("initContainers", []):
        for env in container.get("env", []):
            for kind, ref in (("configMap", "configMapKeyRef"), ("secret", "secretKeyRef")):
                target = env.get("valueFrom", {}).get(ref)
                data = sources.get((kind, target["name"])) if target else None
                if data is not None and target["key"] not in data:
                    problems.append(
                        f"{file}: {name}: container {container['name']}: env {env['name']}: "
                        f"{kind} {target['name']} has no key {target['key']}"
                    )
        if not container.get("command", [""])[0].endswith("/esprit"):
            continue
        mounts = container.get("volumeMounts", [])
        for arg in container.get("args", []):
            if not arg.startswith("--") or "=/" not in arg:
                continue
            flag, path = arg.split("=", 1)
            where = f"{file}: {name}: container {container['name']}: {flag}={path}"
            mount = next(
                (m for m in mounts if path.startswith(m["mountPath"].rstrip("/") + "/")), None
            )
            if mount is None:
                problems.append(f"{where}: not in any volume mount")
                continue
            key = path[len(mount["mountPath"].rstrip("/")) + 1:]
            volume = volumes.get(mount["name"])
            if volume is None:
                problems.append(f"{where}: volume {mount['name']} is not defined")
                continue
            for kind, ref in (("configMap", "name"), ("secret", "secretName")):
                if kind not in volume:
                    continue
                source = volume[kind]
                items = source.get("items")
                if items is not None:
                    paths = {item["path"]: item["key"] for item in items}
                    if key not in paths:
                        problems.append(f"{where}: {key} is not among the volume's items")
                        break
                    key = paths[key]
                data = sources.get((kind, source[ref]))
                if data is not None and key not in data:
                    problems.append(f"{where}: {kind} {source[ref]} has no key {key}")


def main():
    args = sys.argv[1:]
    if len(args) < 2:
        sys.exit(__doc__)
    directory, version = args[0], args[1]
    outside = set()
    rest = args[2:]
    while rest:
        if rest[0] != "--outside-kustomization" or len(rest) < 2:
            sys.exit(__doc__)
        outside.add(rest[1])
        rest = rest[2:]

    problems = []
    files = sorted(
        f for f in os.listdir(directory) if f.endswith((".yaml", ".yml")) and f != KUSTOMIZATION
    )
    if not files:
        problems.append(f"{directory}: no manifest")

    kustomization_path = os.path.join(directory, KUSTOMIZATION)
    if os.path.exists(kustomization_path):
        (kustomization,) = load(kustomization_path)
        listed = set(kustomization.get("resources", []))
        for f in files:
            if f in outside and f in listed:
                problems.append(f"{KUSTOMIZATION}: lists {f}, which must stay out of it")
            if f not in outside and f not in listed:
                problems.append(f"{KUSTOMIZATION}: does not list {f}")
        for f in sorted(listed - set(files)):
            problems.append(f"{KUSTOMIZATION}: lists {f}, which is not in {directory}")
    else:
        problems.append(f"{directory}: no {KUSTOMIZATION}")

    resources, containers, sources, templates = [], [], {}, []
    for f in files:
        try:
            docs = load(os.path.join(directory, f))
        except yaml.YAMLError as err:
            problems.append(f"{f}: not YAML: {err}")
            continue
        for doc in docs:
            if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
                problems.append(f"{f}: a document without kind or apiVersion")
                continue
            name = doc.get("metadata", {}).get("name", "?")
            label = f"{doc['kind']}/{name}"
            try:
                kv.validate(doc, version, strict=True)
            except kv.ValidationError as err:
                problems.append(f"{f}: {label}: {describe_error(err)}")
            except kv.SchemaNotFoundError as err:
                problems.append(f"{f}: {label}: {err.message}")
            resources.append({"file": f, "kind": doc["kind"], "name": name})
            if doc["kind"] == "ConfigMap":
                sources[("configMap", name)] = doc.get("data", {})
            if doc["kind"] == "Secret":
                data = dict(doc.get("data", {}))
                data.update(doc.get("stringData", {}))
                sources[("secret", name)] = data
            if doc["kind"] in POD_TEMPLATE_KINDS:
                templates.append((f, label, pod_spec(doc)))

    for f, label, spec in templates:
        check_pod_policies(f, label, spec, problems)
        check_references(f, label, spec, sources, problems)
        for init, key in ((False, "containers"), (True, "initContainers")):
            for c in spec.get(key, []):
                containers.append(
                    {
                        "file": f,
                        "workload": label,
                        "container": c["name"],
                        "init": init,
                        "image": c.get("image", ""),
                        "command": c.get("command", []),
                        "args": [str(a) for a in c.get("args", [])],
                        "env": [e["name"] for e in c.get("env", [])],
                    }
                )

    if problems:
        for p in problems:
            print(p, file=sys.stderr)
        sys.exit(1)
    configmaps = {name: data for (kind, name), data in sources.items() if kind == "configMap"}
    json.dump(
        {"resources": resources, "containers": containers, "configmaps": configmaps}, sys.stdout
    )


if __name__ == "__main__":
    main()
