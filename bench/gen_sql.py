#!/usr/bin/env python3
"""SQL that fills the benchmark's "realistic" table, for PostgreSQL or MariaDB.

Table `events`: id, md5 hex of the id, free text, a timestamp with microseconds, a small JSON
document. Everything is generated inside the database (generate_series / MariaDB's
seq_<a>_to_<b> sequence tables), so nothing large crosses the Docker API.

Free text: words drawn at random from a fixed vocabulary of pseudo-words (24 000 for PostgreSQL,
40 000 for MariaDB: a few hundred words compress far beyond 2.3x), in varying order
and number. To keep generation fast, PHRASES random phrases are made first (a scratch table);
each row's text is two of them, picked by two different strides of the id, so neighbouring rows
never share a phrase (a phrase comes back only PHRASES rows later: far outside gzip's 32 KiB
window).

The mix (MIX below) is tuned so that the plain dump compresses about 2.3x with `gzip -6` (run.sh
prints the measured ratio). Knobs: a larger vocabulary -> lower ratio; more words -> the text
weighs more against the JSON and timestamps, which compress well -> lower ratio. Overrides for
tuning only: BENCH_VOCAB, BENCH_MIN_WORDS, BENCH_MAX_WORDS.

    gen_sql.py postgres --rows N [--start K]             # rows K+1 .. K+N
    gen_sql.py mariadb  --rows N [--start K] [--batch B]
"""
import argparse
import os
import random
import sys

# Per engine: (vocabulary size, min words, max words per phrase; a row has two phrases). The
# dump formats differ (mariadb-dump quotes strings and escapes the JSON's quotes), so each engine
# gets the mix that lands near 2.3x for its own dump.
MIX = {"postgres": (24000, 8, 30), "mariadb": (40000, 12, 44)}
VOCAB_SIZE = MIN_WORDS = MAX_WORDS = SPAN = 0  # set by configure()
PHRASES = 65521  # prime, so both strides below visit every phrase
STRIDE_A, STRIDE_B = 104729, 7919
SEED = 20261125

SOURCES = ["web", "ios", "android", "api", "import", "batch", "partner"]
TAGS = ["new", "vip", "promo", "gift", "return", "bulk", "eu", "us", "apac", "b2b", "b2c", "test"]


def vocabulary():
    """VOCAB_SIZE pronounceable pseudo-words, the same on every run (seeded)."""
    rng = random.Random(SEED)
    onsets = ["b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "qu", "r", "s", "t", "v", "w",
              "br", "ch", "cl", "dr", "fl", "gr", "pl", "pr", "sh", "sl", "sp", "st", "th", "tr"]
    vowels = ["a", "e", "i", "o", "u", "ai", "ea", "ee", "io", "ou", "y"]
    codas = ["", "", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ng", "ck", "x"]
    words = set()
    while len(words) < VOCAB_SIZE:
        n = rng.choice([1, 1, 2, 2, 2, 3, 3, 4])
        words.add("".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(n)) + rng.choice(codas))
    return sorted(words, key=lambda w: (rng.random(), w))


def lit(s):
    return "'" + s.replace("'", "''") + "'"


def lits(xs):
    return ",".join(lit(x) for x in xs)




def configure(engine):
    global VOCAB_SIZE, MIN_WORDS, MAX_WORDS, SPAN
    v, lo, hi = MIX[engine]
    VOCAB_SIZE = int(os.environ.get("BENCH_VOCAB", v))
    MIN_WORDS = int(os.environ.get("BENCH_MIN_WORDS", lo))
    MAX_WORDS = int(os.environ.get("BENCH_MAX_WORDS", hi))
    SPAN = MAX_WORDS - MIN_WORDS + 1
    if VOCAB_SIZE < 1 or MIN_WORDS < 1 or SPAN < 1:
        sys.exit("gen_sql.py: bad BENCH_VOCAB / BENCH_MIN_WORDS / BENCH_MAX_WORDS")


def postgres(rows, start):
    lo, hi = start + 1, start + rows
    return f"""\\set ON_ERROR_STOP 1
\\pset tuples_only on
SET client_min_messages = warning;
SELECT setseed({(start % 997) / 997.0});
CREATE TEMP TABLE vocab AS
SELECT (o - 1)::int AS i, w FROM unnest(ARRAY[{lits(vocabulary())}]) WITH ORDINALITY AS u(w, o);
ALTER TABLE vocab ADD PRIMARY KEY (i);
CREATE TEMP TABLE picks AS
SELECT p AS i, j, floor(random() * {VOCAB_SIZE})::int AS k
FROM generate_series(0, {PHRASES - 1}) AS p, generate_series(1, {MAX_WORDS}) AS j
WHERE j <= {MIN_WORDS} + (p * 7919) % {SPAN};
CREATE TEMP TABLE phrases AS
SELECT pk.i, string_agg(v.w, ' ' ORDER BY pk.j) AS t FROM picks pk JOIN vocab v ON v.i = pk.k GROUP BY pk.i;
ALTER TABLE phrases ADD PRIMARY KEY (i);
ANALYZE phrases;
CREATE TABLE IF NOT EXISTS events (
    id bigint NOT NULL,
    hash text NOT NULL,
    body text NOT NULL,
    created_at timestamp with time zone NOT NULL,
    doc jsonb NOT NULL
);
INSERT INTO events (id, hash, body, created_at, doc)
SELECT g,
       md5(g::text),
       a.t || ' ' || b.t,
       timestamptz '2021-01-01 00:00:00+00' + make_interval(secs => g * 13 + random() * 13),
       jsonb_build_object(
           'user', 1 + floor(random() * 1000000)::int,
           'source', (ARRAY[{lits(SOURCES)}])[1 + floor(random() * {len(SOURCES)})::int],
           'qty', 1 + floor(random() * 40)::int,
           'price', round((random() * 500)::numeric, 2),
           'tags', jsonb_build_array((ARRAY[{lits(TAGS)}])[1 + floor(random() * {len(TAGS)})::int],
                                     (ARRAY[{lits(TAGS)}])[1 + floor(random() * {len(TAGS)})::int]),
           'paid', random() < 0.8)
FROM generate_series({lo}::bigint, {hi}::bigint) AS g
JOIN phrases a ON a.i = (g * {STRIDE_A}) % {PHRASES}
JOIN phrases b ON b.i = (g * {STRIDE_B} + 1) % {PHRASES};
DO $$BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'events_pkey') THEN
        ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY (id);
    END IF;
END$$;
DROP TABLE phrases, picks, vocab;
"""


def mariadb(rows, start, batch):
    vocab = ",".join(f"({i},{lit(w)})" for i, w in enumerate(vocabulary()))
    pick = lambda xs: f"ELT(1 + FLOOR(RAND() * {len(xs)}), {lits(xs)})"
    out = [
        f"SET @@SESSION.rand_seed1 = {1 + start % 997}, @@SESSION.rand_seed2 = 7;",
        "DROP TABLE IF EXISTS bench_phrases, bench_picks, bench_vocab;",
        "CREATE TABLE bench_vocab (i int NOT NULL PRIMARY KEY, w varchar(64) NOT NULL) ENGINE=InnoDB;",
        f"INSERT INTO bench_vocab VALUES {vocab};",
        "CREATE TABLE bench_picks (i int NOT NULL, j int NOT NULL, k int NOT NULL, PRIMARY KEY (i, j)) ENGINE=InnoDB;",
        f"INSERT INTO bench_picks SELECT p.seq, w.seq, FLOOR(RAND() * {VOCAB_SIZE}) "
        f"FROM seq_0_to_{PHRASES - 1} p JOIN seq_1_to_{MAX_WORDS} w ON w.seq <= {MIN_WORDS} + (p.seq * 7919) % {SPAN};",
        "CREATE TABLE bench_phrases (i int NOT NULL PRIMARY KEY, t text NOT NULL) ENGINE=InnoDB;",
        "INSERT INTO bench_phrases SELECT pk.i, GROUP_CONCAT(v.w ORDER BY pk.j SEPARATOR ' ') "
        "FROM bench_picks pk JOIN bench_vocab v ON v.i = pk.k GROUP BY pk.i;",
        """CREATE TABLE IF NOT EXISTS events (
    id bigint NOT NULL PRIMARY KEY,
    hash char(32) NOT NULL,
    body text NOT NULL,
    created_at datetime(6) NOT NULL,
    doc json NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;""",
    ]
    lo, end = start + 1, start + rows
    while lo <= end:
        hi = min(end, lo + batch - 1)
        out.append(
            "INSERT INTO events (id, hash, body, created_at, doc) SELECT s.seq, MD5(s.seq), "
            "CONCAT(a.t, ' ', b.t), "
            "TIMESTAMP'2021-01-01 00:00:00' + INTERVAL (s.seq * 13000000 + FLOOR(RAND() * 13000000)) MICROSECOND, "
            f"JSON_OBJECT('user', 1 + FLOOR(RAND() * 1000000), 'source', {pick(SOURCES)}, "
            "'qty', 1 + FLOOR(RAND() * 40), 'price', ROUND(RAND() * 500, 2), "
            f"'tags', JSON_ARRAY({pick(TAGS)}, {pick(TAGS)}), 'paid', IF(RAND() < 0.8, true, false)) "
            f"FROM seq_{lo}_to_{hi} s "
            f"JOIN bench_phrases a ON a.i = (s.seq * {STRIDE_A}) % {PHRASES} "
            f"JOIN bench_phrases b ON b.i = (s.seq * {STRIDE_B} + 1) % {PHRASES};"
        )
        lo = hi + 1
    out.append("DROP TABLE bench_phrases, bench_picks, bench_vocab;")
    return "\n".join(out) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("engine", choices=["postgres", "mariadb"])
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--start", type=int, default=0, help="ids start after this one")
    p.add_argument("--batch", type=int, default=100000, help="MariaDB rows per INSERT (one transaction each)")
    a = p.parse_args()
    if a.rows < 1 or a.start < 0 or a.batch < 1:
        p.error("--rows and --batch must be positive, --start non-negative")
    configure(a.engine)
    sys.stdout.write(postgres(a.rows, a.start) if a.engine == "postgres" else mariadb(a.rows, a.start, a.batch))


if __name__ == "__main__":
    main()
