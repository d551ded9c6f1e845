"""Every rendered object against the Kubernetes OpenAPI schemas (kubernetes-validate), and the two CRDs
it does not ship (KEDA ScaledObject, ServiceMonitor) against small structural schemas."""

from __future__ import annotations

import jsonschema
import kubernetes_validate

from chartcheck.paths import KUBE_VERSIONS, Doc

_STRMAP = {"type": "object", "additionalProperties": {"type": "string"}}
_META = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"},
        "namespace": {"type": "string"},
        "labels": _STRMAP,
        "annotations": _STRMAP,
    },
}
_DURATION = {"type": "string", "pattern": r"^[0-9]+(ms|s|m|h)$"}


def _crd(api_version: str, kind: str, spec: Doc) -> Doc:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": _META,
            "spec": spec,
        },
    }


# Structural schemas for the two CRDs kubernetes-validate does not ship (fields Herald uses + siblings).
CRD_SCHEMAS: dict[tuple[str, str], Doc] = {
    ("keda.sh/v1alpha1", "ScaledObject"): _crd(
        "keda.sh/v1alpha1",
        "ScaledObject",
        {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {k: {"type": "string"} for k in ("name", "kind", "apiVersion")},
                },
                **{
                    k: {"type": "integer", "minimum": 0}
                    for k in ("pollingInterval", "cooldownPeriod", "idleReplicaCount", "minReplicaCount")
                },
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            "metadata": _STRMAP,  # KEDA wants every trigger metadata value as a string
                            "authenticationRef": {"type": "object"},
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                        },
                    },
                },
            },
        },
    ),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): _crd(
        "monitoring.coreos.com/v1",
        "ServiceMonitor",
        {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchLabels": _STRMAP, "matchExpressions": {"type": "array"}},
                },
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "jobLabel": {"type": "string"},
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["port"],
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": _DURATION,
                            "scrapeTimeout": _DURATION,
                            "honorLabels": {"type": "boolean"},
                            "relabelings": {"type": "array"},
                            "metricRelabelings": {"type": "array"},
                        },
                    },
                },
            },
        },
    ),
}


def _name(doc: Doc) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def manifest_errors(docs: list[Doc]) -> list[str]:
    errors = []
    for doc in docs:
        crd = CRD_SCHEMAS.get((doc.get("apiVersion", ""), doc.get("kind", "")))
        if crd is not None:
            errors += [
                f"{_name(doc)}: {'.'.join(map(str, e.absolute_path))}: {e.message}"
                for e in jsonschema.Draft7Validator(crd).iter_errors(doc)
            ]
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                errors.append(f"{_name(doc)} (k8s {version}): {'.'.join(map(str, e.path))}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError as e:
                errors.append(f"{_name(doc)}: {e.message}")
    return errors
