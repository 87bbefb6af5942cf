"""A Confluent-compatible Schema Registry client (register a subject's schema, fetch by id).

Only used when ``PHOENIX_SCHEMA_REGISTRY_URL`` is set; ids and schemas are cached for the
process's life (registry ids are immutable).
"""

from __future__ import annotations

import json
from typing import Any

import fastavro
import httpx

from phoenix_resources.adapters.codec.framing import AvroSchema
from phoenix_resources.errors import BrokerUnavailable

_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class RegistryClient:
    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self._http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout,
                                  headers={"Accept": _CONTENT_TYPE})
        self._by_id: dict[int, Any] = {}

    def id_for(self, subject: str, schema: AvroSchema) -> int:
        body = {"schema": json.dumps(schema.raw)}
        try:
            r = self._http.post(f"/subjects/{subject}/versions", json=body,
                                headers={"Content-Type": _CONTENT_TYPE})
            r.raise_for_status()
        except httpx.HTTPError as e:
            raise BrokerUnavailable(f"schema registry: registering {subject}: {e}") from e
        sid = int(r.json()["id"])
        self._by_id[sid] = schema.parsed
        return sid

    def schema_for(self, schema_id: int) -> Any:
        if schema_id not in self._by_id:
            r = self._http.get(f"/schemas/ids/{schema_id}")
            r.raise_for_status()
            self._by_id[schema_id] = fastavro.parse_schema(json.loads(r.json()["schema"]))
        return self._by_id[schema_id]
