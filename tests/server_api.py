"""Reading a running vLLM server's JSON routes and OpenAPI schema (the server tests' contract checks)."""

import json
import urllib.request


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def body_fields(spec: dict, route: str) -> set[str]:
    """The JSON body fields a POST route takes, from the server's OpenAPI schema."""
    ref = spec["paths"][route]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    return set(spec["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"])
