-- Team memory (issue 17 item 4, docs/security.md §16): this device's
-- mirror of the mesh's memory notes, which the broker stores sealed and
-- cannot read. A note is kept here opened (plaintext, like the inbox) once
-- this device verified its author's signature and certificate against its
-- verified roster and opened it with the coordination key of its epoch.
--
-- `memory_notes`: one row per note id of a mesh. `text` and `tags` (a JSON
-- array of lowercase tags) are NULL while the note cannot be opened yet (no
-- coordination key of its epoch on this device); its verified object is
-- then kept in `object` (the wire JSON) and tried again on every sync.
-- `cseq` is the position of the change in the mesh's coordination feed that
-- this row reflects. `epoch` is the mesh epoch whose key seals it.
--
-- `memory_fts`: an FTS5 index over the opened text and tags, with the
-- notes table as its external content, kept in step by the triggers below.
--
-- `coord_heads`: per mesh and kind of coordination object, the feed
-- position this device has applied up to (the next `coord_sync.after`).

CREATE TABLE memory_notes (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    mesh_id   TEXT NOT NULL,
    note_id   TEXT NOT NULL,
    author    TEXT NOT NULL,
    session   TEXT NOT NULL,
    epoch     INTEGER NOT NULL,
    at_ms     INTEGER NOT NULL,
    cseq      INTEGER NOT NULL,
    text      TEXT,
    tags      TEXT,
    object    TEXT,
    UNIQUE (mesh_id, note_id)
);
CREATE INDEX memory_notes_at ON memory_notes (mesh_id, at_ms);
CREATE INDEX memory_notes_pending ON memory_notes (mesh_id) WHERE text IS NULL;

CREATE VIRTUAL TABLE memory_fts USING fts5(
    text,
    tags,
    content = 'memory_notes',
    content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TRIGGER memory_notes_ai AFTER INSERT ON memory_notes BEGIN
    INSERT INTO memory_fts (rowid, text, tags) VALUES (new.id, new.text, new.tags);
END;
CREATE TRIGGER memory_notes_ad AFTER DELETE ON memory_notes BEGIN
    INSERT INTO memory_fts (memory_fts, rowid, text, tags)
        VALUES ('delete', old.id, old.text, old.tags);
END;
CREATE TRIGGER memory_notes_au AFTER UPDATE ON memory_notes BEGIN
    INSERT INTO memory_fts (memory_fts, rowid, text, tags)
        VALUES ('delete', old.id, old.text, old.tags);
    INSERT INTO memory_fts (rowid, text, tags) VALUES (new.id, new.text, new.tags);
END;

CREATE TABLE coord_heads (
    mesh_id TEXT NOT NULL,
    kind    TEXT NOT NULL,
    head    INTEGER NOT NULL,
    PRIMARY KEY (mesh_id, kind)
) WITHOUT ROWID;
