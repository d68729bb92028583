"""P2DError: the one exception the CLI turns into a clean message (which names the fix)."""


class P2DError(Exception):
    """A problem the user can fix; the message says how."""


class ModelFileMissing(P2DError):
    """A dlib model file could not be found."""


class ManifestError(P2DError):
    """A manifest is missing, unreadable or invalid."""


class RecipeError(P2DError):
    """A recipe (training settings) is missing or has a bad key or value."""


class VersionConflict(P2DError):
    """A review file changed since the caller read it (another tab saved first): reload, then retry."""
