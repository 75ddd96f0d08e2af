"""Local story images: `image: {path: images/night-train.jpg, alt: ...}` beside the issue file.

The file is read once when the issue loads (Pillow identifies the format and pixel size). It is
published under a name that carries a hash of its bytes (`night-train-3f9a0c21d4.jpg`), so an
edited image never hides behind a cached old one, and the email references it at
`<base_url>/issues/<slug>/<name>` with width and height attributes: `build` copies it into
`build/<slug>/`, `serve` answers that URL for a published issue, and the preview serves it
itself. `check` warns about files above 1 MB and images wider than twice the rendered width.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

RENDERED_WIDTH = 544  # CSS px: the 600 px email minus the story card's 28 px side padding
SHARP_FACTOR = 2  # high-density screens use 2 image pixels per CSS pixel; more is wasted
MAX_BYTES = 1_000_000  # a warning above this: slow on phones, heavy on data plans
MAX_READ = 50_000_000  # refused above this: not an email image
# Pillow's format name -> (media type, file suffix)
FORMATS = {
    "JPEG": ("image/jpeg", ".jpg"),
    "PNG": ("image/png", ".png"),
    "GIF": ("image/gif", ".gif"),
    "WEBP": ("image/webp", ".webp"),
}


@dataclass(frozen=True)
class LocalImage:
    """A local image file as the email uses it."""

    path: Path  # absolute
    name: str  # the published file name
    media_type: str  # image/jpeg, image/png, image/gif or image/webp
    pixel_width: int
    pixel_height: int
    size: int  # bytes

    @property
    def width(self) -> int:
        """Width in CSS px in the email: the rendered width at most."""
        return min(self.pixel_width, RENDERED_WIDTH)

    @property
    def height(self) -> int:
        return max(1, round(self.pixel_height * self.width / self.pixel_width))

    def url(self, base_url: str, slug: str) -> str:
        return f"{base_url}/issues/{slug}/{self.name}"


class ImageProblem(ValueError):
    """Why a local image cannot be used, in a writer's words."""


def read_local_image(issue_path: str | Path, written: str) -> LocalImage:
    """The image at `written` (relative to the issue file's folder); raises ImageProblem."""
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", written):
        raise ImageProblem("is a URL; write it as 'url:' (path: is for a file beside the issue)")
    relative = Path(written)
    if relative.is_absolute():
        raise ImageProblem("must be relative to the issue file's folder, like images/photo.jpg")
    folder = Path(issue_path).resolve().parent
    path = (folder / relative).resolve()  # symlinks followed: where the bytes really are
    root = _project_folder(folder)
    if not path.is_relative_to(root):
        raise ImageProblem(
            f"is outside the project folder {root} (it resolves to {path}): only files inside "
            "it can be published; copy the image into the issue's images/ folder"
        )
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_READ + 1)
    except FileNotFoundError:
        raise ImageProblem(f"does not exist (looked for {path})") from None
    except IsADirectoryError:
        raise ImageProblem(f"is a folder, not an image file ({path})") from None
    except OSError as exc:
        raise ImageProblem(f"cannot be read: {exc.strerror} ({path})") from None
    if len(data) > MAX_READ:
        raise ImageProblem(f"is larger than {MAX_READ // 1_000_000} MB; no email image should be")
    return _identify(path, data)


def _project_folder(issue_folder: Path) -> Path:
    """The folder of the newsletter.yaml above the issue, else the issue's own folder: `serve`
    publishes these files, so none may come from elsewhere (`../../etc`, a symlink out)."""
    from newsletter.config import find_config

    config = find_config(issue_folder)
    return config.parent.resolve() if config is not None else issue_folder


def _identify(path: Path, data: bytes) -> LocalImage:
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()  # a truncated or corrupt file fails here, not in a reader's inbox
            kind, (width, height) = image.format or "", image.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        detail = "not an image file" if isinstance(exc, UnidentifiedImageError) else str(exc)
        raise ImageProblem(f"is not a usable image ({detail})") from None
    if kind not in FORMATS:
        raise ImageProblem(
            f"is a {kind} image; mail clients show JPEG, PNG, GIF (and WebP): "
            "export it as one of those"
        )
    media_type, suffix = FORMATS[kind]
    stem = re.sub(r"[^a-z0-9]+", "-", path.stem.lower()).strip("-")[:60] or "image"
    digest = hashlib.sha256(data).hexdigest()[:10]
    return LocalImage(path, f"{stem}-{digest}{suffix}", media_type, width, height, len(data))


def size_warnings(image: LocalImage) -> list[str]:
    """What `check` says about an image that works but costs readers more than it should."""
    found = []
    if image.size > MAX_BYTES:
        found.append(
            f"{image.path.name} is {image.size / 1_000_000:.1f} MB; above 1 MB it loads slowly "
            "on phones: compress it (a JPEG at quality 80 is usually enough)"
        )
    if image.pixel_width > SHARP_FACTOR * RENDERED_WIDTH:
        found.append(
            f"{image.path.name} is {image.pixel_width} px wide; the email shows it "
            f"{RENDERED_WIDTH} px wide, so {SHARP_FACTOR * RENDERED_WIDTH} px is sharp even on "
            "high-density screens: scale it down"
        )
    return found


def written_image_paths(issue_path: str | Path) -> list[Path]:
    """Every local image file the issue names, existing or not (the preview watches them, so
    adding a missing one or editing one rebuilds at once); [] when the YAML does not parse."""
    from newsletter.yamlsource import YamlInvalid, read_yaml

    try:
        data = read_yaml(issue_path, keep_going=True).data
    except YamlInvalid:
        return []
    stories = data.get("stories") if isinstance(data, dict) else None
    folder = Path(issue_path).resolve().parent
    found = []
    for story in stories if isinstance(stories, list) else []:
        image = story.get("image") if isinstance(story, dict) else None
        written = image.get("path") if isinstance(image, dict) else None
        if isinstance(written, str) and written.strip() and not Path(written).is_absolute():
            found.append((folder / written.strip()).resolve())
    return found
