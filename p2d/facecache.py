"""JSON-lines caches, append-only: the landmark/feature cache of a photo curation run (OUT/cache/) and of
`p2d inspect`.

Each analysed image gets one line (its detections, 68 landmarks and features), keyed by its name,
its file signature (size, mtime) and the analysis method; each written output gets one line (file,
size, crop, phash). Lines are appended as results arrive, so an interrupted run keeps everything it
finished; a half-written last line is ignored on reading. A re-run with other thresholds finds every
analysis here and recomputes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

from p2d.images import write_text_atomic

CACHE_VERSION = 1


def file_signature(path: Path) -> list[int] | None:
    """(size, mtime_ns) of a file: when either changes the cached analysis is stale."""
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _read_lines(path: Path) -> tuple[dict[str, dict], int]:
    """name -> last record (later lines win); also the number of lines read."""
    records: dict[str, dict] = {}
    n = 0
    if not path.is_file():
        return records, 0
    with path.open("r", encoding="utf-8") as fh:
        for line in fh:
            n += 1
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by an interrupted run
            if isinstance(rec, dict) and rec.get("v") == CACHE_VERSION and "name" in rec:
                records[rec["name"]] = rec
    return records, n


def _last_byte(path: Path) -> bytes:
    if not path.is_file() or path.stat().st_size == 0:
        return b""
    with path.open("rb") as fh:
        fh.seek(-1, 2)
        return fh.read(1)


class _Log:
    """One append-only JSON-lines file mirrored by a dict."""

    def __init__(self, path: Path):
        self.path = path
        self.records, self.lines = _read_lines(path)
        self._fh = None

    def add(self, rec: dict) -> None:
        rec = {"v": CACHE_VERSION, **rec}
        self.records[rec["name"]] = rec
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            needs_newline = _last_byte(self.path) not in (b"", b"\n")
            self._fh = self.path.open("a", encoding="utf-8")
            if needs_newline:
                self._fh.write("\n")  # finish a line an interrupted run left half-written
        self._fh.write(json.dumps(rec, separators=(",", ":")) + "\n")
        self.lines += 1

    def drop(self, name: str) -> None:
        self.records.pop(name, None)

    def flush(self) -> None:
        if self._fh is not None:
            self._fh.flush()

    def close(self, compact: bool = True) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if compact and self.lines > len(self.records):
            # Superseded lines (re-analysed or re-written images) are dropped, atomically.
            text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in self.records.values())
            write_text_atomic(self.path, text)
            self.lines = len(self.records)


class FaceCache:
    """Analyses (landmarks.jsonl) and written outputs (outputs.jsonl) of one output folder."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.analyses = _Log(self.folder / "landmarks.jsonl")
        self.outputs = _Log(self.folder / "outputs.jsonl")

    def analysis(self, name: str, signature: list[int] | None, method: str) -> dict | None:
        rec = self.analyses.records.get(name)
        if rec and signature is not None and rec.get("sig") == signature and rec.get("method") == method:
            return rec
        return None

    def output(self, name: str) -> dict | None:
        return self.outputs.records.get(name)

    def flush(self) -> None:
        self.analyses.flush()
        self.outputs.flush()

    def close(self, compact: bool = True) -> None:
        self.analyses.close(compact)
        self.outputs.close(compact)
