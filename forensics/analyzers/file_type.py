"""file.type: the media type read from the content, against the one the file name claims.

The content type comes from libmagic (python-magic), which reads at most the
first megabyte or so. The type a name claims comes from this module's own
table of extensions (below), not from the machine's mime.types or Python's
mimetypes, whose contents differ between machines and Python versions: the
same analyzer version must give the same findings everywhere.
"""

from __future__ import annotations

import re
import unicodedata
from importlib import metadata

import magic

from .base import AnalysisError, finding

NAME = "file.type"
VERSION = "1.0.0"
TIME_LIMIT = 600  # seconds of wall-clock time per run (CUSTODY_ANALYSIS_TIME_LIMITS overrides)
MEMORY_LIMIT = 1 << 30  # bytes of address space (CUSTODY_ANALYSIS_MEMORY_LIMITS overrides)
ACCEPTS = ["*/*"]
DESCRIPTION = (
    "Media type and description read from the content (libmagic), compared with the type the "
    "file name's extension claims; a mismatch is flagged."
)
LIMITS = [
    "libmagic identifies a type from signatures near the start of the file; it does not validate "
    "the rest. A file that starts like a JPEG is called a JPEG even if it is truncated or has other "
    "data appended (file.structure looks for that).",
    "Formats built on a common container can be reported as the container: an Office document or "
    "an Android package as application/zip, a WebP as RIFF. Such pairs are treated as compatible.",
    "Text types are told apart by heuristics: CSV, JSON or source code can be reported as "
    "text/plain, and any text type is accepted for a text extension.",
    "Only extensions in this analyzer's table are compared; for others, and for names without an "
    "extension, no mismatch can be decided. Generic extensions (.bin, .dat, .raw, .dd, .img...) "
    "claim no type and never mismatch.",
    "Results depend on the libmagic version and its signature database (recorded with the result).",
]
PARAMETERS: dict = {}

_OLE = (
    "application/x-ole-storage",
    "application/CDFV2",
    "application/msword",
    "application/vnd.ms-excel",
    "application/vnd.ms-powerpoint",
    "application/vnd.ms-outlook",
    "application/vnd.ms-office",
)
_OOXML = "application/vnd.openxmlformats-officedocument."
_ODF = "application/vnd.oasis.opendocument."
_ELF = (
    "application/x-executable",
    "application/x-sharedlib",
    "application/x-pie-executable",
    "application/x-object",
    "application/x-coredump",
)
_PE = ("application/vnd.microsoft.portable-executable", "application/x-dosexec", "application/x-msdownload")

# extension -> (the type the extension claims, content types that agree with it)
_TABLE: dict[str, tuple[str, tuple[str, ...]]] = {}
# extensions for text formats: any text/* content agrees with them
_TEXT_EXTENSIONS: set[str] = set()
# extensions that claim no particular format
GENERIC_EXTENSIONS = frozenset(
    {"bin", "dat", "data", "raw", "dd", "img", "mem", "dmp", "001", "tmp", "bak", "out", "part"}
)


def _add(exts: str, claimed: str, *compatible: str, text: bool = False) -> None:
    for ext in exts.split():
        _TABLE[ext] = (claimed, (claimed, *compatible))
        if text:
            _TEXT_EXTENSIONS.add(ext)


# images
_add("jpg jpeg jpe jfif", "image/jpeg")
_add("png", "image/png", "image/apng")
_add("apng", "image/apng", "image/png")
_add("gif", "image/gif")
_add("bmp dib", "image/bmp", "image/x-ms-bmp")
_add("tif tiff", "image/tiff")
_add("webp", "image/webp")
_add("heic heif", "image/heic", "image/heif", "image/heic-sequence", "image/heif-sequence")
_add("avif", "image/avif")
_add("ico", "image/vnd.microsoft.icon", "image/x-icon")
_add("svg", "image/svg+xml", "text/xml", "application/xml", text=True)
_add("psd", "image/vnd.adobe.photoshop")
_add("jp2 j2k", "image/jp2", "image/x-jp2-codestream")
_add(
    "dng cr2 nef arw orf rw2 pef srw", "image/x-raw", "image/tiff", "image/x-canon-cr2", "image/x-olympus-orf"
)
# audio
_add("mp3", "audio/mpeg")
_add("wav", "audio/x-wav", "audio/wav", "audio/vnd.wave")
_add("flac", "audio/flac", "audio/x-flac")
_add("ogg oga", "audio/ogg", "application/ogg", "video/ogg")
_add("opus", "audio/ogg", "application/ogg", "audio/opus")
_add("m4a", "audio/mp4", "audio/x-m4a", "video/mp4")
_add("aac", "audio/aac", "audio/x-hx-aac-adts")
_add("amr", "audio/amr", "audio/AMR")
_add("aif aiff", "audio/x-aiff", "audio/aiff")
_add("wma", "audio/x-ms-wma", "video/x-ms-asf")
_add("mid midi", "audio/midi")
# video
_add("mp4 m4v", "video/mp4", "video/x-m4v", "audio/mp4")
_add("mov qt", "video/quicktime")
_add("avi", "video/x-msvideo")
_add("mkv", "video/x-matroska")
_add("webm", "video/webm")
_add("3gp", "video/3gpp", "audio/3gpp")
_add("wmv asf", "video/x-ms-asf", "video/x-ms-wmv")
_add("flv", "video/x-flv")
_add("mpg mpeg", "video/mpeg")
# documents
_add("pdf", "application/pdf")
_add("doc dot", "application/msword", *_OLE)
_add("xls xlt", "application/vnd.ms-excel", *_OLE)
_add("ppt pps", "application/vnd.ms-powerpoint", *_OLE)
_add("msg", "application/vnd.ms-outlook", *_OLE)
_add("docx", _OOXML + "wordprocessingml.document", "application/zip")
_add("xlsx", _OOXML + "spreadsheetml.sheet", "application/zip")
_add("pptx", _OOXML + "presentationml.presentation", "application/zip")
_add("odt", _ODF + "text", "application/zip")
_add("ods", _ODF + "spreadsheet", "application/zip")
_add("odp", _ODF + "presentation", "application/zip")
_add("epub", "application/epub+zip", "application/zip")
_add("rtf", "text/rtf", "application/rtf", text=True)
_add("txt text log md ini cfg conf", "text/plain", text=True)
_add("csv", "text/csv", text=True)
_add("tsv", "text/tab-separated-values", text=True)
_add("json", "application/json", text=True)
_add("xml", "text/xml", "application/xml", text=True)
_add("html htm xhtml", "text/html", "application/xhtml+xml", text=True)
_add("eml", "message/rfc822", text=True)
_add("mbox", "application/mbox", text=True)
_add("vcf", "text/vcard", "text/x-vcard", text=True)
_add("ics", "text/calendar", text=True)
_add("js mjs", "text/javascript", "application/javascript", text=True)
_add("py", "text/x-script.python", "text/x-python", text=True)
_add("sh", "text/x-shellscript", text=True)
_add("c h", "text/x-c", text=True)
_add("css", "text/css", text=True)
_add("yaml yml", "application/yaml", text=True)
_add("sql", "application/sql", text=True)
# archives and compressed files
_add("zip", "application/zip", "application/x-zip-compressed")
_add("jar", "application/java-archive", "application/zip")
_add("apk", "application/vnd.android.package-archive", "application/java-archive", "application/zip")
_add("7z", "application/x-7z-compressed")
_add("rar", "application/vnd.rar", "application/x-rar")
_add("tar", "application/x-tar")
_add("gz tgz", "application/gzip", "application/x-gzip")
_add("bz2 tbz tbz2", "application/x-bzip2")
_add("xz txz", "application/x-xz")
_add("zst", "application/zstd")
_add("cab", "application/vnd.ms-cab-compressed")
_add("iso", "application/x-iso9660-image")
# programs and libraries
_add("exe dll sys scr ocx cpl efi", "application/vnd.microsoft.portable-executable", *_PE)
_add("elf so o ko axf", "application/x-executable", *_ELF)
# databases
_add("sqlite sqlite3 db", "application/vnd.sqlite3", "application/x-sqlite3")

_HIDDEN = ("Cc", "Cf")  # control and format characters (e.g. U+202E right-to-left override)


def _name_parts(original_name: str) -> tuple[str, list[str]]:
    """The last path component of the name, and its extensions (".tar", ".gz")."""
    base = re.split(r"[\\/]", original_name or "")[-1]
    # Windows drops trailing dots and spaces: "a.exe. " opens as "a.exe".
    trimmed = base.rstrip(" .")
    stem = trimmed.lstrip(".")  # ".bashrc" has no extension
    parts = stem.split(".")[1:]
    return base, [f".{p}" for p in parts if p]


def _libmagic_version() -> str:
    try:
        v = magic.version()
    except (AttributeError, NotImplementedError):
        return "unknown"
    return f"{v // 100}.{v % 100:02d}"


def _mismatch(ext: str | None, content: str) -> tuple[bool | None, str]:
    if ext is None:
        return None, "the name has no extension: nothing to compare"
    key = ext[1:].lower()
    if key in GENERIC_EXTENSIONS:
        return False, f"{ext} is a generic extension that claims no particular type"
    if content in ("inode/x-empty", "application/x-empty"):
        return None, "the file is empty: no content type to compare"
    if key not in _TABLE:
        return None, f"{ext} is not in this analyzer's table of extensions: no mismatch can be decided"
    claimed, compatible = _TABLE[key]
    agrees = content in compatible
    agrees = agrees or (key in _TEXT_EXTENSIONS and content.startswith("text/"))
    agrees = agrees or (content.startswith((_OOXML, _ODF)) and claimed == "application/zip")
    if agrees:
        return False, f"the content ({content}) agrees with the extension {ext}"
    return True, f"the content is {content} but the name ends in {ext}, which claims {claimed}"


def _libmagic(**kind) -> magic.Magic:
    """libmagic set to follow a symbolic link (``file -L``) to the file it names.

    The worker hands over its verified copy as /proc/self/fd/N, a link to a
    file that has no name; libmagic would otherwise describe the link
    ("inode/symlink"). A regular file is read as before.
    """
    m = magic.Magic(**kind)
    magic.magic_setflags(m.cookie, m.flags | magic.MAGIC_SYMLINK)
    return m


def analyze(path: str, params: dict, ctx) -> dict:
    try:
        content = _libmagic(mime=True).from_file(path)
        encoding = _libmagic(mime_encoding=True).from_file(path)
        description = _libmagic().from_file(path)
    except (OSError, magic.MagicException) as exc:
        raise AnalysisError(f"libmagic could not read the file: {exc}") from None

    base, extensions = _name_parts(getattr(ctx, "original_name", "") or "")
    ext = extensions[-1] if extensions else None
    libmagic = _libmagic_version()
    findings = [
        finding(
            "content_media_type", "fact", content, note=f"from the content's signature (libmagic {libmagic})"
        ),
        finding("content_description", "fact", description, note="libmagic's description of the content"),
        finding(
            "content_encoding", "fact", encoding, note="character encoding libmagic sees ('binary' if none)"
        ),
        finding(
            "extension",
            "fact",
            ext,
            all_extensions=extensions,
            note="last extension of the original file name" if ext else "the original name has no extension",
        ),
    ]
    claimed = None
    if ext is not None:
        key = ext[1:].lower()
        if key in _TABLE:
            claimed = _TABLE[key][0]
    findings.append(
        finding(
            "extension_media_type",
            "fact",
            claimed,
            note="type the extension claims, from this analyzer's table"
            if claimed
            else "no type known for this extension",
        )
    )
    mismatch, why = _mismatch(ext, content)
    findings.append(finding("type_extension_mismatch", "fact", mismatch, note=why))
    hidden = sorted({f"U+{ord(ch):04X}" for ch in base if unicodedata.category(ch) in _HIDDEN})
    if hidden:
        findings.append(
            finding(
                "name_hidden_characters",
                "fact",
                hidden,
                note="the file name contains invisible control or formatting characters "
                "(such as a right-to-left override) that can disguise its real extension",
            )
        )
    return {
        "findings": findings,
        "libraries": {"python-magic": metadata.version("python-magic"), "libmagic": libmagic},
    }
