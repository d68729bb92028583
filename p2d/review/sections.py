"""What the review page shows of a folder: drawings (a crop-drawings folder), photos (a curate folder) and
duplicate groups, each read from and written to the files the p2d commands themselves read."""

from __future__ import annotations

import csv
from pathlib import Path

from p2d.errors import P2DError


class Sections:
    """The sections of one folder, routed by name: `state()` for the page, `act()` for its buttons."""

    def __init__(self, folder: Path, drawings=None, photos: bool = False, duplicates: bool = False,
                 manifest: Path | None = None):
        self.folder = folder
        self.manifest = manifest or folder / "manifest.csv"  # an experiment manifest is named itself
        self.drawings = drawings
        self.photos = photos
        self.duplicates = duplicates
        self.photo_items: list[dict] = []
        self.groups: list[dict] = []
        self.reload_photos()

    def reload_photos(self) -> None:
        from p2d.curate.overrides import duplicate_groups, overrides_version, photo_review_items

        self.photo_items = photo_review_items(self.folder) if self.photos else []
        self.photos_version = overrides_version(self.manifest)  # photos and duplicates share it
        self.groups = duplicate_groups(self.manifest) if self.duplicates else []

    def state(self) -> dict:
        out = {"folder": str(self.manifest if self.manifest.name != "manifest.csv" else self.folder),
               "sections": []}
        if self.drawings is not None:
            out["sections"].append("drawings")
            out["drawings"] = self.drawings.state()
        if self.photos:
            out["sections"].append("photos")
            out["photos"] = {"items": [_photo_for_page(i, x) for i, x in enumerate(self.photo_items)],
                             "version": self.photos_version}
        out["sections"].append("duplicates")
        out["duplicates"] = {"groups": [_group_for_page(g) for g in self.groups],
                             "version": self.photos_version}
        return out

    def act(self, section: str, action: str, body: dict) -> dict:
        from p2d.curate.overrides import save_overrides, split_duplicate

        if section == "drawings" and self.drawings is not None:
            if action == "save":
                return {"version": self.drawings.save(body.get("edits"), body.get("version")), **self.state()}
            if action == "apply":
                return {"applied": self.drawings.apply(), **self.state()}
            if action == "learn":
                return {"learned": self.drawings.learn(), **self.state()}
        if section == "photos" and self.photos and action == "override":
            changes = body.get("changes")
            if not isinstance(changes, dict) or not all(v in ("keep", "drop", None)
                                                        for v in changes.values()):
                raise P2DError("`changes` must map a photo's path to keep, drop or null")
            save_overrides(self.folder, changes, body.get("version"))
            self.reload_photos()
            return self.state()
        if section == "duplicates" and action == "split":
            member = body.get("path")
            if not isinstance(member, str) or not member:
                raise P2DError("`path` must name the member to split off its group")
            split_duplicate(self.manifest, member, body.get("version"))
            self.duplicates = True
            self.reload_photos()
            if self.drawings is not None:
                self.drawings.reload()
            return self.state()
        raise P2DError(f"no action {section}/{action} for this folder")

    def image_path(self, kind: str, number: int, which: str) -> tuple[Path, Path]:
        """(file, the folder it must lie under) for an image the page asks for by number."""
        if kind == "drawing" and self.drawings is not None:
            self.drawings.item(number)
            return Path(self.drawings.sources[number]), self.drawings.raw
        if kind == "crop" and self.drawings is not None and number in self.drawings.crops:
            return Path(self.drawings.crops[number]), self.folder
        if kind == "photo" and 0 <= number < len(self.photo_items):
            item = self.photo_items[number]
            if which == "source" and item.get("source_image"):
                return Path(item["source_image"]), Path(item["source_image"]).parent
            if item.get("image"):
                return Path(item["image"]), self.folder
        if kind == "dup":
            paths = [m["image"] for g in self.groups for m in [g["keeper"], *g["members"]]]
            if 0 <= number < len(paths):  # rows of the manifest itself, wherever their source folder is
                return Path(paths[number]), Path(paths[number]).parent
        raise KeyError(number)


def _photo_for_page(i: int, item: dict) -> dict:
    return {"id": i, **{k: item.get(k) for k in ("path", "keep", "reason", "filter_reason", "override",
                                                 "value", "column", "threshold", "rule", "can_keep")},
            "has_image": bool(item.get("image")), "has_source": bool(item.get("source_image"))}


def _group_for_page(group: dict) -> dict:
    """The keeper first (similarity None), then the members marked its duplicates."""
    return {"keeper": group["keeper"]["path"], "members": [
        {"path": m["path"], "similarity": m.get("similarity")} for m in [group["keeper"], *group["members"]]]}


def open_sections(folder: Path) -> Sections:
    """The sections a folder has: drawings where crop-drawings wrote it, photos where it holds photo rows,
    and the duplicate groups of either."""
    from p2d.curate.drawings import SETTINGS_NAME

    manifest = folder if folder.is_file() and folder.suffix == ".csv" else folder / "manifest.csv"
    if manifest.name != "manifest.csv":  # an experiment manifest (`p2d manifest build`): its duplicate groups
        return Sections(manifest.parent, duplicates=True, manifest=manifest)
    if not manifest.is_file():
        raise P2DError(f"{folder} holds no manifest.csv: give the output folder of `p2d crop-drawings`, "
                       "`p2d curate photos`, `p2d curate celeba` or `p2d scale`")
    drawings = None
    if (folder / SETTINGS_NAME).is_file():
        from p2d.review.drawings import DrawingsFolder

        drawings = DrawingsFolder(folder)
    with open(manifest, newline="", encoding="utf-8") as f:
        rows = [(r.get("domain", ""), r.get("reason", "")) for r in csv.DictReader(f)]
    photos = any(domain == "photo" for domain, _ in rows)
    duplicates = any(reason.startswith("dup_of:") for _, reason in rows)
    return Sections(folder, drawings, photos, duplicates)
