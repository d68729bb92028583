"""Tests for p2d.review: the server's checks (token, host, paths, bad requests), saving boxes with a version
check, Apply through crop-drawings, and that what the page saved gives the same manifest as the command."""

from __future__ import annotations

import http.client
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import DATA
from p2d.cli import app
from p2d.curate.drawings import SETTINGS_NAME, read_hand_boxes
from p2d.manifest import read_manifest
from p2d.review.drawings import status_of, validate_box
from p2d.review.server import ReviewApp, serve_in_thread

TILTED = "happy_woman_dirk_struve_01.png"  # no face found upright: a proposal (see test_drawings)
FOUND = ["adult_astrid_graeber_01.png", "card_figure_king_nicu_r.png"]


def make_drawings(root: Path) -> Path:
    """A raw folder of bundled drawings: two faces found, a tilted head with a proposal, a fire engine."""
    raw = root / "raw"
    raw.mkdir(parents=True)
    for name in [*FOUND, TILTED]:
        shutil.copy(DATA / "drawings" / name, raw / name)
    shutil.copy(DATA / "nonfaces" / "fire_engine_mimooh_01.png", raw / "engine.png")
    return raw


@pytest.fixture(scope="module")
def cropped(tmp_path_factory) -> tuple[Path, Path]:
    """(raw, out) after `p2d crop-drawings raw out`; tests copy `out` before changing it."""
    root = tmp_path_factory.mktemp("review")
    raw = make_drawings(root)
    r = CliRunner().invoke(app, ["crop-drawings", str(raw), str(root / "out")])
    assert r.exit_code == 0, r.output
    return raw, root / "out"


def copy_folder(raw: Path, out: Path, to: Path) -> Path:
    """A copy of a crop-drawings folder and its drawings, its settings pointed at the copies."""
    shutil.copytree(raw, to / "raw")
    shutil.copytree(out, to / "out")
    settings = json.loads((to / "out" / SETTINGS_NAME).read_text())
    settings.update(raw=str(to / "raw"), manifest=str(to / "out" / "manifest.csv"))
    (to / "out" / SETTINGS_NAME).write_text(json.dumps(settings))
    return to / "out"


@pytest.fixture()
def served(cropped, tmp_path):
    raw, out = cropped
    work = copy_folder(raw, out, tmp_path)
    review = ReviewApp(work, token="secret-token")
    server, url = serve_in_thread(review)
    yield review, server, work
    server.shutdown()
    server.server_close()


def request(server, method: str, path: str, body=None, token: str | None = "secret-token",
            headers: dict | None = None) -> tuple[int, object]:
    """(status, JSON or bytes) for a raw request: the path is sent exactly as given."""
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=60)
    sent = {"Host": f"{host}:{port}", **(headers or {})}
    if token:
        sent["X-P2D-Token"] = token
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent.setdefault("Content-Type", "application/json")
    conn.request(method, path, body=data, headers=sent)
    response = conn.getresponse()
    raw = response.read()
    conn.close()
    if response.getheader("Content-Type") == "application/json":
        return response.status, json.loads(raw)
    return response.status, raw


def state(server) -> dict:
    status, data = request(server, "GET", "/api/state")
    assert status == 200, data
    return data


def by_name(data: dict) -> dict[str, dict]:
    return {x["name"]: x for x in data["drawings"]["items"]}


# ----------------------------------------------------------------------------- pure


@pytest.mark.parametrize("box,why", [
    ([1, 2, 3], "four numbers"), ([0, 0, -5, 10], "positive"), ([0, 0, 10, 0], "positive"),
    (["a", 0, 1, 1], "four numbers"), ([500, 500, 10, 10], "outside"), ([-50, 0, 10, 10], "outside"),
    ([0, 0, float("inf"), 1], "finite"), ("0,0,1,1", "four numbers"),
])
def test_validate_box_refuses(box, why):
    with pytest.raises(Exception, match=why):
        validate_box(box, 200, 100)


def test_status_order_puts_the_work_first():
    row = {"keep": False, "reason": "no_face", "detector": "", "proposal": ""}
    assert status_of(row, "") == "none"
    assert status_of({**row, "proposal": "1 2 3 4"}, "") == "proposed"
    assert status_of({**row, "keep": True, "reason": "", "detector": "yunet", "votes": 1}, "") == "low"
    kept = {**row, "keep": True, "reason": "", "detector": "dlib_hog", "votes": 2}
    assert status_of({**kept, "facing": "unknown"}, "") == "facing"
    assert status_of({**kept, "facing": "left", "facing_from": "cnn"}, "") == "ok"
    assert status_of({**kept, "detector": "hand"}, "") == "hand"
    assert status_of(row, "two faces") == "rejected"


# ----------------------------------------------------------------------------- what the server serves


def test_state_lists_every_drawing_with_its_status(served):
    _, server, _ = served
    items = by_name(state(server))
    assert set(items) == {*FOUND, TILTED, "engine.png"}
    assert items[TILTED]["status"] == "proposed" and len(items[TILTED]["proposal"]) == 4
    assert items[FOUND[0]]["keep"] and items[FOUND[0]]["box"] and items[FOUND[0]]["crop_version"]
    assert items["engine.png"]["status"] in ("none", "proposed")


def test_images_and_page(served):
    _, server, _ = served
    status, page = request(server, "GET", "/?token=secret-token", token=None)
    assert status == 200 and b"review.js" in page
    assert request(server, "GET", "/static/review.js", token=None)[0] == 200  # static: no token needed
    for path in ("/img/drawing/0?size=160", "/img/drawing/0?size=720", "/img/drawing/0"):
        status, data = request(server, "GET", path)
        assert status == 200 and len(data) > 100, path
    kept = next(x for x in state(server)["drawings"]["items"] if x["crop_version"])
    status, data = request(server, "GET", f"/img/crop/{kept['id']}")
    assert status == 200 and data[:4] == b"\x89PNG"
    assert request(server, "GET", "/file/manifest.csv")[0] == 200


@pytest.mark.parametrize("path", [
    "/file/../../../../etc/passwd", "/file/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/file/..%2f..%2fetc%2fpasswd",
    "/file//etc/passwd", "/file/%2Fetc%2Fpasswd", "/img/drawing/../../etc/passwd", "/img/drawing/-1",
    "/img/drawing/999", "/img/drawing/abc", "/img/crop/999", "/file/outside_link",
    "/file/..\\..\\etc\\passwd",
    "/static/../manifest.csv", "/static/secret.py", "/nothing/here", "/img/drawing/0?size=99999",
])
def test_nothing_outside_the_folder_is_served(served, tmp_path, path):
    _, server, work = served
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the page")
    (work / "outside_link").symlink_to(secret)
    status, data = request(server, "GET", path)
    assert 400 <= status < 500, (path, status)
    assert b"not for the page" not in (data if isinstance(data, bytes) else json.dumps(data).encode())
    assert request(server, "GET", "/api/state")[0] == 200  # still serving


def test_token_and_host_are_required(served):
    _, server, _ = served
    assert request(server, "GET", "/api/state", token=None)[0] == 403
    assert request(server, "GET", "/api/state", token="wrong")[0] == 403
    assert request(server, "GET", "/img/drawing/0", token=None)[0] == 403
    assert request(server, "POST", "/api/drawings/save", {"edits": {}}, token=None)[0] == 403
    status, data = request(server, "GET", "/api/state", headers={"Host": "evil.example:80"})
    assert status == 403 and "Host" in data["error"]


def test_bad_requests_get_a_4xx_with_a_message(served):
    _, server, work = served
    before = (work / "manifest.csv").read_bytes()
    tilted = by_name(state(server))[TILTED]["rel"]
    cases = [
        (b"{not json", 400, "JSON"), (b"[1, 2]", 400, "object"),
        ({"edits": {"no/such.png": {"box": [1, 1, 5, 5]}}}, 400, "not a drawing"),
        ({"edits": {tilted: {"box": [1, 1, -5, 5]}}}, 400, "positive"),
        ({"edits": {tilted: {"box": [9000, 9000, 5, 5]}}}, 400, "outside"),
        ({"edits": {tilted: {"box": [1, 1, 5, 5], "view": "upside"}}}, 400, "view"),
        ({"edits": {tilted: {"box": [1, 1, 5, 5], "drop": "and a box"}}}, 400, "not both"),
        ({"edits": "everything"}, 400, "object"),
    ]
    for body, code, words in cases:
        status, data = request(server, "POST", "/api/drawings/save", body)
        assert status == code and words in data["error"], (body, status, data)
    status, data = request(server, "POST", "/api/drawings/save", b"{}",
                           headers={"Content-Type": "text/plain"})
    assert status == 415
    assert request(server, "POST", "/api/nothing/here", {})[0] in (400, 404)
    assert not (work / "boxes.csv").exists() and (work / "manifest.csv").read_bytes() == before
    assert request(server, "GET", "/api/state")[0] == 200


def test_two_tabs_a_stale_save_gets_409(served):
    _, server, work = served
    data = state(server)
    tilted = by_name(data)[TILTED]
    edit = {tilted["rel"]: {"box": tilted["proposal"], "view": "frontal"}}
    status, first = request(server, "POST", "/api/drawings/save",
                            {"version": data["drawings"]["version"], "edits": edit})
    assert status == 200 and first["version"]
    status, data2 = request(server, "POST", "/api/drawings/save",
                            {"version": data["drawings"]["version"], "edits": edit})
    assert status == 409 and "reload" in data2["error"]
    assert read_hand_boxes(work / "boxes.csv").views == {tilted["rel"]: "frontal"}


def test_save_apply_equals_the_command_with_boxes(served):
    """What the page saves and applies is what `crop-drawings --boxes boxes.csv` gives from scratch."""
    _, server, work = served
    raw = work.parent / "raw"
    data = state(server)
    items = by_name(data)
    found = items[FOUND[0]]
    edits = {
        items[TILTED]["rel"]: {"box": items[TILTED]["proposal"]},  # a proposal accepted
        items["engine.png"]["rel"]: {"drop": "a fire engine"},  # no face, with a reason
        found["rel"]: {"view": "left"},  # a facing on a found face keeps its box
    }
    status, saved = request(server, "POST", "/api/drawings/save",
                            {"version": data["drawings"]["version"], "edits": edits})
    assert status == 200, saved
    status, applied = request(server, "POST", "/api/drawings/apply", {})
    assert status == 200, applied
    after = by_name(applied)
    assert after[TILTED]["status"] == "hand" and after[TILTED]["keep"] and after[TILTED]["crop_version"]
    assert after["engine.png"]["status"] == "rejected"
    df = read_manifest(work / "manifest.csv")
    rows = {Path(p).name: r for p, r in zip(df["source_path"], df.to_dict("records"))}
    assert rows[TILTED]["detector"] == "hand" and rows[TILTED]["keep"]
    assert rows[FOUND[0]]["detector"] == "hand" and rows[FOUND[0]]["facing"] == "left"
    assert not rows["engine.png"]["keep"] and rows["engine.png"]["reason"] == "rejected:a fire engine"
    applied_bytes = (work / "manifest.csv").read_bytes()
    r = CliRunner().invoke(app, ["crop-drawings", str(raw), str(work), "--boxes", str(work / "boxes.csv")])
    assert r.exit_code == 0, r.output
    assert (work / "manifest.csv").read_bytes() == applied_bytes
    # a second save keeps the previous boxes file
    status, _ = request(server, "POST", "/api/drawings/save",
                        {"version": saved["version"], "edits": {items[TILTED]["rel"]: None}})
    assert status == 200
    assert items[TILTED]["rel"] in (work / "boxes.prev.csv").read_text()
    assert items[TILTED]["rel"] not in (work / "boxes.csv").read_text()


# ----------------------------------------------------------------------------- photos and duplicates


def make_photos(root: Path) -> Path:
    """A photo folder curated with the smile and outlier filters: a smiling astronaut (dropped), a neutral
    boy (kept), a fire engine (no face)."""
    from PIL import Image

    from p2d.curate.photos import curate_photos
    from p2d.curate.pipeline import CurateOptions

    raw = root / "photos_in"
    raw.mkdir(parents=True)
    shutil.copy(DATA / "photos" / "astronaut.png", raw / "astronaut.png")
    boy = Image.open(DATA / "photos" / "a_youngster_01.png")  # half size keeps detection fast
    boy.resize((boy.width // 2, boy.height // 2), Image.LANCZOS).save(raw / "boy.png")
    shutil.copy(DATA / "nonfaces" / "fire_engine_mimooh_01.png", raw / "engine.png")
    curate_photos(raw, root / "photos", CurateOptions(source="mine", drop_smiles=True, drop_outliers=True))
    return root / "photos"


@pytest.fixture(scope="module")
def photos_once(tmp_path_factory) -> Path:
    return make_photos(tmp_path_factory.mktemp("review-photos"))


@pytest.fixture()
def photos_served(photos_once, tmp_path):
    folder = Path(shutil.copytree(photos_once, tmp_path / "photos"))
    shutil.copytree(photos_once.parent / "photos_in", tmp_path / "photos_in")  # source_path is relative
    server, _ = serve_in_thread(ReviewApp(folder, token="secret-token"))
    yield server, folder
    server.shutdown()
    server.server_close()


def test_photos_show_each_drop_with_its_measure_and_take_an_override(photos_served):
    server, folder = photos_served
    data = state(server)
    assert data["sections"][:1] == ["photos"] and "drawings" not in data
    items = {Path(p["path"]).name: p for p in data["photos"]["items"]}
    astronaut = items["astronaut.png"]
    assert astronaut["reason"] == "smile" and not astronaut["keep"]
    assert astronaut["column"] == "smile_score" and astronaut["value"] > astronaut["threshold"]
    assert "smile_score" in astronaut["rule"] and items["boy.png"]["keep"]
    assert request(server, "GET", f"/img/photo/{astronaut['id']}?size=160")[0] == 200
    assert request(server, "GET", f"/img/photo/{astronaut['id']}?which=source")[0] == 200
    version = data["photos"]["version"]
    status, after = request(server, "POST", "/api/photos/override",
                            {"version": version,
                             "changes": {astronaut["path"]: "keep", items["boy.png"]["path"]: "drop"}})
    assert status == 200, after
    rows = {Path(p).name: r for p, r in zip(*(lambda df: (df["path"], df.to_dict("records")))(
        read_manifest(folder / "manifest.csv")))}
    assert rows["astronaut.png"]["keep"] and rows["astronaut.png"]["override"] == "keep"
    assert not rows["boy.png"]["keep"] and rows["boy.png"]["reason"] == "override"
    assert "astronaut" in (folder / "overrides.csv").read_text()
    # the other tab, still on the old version, is told to reload
    status, data = request(server, "POST", "/api/photos/override", {"version": version, "changes": {}})
    assert status == 409
    # a keep that cannot be honoured, and bad changes, are refused with a message
    for changes in ({items["engine.png"]["path"]: "keep"}, {astronaut["path"]: "maybe"}, "keep all"):
        status, data = request(server, "POST", "/api/photos/override",
                               {"version": after["photos"]["version"], "changes": changes})
        assert status == 400 and data["error"], changes


def test_a_wrong_duplicate_group_is_split_and_stays_split(tmp_path):
    raw = tmp_path / "artist"
    raw.mkdir()
    shutil.copy(DATA / "drawings" / FOUND[0], raw / "a.png")
    shutil.copy(DATA / "drawings" / FOUND[0], raw / "b.png")  # the same drawing saved twice
    shutil.copy(DATA / "drawings" / FOUND[1], raw / "c.png")
    out = tmp_path / "scaled"
    for argv in (["scale", str(raw), str(out)], ["dedup", str(out / "manifest.csv")]):
        r = CliRunner().invoke(app, argv)
        assert r.exit_code == 0, r.output
    server, _ = serve_in_thread(ReviewApp(out, token="secret-token"))
    try:
        data = state(server)
        assert data["sections"] == ["duplicates"]
        [group] = data["duplicates"]["groups"]
        keeper, member = group["members"]
        assert keeper["similarity"] is None and member["similarity"] > 0.99
        assert request(server, "GET", "/img/dup/1?size=160")[0] == 200
        status, after = request(server, "POST", "/api/duplicates/split",
                                {"version": data["duplicates"]["version"], "path": member["path"]})
        assert status == 200, after
        assert after["duplicates"]["groups"] == []
        status, _ = request(server, "POST", "/api/duplicates/split",
                            {"version": data["duplicates"]["version"], "path": member["path"]})
        assert status == 409
    finally:
        server.shutdown()
        server.server_close()
    r = CliRunner().invoke(app, ["dedup", str(out / "manifest.csv")])  # dedup again: still apart
    assert r.exit_code == 0
    assert read_manifest(out / "manifest.csv")["keep"].all()


def test_learn_proposes_boxes_for_the_drawings_left_without_a_face(tmp_path):
    """Trained on six hand boxes, the learned detector proposes boxes on held-out drawings of the same
    clip-art styles (nothing is kept until the user accepts them)."""
    from p2d.curate.drawings import read_boxes
    from p2d.drawings.detect import iou

    known = read_boxes(Path(__file__).parent / "data" / "drawing_face_boxes.csv")
    names = sorted(k for k in known if k.startswith("drawings/"))[:9]
    held_out = names[0::3]
    raw = tmp_path / "raw"
    raw.mkdir()
    for k in names:
        shutil.copy(DATA / k, raw / Path(k).name)
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("path,x,y,w,h,view\n" + "".join(
        f"{Path(k).name},{','.join(map(str, known[k]))},frontal\n" for k in names if k not in held_out))
    out = tmp_path / "out"
    # one cheap detector that finds none of these frontal faces: the held-out drawings are left to Learn
    r = CliRunner().invoke(app, ["crop-drawings", str(raw), str(out), "--boxes", str(boxes),
                                 "--detector", "haar_profile", "--no-rotate"])
    assert r.exit_code == 0, r.output
    server, _ = serve_in_thread(ReviewApp(out, token="secret-token"))
    try:
        status, data = request(server, "POST", "/api/drawings/learn", {})
        assert status == 200, data
        learned = data["learned"]
        assert learned["trained_on"] == 6 and learned["searched"] >= 2
        items = {x["name"]: x for x in data["drawings"]["items"]}
        hits = [k for k in held_out if items[Path(k).name]["proposal_from"] == "learned"
                and iou(tuple(items[Path(k).name]["proposal"]), known[k]) >= 0.3]
        assert len(hits) >= 1 and learned["proposed"] >= len(hits)
        assert not any(items[Path(k).name]["keep"] for k in hits)  # proposals only
    finally:
        server.shutdown()
        server.server_close()


def test_an_interrupted_apply_leaves_every_file_whole_and_the_next_continues(cropped, tmp_path, monkeypatch):
    import p2d.curate.drawings as drawings_module
    from p2d.review.drawings import DrawingsFolder

    raw, out = cropped
    work = copy_folder(raw, out, tmp_path)
    folder = DrawingsFolder(work)
    items = {x["name"]: x for x in folder.items}
    edits = {items[n]["rel"]: {"box": [10, 10, 60, 60], "view": "frontal"} for n in (TILTED, FOUND[0])}
    folder.save(edits, folder.version)
    before = (work / "manifest.csv").read_bytes()
    boxes = (work / "boxes.csv").read_bytes()
    real, calls = drawings_module.write_image, []

    def ctrl_c_on_the_second(*args, **kwargs):  # Ctrl-C between two crops
        calls.append(args[0])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(drawings_module, "write_image", ctrl_c_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        folder.apply()
    monkeypatch.setattr(drawings_module, "write_image", real)
    assert (work / "manifest.csv").read_bytes() == before and (work / "boxes.csv").read_bytes() == boxes
    assert not list(work.glob(".*.tmp*"))  # no half-written file left behind
    folder.apply()  # run again: it continues
    df = read_manifest(work / "manifest.csv")
    hand = df[df["detector"] == "hand"]
    assert len(hand) == 2 and hand["keep"].all() and (hand["facing"] == "frontal").all()


def test_review_command_prints_the_url_and_stops_on_ctrl_c(cropped, tmp_path, monkeypatch):
    """The CLI's wiring only: the server is replaced at the edge by one that is interrupted at once."""
    import webbrowser

    import p2d.review.server as server_module

    raw, out = cropped
    work = copy_folder(raw, out, tmp_path)
    opened, made = [], []

    class Interrupted:
        server_address = ("127.0.0.1", 8765)

        def serve_forever(self):
            raise KeyboardInterrupt

        def server_close(self):
            made.append("closed")

    def fake_make_server(app_, port=0):
        made.append(port)
        return Interrupted()

    monkeypatch.setattr(server_module, "make_server", fake_make_server)
    monkeypatch.setattr(webbrowser, "open", opened.append)
    r = CliRunner().invoke(app, ["review", str(work), "--port", "8765", "--no-browser"])
    assert r.exit_code == 0, r.output
    assert made == [8765, "closed"] and opened == []
    assert "http://127.0.0.1:8765/?token=" in r.output.replace("\n", "")
    r = CliRunner().invoke(app, ["review", str(work)])
    assert r.exit_code == 0 and len(opened) == 1 and opened[0].startswith("http://127.0.0.1:8765/?token=")
    r = CliRunner().invoke(app, ["review", str(tmp_path)])
    assert r.exit_code == 1 and "no manifest.csv" in " ".join(r.output.split())


def test_an_experiment_manifest_shows_its_groups_and_a_split_reaches_its_sources(tmp_path):
    """A duplicate found only across sources, at `manifest build`: split on the experiment manifest's page,
    the next build keeps both."""
    from PIL import Image

    for name in ("artist", "other"):
        (tmp_path / name).mkdir()
    shutil.copy(DATA / "drawings" / FOUND[0], tmp_path / "artist" / "a.png")
    Image.open(DATA / "drawings" / FOUND[0]).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(
        tmp_path / "other" / "b.png")
    shutil.copy(DATA / "drawings" / FOUND[1], tmp_path / "other" / "c.png")
    recipe = tmp_path / "manifests" / "exp.toml"
    recipe.parent.mkdir()
    shutil.copy(Path(__file__).resolve().parent.parent / "p2d" / "recipes" / "tiny.toml", recipe)
    build = ["manifest", "build", "--recipe", str(recipe), "--from", str(tmp_path / "s1" / "manifest.csv"),
             "--from", str(tmp_path / "s2" / "manifest.csv"), "--test-count", "0", "--no-inspect"]
    for argv in (["scale", str(tmp_path / "artist"), str(tmp_path / "s1")],
                 ["scale", str(tmp_path / "other"), str(tmp_path / "s2")], build):
        r = CliRunner().invoke(app, argv)
        assert r.exit_code == 0, r.output
    experiment = tmp_path / "manifests" / "exp.csv"
    assert read_manifest(experiment)["reason"].str.startswith("dup_of:").sum() == 1
    server, _ = serve_in_thread(ReviewApp(experiment, token="secret-token"))
    try:
        data = state(server)
        [group] = data["duplicates"]["groups"]
        assert request(server, "GET", "/img/dup/0?size=160")[0] == 200  # the source folder's image
        status, after = request(server, "POST", "/api/duplicates/split",
                                {"version": data["duplicates"]["version"],
                                 "path": group["members"][1]["path"]})
        assert status == 200 and after["duplicates"]["groups"] == [], after
    finally:
        server.shutdown()
        server.server_close()
    r = CliRunner().invoke(app, build)
    assert r.exit_code == 0, r.output
    assert read_manifest(experiment)["keep"].all()


def test_opening_a_folder_loads_no_torch(cropped, tmp_path):
    """The review page starts fast: reading a crop-drawings folder imports no torch (nor p2d.train)."""
    import subprocess
    import sys

    raw, out = cropped
    work = copy_folder(raw, out, tmp_path)
    code = (f"from p2d.review.server import ReviewApp\nReviewApp({str(work)!r}).sections.state()\n"
            "import sys; print(' '.join(sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.split()
    assert "p2d.review.drawings" in loaded and "torch" not in loaded and "p2d.train" not in loaded
