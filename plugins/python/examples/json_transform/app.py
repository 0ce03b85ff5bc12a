"""json-transform: normalises JSON object bodies (the Python twin of plugins/json-transform, byte for byte).

* A body that is not a JSON object (invalid JSON, or an array, string, number...) is rejected with 400.
* The top-level fields named in config key `drop` (comma-separated, whitespace around names trimmed;
  optional) are removed.
* `"_weir": {"tenant": <tenant>, "source": <source>}` is added (replacing any `_weir` the sender put there).
* The stored trigger gets `content-type: application/json`.

The output is compact JSON with object keys sorted at every level, as serde_json writes it: the same bytes
as the Rust plugin's, numbers included (see `weir_plugin.jsonc`).
"""

import weir_plugin as weir
from weir_plugin import jsonc


def handle(trigger):
    try:
        obj = jsonc.loads(trigger.body)
    except ValueError as e:
        return weir.reject(400, f"body is not valid JSON: {e}")
    if not isinstance(obj, dict):
        return weir.reject(400, "body must be a JSON object")
    for field in weir.config_list("drop"):
        obj.pop(field, None)
    obj["_weir"] = {"tenant": trigger.tenant, "source": trigger.source}
    return weir.accept(jsonc.dumps(obj), set_headers={"content-type": "application/json"})


WitWorld = weir.export(handle)
