"""What a Hub repository holds: hf:// references parsed, its files at a revision listed (by the Hub, or
offline from the listing recorded for that commit), its weights file picked, its config.json read.

    $HF_HOME/vswin/repos/models--OWNER--REPO/<commit>.json   the files a Hub repository holds at a commit
"""

from __future__ import annotations

import errno
import json
from contextlib import suppress
from pathlib import Path
from typing import Any

from .cache_problems import _cache_error, _first_line, _os_detail, _warn, not_cached_message
from .checkpoint_signatures import WEIGHT_SUFFIXES
from .download_settings import hub_endpoint, is_offline, vswin_cache_dir
from .errors import VswinError
from .hub_files import _fetch_hub_file, _gated_message, _http_status, _hub_busy, _hub_status_message, _repo_folder
from .verification import _HEX40, _Expected, _write_json, _write_text


def parse_hf_ref(ref: str) -> tuple[str, str | None, str | None]:
    """``hf://owner/repo[@revision][/path/in/repo]`` -> (repo_id, revision or None, filename or None)."""
    rest = ref[len("hf://") :]
    parts = rest.split("/", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise VswinError(f"bad Hub reference '{ref}': expected hf://owner/repo[@revision][/file]")
    owner, repo_rev = parts[0], parts[1]
    filename = parts[2] if len(parts) == 3 and parts[2] else None
    repo, _, revision = repo_rev.partition("@")
    if not repo or (repo_rev.endswith("@")):
        raise VswinError(f"bad Hub reference '{ref}': expected hf://owner/repo[@revision][/file]")
    from urllib.parse import unquote

    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:  # a name the Hub cannot hold would otherwise end in "cannot reach ... run vswin download"
        validate_repo_id(f"{owner}/{repo}")
    except HFValidationError as error:
        raise VswinError(f"bad Hub reference '{ref}': {' '.join(str(error).split())}") from None
    return f"{owner}/{repo}", (unquote(revision) if revision else None), filename


def _list_repo(ref: str, repo_id: str, revision: str) -> tuple[str | None, list[str] | None]:
    """(commit, files) of the repository at ``revision``: from the Hub, or from the cache when offline.

    The cache answers with the files the Hub listed for that commit when vswin recorded them (see
    _remember_files), so that a labels.txt or config.json that never reached the cache is missed
    offline, not silently left out.
    """
    status = None
    if not is_offline():
        from huggingface_hub import HfApi
        from huggingface_hub import errors as hf_errors

        endpoint = hub_endpoint()  # a bad HF_ENDPOINT is the user's to fix, not "no network" below
        try:
            info = HfApi(endpoint=endpoint).model_info(repo_id, revision=revision)
            files = [s.rfilename for s in (info.siblings or [])]
            if info.sha and info.sha != revision:
                _remember_ref(repo_id, revision, info.sha)
            if info.sha and info.siblings is not None:
                _remember_files(repo_id, info.sha, files)
            return info.sha, files
        except hf_errors.RevisionNotFoundError:
            raise VswinError(f"{ref}: revision '{revision}' not found in {repo_id}") from None
        except hf_errors.GatedRepoError:  # a RepositoryNotFoundError: caught first
            raise VswinError(_gated_message(ref, repo_id, endpoint)) from None
        except hf_errors.RepositoryNotFoundError:
            raise VswinError(
                f"{ref}: repository {repo_id} not found (or private: log in with `hf auth login`)"
            ) from None
        except hf_errors.HfHubHTTPError as error:
            status = _http_status(error)
            if not _hub_busy(status):
                raise VswinError(_hub_status_message(ref, status)) from None
            failure = f"the Hub answered HTTP {status}"  # down or busy: the cache may still answer
        except Exception as error:  # no network: fall back to what the cache holds
            failure = f"the Hub ({endpoint}) could not be reached: {_first_line(error)}"
    else:
        failure = "HF_HUB_OFFLINE is set"
    commit = revision if _HEX40.fullmatch(revision) else _cached_ref(ref, repo_id, revision)
    snapshot = _repo_folder(repo_id) / "snapshots" / (commit or "-")
    if commit is None or not snapshot.is_dir():
        if status is not None:  # the network works: "run vswin download on a machine with a network" would mislead
            raise VswinError(_hub_status_message(ref, status)) from None
        raise VswinError(not_cached_message(ref, _repo_folder(repo_id), failure))
    listed = _recorded_files(repo_id, commit)
    if listed is not None:
        return commit, listed
    files = sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file())
    unseen = [name for name in ("config.json", "labels.txt") if name not in files]
    if unseen:
        # Cached by an older vswin, which recorded no listing: a complete snapshot of a repository
        # without these files looks the same as one whose download of them failed.
        _warn(
            f"{ref}: the cache holds no record of the files in {repo_id} at {commit[:12]} (cached by an older vswin), "
            f"so it is used without {' and '.join(unseen)}, which are not in the cache; if the repository has "
            f"them, run `vswin download {ref}` with a network"
        )
    return commit, files


def _cached_ref(ref: str, repo_id: str, revision: str) -> str | None:
    """The commit the cache's ``refs/<revision>`` names; None when it holds none for that revision."""
    ref_file = _repo_folder(repo_id) / "refs" / revision
    try:
        if not ref_file.exists():
            return None
        if not ref_file.is_file():  # a folder, or a pipe that would never answer
            raise IsADirectoryError(errno.EISDIR, "not a file", str(ref_file))
        commit = ref_file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        detail = _os_detail(error) if isinstance(error, OSError) else "it is not UTF-8 text"
        problem = f"cannot be read ({detail})"
    else:
        if _HEX40.fullmatch(commit):
            return commit
        problem = "is empty (a write that did not finish)" if not commit else "names no commit"
    raise _cache_error(
        f"{ref}: the file in the cache that names the commit of '{revision}' ({ref_file}) {problem}; move it away "
        f"and run `vswin download {ref}` with a network to write it again, or name the commit: hf://{repo_id}@COMMIT"
    )


def _files_record_path(repo_id: str, commit: str) -> Path:
    return vswin_cache_dir() / "repos" / _repo_folder(repo_id).name / f"{commit}.json"


def _remember_files(repo_id: str, commit: str, files: list[str]) -> None:
    # A commit's files never change: recorded once, it tells the offline path what must be cached.
    path = _files_record_path(repo_id, commit)
    if _recorded_files(repo_id, commit) == sorted(files):
        return  # nothing to write (a read-only copy of the cache included)
    with suppress(OSError):  # a read-only cache still works online
        _write_json(path, {"repo": repo_id, "commit": commit, "files": sorted(files)})


def _recorded_files(repo_id: str, commit: str) -> list[str] | None:
    try:
        record = json.loads(_files_record_path(repo_id, commit).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    files = record.get("files") if isinstance(record, dict) else None
    if not isinstance(files, list) or not all(isinstance(name, str) for name in files):
        return None
    return sorted(files)


def _remember_ref(repo_id: str, revision: str, commit: str) -> None:
    # Files are fetched by commit, so huggingface_hub never learns the branch; the offline path needs it.
    ref_file = _repo_folder(repo_id) / "refs" / revision
    with suppress(OSError, ValueError):
        if ref_file.is_file() and ref_file.read_text(encoding="utf-8").strip() == commit:
            return  # nothing to write (a read-only copy of the cache included)
    with suppress(OSError):  # a read-only cache still works online
        # Whole or not at all: a ref left empty by a full disk would name no commit offline.
        _write_text(ref_file, commit)


def _pick_weights_file(ref: str, repo_id: str, revision: str, files: list[str] | None) -> str:
    candidates = sorted(f for f in files or [] if f.lower().endswith(WEIGHT_SUFFIXES))
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise VswinError(f"{ref}: no checkpoint file ({', '.join(WEIGHT_SUFFIXES)}) in {repo_id} at {revision}")
    shown = ", ".join(candidates[:6])
    raise VswinError(
        f"{ref}: {len(candidates)} checkpoint files in {repo_id} ({shown}); name one: hf://{repo_id}@{revision}/FILE"
    )


def _read_json_config(ref: str, repo_id: str, revision: str) -> dict[str, Any]:
    path, _ = _fetch_hub_file(ref, repo_id, "config.json", revision, _Expected())
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as error:  # (nested past Python's recursion limit)
        raise VswinError(f"{ref}: config.json is not valid JSON ({error})") from None
    if not isinstance(config, dict):
        raise VswinError(f"{ref}: config.json is not a JSON object")
    return config


def _labels_from_config(ref: str, config: dict[str, Any]) -> list[str] | None:
    id2label = config.get("id2label")
    if not isinstance(id2label, dict) or not id2label:
        return None
    try:
        by_index = {int(k): str(v) for k, v in id2label.items()}
    except (TypeError, ValueError):
        raise VswinError(f"{ref}: config.json id2label keys must be class indices") from None
    if sorted(by_index) != list(range(len(by_index))):
        raise VswinError(f"{ref}: config.json id2label must number the classes 0..{len(by_index) - 1}")
    return [by_index[i] for i in range(len(by_index))]
