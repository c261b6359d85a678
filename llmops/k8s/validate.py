"""Validate Kubernetes objects: built-in kinds against the bundled Kubernetes schema (strict), custom
resources against the OpenAPI schema of their CustomResourceDefinition.

CRDs are read from a folder of CRD YAML files: `LLMOPS_CRD_DIR`, else `../shared/crds/` beside the
checkout. A custom resource whose CRD is not in that folder is an error, never a silent pass.

Strictness for custom resources follows what the API server does with a structural schema: unknown
fields are rejected (instead of silently pruned), except under `x-kubernetes-preserve-unknown-fields`.
"""

from __future__ import annotations

import copy
import functools
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from llmops.exceptions import ManifestInvalid

KUBERNETES_VERSION = "1.33.0"
"""The Kubernetes version whose schema built-in kinds are checked against."""

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def crd_dir() -> Path:
    env = os.environ.get("LLMOPS_CRD_DIR")
    if env:
        return Path(env)
    # `../shared/crds` beside the checkout; a git worktree one level deeper finds it one folder up.
    for parent in (PROJECT_ROOT.parent, PROJECT_ROOT.parent.parent):
        if (parent / "shared" / "crds").is_dir():
            return parent / "shared" / "crds"
    return PROJECT_ROOT.parent / "shared" / "crds"


@dataclass(frozen=True)
class Problem:
    """One validation failure: which object, where in it, and what is wrong."""

    source: str
    obj: str
    path: str
    message: str

    def __str__(self) -> str:
        where = f" at {self.path}" if self.path else ""
        return f"{self.source}: {self.obj}{where}: {self.message}"


def _obj_name(obj: dict[str, Any]) -> str:
    kind = obj.get("kind", "?")
    name = (obj.get("metadata") or {}).get("name", "?")
    return f"{kind}/{name}"


def _is_builtin(api_version: str) -> bool:
    group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
    return group == "" or "." not in group or group in _BUILTIN_K8S_IO_GROUPS


_BUILTIN_K8S_IO_GROUPS = {
    "rbac.authorization.k8s.io",
    "networking.k8s.io",
    "storage.k8s.io",
    "scheduling.k8s.io",
    "policy",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "certificates.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "node.k8s.io",
    "flowcontrol.apiserver.k8s.io",
    "resource.k8s.io",
}


_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's loader when available: the largest CRDs (KServe's is 2 MB) take seconds in pure Python."""
_CRD_HEAD = 16384
_GROUP = re.compile(r"^  group: *['\"]?([^'\"\s]+)", re.MULTILINE)
_KIND = re.compile(r"^  names:\s*\n(?:    .*\n)*?    kind: *['\"]?([A-Za-z0-9]+)", re.MULTILINE)


@functools.lru_cache(maxsize=4)
def _crd_files(directory: str) -> dict[tuple[str, str], list[Path]]:
    """(group, kind) -> CRD files, from the head of each file only (cheap); unmatched files are listed
    under ("", "") and parsed in full when a lookup misses."""
    index: dict[tuple[str, str], list[Path]] = {}
    path = Path(directory)
    if not path.is_dir():
        return index
    for f in sorted(path.glob("*.yaml")):
        with f.open(encoding="utf-8") as fh:
            head = fh.read(_CRD_HEAD)
        group, kind = _GROUP.search(head), _KIND.search(head)
        key = (group.group(1), kind.group(1)) if group and kind else ("", "")
        index.setdefault(key, []).append(f)
    return index


@functools.lru_cache(maxsize=64)
def _crd_file_schemas(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> strict JSON schema, for every served version of the CRDs in one file."""
    index: dict[tuple[str, str], dict[str, Any]] = {}
    with path.open(encoding="utf-8") as fh:
        docs = list(yaml.load_all(fh, Loader=_SAFE_LOADER))
    for doc in docs:
        if not doc or doc.get("kind") != "CustomResourceDefinition":
            continue
        spec = doc["spec"]
        for version in spec.get("versions", []):
            if not version.get("served", True):
                continue
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            if schema:
                key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                index[key] = _strict_schema(schema)
    return index


def _crd_schema(directory: str, api_version: str, kind: str) -> dict[str, Any] | None:
    """The schema of a custom resource, parsing only the CRD file(s) that can define it."""
    group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
    files = _crd_files(directory)
    for f in [*files.get((group, kind), []), *files.get(("", ""), [])]:
        schema = _crd_file_schemas(f).get((api_version, kind))
        if schema is not None:
            return schema
    return None


def _crd_index(directory: str) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> JSON schema for every CRD in the folder (parses all of them: slow)."""
    index: dict[tuple[str, str], dict[str, Any]] = {}
    for files in _crd_files(directory).values():
        for f in files:
            index.update(_crd_file_schemas(f))
    return index


def _strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Translate a structural OpenAPI v3 schema into JSON Schema that rejects unknown fields."""
    schema = copy.deepcopy(schema)

    def walk(node: Any, top: bool = False) -> Any:
        if isinstance(node, dict):
            if node.get("x-kubernetes-int-or-string"):
                node.pop("type", None)
                node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
            if node.get("nullable"):
                t = node.get("type")
                if isinstance(t, str):
                    node["type"] = [t, "null"]
            for key in ("properties", "patternProperties", "definitions"):
                if isinstance(node.get(key), dict):
                    for k, v in node[key].items():
                        node[key][k] = walk(v)
            for key in ("items", "additionalProperties", "not"):
                if isinstance(node.get(key), dict):
                    node[key] = walk(node[key])
            for key in ("allOf", "anyOf", "oneOf"):
                if isinstance(node.get(key), list):
                    node[key] = [walk(v) for v in node[key]]
            if (
                node.get("type") == "object"
                and "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            if top and isinstance(node.get("properties"), dict):
                # metadata is ObjectMeta, checked by the API server itself; apiVersion/kind always allowed.
                node["properties"].setdefault("apiVersion", {"type": "string"})
                node["properties"].setdefault("kind", {"type": "string"})
                node["properties"]["metadata"] = {"type": "object"}
        return node

    return walk(schema, top=True)


def validate_object(obj: dict[str, Any], source: str = "<object>") -> list[Problem]:
    """Every problem with one object (an empty list when it is valid)."""
    if not isinstance(obj, dict) or "apiVersion" not in obj or "kind" not in obj:
        return [Problem(source, "?", "", "not a Kubernetes object (apiVersion and kind are required)")]
    name = _obj_name(obj)
    meta = obj.get("metadata") or {}
    if not meta.get("name"):
        return [Problem(source, name, "metadata.name", "is required")]
    api_version, kind = obj["apiVersion"], obj["kind"]
    schema = _crd_schema(str(crd_dir()), api_version, kind)
    if schema is not None:
        import jsonschema

        validator = jsonschema.Draft7Validator(schema)
        return [
            Problem(source, name, ".".join(str(p) for p in err.absolute_path), err.message)
            for err in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
        ]
    if not _is_builtin(api_version):
        return [
            Problem(
                source,
                name,
                "",
                f"no schema for custom resource {api_version} {kind}: its CRD is not in {crd_dir()} "
                "(set LLMOPS_CRD_DIR to a folder of CRD YAML files)",
            )
        ]
    import kubernetes_validate

    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as err:
        path = ".".join(str(p) for p in err.absolute_path)
        return [Problem(source, name, path, err.message)]
    except kubernetes_validate.SchemaNotFoundError as err:
        return [Problem(source, name, "", err.message)]
    except kubernetes_validate.InvalidSchemaError as err:
        return [Problem(source, name, "", err.message)]
    return []


def validate_documents(docs: Iterable[dict[str, Any]], source: str) -> list[Problem]:
    problems: list[Problem] = []
    for doc in docs:
        if doc is None:
            continue
        problems.extend(validate_object(doc, source))
    return problems


def validate_file(path: Path) -> list[Problem]:
    """Problems in one YAML file (several documents allowed). `kustomization.yaml` is checked for shape."""
    try:
        docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d is not None]
    except yaml.YAMLError as exc:
        return [Problem(str(path), "?", "", f"not valid YAML: {exc}")]
    if Path(path).name == "kustomization.yaml":
        return _validate_kustomization(path, docs)
    if not docs:
        return [Problem(str(path), "?", "", "file holds no Kubernetes object")]
    return validate_documents(docs, str(path))


def _validate_kustomization(path: Path, docs: list[Any]) -> list[Problem]:
    if len(docs) != 1 or not isinstance(docs[0], dict):
        return [Problem(str(path), "Kustomization", "", "must hold exactly one mapping")]
    doc = docs[0]
    problems = []
    if doc.get("kind", "Kustomization") != "Kustomization":
        problems.append(Problem(str(path), "Kustomization", "kind", "must be Kustomization"))
    for res in doc.get("resources", []):
        if not (Path(path).parent / res).exists():
            problems.append(Problem(str(path), "Kustomization", "resources", f"{res} does not exist"))
    return problems


def validate_dir(directory: Path) -> dict[str, list[Problem]]:
    """Problems per YAML file under a folder (files with no problems map to an empty list)."""
    directory = Path(directory)
    files = sorted([*directory.rglob("*.yaml"), *directory.rglob("*.yml")])
    return {str(f): validate_file(f) for f in files}


def require_valid(docs: Iterable[dict[str, Any]], source: str) -> None:
    """Raise `ManifestInvalid` listing every problem, or return when all objects are valid."""
    problems = validate_documents(list(docs), source)
    if problems:
        raise ManifestInvalid("invalid Kubernetes manifest:\n  " + "\n  ".join(str(p) for p in problems))
