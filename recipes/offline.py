"""Downloads from the HuggingFace hub that fail with one line, and fast, where there is no network.

A compute node without internet, or with ``HF_HUB_OFFLINE=1`` set, cannot download pretrained
backbone weights or released models. Without this module transformers retries the hub for about
25 s and ends in a long traceback; here the command stops within a few seconds with a
``DownloadError`` whose one line names what is missing and the two ways on: fetch it on a machine
with internet (``python fetch.py ...``, which fills the folders the recipes read) or, for backbone
weights, train from random weights with ``--pretrained=False``.

How it stays fast: the cached copy is tried first, with the hub in offline mode for that call
(``no_downloads``: no network at all, not even the check for a newer revision); when nothing is
cached and ``HF_HUB_OFFLINE`` is not set, one TCP connection to the hub's host (``HF_ENDPOINT``,
default huggingface.co:443) is tried with a 3 s limit before any download (skipped behind an
``https_proxy``, which only the download itself can test). ``HF_HUB_OFFLINE=1`` makes the
refusal immediate whatever the network does.

Wired in ``recipes.backbones.build`` (``load_pretrained``) and ``fetch.py``; released models:
``download_hub_files``.

Example
-------
>>> hub_reachable("http://127.0.0.1:1", timeout=1.0)  # nothing listens on port 1 here
False
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import socket
import sys
import urllib.parse
from pathlib import Path

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 3.0
PROXY_VARIABLES = ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")
_TRUE = ("1", "on", "yes", "true")


class DownloadError(RuntimeError):
    """A file the command needs is neither here nor downloadable; the message says how to get it."""


def hub_offline() -> bool:
    """Whether the hub is switched off (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` set).

    Example
    -------
    >>> isinstance(hub_offline(), bool)
    True
    """
    import huggingface_hub.constants

    values = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
    env = any(str(value).strip().lower() in _TRUE for value in values if value)
    return env or bool(huggingface_hub.constants.HF_HUB_OFFLINE)


def hub_endpoint() -> str:
    """The hub's address (``HF_ENDPOINT``, default https://huggingface.co)."""
    import huggingface_hub.constants

    return os.environ.get("HF_ENDPOINT") or huggingface_hub.constants.ENDPOINT


def hub_reachable(endpoint: str | None = None, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the hub's host opens within ``timeout`` seconds.

    True behind a proxy (``https_proxy``/``all_proxy``): only the download can tell there.

    Example
    -------
    >>> hub_reachable("http://127.0.0.1:1", timeout=1.0)  # nothing listens on port 1
    False
    """
    if any(os.environ.get(name) for name in PROXY_VARIABLES):
        return True
    parsed = urllib.parse.urlparse(endpoint or hub_endpoint())
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def fetch_command(released: str | None = None, argv: list[str] | None = None) -> str:
    """The ``fetch.py`` command that fetches what the running command needs.

    The running command's YAML and overrides (``sys.argv``) when it has a YAML; ``--released``
    for a released model.

    Example
    -------
    >>> fetch_command(argv=["train_classifier.py", "hparams/vit.yaml", "--data_folder=d"])
    'python fetch.py hparams/vit.yaml --data_folder=d'
    >>> fetch_command(released="speechbrain/vit-base-esc50", argv=["interpret.py", "a.wav"])
    'python fetch.py --released speechbrain/vit-base-esc50'
    >>> fetch_command(argv=["pytest"])
    'python fetch.py HPARAMS.yaml [--key=value ...]'
    """
    argv = sys.argv if argv is None else argv
    if released is not None:
        return shlex.join(["python", "fetch.py", "--released", released])
    args = list(argv[1:])
    if args and args[0].endswith((".yaml", ".yml")):
        return shlex.join(["python", "fetch.py", *args])
    return "python fetch.py HPARAMS.yaml [--key=value ...]"


def missing_message(what: str, why: str, fetch: str, otherwise: str) -> str:
    """The one line of a ``DownloadError``: what is missing, why it cannot be downloaded, and the
    two ways on.

    Example
    -------
    >>> print(missing_message("x is not in c", "no network", "python fetch.py a.yaml", "y"))
    x is not in c and cannot be downloaded (no network): run `python fetch.py a.yaml` on a machine with internet first, or y
    """  # noqa: E501
    return (
        f"{what} and cannot be downloaded ({why}): run `{fetch}` on a machine with internet "
        f"first, or {otherwise}"
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _cause(error: BaseException, names: tuple[str, ...]) -> BaseException | None:
    """The first exception in ``error``'s chain whose class (or a base) is named in ``names``."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if any(cls.__name__ in names for cls in type(error).__mro__):
            return error
        error = error.__cause__ or error.__context__
    return None


def _cache_name(cache_dir) -> str:
    if cache_dir:
        return str(cache_dir)
    import huggingface_hub.constants

    return huggingface_hub.constants.HF_HUB_CACHE


def _why_not_downloadable(local_only: bool) -> str | None:
    """Why no download is tried (a cache check only, offline mode, no connection), or None."""
    if local_only:
        return "fetch.py checks the cache only"
    if hub_offline():
        return "HF_HUB_OFFLINE is set"
    if not hub_reachable():
        host = urllib.parse.urlparse(hub_endpoint()).netloc
        return f"no connection to {host} within {PROBE_TIMEOUT_S:g} s"
    return None


@contextlib.contextmanager
def no_downloads():
    """Within it, transformers and huggingface_hub read their cache only (as ``HF_HUB_OFFLINE=1``).

    Example
    -------
    >>> with no_downloads():
    ...     hub_offline()
    True
    """
    import huggingface_hub.constants

    before = huggingface_hub.constants.HF_HUB_OFFLINE
    huggingface_hub.constants.HF_HUB_OFFLINE = True  # what is_offline_mode() reads, at call time
    try:
        yield
    finally:
        huggingface_hub.constants.HF_HUB_OFFLINE = before


def load_pretrained(load, source: str, cache_dir=None, local_only: bool = False):
    """``load(source, cache_dir)`` (a ``from_pretrained`` call), fast and in one line offline.

    A local folder is loaded as it is. A hub id is loaded from the cache when it is there
    (``no_downloads``: no network at all, not even the check for a newer revision); otherwise it
    is downloaded, unless the hub is off (``HF_HUB_OFFLINE``) or its host does not answer within
    3 s: then ``DownloadError`` at once. ``local_only``: never download (``fetch.py`` checks with
    it that a fetch is complete). Wiring, e.g. in ``recipes.backbones.build``::

        model = load_pretrained(cls._from_pretrained, source, cache_dir)

    Raises
    ------
    DownloadError
        The weights are neither cached nor downloadable; or ``source`` is no model.
    """
    otherwise = "train from random weights with --pretrained=False"
    if Path(source).is_dir():
        try:
            return load(source, cache_dir)
        except OSError as error:
            raise DownloadError(
                f"{source} is not a model folder ({_first_line(error)}): give a folder written "
                f"by save_pretrained or a HuggingFace model id as --source, or {otherwise}"
            ) from error
    what = f"the pretrained weights of {source} are not in {_cache_name(cache_dir)}"
    try:
        with no_downloads():
            return load(source, cache_dir)
    except (OSError, DownloadError):  # not (completely) cached; DownloadError: a nested guard
        pass
    why = _why_not_downloadable(local_only)
    if why is not None:
        raise DownloadError(missing_message(what, why, fetch_command(), otherwise))
    logger.info("Downloading the pretrained weights of %s into %s", source, _cache_name(cache_dir))
    try:
        return load(source, cache_dir)
    except OSError as error:
        not_found = _cause(error, ("RepositoryNotFoundError", "GatedRepoError"))
        if not_found is not None:
            raise DownloadError(
                f"{source} is not a model on the HuggingFace hub ({_first_line(not_found)}): "
                f"check --source, or {otherwise}"
            ) from error
        raise DownloadError(
            missing_message(
                what, f"the download failed: {_first_line(error)}", fetch_command(), otherwise
            )
        ) from error


def from_pretrained(model_class, source: str, cache_dir=None, local_only: bool = False, **kwargs):
    """``model_class.from_pretrained(source, cache_dir=cache_dir, **kwargs)`` through
    ``load_pretrained``.

    Example
    -------
    >>> import tempfile
    >>> from transformers import ViTConfig, ViTModel
    >>> folder = tempfile.mkdtemp()
    >>> config = ViTConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
    ...                    intermediate_size=8, image_size=32, patch_size=16)
    >>> ViTModel(config).save_pretrained(folder)
    >>> type(from_pretrained(ViTModel, folder)).__name__
    'ViTModel'
    >>> try:
    ...     from_pretrained(ViTModel, "nobody/no-such-model", cache_dir=folder, local_only=True)
    ... except DownloadError as error:
    ...     print(str(error).split(" are not in ")[0])
    the pretrained weights of nobody/no-such-model
    """

    def load(source, cache_dir):
        return model_class.from_pretrained(source, cache_dir=cache_dir, **kwargs)

    return load_pretrained(load, source, cache_dir, local_only)


def download_hub_files(
    repo_id: str,
    filenames,
    cache_dir=None,
    optional=(),
    local_only: bool = False,
    what: str = "the released model",
) -> Path:
    """Downloads ``filenames`` of a hub model repository (cached copies first); their folder.

    A file of ``optional`` that the repository (or, offline, the cache) lacks is skipped. For
    ``recipes.loading.download_released``: ``download_hub_files(repo_id, RELEASED_FILES,
    cache_dir, optional=("label_encoder.txt",))``.

    Raises
    ------
    DownloadError
        A required file is neither cached nor downloadable, or the repository lacks it.

    Example
    -------
    >>> import tempfile
    >>> try:
    ...     download_hub_files("org/model", ["a.ckpt"], tempfile.mkdtemp(), local_only=True)
    ... except DownloadError as error:
    ...     print(str(error).split(" is not in ")[0])
    the released model org/model
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    otherwise = "give the folder of a trained run instead"
    folder, missing = None, []
    for name in filenames:
        try:
            path = hf_hub_download(repo_id, name, cache_dir=cache_dir, local_files_only=True)
            folder = Path(path).parent
        except (OSError, EntryNotFoundError):  # LocalEntryNotFoundError: not cached
            missing.append(name)
    required = [name for name in missing if name not in optional]
    if folder is not None and not required:  # at most optional files missing: fine offline
        if not missing or local_only or hub_offline() or not hub_reachable():
            return folder
    why = _why_not_downloadable(local_only)
    if why is not None:
        names = ", ".join(required or missing)
        raise DownloadError(
            missing_message(
                f"{what} {repo_id} is not in {_cache_name(cache_dir)} ({names} missing)",
                why,
                fetch_command(released=repo_id),
                otherwise,
            )
        )
    logger.info("Downloading %s %s into %s", what, repo_id, _cache_name(cache_dir))
    for name in missing:
        try:
            path = hf_hub_download(repo_id, name, cache_dir=cache_dir)
            folder = Path(path).parent
        except (OSError, EntryNotFoundError) as error:
            if _cause(error, ("RepositoryNotFoundError", "GatedRepoError")) is not None:
                raise DownloadError(
                    f"{repo_id} is not a model on the HuggingFace hub: check the model id, or "
                    f"{otherwise}"
                ) from error
            if _cause(error, ("EntryNotFoundError",)) is not None:
                if name in optional:
                    continue
                raise DownloadError(f"{repo_id} on the HuggingFace hub has no {name}") from error
            raise DownloadError(
                missing_message(
                    f"{what} {repo_id} is not in {_cache_name(cache_dir)}",
                    f"the download of {name} failed: {_first_line(error)}",
                    fetch_command(released=repo_id),
                    otherwise,
                )
            ) from error
    return folder
