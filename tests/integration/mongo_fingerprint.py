import hashlib
from bson import json_util
from bson.json_util import CANONICAL_JSON_OPTIONS
def canon(v):
    return json_util.dumps(v, json_options=CANONICAL_JSON_OPTIONS, sort_keys=True)
for name in sorted(c.list_database_names()):
    if name in ("admin", "config", "local"):
        continue
    db = c[name]
    for info in sorted(db.list_collections(), key=lambda i: i["name"]):
        coll = info["name"]
        opts = dict(info.get("options", {}))
        line = f"{name}.{coll} {info.get('type')} options={canon(opts)}"
        if info.get("type") == "collection":
            idx = sorted((dict(i) for i in db[coll].list_indexes()), key=lambda i: i["name"])
            for i in idx:
                i.pop("ns", None)
            h = hashlib.sha256()
            n = 0
            for doc in db[coll].find({}, sort=[("$natural", 1)] if opts.get("capped") else [("_id", 1)]):
                h.update(canon(doc).encode())
                n += 1
            line += f" indexes={canon(idx)} count={n} sha256={h.hexdigest()}"
        print(line)
