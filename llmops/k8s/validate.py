"""Validate Kubernetes objects before anything is written, submitted or applied.

Built-in kinds are checked against the Kubernetes schema bundled with `kubernetes-validate` (strict:
unknown fields are errors). A custom resource is checked against the first of these that knows its
`apiVersion` and `kind`:

1. `cluster`: in mode `kubernetes`, the CustomResourceDefinitions of the target cluster, read through its
   API (`ClusterCRDs`): the cluster is the source of truth for what it will accept;
2. `crd_dir`: a folder of CRD YAML files the user names (the `crd_dir` setting, `LLMOPS_CRD_DIR`);
3. `project`: the project's own schemas of exactly the fields it renders, one per custom kind it emits
   (`llmops/k8s/schemas/*.json`, package data, written from the upstream API references).

A custom resource none of them knows is an error, never a silent pass; a cluster that does not serve the
resource's API is an error too (applying it would fail). Every check says which source validated the
object (`Checked.source`), and `llmops render` / `llmops validate` report it per object.

Strictness for CRD schemas follows what the API server does with a structural schema under strict field
validation (kubectl's default): unknown fields are rejected, except under
`x-kubernetes-preserve-unknown-fields`.
"""

from __future__ import annotations

import copy
import functools
import importlib.resources
import json
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from llmops.exceptions import ConfigError, ManifestInvalid

if TYPE_CHECKING:
    from llmops.settings import Settings

log = logging.getLogger(__name__)

KUBERNETES_VERSION = "1.33.0"
"""The Kubernetes version whose schema built-in kinds are checked against."""

BUILTIN = "builtin"
"""Source of built-in kinds: the Kubernetes schema bundled with kubernetes-validate."""
CLUSTER = "cluster"
"""Source: a CRD read from the target cluster's API (mode kubernetes)."""
CRD_DIR = "crd_dir"
"""Source: a CRD file of the `crd_dir` setting."""
PROJECT = "project"
"""Source: the project's own schema (llmops/k8s/schemas/)."""

K8S_DEFINITIONS = "https://kubernetes.io/api/_definitions.json"
"""`$id` of kubernetes-validate's definitions; the project schemas `$ref` core types (EnvVar, Container,
Volume, ObjectMeta...) there, so embedded Kubernetes types are checked exactly like built-in kinds."""


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


@dataclass(frozen=True)
class Checked:
    """The result of checking one object: its problems and which schema source checked it."""

    obj: str
    """`Kind/name`."""
    source: str
    """`builtin`, `cluster`, `crd_dir` or `project` (empty when no schema was found)."""
    detail: str
    """Which schema exactly: the Kubernetes version, the CRD's name and where it was read, or the file."""
    problems: list[Problem] = field(default_factory=list)


@dataclass(frozen=True)
class FileReport:
    """The objects of one YAML file: every problem, and `Kind/name -> source` of each checked object."""

    problems: list[Problem]
    validated_by: dict[str, str]


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


# --- the project's schemas -----------------------------------------------------------------------------


@functools.cache
def project_schemas() -> dict[tuple[str, str], tuple[str, dict[str, Any]]]:
    """(apiVersion, kind) -> (file name, JSON schema) of every schema shipped in `llmops.k8s.schemas`;
    the key is read from the schema's own `apiVersion` / `kind` constants."""
    out: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    for entry in sorted(importlib.resources.files("llmops.k8s.schemas").iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".json"):
            continue
        schema = json.loads(entry.read_text(encoding="utf-8"))
        props = schema["properties"]
        out[(props["apiVersion"]["const"], props["kind"]["const"])] = (entry.name, schema)
    return out


@functools.cache
def _k8s_registry() -> Any:
    """A `referencing` registry holding kubernetes-validate's strict definitions of KUBERNETES_VERSION."""
    from referencing import Registry, Resource

    ref = importlib.resources.files("kubernetes_validate").joinpath(
        f"kubernetes-json-schema/v{KUBERNETES_VERSION}-local-strict/_definitions.json"
    )
    contents = json.loads(ref.read_text(encoding="utf-8"))
    return Registry().with_resource(K8S_DEFINITIONS, Resource.from_contents(contents))


@functools.cache
def _project_validator(api_version: str, kind: str) -> Any:
    import jsonschema

    _, schema = project_schemas()[(api_version, kind)]
    return jsonschema.Draft202012Validator(schema, registry=_k8s_registry())


# --- CRD files (crd_dir) -------------------------------------------------------------------------------

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
    for f in sorted([*path.glob("*.yaml"), *path.glob("*.yml")]):
        with f.open(encoding="utf-8") as fh:
            head = fh.read(_CRD_HEAD)
        group, kind = _GROUP.search(head), _KIND.search(head)
        key = (group.group(1), kind.group(1)) if group and kind else ("", "")
        index.setdefault(key, []).append(f)
    return index


def crd_version_schemas(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> strict JSON schema for every served version of one CRD document."""
    index: dict[tuple[str, str], dict[str, Any]] = {}
    if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
        return index
    spec = doc["spec"]
    for version in spec.get("versions", []):
        if not version.get("served", True):
            continue
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        if schema:
            index[(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = strict_schema(schema)
    return index


@functools.lru_cache(maxsize=64)
def _crd_file_schemas(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> strict JSON schema, for every served version of the CRDs in one file."""
    index: dict[tuple[str, str], dict[str, Any]] = {}
    with path.open(encoding="utf-8") as fh:
        for doc in yaml.load_all(fh, Loader=_SAFE_LOADER):
            index.update(crd_version_schemas(doc))
    return index


def _crd_dir_schema(directory: str, api_version: str, kind: str) -> tuple[Path, dict[str, Any]] | None:
    """The schema of a custom resource, parsing only the CRD file(s) that can define it."""
    group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
    files = _crd_files(directory)
    for f in [*files.get((group, kind), []), *files.get(("", ""), [])]:
        schema = _crd_file_schemas(f).get((api_version, kind))
        if schema is not None:
            return f, schema
    return None


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
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


# --- the cluster's CRDs ----------------------------------------------------------------------------------


class ClusterUnavailable(Exception):
    """The cluster's API could not answer (unreachable, forbidden): the next schema source is used."""


class ClusterCRDs:
    """The CRDs a cluster serves, read through its API: discovery of `/apis/<group>/<version>` gives the
    resource's plural, then `GET customresourcedefinitions/<plural>.<group>` gives its schema.

    Why read the CRDs rather than a server-side dry run of each object: a dry-run `create` fails with
    409 on objects that already exist and with 404 when the namespace does not exist yet (both normal at
    render time), needs create rights in the target namespace, runs admission webhooks that may call
    other services, and costs one request per object on every render; the CRD read needs only `get` on
    `customresourcedefinitions` (plus discovery, open to every authenticated user), costs two requests
    per kind per process, and validates strictly (the API server prunes unknown fields unless the client
    asks for strict field validation). Responses are read raw (`_preload_content=False`): the client's
    typed CRD models fail to deserialize some valid CRDs (kubernetes-client/python#1172).

    `apiextensions` and `custom_objects` are `kubernetes.client.ApiextensionsV1Api` and
    `CustomObjectsApi` (the API boundary: a test may pass stand-ins with the same two methods).
    """

    def __init__(self, apiextensions: Any, custom_objects: Any, where: str, timeout_s: float = 10.0):
        self.apiextensions = apiextensions
        self.custom_objects = custom_objects
        self.where = where
        self.timeout_s = timeout_s
        self._cache: dict[tuple[str, str], tuple[str, dict[str, Any] | None, str]] = {}

    def schema(self, api_version: str, kind: str) -> tuple[str, dict[str, Any] | None, str]:
        """(CRD name, strict schema or None, why not). Raises `ClusterUnavailable` when the API cannot
        answer; a None schema with a reason means the cluster does not serve this kind."""
        key = (api_version, kind)
        if key not in self._cache:
            self._cache[key] = self._fetch(api_version, kind)
        return self._cache[key]

    def _fetch(self, api_version: str, kind: str) -> tuple[str, dict[str, Any] | None, str]:
        group, version = api_version.rsplit("/", 1)
        resources = self._get(self.custom_objects.get_api_resources, group, version)
        if resources is None:
            return "", None, f"the cluster ({self.where}) does not serve {api_version}: is the CRD installed?"
        plural = next(
            (
                r["name"]
                for r in resources.get("resources", [])
                if r.get("kind") == kind and "/" not in r["name"]
            ),
            None,
        )
        if plural is None:
            return "", None, f"the cluster ({self.where}) serves {api_version} but not kind {kind}"
        name = f"{plural}.{group}"
        crd = self._get(self.apiextensions.read_custom_resource_definition, name)
        if crd is None:
            return name, None, f"the cluster ({self.where}) has no CustomResourceDefinition {name}"
        schema = crd_version_schemas(crd).get((api_version, kind))
        if schema is None:
            return (
                name,
                None,
                f"CustomResourceDefinition {name} in the cluster ({self.where}) "
                f"serves no schema for {version}",
            )
        return name, schema, ""

    def _get(self, method: Any, *args: str) -> dict[str, Any] | None:
        """JSON of one GET; None on 404."""
        import urllib3
        from kubernetes.client.exceptions import ApiException

        try:
            resp = method(*args, _preload_content=False, _request_timeout=self.timeout_s)
        except ApiException as exc:
            if exc.status == 404:
                return None
            hint = ""
            if exc.status in (401, 403):
                hint = "; reading CRDs needs `get` on customresourcedefinitions.apiextensions.k8s.io"
            raise ClusterUnavailable(f"{exc.status} {exc.reason}{hint}") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ClusterUnavailable(str(exc)) from None
        return json.loads(resp.data)


def cluster_crds() -> ClusterCRDs | None:
    """`ClusterCRDs` for the in-cluster config (in a pod) or the kubeconfig's current context; None when
    the `kubernetes` package is not installed or there is no config (then the next source is used)."""
    try:
        from kubernetes import client, config
    except ImportError:
        log.info(
            "the kubernetes package is not installed: custom resources are not checked against the cluster"
        )
        return None
    try:
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)
            api, where = client.ApiClient(configuration), "in-cluster config"
        else:
            # Read KUBECONFIG now: the client's own default is the value when `kubernetes` was imported.
            kubeconfig = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
            api, where = config.new_client_from_config(kubeconfig, persist_config=False), "kubeconfig"
    except config.ConfigException as exc:
        log.info("no cluster config (%s): custom resources are not checked against the cluster", exc)
        return None
    return ClusterCRDs(client.ApiextensionsV1Api(api), client.CustomObjectsApi(api), where)


# --- where schemas come from ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    """The schema found for one custom kind, or why there is none."""

    source: str
    detail: str
    schema: dict[str, Any] | None = None
    error: str = ""


class SchemaSources:
    """The ordered schema sources of custom resources: cluster, crd_dir, project."""

    def __init__(self, crd_dir: str | Path | None = None, cluster: ClusterCRDs | None = None):
        self.crd_dir = Path(crd_dir) if crd_dir else None
        if self.crd_dir is not None and not self.crd_dir.is_dir():
            raise ConfigError(
                f"crd_dir = {str(crd_dir)!r} (LLMOPS_CRD_DIR) is not a folder: name a folder of "
                "CustomResourceDefinition YAML files, or unset it to use the project's schemas"
            )
        self.cluster = cluster

    def find(self, api_version: str, kind: str) -> Found:
        if self.cluster is not None:
            try:
                name, schema, why = self.cluster.schema(api_version, kind)
            except ClusterUnavailable as exc:
                log.warning(
                    "cannot read CRDs from the cluster (%s): %s; custom resources are checked against "
                    "crd_dir or the project's schemas",
                    self.cluster.where,
                    exc,
                )
                self.cluster = None
            else:
                if schema is None:
                    return Found(CLUSTER, name, error=why)
                return Found(CLUSTER, f"CustomResourceDefinition {name} ({self.cluster.where})", schema)
        if self.crd_dir is not None:
            hit = _crd_dir_schema(str(self.crd_dir), api_version, kind)
            if hit is not None:
                return Found(CRD_DIR, str(hit[0]), hit[1])
        if (api_version, kind) in project_schemas():
            fname, schema = project_schemas()[(api_version, kind)]
            return Found(PROJECT, f"llmops/k8s/schemas/{fname}", schema)
        searched = ["the cluster" if self.cluster else "", f"{self.crd_dir}" if self.crd_dir else ""]
        where = ", ".join(s for s in searched if s)
        return Found(
            "",
            "",
            error=f"no schema for custom resource {api_version} {kind}: "
            + (f"its CRD is not in {where}, and " if where else "")
            + "the project has no schema for it (llmops/k8s/schemas); set crd_dir (LLMOPS_CRD_DIR) to a "
            "folder holding its CustomResourceDefinition",
        )


@functools.lru_cache(maxsize=8)
def _sources(mode: str, crd_dir: str | None) -> SchemaSources:
    return SchemaSources(crd_dir, cluster_crds() if mode == "kubernetes" else None)


def schema_sources(settings: Settings | None = None) -> SchemaSources:
    """The schema sources the settings name (one per mode and crd_dir per process: CRDs read from the
    cluster are cached for the life of the process)."""
    if settings is None:
        from llmops.settings import load_settings

        settings = load_settings()
    return _sources(settings.mode, settings.kubernetes.crd_dir)


# --- validation -----------------------------------------------------------------------------------------


def check_object(
    obj: dict[str, Any], source: str = "<object>", sources: SchemaSources | None = None
) -> Checked:
    """Check one object: its problems and the schema source that checked it."""
    if not isinstance(obj, dict) or "apiVersion" not in obj or "kind" not in obj:
        return Checked(
            "?",
            "",
            "",
            [Problem(source, "?", "", "not a Kubernetes object (apiVersion and kind are required)")],
        )
    name = _obj_name(obj)
    meta = obj.get("metadata") or {}
    if not meta.get("name"):
        return Checked(name, "", "", [Problem(source, name, "metadata.name", "is required")])
    api_version, kind = obj["apiVersion"], obj["kind"]
    if _is_builtin(api_version):
        return Checked(
            name,
            BUILTIN,
            f"Kubernetes {KUBERNETES_VERSION} (kubernetes-validate)",
            _builtin_problems(obj, source, name),
        )
    found = (sources or schema_sources()).find(api_version, kind)
    if found.schema is None:
        return Checked(name, found.source, found.detail, [Problem(source, name, "", found.error)])
    import jsonschema

    if found.source == PROJECT:
        validator = _project_validator(api_version, kind)
    else:
        validator = jsonschema.Draft7Validator(found.schema)
    problems = []
    for err in sorted(validator.iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path]):
        message = err.message
        if found.source == PROJECT and err.validator == "additionalProperties":
            message += (
                " (the project's schema covers the fields llmops renders; to check other fields against "
                "the full CRD, set crd_dir)"
            )
        problems.append(Problem(source, name, ".".join(str(p) for p in err.absolute_path), message))
    return Checked(name, found.source, found.detail, problems)


def _builtin_problems(obj: dict[str, Any], source: str, name: str) -> list[Problem]:
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


def validate_object(
    obj: dict[str, Any], source: str = "<object>", sources: SchemaSources | None = None
) -> list[Problem]:
    """Every problem with one object (an empty list when it is valid)."""
    return check_object(obj, source, sources).problems


def _is_custom(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and isinstance(obj.get("apiVersion"), str)
        and not _is_builtin(obj["apiVersion"])
    )


def check_documents(
    docs: Iterable[dict[str, Any] | None], source: str, sources: SchemaSources | None = None
) -> list[Checked]:
    docs = [doc for doc in docs if doc is not None]
    if sources is None and any(_is_custom(doc) for doc in docs):
        # Settings are read once per batch, and only when a custom resource needs them.
        sources = schema_sources()
    return [check_object(doc, source, sources) for doc in docs]


def validate_documents(
    docs: Iterable[dict[str, Any] | None], source: str, sources: SchemaSources | None = None
) -> list[Problem]:
    return [p for checked in check_documents(docs, source, sources) for p in checked.problems]


def check_file(path: Path, sources: SchemaSources | None = None) -> FileReport:
    """The objects of one YAML file (several documents allowed); `kustomization.yaml` is checked for shape."""
    try:
        docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d is not None]
    except yaml.YAMLError as exc:
        return FileReport([Problem(str(path), "?", "", f"not valid YAML: {exc}")], {})
    if Path(path).name == "kustomization.yaml":
        return FileReport(_validate_kustomization(path, docs), {})
    if not docs:
        return FileReport([Problem(str(path), "?", "", "file holds no Kubernetes object")], {})
    checked = check_documents(docs, str(path), sources)
    return FileReport(
        [p for c in checked for p in c.problems], {c.obj: c.source for c in checked if c.source}
    )


def validate_file(path: Path) -> list[Problem]:
    """Problems in one YAML file (several documents allowed). `kustomization.yaml` is checked for shape."""
    return check_file(path).problems


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


def check_dir(directory: Path, sources: SchemaSources | None = None) -> dict[str, FileReport]:
    """A report per YAML file under a folder."""
    directory = Path(directory)
    files = sorted([*directory.rglob("*.yaml"), *directory.rglob("*.yml")])
    return {str(f): check_file(f, sources) for f in files}


def validate_dir(directory: Path) -> dict[str, list[Problem]]:
    """Problems per YAML file under a folder (files with no problems map to an empty list)."""
    return {f: report.problems for f, report in check_dir(directory).items()}


def require_valid(
    docs: Iterable[dict[str, Any]], source: str, settings: Settings | None = None
) -> list[Checked]:
    """Raise `ManifestInvalid` listing every problem; return the checks when all objects are valid."""
    checked = check_documents(list(docs), source, schema_sources(settings) if settings is not None else None)
    problems = [p for c in checked for p in c.problems]
    if problems:
        raise ManifestInvalid("invalid Kubernetes manifest:\n  " + "\n  ".join(str(p) for p in problems))
    return checked
