"""``S3Store``: objects in an S3 bucket (AWS, MinIO, moto …) through boto3.

* Credentials come only from boto3's default chain (environment, profile, instance role),
  never from arguments or files in the repository.
* Large files go up and down in parallel parts (``TransferConfig``); every request is retried
  with exponential backoff by botocore (``standard`` or ``adaptive`` retry mode), except that
  an endpoint that cannot be connected to at all is given up on after ``connect_attempts``
  tries (a few seconds), not botocore's full backoff of up to a minute.
* The sha256 of every object is recorded as the user metadata ``sha256`` when it is stored
  and checked on every read: a mismatch raises ChecksumError naming the key, and a file that
  fails the check never appears at the destination path.
"""

from __future__ import annotations

import os
import re
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn

from marquee.errors import (
    ChecksumError,
    InvalidArgumentError,
    ObjectNotFoundError,
    StoreError,
    redact_uri,
)
from marquee.store.base import (
    StoreBase,
    check_key,
    join_key,
    sha256_bytes,
    sha256_file,
    temp_path_beside,
)

if TYPE_CHECKING:
    from boto3.s3.transfer import TransferConfig

__all__ = ["S3Store"]

MiB = 1024 * 1024
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
#: A bucket name botocore sends (its own check, which otherwise fails every request in a
#: multi-line error quoting the name whole).
_BUCKET = re.compile(r"^[a-zA-Z0-9.\-_]{1,255}$")


class S3Store(StoreBase):
    """Objects under ``s3://<bucket>/<prefix>/``.

    ``endpoint_url`` selects a non-AWS endpoint (path-style addressing is used then).
    ``create_bucket=True`` creates the bucket if it does not exist yet; otherwise a missing
    bucket is an error. ``max_attempts`` bounds retries of throttling and server errors;
    ``connect_attempts`` (at most ``max_attempts``) bounds tries against an endpoint that
    refuses connections or never answers.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        *,
        create_bucket: bool = False,
        retry_mode: Literal["standard", "adaptive"] = "standard",
        max_attempts: int = 8,  # in all, the first try included
        connect_attempts: int = 3,
        multipart_threshold: int = 16 * MiB,
        multipart_chunksize: int = 16 * MiB,
        max_concurrency: int = 4,
    ) -> None:
        if "@" in bucket:  # s3://KEY:SECRET@bucket: botocore would quote the name whole
            raise StoreError(
                f"s3://***@{bucket.rpartition('@')[2]}: an s3:// URI holds no credentials; "
                "S3 credentials come from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE "
                "or the pod's role")
        if not _BUCKET.fullmatch(bucket):  # botocore's rule, said in one line
            raise StoreError(f"invalid bucket name {bucket!r}: letters, digits, '.', '-' and "
                             "'_', 1 to 255 of them")
        if not 1 <= connect_attempts <= max_attempts:
            raise InvalidArgumentError("connect_attempts", connect_attempts,
                                       f"must be between 1 and max_attempts={max_attempts}")
        self.bucket = bucket
        self.prefix = check_key(prefix, allow_empty=True)
        self.endpoint_url = endpoint_url
        self.retry_mode = retry_mode
        self.max_attempts = max_attempts
        self.connect_attempts = connect_attempts
        self.multipart_threshold = multipart_threshold
        self.multipart_chunksize = multipart_chunksize
        self.max_concurrency = max_concurrency
        if create_bucket:
            self.ensure_bucket()

    def __repr__(self) -> str:
        endpoint = None if self.endpoint_url is None else redact_uri(self.endpoint_url)
        return f"S3Store({self.uri()!r}, endpoint_url={endpoint!r})"

    # boto3 ------------------------------------------------------------------------------
    @cached_property
    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        config = Config(
            retries={"mode": self.retry_mode, "total_max_attempts": self.max_attempts},
            connect_timeout=5,
            read_timeout=60,
            s3={"addressing_style": "path" if self.endpoint_url else "auto"},
        )
        client = boto3.session.Session().client("s3", endpoint_url=self.endpoint_url, config=config)
        client.meta.events.register_first("needs-retry.s3", self._give_up_on_unreachable)
        return client

    def _give_up_on_unreachable(self, attempts: int, caught_exception: Exception | None = None,
                                **_: Any) -> None:
        """End the retries once an unreachable endpoint has had ``connect_attempts`` tries.

        botocore backs off up to 20 s between its attempts, which suits throttling and 5xx; a
        refused or silent endpoint is almost always a wrong URL or a service that is down, and
        a reader (a model server starting, ``marquee`` fetching) would wait ~a minute for the
        same error. A ``needs-retry`` handler that raises stops botocore's loop at once.
        """
        from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError

        if (isinstance(caught_exception, (EndpointConnectionError, ConnectTimeoutError))
                and attempts >= self.connect_attempts):
            raise caught_exception

    @cached_property
    def transfer_config(self) -> TransferConfig:
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(
            multipart_threshold=self.multipart_threshold,
            multipart_chunksize=self.multipart_chunksize,
            max_concurrency=self.max_concurrency,
            use_threads=self.max_concurrency > 1,
        )

    def _raise(self, exc: Exception, key: str) -> NoReturn:
        """Translate a boto3/botocore failure into the Marquee hierarchy."""
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        if isinstance(exc, NoCredentialsError):
            raise StoreError(
                "no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                "AWS_PROFILE or use an instance/pod role"
            ) from exc
        code = ""
        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
        elif isinstance(exc, S3UploadFailedError) and "NoSuchBucket" in str(exc):
            code = "NoSuchBucket"
        if code == "NoSuchBucket":
            raise StoreError(
                f"bucket {self.bucket!r} does not exist at "
                f"{redact_uri(self.endpoint_url or 'AWS')} "
                "(open the store with create_bucket=True to create it)"
            ) from exc
        if code in _NOT_FOUND:
            raise ObjectNotFoundError(key, self.uri()) from exc
        if isinstance(exc, (ClientError, BotoCoreError, S3UploadFailedError)):
            # botocore quotes the endpoint URL whole, user info included
            raise StoreError(redact_uri(f"S3 request for key {key!r} in {self.uri()} failed: "
                                        f"{exc}")) from exc
        raise exc

    def _full(self, key: str) -> str:
        return join_key(self.prefix, check_key(key))

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist."""
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) not in _NOT_FOUND | {"NoSuchBucket"}:
                self._raise(exc, "")
        except Exception as exc:  # noqa: BLE001 - translated
            self._raise(exc, "")
        region = self.client.meta.region_name
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if region and region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self.client.create_bucket(**kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                self._raise(exc, "")

    # Objects ----------------------------------------------------------------------------
    def put_file(self, key: str, path: Path | str) -> str:
        """Upload ``path`` with its sha256 recorded; refuse a file that changes meanwhile.

        The sha256 goes up as metadata before the bytes do (boto3 reads the file again to send
        it), so a file still being written would be stored with the digest of other bytes and
        refused by every reader. Hashing it again afterwards catches that: the object is
        removed and nothing is stored.
        """
        full = self._full(key)
        digest = sha256_file(path)
        try:
            self.client.upload_file(
                os.fspath(path), self.bucket, full,
                ExtraArgs={"Metadata": {"sha256": digest}}, Config=self.transfer_config,
            )
        except Exception as exc:  # noqa: BLE001 - translated
            self._raise(exc, key)
        if sha256_file(path) != digest:
            self.delete(key)
            raise StoreError(f"{os.fspath(path)} changed while it was being uploaded to "
                             f"{self.uri(key)}; nothing was stored")
        return digest

    def put_bytes(self, key: str, data: bytes) -> str:
        full = self._full(key)
        digest = sha256_bytes(data)
        try:
            self.client.put_object(Bucket=self.bucket, Key=full, Body=data,
                                   Metadata={"sha256": digest})
        except Exception as exc:  # noqa: BLE001 - translated
            self._raise(exc, key)
        return digest

    def get_file(self, key: str, path: Path | str) -> str:
        full = self._full(key)
        dest = Path(path)
        try:
            expected = self.client.head_object(Bucket=self.bucket, Key=full)["Metadata"].get(
                "sha256")
        except Exception as exc:  # noqa: BLE001 - translated
            self._raise(exc, key)
        tmp = temp_path_beside(dest)
        try:
            try:
                self.client.download_file(self.bucket, full, os.fspath(tmp),
                                          Config=self.transfer_config)
            except Exception as exc:  # noqa: BLE001 - translated
                self._raise(exc, key)
            actual = sha256_file(tmp)
            if expected != actual:
                raise ChecksumError(key, expected, actual)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return actual

    def get_bytes(self, key: str) -> bytes:
        full = self._full(key)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=full)
            data: bytes = response["Body"].read()
        except Exception as exc:  # noqa: BLE001 - translated
            self._raise(exc, key)
        expected, actual = response["Metadata"].get("sha256"), sha256_bytes(data)
        if expected != actual:
            raise ChecksumError(key, expected, actual)
        return data

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._full(key))
            return True
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in _NOT_FOUND:
                return False
            self._raise(exc, key)
        except Exception as exc:  # noqa: BLE001 - translated
            self._raise(exc, key)

    def list(self, prefix: str = "") -> list[str]:
        check_key(prefix, allow_empty=True)
        base = f"{self.prefix}/" if self.prefix else ""
        keys: list[str] = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=base + prefix)
            for page in pages:
                keys.extend(obj["Key"][len(base):] for obj in page.get("Contents", []))
        except Exception as exc:  # noqa: BLE001 - translated
            self._raise(exc, prefix)
        return sorted(keys)

    def uri(self, key: str = "") -> str:
        key = check_key(key, allow_empty=True)
        path = join_key(self.prefix, key)
        return f"s3://{self.bucket}/{path}" if path else f"s3://{self.bucket}"

    def delete(self, key: str) -> None:
        """Remove the object; a missing key is not an error (S3 semantics)."""
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._full(key))
        except Exception as exc:  # noqa: BLE001 - translated
            self._raise(exc, key)

    # Foreign objects (files Marquee did not write: a dataset's tables) ---------------------
    def _raise_reading(self, exc: Exception, what: str) -> NoReturn:
        """``_raise`` for a read of objects someone else wrote: a missing bucket, refused
        credentials or an endpoint that cannot be reached are said in those words (the store's
        own message suggests creating the bucket, which a reader must not do)."""
        from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError

        endpoint = redact_uri(self.endpoint_url or "AWS")
        code = (str(exc.response.get("Error", {}).get("Code", ""))
                if isinstance(exc, ClientError) else "")
        if code == "NoSuchBucket":
            raise StoreError(f"bucket {self.bucket!r} does not exist at {endpoint}") from exc
        if code in _DENIED or (isinstance(exc, ClientError) and exc.response.get(
                "ResponseMetadata", {}).get("HTTPStatusCode") == 403):
            raise StoreError(f"access denied ({code or 403}) reading {what} at {endpoint}: "
                             "check the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                             "AWS_PROFILE or the pod's role) and the bucket policy") from exc
        if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError)):
            raise StoreError(f"cannot reach the S3 endpoint {endpoint}: "
                             f"{type(exc).__name__}") from exc
        self._raise(exc, what)

    def list_dir(self, prefix: str = "", *, max_entries: int = 10_000
                 ) -> tuple[dict[str, int], list[str]]:
        """One level of the directory ``prefix`` (relative to the store's prefix), as a local
        directory listing is: ``({file name: size}, [sub-directory names])``. Only names that
        are plain file names are returned (never one with ``/``, ``.`` or ``..``: nothing
        outside the directory); folder markers are skipped. More than ``max_entries``
        entries raise StoreError naming the limit, after at most that many are listed."""
        base = join_key(self.prefix, check_key(prefix, allow_empty=True))
        base = f"{base}/" if base else ""
        files: dict[str, int] = {}
        dirs: list[str] = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=base, Delimiter="/")
            for page in pages:
                entries = [(o["Key"], o.get("Size", 0)) for o in page.get("Contents", [])]
                entries += [(p["Prefix"].rstrip("/"), -1) for p in page.get("CommonPrefixes", [])]
                for key, size in entries:
                    name = key[len(base):] if key.startswith(base) else ""
                    if name in ("", ".", "..") or "/" in name or "\x00" in name:
                        continue
                    if size < 0:
                        dirs.append(name)
                    else:
                        files[name] = size
                if len(files) + len(dirs) > max_entries:
                    raise StoreError(f"{self.uri(prefix)} holds more than {max_entries} "
                                     "objects; a dataset directory holds a few table files")
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - translated
            self._raise_reading(exc, self.uri(prefix))
        return files, sorted(dirs)

    def get_foreign_file(self, key: str, path: Path | str, max_bytes: int) -> int:
        """Download an object that Marquee did not write (no sha256 recorded with it) to
        ``path``, streaming; refuse one of more than ``max_bytes`` bytes (StoreError), even
        if it grew after it was listed. The file appears at ``path`` only once complete;
        returns its size."""
        dest = Path(path)
        tmp = temp_path_beside(dest)
        size = 0
        try:
            try:
                body = self.client.get_object(Bucket=self.bucket, Key=self._full(key))["Body"]
                with open(tmp, "wb") as fh:
                    for chunk in iter(lambda: body.read(MiB), b""):
                        size += len(chunk)
                        if size > max_bytes:
                            raise StoreError(f"{self.uri(key)} is larger than {max_bytes} "
                                             "bytes, the limit of a download")
                        fh.write(chunk)
            except StoreError:
                raise
            except Exception as exc:  # noqa: BLE001 - translated
                self._raise_reading(exc, self.uri(key))
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return size


_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled",
           "InvalidToken", "ExpiredToken", "AccountProblem", "403", "Forbidden"}
