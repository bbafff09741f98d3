"""Console sessions ended by logging out, shared by every replica on one database.

A console session is a signed cookie any replica accepts until it expires; logging out records
its id here (with its expiry, after which the row is useless and goes), and each gateway reloads
the ids at its store poll, so a logout holds on every replica within seconds.
"""

from __future__ import annotations

import time

from sqlalchemy import delete, exists, insert, select

from mcp_gateway.store.database import Database
from mcp_gateway.store.schema import console_logouts

COUNTER = "console_logouts"


class LogoutStore:
    """Ended session ids; `ended` is this process's copy (refreshed by `load`)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.ended: dict[str, float] = {}  # session id -> its expiry
        self._revision = -1

    def end(self, session_id: str, expires: float) -> None:
        """Record a logout (blocking); expired rows go in the same transaction."""
        t = console_logouts
        self.ended[session_id] = expires
        with self.db.transaction(COUNTER) as tx:
            tx.execute(delete(t).where(t.c.expires_at <= time.time()))
            if not tx.scalar(select(exists().where(t.c.session_id == session_id))):
                tx.execute(insert(t).values(session_id=session_id, expires_at=expires))

    def load(self) -> None:
        """Reload the ended sessions when another process recorded one (blocking)."""
        revision = self.db.revision(COUNTER)  # the revision first: a later write is seen next time
        if revision == self._revision:
            return
        t = console_logouts
        rows = self.db.query(select(t.c.session_id, t.c.expires_at).where(t.c.expires_at > time.time()))
        self.ended = {sid: expires for sid, expires in rows}
        self._revision = revision
