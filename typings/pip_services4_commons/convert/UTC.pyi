from datetime import datetime, timedelta, tzinfo

ZERO: timedelta
HOUR: timedelta

class utc(tzinfo):
    def utcoffset(self, dt: datetime | None) -> timedelta: ...
    def tzname(self, dt: datetime | None) -> str: ...
    def dst(self, dt: datetime | None) -> timedelta: ...

UTC: utc
