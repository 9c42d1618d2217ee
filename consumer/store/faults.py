"""What a database error means for the work that raised it, from the driver's error codes.

Design rule 5 says an event is dead-lettered only for what is wrong with the event itself,
and a database that is unwell is retried, never dead-lettered. The two look alike from
the outside (a batch failed), so the decision is made here, once, from what each driver
says precisely: the SQLSTATE on PostgreSQL, the error number on MySQL/MariaDB, the result
code on SQLite. Message text is never the basis.

* ``UNWELL``: the database cannot do the work now, whatever the data (connection lost,
  server shutting down, lock or statement timeout, deadlock, serialization failure, disk
  or table full, out of memory, I/O error, busy). Retry the whole batch with back-off.
  A unique-key violation is here too: apply upserts, so one means a concurrent apply
  inserted the same row first, and the retry finds it.
* ``REJECTED``: the database refuses a value the work carries (too long, out of range,
  text it cannot encode, a NOT NULL or CHECK constraint). The event is at fault: isolate
  it and dead-letter it with this reason.
* ``BROKEN``: anything else (a missing table, a permission, a syntax error: a deployment
  or a bug). Neither a retry nor a dead letter helps; the caller stops and commits
  nothing, so nothing is lost while someone looks.
"""

from __future__ import annotations

import enum

from sqlalchemy import exc as sa_exc


class Fault(enum.Enum):
    UNWELL = "unwell"
    REJECTED = "rejected"
    BROKEN = "broken"


#: PostgreSQL SQLSTATE classes (first two characters) of an unwell server: connection
#: exception, transaction rollback (serialization failure, deadlock), insufficient
#: resources (disk full, out of memory, too many connections), system error (I/O).
_PG_UNWELL_CLASSES = frozenset({"08", "40", "53", "58"})
#: ... and single codes from other classes: lock_not_available (lock_timeout),
#: object_in_use, query_canceled (statement_timeout), admin/crash shutdown, cannot connect
#: now, idle session timeout, read-only transaction (a standby after fail-over), snapshot
#: too old, unique violation (a concurrent apply).
_PG_UNWELL = frozenset(
    {"55P03", "55006", "57014", "57P01", "57P02", "57P03", "57P05", "25006", "72000", "23505"}
)
#: Data exception (class 22), integrity violations (23, but unique), program limits (54:
#: a value too large for an index row, a statement too complex for its data).
_PG_REJECTED_CLASSES = frozenset({"22", "23", "54"})

#: MySQL/MariaDB error numbers of an unwell server: lock wait timeout, deadlock, lost or
#: refused connections, shutdown, killed or interrupted queries, statement time-outs,
#: too many connections, out of memory, disk full, table full, storage engine and network
#: errors, read-only mode (fail-over), prepared statements to re-prepare, and duplicate
#: keys (a concurrent apply).
_MYSQL_UNWELL = frozenset({
    0, 1021, 1028, 1030, 1037, 1038, 1040, 1041, 1053, 1062, 1114, 1129, 1152, 1158, 1159,
    1160, 1161, 1180, 1181, 1203, 1205, 1213, 1226, 1290, 1317, 1615, 1637, 1836, 1927,
    1969, 2002, 2003, 2005, 2006, 2013, 2014, 2055, 3024, 4031,
})
#: ... refused values: data too long, incorrect string / datetime / decimal value, out of
#: range, data truncated, NULL in a NOT NULL column, CHECK failed, packet larger than
#: max_allowed_packet, row too large, invalid JSON text.
_MYSQL_REJECTED = frozenset({
    1048, 1118, 1153, 1264, 1265, 1292, 1300, 1366, 1367, 1406, 1690, 3140, 3819, 4025,
})

#: SQLite primary result codes of an unwell database: BUSY, LOCKED, NOMEM, READONLY,
#: INTERRUPT, IOERR, FULL ("database or disk is full"), CANTOPEN, PROTOCOL, SCHEMA.
_SQLITE_UNWELL = frozenset({5, 6, 7, 8, 9, 10, 13, 14, 15, 17})
#: ... refused values: TOOBIG, CONSTRAINT (but unique / primary key), MISMATCH.
_SQLITE_REJECTED = frozenset({18, 19, 20})
_SQLITE_CONSTRAINT_UNIQUE = frozenset({1555, 2067})  # PRIMARYKEY, UNIQUE


#: Raised while a value is bound to a statement (by a column type or the driver itself: a
#: lone surrogate SQLite cannot encode, a naive time): the value is wrong, not the store.
_BINDING_ERRORS = (ValueError, TypeError, OverflowError)


def classify(exc: BaseException) -> Fault:
    """What ``exc``, raised by SQLAlchemy or a driver, says about the work (module doc)."""
    if isinstance(exc, (sa_exc.TimeoutError, sa_exc.DisconnectionError)):
        return Fault.UNWELL  # no pooled connection in time, a connection found dead
    if isinstance(exc, _BINDING_ERRORS):
        return Fault.REJECTED
    if not isinstance(exc, sa_exc.DBAPIError):
        if isinstance(exc, sa_exc.StatementError) and isinstance(exc.orig, _BINDING_ERRORS):
            return Fault.REJECTED
        return Fault.BROKEN
    if exc.connection_invalidated:
        return Fault.UNWELL
    return _classify_driver_error(exc.orig)


def _classify_driver_error(orig: BaseException | None) -> Fault:
    code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(code, int):
        return _sqlite(code)
    args = getattr(orig, "args", ())
    # MySQL drivers carry a generic SQLSTATE too (HY000 for a lock wait timeout): the error
    # number is the precise one, so it is read first.
    if args and isinstance(args[0], int) and type(orig).__module__.startswith(("pymysql", "MySQLdb", "mysql")):
        return _mysql(args[0])
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if isinstance(sqlstate, str) and len(sqlstate) == 5:
        return _postgresql(sqlstate)
    # A driver error without a code: psycopg's client-side failures (connection refused or
    # lost before any SQLSTATE; a NUL in a text parameter is its DataError).
    name = type(orig).__name__
    if name in ("OperationalError", "InterfaceError"):
        return Fault.UNWELL
    if name == "DataError":
        return Fault.REJECTED
    return Fault.BROKEN


def _postgresql(sqlstate: str) -> Fault:
    if sqlstate in _PG_UNWELL or sqlstate[:2] in _PG_UNWELL_CLASSES:
        return Fault.UNWELL
    if sqlstate[:2] in _PG_REJECTED_CLASSES:
        return Fault.REJECTED
    return Fault.BROKEN


def _mysql(errno: int) -> Fault:
    if errno in _MYSQL_UNWELL:
        return Fault.UNWELL
    if errno in _MYSQL_REJECTED:
        return Fault.REJECTED
    return Fault.BROKEN


def _sqlite(code: int) -> Fault:
    if code in _SQLITE_CONSTRAINT_UNIQUE:
        return Fault.UNWELL
    primary = code & 0xFF
    if primary in _SQLITE_UNWELL:
        return Fault.UNWELL
    if primary in _SQLITE_REJECTED:
        return Fault.REJECTED
    return Fault.BROKEN
