"""Delivering one batch of a register: what to do with each answer of zevvy.

Every part of a batch zevvy answered is confirmed (or set aside) in the outbox
at once, so an error later on (a 429, a lost connection) loses no progress: the
next round goes on with what is still pending.

* 2xx: confirmed.
* 409, zevvy has some readings already. When its answer names them
  (``ZevvyConflictError.conflicts``), they are confirmed and the rest is sent
  once more: two requests. Otherwise only a 409 to a *single* reading proves
  that zevvy has it: a 409 to several may mean that it has one of them and
  stored none of the others (or, on other servers, all the new ones). So the
  batch is walked reading by reading from the oldest, and as soon as one is new
  (2xx) the rest goes in one request; if that conflicts again, the walk goes on
  behind it. A batch whose first k readings zevvy has (a confirmation lost in a
  crash or a timeout) costs k + 3 requests; one zevvy has entirely costs one
  request per reading, the least that proves every reading stored.
* 400/422 or 413 for several readings: split in halves, down to the readings
  zevvy refuses (about 2 log2(n) requests for one bad reading among n); those
  are set aside with a ``batch_rejected`` repair issue. A 413 also lowers the
  batch size (``batch_size``; the sender keeps it with the outbox).
* A 400/422 about the register, not its readings: when the oldest reading of a
  batch, on its own, gets the very answer the batch and every half on the way
  to it got, the newest reading is sent on its own too; the same answer again
  means that zevvy refuses whatever is sent, and ``ZevvyRegisterRejectedError``
  is raised for the sender to set the register aside with its readings kept
  (about log2(n) + 2 requests, instead of 2n - 1 and n rejected readings).
* Any other 4xx (403, 404, a 413 for one reading): ``ZevvyMeasurementsError``
  is raised for the sender to set the register aside. Account-wide errors
  (``ZevvyConnectionError``, ``ZevvyAuthenticationError``, ...) are raised too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from .api import (
    MAX_BATCH,
    ZevvyClient,
    ZevvyConflictError,
    ZevvyMeasurementsError,
    ZevvyRegisterRejectedError,
    ZevvyRejectedError,
)
from .const import LOGGER
from .outbox import Batch, Outbox

# zevvy's answer to a request with too many readings.
PAYLOAD_TOO_LARGE: Final = 413


@dataclass(slots=True)
class _Spine:
    """A batch refused with ``answer``, and whether its newest reading was sent
    on its own (then it is left out of the rest of the split)."""

    whole: Batch
    answer: tuple[int, str]
    newest_done: bool = False


class BatchDelivery:
    """Send batches of one account's registers; confirm or set aside each part."""

    def __init__(self, client: ZevvyClient, outbox: Outbox) -> None:
        """Initialize with the client to send with and the outbox to update."""
        self.client = client
        self.outbox = outbox
        # Readings per request; lowered when zevvy answers 413 (kept until the
        # entry is reloaded).
        self.batch_size = MAX_BATCH
        # Readings confirmed so far (a round counts its own as a difference).
        self.confirmed = 0

    async def async_deliver(self, batch: Batch) -> int:
        """Send a batch; return how many readings zevvy confirmed.

        Raises ZevvyMeasurementsError for an answer about the register, any other
        ZevvyError for one about the account.
        """
        return await self._async_deliver(batch, None, top=True)

    async def _async_deliver(
        self, batch: Batch, spine: _Spine | None, *, top: bool = False
    ) -> int:
        """Send a batch; ``spine``: it is the oldest part of a batch refused
        with the same answer at every split so far."""
        try:
            await self._async_post(batch)
        except (ZevvyMeasurementsError, ValueError) as err:
            return await self._async_refused(batch, err, spine, top=top)
        return self._confirm(batch)

    async def _async_post(self, batch: Batch) -> None:
        destination = batch.destination
        await self.client.bulk_create(
            destination.device_ref, destination.register_ref, batch.readings()
        )

    def _confirm(self, batch: Batch) -> int:
        self.outbox.confirm(batch)
        self.confirmed += len(batch)
        return len(batch)

    def _reject(self, batch: Batch, message: str) -> None:
        LOGGER.error(
            "zevvy rejected %s readings of %s / %s (%s); they are kept aside, "
            "see Repairs",
            len(batch),
            batch.destination.device_ref,
            batch.destination.register_ref,
            message,
        )
        self.outbox.reject(batch, message)

    async def _async_refused(
        self,
        batch: Batch,
        error: ZevvyMeasurementsError | ValueError,
        spine: _Spine | None = None,
        *,
        top: bool = False,
    ) -> int:
        """Act on zevvy's refusal of a batch; return how many were confirmed."""
        if isinstance(error, ValueError):  # a reading or reference it cannot take
            self._reject(batch, str(error))
            return 0
        if isinstance(error, ZevvyConflictError):
            return await self._async_resolve_conflict(batch, error.conflicts)
        splittable = isinstance(error, ZevvyRejectedError) or (
            error.status == PAYLOAD_TOO_LARGE
        )
        if not isinstance(error, ZevvyRejectedError):
            spine = None
        elif top:
            spine = _Spine(batch, (error.status, error.message))
        elif spine is not None and spine.answer != (error.status, error.message):
            spine = None
        if len(batch) == 1 or not splittable:
            if not isinstance(error, ZevvyRejectedError):
                raise error
            confirmed = 0
            if spine is not None and len(spine.whole) > 1:
                # The oldest reading on its own got the batch's answer.
                confirmed = await self._async_probe_newest(spine)
            self._reject(batch, error.message)
            return confirmed
        if error.status == PAYLOAD_TOO_LARGE:
            self._lower_batch_size(len(batch) // 2)
        # Refused as a whole: each half on its own, down to what zevvy refuses.
        half = len(batch) // 2
        first = await self._async_deliver(batch[:half], spine)
        rest = batch[half:]
        if top and spine is not None and spine.newest_done:
            rest = rest[:-1]
        return first + (await self._async_deliver(rest, None) if rest else 0)

    async def _async_probe_newest(self, spine: _Spine) -> int:
        """Send the newest reading of a refused batch on its own.

        The same answer as the batch, its halves and its oldest reading: zevvy
        refuses the register, whatever is sent (ZevvyRegisterRejectedError).
        Otherwise it is confirmed or rejected like any reading (and left out of
        the rest); return how many were confirmed.
        """
        newest = spine.whole[len(spine.whole) - 1 :]
        spine.newest_done = True
        try:
            await self._async_post(newest)
        except ZevvyRejectedError as err:
            if (err.status, err.message) == spine.answer:
                spine.newest_done = False
                raise ZevvyRegisterRejectedError(err.status, err.message) from err
            self._reject(newest, err.message)
            return 0
        except ZevvyConflictError:
            return self._confirm(newest)  # zevvy has it
        except ZevvyMeasurementsError:
            spine.newest_done = False
            raise
        return self._confirm(newest)

    async def _async_resolve_conflict(
        self, batch: Batch, conflicts: Sequence[datetime] | None
    ) -> int:
        """zevvy has some readings of ``batch`` (409): confirm them, send the rest."""
        if len(batch) == 1:
            return self._confirm(batch)  # zevvy has it
        present, rest = batch.partition(conflicts or ())
        if not present:
            return await self._async_walk(batch)
        confirmed = self._confirm(present)
        return confirmed + (await self.async_deliver(rest) if rest else 0)

    async def _async_walk(self, batch: Batch) -> int:
        """A 409 that names nothing: find out reading by reading, oldest first.

        Once a reading is new (2xx), the rest goes in one request; if that
        conflicts again, the walk goes on behind the new reading.
        """
        confirmed = 0
        index = 0
        while index < len(batch):
            reading = batch[index : index + 1]
            index += 1
            try:
                await self._async_post(reading)
            except ZevvyConflictError:
                confirmed += self._confirm(reading)  # zevvy has it
                continue
            except ZevvyRejectedError as err:
                self._reject(reading, err.message)
                continue
            confirmed += self._confirm(reading)
            rest = batch[index:]
            if not rest:
                break
            try:
                await self._async_post(rest)
            except ZevvyConflictError as err:
                if rest.partition(err.conflicts or ())[0]:
                    resolved = await self._async_resolve_conflict(rest, err.conflicts)
                    return confirmed + resolved
                continue
            except ZevvyMeasurementsError as err:
                return confirmed + await self._async_refused(rest, err)
            return confirmed + self._confirm(rest)
        return confirmed

    def _lower_batch_size(self, size: int) -> None:
        if size < self.batch_size:
            self.batch_size = size
            LOGGER.warning(
                "zevvy refused a request as too large (413); sending at most %s "
                "readings per request from now on",
                size,
            )
