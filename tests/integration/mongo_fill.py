import datetime, uuid, re
from bson import (Binary, Code, DBRef, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp)
from bson.binary import UuidRepresentation
for name in c.list_database_names():
    if name not in ("admin", "config", "local"):
        c.drop_database(name)
shop = c["shop"]
docs = []
for i in range(300):
    docs.append({
        "_id": i, "double": i * 1.5, "string": f"Crème brûlée ☕ 日本語 😀 {i}", "object": {"a": i, "b": {"c": [i, "x"]}},
        "array": [1, "two", 3.0, {"four": 4}], "binary": Binary(bytes([i % 256, 0, 255]) * 7, 0),
        "uuid": Binary(uuid.UUID(int=i).bytes, 4), "md5": Binary(b"0123456789abcdef", 5), "user": Binary(b"\x80\x81", 128),
        "oid": ObjectId(b"%012d" % i), "bool": i % 2 == 0, "date": datetime.datetime(2026, 1, 1) + datetime.timedelta(seconds=i),
        "null": None, "regex": Regex("^a.*b$", "im"), "code": Code("function () { return 1; }"),
        "codews": Code("function () { return x; }", {"x": i}), "int32": i, "ts": Timestamp(1700000000 + i, i % 5 + 1),
        "int64": Int64(2**40 + i), "dec": Decimal128(f"{i}.10"), "min": MinKey(), "max": MaxKey(),
        "ref": DBRef("people", i, "crm"), "loc": {"type": "Point", "coordinates": [2.35 + i / 1000, 48.85]},
        "xy": [i % 90, i % 45], "text": f"the quick brown fox {i}", "price": i * 2, "sku": f"SKU-{i:05d}",
        "maybe": (i if i % 3 == 0 else None) if i % 2 else None, "created": datetime.datetime(2026, 1, 1),
    })
shop.items.insert_many(docs)
items = shop.items
items.create_index([("sku", 1)], unique=True, name="sku_unique")
items.create_index([("price", -1), ("int32", 1)], name="price_desc_int_asc")
items.create_index([("maybe", 1)], sparse=True, name="maybe_sparse")
items.create_index([("price", 1)], partialFilterExpression={"price": {"$gt": 100}}, name="price_partial")
items.create_index([("created", 1)], expireAfterSeconds=10**9, name="created_ttl")
items.create_index([("loc", "2dsphere")], name="loc_2dsphere")
items.create_index([("xy", "2d")], name="xy_2d")
items.create_index([("object.$**", 1)], name="object_wildcard")
items.create_index([("string", 1)], collation={"locale": "fr", "strength": 2}, name="string_fr")
shop.create_collection("cheap", viewOn="items", pipeline=[{"$match": {"price": {"$lt": 50}}}, {"$project": {"sku": 1, "price": 1}}])
crm = c["crm"]
crm.create_collection("people", validator={"$jsonSchema": {"bsonType": "object", "required": ["email"]}},
                      collation={"locale": "de"})
crm.people.insert_many([{"_id": i, "email": f"user{i}@example.org", "note": "ü" * (i % 50)} for i in range(500)])
logs = c["logs"]
logs.create_collection("events", capped=True, size=65536, max=200)
logs.events.insert_many([{"n": i, "msg": "x" * 50} for i in range(400)])
print("filled")
