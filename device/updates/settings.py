"""The updates wing's config table: ``[updates]``."""

from typing import Annotated

from pydantic import Field, model_validator
from pydantic.dataclasses import dataclass

from ..schema import TABLE, OptionalPath, float_in, int_in, invalid


@dataclass(frozen=True, config=TABLE)
class UpdatesConfig:
    """Where the bin looks for signed model bundles ('' url: it never looks)."""

    url: Annotated[
        str, Field(strict=True, pattern=r"^(|https?://\S+)$", description="an http(s) URL or ''")
    ] = ""
    channel: Annotated[
        str, Field(strict=True, pattern=r"^[a-z0-9_-]{1,32}$", description="a channel name such as 'stable'")
    ] = "stable"
    # the repository's root.json, copied to the bin once (smartbin fleet init writes it): the
    # keys every later signature is checked against
    root: OptionalPath = None
    check_interval_s: float_in(60, 604800, "seconds 60-604800") = 21600.0
    jitter: float_in(0, 0.9, "a share of the interval 0-0.9") = 0.25  # each wait is interval x (1 +- jitter)
    max_rate_kb_s: int_in(0, 1_000_000, "kilobytes per second, 0 (no limit) to 1000000") = 500

    @model_validator(mode="after")
    def _root_with_url(self) -> "UpdatesConfig":
        if self.url and self.root is None:
            raise invalid("missing; give the repository's root.json (smartbin fleet init writes it)", "root")
        return self
